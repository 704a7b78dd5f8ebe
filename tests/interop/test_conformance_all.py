"""libiscsi's whole iscsi-test-cu ALL suite: no failure, and a floor of real passes.

The floor lives in ``tests/interop/MIN_PASSED``: raise it as features land, never lower it.

The suite runs as two runs that together cover all 230 tests: ALL with SANITIZE=1 (the
MultipathIO suite skips without a second path), then SCSI.MultipathIO with URL2. One run with
both SANITIZE=1 and URL2 fails Sanitize.Reset on any target that implements SANITIZE and
RESERVE(6) correctly: libiscsi 1.19's Sanitize.Reservations takes RESERVE(6) on the second
path's long-lived session and never releases it, so the SANITIZE that Sanitize.Reset sends
right after gets RESERVATION CONFLICT (SPC-2 §5.5.1). See the README's conformance notes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, start_server, stop_server
from .test_libiscsi import conformance

pytestmark = pytest.mark.interop

FLOOR = int((Path(__file__).parent / "MIN_PASSED").read_text().split()[0])


@pytest.fixture
def two_portals(tmp_path: Path) -> Iterator[Server]:
    # SANITIZE erases at 16 MiB/s here, as a disk would take its time: libiscsi's
    # Sanitize.Reset checks the operation is still running 3-4.5 s after it began (across
    # aborts, resets and a reconnect), and a 128 MiB RAM LUN at full speed is erased in 0.1 s.
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--portal", "127.0.0.1:0",
                       "--lun", "ram:128MiB", "--sanitize-pace", "16M")
    yield srv
    assert stop_server(srv) == 0


def test_all_suite(two_portals: Server, tmp_path: Path) -> None:
    url, url2 = two_portals.urls[0], two_portals.urls[1]
    rc, text, counts = conformance(url, "ALL", tmp_path / "all", SANITIZE="1")
    print(text)
    assert counts["failed"] == 0, text
    rc2, text2, mp = conformance(url, "SCSI.MultipathIO", tmp_path / "mp", URL2=url2)
    print(text2)
    assert mp["failed"] == 0 and rc2 == 0, text2
    # the MultipathIO tests skipped in the first run really pass in the second
    total = counts["passed"] + mp["passed"]
    assert total >= FLOOR, f"{total} real passes < floor {FLOOR}\n{text}\n{text2}"
    assert rc == 0, text
    assert two_portals.fresh_stats()["internal_errors"] == 0
