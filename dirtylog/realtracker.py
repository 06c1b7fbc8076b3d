"""`RealTracker`: dirty pages of real memory in this process, tracked by the Linux kernel.

The kernel's own write tracking does for a process what KVM's dirty log does for a
guest: userfaultfd write protection in async mode (``UFFD_FEATURE_WP_ASYNC``, Linux
6.7+) marks a page written on its first write without a fault handler, and the
``PAGEMAP_SCAN`` ioctl returns the written pages and write-protects them again in one
call. The C side is ``csrc/include/dirtylog/realtrack.h``; ``dirtylog record``
(:mod:`dirtylog.record`) uses the same core inside a launched program.

:func:`kernel_support` says what the running kernel offers and :func:`require_support`
raises an error naming what is missing.
"""
from __future__ import annotations

import errno as _errno
import os
import platform
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ._lib import ffi, lib, raise_status
from .errors import ConfigError, StateError, UnsupportedError

__all__ = ["RealTracker", "KernelSupport", "kernel_support", "require_support"]


@dataclass(frozen=True)
class KernelSupport:
    """What the running kernel offers this process for real dirty tracking."""

    userfaultfd: bool
    wp_async: bool
    pagemap_scan: bool
    errno: int  # errno of the first missing feature's failed call (0 if none failed)

    @property
    def ok(self) -> bool:
        return self.userfaultfd and self.wp_async and self.pagemap_scan

    def missing(self) -> str:
        """What is missing, in one sentence ('' if nothing is)."""
        kernel = f"Linux {platform.release()}" if platform.system() == "Linux" else platform.system()
        why = f" ({_errno.errorcode.get(self.errno, self.errno)}: {os.strerror(self.errno)})" if self.errno else ""
        if platform.system() != "Linux":
            return f"real dirty tracking needs Linux 6.7 or later (userfaultfd WP async and PAGEMAP_SCAN); this is {kernel}"
        if not self.userfaultfd:
            if self.errno in (_errno.EPERM, _errno.EACCES):
                return (f"userfaultfd(2) is not permitted{why}: allow it with 'sysctl vm.unprivileged_userfaultfd=1', "
                        "run with CAP_SYS_PTRACE, or lift the seccomp filter (containers often block it)")
            return f"userfaultfd(2) is not available{why}: the kernel ({kernel}) lacks CONFIG_USERFAULTFD"
        if not self.wp_async:
            return (f"the kernel ({kernel}) lacks userfaultfd async write protection (UFFD_FEATURE_WP_ASYNC and "
                    f"UFFD_FEATURE_WP_UNPOPULATED, Linux 6.7+, CONFIG_PTE_MARKER_UFFD_WP){why}")
        if not self.pagemap_scan:
            return f"the kernel ({kernel}) lacks the PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7+){why}"
        return ""


def kernel_support() -> KernelSupport:
    """Probe the running kernel (cheap: opens and closes a userfaultfd and /proc/self/pagemap)."""
    feats = ffi.new("uint32_t *")
    err = ffi.new("int *")
    lib.dl_rt_probe(feats, err)
    f = int(feats[0])
    return KernelSupport(
        userfaultfd=bool(f & lib.DL_RT_HAVE_USERFAULTFD),
        wp_async=bool(f & lib.DL_RT_HAVE_WP_ASYNC),
        pagemap_scan=bool(f & lib.DL_RT_HAVE_PAGEMAP_SCAN),
        errno=int(err[0]),
    )


def require_support() -> None:
    """Raise :class:`UnsupportedError` (or PermissionError) naming what the kernel lacks."""
    s = kernel_support()
    if s.ok:
        return
    msg = s.missing()
    if not s.userfaultfd and s.errno in (_errno.EPERM, _errno.EACCES):
        raise PermissionError(msg)
    raise UnsupportedError(msg)


