"""Benchmarks of the C tracker against the bare C loops and the numpy reference.

Write throughput: per mode (wp, pml, ring; clear writes exactly as wp), for 4 GiB,
128 GiB and 1 TiB guests (4 KiB pages), with uniform, skewed and sequential index
streams. A *round* is what a migration iteration sees: the dirty log is harvested
(untimed), then the guest writes ``BATCHES_PER_ROUND`` batches of 1M pages (timed),
so the tracker is measured in steady state: some writes find their page armed,
most repeat earlier ones. The bare loop (``dl_bench_bare_set``: only
``bitmap[i>>6] |= 1 << (i & 63)``) writes the same batches into a bitmap of the
same size, zeroed between rounds: on its own (``test_write_bare``, its best round,
and a check that it computes the tracker's bitmap) and paired round by round with
the tracker's rounds, as the first writes below are (the figure held to the target
is the median of the paired ratios). The reference model writes a prefix of each
batch (it is 100x slower) and is re-armed with stop()/start() between rounds (the
state a harvest leaves, much cheaper in numpy); its time is normalized per write.

First writes (issue 11): a stream where every write finds its page armed, as
right after a harvest: batches of 1M distinct pages in random order, each written
right after a harvest (untimed), in 4 GiB and 128 GiB guests. ``stale`` also keeps
the migration's verification bitmap (a bit set per write). The bare loop is timed in
the same benchmark, paired round by round: it writes each round's batch into a zeroed
bitmap right before the tracker's round (even rounds) or right after it (odd rounds),
with the benchmark's timer; each timed write of either side follows an untimed one of
its own on the same batch, so that neither finds its bitmap evicted by the other's. Each pair gives a ratio (tracker round / bare round); the
figure held to the target is the median of the 40 paired ratios, reported with their
interquartile range, beside the best-of ratio (the tracker's best round over the bare
loop's best round of the same run). Why: on a shared 2-core machine the bare loop
alone varies by 30 % from one run to the next (0.96-1.31 ns a write), and a best-of
ratio compares two rounds that may be seconds apart, each the luckiest of its side,
so one quiet moment decides it; the two rounds of a pair are a millisecond apart,
under the same load, and the median ignores the pairs a burst of other work hit.
What is timed is unchanged: the same C call on the same batches after the same
untimed harvest, and the same bare loop. The per-call cost of ``Tracker.write`` and of the
lock that makes one tracker safe to share between threads is measured on batches
of 64 pages (the lock's cost: the method against the same method with a no-op lock).

Harvest throughput: a 128 GiB guest with 0.1 %, 10 % and 100 % of its pages dirty
(scattered), WP mode. The tracker is timed at the C API (``dl_tracker_harvest``
into a caller's buffer: snapshot, clear, re-arm, list the pages) and through
``Tracker.harvest()`` (which also allocates the result array); the bare scan
(``dl_bench_bare_scan``) lists the set bits of the same bitmap into the same
buffer. Pages are re-dirtied (untimed) before every round.

All batches are contiguous uint64 arrays made before the timed region. The write rows'
figures held to their targets are the paired medians; the other ratios are computed from
the best round of each benchmark (see ``per_op_ns`` in conftest.py). All are printed at
the end and stored in ``benchmark.extra_info``; targets are reported, never asserted.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

from dirtylog import Tracker
from dirtylog._lib import ffi, lib
from dirtylog.reference import ReferenceTracker

from conftest import (  # type: ignore[import-not-found]
    BATCHES_PER_ROUND,
    DENSITIES,
    FIRST_GUESTS,
    FIRST_TARGETS,
    GUESTS,
    HARVEST_GUEST,
    REFERENCE_TARGET,
    STREAMS,
    TARGETS,
    WRITE_BATCH,
    dirty_pages,
    first_write_batches,
    per_op_ns,
    write_batches,
)

WRITE_MODES = ("wp", "pml", "ring")
ROUNDS = 10
STEADY_PAIRS = 20  # timed steady-state rounds, each paired with a bare-loop round
# The reference writes this many pages of each batch (wp is vectorized numpy;
# pml and ring loop in Python over newly dirtied pages).
REF_PREFIX = {"wp": WRITE_BATCH // 4, "pml": WRITE_BATCH // 64, "ring": WRITE_BATCH // 64}
REF_ROUNDS = 3

guest_ids = list(GUESTS)


def _u64(a: np.ndarray):
    return ffi.from_buffer("uint64_t[]", a)


# ============================================================================ writes


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("guest", guest_ids)
def test_write_bare(benchmark, results, guest, stream):
    pages = GUESTS[guest]
    batches = write_batches(pages, stream)
    bitmap = np.zeros((pages + 63) // 64, dtype=np.uint64)
    bp = _u64(bitmap)
    ptrs = [(_u64(b), b.size) for b in batches]

    def setup():
        bitmap.fill(0)  # the bare loop's "harvest"

    def round_():
        for p, n in ptrs:
            lib.dl_bench_bare_set(bp, p, n)

    benchmark.group = f"write {guest} {stream}"
    benchmark.pedantic(round_, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    ns = per_op_ns(benchmark, BATCHES_PER_ROUND * WRITE_BATCH)
    results.record("write-bare", f"{guest}/{stream}", "bare", ns)
    median = per_op_ns(benchmark, BATCHES_PER_ROUND * WRITE_BATCH, "median")
    benchmark.extra_info.update(ns_per_write=ns, median_ns_per_write=median, pages=pages, stream=stream)
    # the bare loop computed what the tracker reports
    t = Tracker(pages)
    t.start()
    for b in batches:
        t.write(b)
    assert np.array_equal(t.harvest_bitmap(), bitmap)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("guest", guest_ids)
@pytest.mark.parametrize("mode", WRITE_MODES)
def test_write_tracker(benchmark, results, mode, guest, stream):
    """The tracker in steady state, each round paired with a bare-loop round, as the first writes are.

    A round: a harvest (untimed), then the round's ``BATCHES_PER_ROUND`` batches through
    ``Tracker.write``. The bare loop writes the same batches into a zeroed bitmap right before
    the round (even rounds) or right after it (odd rounds), and each side's timed round follows
    an untimed one of its own (see _paired_rounds). The median of the rounds' own ratios is the
    figure held to the target; the best of each side (the bare loop's from test_write_bare) is
    shown beside it. Unpaired, the bare loop alone ranged 1.06-3.18 ns a write between runs
    under load, and the best-of ratio followed whichever run caught a quiet moment."""
    pages = GUESTS[guest]
    batches = write_batches(pages, stream)
    t = Tracker(pages, mode=mode, vcpus=1)
    t.start()

    def round_(_i):
        for b in batches:
            t.write(b)

    benchmark.group = f"write {guest} {stream}"
    # t.harvest_bitmap: the migration's sync between rounds, untimed
    bare_s = _paired_rounds(benchmark, round_, t.harvest_bitmap, 1, bare=_bare(pages, [batches]),
                            rounds=STEADY_PAIRS)
    ops = BATCHES_PER_ROUND * WRITE_BATCH
    ns = per_op_ns(benchmark, ops)
    case = f"{mode}/{guest}/{stream}"
    results.record("write", case, "tracker", ns)
    paired = _paired(benchmark, bare_s, ops)
    for k, x in paired.items():
        results.record("write", case, k, x)
    s = t.stats
    median = per_op_ns(benchmark, ops, "median")
    info = dict(ns_per_write=ns, median_ns_per_write=median, pages=pages, mode=mode, stream=stream, faults=s.faults,
                pml_full_exits=s.pml_full_exits, ring_full_exits=s.ring_full_exits, target=TARGETS[mode], **paired)
    bare = results.get("write-bare", f"{guest}/{stream}", "bare")
    if bare:
        info.update(best_bare_ns_per_write=bare, tracker_over_best_bare=ns / bare)
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("guest", guest_ids)
@pytest.mark.parametrize("mode", WRITE_MODES)
def test_write_reference(benchmark, results, mode, guest, stream):
    pages = GUESTS[guest]
    k = REF_PREFIX[mode]
    batches = [b[:k] for b in write_batches(pages, stream)]
    r = ReferenceTracker(pages, mode=mode, vcpus=1)
    r.start()

    def setup():
        r.stop()  # re-arm everything: the state a harvest leaves
        r.start()

    def round_():
        for b in batches:
            r.write(b)

    benchmark.group = f"write {guest} {stream}"
    benchmark.pedantic(round_, setup=setup, rounds=REF_ROUNDS, warmup_rounds=0)
    ns = per_op_ns(benchmark, BATCHES_PER_ROUND * k)
    case = f"{mode}/{guest}/{stream}"
    results.record("write", case, "reference", ns)
    info = dict(ns_per_write=ns, pages=pages, mode=mode, stream=stream, writes_per_batch=k)
    tr = results.get("write", case, "tracker")
    if tr:
        info.update(tracker_ns_per_write=tr, reference_over_tracker=ns / tr, target=REFERENCE_TARGET)
    benchmark.extra_info.update(info)


# ============================================================================ first writes


def _bare(pages: int, groups) -> Tuple[Callable[[int], None], Callable[[], None]]:
    """The bare loop on the batches of group i (``write(i)``), and its "harvest" (``reset()``)."""
    bitmap = np.zeros((pages + 63) // 64, dtype=np.uint64)
    bp = _u64(bitmap)
    ptrs = [[(_u64(b), b.size) for b in g] for g in groups]

    def write(i: int) -> None:
        for p, n in ptrs[i]:
            lib.dl_bench_bare_set(bp, p, n)

    return write, lambda: bitmap.fill(0)


def _paired_rounds(benchmark, write, reset, count: int, bare=None, rounds: int = 0) -> List[float]:
    """Times `write(i)` right after `reset()` (untimed), i cycling over range(count), for
    ``rounds`` rounds (default ROUNDS * count).

    With ``bare`` (its write and reset, see _bare), the bare loop writes the
    same batches right before each timed round on even rounds and right after it on odd
    ones, timed with the benchmark's own timer; returns those times, in round order
    (the tracker's are ``benchmark.stats.stats.data``). Each timed write, the
    tracker's or the bare loop's, follows an untimed one of the same side on the same
    batches (reset, write, reset): so each runs in the cache state its own work leaves,
    whichever side ran before the pair. Without it the side that ran second found its
    bitmap evicted by the other's: at 128 GiB the bare loop's median was 1.8x slower
    after the tracker than after itself (the tracker's 1.1x: it prefetches), and the
    paired ratios fell into two groups by order (1.27x and 0.76x for ring mode)."""
    state = {"i": -1, "k": 0}
    warmup = 1
    timer = getattr(benchmark, "_timer", time.perf_counter)
    bare_s: List[float] = []

    def time_bare(i: int) -> None:
        bare[1]()
        bare[0](i)  # untimed: see above
        bare[1]()
        t0 = timer()
        bare[0](i)
        dt = timer() - t0
        if state["k"] > warmup:
            bare_s.append(dt)

    def setup():
        state["i"] = (state["i"] + 1) % count
        state["k"] += 1
        if bare and state["k"] % 2 == 0:
            time_bare(state["i"])
        if bare:
            reset()
            write(state["i"])  # untimed: see above
        reset()  # each side's reset right before its own timed write
        return (state["i"],), {}

    def teardown(i):
        if bare and state["k"] % 2 == 1:
            time_bare(i)

    benchmark.pedantic(write, setup=setup, teardown=teardown, rounds=rounds or ROUNDS * count,
                       warmup_rounds=warmup)
    return bare_s


def _paired(benchmark, bare_s: List[float], ops: int) -> Dict[str, float]:
    """The paired figures of a benchmark timed by _paired_rounds (see test_first_write_paired)."""
    stats = getattr(benchmark, "stats", None)
    data = list(getattr(getattr(stats, "stats", None), "data", []) or [])
    if not data or len(data) != len(bare_s):
        return {}
    ratios = np.array(data) / np.array(bare_s)
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    # the order's own effect (whichever runs second finds the batch warmer): round 0 of
    # the timed rounds had the bare loop first (see _paired_rounds)
    return dict(bare_ns_per_write=min(bare_s) / ops * 1e9, best_ratio=min(data) / min(bare_s),
                paired_median=float(med), paired_q1=float(q1), paired_q3=float(q3), pairs=len(data),
                paired_median_bare_first=float(np.median(ratios[0::2])),
                paired_median_bare_after=float(np.median(ratios[1::2])))


@pytest.mark.parametrize("marks", ["-", "stale"])
@pytest.mark.parametrize("guest", FIRST_GUESTS)
@pytest.mark.parametrize("mode", WRITE_MODES)
def test_first_write_paired(benchmark, results, mode, guest, marks):
    """The tracker's first writes, each round paired with a bare-loop round.

    Each timed round writes one batch of ``WRITE_BATCH`` distinct pages right after a
    harvest (untimed). The bare loop writes the same batch into a zeroed bitmap right
    before the round (even rounds) or right after it (odd rounds): the pair runs under
    the same load, with the batch in the same cache state on average (whichever runs
    second finds it warmer). Reported: the tracker's best round and the bare loop's
    best of the same rounds, their ratio, and the median of the 40 rounds' own ratios
    (tracker round / its bare round) with its interquartile range. The median paired
    ratio is the figure held to the target: on this shared machine the best of each
    side can come from rounds seconds apart, and one lucky round decides it; a pair's
    two rounds are a millisecond apart.
    """
    pages = GUESTS[guest]
    batches = first_write_batches(pages)
    t = Tracker(pages, mode=mode, vcpus=1)
    if marks == "stale":
        t.stale_start()
    t.start()
    handle = t._handle
    ptrs = [(_u64(b), b.size) for b in batches]
    ok = lib.DL_OK

    def write(i):  # the C call itself: Tracker.write adds ~1 us per call (see test_write_call)
        assert lib.dl_tracker_write(handle, 0, ptrs[i][0], ptrs[i][1], ffi.NULL) == ok

    benchmark.group = f"first writes {guest}"
    bare_s = _paired_rounds(benchmark, write, t.harvest_bitmap, len(batches),
                            bare=_bare(pages, [[b] for b in batches]))
    ns = per_op_ns(benchmark, WRITE_BATCH)
    case = f"{mode}/{guest}/{marks}"
    results.record("first-write", case, "tracker", ns)
    paired = _paired(benchmark, bare_s, WRITE_BATCH)
    for k, x in paired.items():
        results.record("first-write", case, k, x)
    t.harvest_bitmap()
    t.write(batches[0])
    s = t.stats
    assert s.dirty_pages + sum(v.ring_used for v in s.vcpus) >= WRITE_BATCH  # every write was a first write
    info = dict(ns_per_write=ns, pages=pages, mode=mode, marks=marks, **paired)
    if marks == "-":  # the rows
        info["target"] = FIRST_TARGETS[(mode, guest)]
    benchmark.extra_info.update(info)


CALL_BATCH = 64
CALLS = 2000


@pytest.mark.parametrize("locked", ["locked", "unlocked"])
def test_write_call(benchmark, results, locked):
    """Tracker.write of small batches: the Python call with (or without) the tracker's lock."""
    pages = GUESTS["4GiB"]
    t = Tracker(pages, mode="pml")
    t.start()
    batches = [np.ascontiguousarray(b[:CALL_BATCH]) for b in write_batches(pages, "uniform")]
    if locked == "unlocked":
        t._lock = contextlib.nullcontext()  # type: ignore[assignment]  # the same method, without the lock
    write = t.write

    def calls():
        for k in range(CALLS):
            write(batches[k & 3])

    benchmark.group = "Tracker.write per call"
    benchmark.pedantic(calls, rounds=ROUNDS, warmup_rounds=1)
    ns = per_op_ns(benchmark, CALLS)
    results.record("call", f"{CALL_BATCH} pages", locked, ns)
    benchmark.extra_info.update(ns_per_call=ns, batch=CALL_BATCH)


# ============================================================================ harvest


class _HarvestCase:
    """A WP tracker, its dirty pages and a prefaulted output buffer, shared by one density's benchmarks."""

    _cache: dict = {}

    @classmethod
    def get(cls, density: str) -> "_HarvestCase":
        if density not in cls._cache:
            cls._cache.clear()  # one density at a time: the 100 % buffers are large
            cls._cache[density] = cls(density)
        return cls._cache[density]

    def __init__(self, density: str) -> None:
        self.pages = GUESTS[HARVEST_GUEST]
        self.dirty = dirty_pages(self.pages, DENSITIES[density])
        self.dirty.flags.writeable = False
        self.out = np.zeros(max(1, self.dirty.size), dtype=np.uint64)  # zeroed: prefaulted
        self.outp = _u64(self.out)
        self.count = ffi.new("size_t *")
        self.t = Tracker(self.pages, mode="wp")
        self.t.start()
        self.t.write(self.dirty)
        self.bitmap = self.t.harvest_bitmap()  # the same bits, for the bare scan


@pytest.mark.parametrize("density", list(DENSITIES))
def test_harvest_bare(benchmark, results, density):
    h = _HarvestCase.get(density)
    bp = _u64(h.bitmap)
    nwords = h.bitmap.size

    def scan():
        return lib.dl_bench_bare_scan(bp, nwords, h.outp)

    benchmark.group = f"harvest {HARVEST_GUEST} {density}"
    n = benchmark.pedantic(scan, rounds=ROUNDS, warmup_rounds=1)
    assert n == h.dirty.size and np.array_equal(h.out[:n], h.dirty)
    case = f"{HARVEST_GUEST}/{density}"
    ns = per_op_ns(benchmark, 1)
    results.record("harvest", case, "bare", ns)
    results.extra[("harvest", case, "pages")] = str(h.dirty.size)
    benchmark.extra_info.update(ns_per_harvest=ns, ns_per_page=ns / max(1, n), pages=int(n))


@pytest.mark.parametrize("density", list(DENSITIES))
def test_harvest_tracker(benchmark, results, density):
    """dl_tracker_harvest into a caller's buffer: the C core's own cost."""
    h = _HarvestCase.get(density)
    handle = h.t._handle
    cap = h.out.size

    def setup():
        h.t.write(h.dirty)

    def harvest():
        rc = lib.dl_tracker_harvest(handle, h.outp, cap, h.count)
        assert rc == lib.DL_OK
        return h.count[0]

    benchmark.group = f"harvest {HARVEST_GUEST} {density}"
    benchmark.pedantic(harvest, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    h.t.write(h.dirty)
    assert harvest() == h.dirty.size and np.array_equal(h.out[: h.dirty.size], h.dirty)
    case = f"{HARVEST_GUEST}/{density}"
    ns = per_op_ns(benchmark, 1)
    results.record("harvest", case, "tracker", ns)
    info = dict(ns_per_harvest=ns, ns_per_page=ns / max(1, h.dirty.size), pages=int(h.dirty.size))
    bare = results.get("harvest", case, "bare")
    if bare:
        info.update(bare_ns_per_harvest=bare, tracker_over_bare=ns / bare, target=TARGETS["harvest"])
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("density", list(DENSITIES))
def test_harvest_python_api(benchmark, results, density):
    """Tracker.harvest(): the C harvest plus the Python call and a fresh result array."""
    h = _HarvestCase.get(density)

    def setup():
        h.t.write(h.dirty)

    benchmark.group = f"harvest {HARVEST_GUEST} {density}"
    got = benchmark.pedantic(h.t.harvest, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    assert np.array_equal(got, h.dirty)
    case = f"{HARVEST_GUEST}/{density}"
    ns = per_op_ns(benchmark, 1)
    results.record("harvest", case, "tracker-api", ns)
    info = dict(ns_per_harvest=ns, ns_per_page=ns / max(1, h.dirty.size), pages=int(h.dirty.size))
    bare = results.get("harvest", case, "bare")
    if bare:
        info.update(bare_ns_per_harvest=bare, api_over_bare=ns / bare)
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("density", list(DENSITIES))
def test_harvest_reference(benchmark, results, density):
    h = _HarvestCase.get(density)
    r = ReferenceTracker(h.pages, mode="wp")
    r.start()

    def setup():
        # Re-dirty the pages. ReferenceTracker.write() of 32M pages takes ~10 s
        # (np.unique), so the 100 % case sets the model's bitmap directly; the
        # harvest itself, the part timed, is the model's own code either way.
        if h.dirty.size > 4_000_000 and hasattr(r, "_bits") and isinstance(r._c, dict):
            r._bits[h.dirty.astype(np.int64)] = True
            r._c["dirty_pages"] = int(np.count_nonzero(r._bits))
        else:
            r.write(h.dirty)

    benchmark.group = f"harvest {HARVEST_GUEST} {density}"
    got = benchmark.pedantic(r.harvest, setup=setup, rounds=REF_ROUNDS, warmup_rounds=0)
    assert np.array_equal(got, h.dirty)
    case = f"{HARVEST_GUEST}/{density}"
    ns = per_op_ns(benchmark, 1)
    results.record("harvest", case, "reference", ns)
    info = dict(ns_per_harvest=ns, pages=int(h.dirty.size))
    tr = results.get("harvest", case, "tracker")
    if tr:
        info.update(tracker_ns_per_harvest=tr, reference_over_tracker=ns / tr, target=REFERENCE_TARGET)
    benchmark.extra_info.update(info)
