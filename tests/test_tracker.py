"""The C-backed ``dirtylog.Tracker``: its API, its bad inputs, and the raw C API.

Companions: ``test_tracker_state_machine.py`` compares the tracker with the numpy
reference on random operation sequences; ``test_reference.py`` checks the
reference against hand-computed scenarios.
"""
from __future__ import annotations

import tracemalloc
from typing import Any, Dict, Union

import numpy as np
import pytest

import dirtylog
from dirtylog import ConfigError, ModeError, StateError, Tracker
from dirtylog._lib import ffi, lib
from dirtylog.reference import ReferenceTracker

MODES = ("wp", "pml", "ring", "clear")
TIB_PAGES = 2**28  # 1 TiB of 4 KiB pages
MIB = 1 << 20


def started(*args, **kwargs) -> Tracker:
    t = Tracker(*args, **kwargs)
    t.start()
    return t


def observe(t: Union[Tracker, ReferenceTracker]) -> list:
    """Everything a caller can see without changing the tracker."""
    obs = [t.stats, t.pending, t.logging]
    if t.mode == "pml":
        obs += [t.pml_log(v).tolist() for v in range(t.vcpus)]
    if t.mode == "ring":
        obs += [t.ring_entries(v).tolist() for v in range(t.vcpus)]
    return obs


# ====================================================================== configuration


def test_config_and_repr():
    t = Tracker(1000, mode="PML", vcpus=3, page_size="8 KiB", huge_pages="lazy", pml_entries=8)
    assert (t.pages, t.mode, t.vcpus, t.page_size, t.huge_pages, t.pml_entries) == (1000, "pml", 3, 8192, "lazy", 8)
    assert t.config.ring_entries == 4096 and t.initially_set is False and t.logging is False
    assert "Tracker(pages=1000, mode='pml', vcpus=3, huge_pages='lazy', logging=False)" == repr(t)
    s = t.stats
    assert s.writes == 0 and len(s.vcpus) == 3 and s.vcpus[2].pml_index == 7
    assert t.pending == 0
    assert isinstance(s, dirtylog.TrackerStats) and isinstance(s.vcpus[0], dirtylog.VcpuStats)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(pages=0), ConfigError, "pages"),
        (dict(pages=-5), ConfigError, "-5"),
        (dict(pages=2**40 + 1), ConfigError, "pages"),
        (dict(pages=10.5), ConfigError, "10.5"),
        (dict(pages="10"), TypeError, "pages"),
        (dict(pages=True), TypeError, "bool"),
        (dict(pages=10, mode="bogus"), ConfigError, "bogus"),
        (dict(pages=10, vcpus=0), ConfigError, "vcpus"),
        (dict(pages=10, vcpus=4097), ConfigError, "4097"),
        (dict(pages=10, page_size=1000), ConfigError, "1000"),
        (dict(pages=10, page_size=256), ConfigError, "256"),
        (dict(pages=10, page_size=2 << 20), ConfigError, "2097152"),
        (dict(pages=10, huge_pages="always"), ConfigError, "always"),
        (dict(pages=10, pml_entries=0), ConfigError, "pml_entries"),
        (dict(pages=10, pml_entries=65537), ConfigError, "65537"),
        (dict(pages=10, ring_entries=300), ConfigError, "300"),
        (dict(pages=10, ring_entries=128), ConfigError, "128"),
        (dict(pages=10, ring_entries=512), ConfigError, r"one of 1024, 2048, .*, 65536 .*PML.*got 512"),
        (dict(pages=10, ring_entries=131072), ConfigError, "131072"),
        (dict(pages=10, initially_set=True), ConfigError, "initially_set"),
        (dict(pages=10, mode="ring", initially_set=True), ConfigError, "initially_set"),
        (dict(pages=10, mode="clear", initially_set=1), TypeError, "initially_set"),
    ],
)
def test_bad_config(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Tracker(**kwargs)


def test_config_errors_are_value_and_type_errors():
    with pytest.raises(ValueError):
        Tracker(0)
    with pytest.raises(TypeError):
        Tracker("lots")  # type: ignore[arg-type]  # the wrong type is the point


# ====================================================================== bad inputs leave the state unchanged


@pytest.fixture(params=MODES)
def busy(request) -> Tracker:
    """A logging tracker with some state in every structure of its mode."""
    t = started(1000, mode=request.param, vcpus=2, huge_pages="lazy", pml_entries=4, ring_entries=1024)
    t.write([1, 2, 3, 600, 999], vcpu=0)
    t.write(np.arange(10, 20), vcpu=1)
    return t


@pytest.mark.parametrize(
    "batch, match",
    [
        ([3, 1000, 4], r"page 1000 at position 1 .*out of range \(the guest has pages 0\.\.999\)"),
        ([3, 4, -1], r"page -1 at position 2 .*negative"),
        (np.array([5, 2**64 - 1, 7], dtype=np.uint64), r"page 18446744073709551615 at position 1 "),
        (np.array([5, -(2**63)], dtype=np.int64), r"page -9223372036854775808 at position 1 .*negative"),
        (np.array([0, 4000000000], dtype=np.uint32), r"page 4000000000 at position 1 "),
        (np.array([-7, 3], dtype=np.int32), r"page -7 at position 0 .*negative"),
        (np.array([1, 1000], dtype=np.int16), r"page 1000 at position 1 "),
        (np.array([1, 2, 1001], dtype=">u8"), r"page 1001 at position 2 "),
        (np.array([1, 2, -3, 4], dtype="<i8")[::2], None),  # strided: [1, -3]
        (np.array([[1, 2], [3, 1000]]), r"page 1000 at position 3 "),
    ],
)
def test_bad_pages_reject_the_whole_batch(busy, batch, match):
    before = observe(busy)
    with pytest.raises(ValueError, match=match or r"page -3 at position 1 .*negative") as info:
        busy.write(batch, vcpu=1)
    assert isinstance(info.value, ConfigError)
    assert observe(busy) == before
    assert "rejected" in str(info.value)


@pytest.mark.parametrize(
    "batch",
    [
        np.array([1.0, 2.0]),
        np.array([1, 2], dtype=np.float32),
        [1, 2.5],
        np.array([True, False]),
        ["1", "2"],
        np.array([1 + 2j]),
    ],
)
def test_non_integer_batches_are_type_errors(busy, batch):
    before = observe(busy)
    with pytest.raises(TypeError, match="integers"):
        busy.write(batch)
    assert observe(busy) == before


@pytest.mark.parametrize("vcpu, exc", [(2, ConfigError), (-1, ConfigError), (2**40, ConfigError),
                                        (1.5, ConfigError), (None, TypeError), (True, TypeError)])
def test_bad_vcpu(busy, vcpu, exc):
    before = observe(busy)
    with pytest.raises(exc, match="vcpu"):
        busy.write([1, 2], vcpu=vcpu)
    assert observe(busy) == before
    if busy.mode == "pml":
        with pytest.raises(exc, match="vcpu"):
            busy.pml_log(vcpu)
    if busy.mode == "ring":
        with pytest.raises(exc, match="vcpu"):
            busy.ring_entries(vcpu)
    assert observe(busy) == before


def test_bad_vcpu_names_the_value(busy):
    with pytest.raises(ConfigError, match=r"0 <= vcpu < 2 .* got 7"):
        busy.write([1], vcpu=7)


def test_state_errors(busy):
    before = observe(busy)
    with pytest.raises(StateError, match="already started"):
        busy.start()
    assert observe(busy) == before
    busy.stop()
    before = observe(busy)
    for call in (busy.stop, busy.harvest, busy.harvest_bitmap):
        with pytest.raises(StateError):
            call()
        with pytest.raises(RuntimeError):  # StateError is a RuntimeError
            call()
    if busy.mode == "clear":
        with pytest.raises(StateError):
            busy.clear(0, 64)
    assert observe(busy) == before


def test_mode_errors(busy):
    before = observe(busy)
    if busy.mode != "clear":
        with pytest.raises(ModeError, match="clear"):
            busy.clear(0, 64)
    if busy.mode != "pml":
        with pytest.raises(ModeError):
            busy.pml_log(0)
    if busy.mode != "ring":
        with pytest.raises(ModeError):
            busy.ring_entries(0)
    assert observe(busy) == before


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((32, 64), ConfigError, "multiple of 64"),
        ((1, 63), ConfigError, "multiple of 64"),
        ((0, 10), ConfigError, "count must be a multiple of 64"),
        ((64, 100), ConfigError, "count must be a multiple of 64"),
        ((960, 64), ConfigError, "past the last page"),
        ((1024, 0), ConfigError, "past the last page"),
        ((-64, 64), ConfigError, ">= 0"),
        ((0, -64), ConfigError, ">= 0"),
        ((0, 128, np.array([1], dtype=np.uint64)), ConfigError, "at least 2"),
        ((0, 64, np.array([1.5])), ConfigError, "integer words"),
        ((0, 64, np.ones((1, 1), dtype=np.uint64)), ConfigError, "1-D"),
        (("0", 64), TypeError, "first"),
        ((0, 64.5), ConfigError, "count"),
    ],
)
def test_bad_clears(args, exc, match):
    t = started(1000, mode="clear", huge_pages="lazy")
    t.write([1, 65, 999])
    before = observe(t)
    with pytest.raises(exc, match=match):
        t.clear(*args)
    assert observe(t) == before
    assert t.harvest().tolist() == [1, 65, 999]


