#!/usr/bin/env bash
# linux/arm64 on this amd64 machine, emulated (idempotent): Debian's qemu-user-static registered with
# binfmt_misc (flag F, so it works inside containers), and, with --prepare-in-background, the arm64
# base and the arm64 demo image made while the rest of the suite runs (the emulated tests wait for
# it: ~10 min of one core, mostly pip installing torch under qemu). On an arm64 machine: nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -m)" = "x86_64" ] || exit 0

missing=""
for pkg in qemu-user-static binfmt-support arch-test; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "arm64: installing$missing (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  echo "arm64: qemu-aarch64 is not registered with binfmt_misc" >&2
  exit 1
fi
echo "arm64: qemu-user registered ($(head -c 200 /proc/sys/fs/binfmt_misc/qemu-aarch64 | grep -m1 flags))"

if [ "${1:-}" = "--prepare-in-background" ]; then
  log=${ARM64_PREP_LOG:-/tmp/reproexec-arm64-prep.log}
  # at the lowest CPU priority (nice; the build's steps at Docker's least CPU weight): the suite
  # runs at full speed and the arm64 work takes the CPU time the suite leaves idle
  REPROEXEC_BUILD_CPU_SHARES=2 nohup nice -n 19 bash -c '
    set -e
    .venv/bin/reproexec base bootstrap --arch arm64
    .venv/bin/reproexec build examples/digits/config.arm64.yaml
    echo "arm64 prepare: done"
  ' >"$log" 2>&1 &
  echo $! >"${log%.log}.pid"
  echo "arm64: base and image being made in the background (log: $log)"
fi
