"""BlockStore: a loop device as a LUN (size by ioctl, no fallocate, UNMAP by BLKDISCARD)."""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyiscsi.backstore.base import StoreError
from pyiscsi.backstore.blockdev import BLKDISCARD, BLKZEROOUT, BlockStore
from pyiscsi.backstore.spec import open_store, parse_lun_spec
from pyiscsi.scsi.lun import LogicalUnit

from ..loopdev import loop_device

PAGE = mmap.PAGESIZE
SIZE = 64 << 20


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return tmp_path / "backing.img"


@pytest.fixture
def device(image: Path) -> Iterator[str]:
    with loop_device(image, SIZE) as dev:
        yield dev


@pytest.fixture
def store(device: str) -> Iterator[BlockStore]:
    s = BlockStore(device)
    yield s
    s.close()


def backing_bytes(image: Path, offset: int, length: int) -> bytes:
    with open(image, "rb") as f:
        f.seek(offset)
        return f.read(length)


def allocated(image: Path) -> int:
    return os.stat(image).st_blocks * 512


def test_size_and_identity_come_from_the_device(store: BlockStore, device: str) -> None:
    assert store.size == SIZE and store.block_size == 512
    assert store.name == device and str(store.path) == device
    assert store.memory_addressable and not store.read_only
    assert store.is_mapped(0, 512) and not store.is_mapped(0, 0)
    lu = LogicalUnit(0, store, "iqn.2026-11.org.pyiscsi:test")
    assert lu.blocks == SIZE // 512 and lu.thin


def test_write_read_and_flush_reach_the_backing_file(store: BlockStore, image: Path) -> None:
    store.write(4096, b"\x5a" * 8192)
    store.prepare_write(1 << 20, 4096)
    store.view(1 << 20, 4096)[:] = b"\x42" * 4096
    buffer = memoryview(bytearray(8192))
    store.readinto(4096, buffer)
    assert bytes(buffer) == b"\x5a" * 8192
    store.flush(4096 + 512, 512)
    store.flush()
    assert backing_bytes(image, 4096, 8192) == b"\x5a" * 8192
    assert backing_bytes(image, 1 << 20, 4096) == b"\x42" * 4096


def test_close_flushes(device: str, image: Path) -> None:
    s = BlockStore(device)
    s.write(SIZE - 512, b"\x77" * 512)
    s.close()
    s.close()
    assert backing_bytes(image, SIZE - 512, 512) == b"\x77" * 512


def test_writes_skip_fallocate(store: BlockStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENODEV, "glibc's answer for a block device")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    store.write(0, b"x" * 4096)
    assert bytes(store.view(0, 1)) == b"x"


def test_unmap_discards_whole_pages_and_zeroes_edges(store: BlockStore, image: Path) -> None:
    store.write(0, b"\xff" * (16 * PAGE))
    store.flush()
    before = allocated(image)
    assert before >= 16 * PAGE
    store.unmap(PAGE + 512, 4 * PAGE)
    assert bytes(store.view(0, PAGE + 512)) == b"\xff" * (PAGE + 512)
    assert bytes(store.view(PAGE + 512, 4 * PAGE)) == bytes(4 * PAGE)
    assert store.view(5 * PAGE + 512, 1)[0] == 0xFF
    store.flush()
    assert backing_bytes(image, PAGE + 512, 4 * PAGE) == bytes(4 * PAGE)
    assert allocated(image) <= before - 3 * PAGE  # the loop device punched the backing file


Ioctl = Callable[..., Any]


def fake_ioctl(monkeypatch: pytest.MonkeyPatch, answers: dict[int, int | None]) -> list[int]:
    """Patch ioctl: requests in ``answers`` fail with that errno (None: do nothing)."""
    real: Ioctl = fcntl.ioctl
    calls: list[int] = []

    def ioctl(fd: int, request: int, arg: Any = 0) -> Any:
        calls.append(request)
        if request not in answers:
            return real(fd, request, arg)
        err = answers[request]
        if err is not None:
            raise OSError(err, os.strerror(err))
        return arg

    monkeypatch.setattr(fcntl, "ioctl", ioctl)
    return calls


