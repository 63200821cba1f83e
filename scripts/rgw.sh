#!/usr/bin/env bash
# Throwaway Ceph RADOS Gateway (S3-compatible server) on loopback, for tests
# and benchmarks.
#
#   scripts/rgw.sh start <dir>   create a fresh one-mon/one-OSD memstore cluster
#                                in <dir> (its previous content is deleted),
#                                start mon, osd and radosgw, create the test
#                                user and write <dir>/env. Prints the endpoint.
#   scripts/rgw.sh stop <dir>    stop every daemon started from <dir> and remove
#                                its data (logs are kept). Idempotent.
#   scripts/rgw.sh status <dir>  exit 0 if the S3 endpoint of <dir> answers.
#
# <dir>/env holds `export` lines: S3_TEST_ENDPOINT, S3_TEST_ACCESS_KEY,
# S3_TEST_SECRET_KEY, S3_TEST_REGION, S3_TEST_KIND=rgw (source it).
#
# Environment knobs (all optional):
#   RGW_PORT             S3 (beast) port on 127.0.0.1; default: a free port
#   RGW_MON_PORT         monitor (msgr v1) port on 127.0.0.1; default: a free port
#   RGW_MEMSTORE_BYTES   OSD memstore capacity (held in RAM); default 3 GiB
#   RGW_START_TIMEOUT    deadline of one start attempt in seconds; default 60
#   RGW_START_ATTEMPTS   attempts (each from a clean dir); default 3
#
# Must run as root. Everything (config, data, sockets, pid files, logs) lives
# in <dir>; /etc/ceph and /var/lib/ceph are neither read nor written. Daemons
# only listen on 127.0.0.1 (OSDs pick ports in 6800-7300 like any Ceph OSD).
# Requires Debian packages ceph-mon ceph-osd radosgw ceph-common.
set -euo pipefail

ACCESS_KEY=tftpgw-test
SECRET_KEY=tftpgw-test-secret
REGION=us-east-1
POOLS=(.rgw.root default.rgw.log default.rgw.control default.rgw.meta
  default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec)

log() { printf 'rgw.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
  cat >&2 <<'EOF'
usage: scripts/rgw.sh start <dir>
       scripts/rgw.sh stop <dir>
       scripts/rgw.sh status <dir>
EOF
  exit 64
}

now_ms() { date +%s%3N; }

T0_MS=0
step() { # progress line with elapsed time, only with RGW_VERBOSE=1
  [[ ${RGW_VERBOSE:-0} == 1 ]] && log "+$(($(now_ms) - T0_MS))ms $*"
  return 0
}

# ---------------------------------------------------------------- ports ---

port_in_use() { # $1=port -> 0 if something listens on 127.0.0.1:$1 (or any addr)
  local p=$1
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "( sport = :$p )" 2>/dev/null | grep -q . && return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && return 0
  return 1
}

# Prints a currently free port, avoiding $@. Picked below the kernel's
# ephemeral range (outgoing connections would otherwise grab it between this
# check and the daemon's bind), and away from Ceph's 6800-7300.
free_port() {
  local p i avoid lo=32768 hi=60999 base=10000 span
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  if ((lo > base + 2000)); then span=$((lo - base)); else base=$((hi + 1)); span=$((65535 - hi)); fi
  ((span > 0)) || { base=20000; span=10000; }
  for ((i = 0; i < 200; i++)); do
    p=$((base + (RANDOM * 32768 + RANDOM) % span))
    for avoid in "$@"; do [[ $p == "$avoid" ]] && continue 2; done
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "could not find a free TCP port"
}

# ---------------------------------------------------------- processes ---

# PIDs of live processes with the argument "$1/ceph.conf" (we always pass -c it).
dir_pids() {
  local conf="$1/ceph.conf" f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    [[ $cmd == *" $conf "* ]] && echo "$pid"
  done
  return 0
}

# Is $2 a live process started with "$1/ceph.conf"? (guards against pid reuse)
pid_is_ours() {
  local pid=$2 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmd == *" $1/ceph.conf "* ]]
}

