"""A logical unit: a backing store plus its identity and the limits it advertises.

The identity (unit serial number, NAA designator) is derived stably from the target name,
the LUN and the store's name, so it survives restarts (SPC-4 §7.8.6). The limits are the
single source for both the Block Limits VPD page (SBC-3 §6.5.3) and the handlers' checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ..backstore.base import BackingStore

PYISCSI_OUI = 0x024953
"""A locally administered (bit 1 of the first octet) company id for NAA-6 designators."""


class LogicalUnit:
    """One LUN of a target (SAM-5 §4.7)."""

    vendor = "PYISCSI"
    product = "pyiscsi disk"
    revision = "0001"

    max_transfer_bytes = 32 << 20
    """MAXIMUM TRANSFER LENGTH, in bytes (converted to blocks per block size)."""
    max_compare_write_blocks = 255
    """MAXIMUM COMPARE AND WRITE LENGTH (one byte, SBC-3 §6.5.3)."""
    max_unmap_lba_count = 1 << 20
    max_unmap_descriptors = 256
    max_write_same_bytes = 32 << 20

    def __init__(self, number: int, store: BackingStore, target_name: str) -> None:
        self.number = number
        self.store = store
        self.target_name = target_name
        self.block_size = store.block_size
        self.blocks = store.size // store.block_size
        """Capacity in logical blocks."""
        self.read_only = store.read_only
        self.memory_addressable = store.memory_addressable
        self.thin = type(store).unmap is not BackingStore.unmap
        """The store really deallocates on unmap: advertise thin provisioning (SBC-3 §4.7)."""
        self.write_cache = True
        """WCE of the caching mode page (SBC-3 §6.4.5)."""
        self.peers: Callable[[], Sequence[int]] = lambda: (number,)
        """LUN numbers REPORT LUNS lists; the target replaces it with its registry's view."""
        self.max_transfer_blocks = max(1, self.max_transfer_bytes // self.block_size)
        self.max_write_same_blocks = max(1, self.max_write_same_bytes // self.block_size)
        digest = hashlib.sha256(f"{target_name}\0{number}\0{store.name}".encode()).digest()
        self.serial = digest[:8].hex().upper()
        """Unit serial number (VPD page 80h), 16 hex digits."""
        vendor_specific = int.from_bytes(digest[8:13], "big") >> 4
        extension = digest[13:21]
        high = (0x6 << 60) | (PYISCSI_OUI << 36) | vendor_specific
        self.naa = high.to_bytes(8, "big") + extension
        """NAA IEEE Registered Extended designator, 16 bytes (SPC-4 §7.8.6.6.5)."""

    @property
    def last_lba(self) -> int:
        return self.blocks - 1
