#!/usr/bin/env bash
# cpu_per_command.sh [OLD_REV] - the TARGET's CPU time per 4 KiB command, two builds of pyiscsi
# in one run: OLD = a git revision (exported with `git archive` into a temp dir), NEW = this
# working tree (uncommitted changes included). Both serve a RAM LUN at once on their own ports;
# fio (libiscsi engine) runs each workload against them alternately (old, new; next round new,
# old), ROUNDS times. Per run: the server's utime+stime (/proc/PID/stat, all threads) before
# and after fio, divided by fio's completed I/Os (jobs[0].read|write.total_ios). Prints the
# medians per workload and writes them to bench/results/cpu_per_command-DATE.md.
# Works from any cwd. Smoke test: OLD_REV=HEAD with a clean tree (ratio ~1.0).
# Builds: each side runs pure Python or compiled (mypyc, setup.py), chosen per side; a compiled
# side is built from its own sources with `pip install --no-deps --target` (pip's isolated
# build: setuptools + mypy from pyproject's [build-system]), so no .so of the checkout is used.
# The compile gain alone: OLD_REV=HEAD OLD_BUILD=pure NEW_BUILD=compiled.
#
# Environment:
#   OLD_REV    revision for OLD      [$1, else merge-base with origin/main if it exists, else HEAD]
#   OLD_BUILD / NEW_BUILD  pure | compiled | auto (compiled when that side's setup.py uses
#              mypyc, else pure)                                      [auto / auto]
#   DURATION   seconds per fio run                                   [8]
#   ROUNDS     rounds (each runs every workload on both builds)      [3]
#   WORKLOADS  name:rw:bs:iodepth ...          [randread-4k-qd32:randread:4k:32 randwrite-4k-qd32:randwrite:4k:32]
#   LUN        LUN spec for both servers                             [ram:256MiB]
#   LOOP       auto | uvloop | asyncio (serve --loop)                [auto]
#   OLD_PORT / NEW_PORT                                              [3311 / 3312]
#   PYTHON     interpreter for both builds (needs click, crc32c, uvloop) [$REPO/.venv/bin/python]
#   FIO        fio with the libiscsi engine                 [${PEER_DIR:-/tmp/pyiscsi-peers}/bin/fio]
#   OUT        the markdown report        [$REPO/bench/results/cpu_per_command-YYYYmmdd-HHMMSS.md]
set -uo pipefail
BENCH_PEERS_OPTIONAL=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
unset PYTHONPATH   # each server gets its own build's src below, nothing else

DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
WORKLOADS=${WORKLOADS:-"randread-4k-qd32:randread:4k:32 randwrite-4k-qd32:randwrite:4k:32"}
LUN=${LUN:-ram:256MiB}
OLD_PORT=${OLD_PORT:-3311}
NEW_PORT=${NEW_PORT:-3312}
FIO=${FIO:-${PEER_DIR:-/tmp/pyiscsi-peers}/bin/fio}
IQN=iqn.2026-11.org.pyiscsi:cpubench
INITIATOR=iqn.2026-11.test:cpubench
HZ=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$REPO/bench/results/cpu_per_command-$STAMP.md}
HELPER=$REPO/bench/cpu_per_command.py

die() { echo "cpu_per_command.sh: $*" >&2; exit 1; }
"$FIO" --enghelp 2>/dev/null | grep -qw libiscsi || die "$FIO has no libiscsi engine (set FIO=)"

if [[ -z ${OLD_REV:-} ]]; then
    OLD_REV=${1:-}
    if [[ -z $OLD_REV ]]; then
        OLD_REV=$(git -C "$REPO" merge-base HEAD origin/main 2>/dev/null) || OLD_REV=HEAD
    fi
fi
OLD_SHA=$(git -C "$REPO" rev-parse --verify --quiet "$OLD_REV^{commit}") || die "no revision $OLD_REV"
NEW_DESC="working tree at $(git -C "$REPO" rev-parse --short HEAD)"
[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no -- src) ]] && NEW_DESC+=" + uncommitted src changes"

