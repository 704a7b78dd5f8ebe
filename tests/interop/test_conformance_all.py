"""The whole libiscsi iscsi-test-cu ALL suite: no failure, and a floor of real passes.

The floor lives in ``tests/interop/MIN_PASSED``: raise it as features land, never lower it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Server, start_server, stop_server
from .test_libiscsi import conformance

pytestmark = pytest.mark.interop

FLOOR = int((Path(__file__).parent / "MIN_PASSED").read_text().split()[0])


@pytest.fixture
def two_portals(tmp_path: Path) -> Server:
    srv = start_server(tmp_path, "--portal", "127.0.0.1:0", "--portal", "127.0.0.1:0",
                       "--lun", "ram:128MiB")
    yield srv
    assert stop_server(srv) == 0


def test_all_suite(two_portals: Server, tmp_path: Path) -> None:
    url, url2 = two_portals.urls[0], two_portals.urls[1]
    rc, text, counts = conformance(url, "ALL", tmp_path, SANITIZE="1", URL2=url2,
                                   MIN_PASSED=str(FLOOR))
    print(text)
    assert counts["failed"] == 0, text
    assert counts["passed"] >= FLOOR, text
    assert rc == 0, text
    assert two_portals.fresh_stats()["internal_errors"] == 0
