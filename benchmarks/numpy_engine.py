"""A pure numpy implementation of the pre-copy engine loop: the yardstick for bench_engine.py.

It runs the same loop as the C engine (``csrc/engine.c``) and :class:`dirtylog.Migration`
with the guest's cost feedback off: rounds of pages sent in page order in chunks,
each chunk's pages copied (versions) to the destination, then the workload's writes
of the chunk's time slice applied (source versions bumped, dirty bits set); a sync
at the end of each round; the switch-over when the pending bytes plus the device
state fit in bandwidth x downtime limit. It is fed the same write stream, generated
once up front by the workload (one array per vCPU), and it slices that stream by
the workload's cumulative write counts, so its round sizes are identical to the C
engine's. Dirty tracking is a plain bitmap (the WP/PML dirty set, without their
exits' accounting), which only flatters it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np


@dataclass
class NumpyEngineResult:
    round_dirty_pages: List[int] = field(default_factory=list)
    round_pages_sent: List[int] = field(default_factory=list)
    final_pages: int = 0
    total_time: float = 0.0
    writes: int = 0
    verified: bool = False


def cumulative_counts(bound, times: np.ndarray, vcpu: int) -> np.ndarray:
    """W_j(t) for each t: writes of vCPU j in [0, t) (the workload's own counter)."""
    return np.array([bound.count(0.0, float(t), vcpu) for t in times], dtype=np.int64)


def run(
    streams: Sequence[np.ndarray],
    bound,
    pages: int,
    page_bytes: int,
    bandwidth: float,
    chunk_pages: int,
    downtime_limit: float,
    device_bytes: int,
    setup_time: float,
) -> NumpyEngineResult:
    res = NumpyEngineResult()
    vcpus = len(streams)
    src = np.zeros(pages, dtype=np.uint32)
    dst = np.full(pages, 0xFFFFFFFF, dtype=np.uint32)
    dirty = np.zeros(pages, dtype=bool)
    page_t = page_bytes / bandwidth
    pos = [0] * vcpus  # writes consumed per vCPU

    def apply_writes(g1: float) -> None:
        for j in range(vcpus):
            end = bound.count(0.0, g1, j)
            idx = streams[j][pos[j]:end]
            if idx.size:
                np.add.at(src, idx, 1)
                dirty[idx] = True
                res.writes += idx.size
            pos[j] = end

    def chunk_time(k: int) -> float:
        # the C loop adds page_t once per page, starting from -0.0
        return float(np.add.accumulate(np.full(k, page_t))[-1]) if k else 0.0

    full_chunk_t = chunk_time(chunk_pages)
    clock = setup_time
    guest = setup_time
    apply_writes(guest)  # the guest ran during setup
    dirty[:] = False  # the setup sync; round 0 sends everything

    round_pages = np.arange(pages, dtype=np.uint64)
    while True:
        n = round_pages.size
        for i in range(0, n, chunk_pages):
            chunk = round_pages[i:i + chunk_pages]
            dst[chunk] = src[chunk]
            wall = full_chunk_t if chunk.size == chunk_pages else chunk_time(chunk.size)
            clock += wall
            guest = guest + wall
            apply_writes(guest)
        res.round_pages_sent.append(int(n))
        nxt = np.flatnonzero(dirty).astype(np.uint64)
        dirty[:] = False
        res.round_dirty_pages.append(int(nxt.size))
        if nxt.size * page_bytes + device_bytes <= bandwidth * downtime_limit:
            break
        round_pages = nxt
    # stop-and-copy: the guest is paused
    dst[nxt] = src[nxt]
    clock += chunk_time(int(nxt.size)) + device_bytes / bandwidth
    res.final_pages = int(nxt.size)
    res.total_time = clock
    res.verified = bool(np.array_equal(src, dst))
    return res
