#!/usr/bin/env bash
# workers_caw_race.sh - COMPARE AND WRITE race across two independent `pyiscsi serve`
# processes over one /dev/shm file (the naive `--workers` layout), against the control of both
# initiators on one process. Prints successes, miscompares and lost updates per round; exits
# 1 only if the one-process control loses an update. See bench/workers_caw_race.py.
#   SECONDS_EACH=8 ROUNDS=3 PORT_A=3313 PORT_B=3314 PYTHON=path/to/python
#   bash bench/workers_caw_race.sh
set -uo pipefail
BENCH_PEERS_OPTIONAL=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BENCH_WORK=$(mktemp -d /tmp/pyiscsi-caw.XXXXXX)
trap 'rm -rf "$BENCH_WORK"' EXIT
export BENCH_WORK BENCH_PY=$PY
"$PY" "$REPO/bench/workers_caw_race.py"