def test_bad_inject_drop_and_versions():
    t = started(100)
    with pytest.raises(ConfigError, match="100"):
        t.inject_drop(100)
    with pytest.raises(ConfigError, match="-1"):
        t.inject_drop(-1)
    with pytest.raises(TypeError):
        t.attach_versions(np.zeros(100, dtype=np.int64))
    with pytest.raises(TypeError):
        t.attach_versions([0] * 100)  # type: ignore[arg-type]  # the wrong type is the point
    with pytest.raises(TypeError):
        t.attach_versions(np.zeros(200, dtype=np.uint32)[::2])
    with pytest.raises(ConfigError, match="at least 100"):
        t.attach_versions(np.zeros(99, dtype=np.uint32))


# ====================================================================== dtypes, copies and layouts


@pytest.mark.parametrize("dtype", [np.uint64, np.int64, np.uint32, np.int32])
def test_contiguous_native_batches_are_not_copied(dtype):
    n = 1 << 20
    t = started(4096)
    batch = (np.arange(n) % 4096).astype(dtype)
    batch.flags.writeable = False  # the C side only reads it
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        t.write(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a copy (or a widening to uint64) would be 4-8 MiB; allow small bookkeeping objects only
    assert peak - base < 64 * 1024, f"write allocated {peak - base} bytes"
    assert t.stats.writes == n
    assert np.array_equal(t.harvest(), np.arange(4096, dtype=np.uint64))


def test_non_contiguous_batches_work():
    n = 1 << 18
    t = started(1 << 16)
    view = (np.arange(2 * n, dtype=np.uint64) % (1 << 16))[::2]
    assert not view.flags.c_contiguous
    view.flags.writeable = False
    t.write(view)
    assert t.stats.writes == n
    assert np.array_equal(t.harvest(), np.unique(view))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(">u8"),
        lambda a: a.astype(">i8"),
        lambda a: a.astype(">u4"),
        lambda a: a.astype(">i4"),
        lambda a: np.repeat(a, 3)[::3],
        lambda a: np.stack([a, a])[:, ::-1][0][::-1],
        lambda a: np.asfortranarray(np.stack([a, a]))[0],
        lambda a: a.astype(np.int8) if a.max() < 128 else a.astype(np.int16),
        lambda a: a.astype(np.uint16),
        lambda a: a.tolist(),
        lambda a: tuple(int(x) for x in a),
        lambda a: [np.uint64(x) for x in a],
    ],
)
def test_every_layout_and_dtype_gives_the_same_result(mode, make):
    rng = np.random.default_rng(5)
    batch = rng.integers(0, 3000, size=5000)
    kw: Dict[str, Any] = dict(mode=mode, vcpus=2, pml_entries=16, ring_entries=1024)
    ref = started(3000, **kw)
    ref.write(batch.astype(np.uint64), vcpu=1)
    t = started(3000, **kw)
    t.write(make(batch), vcpu=1)
    assert observe(t) == observe(ref)
    assert t.harvest().tolist() == ref.harvest().tolist()


