#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io if no dockerd
# exists, start it in the background, and wait until `docker info` answers.
set -euo pipefail
log=${DOCKERD_LOG:-/tmp/dockerd.log}

if docker info >/dev/null 2>&1; then
  echo "docker engine: already running"; exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker engine: installing docker.io from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
echo "docker engine: starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "docker engine: ready"; exit 0; fi
  sleep 1
done
echo "docker engine: dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 30 "$log" >&2
exit 1
