#!/usr/bin/env bash
# Debian packages the tests need: real TFTP clients and daemons for interop and benchmarks,
# Ceph RGW as the reference S3-compatible server, nftables/iproute2 for lossy-network tests,
# Prometheus (prometheus + promtool) to run the dashboard's queries and the alert rules' tests,
# QEMU with SeaBIOS, OVMF and iPXE's NIC ROMs for the real-firmware boot test (test/firmware),
# nginx as the HTTP yardstick in the benchmark and its test (each run starts its own instance with a generated config).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  tftp-hpa atftp busybox curl tftpd-hpa nftables iproute2 \
  ceph-mon ceph-osd radosgw ceph-common prometheus \
  qemu-system-x86 ipxe-qemu ovmf ipxe nginx >/dev/null
