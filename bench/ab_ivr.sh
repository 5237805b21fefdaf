#!/bin/bash
# Node against node at 300 IVR calls: each source tree's own bench/asterisk_ivr.py --only node, alternating, twice.
# Usage: bench/ab_ivr.sh label=TREE label=TREE ...   (each TREE a checkout with its own `make compiled`)
# Prints one RESULT line per tree and round; compare node_cores within the run (the host is shared and noisy).
set -euo pipefail
PY="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"
for round in 1 2; do
  for spec in "$@"; do
    label=${spec%%=*}; tree=${spec#*=}
    (cd "$tree" && PYTHONPATH=src OPENBLAS_NUM_THREADS=1 "$PY" bench/asterisk_ivr.py --calls 300 --hold 30 --capture 15 --only node 2>&1 \
      | grep "^RESULT" | sed "s/^/$label round $round: /")
  done
done