def test_single_int_and_empty_batches():
    t = started(100)
    t.write(7)
    t.write(np.uint32(8))
    t.write([])
    t.write(np.array([], dtype=np.float64))  # empty: no dtype to complain about
    t.write(np.empty(0, dtype=np.int32))
    assert t.stats.writes == 2
    assert t.harvest().tolist() == [7, 8]


# ====================================================================== memory


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("huge", [None, "lazy", "eager"])
def test_one_tib_guest_state_under_100_mib(mode, huge):
    t = Tracker(TIB_PAGES, mode=mode, vcpus=8, huge_pages=huge)
    assert t.memory_bytes < 100 * MIB
    # one bitmap bit per page at least (two bitmaps in ring mode)
    assert t.memory_bytes >= TIB_PAGES // 8 * (2 if mode == "ring" else 1)


def test_one_tib_guest_works():
    t = started(TIB_PAGES, mode="wp", huge_pages="lazy")
    pages = np.array([0, 1, 2**27, TIB_PAGES - 1], dtype=np.uint64)
    t.write(pages)
    assert t.stats.splits == 3 and t.pending == 4
    assert t.harvest().tolist() == pages.tolist()
    assert t.harvest().size == 0


# ====================================================================== large guests (the prefetching write loops)


@pytest.mark.parametrize("versions", [False, True])
@pytest.mark.parametrize("huge", [None, "lazy"])
@pytest.mark.parametrize("mode", MODES)
def test_large_guest_matches_the_reference(mode, huge, versions):
    """Bitmaps over 1 MiB take the prefetching variants of the write loops (the
    state-machine test's small guests never do): they must agree with the reference."""
    rng = np.random.default_rng(3)
    pages = (1 << 23) + 1000  # a 1 MiB + bitmap, a partial last word and block
    kw: Dict[str, Any] = dict(mode=mode, vcpus=2, huge_pages=huge, pml_entries=8, ring_entries=1024)
    t = started(pages, **kw)
    r = ReferenceTracker(pages, **kw)
    r.start()
    ver = np.zeros(pages, dtype=np.uint32)
    if versions:
        t.attach_versions(ver)
    expected_versions = np.zeros(pages, dtype=np.int64)
    for _ in range(3):
        for _ in range(3):
            lo = int(rng.integers(0, pages - 3000))
            batch = np.concatenate([
                rng.integers(0, pages, size=3000),  # scattered
                np.arange(lo, lo + 2000),  # sequential
                rng.integers(lo, lo + 300, size=1000),  # repeats
                [pages - 1, 0, pages - 1],
            ]).astype(np.uint64)
            vcpu = int(rng.integers(0, 2))
            t.write(batch, vcpu=vcpu)
            r.write(batch, vcpu=vcpu)
            np.add.at(expected_versions, batch.astype(np.int64), 1)
            assert observe(t) == observe(r)
        assert t.harvest().tolist() == r.harvest().tolist()
        assert observe(t) == observe(r)
    if versions:
        assert np.array_equal(ver, expected_versions)


@pytest.mark.parametrize("vcpus", [1, 3])
def test_ring_layouts_match_the_reference(vcpus):
    """Ring mode lays its live words out beside the bits after a harvest of a round that
    rewrote pages, when the bitmaps outgrow the cache, and apart after a round of first
    writes; stale words give them a bitmap of their own. Every change of layout, a
    rejected batch in each, and the stale words across them, agree with the reference."""
    from dirtylog.reference import ReferenceTracker

    rng = np.random.default_rng(11)
    pages = (1 << 23) + 77  # a 1 MiB + bitmap, a partial last word
    kw = dict(mode="ring", vcpus=vcpus, ring_entries=1024)
    t = started(pages, **kw)
    r = ReferenceTracker(pages, **kw)
    r.start()
    written = np.zeros(pages, dtype=bool)  # since stale_start(initial=False)
    stale = False

    def write(batch: np.ndarray) -> None:
        v = int(rng.integers(0, vcpus))
        t.write(batch, vcpu=v)
        r.write(batch, vcpu=v)
        written[batch.astype(np.int64)] = True
        assert observe(t) == observe(r)

    def rejected(batch: np.ndarray) -> None:  # a bad index: nothing changes
        before = observe(t)
        with pytest.raises(ConfigError, match="out of range"):
            t.write(np.append(batch, np.uint64(pages)))
        assert observe(t) == before

    def first_writes() -> list:  # a round's batches of distinct pages
        return np.split(rng.choice(pages, size=80_000, replace=False).astype(np.uint64), 2)

    def rewrites() -> np.ndarray:
        hot = rng.integers(0, pages, size=3000)
        return np.concatenate([rng.choice(hot, size=20_000), rng.integers(0, pages, size=20_000),
                               [pages - 1, 0, pages - 1]]).astype(np.uint64)

    # (round's batches, then: harvest as pages or words, stale words started or stopped)
    plan = [("first", "pages", None), ("rewrite", "words", None), ("rewrite", "pages", "start"),
            ("rewrite", "pages", None), ("rewrite", "words", "stop"), ("rewrite", "pages", None),
            ("first", "pages", None), ("first", "words", "start"), ("rewrite", "pages", "stop"),
            ("rewrite", "words", None)]
    for kind, harvest, toggle in plan:
        rejected(rewrites())
        for batch in first_writes() if kind == "first" else [rewrites(), rewrites()]:
            write(batch)
        rejected(rewrites())
        if harvest == "pages":
            assert t.harvest().tolist() == r.harvest().tolist()
        else:
            assert np.array_equal(t.harvest_bitmap(), r.harvest_bitmap())
        assert observe(t) == observe(r)
        if stale:
            expect = np.packbits(np.pad(written, (0, -pages % 64)).reshape(-1, 8)[:, ::-1]).view("<u8")
            assert np.array_equal(t.stale_words(), expect)
        if toggle == "start":
            t.stale_start(initial=False)
            written[:] = False
            stale = True
        elif toggle == "stop":
            t.stale_stop()
            stale = False
        assert observe(t) == observe(r)


