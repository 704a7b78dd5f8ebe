"""CRC32C header and data digests (RFC 7143 §7.8, §11.2.1), C-backed via google-crc32c.

The digest travels least significant byte first, as Linux open-iscsi and libiscsi send it.
"""

from __future__ import annotations

import struct

import google_crc32c

_LE32 = struct.Struct("<I")


def crc32c(*parts: bytes | bytearray | memoryview) -> int:
    """CRC32C (Castagnoli) over the concatenation of ``parts``."""
    crc = 0
    for part in parts:
        crc = google_crc32c.extend(crc, part)
    return int(crc)


def digest_bytes(*parts: bytes | bytearray | memoryview) -> bytes:
    """The 4 wire bytes of the digest over ``parts``."""
    return _LE32.pack(crc32c(*parts))


def verify(expected: bytes | bytearray | memoryview,
           *parts: bytes | bytearray | memoryview) -> bool:
    """Whether the 4 wire bytes ``expected`` are the digest of ``parts``."""
    return bool(_LE32.unpack(bytes(expected))[0] == crc32c(*parts))
