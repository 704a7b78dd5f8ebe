"""libiscsi's own tools and conformance suite against a real ``pyiscsi serve``."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import IQN, PEERS, Server, require, tpgt

pytestmark = pytest.mark.interop


def run(*cmd: str, env: dict[str, str] | None = None, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                          env={**os.environ, **(env or {})})


def portal(url: str) -> str:
    return url.split("/")[2]


def test_iscsi_ls_discovers_target_and_lun(server: Server) -> None:
    out = run(require("iscsi-ls"), "-s", f"iscsi://{portal(server.url)}")
    assert out.returncode == 0, out.stderr
    assert f"Target:{IQN} Portal:{portal(server.url)},{tpgt(portal(server.url))}" in out.stdout
    # libiscsi prints last LBA x block size: 64 MiB - 512 B shows as 63M (as for tgtd)
    assert re.search(r"Lun:0\s+Type:DIRECT_ACCESS \(Size:63M\)", out.stdout), out.stdout


def test_iscsi_inq_standard_and_vpd(server: Server) -> None:
    inq = require("iscsi-inq")
    out = run(inq, server.url)
    assert out.returncode == 0, out.stderr
    assert "Vendor:PYISCSI" in out.stdout and "Peripheral Device Type:DIRECT_ACCESS" in out.stdout
    out = run(inq, "-e", "1", "-c", "131", server.url)  # VPD 0x83 (popt wants decimal)
    assert out.returncode == 0, out.stderr
    assert "Designator Type:(3) NAA" in out.stdout
    assert f"Designator:[{IQN}]" in out.stdout
    out = run(inq, "-e", "1", "-c", "128", server.url)
    assert out.returncode == 0 and "Unit Serial Number" in out.stdout, out.stdout


def test_iscsi_readcapacity16(server: Server) -> None:
    out = run(require("iscsi-readcapacity16"), server.url)
    assert out.returncode == 0, out.stderr
    assert "Total size:67108864" in out.stdout
    assert "LOGICAL BLOCK LENGTH IN BYTES:512" in out.stdout


CORE_FAMILIES = [
    "SCSI.Mandatory", "SCSI.Inquiry", "SCSI.ReadCapacity10", "SCSI.ReadCapacity16",
    "SCSI.TestUnitReady", "SCSI.Read6", "SCSI.Read10", "SCSI.Read12", "SCSI.Read16",
    "SCSI.Write10", "SCSI.Write12", "SCSI.Write16", "SCSI.ModeSense6", "iSCSI.iSCSIcmdsn",
    "iSCSI.iSCSIResiduals", "iSCSI.iSCSIdatasn", "iSCSI.iSCSITMF",
]


def conformance(url: str, tests: str, tmp: Path, **env: str) -> tuple[int, str, dict[str, int]]:
    require("iscsi-test-cu")
    script = PEERS / "conformance.sh"
    if not script.exists():
        pytest.fail(f"{script} missing")
    out = run("bash", str(script), url, tests,
              env={"OUTDIR": str(tmp / "conformance"), "TIMEOUT": "600", **env}, timeout=700)
    (tmp / "conformance").mkdir(parents=True, exist_ok=True)
    (tmp / "conformance" / "summary.txt").write_text(out.stdout)
    m = re.search(r"(\d+) passed, (\d+) failed \((\d+) really passed, (\d+) skipped", out.stdout)
    assert m, out.stdout + out.stderr
    counts = {"passed": int(m[3]), "failed": int(m[2]), "skipped": int(m[4])}
    return out.returncode, out.stdout, counts


@pytest.mark.parametrize("family", CORE_FAMILIES)
def test_iscsi_test_cu_core_families(server: Server, tmp_path: Path, family: str) -> None:
    rc, text, counts = conformance(server.url, family, tmp_path)
    assert rc == 0 and counts["failed"] == 0, text
    assert counts["passed"] >= 1, text


def test_placement_counters_after_libiscsi_writes(server: Server, tmp_path: Path) -> None:
    """Real initiator traffic goes through the table: bytes placed, none lost to errors."""
    before = server.fresh_stats()
    rc, text, _ = conformance(server.url, "SCSI.Write16", tmp_path)
    assert rc == 0, text
    after = server.fresh_stats()
    received = (after["rx_placed"] + after["rx_staged"]) - (before["rx_placed"]
                                                             + before["rx_staged"])
    assert received > 0
    assert after["rx_placed"] > before["rx_placed"]
    assert after["internal_errors"] == 0
    assert after["tx_zero_copy"] + after["tx_copied"] > 0
