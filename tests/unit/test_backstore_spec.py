"""The CLI LUN spec: parse_size, parse_lun_spec, open_store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiscsi.backstore.file import FileStore
from pyiscsi.backstore.memory import MemoryStore
from pyiscsi.backstore.spec import (
    LunSpec,
    format_lun_spec,
    open_store,
    parse_lun_spec,
    parse_size,
)

SUFFIXES = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4096", 4096),
        ("512b", 512),
        ("64K", 64 << 10),
        ("64k", 64 << 10),
        ("1KiB", 1024),
        ("16M", 16 << 20),
        ("2mib", 2 << 20),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
        ("3T", 3 << 40),
        (" 8 TiB ", 8 << 40),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "K", "1.5G", "-1", "12X", "1GB", "1 G B", "0x10", "ten"])
def test_parse_size_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError, match="bad size") as info:
        parse_size(text)
    assert "\n" not in str(info.value)


@given(
    st.integers(min_value=0, max_value=1 << 20),
    st.sampled_from(sorted(SUFFIXES)),
    st.sampled_from(["", "iB", "ib"]),
    st.booleans(),
)
def test_parse_size_round_trip(number: int, suffix: str, binary: str, lower: bool) -> None:
    text = f"{number}{suffix}{binary if suffix else ''}"
    if lower:
        text = text.lower()
    assert parse_size(text) == number << SUFFIXES[suffix]


def test_ram_spec() -> None:
    spec = parse_lun_spec("ram:64M")
    assert spec == LunSpec(kind="ram", size=64 << 20)
    assert parse_lun_spec("ram:1G,ro,bs=4096") == LunSpec(
        kind="ram", size=1 << 30, read_only=True, block_size=4096
    )


def test_file_spec() -> None:
    assert parse_lun_spec("file:/tmp/x.img") == LunSpec(kind="file", path="/tmp/x.img")
    assert parse_lun_spec("file:/tmp/x.img,size=1G,bs=512,ro") == LunSpec(
        kind="file", path="/tmp/x.img", size=1 << 30, read_only=True
    )


def test_spec_is_frozen() -> None:
    spec = parse_lun_spec("ram:1M")
    with pytest.raises(AttributeError):
        spec.size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("disk:1G", "expected ram:SIZE"),
        ("ram1G", "expected ram:SIZE"),
        ("ram:", "needs an argument"),
        ("ram:1G,fast", "unknown option 'fast'"),
        ("ram:1G,size=2G", "unknown option 'size=2G'"),
        ("ram:1G,ro=1", "unknown option 'ro=1'"),
        ("ram:1G,bs=1000", "bad bs='1000'"),
        ("ram:1G,bs=x", "bad bs='x'"),
        ("ram:1G,ro,ro", "'ro' given twice"),
        ("ram:1000", "not a positive multiple of 512"),
        ("ram:6K,bs=4096", "not a positive multiple of 4096"),
        ("ram:0", "not a positive multiple"),
        ("file:/x,size=lots", "bad size 'lots'"),
    ],
)
def test_bad_specs(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_lun_spec(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_open_store(tmp_path: Path) -> None:
    ram = open_store(parse_lun_spec("ram:1M,bs=4096,ro"))
    assert isinstance(ram, MemoryStore)
    assert (ram.size, ram.block_size, ram.read_only) == (1 << 20, 4096, True)
    path = tmp_path / "d.img"
    made = open_store(parse_lun_spec(f"file:{path},size=2M"))
    assert isinstance(made, FileStore) and made.size == 2 << 20
    made.close()
    again = open_store(parse_lun_spec(f"file:{path}"))
    assert again.size == 2 << 20
    again.close()


@pytest.mark.parametrize("text, shared", [
    ("file:/x", None), ("file:/x,shared", True), ("file:/x,shared=yes", True),
    ("file:/x,shared=no", False), ("ram:1M,shared=No", False),
])
def test_shared_option(text: str, shared: bool | None) -> None:
    spec = parse_lun_spec(text)
    assert spec.shared is shared
    assert parse_lun_spec(format_lun_spec(spec)) == spec


@pytest.mark.parametrize("text", ["file:/x,shared=maybe", "file:/x,shared,shared=no"])
def test_shared_option_mistakes(text: str) -> None:
    with pytest.raises(ValueError, match="bad LUN spec"):
        parse_lun_spec(text)
