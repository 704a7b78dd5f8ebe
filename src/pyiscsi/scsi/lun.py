"""A logical unit: a backing store plus its identity and the limits it advertises.

The identity (unit serial number, NAA designator) is derived stably from the target name,
the LUN and the store's name, so it survives restarts (SPC-4 §7.8.6); a store with a
cluster-wide name (an RBD image: :attr:`BackingStore.stable_name`) gives it alone, so every
gateway exporting it agrees; a serial given by the caller (a configuration file's stored
one) replaces both, and the NAA designator then derives from that serial alone, so the LU
keeps both wherever it is numbered or served. The
limits are the single source for both the Block Limits VPD page (SBC-3 §6.5.3) and the
handlers' checks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..backstore.base import BackingStore
from .busy import BusyRanges
from .iostats import IoStats
from .lu_events import SHARED_ATTENTIONS, Delivery, EventLink, LuEvent, UnitAttentionEvent
from .port import TargetPort
from .reservations import Reservations
from .sanitize import SanitizeState
from .sense import Asc
from .task import Nexus
from .unit_attention import ResetKind, UnitAttentions

SERIAL = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""What a given unit serial number may be (VPD page 80h is ASCII, SPC-4 §7.8.18)."""
PYISCSI_OUI = 0x024953
"""A locally administered (bit 1 of the first octet) company id for NAA-6 designators."""


def identity(target_name: str, number: int, store_name: str,
             serial: str | None = None, stable_name: str | None = None) -> tuple[str, bytes]:
    """(unit serial number, NAA designator) of a logical unit. Without ``serial``: derived
    from the store's ``stable_name`` alone when it has one (an image in a cluster: every
    gateway agrees, whatever target or LUN number it is served as), else from the target
    name, the LUN and the store's name (16 hex digits); with ``serial``: that serial, and an
    NAA designator derived from it alone."""
    if serial is None:
        source = (f"pyiscsi store\0{stable_name}" if stable_name is not None
                  else f"{target_name}\0{number}\0{store_name}")
        digest = hashlib.sha256(source.encode()).digest()
        serial = digest[:8].hex().upper()
    else:
        if not SERIAL.fullmatch(serial):
            raise ValueError(f"bad serial {serial!r}: 1 to 64 of A-Z a-z 0-9 . _ : -")
        digest = hashlib.sha256(f"pyiscsi serial\0{serial}".encode()).digest()
    vendor_specific = int.from_bytes(digest[8:13], "big") >> 4
    extension = digest[13:21]
    high = (0x6 << 60) | (PYISCSI_OUI << 36) | vendor_specific
    return serial, high.to_bytes(8, "big") + extension


STORE_LIMITS = frozenset({"max_transfer_bytes", "max_compare_write_blocks",
                          "max_unmap_lba_count", "max_unmap_descriptors",
                          "max_write_same_bytes", "max_atomic_transfer_bytes",
                          "unmap_granularity_bytes", "optimal_transfer_bytes"})
