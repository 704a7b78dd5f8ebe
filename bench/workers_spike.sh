#!/usr/bin/env bash
# workers_spike.sh - issue 12, lever 3 spike: one `pyiscsi serve` process vs two independent
# ones over the SAME backing file in /dev/shm (both see the same data), fio + libiscsi,
# 4 KiB randread/randwrite as 16 sessions x QD2 and 2 sessions x QD16, sessions all on one
# process or split across the two. ROUNDS interleaved rounds (config and workload order
# rotated), medians; target CPU per command and fio's CPU too (the machine is shared).
# The work is done by bench/workers_spike.py; the report goes to
# bench/results/workers_spike-YYYYmmdd-HHMMSS.md. Works from any cwd (common.sh).
# Default ~5 minutes (3 rounds x 8 workload/config pairs x (8 s + 2 s ramp)).
#
#   RUNTIME=8 RAMP=2 ROUNDS=3 SIZE=512M LOOP=auto|uvloop|asyncio PORT_A=3311 PORT_B=3312
#   PYTHON=path/to/python PEERS=DIR FIO=path OUT=file.md
#   bash bench/workers_spike.sh
set -uo pipefail
BENCH_PEERS_OPTIONAL=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BENCH_WORK=$(mktemp -d /tmp/pyiscsi-workers.XXXXXX)
trap 'rm -rf "$BENCH_WORK"' EXIT
export BENCH_WORK BENCH_PY=$PY
export FIO=${FIO:-${PEER_DIR:-/tmp/pyiscsi-peers}/bin/fio}
[[ -n ${OUT:-} ]] && export OUT=$(_bench_abs "$OUT")
"$PY" "$REPO/bench/workers_spike.py"
