#!/usr/bin/env bash
# perf_vs_tgtd.sh - pyiscsi against tgtd with stock keys and with tuned keys
# (MaxRecvDataSegmentLength = FirstBurstLength = 256 KiB, InitialR2T=No), all on 1 GiB RAM LUNs,
# the same fio (libiscsi engine) workloads, ROUNDS interleaved rounds (target and workload order
# rotated per round), medians. Also `pyiscsi bench` (our initiator) against fio on the pyiscsi
# target, and pyiscsi's copy counters by payload size per workload. The work is done by
# bench/perf_vs_tgtd.py; the report goes to bench/results/perf_vs_tgtd-YYYYmmdd-HHMMSS.md.
# Works from any cwd: the venv and ../shared/peers are found beside this checkout (common.sh).
#
# Workloads: seqread-128k-qd16 seqread-1m-qd8 seqwrite-128k-qd16 seqwrite-1m-qd8
#   randread-4k-qd32 randwrite-4k-qd32 randread-4k-qd1 randread-4k-16s-qd2 (16 fio jobs of
#   QD2, each its own session). Default ~16 minutes (3 rounds x 8 s + 2 s ramp per run).
#
#   QUICK=1 (1 round, 3 s, 1 s ramp)  RUNTIME=8 RAMP=2 ROUNDS=3  WORKLOADS="..."
#   INI_WORKLOADS="..." (pyiscsi bench; default the single-session workloads)
#   PYTHON=path/to/python (the target's and pyiscsi bench's interpreter: a pure or compiled build)
#   LOOP=auto|uvloop|asyncio  PEERS=DIR  FIO=path  OUT=file.md
#   PY_PORT=3295 TGT_PORT=3296 TUNED_PORT=3297 CTRL_PORT=7 TUNED_CTRL_PORT=8
#   bash bench/perf_vs_tgtd.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BENCH_WORK=$(mktemp -d /tmp/pyiscsi-perf.XXXXXX)
trap 'rm -rf "$BENCH_WORK"' EXIT
export BENCH_WORK BENCH_PY=$PY BENCH_PYISCSI="${PYISCSI[*]}" PEERS
export FIO=${FIO:-${PEER_DIR:-/tmp/pyiscsi-peers}/bin/fio}
[[ -n ${OUT:-} ]] && export OUT=$(_bench_abs "$OUT")
"$PY" "$REPO/bench/perf_vs_tgtd.py"
