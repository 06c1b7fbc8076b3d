"""The memory a migration needs, checked against what the machine has before anything is allocated.

A guest's simulation state grows with its size: the tracker's bitmaps, the stale bits
(verification), the source's page versions (zero pages), the per-round dirty page lists,
post-copy's bitmaps and the XBZRLE cache. A configuration that needs more than the machine can give is refused
with a :class:`~dirtylog.errors.ConfigError` saying how much it needs, instead of
being killed by the kernel's OOM killer half-way.

Set ``DIRTYLOG_NO_MEMORY_CHECK=1`` to skip the check (e.g. on a machine that swaps
on purpose).
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional

from ._validate import BLOCK_PAGES, TrackerConfig
from .errors import ConfigError
from .models import distinct_pages
from .units import format_size

__all__ = ["available_memory", "migration_memory", "check_memory"]

#: Bytes of a dirty-page list entry (a uint64 page number).
_ENTRY = 8
#: Dirty-page lists alive at once: two harvest buffers used in turn (the round being
#: sent is a view of one of them; only the entries written take memory).
_LISTS = 2


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> Optional[int]:
    """What the process's cgroup (v2) still allows, if it sets a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            path = next((ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")), None)
        if path is None:
            return None
        base = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
        with open(os.path.join(base, "memory.max")) as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open(os.path.join(base, "memory.current")) as f:
            current = int(f.read().strip())
        return max(0, int(limit) - current)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate without swapping (None when unknown).

    Linux's MemAvailable, or less if the process's cgroup sets a lower limit.
    """
    values = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(values) if values else None


def migration_memory(
    tracker: TrackerConfig,
    *,
    verify: bool,
    source_versions: bool,
    write_rate: Optional[float],
    written_pages: Optional[int] = None,
    bandwidth: float,
    page_bytes: int,
    postcopy: bool,
    xbzrle_slots: int,
) -> Dict[str, int]:
    """Bytes a migration of this configuration holds at its peak, by what holds them.

    Exact for the fixed state; the dirty-page lists are estimated from the workload's
    write rate over the time it takes to send memory once (every page when the rate
    is unknown), as the saturating model does (:func:`dirtylog.models.distinct_pages`
    over the ``written_pages`` the writes fall among, all pages by default).
    """
    pages = tracker.pages
    words = (pages + 63) // 64
    need: Dict[str, int] = {}
    t = words * 8 * (2 if tracker.mode == "ring" else 1)
    if tracker.huge_pages is not None:
        t += (pages + BLOCK_PAGES - 1) // BLOCK_PAGES
    if tracker.mode == "pml":
        t += tracker.vcpus * (tracker.pml_entries + 2) * 8
    if tracker.mode == "ring":
        t += tracker.vcpus * tracker.ring_entries * 16
    need["tracker"] = t
    if source_versions:
        need["source page versions"] = 4 * pages
    if verify:
        need["stale bits"] = words * 8  # beside the tracker's own (Tracker.stale_start)
    if tracker.mode == "clear":
        # the harvested bitmap, the engine's copy as a clear mask, and its unpacked bits
        need["clear-mode bitmaps"] = 2 * words * 8 + pages
    if write_rate is None or not math.isfinite(write_rate):
        dirty = float(pages)
    else:
        first_pass = pages * page_bytes / bandwidth
        dirty = distinct_pages(write_rate * first_pass, pages if written_pages is None else written_pages)
    need["dirty page lists"] = int(_LISTS * _ENTRY * min(float(pages), math.ceil(dirty) + 1))
    if postcopy:
        # destination's bitmap (C and Python copies) and the received count per page
        need["post-copy bitmaps"] = 2 * words * 8 + pages
    if xbzrle_slots:
        need["XBZRLE cache"] = 8 * xbzrle_slots
    return need


def check_memory(need: Dict[str, int], what: str) -> None:
    """ConfigError if the parts of ``need`` sum to more than the machine has available."""
    if os.environ.get("DIRTYLOG_NO_MEMORY_CHECK", "") not in ("", "0"):
        return
    total = sum(need.values())
    have = available_memory()
    if have is None or total <= have:
        return
    parts = ", ".join(f"{k} {format_size(v)}" for k, v in sorted(need.items(), key=lambda kv: -kv[1]) if v)
    raise ConfigError(
        f"{what} needs about {format_size(total)} of memory ({parts}) but this machine has "
        f"{format_size(have)} available; simulate a smaller guest, larger pages (page_size), "
        f"or verify=False (it keeps a stale bit per page); DIRTYLOG_NO_MEMORY_CHECK=1 skips this check"
    )
