#!/usr/bin/env bash
# Debian packages the tests need: real TFTP clients and daemons for interop and benchmarks,
# Ceph RGW as the reference S3-compatible server, nftables/iproute2 for lossy-network tests,
# Prometheus (prometheus + promtool) to run the dashboard's queries and the alert rules' tests.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  tftp-hpa atftp busybox curl tftpd-hpa nftables iproute2 \
  ceph-mon ceph-osd radosgw ceph-common prometheus >/dev/null
