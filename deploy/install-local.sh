#!/usr/bin/env bash
# Install the project into ./.venv on one machine: torch 2.13.0 first (pinned, so nothing
# pulls a newer torch with gigabytes of CUDA packages), then the project with every extra.
# Idempotent: a second run only checks what is installed. The browser tests (tests/e2e) drive
# Debian's chromium: installed here when missing and we are root, so nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c deploy/constraints.txt -e ".[service,bench,dev,hf]"
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
# axe-core (the browser tests' accessibility check) into .node/, where tests/e2e finds it
AXE_VERSION=4.14.1
if [ ! -f .node/node_modules/axe-core/axe.min.js ]; then
  if command -v npm >/dev/null; then
    npm install --silent --no-save --no-package-lock --prefix .node "axe-core@${AXE_VERSION}" \
      || echo "axe-core could not be installed: the accessibility checks will skip (fail under CI=true)"
  else
    echo "npm is missing: install Node.js (apt-get install -y npm), or the accessibility checks will skip (fail under CI=true)"
  fi
fi
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser tests (apt-get install chromium)"
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
      || echo "chromium could not be installed: the browser tests will skip (fail under CI=true)"
  else
    echo "chromium is missing and this is not a root Debian shell: run 'apt-get install -y chromium' as root, or the browser tests will skip (fail under CI=true)"
  fi
fi
