#!/usr/bin/env bash
# memory.sh - pyiscsi target memory leaving the RAM store's mapping out (/proc/PID/smaps):
# at rest after startup, under 4 KiB QD32 random writes and under 1 MiB QD8 writes (fio +
# libiscsi), sampled every INTERVAL s for DURATION s each, with a growth verdict (slope of the
# last WINDOW s, max - min). Work done by bench/memory.py; report written to
# bench/results/memory-YYYYmmdd-HHMMSS.md. Works from any cwd (common.sh).
#
#   DURATION=60 INTERVAL=3 REST=15 WINDOW=50 GROWTH=1.0 (MiB/min) LUN_SIZE=1GiB PORT=3299
#   LOOP=auto PYTHON=... FIO=... OUT=file.md  bash bench/memory.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BENCH_WORK=$(mktemp -d /tmp/pyiscsi-memory.XXXXXX)
trap 'rm -rf "$BENCH_WORK"' EXIT
export BENCH_WORK BENCH_PY=$PY
export FIO=${FIO:-${PEER_DIR:-/tmp/pyiscsi-peers}/bin/fio}
[[ -x $FIO ]] || { echo "memory.sh: no fio with the libiscsi engine at $FIO (../shared/peers/install.sh)" >&2; exit 1; }
[[ -n ${OUT:-} ]] && export OUT=$(_bench_abs "$OUT")
"$PY" "$REPO/bench/memory.py"
