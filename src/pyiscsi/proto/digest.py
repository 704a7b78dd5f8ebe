"""CRC32C header and data digests (RFC 7143 §7.8, §11.2.1), via the C ``crc32c`` package.

The digest travels least significant byte first, as Linux open-iscsi and libiscsi send it.
``crc32c`` (SSE4.2/ARMv8 hardware paths) reads any buffer, memoryviews of the store included,
without a copy; google-crc32c only takes bytes, which would cost a copy per payload.
"""

from __future__ import annotations

import struct

import crc32c as _crc32c

_LE32 = struct.Struct("<I")


def crc32c(*parts: bytes | bytearray | memoryview) -> int:
    """CRC32C (Castagnoli) over the concatenation of ``parts``."""
    crc = 0
    for part in parts:
        crc = _crc32c.crc32c(part, crc)
    return int(crc)


def digest_bytes(*parts: bytes | bytearray | memoryview) -> bytes:
    """The 4 wire bytes of the digest over ``parts``."""
    return _LE32.pack(crc32c(*parts))


def verify(expected: bytes | bytearray | memoryview,
           *parts: bytes | bytearray | memoryview) -> bool:
    """Whether the 4 wire bytes ``expected`` are the digest of ``parts``."""
    return bool(_LE32.unpack(bytes(expected))[0] == crc32c(*parts))
