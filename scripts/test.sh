#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -ra --durations=15 "$@"
