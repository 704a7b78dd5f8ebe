"""The C structures of librbd's API that the binding passes (``rbd/librbd.h``).

Kept apart from :mod:`.librbd` so that module can be compiled: mypyc builds no class on a
``ctypes.Structure`` base, and these stay interpreted.
"""

from __future__ import annotations

import ctypes

c_void_p = ctypes.c_void_p
c_size_t = ctypes.c_size_t
c_uint64 = ctypes.c_uint64
c_int = ctypes.c_int


class IoVec(ctypes.Structure):
    """``struct iovec``."""

    _fields_ = [("iov_base", c_void_p), ("iov_len", c_size_t)]


class ImageInfo(ctypes.Structure):
    """``rbd_image_info_t``."""

    _fields_ = [("size", c_uint64), ("obj_size", c_uint64), ("num_objs", c_uint64),
                ("order", c_int), ("block_name_prefix", ctypes.c_char * 24),
                ("parent_pool", ctypes.c_int64), ("parent_name", ctypes.c_char * 96)]
