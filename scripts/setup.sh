#!/usr/bin/env bash
# Everything a fresh Debian 12 machine of this kind needs, idempotent (a second run is quick):
# a Docker engine, mmdebstrap, the .venv with reproexec and the trainer's libraries, the offline
# base image. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/docker-engine.sh
bash scripts/slurm.sh  # a one-host Slurm cluster for the sweep tests (slurmctld + slurmd on localhost)

# mmdebstrap makes the offline base image (reproducibly: the same layer on every machine);
# chromium renders report.html in the tests; docker-registry serves a local registry so the
# tests pull a base pinned by digest.
missing=""
command -v mmdebstrap >/dev/null 2>&1 || missing="$missing mmdebstrap"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
if [ -n "$missing" ]; then
  echo "setup: installing$missing (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# torch/torchvision pins come from the machine's local disk index (see README).
.venv/bin/python -m pip install -q -e ".[train,demo,test]"

.venv/bin/reproexec base bootstrap >/dev/null
echo "setup: done (.venv, Docker engine, base image $(docker image inspect reproexec-base:bookworm --format '{{.Id}}' | cut -c1-19))"