# SIGTERM the given pids (all started from $1), wait up to 5 s, then SIGKILL.
term_then_kill() {
  local dir=$1 p i alive=()
  shift
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive=()
    for p in "$@"; do pid_is_ours "$dir" "$p" && alive+=("$p"); done
    ((${#alive[@]})) || return 0
    sleep 0.1
  done
  log "still alive 5 s after SIGTERM, sending SIGKILL: ${alive[*]}"
  kill -KILL "${alive[@]}" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    local left=0
    for p in "${alive[@]}"; do pid_is_ours "$dir" "$p" && left=1; done
    ((left)) || return 0
    sleep 0.1
  done
  log "warning: could not kill: ${alive[*]}"
}

# Is daemon $2 (e.g. osd.0) of $1 running? Unknown (no pid file yet) = yes.
daemon_alive() {
  local f=$1/run/$2.pid
  [[ -f $f ]] || return 0
  pid_is_ours "$1" "$(tr -dc '0-9' 2>/dev/null <"$f" || true)"
}

# Stop every process started from $1, in order: radosgw and clients (radosgw
# unregisters watches, which hangs if the OSD is gone), then the OSD (it tells
# the monitor it is going down and would wait 5 s for a dead one), then the
# monitor. Finds them by pid file and by "-c <dir>/ceph.conf" on the command line.
kill_daemons() {
  local dir=$1 pids=() mons=() osds=() others=() p f cmd
  if [[ -d $dir/run ]]; then
    for f in "$dir"/run/*.pid; do
      [[ -f $f ]] || continue
      p=$(tr -dc '0-9' 2>/dev/null <"$f" || true)
      pid_is_ours "$dir" "$p" && pids+=("$p")
    done
  fi
  while read -r p; do [[ -n $p ]] && pids+=("$p"); done < <(dir_pids "$dir")
  ((${#pids[@]})) || return 0
  mapfile -t pids < <(printf '%s\n' "${pids[@]}" | sort -u)
  for p in "${pids[@]}"; do
    cmd=$(tr '\0' ' ' 2>/dev/null </proc/"$p"/cmdline) || continue
    case $cmd in
    *ceph-mon\ *) mons+=("$p") ;;
    *ceph-osd\ *) osds+=("$p") ;;
    *) others+=("$p") ;;
    esac
  done
  term_then_kill "$dir" "${others[@]}"
  term_then_kill "$dir" "${osds[@]}"
  term_then_kill "$dir" "${mons[@]}"
}

wipe_dir() { # $1=dir, $2=keep_logs(0/1)
  local dir=$1 keep=${2:-0} e
  [[ -d $dir ]] || return 0
  shopt -s dotglob nullglob
  for e in "$dir"/*; do
    if ((keep)) && [[ $(basename "$e") == log ]]; then continue; fi
    rm -rf -- "$e"
  done
  shopt -u dotglob nullglob
}

# ----------------------------------------------------------------- ceph ---

CONF=
DEADLINE_MS=0

remaining_s() { # seconds left before the attempt deadline (>= 1)
  local r=$(((DEADLINE_MS - $(now_ms)) / 1000))
  ((r < 1)) && r=1
  echo "$r"
}

past_deadline() { (($(now_ms) >= DEADLINE_MS)); }

# Bounded, retried `ceph` call against our cluster (only used for idempotent
# commands). Retries because with auth none a client may send its command
# before it has received the monmap; the monitor then answers "wrong fsid"
# (client side: "Error EPERM: problem getting command descriptions from mon").
ceph_cli() {
  local t i rc=0
  for ((i = 0; i < 5; i++)); do
    t=$(remaining_s); ((t > 15)) && t=15
    rc=0
    timeout -k 2 "$t" ceph -c "$CONF" --connect-timeout "$t" "$@" && return 0 || rc=$?
    past_deadline && break
    sleep 0.2
  done
  return "$rc"
}

write_conf() { # $1=dir $2=fsid $3=mon_port $4=rgw_port $5=memstore_bytes
  local d=$1
  cat >"$d/ceph.conf" <<EOF
# generated by scripts/rgw.sh: throwaway loopback cluster, do not edit
[global]
fsid = $2
mon_host = [v1:127.0.0.1:$3]
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
public_network = 127.0.0.0/8
ms_bind_msgr1 = true
ms_bind_msgr2 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = $d/keyring
run_dir = $d/run
admin_socket = $d/run/\$name.asok
pid_file = $d/run/\$name.pid
log_file = $d/log/\$name.log
mon_cluster_log_file = $d/log/cluster.log
crash_dir = $d/crash
exec_dir = $d/run
log_to_stderr = false
err_to_stderr = true
log_to_journald = false
err_to_journald = false
log_to_syslog = false
err_to_syslog = false
mon_cluster_log_to_syslog = false
mon_cluster_log_to_file = true
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
mon_max_pg_per_osd = 1000
# single mon: commit map changes quickly (default 1 s per pool command)
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[mon]
mon_data = $d/mon/\$name
mon_compact_on_start = false

[osd]
osd_data = $d/osd/\$name
osd_objectstore = memstore
memstore_device_bytes = $5
# With auth none the OSD may send its start-up mon commands (crush location,
# device class) before it has received the monmap, i.e. with fsid 0, and the
# monitor rejects them with 'wrong fsid' (osd exits). The script places the
# OSD in the crush map itself instead.
osd_crush_update_on_start = false
osd_class_update_on_start = false

[client]
# one socket per client process, so radosgw-admin/ceph never clash with radosgw
admin_socket = $d/run/\$name.\$pid.asok
log_file = $d/log/\$name.log

[client.rgw]
admin_socket = $d/run/\$name.asok
pid_file = $d/run/\$name.pid
rgw_data = $d/rgw
rgw_frontends = beast endpoint=127.0.0.1:$4
rgw_dns_name =
rgw_thread_pool_size = 128
rgw_enable_usage_log = false
rgw_enable_ops_log = false
EOF
}

tail_logs() { # $1=dir
  local f
  for f in "$1"/log/*.log "$1"/log/*.stderr; do
    [[ -s $f ]] || continue
    printf '\n----- %s (last 25 lines) -----\n' "$f" >&2
    tail -n 25 "$f" >&2 || true
  done
}

# One start attempt in an empty $dir. Returns non-zero on failure.
start_once() {
  local dir=$1 mon_port=$2 rgw_port=$3 bytes=$4 fsid osd_uuid osd_id i
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p "$dir"/{run,log,mon,osd,rgw,crash}
  CONF=$dir/ceph.conf
  write_conf "$dir" "$fsid" "$mon_port" "$rgw_port" "$bytes"

  # keyring is not used for auth (auth none) but keeps tools from searching /etc/ceph
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' \
    >"$dir/log/setup.stderr" 2>&1 || return 1
  ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' \
    --cap osd 'allow *' --cap mgr 'allow *' >>"$dir/log/setup.stderr" 2>&1 || return 1

  # --- monitor
  step "mkfs mon"
  monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" \
    "$dir/monmap" >>"$dir/log/setup.stderr" 2>&1 || return 1
  timeout -k 2 30 ceph-mon -c "$CONF" -i a --mkfs --monmap "$dir/monmap" \
    --keyring "$dir/keyring" >>"$dir/log/setup.stderr" 2>&1 || { log "ceph-mon --mkfs failed"; return 1; }
  ceph-mon -c "$CONF" -i a >"$dir/log/mon.a.stderr" 2>&1 || { log "ceph-mon failed to start"; return 1; }

  step "mon started"
  # Wait until *our* monitor answers (same fsid) before touching the OSD
  # (racing it produced 'wrong fsid' failures; see also ceph_cli and the
  # osd_*_update_on_start settings).
  local got=
  until past_deadline; do
    got=$(ceph_cli fsid 2>>"$dir/log/setup.stderr" || true)
    [[ $got == "$fsid" ]] && break
    daemon_alive "$dir" mon.a || { log "ceph-mon exited"; return 1; }
    sleep 0.2
  done
  [[ $got == "$fsid" ]] || { log "monitor did not answer with fsid $fsid (got '${got}')"; return 1; }

  # --- OSD
  step "mon answers"
  osd_id=$(ceph_cli osd new "$osd_uuid" 2>>"$dir/log/setup.stderr") || { log "ceph osd new failed"; return 1; }
  [[ $osd_id =~ ^[0-9]+$ ]] || { log "unexpected osd id '$osd_id'"; return 1; }
  ceph_cli osd crush add "osd.$osd_id" 1.0 host=localhost root=default \
    >>"$dir/log/setup.stderr" 2>&1 || { log "ceph osd crush add failed"; return 1; }
  mkdir -p "$dir/osd/osd.$osd_id"
  timeout -k 2 "$(remaining_s)" ceph-osd -c "$CONF" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" \
    >>"$dir/log/setup.stderr" 2>&1 || { log "ceph-osd --mkfs failed"; return 1; }
  ceph-osd -c "$CONF" -i "$osd_id" >"$dir/log/osd.$osd_id.stderr" 2>&1 || { log "ceph-osd failed to start"; return 1; }

  step "osd started"
  local up=0
  until past_deadline; do
    if ceph_cli osd dump 2>>"$dir/log/setup.stderr" | grep -Eq "^osd\.$osd_id up +in "; then up=1; break; fi
    daemon_alive "$dir" "osd.$osd_id" || { log "ceph-osd exited"; return 1; }
    sleep 0.3
  done
  ((up)) || { log "osd.$osd_id did not come up"; return 1; }

  # --- pools (rgw would otherwise create them with default pg counts). One
  # librados client for all 14 mon commands: a `ceph` CLI call per command
  # costs a python start-up each (seconds on a busy 2-CPU machine).
  step "osd up"
  timeout -k 2 "$(remaining_s)" /usr/bin/python3 - "$CONF" "$((DEADLINE_MS / 1000))" "${POOLS[@]}" \
    >>"$dir/log/setup.stderr" 2>&1 <<'PY' || { log "pool creation failed"; return 1; }
import json, sys, time
import rados  # python3-rados, a dependency of ceph-common
conf, deadline, pools = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
cluster = rados.Rados(conffile=conf, name="client.admin")
cluster.connect(timeout=10)
def mon(cmd):
    # retried: with auth none, early commands may be refused with 'wrong fsid'
    while True:
        ret, _, err = cluster.mon_command(json.dumps(cmd), b"", timeout=10)
        if ret == 0:
            return
        if time.time() > deadline:
            sys.exit("%s: %d %s" % (cmd, ret, err))
        time.sleep(0.2)
for p in pools:
    mon({"prefix": "osd pool create", "pool": p, "pg_num": 8, "pgp_num": 8,
         "pool_type": "replicated", "size": 1})
for p in pools:
    mon({"prefix": "osd pool application enable", "pool": p, "app": "rgw"})
print("pools created:", " ".join(pools))
cluster.shutdown()
PY
  # --- radosgw
  step "pools created"
  radosgw -c "$CONF" -n client.rgw >"$dir/log/client.rgw.stderr" 2>&1 || { log "radosgw failed to start"; return 1; }
  local ok=0 body
  until past_deadline; do
    body=$(curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$rgw_port/" 2>/dev/null || true)
    if [[ $body == *"<?xml"* || $body == *"ListAllMyBucketsResult"* ]]; then ok=1; break; fi
    daemon_alive "$dir" client.rgw || { log "radosgw exited"; return 1; }
    # radosgw stays up (without a frontend) when it cannot bind its port
    if grep -qE 'failed to bind address|failed initializing frontend' "$dir/log/client.rgw.log" 2>/dev/null; then
      log "radosgw could not listen on 127.0.0.1:$rgw_port"; return 1
    fi
    sleep 0.2
  done
  ((ok)) || { log "S3 endpoint http://127.0.0.1:$rgw_port/ did not answer"; return 1; }

  # --- test user
  step "S3 answers"
  local created=0
  for ((i = 0; i < 5; i++)); do
    if timeout -k 2 "$(remaining_s)" radosgw-admin -c "$CONF" -n client.admin user create \
      --uid tftpgw-test --display-name "tftp-gateway tests" \
      --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
      --max-buckets 0 >>"$dir/log/setup.stderr" 2>&1; then
      created=1; break
    fi
    past_deadline && break
    sleep 0.5
  done
  ((created)) || { log "radosgw-admin user create failed"; return 1; }

  step "user created"
  # Authenticated request must now succeed (user metadata is visible to rgw).
  ok=0
  until past_deadline; do
    if curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
      --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
      -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
      "http://127.0.0.1:$rgw_port/" 2>/dev/null | grep -q '^200$'; then ok=1; break; fi
    daemon_alive "$dir" client.rgw || { log "radosgw exited"; return 1; }
    sleep 0.2
  done
  ((ok)) || { log "authenticated ListBuckets as $ACCESS_KEY did not succeed"; return 1; }

  cat >"$dir/env.tmp" <<EOF
export S3_TEST_ENDPOINT=http://127.0.0.1:$rgw_port
export S3_TEST_ACCESS_KEY=$ACCESS_KEY
export S3_TEST_SECRET_KEY=$SECRET_KEY
export S3_TEST_REGION=$REGION
export S3_TEST_KIND=rgw
EOF
  mv "$dir/env.tmp" "$dir/env"
  return 0
}

cmd_start() {
  local dir=$1
  local attempts=${RGW_START_ATTEMPTS:-3} timeout_s=${RGW_START_TIMEOUT:-60}
  local bytes=${RGW_MEMSTORE_BYTES:-3221225472}
  local attempt mon_port rgw_port t0 rc
  for ((attempt = 1; attempt <= attempts; attempt++)); do
    t0=$(now_ms)
    T0_MS=$t0
    DEADLINE_MS=$((t0 + timeout_s * 1000))
    kill_daemons "$dir"
    wipe_dir "$dir" 0
    mkdir -p "$dir"
    if [[ -n ${RGW_PORT:-} ]]; then rgw_port=$RGW_PORT; else rgw_port=$(free_port) || exit 1; fi
    if [[ -n ${RGW_MON_PORT:-} ]]; then mon_port=$RGW_MON_PORT; else mon_port=$(free_port "$rgw_port") || exit 1; fi
    [[ $rgw_port =~ ^[0-9]+$ && $mon_port =~ ^[0-9]+$ && $rgw_port != "$mon_port" ]] ||
      die "bad ports: RGW_PORT=$rgw_port RGW_MON_PORT=$mon_port"
    if port_in_use "$rgw_port"; then die "RGW_PORT $rgw_port is already in use"; fi
    if port_in_use "$mon_port"; then die "RGW_MON_PORT $mon_port is already in use"; fi
    rc=0
    start_once "$dir" "$mon_port" "$rgw_port" "$bytes" || rc=$?
    if ((rc == 0)); then
      log "started in $((($(now_ms) - t0)))ms (attempt $attempt): mon 127.0.0.1:$mon_port, S3 http://127.0.0.1:$rgw_port"
      echo "http://127.0.0.1:$rgw_port"
      return 0
    fi
    log "start attempt $attempt/$attempts failed after $((($(now_ms) - t0)))ms"
    tail_logs "$dir"
    kill_daemons "$dir"
  done
  wipe_dir "$dir" 1
  die "could not start radosgw after $attempts attempts (logs of the last one: $dir/log)"
}

cmd_stop() {
  local dir=$1
  [[ -e $dir ]] || return 0
  kill_daemons "$dir"
  wipe_dir "$dir" 1
  return 0
}

cmd_status() {
  local dir=$1 ep
  [[ -f $dir/env ]] || return 1
  ep=$(sed -n 's/^export S3_TEST_ENDPOINT=//p' "$dir/env")
  curl -s --noproxy '*' --max-time 2 "$ep/" | grep -q '<?xml'
}

# ----------------------------------------------------------------- main ---

(($# == 2)) || usage
action=$1
dir=$2
if [[ $action == start ]]; then
  if ! command -v radosgw >/dev/null 2>&1; then
    echo "radosgw not found: install Debian packages ceph-mon ceph-osd radosgw ceph-common (bash .ci/run does this)" >&2
    exit 2
  fi
  for t in ceph ceph-mon ceph-osd ceph-authtool monmaptool radosgw-admin curl timeout; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found: install Debian packages ceph-mon ceph-osd radosgw ceph-common (and curl)"
  done
  /usr/bin/python3 -c 'import rados' 2>/dev/null || die "python3-rados not importable by /usr/bin/python3 (Debian package python3-rados, a dependency of ceph-common)"
  [[ $(id -u) == 0 ]] || die "must run as root (ceph daemons)"
fi
[[ -n $dir && $dir != / ]] || die "refusing to use directory '$dir'"
if [[ $action == stop || $action == status ]]; then
  [[ -d $dir ]] || exit $([[ $action == stop ]] && echo 0 || echo 1)
else
  mkdir -p "$dir" 2>/dev/null || true
fi
dir=$(cd "$dir" 2>/dev/null && pwd -P) || die "cannot use directory '$2'"
# the directory's content gets deleted: refuse obviously wrong choices
if [[ $dir == / || $dir == "${HOME:-/root}" || -e $dir/.git || -e $dir/package.json ]]; then
  die "refusing to use directory '$dir' (its content would be deleted)"
fi

case $action in
start) cmd_start "$dir" ;;
stop) cmd_stop "$dir" ;;
status) cmd_status "$dir" ;;
*) usage ;;
esac