WORK=$(mktemp -d /tmp/pyiscsi-cpubench.XXXXXX)
declare -A PID=()
FIOPID=
cleanup() {
    local p i fiopids
    if [[ -n $FIOPID ]]; then
        # fio (parent + its job process) first, while its target is up: with the target gone,
        # libiscsi's job spins reconnecting and ignores SIGTERM
        fiopids="$FIOPID $(pgrep -P "$FIOPID" | tr '\n' ' ')"
        kill $fiopids 2>/dev/null
        for ((i = 0; i < 30; i++)); do kill -0 "$FIOPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL $fiopids 2>/dev/null
        wait "$FIOPID" 2>/dev/null
    fi
    for p in "${PID[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PID[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/old" "$WORK/new"
# the files a build needs (setup.py and pyproject.toml exist only in revisions that compile)
mapfile -t OLD_FILES < <(git -C "$REPO" ls-tree --name-only "$OLD_SHA" -- src setup.py pyproject.toml README.md)
git -C "$REPO" archive "$OLD_SHA" "${OLD_FILES[@]}" | tar -x -C "$WORK/old" ||
    die "git archive $OLD_SHA failed"
(cd "$REPO" && tar -c --exclude='*.so' --exclude=__pycache__ src \
    $(for f in setup.py pyproject.toml README.md; do [[ -e $f ]] && echo "$f"; done)) |
    tar -x -C "$WORK/new" || die "cannot copy the working tree"
declare -A SRC=() BUILD=([old]=${OLD_BUILD:-auto} [new]=${NEW_BUILD:-auto}) PORT=([old]=$OLD_PORT [new]=$NEW_PORT)

for b in old new; do
    tree=$WORK/$b
    if [[ ${BUILD[$b]} == auto ]]; then
        BUILD[$b]=pure
        grep -qs mypycify "$tree/setup.py" && BUILD[$b]=compiled
    fi
    case ${BUILD[$b]} in
    pure) SRC[$b]=$tree/src ;;
    compiled)
        grep -qs mypycify "$tree/setup.py" || die "the $b side has no compiled build (no mypyc setup.py)"
        echo "# building the $b side (compiled) ..." >&2
        PYISCSI_COMPILE=1 "$PY" -m pip install -q --no-deps --target "$tree/site" "$tree" \
            >"$WORK/build-$b.log" 2>&1 || die "building the $b side failed: $(tail -n 5 "$WORK/build-$b.log")"
        SRC[$b]=$tree/site ;;
    *) die "${b^^}_BUILD=${BUILD[$b]}: pure, compiled or auto" ;;
    esac
    # the build really imported is the one under test (not an installed copy), compiled or not
    got=$(cd "$WORK" && PYTHONPATH=${SRC[$b]} "$PY" -c \
        'import pyiscsi.cli as c, pyiscsi.proto.pdu as p; print(c.__file__, p.__file__)') ||
        die "$PY cannot import pyiscsi from ${SRC[$b]}"
    read -r cli pdu <<<"$got"
    [[ $cli == "${SRC[$b]}/pyiscsi/cli.py" ]] || die "$b build imports $cli, not ${SRC[$b]}"
    [[ $pdu == *.py ]] && is=pure || is=compiled
    [[ $is == "${BUILD[$b]}" ]] || die "the $b side (${BUILD[$b]}) imports $pdu"
    mkdir -p "$WORK/run-$b"
    (cd "$WORK/run-$b" && PYTHONPATH=${SRC[$b]} exec "$PY" -m pyiscsi.cli serve --loop "${LOOP:-auto}" \
        --portal "127.0.0.1:${PORT[$b]}" --target "$IQN" --lun "$LUN" \
        >"$WORK/$b.out" 2>"$WORK/$b.err") &
    PID[$b]=$!
done
for b in old new; do wait_serving "${PID[$b]}" "$WORK/$b.out" "$WORK/$b.err" || exit 1; done

url() { echo "iscsi://127.0.0.1:${PORT[$1]}/$IQN/0"; }
fio_file() { local u; u=$(url "$1"); echo "${u//:/\\:}"; }
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# warm-up, unmeasured: write the whole LUN once (reads then touch real pages on both builds)
for b in old new; do
    "$FIO" --name=warmup --ioengine=libiscsi --initiator="$INITIATOR" --filename="$(fio_file "$b")" \
        --rw=write --bs=1m --iodepth=8 --output="$WORK/warmup-$b.txt" >/dev/null 2>&1 ||
        die "fio warm-up against the $b build failed: $(tail -n 3 "$WORK/warmup-$b.txt")"
done

HEADER="# target CPU per command: old $(git -C "$REPO" rev-parse --short "$OLD_SHA") ($OLD_REV, ${BUILD[old]}) vs new ($NEW_DESC, ${BUILD[new]})
# $(nproc) cores, $(uname -r), $("$PY" -V 2>&1), loop ${LOOP:-auto}, LUN $LUN, ${DURATION}s x $ROUNDS rounds, $(date -Is)"
echo "$HEADER"
RAW=$WORK/raw.txt
: >"$RAW"
printf '%-18s %5s %-4s %9s %10s %9s\n' workload round build us/cmd total_ios IOPS
for ((round = 1; round <= ROUNDS; round++)); do
    order="old new"; ((round % 2 == 0)) && order="new old"
    for w in $WORKLOADS; do
        IFS=: read -r name rw bs qd <<<"$w"
        for b in $order; do
            json=$WORK/$name-$b-$round.json
            t0=$(ticks "${PID[$b]}")
            "$FIO" --name="$name" --ioengine=libiscsi --initiator="$INITIATOR" \
                --filename="$(fio_file "$b")" --rw="$rw" --bs="$bs" --iodepth="$qd" \
                --time_based --runtime="$DURATION" --randrepeat=0 \
                --output-format=json --output="$json" >/dev/null 2>"$json.err" &
            FIOPID=$!   # waited for, not run in the foreground: a signal stops the run at once
            wait "$FIOPID"; rc=$?; FIOPID=
            t1=$(ticks "${PID[$b]}")
            kill -0 "${PID[$b]}" 2>/dev/null || die "the $b server died: $(tail -n 5 "$WORK/$b.err")"
            res=$([[ $rc == 0 ]] && "$PY" "$HELPER" fio "$json" "$rw") || res="0 0"
            read -r ios iops <<<"$res"
            echo "$name $b $round $((t1 - t0)) $ios $iops" >>"$RAW"
            printf '%-18s %5s %-4s %9s %10s %9s\n' "$name" "$round" "$b" \
                "$(awk -v t=$((t1 - t0)) -v n="$ios" -v hz="$HZ" 'BEGIN{ if (n > 0) printf "%.1f", t / hz / n * 1e6; else print "FAILED" }')" \
                "$ios" "$iops"
        done
    done
done

TABLE=$("$PY" "$HELPER" report "$RAW" "$HZ")
echo
echo "$TABLE"
mkdir -p "$(dirname "$OUT")"
{
    echo "$HEADER"
    echo
    echo "us/cmd: the target process's utime+stime over the fio run / fio's completed I/Os (medians)."
    echo
    echo "$TABLE"
} >"$OUT"
echo
echo "# written to $OUT"
