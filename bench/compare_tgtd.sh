#!/bin/bash
# compare_tgtd.sh [URL] - `pyiscsi bench` vs fio+libiscsi (perf.sh) against the same tgtd,
# same workloads, interleaved (fio, ours, fio, ours, ...) and repeated; prints both side by side.
#
# Without URL, starts tgtd with ../shared/peers/start-tgtd.sh (PORT, default 3262) and
# stops it on exit. WARNING: the write workloads overwrite the LUN.
# Works from any cwd: the venv and ../shared/peers are found beside this checkout (common.sh).
#
# Environment:
#   RUNTIME    seconds per run                                   [10]
#   REPEAT     rounds (each round runs fio then ours per workload) [2]
#   WORKLOADS  subset of: seqread-1m-qd8 seqread-128k-qd16 seqwrite-1m-qd8
#              seqwrite-128k-qd16 randread-4k-qd32 randwrite-4k-qd32 randread-4k-qd1
#   PYISCSI    our CLI            [$REPO/.venv/bin/pyiscsi, else "$PYTHON -m pyiscsi.cli"]
#   PYTHON     python for the latter                  [$REPO/.venv/bin/python, else python3]
#   PEERS      the peer scripts                                 [../shared/peers beside the checkout]
#   TGT_PARAMS passed to start-tgtd.sh (e.g. "MaxRecvDataSegmentLength=262144")
#
# Output: one line per workload and round, then the medians:
#   workload  round  fio_MB/s  ours_MB/s  ratio  fio_IOPS  ours_IOPS  fio_p99_us  ours_p99_us
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PORT=${PORT:-3262}
RUNTIME=${RUNTIME:-10}
REPEAT=${REPEAT:-2}
WORKLOADS=${WORKLOADS:-"seqread-1m-qd8 seqread-128k-qd16 seqwrite-1m-qd8 randread-4k-qd32 randwrite-4k-qd32 randread-4k-qd1"}
URL=${1:-}
STARTED=
OWN_WORKDIR=
[[ -n ${WORKDIR:-} ]] || { WORKDIR=$(mktemp -d /tmp/pyiscsi-compare.XXXXXX); OWN_WORKDIR=1; }
WORKDIR=$(_bench_abs "$WORKDIR")

cleanup() {
    [[ -n $STARTED ]] && WORKDIR=$WORKDIR "$PEERS/stop-tgtd.sh" >/dev/null 2>&1
    [[ -n $OWN_WORKDIR ]] && rm -rf "$WORKDIR"
}
trap cleanup EXIT

if [[ -z $URL ]]; then
    URL=$(WORKDIR=$WORKDIR PORT=$PORT CTRL_PORT=${CTRL_PORT:-19} "$PEERS/start-tgtd.sh" 2>/dev/null | tail -1) \
        || { echo "compare_tgtd.sh: cannot start tgtd" >&2; exit 1; }
    STARTED=1
fi
TPID=$(cat "$WORKDIR/tgtd.pid" 2>/dev/null || true)
echo "# target $URL  ours: ${PYISCSI[*]}  runtime ${RUNTIME}s  rounds $REPEAT  $(nproc) cores  $(date -Is)"

# warm tgtd's allocator once (perf.sh does the same for fio)
"${PYISCSI[@]}" bench "$URL" --rw write --bs 1m --qd 8 --time 2 >/dev/null 2>"$WORKDIR/warm.err" || {
    echo "compare_tgtd.sh: ${PYISCSI[*]} bench failed:" >&2; cat "$WORKDIR/warm.err" >&2; exit 1; }

RESULTS=$WORKDIR/results.txt
: >"$RESULTS"
printf '%-18s %5s %9s %9s %6s %9s %9s %10s %10s\n' workload round fio_MB/s ours_MB/s ratio \
    fio_IOPS ours_IOPS fio_p99_us ours_p99_us
for round in $(seq "$REPEAT"); do
  for w in $WORKLOADS; do
    IFS=- read -r kind bs qd <<<"$w"; qd=${qd#qd}
    case $kind in seqread) rw=read ;; seqwrite) rw=write ;; *) rw=$kind ;; esac
    fio=$(RUNTIME=$RUNTIME RAMP=1 WARMUP=0 TARGET_PID=$TPID WORKLOADS=$w \
          "$PEERS/perf.sh" "$URL" 2>/dev/null | awk -v w="$w" '$1==w {print $2, $3, $5}')
    ours=$("${PYISCSI[@]}" bench "$URL" --rw "$rw" --bs "$bs" --qd "$qd" --time "$RUNTIME" --ramp 1 \
           2>/dev/null | tr ' ' '\n' | awk -F= '$1=="MB/s"{m=$2} $1=="IOPS"{i=$2} $1=="lat_p99_us"{p=$2} END{print m, i, p}')
    read -r fmb fiops fp99 <<<"${fio:-0 0 0}"
    read -r omb oiops op99 <<<"${ours:-0 0 0}"
    ratio=$(awk -v a="$omb" -v b="$fmb" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    line=$(printf '%-18s %5s %9s %9s %6s %9s %9s %10s %10s' "$w" "$round" "$fmb" "$omb" "$ratio" \
           "$fiops" "$oiops" "$fp99" "$op99")
    echo "$line"; echo "$line" >>"$RESULTS"
  done
done

echo "# medians over $REPEAT rounds"
for w in $WORKLOADS; do
  awk -v w="$w" 'BEGIN{n=0} $1==w {f[n]=$3; o[n]=$4; n++}
    function med(a, n,   i, j, t) { for (i=0;i<n;i++) for (j=i+1;j<n;j++) if (a[j]<a[i]) {t=a[i]; a[i]=a[j]; a[j]=t}
                                     return n%2 ? a[int(n/2)] : (a[n/2-1]+a[n/2])/2 }
    END { if (n) { fm=med(f,n); om=med(o,n); printf "%-18s fio %9.1f MB/s   ours %9.1f MB/s   ours/fio %.2f\n", w, fm, om, (fm>0 ? om/fm : 0) } }' "$RESULTS"
done