def _raise(rc: int, err: int, what: str) -> None:
    if rc == lib.DL_OK:
        return
    detail = f" ({_errno.errorcode.get(err, err)}: {os.strerror(err)})" if err else ""
    if rc == lib.DL_ERR_UNSUPPORTED:
        require_support()
        raise UnsupportedError(f"{what}: not supported by this kernel{detail}")
    if rc == lib.DL_ERR_PERM:
        raise PermissionError(f"{what}: permission denied{detail}; " + (kernel_support().missing() or
                              "the memory may not be registrable for write tracking"))
    if rc == lib.DL_ERR_SYSTEM:
        raise OSError(err, f"{what}: {os.strerror(err) if err else 'a system call failed'}")
    raise_status(rc, f"{what}{detail}")


def _byte_bounds(arr: np.ndarray) -> Tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        byte_bounds = np.byte_bounds  # type: ignore[attr-defined]
    lo, hi = byte_bounds(arr)
    return int(lo), int(hi)


class RealTracker:
    """Dirty-page tracking of real memory in this process (Linux 6.7+), like :class:`dirtylog.Tracker`.

    Give a numpy array, an :class:`mmap.mmap` (or another writable buffer), or
    ``address=`` and ``length=`` (bytes). The tracked range is every page the memory
    touches: page 0 is the page holding its first byte (:attr:`offset` is the
    memory's start within it). The memory must be mapped and registrable with
    userfaultfd write protection (anonymous memory such as numpy arrays, shared memory).

    :meth:`start` write-protects the range; :meth:`harvest` returns the pages written
    since the previous harvest (or the start) as sorted uint64 page offsets, and
    write-protects them again; :meth:`stop` ends tracking. As with the simulated
    tracker, a write racing a harvest is reported by this harvest or the next, never
    lost. Documented cases: pages of the range outside the object are tracked too (the
    edges of an unaligned array share pages with other data); a page of private
    anonymous memory discarded with ``MADV_DONTNEED`` is reported once (its content
    became zeros), one of shared memory is not. Use it as a context manager to
    stop on exit.
    """

    def __init__(self, target: Any = None, *, address: Optional[int] = None, length: Optional[int] = None) -> None:
        self.page_size = int(lib.dl_rt_page_size())
        self._keep: Any = None  # the object (or cffi buffer) that keeps the memory alive
        self._buf: Any = None
        if target is not None:
            if address is not None or length is not None:
                raise ConfigError("RealTracker takes an object (numpy array, mmap, buffer) or address= and length=, not both")
            lo, hi = self._bounds(target)
        else:
            if address is None or length is None:
                raise ConfigError("RealTracker needs a numpy array, an mmap or a writable buffer, or both address= and length=")
            if isinstance(address, bool) or not isinstance(address, (int, np.integer)) or int(address) <= 0:
                raise ConfigError(f"address must be a positive integer, got {address!r}")
            if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or int(length) <= 0:
                raise ConfigError(f"length must be a positive number of bytes, got {length!r}")
            lo, hi = int(address), int(address) + int(length)
        ps = self.page_size
        self.address = lo - lo % ps  # first byte of page 0
        self.offset = lo - self.address
        self.pages = -(-(hi - self.address) // ps)
        self._rt: Any = None
        self._out = np.empty(0, dtype=np.uint64)

    def _bounds(self, target: Any) -> Tuple[int, int]:
        if isinstance(target, np.ndarray):
            if not target.flags.writeable:
                raise ConfigError("the numpy array is read-only: only writable memory can be tracked")
            if target.nbytes == 0:
                raise ConfigError("the numpy array is empty: nothing to track")
            self._keep = target
            return _byte_bounds(target)
        try:
            buf = ffi.from_buffer("char[]", target, require_writable=True)
        except TypeError:
            raise TypeError(
                f"RealTracker tracks a numpy array, an mmap or a writable buffer, got {type(target).__name__}"
            ) from None
        if len(buf) == 0:
            raise ConfigError(f"the {type(target).__name__} is empty: nothing to track")
        self._buf = buf  # holds the buffer export: an mmap cannot be closed under the tracker
        self._keep = target
        lo = int(ffi.cast("uintptr_t", buf))
        return lo, lo + len(buf)

    @property
    def logging(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._rt is not None

    @property
    def nbytes(self) -> int:
        """Bytes of the tracked range (whole pages)."""
        return self.pages * self.page_size

    def __repr__(self) -> str:
        return f"RealTracker(address=0x{self.address:x}, pages={self.pages}, logging={self.logging})"

    def start(self) -> None:
        """Register the range with userfaultfd (WP async) and write-protect every page."""
        if self.logging:
            raise StateError("tracking is already started; call stop() first to restart it")
        require_support()
        out = ffi.new("dl_rt **")
        err = ffi.new("int *")
        _raise(lib.dl_rt_open(out, err), int(err[0]), "opening a userfaultfd")
        rt = out[0]
        rc = lib.dl_rt_register(rt, self.address, self.nbytes, err)
        if rc != lib.DL_OK:
            lib.dl_rt_close(rt)
            if rc == lib.DL_ERR_STATE:
                raise StateError(f"the range 0x{self.address:x}+{self.nbytes} is already tracked by another "
                                 "RealTracker (or userfaultfd user); stop that one first")
            if rc == lib.DL_ERR_INVALID:
                raise ConfigError(f"the range 0x{self.address:x}+{self.nbytes} cannot be tracked: it must be mapped "
                                  "memory that userfaultfd can write-protect (anonymous or shared memory)")
            _raise(rc, int(err[0]), "registering the range")
        self._rt = ffi.gc(rt, lib.dl_rt_close)
        self._out = np.empty(self.pages, dtype=np.uint64)
        self._scan(lib.DL_RT_FIRST)  # protect everything; what was written before start() is not reported

    def _scan(self, flags: int) -> np.ndarray:
        count = ffi.new("size_t *")
        walk_end = ffi.new("uint64_t *")
        err = ffi.new("int *")
        out = self._out
        rc = lib.dl_rt_harvest(self._rt, self.address, self.nbytes, flags, ffi.from_buffer("uint64_t[]", out),
                               out.size, count, walk_end, err)
        if rc == lib.DL_ERR_STATE:
            raise StateError(f"the range 0x{self.address:x}+{self.nbytes} is no longer registered: was its memory "
                             "unmapped or remapped while tracked?")
        _raise(rc, int(err[0]), "harvest")
        return out[: int(count[0])]

    def harvest(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Pages written since the previous harvest (or :meth:`start`), sorted (uint64), re-protecting them.

        With ``out`` (a writable, C-contiguous uint64 array of at least :attr:`pages`
        elements) the pages are copied there and a view of it is returned.
        """
        if not self.logging:
            raise StateError("harvest() needs tracking: call start() first")
        got = self._scan(0)
        if out is not None:
            if (not isinstance(out, np.ndarray) or out.dtype != np.uint64 or out.ndim != 1
                    or not out.flags.c_contiguous or not out.flags.writeable):
                raise TypeError("out must be a writable, C-contiguous 1-D numpy uint64 array")
            if out.size < got.size:
                raise ConfigError(f"out holds {out.size} pages but the harvest has {got.size} (size it to pages)")
            out[: got.size] = got
            return out[: got.size]
        return got.copy()

    def stop(self) -> None:
        """Stop tracking: the range is unregistered and writes cost nothing again."""
        if not self.logging:
            raise StateError("tracking is not started; nothing to stop")
        rt, self._rt = self._rt, None
        err = ffi.new("int *")
        lib.dl_rt_unregister(rt, self.address, self.nbytes, err)  # fails only if the memory is gone: fine
        ffi.release(rt)  # closes the userfaultfd now, not at garbage collection

    def close(self) -> None:
        """Stop tracking if started, and release the memory's buffer."""
        if self.logging:
            self.stop()
        if self._buf is not None:
            ffi.release(self._buf)
            self._buf = None

    def __enter__(self) -> "RealTracker":
        if not self.logging:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

