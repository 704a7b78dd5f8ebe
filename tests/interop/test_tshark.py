"""Wireshark's iSCSI dissector as an independent judge of the PDUs pyiscsi puts on the wire."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import PEERS, require, start_server, stop_server, tpgt

pytestmark = pytest.mark.interop


def test_tshark_decodes_every_pdu_cleanly(tmp_path: Path) -> None:
    require("tshark")
    require("iscsi-test-cu")
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--lun", "ram:16MiB")
    port = srv.url.split("/")[2].rsplit(":", 1)[1]
    pcap = tmp_path / "run.pcapng"
    try:
        out = subprocess.run(
            ["bash", str(PEERS / "capture.sh"), port, "12", str(pcap), "--",
             "iscsi-test-cu", "-d", "-t", "SCSI.Write16.Simple", srv.url],
            capture_output=True, text=True, errors="replace", timeout=60)
    finally:
        assert stop_server(srv) == 0
    text = out.stdout
    opcodes = dict((op, int(n)) for n, op in re.findall(r"^\s*(\d+) (0x[0-9a-f]{2})$", text,
                                                          re.M))
    # login, SCSI command/response, Data-In, Data-Out or immediate data, R2T all seen
    for op in ("0x03", "0x23", "0x01", "0x21"):
        assert opcodes.get(op, 0) > 0, text
    malformed = text.split("# malformed / expert errors:")[1].split("# login key")[0].strip()
    assert malformed == "", malformed
    # the TPGT derived from the portal (README: Two gateways, one image)
    assert f"KeyValue: TargetPortalGroupTag={tpgt(f'127.0.0.1:{port}')}" in text
