#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with every extra the demo and tests need.
# torch is pinned through constraints.txt so a CPU machine never downloads CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
pip_install() {
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
        grep -v "^WARNING: Location" "$log" >&2
        echo "setup failed: pip install $*" >&2
        exit 1
    fi
}
pip_install --upgrade pip
echo "installing pseudoanomaly and its extras into .venv (torch pinned by constraints.txt)"
# monai and torchio: the adapters' tests and docs (about 10 s and 300 MB installed, 264 MB of it SimpleITK, which
# torchio needs; no torchvision, no CUDA). Without them those tests skip and say so.
pip_install -c constraints.txt -e ".[test,lits,dicom,docs,monai,torchio]"
