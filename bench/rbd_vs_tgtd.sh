#!/usr/bin/env bash
# rbd_vs_tgtd.sh - pyiscsi on an rbd: LUN against tgtd's bs_rbd and against librbd driven
# from Python directly (bench/rbd_aio_baseline.py, the same ctypes binding, no iSCSI), on one
# Ceph cluster, ROUNDS interleaved rounds of the issue's workloads (fio + libiscsi through
# ../shared/peers/perf.sh). Prints every run, the medians, the ratios pyiscsi/tgtd and
# pyiscsi/librbd-python, and the targets' CPU per command (target_cpu% / IOPS), and writes
# the table to bench/results/rbd_vs_tgtd-DATE.md.
#
# tgtd twice, alike but for librbd's cache: "tgtd" with Ceph's default (rbd_cache = true, a
# write-back cache in the gateway) and "tgtd-nc" with a copy of the ceph.conf adding
# `[client] rbd cache = false` (bs_rbd's --bsopts conf=), as pyiscsi runs (no gateway cache:
# two gateways of one image never serve stale data). Like against like is pyiscsi/tgtd-nc.
#
# Ceph: uses $CEPH_CONF when it reaches a cluster, else starts micro-ceph (../shared/peers/
# micro-ceph.sh) in a private directory on CEPH_PORT and stops it at the end. The four images
# take 4 x SIZE_MB: a micro-ceph started here gets a memstore of 1.5 x that plus 1 GiB (at
# least 4 GiB); on a cluster of your own, leave room (a full OSD hangs the writes).
#   RUNTIME=10 ROUNDS=3 SIZE_MB=1024 WORKLOADS="seqwrite-1m-qd8 ..." PY_PORT=3297 \
#   TGT_PORT=3298 TGT_NC_PORT=3299 CTRL_PORT=41 CTRL_NC_PORT=42 CEPH_PORT=47600 bash bench/rbd_vs_tgtd.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
export RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
SIZE_MB=${SIZE_MB:-1024}
PY_PORT=${PY_PORT:-3297}
TGT_PORT=${TGT_PORT:-3298}
TGT_NC_PORT=${TGT_NC_PORT:-3299}
CTRL_PORT=${CTRL_PORT:-41}
CTRL_NC_PORT=${CTRL_NC_PORT:-$((CTRL_PORT + 1))}
CEPH_PORT=${CEPH_PORT:-47600}
WORKLOADS=${WORKLOADS:-"seqwrite-1m-qd8 seqread-1m-qd8 randwrite-4k-qd32 randread-4k-qd32"}
WORK=$(mktemp -d)
PYPID=
OWN_CEPH=
TAG=$$
cleanup() {
    [[ -n $PYPID ]] && kill "$PYPID" 2>/dev/null && wait "$PYPID" 2>/dev/null
    WORKDIR=$WORK/tgt "$PEERS/stop-tgtd.sh" >/dev/null 2>&1
    WORKDIR=$WORK/tgt-nc "$PEERS/stop-tgtd.sh" >/dev/null 2>&1
    ceph_cleanup "rbd/bench-py-$TAG" "rbd/bench-tgt-$TAG" "rbd/bench-tgt-nc-$TAG" "rbd/bench-base-$TAG"
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/py" "$WORK/tgt" "$WORK/tgt-nc" "$WORK/out"

for c in "$CTRL_PORT" "$CTRL_NC_PORT"; do
    if [[ -e /var/run/tgtd/socket.$c.lock ]] && fuser "/var/run/tgtd/socket.$c.lock" >/dev/null 2>&1; then
        echo "rbd_vs_tgtd.sh: tgtd control port $c is in use by another tgtd; set CTRL_PORT/CTRL_NC_PORT" >&2
        exit 1
    fi
done
# room for the four images and then some: a full memstore OSD hangs the writes
osd_bytes=$(( (4 * SIZE_MB * 3 / 2 + 1024) * 1024 * 1024 ))
((osd_bytes < 4 * 1024 * 1024 * 1024)) && osd_bytes=$((4 * 1024 * 1024 * 1024))
ceph_cluster "${CEPH_OSD_BYTES:-$osd_bytes}" || exit 1

(cd "$WORK/py" && exec "$PY" -m pyiscsi.cli serve --portal "127.0.0.1:$PY_PORT" --admin-socket off \
    --ceph-conf "$CEPH_CONF" --lun "rbd:rbd/bench-py-$TAG,size=${SIZE_MB}MiB" \
    >"$WORK/py.out" 2>"$WORK/py.err") &
PYPID=$!
start_tgtd() {  # NAME PORT CTRL CONF -> the LUN's URL on stdout; pid in $WORK/NAME/tgtd.pid
    local url pid
    url=$(WORKDIR=$WORK/$1 BACKING=rbd RBD_IMAGE=rbd/bench-$1-$TAG SIZE_MB=$SIZE_MB PORT=$2 \
        CTRL_PORT=$3 CEPH_CONF=$4 "$PEERS/start-tgtd.sh" 2>"$WORK/$1.err" | tail -n 1)
    pid=$(cat "$WORK/$1/tgtd.pid" 2>/dev/null)
    if [[ -z $url || -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        echo "rbd_vs_tgtd.sh: tgtd ($1) did not start (control port $3 taken? see /var/run/tgtd):" >&2
        cat "$WORK/$1.err" >&2
        return 1
    fi
    echo "$url"
}
NC_CONF=$WORK/ceph-nocache.conf
nocache_conf "$NC_CONF"
TGTURL=$(start_tgtd tgt "$TGT_PORT" "$CTRL_PORT" "$CEPH_CONF") || exit 1
TGTPID=$(cat "$WORK/tgt/tgtd.pid")
TGTNCURL=$(start_tgtd tgt-nc "$TGT_NC_PORT" "$CTRL_NC_PORT" "$NC_CONF") || exit 1
TGTNCPID=$(cat "$WORK/tgt-nc/tgtd.pid")
wait_serving "$PYPID" "$WORK/py.out" "$WORK/py.err" || exit 1
PYURL=iscsi://127.0.0.1:$PY_PORT/iqn.2026-11.org.pyiscsi:disk/0

baseline() {  # workload name -> one perf.sh-like line from rbd_aio_baseline.py
    local name=$1 rw bs qd
    IFS=- read -r rw bs qd <<<"$name"
    case $rw in seqwrite) rw=write ;; seqread) rw=read ;; esac
    case $bs in 1m) bs=1048576 ;; 4k) bs=4096 ;; 128k) bs=131072 ;; esac
    "$PY" "$REPO/bench/rbd_aio_baseline.py" --conf "$CEPH_CONF" --image "rbd/bench-base-$TAG" \
        --size $((SIZE_MB << 20)) --rw "$rw" --bs "$bs" --qd "${qd#qd}" --seconds "$RUNTIME" 2>/dev/null |
        awk -v n="$name" '{printf "%s %s %s - - - %s -\n", n, $3, $5, $11}' | tr -d '%'
}