def test_unmap_without_discard_zeroes_out(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(0, b"\xee" * (8 * PAGE))
    calls = fake_ioctl(monkeypatch, {BLKDISCARD: errno.EOPNOTSUPP})
    store.unmap(PAGE, 2 * PAGE)
    assert calls == [BLKDISCARD, BLKZEROOUT]
    assert bytes(store.view(PAGE, 2 * PAGE)) == bytes(2 * PAGE)
    assert store.view(3 * PAGE, 1)[0] == 0xEE
    store.unmap(4 * PAGE, PAGE)  # the device said no once: no discard again
    assert calls == [BLKDISCARD, BLKZEROOUT, BLKZEROOUT]
    assert bytes(store.view(4 * PAGE, PAGE)) == bytes(PAGE)


def test_discard_that_leaves_data_is_zeroed_out(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(0, b"\xdd" * (4 * PAGE))
    calls = fake_ioctl(monkeypatch, {BLKDISCARD: None})  # "succeeds", changes nothing
    store.unmap(0, 4 * PAGE)
    assert calls == [BLKDISCARD, BLKZEROOUT]
    assert bytes(store.view(0, 4 * PAGE)) == bytes(4 * PAGE)
    store.write(0, b"\xdd" * PAGE)
    store.unmap(0, PAGE)
    assert calls[2] == BLKDISCARD  # a discard that did not zero is still tried next time


def test_unmap_writes_zeros_when_no_ioctl_helps(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(0, b"\xcc" * (2 * PAGE))
    fake_ioctl(monkeypatch, {BLKDISCARD: errno.EOPNOTSUPP, BLKZEROOUT: errno.EOPNOTSUPP})
    store.unmap(0, 2 * PAGE)
    assert bytes(store.view(0, 2 * PAGE)) == bytes(2 * PAGE)


@pytest.mark.parametrize("failing", [BLKDISCARD, BLKZEROOUT])
def test_unmap_io_error_is_a_medium_error(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    answers: dict[int, int | None] = {failing: errno.EIO}
    if failing == BLKZEROOUT:
        answers[BLKDISCARD] = errno.EOPNOTSUPP
    fake_ioctl(monkeypatch, answers)
    with pytest.raises(StoreError) as info:
        store.unmap(0, PAGE)
    assert (info.value.sense_key, info.value.asc) == (0x03, 0x0C)


def test_size_must_match_the_device(device: str) -> None:
    with pytest.raises(ValueError, match=f"{device} has {SIZE} bytes, not the 1048576 bytes"):
        BlockStore(device, size=1 << 20)
    BlockStore(device, size=SIZE).close()


def test_exclusive_open(store: BlockStore, device: str) -> None:
    with pytest.raises(ValueError, match=f"^{device} is in use"):
        BlockStore(device)


def test_block_size_must_be_a_multiple_of_the_logical_block_size(image: Path) -> None:
    with loop_device(image, SIZE, "--sector-size", "4096") as dev:
        with pytest.raises(ValueError, match="has 4096-byte logical blocks: the LUN block size "
                                             "512 must be a multiple of it"):
            BlockStore(dev, block_size=512)
        s = BlockStore(dev, block_size=4096)
        assert s.size == SIZE and s.block_size == 4096
        s.write(4096, b"\x11" * 4096)
        s.unmap(0, 8192)
        assert bytes(s.view(0, 8192)) == bytes(8192)
        s.close()


def test_read_only_device(image: Path) -> None:
    with loop_device(image, SIZE, "--read-only") as dev:
        with pytest.raises(ValueError, match="read-only device: add ,ro"):
            BlockStore(dev)
        s = BlockStore(dev, read_only=True)
        with pytest.raises(StoreError) as info:
            s.write(0, b"x" * 512)
        assert (info.value.sense_key, info.value.asc, info.value.ascq) == (0x07, 0x27, 0x00)
        with pytest.raises(StoreError):
            s.unmap(0, PAGE)
        s.close()


def test_lun_spec_opens_a_block_device(device: str, tmp_path: Path) -> None:
    s = open_store(parse_lun_spec(f"file:{device},bs=4096"))
    assert isinstance(s, BlockStore) and s.size == SIZE and s.block_size == 4096
    s.close()
    with pytest.raises(ValueError, match="not the 4194304 bytes asked for"):
        open_store(parse_lun_spec(f"file:{device},size=4M"))
    regular = open_store(parse_lun_spec(f"file:{tmp_path / 'f.img'},size=1M"))
    assert not isinstance(regular, BlockStore)
    regular.close()


def test_refuses_missing_paths_and_regular_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be created"):
        BlockStore(tmp_path / "nope", size=1 << 20)
    (tmp_path / "f.img").write_bytes(bytes(4096))
    with pytest.raises(ValueError, match="is not a block device"):
        BlockStore(tmp_path / "f.img")