# ====================================================================== harvest order and stop


@pytest.mark.parametrize("mode", ["wp", "pml", "ring"])
def test_write_after_harvest_is_reported_next_time(mode):
    t = started(500, mode=mode, vcpus=2, pml_entries=4, ring_entries=1024)
    t.write([5, 6, 7], vcpu=0)
    t.write([7, 8], vcpu=1)
    assert t.harvest().tolist() == [5, 6, 7, 8]
    # the pages are re-protected: writing them again is a new dirtying
    before = t.stats
    t.write([6, 9], vcpu=1)
    after = t.stats
    assert after.vcpus[1].dirtied - before.vcpus[1].dirtied == 2
    if mode == "wp":
        assert after.faults - before.faults == 2
    assert t.harvest().tolist() == [6, 9]
    assert t.harvest().tolist() == []  # nothing reported twice for one dirtying
    s = t.stats
    assert (s.harvests, s.harvested_pages) == (3, 6)


@pytest.mark.parametrize("mode", ["wp", "pml", "ring"])
def test_interleaved_rounds_report_each_dirtying_exactly_once(mode):
    """A migration's view: every round reports exactly the pages written since the last one."""
    rng = np.random.default_rng(11)
    pages = 2000
    t = started(pages, mode=mode, vcpus=3, huge_pages="lazy", pml_entries=8, ring_entries=1024)
    for _ in range(30):
        written = set()
        for _ in range(int(rng.integers(0, 4))):
            batch = rng.integers(0, pages, size=int(rng.integers(1, 1500)))
            t.write(batch, vcpu=int(rng.integers(0, 3)))
            written.update(batch.tolist())
        if rng.random() < 0.5:
            got = t.harvest().tolist()
        else:
            words = t.harvest_bitmap()
            bits = np.unpackbits(words.view(np.uint8), bitorder="little")
            got = np.flatnonzero(bits).tolist()
        assert got == sorted(written)


def test_clear_mode_round():
    t = started(256, mode="clear")
    t.write([1, 70, 200])
    assert t.harvest().tolist() == [1, 70, 200]
    assert t.harvest().tolist() == [1, 70, 200]  # GET does not clear
    t.write([1])  # still writable: no fault
    assert t.stats.faults == 3
    assert t.clear(0, 128) == 2
    t.write([1, 2])
    assert t.stats.faults == 5
    assert t.harvest().tolist() == [1, 2, 200]
    assert t.clear(192, 64, np.array([0], dtype=np.uint64)) == 0
    assert t.clear(0, 256) == 3 and t.pending == 0


def test_initially_set():
    t = started(1000, mode="clear", initially_set=True, huge_pages="lazy")
    assert t.pending == 1000 and t.stats.dirty_pages == 1000
    assert t.harvest().tolist() == list(range(1000))
    assert t.clear(0, 512) == 512
    t.write([3])
    s = t.stats
    assert (s.faults, s.splits, t.pending) == (1, 1, 489)


@pytest.mark.parametrize("mode", MODES)
def test_stop_drops_everything_and_writes_while_stopped_are_never_reported(mode):
    t = Tracker(1500, mode=mode, vcpus=2, huge_pages="eager", pml_entries=4, ring_entries=1024)
    t.write([1, 2, 3], vcpu=1)  # before the first start
    t.start()
    t.write(np.arange(1250), vcpu=0)  # fills logs and rings
    t.stop()
    assert not t.logging and t.pending == 0 and t.stats.dirty_pages == 0
    assert all(v.ring_used == 0 and v.pml_index == 3 for v in t.stats.vcpus)
    t.write([10, 20, 30], vcpu=1)  # while stopped
    t.start()
    assert t.harvest().tolist() == []
    s = t.stats
    assert s.writes == 1256 and s.vcpus[1].writes == 6
    t.write([20])
    assert t.harvest().tolist() == [20]


# ====================================================================== PML logs and rings


def test_pml_log_most_recent_first():
    t = started(100, mode="pml", vcpus=2, pml_entries=4)
    t.write([10, 11, 10, 12], vcpu=0)
    t.write([13], vcpu=1)
    assert t.pml_log(0).tolist() == [12, 11, 10]
    assert t.pml_log(1).tolist() == [13]
    assert t.pml_log(0).dtype == np.uint64
    t.write([14, 15], vcpu=0)  # 14 fills the log, 15 exits and starts a new one
    assert t.pml_log(0).tolist() == [15]
    s = t.stats
    assert (s.pml_full_exits, s.vcpus[0].pml_full_exits, s.vcpus[0].pml_index, s.pml_logged) == (1, 1, 2, 6)
    assert t.harvest().tolist() == [10, 11, 12, 13, 14, 15]
    s = t.stats
    assert (s.kicks, s.vcpus[0].kicks, s.vcpus[1].kicks) == (2, 1, 1)
    assert t.pml_log(0).tolist() == [] and t.pml_log(1).tolist() == []


