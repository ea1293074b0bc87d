#!/usr/bin/env bash
# Install the project into ./.venv on one machine: torch 2.13.0 first (pinned, so nothing
# pulls a newer torch with gigabytes of CUDA packages), then the project with every extra.
# Idempotent: a second run only checks what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c deploy/constraints.txt -e ".[service,bench,dev,hf]"
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
