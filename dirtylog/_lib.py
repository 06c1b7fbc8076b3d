"""The raw layer: the cffi module and the mapping of C status codes to exceptions.

Everything above this module is Pythonic; everything in it is a thin shim.
"""
from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from ._core import ffi, lib  # generated cffi module, untyped (mypy: ignore_missing_imports)
from .errors import ConfigError, CoreError, ModeError, StateError

__all__ = ["ffi", "lib", "check", "raise_status", "u64_ptr", "as_buffer"]


def raise_status(rc: int, what: str) -> NoReturn:
    """Raise the exception that fits a negative dl_status, with context ``what``."""
    reason = ffi.string(lib.dl_strerror(rc)).decode()
    msg = f"{what}: {reason}"
    if rc == lib.DL_ERR_NOMEM:
        raise MemoryError(msg)
    if rc == lib.DL_ERR_STATE:
        raise StateError(msg)
    if rc == lib.DL_ERR_MODE:
        raise ModeError(msg)
    if rc in (lib.DL_ERR_INVALID, lib.DL_ERR_RANGE):
        raise ConfigError(msg)
    raise CoreError(f"{msg} (status {rc})")


def check(rc: int, what: str) -> None:
    if rc != lib.DL_OK:
        raise_status(rc, what)


_CTYPES = {
    np.dtype(np.uint64): "uint64_t[]",
    np.dtype(np.int64): "int64_t[]",
    np.dtype(np.uint32): "uint32_t[]",
    np.dtype(np.int32): "int32_t[]",
    np.dtype(np.uint8): "uint8_t[]",
    np.dtype(np.float64): "double[]",
}


def as_buffer(arr: np.ndarray) -> Any:
    """A cffi pointer to a C-contiguous, native-endian array's data (no copy)."""
    return ffi.from_buffer(_CTYPES[arr.dtype], arr)


def u64_ptr(arr: np.ndarray) -> Any:
    if arr.dtype != np.uint64 or not arr.flags.c_contiguous:
        raise CoreError("internal: expected a contiguous uint64 array")
    return ffi.from_buffer("uint64_t[]", arr)