def test_ring_contents_and_reap():
    t = started(2000, mode="ring", vcpus=2, ring_entries=1024)  # soft limit 448 (1024 - 64 - 512)
    t.write([5, 3, 5, 9], vcpu=1)
    t.write([3, 4], vcpu=0)
    assert t.ring_entries(1).tolist() == [5, 3, 9]  # oldest first, no repeats
    assert t.ring_entries(0).tolist() == [4]
    assert [v.ring_used for v in t.stats.vcpus] == [1, 3]
    assert t.pending == 4 and t.stats.dirty_pages == 0
    t.write(np.arange(100, 547), vcpu=0)  # the 448th push: ring full, every ring reaped at once
    s = t.stats
    assert (s.ring_full_exits, s.vcpus[0].ring_full_exits, s.ring_reaped, s.dirty_pages) == (1, 1, 451, 451)
    assert t.ring_entries(0).tolist() == []
    assert t.ring_entries(1).tolist() == []
    got = t.harvest()
    assert got.tolist() == [3, 4, 5, 9] + list(range(100, 547))
    assert t.stats.ring_reaped == 451


def _ring_full_exits_at_two_rates(tracker: Any, reap_own: bool) -> tuple:
    """2 vCPUs with 1024-entry rings (soft limit 448) writing only first writes, vCPU 0 at twice
    vCPU 1's rate: 14 steps of 64 and 32 new pages."""
    t = tracker(4096, mode="ring", vcpus=2, ring_entries=1024)
    t.start()
    t.reap_own = reap_own
    page = 0
    for _ in range(14):
        for v, k in ((0, 64), (1, 32)):
            t.write(np.arange(page, page + k, dtype=np.uint64), vcpu=v)
            page += k
    s = t.stats
    return ([x.ring_full_exits for x in s.vcpus], [x.ring_used for x in s.vcpus], s.ring_reaped)


@pytest.mark.parametrize("reference", [False, True])
def test_ring_full_exit_reaps_every_ring(reference: bool) -> None:
    """QEMU's kvm_cpu_exec reaps every vCPU's ring at a ring-full exit (kvm_dirty_ring_reap(kvm_state,
    NULL)), and only the exiting vCPU's while dirty-limit is in service (reap_own). Hand-counted:
    vCPU 0 reaches 448 entries at steps 7 and 14 (2 exits either way). Reaping every ring empties
    vCPU 1's 224 entries at step 7 and 192 at step 14 (it then writes its 32), so vCPU 1 never fills:
    2 exits in all, 1312 entries reaped, 32 left. Reaping its own ring only, vCPU 1 fills at
    its 448th page, step 14: 3 exits, 1344 reaped, none left."""
    tracker: Any = ReferenceTracker if reference else Tracker
    assert _ring_full_exits_at_two_rates(tracker, reap_own=False) == ([2, 0], [0, 32], 1312)
    assert _ring_full_exits_at_two_rates(tracker, reap_own=True) == ([2, 1], [0, 0], 1344)


def test_reap_own_is_ring_mode_only() -> None:
    t = Tracker(64, mode="ring")
    assert t.reap_own is False
    t.reap_own = True
    assert t.reap_own is True
    with pytest.raises(ModeError, match="reap_own.*needs 'ring'"):
        Tracker(64, mode="pml").reap_own = True
    assert Tracker(64, mode="pml").reap_own is False


def test_ring_entries_are_kvm_dirty_gfns():
    """The raw entries: flags DIRTY then RESET after collection, slot 0, offset = page."""
    t = started(1000, mode="ring", ring_entries=1024)
    t.write([7, 8])
    buf = ffi.new("dl_ring_entry[]", 256)
    count = ffi.new("size_t *")
    assert lib.dl_tracker_ring_entries(t._handle, 0, buf, 256, count) == lib.DL_OK
    assert count[0] == 2
    assert [(buf[i].flags, buf[i].slot, buf[i].offset) for i in range(2)] == [
        (lib.DL_RING_DIRTY, 0, 7),
        (lib.DL_RING_DIRTY, 0, 8),
    ]
    assert ffi.sizeof("dl_ring_entry") == 16


# ====================================================================== verification hooks


@pytest.mark.parametrize("mode", MODES)
def test_inject_drop(mode):
    t = started(200, mode=mode, ring_entries=1024)
    t.write([3, 4, 5])
    t.inject_drop(4)
    assert t.harvest().tolist() == [3, 5]
    if mode == "clear":
        assert t.harvest().tolist() == [3, 5]  # dropped for good (its bit was cleared)
    else:
        t.write([3, 4, 5])
        assert t.harvest().tolist() == [3, 4, 5]  # one-shot
    t.inject_drop(9)  # a clean page at the harvest: nothing to drop, and the hook is used up
    t.harvest()
    t.write([9])
    assert 9 in t.harvest().tolist()
    t.write([8])
    t.inject_drop(8)  # dirty when armed: the harvest that follows loses it
    assert 8 not in t.harvest().tolist()
    t.write([6])
    t.inject_drop(6)
    t.inject_drop(None)  # disarmed
    assert 6 in t.harvest().tolist()


def test_inject_drop_bitmap_and_pending():
    t = started(130)
    t.write([0, 64, 129])
    t.inject_drop(64)
    assert t.pending == 3  # the drop happens at the harvest
    words = t.harvest_bitmap()
    assert words.tolist() == [1, 0, 2]
    s = t.stats
    assert (s.harvested_pages, s.dirty_pages) == (2, 0)


def test_attach_versions_counts_every_write():
    t = Tracker(100, vcpus=2)
    ver = np.zeros(100, dtype=np.uint32)
    t.attach_versions(ver)
    t.write([1, 1, 2])  # not logging: counted too
    t.start()
    t.write(np.array([1, 5, 5, 5], dtype=np.int32), vcpu=1)
    with pytest.raises(ConfigError):
        t.write([5, 100])  # rejected batch: no version changes
    assert ver[[1, 2, 5]].tolist() == [3, 1, 3] and int(ver.sum()) == 7
    t.attach_versions(None)
    t.write([1])
    assert ver[1] == 3
    bigger = np.zeros(150, dtype=np.uint32)
    t.attach_versions(bigger)
    t.write(np.arange(100))
    assert bigger[:100].tolist() == [1] * 100 and bigger[100:].sum() == 0


