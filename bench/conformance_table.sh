#!/usr/bin/env bash
# conformance_table.sh - run libiscsi's iscsi-test-cu ALL suite against pyiscsi and tgtd on
# this machine, in one run, and print the README's conformance table (markdown).
# Works from any cwd: the venv and ../shared/peers are found beside this checkout (common.sh).
#   PEERS=DIR  PYTHON=.venv/bin/python  SUITE=ALL (a smaller family/suite for a quick run)
#   PY_PORT=3290 (and the next two ports)  TGT_PORT=3262  CTRL_PORT=7
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SUITE=${SUITE:-ALL}
PY_PORT=${PY_PORT:-3290}
TGT_PORT=${TGT_PORT:-3262}
WORK=$(mktemp -d)
PYPID= PYROPID=
trap 'kill $PYPID $PYROPID 2>/dev/null; WORKDIR=$WORK/tgt "$PEERS/stop-tgtd.sh" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

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
(cd "$WORK/py" && exec "$PY" -m pyiscsi.cli serve --portal "127.0.0.1:$PY_PORT" \
   --portal "127.0.0.1:$((PY_PORT + 1))" --lun ram:128MiB --sanitize-pace 16M \
   >"$WORK/py.out" 2>"$WORK/py.err") &
PYPID=$!
truncate -s 64M "$WORK/pyro/ro.img"
(cd "$WORK/pyro" && exec "$PY" -m pyiscsi.cli serve --portal "127.0.0.1:$((PY_PORT + 2))" \
   --lun "file:$WORK/pyro/ro.img,ro" >"$WORK/pyro.out" 2>"$WORK/pyro.err") &
PYROPID=$!
TGTURL=$(WORKDIR=$WORK/tgt PORT=$TGT_PORT CTRL_PORT=${CTRL_PORT:-7} "$PEERS/start-tgtd.sh" 2>"$WORK/tgt.err" | tail -n 1)
[[ -n $TGTURL ]] || { echo "conformance_table.sh: tgtd did not start:" >&2; cat "$WORK/tgt.err" >&2; }
wait_serving "$PYPID" "$WORK/py.out" "$WORK/py.err" || exit 1
wait_serving "$PYROPID" "$WORK/pyro.out" "$WORK/pyro.err" || exit 1
IQN=iqn.2026-11.org.pyiscsi:disk
echo "| target | suite | really passed | failed | skipped | ran |"
echo "|---|---|---|---|---|---|"
PYURL=iscsi://127.0.0.1:$PY_PORT/$IQN/0
PYURL2=iscsi://127.0.0.1:$((PY_PORT + 1))/$IQN/0
row "pyiscsi (RAM LUN)" "$SUITE" "$PYURL" "" SANITIZE=1
row "pyiscsi (RAM LUN, 2nd portal)" SCSI.MultipathIO "$PYURL" "$PYURL2"
row "pyiscsi (RAM LUN)" "$SUITE, SANITIZE=1 and URL2 in one run" "$PYURL" "$PYURL2" SANITIZE=1
row "tgtd $(tgtd --version 2>/dev/null | head -n1) (RAM LUN)" "$SUITE" "$TGTURL" "" SANITIZE=1
row "tgtd (RAM LUN, 2nd session)" SCSI.MultipathIO "$TGTURL" "$TGTURL"
row "tgtd (RAM LUN)" "$SUITE, SANITIZE=1 and URL2 in one run" "$TGTURL" "$TGTURL" SANITIZE=1
# A read-only LUN only makes sense for the ReadOnly suite: the rest of ALL writes (with -d).
row "pyiscsi (read-only file LUN)" SCSI.ReadOnly "iscsi://127.0.0.1:$((PY_PORT + 2))/$IQN/0" ""
kill $PYROPID 2>/dev/null
