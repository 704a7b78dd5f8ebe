#!/usr/bin/env bash
# perf_vs_tgtd.sh - the same fio (libiscsi engine) load against pyiscsi and tgtd, one run,
# workloads interleaved (pyiscsi, tgtd, pyiscsi, tgtd, ...) so both see the same machine.
# Prints perf.sh's lines for each target and the pyiscsi/tgtd MB/s ratio per workload.
# Works from any cwd: the venv and ../shared/peers are found beside this checkout (common.sh).
#   RUNTIME=15 WARMUP=2 WORKLOADS="randread-4k-qd32 ..." LOOP=uvloop|asyncio \
#   PEERS=DIR PYTHON=.venv/bin/python PY_PORT=3295 TGT_PORT=3296 CTRL_PORT=7 \
#   bash bench/perf_vs_tgtd.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export RUNTIME=${RUNTIME:-15}
WARMUP=${WARMUP:-2}
PY_PORT=${PY_PORT:-3295}
TGT_PORT=${TGT_PORT:-3296}
WORK=$(mktemp -d)
PYPID=
WORKLOADS_ALL="seqread-128k-qd16 seqread-1m-qd8 seqwrite-128k-qd16 seqwrite-1m-qd8 randread-4k-qd32 randwrite-4k-qd32 randread-4k-qd1"
trap '[[ -n $PYPID ]] && kill $PYPID 2>/dev/null; WORKDIR=$WORK/tgt "$PEERS/stop-tgtd.sh" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/py" "$WORK/tgt"
(cd "$WORK/py" && exec "$PY" -m pyiscsi.cli serve --loop "${LOOP:-auto}" --portal "127.0.0.1:$PY_PORT" \
   --lun ram:1GiB >"$WORK/py.out" 2>"$WORK/py.err") &
PYPID=$!
TGTURL=$(WORKDIR=$WORK/tgt PORT=$TGT_PORT CTRL_PORT=${CTRL_PORT:-7} "$PEERS/start-tgtd.sh" 2>"$WORK/tgt.err" | tail -n 1)
TGTPID=$(cat "$WORK/tgt/tgtd.pid" 2>/dev/null) || { echo "perf_vs_tgtd.sh: tgtd did not start:" >&2; cat "$WORK/tgt.err" >&2; exit 1; }
wait_serving "$PYPID" "$WORK/py.out" "$WORK/py.err" || exit 1
PYURL=iscsi://127.0.0.1:$PY_PORT/iqn.2026-11.org.pyiscsi:disk/0
echo "# pyiscsi $PYURL ($PY)  tgtd $TGTURL  runtime ${RUNTIME}s  $(nproc) cores  $(date -Is)"
for w in ${WORKLOADS:-$WORKLOADS_ALL}; do
  WARMUP=$WARMUP WORKLOADS=$w TARGET_PID=$PYPID OUTDIR=$WORK/out "$PEERS/perf.sh" "$PYURL" 2>/dev/null |
    tail -n 1 | sed 's/^/pyiscsi /' >>"$WORK/py.txt"
  WARMUP=$WARMUP WORKLOADS=$w TARGET_PID=$TGTPID OUTDIR=$WORK/out "$PEERS/perf.sh" "$TGTURL" 2>/dev/null |
    tail -n 1 | sed 's/^/tgtd    /' >>"$WORK/tgt.txt"
done
printf '%-8s %-20s %9s %9s %11s %10s %11s %11s %10s\n' target workload MB/s IOPS lat_mean_us lat_p99_us client_cpu% target_cpu% host_busy%
cat "$WORK/py.txt" "$WORK/tgt.txt"
echo "# ratio pyiscsi/tgtd (MB/s)"
paste "$WORK/py.txt" "$WORK/tgt.txt" | awk '{printf "%-20s %.2f\n", $2, ($12 > 0 ? $3/$12 : 0)}'
