"""Soft-dirty bits: one of the two ways ``dirtylog record --pid`` records another process.

Soft-dirty tracking (``echo 4 > /proc/PID/clear_refs``, then bit 55 of each
``/proc/PID/pagemap`` entry) is how CRIU's iterative pre-dumps find the pages a
process wrote; it needs a kernel built with ``CONFIG_MEM_SOFT_DIRTY``.
:class:`SoftDirtyScanner` reads the entries of the tracked regions each interval
(8 bytes per page, ``pread`` of each range, decoded with numpy) and clears the bits
again; :mod:`dirtylog.record_pid` drives it.

Not tested on a real kernel: the machine dirtylog is developed on has no
``CONFIG_MEM_SOFT_DIRTY``. The tests run the scanner against a synthetic procfs
(files emulating ``maps``, ``pagemap`` and ``clear_refs``), which is why the procfs
root is a parameter.

Limit (as CRIU's pre-dumps without freezing): clearing is process-wide and not atomic
with the read, so a page written between the read of its entry and the clear, and not
written again, is not reported. The userfaultfd method has no such window.
"""
from __future__ import annotations

import mmap
import os
import platform
import struct

from typing import Callable, List, Tuple

import numpy as np

__all__ = ["soft_dirty_available", "SoftDirtyScanner"]

_SOFT_DIRTY_BIT = 1 << 55
_READ_PAGES = 1 << 20  # pagemap entries per pread (8 MiB)


def soft_dirty_available() -> bool:
    """True if a page written after clearing the soft-dirty bits shows bit 55 in pagemap."""
    if platform.system() != "Linux":
        return False
    page = mmap.PAGESIZE
    m = mmap.mmap(-1, page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        import ctypes

        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("4")
        except OSError:
            return False
        m[0:1] = b"\1"
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // page * 8)
            entry, = struct.unpack("<Q", f.read(8))
        return bool(entry & _SOFT_DIRTY_BIT)
    except (OSError, ValueError):
        return False
    finally:
        try:
            m.close()
        except BufferError:
            pass


class SoftDirtyScanner:
    """Written pages of process ``pid`` from its soft-dirty bits, under the procfs root ``procfs``.

    :meth:`interval` reports the pages of the given regions written since the
    previous call (a page counts if its entry has bit 55, soft-dirty, and bit 63,
    present, or bit 62, swapped) and clears the bits (``4`` to ``clear_refs``).
    Addresses not seen before (``assign`` gives them page indices and returns the new
    pieces) count their populated pages as written, as in the launcher's recorder.
    """

    name = "soft-dirty"

    def __init__(self, pid: int, procfs: str = "/proc", page_size: int = mmap.PAGESIZE) -> None:
        self.pid = pid
        self.page_size = page_size
        self._dir = os.path.join(procfs, str(pid))
        self._pagemap = os.open(os.path.join(self._dir, "pagemap"), os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self._pagemap >= 0:
            os.close(self._pagemap)
            self._pagemap = -1

    def clear(self) -> None:
        """Clear the soft-dirty bits of the whole process."""
        with open(os.path.join(self._dir, "clear_refs"), "w") as f:
            f.write("4")

    def entries(self, start: int, end: int) -> np.ndarray:
        """The pagemap entries of [start, end) (zeros where the file ends early, as a hole reads)."""
        ps = self.page_size
        n = (end - start) // ps
        out = np.zeros(n, dtype=np.uint64)
        done = 0
        while done < n:
            want = min(n - done, _READ_PAGES)
            buf = os.pread(self._pagemap, want * 8, (start // ps + done) * 8)
            got = len(buf) // 8
            if got == 0:
                break
            out[done: done + got] = np.frombuffer(buf[: got * 8], dtype="<u8")
            done += got
        return out

    def interval(self, regions: List[Tuple[int, int]],
                 assign: Callable[[int, int], List[Tuple[int, int]]]) -> np.ndarray:
        ps = self.page_size
        found: List[np.ndarray] = []
        for s, e in regions:
            fresh = assign(s, e)
            ent = self.entries(s, e)
            populated = ((ent >> np.uint64(63)) | (ent >> np.uint64(62))) & np.uint64(1)
            dirty = populated & (ent >> np.uint64(55))
            for fs, fe in fresh:  # a region that appears: its populated pages are written
                dirty[(fs - s) // ps: (fe - s) // ps] = populated[(fs - s) // ps: (fe - s) // ps]
            hit = np.flatnonzero(dirty & np.uint64(1)).astype(np.uint64)
            if hit.size:
                found.append(np.uint64(s) + hit * np.uint64(ps))
        self.clear()
        return np.concatenate(found) if found else np.zeros(0, dtype=np.uint64)