HEAD="# pyiscsi $PYURL  tgtd(bs_rbd, rbd_cache on) $TGTURL  tgtd-nc(rbd_cache off) $TGTNCURL  ceph $CEPH_CONF  runtime ${RUNTIME}s  rounds $ROUNDS  $(nproc) cores  $(date -Is)"
echo "$HEAD"
: >"$WORK/all.txt"
run_one() {  # TARGET WORKLOAD ROUND: one line into all.txt
    local url pid
    case $1 in
        pyiscsi) url=$PYURL pid=$PYPID ;;
        tgtd) url=$TGTURL pid=$TGTPID ;;
        tgtd-nc) url=$TGTNCURL pid=$TGTNCPID ;;
        librbd-py) baseline "$2" | sed "s/^/librbd-py $3 /" | tee -a "$WORK/all.txt"; return ;;
    esac
    WARMUP=0 WORKLOADS=$2 TARGET_PID=$pid OUTDIR=$WORK/out "$PEERS/perf.sh" "$url" 2>/dev/null |
        tail -n 1 | sed "s/^/$(printf '%-7s' "$1") $3 /" | tee -a "$WORK/all.txt"
}
# Each workload starts with the baseline (librbd from Python, the heaviest run: what follows
# it finds the cluster busiest), then the three targets in an order that rotates each round, so
# over 3 rounds (or any multiple) each target runs once right after the baseline, once second
# and once last.
TARGETS=(pyiscsi tgtd tgtd-nc)
for ((r = 1; r <= ROUNDS; r++)); do
    for w in $WORKLOADS; do
        run_one librbd-py "$w" "$r"
        for ((k = 0; k < ${#TARGETS[@]}; k++)); do
            run_one "${TARGETS[$(((r - 1 + k) % ${#TARGETS[@]}))]}" "$w" "$r"
        done
    done
done

TABLE=$("$PY" - "$WORK/all.txt" "$WORKLOADS" <<'PYEOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
def med(target, workload, col):
    vals = [float(r[col]) for r in rows if r[0] == target and r[2] == workload and r[col] != "-"]
    return statistics.median(vals) if vals else float("nan")
print("| workload | pyiscsi MB/s | tgtd MB/s (cache on) | tgtd-nc MB/s (cache off) "
      "| librbd-py MB/s | pyiscsi/tgtd | pyiscsi/tgtd-nc | pyiscsi/librbd-py "
      "| pyiscsi CPU us/cmd | tgtd CPU us/cmd | tgtd-nc CPU us/cmd | librbd-py CPU us/io "
      "| pyiscsi/tgtd-nc by round |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
def by_round(w):
    mbs = {(r[0], r[1]): float(r[3]) for r in rows if r[2] == w and r[3] != "-"}
    rounds = sorted({r[1] for r in rows if r[2] == w}, key=int)
    return " ".join(f"{mbs[('pyiscsi', n)] / mbs[('tgtd-nc', n)]:.2f}" for n in rounds
                    if ("pyiscsi", n) in mbs and mbs.get(("tgtd-nc", n)))
for w in sys.argv[2].split():
    py, tg, nc, lb = (med(t, w, 3) for t in ("pyiscsi", "tgtd", "tgtd-nc", "librbd-py"))
    def cpu(t):
        vals = [float(r[8]) / 100 / float(r[4]) * 1e6 for r in rows
                if r[0] == t and r[2] == w and r[8] not in ("-", "n/a") and float(r[4]) > 0]
        return statistics.median(vals) if vals else float("nan")
    print(f"| {w} | {py:.1f} | {tg:.1f} | {nc:.1f} | {lb:.1f} | {py / tg:.2f} | {py / nc:.2f} "
          f"| {py / lb:.2f} | {cpu('pyiscsi'):.0f} | {cpu('tgtd'):.0f} | {cpu('tgtd-nc'):.0f} "
          f"| {cpu('librbd-py'):.0f} | {by_round(w)} |")
PYEOF
)
echo "# medians of $ROUNDS interleaved rounds (MB = 10^6 bytes; CPU per command = target_cpu% / IOPS)"
echo "$TABLE"
mkdir -p "$REPO/bench/results"
OUT=$REPO/bench/results/rbd_vs_tgtd-$(date +%Y%m%d-%H%M%S).md
{
    echo "# rbd_vs_tgtd.sh $(date -Is)"
    echo
    echo "$HEAD"
    echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine)"
    echo
    echo "$TABLE"
    echo
    echo '```'
    echo "target round workload MB/s IOPS lat_mean_us lat_p99_us client_cpu% target_cpu% host_busy%"
    cat "$WORK/all.txt"
    echo '```'
} >"$OUT"
echo "# written to $OUT"
