#!/usr/bin/env bash
# The test command (npm test): starts a throwaway Ceph RGW on loopback as the S3-compatible server
# (Debian packages; .ci/run installs them), runs every test suite with node's test runner, and
# always stops RGW. TFTPGW_TEST_S3=s3rver runs against the in-process s3rver instead (no Ceph).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
# Nothing in tests may pick up a developer's real AWS profile.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN || true

missing=()
for tool in tftp atftp busybox curl prometheus promtool qemu-system-x86_64 nginx; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${TFTPGW_TEST_S3:-rgw}" = rgw ] && ! command -v radosgw >/dev/null; then missing+=(radosgw); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing test dependencies (${missing[*]}) with apt-get"
    bash scripts/install-test-deps.sh
  else
    echo "missing: ${missing[*]} — run: sudo bash scripts/install-test-deps.sh" >&2
    exit 2
  fi
fi

rgw_dir=""
cleanup() { if [ -n "$rgw_dir" ]; then bash scripts/rgw.sh stop "$rgw_dir" >/dev/null 2>&1 || true; rm -rf "$rgw_dir"; fi; }
trap cleanup EXIT INT TERM
if [ "${TFTPGW_TEST_S3:-rgw}" = rgw ]; then
  rgw_dir=$(mktemp -d /tmp/tftpgw-rgw.XXXXXX)
  bash scripts/rgw.sh start "$rgw_dir"
  # shellcheck disable=SC1091
  source "$rgw_dir/env"
  export S3_TEST_ENDPOINT S3_TEST_ACCESS_KEY S3_TEST_SECRET_KEY S3_TEST_REGION S3_TEST_KIND
fi

npx tsc -p tsconfig.json --noEmit
# Lint (typescript-eslint, type-checked rules) on full runs; a run of chosen files skips it.
if [ $# -eq 0 ]; then npx eslint .; fi
# Every suite folder under test/ (bash expands the globs: Node 20 does not).
shopt -s nullglob
files=(test/*/*.test.ts)
if [ $# -gt 0 ]; then files=("$@"); fi
# TAP output: the same closing summary on every Node release (CI reads it). A copy goes to a log so
# that the failing tests, with their error blocks, are printed again last: CI shows only the tail.
tap_log=$(mktemp /tmp/tftpgw-test-tap.XXXXXX)
set +e
node --import tsx --test --test-reporter=tap --test-concurrency=2 "${files[@]}" | tee "$tap_log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "# ---- failing tests (again, from the log above) ----"
  # A failing subtest's line, its ancestors' lines, and its YAML block up to the closing "...".
  awk '/^ *# Subtest: /{ depth = match($0, /[^ ]/); names[depth] = $0 }
       /^ *not ok /{ on = 1; for (d = 1; d < match($0, /[^ ]/); d++) if (d in names) print names[d] }
       on { print; if ($0 ~ /^ *\.\.\.$/) on = 0 }' "$tap_log" | tail -n 300
fi
rm -f "$tap_log"
exit "$status"
