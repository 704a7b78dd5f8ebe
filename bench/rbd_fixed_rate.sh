#!/usr/bin/env bash
# rbd_fixed_rate.sh - CPU per command of pyiscsi and tgtd (bs_rbd, rbd cache off) on an RBD
# LUN at a FIXED rate (fio rate_iops), so the figure is not a by-product of saturation: both
# targets serve the same commands per second and only their CPU differs. Per workload and
# target it prints the achieved IOPS, the CPU per command of the target's main thread (user
# and system) and of librbd's threads, and, in a separate pass under `strace -c` (which slows
# the target, so its CPU is not taken from that pass), system calls per command.
#
# Images are filled first (a read of an object that does not exist costs the OSD nothing).
# Ceph: micro-ceph in a private directory unless $CEPH_CONF reaches a cluster.
#   RUNTIME=10 ROUNDS=3 SIZE_MB=256 WORKLOADS="read-1m-qd8@500 randwrite-4k-qd32@3000" \
#   PY_PORT=3327 TGT_PORT=3328 CTRL_PORT=45 CEPH_PORT=47640 bash bench/rbd_fixed_rate.sh
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUNTIME=${RUNTIME:-10}
ROUNDS=${ROUNDS:-3}
SIZE_MB=${SIZE_MB:-256}
WORKLOADS=${WORKLOADS:-"read-1m-qd8@500 randread-4k-qd32@3000 randwrite-4k-qd32@3000"}
PY_PORT=${PY_PORT:-3327}
TGT_PORT=${TGT_PORT:-3328}
CTRL_PORT=${CTRL_PORT:-45}
CEPH_PORT=${CEPH_PORT:-47640}
FIO=${FIO:-${PEER_DIR:-/tmp/pyiscsi-peers}/bin/fio}
WORK=$(mktemp -d)
PYPID=
OWN_CEPH=
TAG=$$
cleanup() {
    [[ -n $PYPID ]] && kill "$PYPID" 2>/dev/null && wait "$PYPID" 2>/dev/null
    WORKDIR=$WORK/tgt "$PEERS/stop-tgtd.sh" >/dev/null 2>&1
    ceph_cleanup "rbd/rate-py-$TAG" "rbd/rate-tgt-$TAG"
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/py" "$WORK/tgt"
[[ -x $FIO ]] || { echo "rbd_fixed_rate.sh: no fio with libiscsi at $FIO (../shared/peers/install.sh)" >&2; exit 1; }

ceph_cluster $((4 << 30)) || exit 1
NC_CONF=$WORK/ceph-nocache.conf
nocache_conf "$NC_CONF"

(cd "$WORK/py" && exec "$PY" -m pyiscsi.cli serve --portal "127.0.0.1:$PY_PORT" --admin-socket off \
    --ceph-conf "$CEPH_CONF" --lun "rbd:rbd/rate-py-$TAG,size=${SIZE_MB}MiB" \
    >"$WORK/py.out" 2>"$WORK/py.err") &
PYPID=$!
TGTURL=$(WORKDIR=$WORK/tgt BACKING=rbd RBD_IMAGE=rbd/rate-tgt-$TAG SIZE_MB=$SIZE_MB PORT=$TGT_PORT \
    CTRL_PORT=$CTRL_PORT CEPH_CONF=$NC_CONF "$PEERS/start-tgtd.sh" 2>"$WORK/tgt.err" | tail -n 1)
TGTPID=$(cat "$WORK/tgt/tgtd.pid" 2>/dev/null)
if [[ -z $TGTURL || -z $TGTPID ]]; then
    echo "rbd_fixed_rate.sh: tgtd did not start (control port $CTRL_PORT taken?):" >&2
    cat "$WORK/tgt.err" >&2
    exit 1
fi
wait_serving "$PYPID" "$WORK/py.out" "$WORK/py.err" || exit 1
PYURL=iscsi://127.0.0.1:$PY_PORT/iqn.2026-11.org.pyiscsi:disk/0

fio_url() { sed 's/:/\\:/g' <<<"$1"; }
run_fio() {  # URL RW BS QD RATE SECONDS JSON
    "$FIO" --name=rate --ioengine=libiscsi --initiator=iqn.2026-11.test:rate \
        --filename="$(fio_url "$1")" --rw="$2" --bs="$3" --iodepth="$4" ${5:+--rate_iops=$5} \
        --time_based --runtime="$6" --output-format=json --output="$7" >/dev/null 2>&1
}
for url in "$PYURL" "$TGTURL"; do  # fill both images: reads then fetch real objects
    "$FIO" --name=fill --ioengine=libiscsi --initiator=iqn.2026-11.test:rate \
        --filename="$(fio_url "$url")" --rw=write --bs=1m --iodepth=8 --size="${SIZE_MB}m" \
        >/dev/null 2>&1 || { echo "rbd_fixed_rate.sh: filling $url failed" >&2; exit 1; }
done

# measure TARGET PID URL WORKLOAD ROUND: one fixed-rate run, CPU of the middle of it
measure() {
    local target=$1 pid=$2 url=$3 w=$4 round=$5 spec rate rw bs qd fp
    spec=${w%@*}; rate=${w#*@}
    IFS=- read -r rw bs qd <<<"$spec"
    run_fio "$url" "$rw" "$bs" "${qd#qd}" "$rate" "$RUNTIME" "$WORK/fio.json" &
    fp=$!
    sleep 2
    "$PY" "$REPO/bench/thread_cpu.py" "$pid" $((RUNTIME - 4)) >"$WORK/cpu.txt"
    wait "$fp"
    "$PY" - "$target" "$w" "$round" "$WORK/fio.json" "$WORK/cpu.txt" $((RUNTIME - 4)) <<'PYEOF'
import json, sys
target, w, rnd, fio, cpu, secs = sys.argv[1:7]
job = json.load(open(fio))["jobs"][0]
iops = job["read"]["iops"] + job["write"]["iops"]
rows = [line.split() for line in open(cpu)]
hz = int(rows[-1][1])
main = {"pyiscsi": "python", "tgtd": "tgtd"}[target]
def us(ticks): return ticks / hz / float(secs) / iops * 1e6 if iops else float("nan")
mu = ms = lib = 0
for name, u, s in (r for r in rows[:-1]):
    if name == main: mu, ms = int(u), int(s)
    else: lib += int(u) + int(s)
print(f"{target} {rnd} {w} {iops:.0f} {us(mu):.1f} {us(ms):.1f} {us(lib):.1f} {us(mu + ms + lib):.1f}")
PYEOF
}

echo "# pyiscsi $PYURL  tgtd(bs_rbd, rbd cache off) $TGTURL  ceph $CEPH_CONF  runtime ${RUNTIME}s  rounds $ROUNDS  $(nproc) cores  $(date -Is)"
echo "# target round workload@rate IOPS main_user_us main_sys_us librbd_threads_us total_us (per command)"
: >"$WORK/all.txt"
for ((r = 1; r <= ROUNDS; r++)); do
    for w in $WORKLOADS; do
        measure pyiscsi "$PYPID" "$PYURL" "$w" "$r" | tee -a "$WORK/all.txt"
        measure tgtd "$TGTPID" "$TGTURL" "$w" "$r" | tee -a "$WORK/all.txt"
    done
done

if command -v strace >/dev/null; then
    echo "# system calls per command (one run each under strace -c, main thread and librbd's)"
    for w in $WORKLOADS; do
        spec=${w%@*}; rate=${w#*@}
        IFS=- read -r rw bs qd <<<"$spec"
        for t in pyiscsi tgtd; do
            if [[ $t == pyiscsi ]]; then pid=$PYPID url=$PYURL; else pid=$TGTPID url=$TGTURL; fi
            run_fio "$url" "$rw" "$bs" "${qd#qd}" "$rate" "$RUNTIME" "$WORK/fio.json" &
            fp=$!
            sleep 2
            timeout $((RUNTIME - 4)) strace -f -c -p "$pid" -o "$WORK/strace.txt" 2>/dev/null
            wait "$fp"
            calls=$(awk '$NF == "total" {print $(NF-2)}' "$WORK/strace.txt")
            top=$(awk 'NR > 2 && $NF != "total" && $1 !~ /^-/ {printf "%s:%s ", $NF, ($5 ~ /^[0-9]+$/ ? $4 : $4)}' "$WORK/strace.txt" | cut -d' ' -f1-5)
            awk -v t="$t" -v w="$w" -v c="$calls" -v s=$((RUNTIME - 4)) -v r="$rate" -v top="$top" \
                'BEGIN {printf "%s %s %.1f syscalls/cmd (%s)\n", t, w, c / (s * r), top}'
        done
    done
fi

echo "# medians of $ROUNDS rounds, microseconds of CPU per command"
"$PY" - "$WORK/all.txt" "$WORKLOADS" <<'PYEOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
print("| workload@rate | target | IOPS | main thread user | main thread sys | librbd threads | total | total py/tgtd |")
print("|---|---|---|---|---|---|---|---|")
for w in sys.argv[2].split():
    med = {}
    for t in ("pyiscsi", "tgtd"):
        sel = [r for r in rows if r[0] == t and r[2] == w]
        med[t] = [statistics.median(float(r[i]) for r in sel) for i in range(3, 8)]
    for t in ("pyiscsi", "tgtd"):
        m = med[t]
        ratio = f"{med['pyiscsi'][4] / med['tgtd'][4]:.2f}" if t == "pyiscsi" else ""
        print(f"| {w} | {t} | {m[0]:.0f} | {m[1]:.1f} | {m[2]:.1f} | {m[3]:.1f} | {m[4]:.1f} | {ratio} |")
PYEOF
