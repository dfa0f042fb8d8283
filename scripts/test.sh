#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite (unit, property-based and doctests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