@pytest.mark.parametrize("mode", MODES)
def test_attach_versions_in_every_mode_with_huge_pages(mode):
    rng = np.random.default_rng(2)
    t = started(1500, mode=mode, huge_pages="lazy", pml_entries=4, ring_entries=1024)
    ver = np.zeros(1500, dtype=np.uint32)
    t.attach_versions(ver)
    batch = rng.integers(0, 1500, size=4000)
    t.write(batch)
    assert np.array_equal(ver, np.bincount(batch, minlength=1500).astype(np.uint32))
    assert t.harvest().tolist() == np.unique(batch).tolist()


# ====================================================================== the raw C API: error codes, never a crash


def _cfg(pages: int = 1000, **fields) -> "ffi.CData":
    cfg = ffi.new("dl_tracker_config *")
    lib.dl_tracker_config_init(cfg, pages)
    for k, v in fields.items():
        setattr(cfg, k, v)
    return cfg


def _create(cfg) -> "ffi.CData":
    out = ffi.new("dl_tracker **")
    rc = lib.dl_tracker_create(cfg, out)
    assert rc == lib.DL_OK, ffi.string(lib.dl_strerror(rc))
    return ffi.gc(out[0], lib.dl_tracker_destroy)


def test_c_config_init_defaults():
    cfg = _cfg(123)
    assert (cfg.pages, cfg.mode, cfg.vcpus, cfg.page_size, cfg.huge) == (123, lib.DL_MODE_WP, 1, 4096, lib.DL_HUGE_NONE)
    assert (cfg.pml_entries, cfg.ring_entries, cfg.initially_set, cfg.reserved) == (512, 4096, 0, 0)
    lib.dl_tracker_config_init(ffi.NULL, 5)  # no crash


def test_c_create_rejects_null_pointers():
    out = ffi.new("dl_tracker **")
    out[0] = ffi.cast("dl_tracker *", 1)  # must be reset to NULL on failure
    assert lib.dl_tracker_create(ffi.NULL, out) == lib.DL_ERR_INVALID
    assert out[0] == ffi.NULL
    assert lib.dl_tracker_create(_cfg(), ffi.NULL) == lib.DL_ERR_INVALID


@pytest.mark.parametrize(
    "fields",
    [
        dict(pages=0),
        dict(pages=2**40 + 1),
        dict(mode=4),
        dict(mode=2**32 - 1),
        dict(huge=3),
        dict(vcpus=0),
        dict(vcpus=4097),
        dict(page_size=0),
        dict(page_size=256),
        dict(page_size=1000),
        dict(page_size=2 << 20),
        dict(pml_entries=0),
        dict(pml_entries=65537),
        dict(ring_entries=0),
        dict(ring_entries=128),
        dict(ring_entries=300),
        dict(ring_entries=512, mode=2),  # KVM on x86 with PML: 64 reserved + 512 PML entries, a power of two
        dict(ring_entries=131072),
        dict(reserved=1),
        dict(initially_set=1),  # WP mode
        dict(initially_set=1, mode=2),
        dict(initially_set=2, mode=3),
    ],
)
def test_c_create_rejects_bad_configs(fields):
    cfg = _cfg(**{"pages": 1000, **fields}) if "pages" in fields else _cfg(1000, **fields)
    out = ffi.new("dl_tracker **")
    assert lib.dl_tracker_create(cfg, out) == lib.DL_ERR_INVALID
    assert out[0] == ffi.NULL


def test_c_create_accepts_the_limits():
    for fields in (dict(pages=1), dict(pages=2**40, mode=0), dict(vcpus=4096, pml_entries=1),
                   dict(ring_entries=1024, mode=2), dict(ring_entries=65536, mode=2),
                   dict(page_size=512), dict(page_size=1 << 20), dict(mode=3, initially_set=1)):
        pages = fields.pop("pages", 1000)
        if pages == 2**40:
            continue  # 128 MiB bitmap: the limit is checked, not allocated here
        _create(_cfg(pages, **fields))


def test_c_null_tracker_everywhere():
    N = ffi.NULL
    count = ffi.new("size_t *")
    u64 = ffi.new("uint64_t *")
    buf = ffi.new("uint64_t[]", 4)
    st = ffi.new("dl_tracker_stats *")
    vs = ffi.new("dl_vcpu_stats *")
    cfg = ffi.new("dl_tracker_config *")
    ring = ffi.new("dl_ring_entry[]", 4)
    E = lib.DL_ERR_INVALID
    lib.dl_tracker_destroy(N)
    assert lib.dl_tracker_memory_bytes(N) == 0
    assert lib.dl_tracker_get_config(N, cfg) == E
    assert lib.dl_tracker_start(N) == E
    assert lib.dl_tracker_stop(N) == E
    assert lib.dl_tracker_is_logging(N) == 0
    assert lib.dl_tracker_write(N, 0, buf, 1, count) == E
    assert lib.dl_tracker_write_i64(N, 0, ffi.cast("int64_t *", buf), 1, count) == E
    assert lib.dl_tracker_write_u32(N, 0, ffi.cast("uint32_t *", buf), 1, count) == E
    assert lib.dl_tracker_write_i32(N, 0, ffi.cast("int32_t *", buf), 1, count) == E
    assert lib.dl_tracker_pending(N) == 0
    assert lib.dl_tracker_harvest(N, buf, 4, count) == E
    assert lib.dl_tracker_harvest_bitmap(N, buf, 4, count) == E
    assert lib.dl_tracker_bitmap_words(N) == 0
    assert lib.dl_tracker_clear(N, 0, 64, N, 0, u64) == E
    assert lib.dl_tracker_get_stats(N, st) == E
    assert lib.dl_tracker_get_vcpu_stats(N, 0, vs) == E
    assert lib.dl_tracker_pml_log(N, 0, buf, 4, count) == E
    assert lib.dl_tracker_ring_entries(N, 0, ring, 4, count) == E
    assert lib.dl_tracker_attach_versions(N, ffi.NULL, 0) == E
    assert lib.dl_tracker_inject_drop(N, 0) == E


