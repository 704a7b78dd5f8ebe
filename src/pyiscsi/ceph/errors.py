"""Errors of the Ceph client libraries: a negative errno from librados/librbd as an exception."""

from __future__ import annotations

import os


class CephError(OSError):
    """A librados/librbd call returned ``-errno``; ``errno`` holds the positive code."""

    def __init__(self, call: str, ret: int, detail: str = "") -> None:
        code = -ret if ret < 0 else ret
        text = f"{call}: {os.strerror(code)}"
        self.text = text + (f" ({detail})" if detail else "")
        super().__init__(code, self.text)
        self.call = call

    def __str__(self) -> str:
        return self.text


class CephUnavailable(RuntimeError):
    """librados/librbd cannot be loaded (not installed): the ``rbd:`` backstore is off."""


def check(call: str, ret: int, detail: str = "") -> int:
    """``ret`` when it is not negative, else :class:`CephError`."""
    if ret < 0:
        raise CephError(call, ret, detail)
    return ret



