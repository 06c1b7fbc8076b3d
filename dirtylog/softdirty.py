"""Soft-dirty bits: what ``dirtylog record --pid`` would use to record another process.

Soft-dirty tracking (``echo 4 > /proc/PID/clear_refs``, then bit 55 of each
``/proc/PID/pagemap`` entry) is how CRIU's iterative pre-dumps find the pages a
process wrote; it needs a kernel built with ``CONFIG_MEM_SOFT_DIRTY``.
"""
from __future__ import annotations

import mmap
import os
import platform
import struct

__all__ = ["soft_dirty_available", "record_pid_unsupported"]

_SOFT_DIRTY_BIT = 1 << 55


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


def record_pid_unsupported(pid: int) -> str:
    """The error for ``dirtylog record --pid``: why it cannot record, and what to do instead."""
    if not os.path.exists(f"/proc/{pid}"):
        return f"no process with pid {pid}"
    if soft_dirty_available():
        return ("recording a running process with soft-dirty bits is not implemented yet, although this kernel has "
                "them; launch the program under the recorder instead: dirtylog record -- COMMAND ARGS")
    return (f"this kernel (Linux {platform.release()}) has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off), which "
            "recording another process (--pid) needs; launch the program under the recorder instead: "
            "dirtylog record -- COMMAND ARGS (in-process tracking with userfaultfd WP async and PAGEMAP_SCAN)")
