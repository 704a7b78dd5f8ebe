#!/usr/bin/env bash
# conformance_table.sh - run libiscsi's iscsi-test-cu ALL suite against pyiscsi and tgtd on
# this machine, in one run, and print the README's conformance table (markdown).
#   PEERS=../shared/peers  PYISCSI="python -m pyiscsi.cli"
set -uo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS:-../shared/peers}
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
WORK=$(mktemp -d)
trap 'kill $PYPID 2>/dev/null; WORKDIR=$WORK/tgt PORT=3262 "$PEERS/stop-tgtd.sh" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

row() {  # name suite url url2 extra-env...
  local name=$1 suite=$2 url=$3 url2=$4; shift 4
  local out tests=${suite%%,*}
  out=$(env "$@" OUTDIR="$WORK/out-$RANDOM" URL2="$url2" "$PEERS/conformance.sh" "$url" "$tests" 2>&1 | tail -n 1)
  # "N passed, N failed (P really passed, S skipped as unsupported, U unfinished, R ran)"
  if [[ $out =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed\ \(([0-9]+)\ really\ passed,\ ([0-9]+)\ skipped.*,\ ([0-9]+)\ ran ]]; then
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$suite" "${BASH_REMATCH[3]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[4]}" "${BASH_REMATCH[5]}"
  else
    printf '| %s | %s | (no result: %s) | | | |\n' "$name" "$suite" "$out"
  fi
}

mkdir -p "$WORK/py" "$WORK/pyro" "$WORK/tgt"
(cd "$WORK/py" && exec "$PY" -m pyiscsi.cli serve --portal 127.0.0.1:3290 --portal 127.0.0.1:3291 \
   --lun ram:128MiB >"$WORK/py.out" 2>"$WORK/py.err") &
PYPID=$!
truncate -s 64M "$WORK/pyro/ro.img"
(cd "$WORK/pyro" && exec "$PY" -m pyiscsi.cli serve --portal 127.0.0.1:3292 \
   --lun "file:$WORK/pyro/ro.img,ro" >"$WORK/pyro.out" 2>"$WORK/pyro.err") &
PYROPID=$!
TGTURL=$(WORKDIR=$WORK/tgt PORT=3262 "$PEERS/start-tgtd.sh" 2>/dev/null | tail -n 1)
sleep 2
IQN=iqn.2026-11.org.pyiscsi:disk
echo "| target | suite | really passed | failed | skipped | ran |"
echo "|---|---|---|---|---|---|"
PYURL=iscsi://127.0.0.1:3290/$IQN/0
PYURL2=iscsi://127.0.0.1:3291/$IQN/0
row "pyiscsi (RAM LUN)" ALL "$PYURL" "" SANITIZE=1
row "pyiscsi (RAM LUN, 2nd portal)" SCSI.MultipathIO "$PYURL" "$PYURL2"
row "pyiscsi (RAM LUN)" "ALL, SANITIZE=1 and URL2 in one run" "$PYURL" "$PYURL2" SANITIZE=1
row "tgtd $(tgtd --version 2>/dev/null | head -n1) (RAM LUN)" ALL "$TGTURL" "" SANITIZE=1
row "tgtd (RAM LUN, 2nd session)" SCSI.MultipathIO "$TGTURL" "$TGTURL"
row "tgtd (RAM LUN)" "ALL, SANITIZE=1 and URL2 in one run" "$TGTURL" "$TGTURL" SANITIZE=1
# A read-only LUN only makes sense for the ReadOnly suite: the rest of ALL writes (with -d).
row "pyiscsi (read-only file LUN)" SCSI.ReadOnly "iscsi://127.0.0.1:3292/$IQN/0" ""
kill $PYROPID 2>/dev/null
