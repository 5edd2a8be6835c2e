#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/arm64.sh --prepare-in-background  # tests/emulated wait for it; the rest runs meanwhile
# Lint and format (pyproject.toml [tool.ruff]) before the suite: style is never argued.
.venv/bin/ruff check reproexec tests benchmarks
.venv/bin/ruff format --check reproexec tests benchmarks
exec .venv/bin/python -m pytest -ra --durations=15 "$@"
