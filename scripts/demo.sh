#!/usr/bin/env bash
# Install everything into .venv and run the main demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m examples.lits demo "$@"
