"""One Tracker used from several threads at once (issue 15, item 2).

cffi releases the GIL inside C calls, so without a lock two threads run the C
tracker concurrently: a harvest sized by `pending` while a writer adds pages
overflows its buffer, and two writers lose each other's bitmap updates. The
Tracker serializes its calls with a per-tracker lock; here two writer threads
(one per vCPU) and a harvester thread share one tracker, and nothing may be lost.
"""
from __future__ import annotations

import threading
from typing import List

import numpy as np
import pytest

from dirtylog import Tracker, Uniform


def _race(mode: str, fused: bool) -> None:
    pages = 1 << 15
    t = Tracker(pages, mode=mode, vcpus=2, ring_entries=1024)
    t.start()
    rng = np.random.default_rng(7)
    batches = [rng.integers(0, pages, size=4096, dtype=np.uint64) for _ in range(48)]
    wl = Uniform(1e6, seed=3).bind(pages, vcpus=2)
    harvested: List[np.ndarray] = []
    errors: List[BaseException] = []
    done = threading.Event()

    def writer(v: int) -> None:
        try:
            for b in batches[v::2]:
                t.write(b, vcpu=v)
            if fused:  # the fused generator writes into the tracker from C too
                wl.run(t, 0.0, 0.05, vcpu=v)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def harvester() -> None:
        try:
            while not done.is_set():
                harvested.append(t.harvest())
                t.stats  # noqa: B018 - reads every counter while the writers run
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    h = threading.Thread(target=harvester)
    ws = [threading.Thread(target=writer, args=(v,)) for v in range(2)]
    h.start()
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    done.set()
    h.join()
    assert not errors, errors
    harvested.append(t.harvest())
    got = np.concatenate(harvested)
    written = list(batches)
    if fused:
        written += [wl.generate(0.0, 0.05, v) for v in range(2)]
    # every written page is reported by some harvest, and no page twice by one
    assert np.array_equal(np.unique(got), np.unique(np.concatenate(written)))
    assert all(np.unique(x).size == x.size for x in harvested)
    s = t.stats
    assert s.writes == sum(b.size for b in written)
    assert s.harvested_pages == got.size
    assert s.dirty_pages == 0 and t.pending == 0


@pytest.mark.parametrize("mode", ["wp", "pml", "ring"])
def test_one_tracker_from_three_threads_loses_nothing(mode: str) -> None:
    for _ in range(3):
        _race(mode, fused=False)


def test_fused_workload_runs_take_the_tracker_lock() -> None:
    _race("ring", fused=True)