"""The limits a store may set for its LU (:meth:`BackingStore.limits`)."""


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
    unmap_granularity_bytes = 4096
    """OPTIMAL UNMAP GRANULARITY of the block limits page (SBC-4 §6.6.4), in bytes."""
    optimal_transfer_bytes = 0
    """OPTIMAL TRANSFER LENGTH in bytes (0: not reported; an RBD image: its object size)."""
    physical_block_exponent = 0
    """LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT of READ CAPACITY (16) (SBC-4 §5.20.2); 3
    would describe 4096-byte physical blocks of 512-byte LBAs (the unmap granularity)."""
    write_same_no_zero = True
    """WSNZ (SBC-4 §6.6.4): WRITE SAME of 0 blocks is INVALID FIELD IN CDB. When False, 0
    blocks means up to the last LBA (bounded by MAXIMUM WRITE SAME LENGTH)."""
    max_atomic_transfer_bytes = 1 << 20
    """MAXIMUM ATOMIC TRANSFER LENGTH in bytes (SBC-4 §6.6.4); alignment/granularity: none."""
    sanitize_pace = 1 << 30
    """Bytes a second a SANITIZE may erase (0: as fast as it goes): it runs off the loop,
    and the pace keeps other logical units at their speed (SBC-4 §4.11)."""

    def __init__(self, number: int, store: BackingStore, target_name: str, *,
                 sanitize_pace: int | None = None, serial: str | None = None,
                 shared: bool | None = None) -> None:
        self.number = number
        self.store = store
        self.target_name = target_name
        self.block_size = store.block_size
        self.blocks = store.size // store.block_size
        """Capacity in logical blocks."""
        self.medium_read_only = store.read_only
        """The store cannot be written (a read-only LUN)."""
        self.software_write_protect = False
        """SWP of the control mode page (SPC-4 §7.5.8): set by MODE SELECT, the medium is
        write protected for every initiator until cleared."""
        self.memory_addressable = store.memory_addressable
        self.writes_in_place = store.memory_addressable and store.writes_in_place
        """Data-Out lands in the store's own memory (RAM); else in a buffer the store
        writes from (a file: see :attr:`BackingStore.writes_in_place`)."""
        self.thin = type(store).unmap is not BackingStore.unmap
        """The store really deallocates on unmap: advertise thin provisioning (SBC-3 §4.7)."""
        self.write_cache = True
        """WCE of the caching mode page (SBC-3 §6.4.5)."""
        self.peers: Callable[[], Sequence[int]] = lambda: (number,)
        """LUN numbers REPORT LUNS lists; the target replaces it with its registry's view."""
        self.siblings: Callable[[], Mapping[int, LogicalUnit]] = lambda: {number: self}
        """The LUs of the same target by LUN (EXTENDED COPY resolves CSCD descriptors among
        them, SPC-4 §6.4.5); the target replaces it with its registry's view."""
        for name, value in store.limits().items():
            if name not in STORE_LIMITS:
                raise ValueError(f"{store.name}: unknown limit {name!r}")
            setattr(self, name, value)
        self.max_transfer_blocks = max(1, self.max_transfer_bytes // self.block_size)
        self.max_write_same_blocks = max(1, self.max_write_same_bytes // self.block_size)
        self.max_atomic_transfer_blocks = min(
            self.max_transfer_blocks, max(1, self.max_atomic_transfer_bytes // self.block_size)
        )
        self.serial, self.naa = identity(target_name, number, store.name, serial,
                                         store.stable_name)
        """Unit serial number (VPD page 80h) and NAA IEEE Registered Extended designator,
        16 bytes (SPC-4 §7.8.6.6.5)."""
        self.shared = store.stable_name is not None if shared is None else shared
        """More than one gateway may export this LU (default: the store has a cluster-wide
        name). Until reservations are shared between gateways, a shared LU refuses
        PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE (6) (:mod:`.dispatch`)."""
        self.port = TargetPort()
        """The target port this process is (VPD page 83h designators); the catalog sets it."""
        self.events: EventLink | None = None
        """Carries unit attentions to the other gateways of a shared LU; None: this process
        is the only one (:mod:`.lu_events`)."""
        store_path = getattr(store, "path", None)
        self.attentions = UnitAttentions()
        """Pending unit attentions per I_T nexus (resets)."""
        self.reservations = Reservations(
            Path(f"{store_path}.pr.json") if store_path is not None else None
        )
        """Reservation state (SPC-4 §5.13); APTPL state lives in ``<store path>.pr.json``."""
        self.busy = BusyRanges()
        """Byte ranges store work in flight is changing (later overlapping commands wait)."""
        if sanitize_pace is not None:
            self.sanitize_pace = sanitize_pace
        self.sanitize = SanitizeState(
            Path(f"{store_path}.sanitize.json") if store_path is not None else None
        )
        """The sanitize operation (SBC-4 §4.11): in progress, or failed; resets keep it. A
        marker ``<store path>.sanitize.json`` left by an interrupted one: failure mode."""
        self.sanitize.recover()
        self.stats = IoStats()
        """Commands, bytes and latency answered for this LU (metrics, status)."""

    def nexus_lost(self, nexus: Nexus) -> None:
        """An I_T nexus ended (session closed, logout, reinstatement): its RESERVE (6)
        reservation is released; persistent reservations survive (SPC-4 §5.13.4)."""
        self.reservations.nexus_lost(nexus)

    def reset(self, kind: ResetKind) -> None:
        """LOGICAL UNIT RESET (``"lun"``), TARGET WARM/COLD RESET (``"warm"``/``"cold"``):
        RESERVE (6) reservations are released, persistent ones survive (SAM-5 §6.3)."""
        self.reservations.reset(kind)

    def grow(self, size: int) -> None:
        """Grow the store to ``size`` bytes: READ CAPACITY reports it at once, and every
        I_T nexus that knows the LU gets UNIT ATTENTION CAPACITY DATA HAS CHANGED (SPC-4
        §5.14, 2Ah/09h). ValueError when the store cannot (:meth:`BackingStore.grow`)."""
        if self.sanitize.running():
            raise ValueError("a SANITIZE is in progress")
        self.store.grow(size)
        self.blocks = self.store.size // self.block_size
        change = Asc.CAPACITY_DATA_HAS_CHANGED
        self.attention_everywhere(change.asc, change.ascq)

    def attention_everywhere(self, asc: int, ascq: int) -> Delivery | None:
        """Establish a unit attention for every I_T nexus of the LU: those of this process
        at once, those of the other gateways through :attr:`events` (the delivery finishes
        when they have it; None when there is no link or the attention is not shared,
        :data:`~.lu_events.SHARED_ATTENTIONS`)."""
        self.attentions.establish(asc, ascq)
        if (asc, ascq) not in SHARED_ATTENTIONS:
            return None
        return self.publish(UnitAttentionEvent(asc, ascq))

    def receive(self, event: LuEvent) -> None:
        """Another gateway raised ``event``: applied here only, never published again (a
        unit attention; what a cleared task set does here is the target's, which knows
        the sessions: :func:`~pyiscsi.target.tmf.after_another_gateway`)."""
        if isinstance(event, UnitAttentionEvent):
            self.attentions.establish(event.asc, event.ascq)

    def publish(self, event: LuEvent) -> Delivery | None:
        """Send ``event`` to the other gateways (None: no link)."""
        return self.events.publish(event) if self.events is not None else None

    @property
    def read_only(self) -> bool:
        """Writes end in DATA PROTECT / WRITE PROTECTED: a read-only store or SWP set."""
        return self.medium_read_only or self.software_write_protect

    @property
    def last_lba(self) -> int:
        return self.blocks - 1
