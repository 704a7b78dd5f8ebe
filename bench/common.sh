# common.sh - sourced by the bench scripts; resolves everything relative to the checkout, so a
# script works from any cwd. Sets:
#   REPO    the checkout (this file's parent directory's parent)
#   PEERS   ../shared/peers beside the checkout, or $PEERS (relative to the caller's cwd);
#           a script that can do without sets BENCH_PEERS_OPTIONAL=1 first (PEERS is then
#           empty when the directory is missing)
#   PY      $PYTHON, else $REPO/.venv/bin/python (the README's `python3 -m venv .venv`),
#           else python3 with PYTHONPATH=$REPO/src
#   PYISCSI array: the CLI ($PYISCSI, else $REPO/.venv/bin/pyiscsi, else "$PY -m pyiscsi.cli")
# Paths given in the environment are made absolute before anything changes directory.
# shellcheck shell=bash

_bench_abs() {  # PATH -> absolute (relative to the caller's cwd); a bare command name is kept
    case $1 in /*) printf '%s\n' "$1" ;; */*) printf '%s\n' "$PWD/$1" ;; *) printf '%s\n' "$1" ;; esac
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_peers=${PEERS:-$REPO/../shared/peers}
PEERS=$(cd "$_peers" 2>/dev/null && pwd) || [[ -n ${BENCH_PEERS_OPTIONAL:-} ]] || {
    echo "$(basename "$0"): no peer scripts at $_peers (set PEERS=DIR; see ../shared/peers/README.md)" >&2
    exit 1
}
unset _peers

if [[ -n ${PYTHON:-} ]]; then
    PY=$(_bench_abs "$PYTHON")
elif [[ -x $REPO/.venv/bin/python ]]; then
    PY=$REPO/.venv/bin/python
else
    PY=python3
    export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
    echo "# $(basename "$0"): no $REPO/.venv; using python3 with PYTHONPATH=$REPO/src" >&2
fi

if [[ -n ${PYISCSI:-} ]]; then
    read -r -a PYISCSI <<<"$PYISCSI"
    PYISCSI[0]=$(_bench_abs "${PYISCSI[0]}")
elif [[ -z ${PYTHON:-} && -x $REPO/.venv/bin/pyiscsi ]]; then
    PYISCSI=("$REPO/.venv/bin/pyiscsi")
else
    PYISCSI=("$PY" -m pyiscsi.cli)
fi

# wait_serving PID STDOUT STDERR: until the pyiscsi server printed its "serving" line (15 s at
# most); fails, showing its stderr, if it died or never got there.
wait_serving() {
    local pid=$1 log=$2 err=$3 i
    for ((i = 0; i < 150; i++)); do
        grep -q '^serving ' "$log" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$(basename "$0"): pyiscsi server (pid $pid) did not come up:" >&2
    cat "$err" >&2 2>/dev/null
    return 1
}

# ceph_cluster OSD_BYTES: use $CEPH_CONF when it reaches a cluster, else start micro-ceph in
# $WORK/ceph (monitor on $CEPH_PORT, a memstore of OSD_BYTES, no mgr) and set OWN_CEPH=1;
# exports CEPH_CONF either way. Needs WORK and CEPH_PORT.
ceph_cluster() {
    if [[ -z ${CEPH_CONF:-} ]] || ! timeout 20 ceph --conf "$CEPH_CONF" health >/dev/null 2>&1; then
        echo "# starting micro-ceph in $WORK/ceph (port $CEPH_PORT)" >&2
        CEPH_DIR=$WORK/ceph CEPH_MON_PORT=$CEPH_PORT CEPH_WITH_MGR=0 CEPH_OSD_BYTES=$1 \
            "$PEERS/micro-ceph.sh" start >&2 || return 1
        OWN_CEPH=1
        CEPH_CONF=$WORK/ceph/ceph.conf
    fi
    export CEPH_CONF
}

# ceph_cleanup IMAGE...: stop the micro-ceph ceph_cluster started, or remove the images
# (POOL/NAME) from the cluster that was given.
ceph_cleanup() {
    if [[ -n ${OWN_CEPH:-} ]]; then
        CEPH_DIR=$WORK/ceph FAST=1 "$PEERS/micro-ceph.sh" stop >/dev/null 2>&1
    else
        local image
        for image in "$@"; do timeout 60 rbd --conf "$CEPH_CONF" rm "$image" >/dev/null 2>&1; done
    fi
}

# nocache_conf PATH: write a copy of $CEPH_CONF with librbd's cache off (`rbd cache = false`,
# as pyiscsi runs) to PATH.
nocache_conf() {
    { cat "$CEPH_CONF"; printf '\n[client]\n\trbd cache = false\n'; } >"$1"
}