def test_c_flush_needs_logging_and_moves_the_logs_into_the_bitmap():
    """dl_tracker_flush (dirty-limit's own sync): DL_ERR_STATE when not logging; in PML and ring
    modes it kicks every vCPU and leaves the pages for the next harvest; in wp and clear modes
    it has nothing to collect and kicks nobody."""
    for mode in (0, 1, 2, 3):
        t = _create(_cfg(1000, mode=mode, vcpus=2))
        assert lib.dl_tracker_flush(t) == lib.DL_ERR_STATE
        assert lib.dl_tracker_start(t) == lib.DL_OK
        pages = ffi.new("uint64_t[]", [5, 900, 5])
        assert lib.dl_tracker_write(t, 1, pages, 3, ffi.NULL) == lib.DL_OK
        st = ffi.new("dl_tracker_stats *")
        assert lib.dl_tracker_flush(t) == lib.DL_OK
        lib.dl_tracker_get_stats(t, st)
        kicks = 2 if mode in (1, 2) else 0  # the modes with per-vCPU logs: PML, ring
        assert st.kicks == kicks and st.harvests == 0
        out = ffi.new("uint64_t[]", 4)
        count = ffi.new("size_t *")
        assert lib.dl_tracker_harvest(t, out, 4, count) == lib.DL_OK
        assert [out[i] for i in range(count[0])] == [5, 900]


def test_c_null_outputs():
    t = _create(_cfg(1000, mode=1))
    N = ffi.NULL
    E = lib.DL_ERR_INVALID
    assert lib.dl_tracker_get_config(t, N) == E
    assert lib.dl_tracker_get_stats(t, N) == E
    assert lib.dl_tracker_get_vcpu_stats(t, 0, N) == E
    assert lib.dl_tracker_start(t) == lib.DL_OK
    assert lib.dl_tracker_harvest(t, N, 0, N) == E  # count is required
    assert lib.dl_tracker_harvest(t, N, 5, ffi.new("size_t *")) == E  # cap > 0 needs a buffer
    assert lib.dl_tracker_harvest_bitmap(t, N, 16, N) == E
    assert lib.dl_tracker_pml_log(t, 0, N, 0, N) == E
    assert lib.dl_tracker_pml_log(t, 0, N, 3, ffi.new("size_t *")) == E
    # NULL pages with n > 0 is invalid; n == 0 is a no-op
    assert lib.dl_tracker_write(t, 0, N, 3, N) == E
    assert lib.dl_tracker_write(t, 0, N, 0, N) == lib.DL_OK
    # optional outputs may be NULL
    pages = ffi.new("uint64_t[]", [1, 2])
    assert lib.dl_tracker_write(t, 0, pages, 2, N) == lib.DL_OK
    bad_pages = ffi.new("uint64_t[]", [1, 5000])
    assert lib.dl_tracker_write(t, 0, bad_pages, 2, N) == lib.DL_ERR_RANGE
    words = ffi.new("uint64_t[]", 16)
    assert lib.dl_tracker_harvest_bitmap(t, words, 16, N) == lib.DL_OK
    assert words[0] == 0b110
    cfg = ffi.new("dl_tracker_config *")
    assert lib.dl_tracker_get_config(t, cfg) == lib.DL_OK and cfg.mode == 1 and cfg.pages == 1000


def test_c_write_reports_the_first_bad_element():
    t = _create(_cfg(100, vcpus=2))
    bad = ffi.new("size_t *")
    p64 = ffi.new("uint64_t[]", [1, 2, 100, 200])
    assert lib.dl_tracker_write(t, 0, p64, 4, bad) == lib.DL_ERR_RANGE and bad[0] == 2
    i64 = ffi.new("int64_t[]", [1, -1, 200])
    assert lib.dl_tracker_write_i64(t, 0, i64, 3, bad) == lib.DL_ERR_RANGE and bad[0] == 1
    u32 = ffi.new("uint32_t[]", [99, 4294967295])
    assert lib.dl_tracker_write_u32(t, 0, u32, 2, bad) == lib.DL_ERR_RANGE and bad[0] == 1
    i32 = ffi.new("int32_t[]", [-2147483648])
    assert lib.dl_tracker_write_i32(t, 0, i32, 1, bad) == lib.DL_ERR_RANGE and bad[0] == 0
    assert lib.dl_tracker_write(t, 2, p64, 2, bad) == lib.DL_ERR_RANGE and bad[0] == 2**64 - 1  # SIZE_MAX
    assert lib.dl_tracker_write(t, 2**32 - 1, p64, 2, bad) == lib.DL_ERR_RANGE
    st = ffi.new("dl_tracker_stats *")
    lib.dl_tracker_get_stats(t, st)
    assert st.writes == 0  # every batch rejected whole
    # a bad element far into a long narrow batch (the widening buffer is 1024 long)
    long = ffi.new("uint32_t[]", 5000)
    long[4321] = 100
    assert lib.dl_tracker_write_u32(t, 1, long, 5000, bad) == lib.DL_ERR_RANGE and bad[0] == 4321
    lib.dl_tracker_get_stats(t, st)
    assert st.writes == 0


def test_c_harvest_buffer_too_small_harvests_nothing():
    t = _create(_cfg(1000))
    pages = ffi.new("uint64_t[]", [3, 1, 2])
    count = ffi.new("size_t *")
    out = ffi.new("uint64_t[]", 3)
    assert lib.dl_tracker_harvest(t, out, 3, count) == lib.DL_ERR_STATE  # not logging
    assert lib.dl_tracker_start(t) == lib.DL_OK
    assert lib.dl_tracker_start(t) == lib.DL_ERR_STATE
    assert lib.dl_tracker_write(t, 0, pages, 3, ffi.NULL) == lib.DL_OK
    assert lib.dl_tracker_harvest(t, out, 2, count) == lib.DL_ERR_BUFFER and count[0] == 3
    assert lib.dl_tracker_pending(t) == 3
    assert lib.dl_tracker_harvest(t, out, 3, count) == lib.DL_OK and count[0] == 3
    assert [out[i] for i in range(3)] == [1, 2, 3]
    words = ffi.new("uint64_t[]", 16)
    assert lib.dl_tracker_harvest_bitmap(t, words, 15, count) == lib.DL_ERR_BUFFER  # needs 16 words
    assert lib.dl_tracker_bitmap_words(t) == 16
    assert lib.dl_tracker_stop(t) == lib.DL_OK
    assert lib.dl_tracker_stop(t) == lib.DL_ERR_STATE


