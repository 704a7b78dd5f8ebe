"""The RBD backstore's parts that need no cluster: librbd errno -> sense, the spec."""

from __future__ import annotations

import errno
import os

import pytest

from pyiscsi.backstore.ops import StoreOpKind
from pyiscsi.backstore.rbd import ERRNO_SENSE, store_error
from pyiscsi.backstore.spec import (
    LunSpec,
    format_lun_spec,
    open_store,
    parse_lun_spec,
    with_ceph_conf,
)
from pyiscsi.scsi.sense import store_error_result


@pytest.mark.parametrize("code,kind,sense", [
    (errno.EIO, StoreOpKind.READ, (0x03, 0x11, 0x00)),  # UNRECOVERED READ ERROR
    (errno.EIO, StoreOpKind.WRITE, (0x03, 0x0C, 0x00)),  # WRITE ERROR
    (errno.ETIMEDOUT, StoreOpKind.WRITE, (0x04, 0x3E, 0x02)),  # TIMEOUT ON LOGICAL UNIT
    (errno.ENOSPC, StoreOpKind.WRITE, (0x07, 0x27, 0x07)),  # SPACE ALLOCATION FAILED WP
    (errno.EDQUOT, StoreOpKind.WRITE_SAME, (0x07, 0x27, 0x07)),
    (errno.EROFS, StoreOpKind.DISCARD, (0x07, 0x27, 0x00)),  # WRITE PROTECTED
    (errno.EILSEQ, StoreOpKind.COMPARE_AND_WRITE, (0x0E, 0x1D, 0x00)),  # MISCOMPARE
])
def test_errno_becomes_sense(code: int, kind: StoreOpKind, sense: tuple[int, int, int]) -> None:
    err = store_error(kind, -code)
    assert (err.sense_key, err.asc, err.ascq) == sense
    assert errno.errorcode[code] in str(err)


def test_miscompare_carries_the_offset_in_information() -> None:
    result = store_error_result(store_error(StoreOpKind.COMPARE_AND_WRITE, -errno.EILSEQ, 300))
    sense = result.sense
    assert sense[0] == 0xF0  # VALID: the INFORMATION field holds the offset
    assert sense[2] & 0x0F == 0x0E and sense[12:14] == b"\x1d\x00"
    assert int.from_bytes(sense[3:7], "big") == 300


def test_information_only_for_a_miscompare() -> None:
    assert store_error(StoreOpKind.WRITE, -errno.EIO, 300).information is None
    assert all(len(v) == 3 for v in ERRNO_SENSE.values())


def test_rbd_spec_parses_and_formats_back() -> None:
    text = "rbd:pool/img,size=1GiB,conf=/etc/ceph/x.conf,id=gw1,timeout=5,threads=3,bs=4096"
    spec = parse_lun_spec(text)
    assert spec == LunSpec(kind="rbd", image="pool/img", size=1 << 30, conf="/etc/ceph/x.conf",
                           client="gw1", timeout=5, threads=3, block_size=4096)
    assert parse_lun_spec(format_lun_spec(spec)) == spec
    assert parse_lun_spec("rbd:p/i,ro") == LunSpec(kind="rbd", image="p/i", read_only=True)


@pytest.mark.parametrize("text,message", [
    ("rbd:image", "expected rbd:POOL/IMAGE"),
    ("rbd:/image", "expected rbd:POOL/IMAGE"),
    ("rbd:pool/", "expected rbd:POOL/IMAGE"),
    ("rbd:pool/a/b", "expected rbd:POOL/IMAGE"),
    ("rbd:pool/img@snap", "expected rbd:POOL/IMAGE"),
    ("rbd:p/i,timeout=0", "timeout"),
    ("rbd:p/i,threads=0", "threads"),
    ("rbd:p/i,threads=x", "threads"),
    ("file:/x,threads=2", "unknown option"),
    ("rbd:p/i,conf=", "empty"),
    ("rbd:p/i,size=1000", "not a positive multiple of 512"),
    ("rbd:p/i,path=/x", "unknown option"),
    ("file:/x,id=a", "unknown option"),
    ("ram:1M,conf=/x", "unknown option"),
])
def test_bad_rbd_specs_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_lun_spec(text)


def test_ceph_conf_default_applies_to_rbd_without_conf() -> None:
    spec = parse_lun_spec("rbd:p/i")
    assert with_ceph_conf(spec, "/c.conf").conf == "/c.conf"
    assert with_ceph_conf(parse_lun_spec("rbd:p/i,conf=/own"), "/c.conf").conf == "/own"
    ram = parse_lun_spec("ram:1M")
    assert with_ceph_conf(ram, "/c.conf") is ram


def test_unreachable_cluster_is_a_clear_error(tmp_path: object) -> None:
    """A ceph.conf naming a monitor nobody listens on: a ValueError naming the image and the
    conf after the timeout, not a hang (librados must be installed for this one)."""
    from pathlib import Path

    from pyiscsi.ceph.errors import CephUnavailable
    from pyiscsi.ceph.librados import library

    try:
        library()
    except CephUnavailable as exc:
        with pytest.raises(ValueError, match="librados2"):
            open_store(parse_lun_spec("rbd:p/i"))
        if os.environ.get("CI") == "true":
            raise  # CI installs librados2: its absence is a failure there
        pytest.skip(str(exc))
    assert isinstance(tmp_path, Path)
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\nmon host = 127.0.0.1:9\nauth client required = none\n"
                    f"log file = {tmp_path}/client.log\n")
    with pytest.raises(ValueError, match=r"rbd:p/i: rados_connect: .*ceph.conf"):
        open_store(parse_lun_spec(f"rbd:p/i,conf={conf},timeout=2"))
