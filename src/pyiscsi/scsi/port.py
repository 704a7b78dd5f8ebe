"""The target port a gateway process is (SAM-5 §4.6.5, SPC-5 §7.7.6.5-7.7.6.6).

One ``pyiscsi serve`` process is one SCSI target port in a target port group of its own:
two gateways exporting the same logical unit are two ports of one SCSI target device, so
they must differ in their relative target port identifier and target port group. The iSCSI
Target Portal Group Tag (RFC 7143 §13.9), the SCSI target port group and the relative target
port identifier all default to one number derived from the first portal; ``--tpgt`` /
``--relative-port-id`` (``[gateway]`` in a configuration file) set them explicitly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

PORT_ID_MAX = 0xFFFF
"""Relative target port identifiers and target port groups are 16 bits, 0 reserved
(SPC-5 §7.7.6.5 table 500: 0 is reserved, 1 is port A); so is the TPGT (RFC 7143 §13.9)."""


@dataclass(frozen=True, slots=True)
class TargetPort:
    """``group``: the iSCSI Target Portal Group Tag, also reported as the SCSI target port
    group (VPD page 83h designator type 5h); ``relative_id``: the relative target port
    identifier (designator type 4h)."""

    group: int = 1
    relative_id: int = 1

    def __post_init__(self) -> None:
        for name, value in (("tpgt", self.group), ("relative port id", self.relative_id)):
            if not 1 <= value <= PORT_ID_MAX:
                raise ValueError(f"bad {name} {value}: must be 1..{PORT_ID_MAX}")


def derived_port_number(host: str, port: int) -> int:
    """The default TPGT and relative target port identifier of a gateway whose first
    portal is ``host:port`` (the bound port when 0 was asked): the first four bytes of
    SHA-256 of ``"host:port"`` (host as written, IPv6 without brackets), modulo 65535, plus
    one, so 1..65535. Stable across restarts and machines; two gateways on different
    portals differ unless they collide (1 in 65535) or share a wildcard host and a port on
    two machines (give ``--tpgt`` then)."""
    digest = hashlib.sha256(f"{host}:{port}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % PORT_ID_MAX + 1


def derived_port(host: str, port: int, *, group: int | None = None,
                 relative_id: int | None = None) -> TargetPort:
    """The gateway's :class:`TargetPort`: explicit values where given, else derived from
    its first portal (:func:`derived_port_number`). ValueError for a value out of range."""
    number = derived_port_number(host, port)
    return TargetPort(group if group is not None else number,
                      relative_id if relative_id is not None else number)