def test_c_clear_errors():
    t = _create(_cfg(1000, mode=3))
    mask = ffi.new("uint64_t[]", 2)
    cleared = ffi.new("uint64_t *")
    assert lib.dl_tracker_clear(t, 0, 64, ffi.NULL, 0, cleared) == lib.DL_ERR_STATE
    assert lib.dl_tracker_start(t) == lib.DL_OK
    assert lib.dl_tracker_clear(t, 32, 64, ffi.NULL, 0, cleared) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_clear(t, 960, 64, ffi.NULL, 0, cleared) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_clear(t, 1024, 0, ffi.NULL, 0, cleared) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_clear(t, 0, 2**64 - 1, ffi.NULL, 0, cleared) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_clear(t, 0, 10, ffi.NULL, 0, cleared) == lib.DL_ERR_INVALID
    assert lib.dl_tracker_clear(t, 0, 192, mask, 2, cleared) == lib.DL_ERR_BUFFER
    assert lib.dl_tracker_clear(t, 960, 40, ffi.NULL, 0, ffi.NULL) == lib.DL_OK  # to the end; cleared optional
    assert lib.dl_tracker_clear(t, 0, 128, mask, 2, cleared) == lib.DL_OK and cleared[0] == 0
    wp = _create(_cfg(1000))
    assert lib.dl_tracker_start(wp) == lib.DL_OK
    assert lib.dl_tracker_clear(wp, 0, 64, ffi.NULL, 0, cleared) == lib.DL_ERR_MODE


def test_c_logs_rings_and_hooks_errors():
    pml = _create(_cfg(1000, mode=1, vcpus=2, pml_entries=4))
    ring = _create(_cfg(1000, mode=2, ring_entries=1024))
    count = ffi.new("size_t *")
    out = ffi.new("uint64_t[]", 4)
    entries = ffi.new("dl_ring_entry[]", 4)
    vs = ffi.new("dl_vcpu_stats *")
    assert lib.dl_tracker_pml_log(ring, 0, out, 4, count) == lib.DL_ERR_MODE
    assert lib.dl_tracker_ring_entries(pml, 0, entries, 4, count) == lib.DL_ERR_MODE
    assert lib.dl_tracker_pml_log(pml, 2, out, 4, count) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_ring_entries(ring, 1, entries, 4, count) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_get_vcpu_stats(pml, 2, vs) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_get_vcpu_stats(pml, 1, vs) == lib.DL_OK and vs.pml_index == 3
    for t in (pml, ring):
        assert lib.dl_tracker_start(t) == lib.DL_OK
        pages = ffi.new("uint64_t[]", [1, 2, 3])
        assert lib.dl_tracker_write(t, 0, pages, 3, ffi.NULL) == lib.DL_OK
    assert lib.dl_tracker_pml_log(pml, 0, out, 2, count) == lib.DL_ERR_BUFFER and count[0] == 3
    assert lib.dl_tracker_pml_log(pml, 0, out, 4, count) == lib.DL_OK and [out[i] for i in range(3)] == [3, 2, 1]
    assert lib.dl_tracker_ring_entries(ring, 0, entries, 2, count) == lib.DL_ERR_BUFFER and count[0] == 3
    versions = ffi.new("uint32_t[]", 999)
    assert lib.dl_tracker_attach_versions(pml, versions, 999) == lib.DL_ERR_BUFFER
    assert lib.dl_tracker_attach_versions(pml, ffi.NULL, 0) == lib.DL_OK
    assert lib.dl_tracker_inject_drop(pml, 1000) == lib.DL_ERR_RANGE
    assert lib.dl_tracker_inject_drop(pml, 2**64 - 1) == lib.DL_OK


def test_c_strerror_and_version():
    for rc in (0, -1, -2, -3, -4, -5, -6, -7, 1, 12345, -(2**31)):
        s = lib.dl_strerror(rc)
        assert s != ffi.NULL and ffi.string(s)
    assert ffi.string(lib.dl_strerror(lib.DL_ERR_BUFFER)) == b"output buffer too small"
    assert ffi.string(lib.dl_version()).decode() == dirtylog.__version__


@pytest.mark.parametrize("bad, kind, text", [
    ([1, 2**64], ConfigError, "18446744073709551616"),
    ([1, -2**70], ConfigError, "negative"),
    ([1, "x"], TypeError, "integers"),
])
def test_python_ints_beyond_64_bits_are_named(bad, kind, text):
    t = Tracker(100)
    t.start()
    with pytest.raises(kind, match=text):
        t.write(bad)
    assert t.stats.writes == 0
    t.write(np.array([3, 4], dtype=object))  # an object array of small ints is fine
    assert t.stats.writes == 2


def test_harvest_into_a_reused_buffer():
    t = Tracker(1000, mode="pml")
    t.start()
    buf = np.empty(1000, dtype=np.uint64)
    t.write([5, 7, 5])
    got = t.harvest(out=buf)
    assert got.tolist() == [5, 7] and np.shares_memory(got, buf)
    t.write([9])
    assert t.harvest(out=buf).tolist() == [9]
    t.write(np.arange(10))
    with pytest.raises(ConfigError, match="pending"):
        t.harvest(out=np.empty(3, dtype=np.uint64))
    with pytest.raises(TypeError):
        t.harvest(out=np.empty(100, dtype=np.int64))
    assert t.harvest().tolist() == list(range(10))  # the failed calls harvested nothing
