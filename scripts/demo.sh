#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up (idempotent), write the demo dataset
# (scikit-learn's digits; no download), then train it reproducibly in the hardened container.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -f data/digits-v1/manifest.json ]; then
  .venv/bin/reproexec data demo data/digits-v1
fi
exec .venv/bin/reproexec run examples/digits/config.yaml "$@"
