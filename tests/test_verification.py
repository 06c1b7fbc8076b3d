"""End-to-end verification: the stale bits (a write sets a page's bit, a send clears it).

The check must not lean on the tracker's own bitmaps: a tracker that loses a dirty
page (``inject_drop``) leaves the destination stale, and verification says so, in
every tracking mode. The stale bits themselves follow a numpy oracle: every write
sets its page's bit whatever the tracker does (logging or not, harvests, stops). The
tracker keeps them in the same cache lines as its own bits (co-located), which must change
none of its own results: tests/test_tracker_state_machine.py runs the reference model with
stale bits started and stopped at any point.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

import numpy as np
import pytest

from dirtylog import Link, Migration, PostCopy, PreCopy, Tracker, TrackingCosts, simulate
from dirtylog.errors import ConfigError, StateError
from dirtylog.workloads import Hotspot, Trace, Uniform, save_trace

NO_COST = TrackingCosts.zero()


def _stale_bits(t: Tracker, pages: int) -> np.ndarray:
    """The tracker's stale bits, one bool per page."""
    return np.unpackbits(t.stale_words().view(np.uint8), bitorder="little")[:pages].astype(bool)


@pytest.mark.filterwarnings("ignore:.*the trace ends at:UserWarning")  # a deliberately short trace
@pytest.mark.parametrize("huge", [None, "lazy"])
@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_a_page_the_tracker_drops_fails_verification_in_every_mode(tmp_path, mode: str, huge: Optional[str]) -> None:
    # Page 7 is sent at the start of round 0 and written once at t = 0.1 s, during round 0.
    path = tmp_path / "one.npz"
    save_trace(path, np.array([100_000_000], dtype=np.uint64), np.array([7], dtype=np.uint64))
    # a 10 ms downtime limit: the first sync comes near the end of the pass (0.64 s)
    kw: Dict[str, Any] = dict(
        pages=16384, workload=Trace(path), link=Link("100MiB/s"), devices=[], costs=NO_COST, tracker=mode,
        huge_pages=huge, policy=PreCopy(downtime_limit="10ms"))
    m = Migration(**kw)
    m.run_until(0.5)
    assert m.phase == "precopy" and m.current_round["index"] == 0
    m.tracker.inject_drop(7)  # the next sync loses page 7
    r = m.run()
    assert r.status == "completed" and r.verified is False
    assert r.mismatches == 1 and r.mismatched_pages == [7]

    clean = simulate(**kw)
    assert clean.verified is True and clean.mismatches == 0


@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_stale_bits_follow_every_write_whatever_the_tracker_does(mode: str) -> None:
    pages = 5000  # not a multiple of 64
    t = Tracker(pages, mode=mode, vcpus=2, huge_pages="lazy", ring_entries=1024)
    t.stale_start()
    oracle = np.zeros(pages, dtype=bool)
    rng = np.random.default_rng(5)
    for step in range(12):
        if step == 4:
            t.start()
        if step == 9:
            t.stop()
        b = rng.integers(0, pages, size=700)
        t.write(b, vcpu=step % 2)
        oracle[b] = True
        if t.logging and step % 3 == 0:
            t.harvest_bitmap()  # the tracker's own bits are cleared; the stale bits are not
        assert np.array_equal(_stale_bits(t, pages), oracle), step
    t.stale_stop()
    assert not t.stale_kept and t.memory_bytes == Tracker(pages, mode=mode, vcpus=2, huge_pages="lazy",
                                                          ring_entries=1024).memory_bytes
    with pytest.raises(StateError, match="stale_start"):
        t.stale_words()
    t.write([1, 2, 3])  # none kept: nothing marked
    t.stale_start(initial=True)  # every page stale again
    assert _stale_bits(t, pages).all() and (t.stale_words() == np.uint64(2**64 - 1)).all()


def test_stale_words_are_read_and_set_by_range() -> None:
    t = Tracker(640, mode="pml")
    with pytest.raises(StateError):
        t.set_stale_words(np.zeros(1, dtype=np.uint64))
    t.stale_start()
    t.set_stale_words(np.array([5, 6], dtype=np.uint64), first=8)
    assert t.stale_words().tolist() == [0] * 8 + [5, 6]
    t.write([0, 639])
    assert t.stale_words().tolist() == [1] + [0] * 7 + [5, 6 | 1 << 63]
    with pytest.raises(ConfigError, match="past the last word"):
        t.set_stale_words(np.zeros(2, dtype=np.uint64), first=9)
    with pytest.raises(TypeError):
        t.set_stale_words(np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError):
        t.stale_start(initial=1)  # type: ignore[arg-type]


def test_verification_keeps_one_bit_per_page() -> None:
    m = Migration(memory="1GiB", workload=Uniform("10MiB/s", seed=1), link=Link("10Gbit/s"))
    assert m.tracker.stale_kept and m._src is None  # no per-page versions without zero-page modelling
    off = Migration(memory="1GiB", workload=Uniform("10MiB/s", seed=1), link=Link("10Gbit/s"), verify=False)
    assert not off.tracker.stale_kept
    assert m.tracker.memory_bytes - off.tracker.memory_bytes == (1 << 18) // 8  # 32 KiB for 262144 pages


def test_postcopy_and_zero_pages_verify_with_the_stale_bitmap() -> None:
    r = simulate(memory="64MiB", workload=Hotspot("100MiB/s", seed=7), link=Link("1Gbit/s"), zero_pages=0.3,
                 policy=PostCopy(after_rounds=1, precopy=PreCopy(downtime_limit="20ms")))
    assert r.status == "completed" and r.postcopy_requests > 0 and r.duplicate > 0
    assert r.verified is True


# ---- the stale bits change nothing else -----------------------------------------------------------
#
# The stale bits live in the tracker's own cache lines (its bits' layout changes when they are kept):
# a migration with verification must take every step exactly as one without, in every mode.

_CASES: Dict[str, Dict[str, Any]] = {
    "wp": dict(tracker="wp"),
    "pml-4vcpu": dict(tracker="pml", vcpus=4),
    "ring": dict(tracker="ring", vcpus=2),
    "clear": dict(tracker="clear", policy=PreCopy(downtime_limit="5ms", clear_chunk="4MiB")),
    "pml-lazy-huge": dict(tracker="pml", huge_pages="lazy", vcpus=3),
    "ring-eager-huge": dict(tracker="ring", huge_pages="eager"),
    "zero-pages": dict(tracker="pml", zero_pages=0.3),
    "xbzrle": dict(tracker="pml", policy=PreCopy(downtime_limit="5ms", xbzrle=True, xbzrle_cache_size="4MiB")),
    "multifd-small-chunks": dict(tracker="wp", vcpus=2,
                                 policy=PreCopy(downtime_limit="5ms", multifd_channels=4, chunk_size="12KiB")),
    "rate-limit": dict(tracker="pml", policy=PreCopy(downtime_limit="5ms", max_bandwidth="90MiB/s")),
    "postcopy": dict(tracker="pml", vcpus=2, policy=PostCopy(after_rounds=1, precopy=PreCopy(downtime_limit="5ms"))),
}


def _unverified(m: Migration) -> dict:
    """The report without what only verification fills in."""
    r = json.loads(m.report().to_json())
    for k in ("verified", "mismatches", "mismatched_pages"):
        r.pop(k, None)
    for e in r["events"]:
        e.pop("verified", None)  # the completed event's
    return r


@pytest.mark.parametrize("name", sorted(_CASES))
def test_verification_changes_no_step_of_a_migration(name: str) -> None:
    kw: Dict[str, Any] = dict(memory="32MiB", workload=Hotspot("60MiB/s", hot_fraction=0.3, seed=11),
                              link=Link("1Gbit/s"), policy=PreCopy(downtime_limit="5ms"), costs=NO_COST)
    kw.update(_CASES[name])
    on = Migration(**kw)
    off = Migration(verify=False, **kw)
    t = 0.0
    while not (on.done and off.done):
        t += 0.0173  # steps that cut chunks, segments and rounds anywhere
        on.run_until(t)
        off.run_until(t)
        assert _unverified(on) == _unverified(off), (name, t, on.phase)
        assert on.tracker.stats == off.tracker.stats, (name, t, on.phase)
        assert t < 60, "did not finish"
    assert on.report().status == "completed" and on.report().verified is True


def _one_page_trace(tmp_path, writes: "list[tuple[float, int]]"):
    path = tmp_path / "writes.npz"
    save_trace(path, np.array([int(t * 1e9) for t, _ in writes], dtype=np.uint64),
               np.array([p for _, p in writes], dtype=np.uint64))
    return Trace(path)


# 16384 pages at 100 MiB/s: the first pass sends page p at about p / 16384 * 0.64 s; with a 10 ms
# downtime limit the first sync comes near the pass's end.
def _drop_kw(mode: str, huge: Optional[str], workload) -> dict:
    return dict(pages=16384, workload=workload, link=Link("100MiB/s"), devices=[], costs=NO_COST, tracker=mode,
                huge_pages=huge, policy=PreCopy(downtime_limit="10ms"))


@pytest.mark.filterwarnings("ignore:.*the trace ends at:UserWarning")
@pytest.mark.parametrize("huge", [None, "lazy"])
@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_a_lost_write_above_the_send_cursor_is_caught_once_the_page_was_sent(tmp_path, mode: str,
                                                                            huge: Optional[str]) -> None:
    # Page 12000 is written at 0.1 s, above the cursor (its send, at about 0.47 s, carries that write),
    # and again at 0.55 s, after its send: the tracker loses it at the next sync.
    kw = _drop_kw(mode, huge, _one_page_trace(tmp_path, [(0.1, 12000), (0.55, 12000)]))
    m = Migration(**kw)
    m.run_until(0.5)
    assert m.phase == "precopy" and m.current_round["index"] == 0
    m.tracker.inject_drop(12000)
    r = m.run()
    assert r.status == "completed" and r.verified is False
    assert r.mismatches == 1 and r.mismatched_pages == [12000]
    assert simulate(**kw).verified is True


@pytest.mark.filterwarnings("ignore:.*the trace ends at:UserWarning")
@pytest.mark.parametrize("huge", [None, "lazy"])
@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_a_dirty_bit_lost_before_the_first_send_loses_nothing(tmp_path, mode: str, huge: Optional[str]) -> None:
    # Page 12000 is written at 0.1 s only, above the cursor: its first send (about 0.47 s) carries
    # the write, so the destination holds its newest content though the tracker loses its dirty bit.
    kw = _drop_kw(mode, huge, _one_page_trace(tmp_path, [(0.1, 12000)]))
    m = Migration(**kw)
    m.run_until(0.3)
    m.tracker.inject_drop(12000)
    r = m.run()
    assert r.status == "completed" and r.verified is True and r.mismatches == 0


@pytest.mark.filterwarnings("ignore:.*the trace ends at:UserWarning")
@pytest.mark.parametrize("huge", [None, "lazy"])
@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_a_write_lost_in_a_later_round_is_caught(tmp_path, mode: str, huge: Optional[str]) -> None:
    # Pages 0-2047 are written at 0.3 s, after their first send: round 1 sends them again (about
    # 0.65-0.73 s). Page 100 is written at 0.70 s, after its round-1 send (below the cursor), and page
    # 2000 at 0.66 s, before its round-1 send (above the cursor): the tracker loses both at the next sync.
    writes = [(0.3, p) for p in range(2048)] + [(0.66, 2000), (0.70, 100)]
    writes.sort()
    kw = _drop_kw(mode, huge, _one_page_trace(tmp_path, writes))
    m = Migration(**kw)
    m.run_until(0.655)
    assert m.phase == "precopy" and m.current_round["index"] == 1, (m.phase, m.current_round)
    m.tracker.inject_drop(100)
    r = m.run()
    assert r.status == "completed" and r.verified is False
    assert r.mismatched_pages == [100]
    m = Migration(**kw)
    m.run_until(0.655)
    m.tracker.inject_drop(2000)  # carried by its round-1 send: nothing lost
    assert m.run().verified is True
    assert simulate(**kw).verified is True


@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_stale_bits_follow_an_engines_sends_and_the_writes(mode: str) -> None:
    # Every page stale but 4483 (and the bits past the last page clear): writes set bits, the
    # engine's sends, in page order, clear them.
    from dirtylog._lib import ffi, lib
    from dirtylog.engine import Engine

    pages = 5000  # not a multiple of 64: the last word's bits past page 4999 are clear here
    t = Tracker(pages, mode=mode, vcpus=2, ring_entries=1024)
    words = np.full(t.config.bitmap_words, np.uint64(2**64 - 1), dtype=np.uint64)
    words[-1] = np.uint64((1 << (pages % 64)) - 1)
    words[4483 // 64] &= ~np.uint64(1 << (4483 % 64))
    t.stale_start()
    t.set_stale_words(words)
    oracle = np.ones(pages, dtype=bool)
    oracle[4483] = False
    t.start()
    cfg = ffi.new("dl_engine_config *")
    lib.dl_engine_config_init(cfg)
    cfg.bandwidth = 4104 * 1000.0  # 1000 pages/s
    e = Engine(cfg, t, None, None)
    e.dirty_fill()

    def stale() -> np.ndarray:
        return _stale_bits(t, pages)

    t.write([4483, 4999, 3, 4482], vcpu=0)
    oracle[[4483, 4999, 3, 4482]] = True
    assert np.array_equal(stale(), oracle)
    clock, sent = 0.0, 0
    for step in range(6):
        clock += 0.7  # about 700 pages a step, in page order
        e.send_dirty(clock)
        oracle[sent:pages - e.remaining] = False  # this step's sends
        sent = pages - e.remaining
        w = np.random.default_rng(step).integers(0, pages, size=300)
        t.write(w, vcpu=step % 2)
        oracle[w] = True
        assert np.array_equal(stale(), oracle), step
    assert 4000 < sent < pages

def _engine_stale_after_midslice_fill(midslice_fill: bool) -> "tuple[np.ndarray, np.ndarray, list]":
    """The engine API driven by hand (a host simulator's sequence): 128 pages of a 192-page guest
    sent one a chunk in one segment, in which the guest writes each of them before its send (then
    page 150, 128 times); the slice is applied in bounded pieces (work_budget 16), and, with
    ``midslice_fill``, dl_engine_dirty_fill is called once the 128 early writes are applied (every
    word all ones again). Page 5 is written again at 0.3 s, after its send. Returns the stale words
    after the slice, after the later write, and the pages dl_engine_verify reports."""
    from dirtylog._lib import ffi, lib
    from dirtylog.engine import Engine

    pages = 192
    t = Tracker(pages, mode="wp")
    t.stale_start(initial=True)
    times = [int(0.5e6 * i) for i in range(128)] + [int(64e6 + 0.5e6 * i) for i in range(128)] + [int(300e6)]
    written = list(range(128)) + [150] * 128 + [5]
    wl = Trace(time_ns=np.array(times, dtype=np.uint64), pages=np.array(written, dtype=np.uint64)).bind(pages)
    cfg = ffi.new("dl_engine_config *")
    lib.dl_engine_config_init(cfg)
    cfg.bandwidth, cfg.page_bytes, cfg.zero_bytes, cfg.chunk_pages, cfg.work_budget = 4096e3, 4096, 1, 1, 16
    engine = Engine(cfg, t, wl._handle)
    e = engine.handle
    st = ffi.new("dl_engine_state *")

    def finish_slice(fill_at: Optional[int] = None) -> None:
        while True:
            assert lib.dl_engine_get_state(e, st) == 0
            if not st.guest_pending:
                return
            if fill_at is not None and st.writes >= fill_at:
                assert lib.dl_engine_dirty_fill(e) == 0
                fill_at = None
            assert lib.dl_engine_resume(e) == 0

    assert lib.dl_engine_set_rate_limit(e, 10.0, 0, 10.0) == 0  # one iteration, one segment
    t.start()
    assert lib.dl_engine_dirty_fill(e) == 0
    why = ffi.new("int *")
    while True:  # a return short of the deadline (work_budget sends) is not a deadline: call again
        assert lib.dl_engine_send_dirty(e, 0.128 + 1e-9, 0.0, 0, why) == 0
        assert lib.dl_engine_get_state(e, st) == 0 and not st.guest_pending
        if st.clock >= 0.128 + 1e-9 or why[0] != lib.DL_SEND_DEADLINE:
            break
    assert st.pages_sent == 128 and st.writes == 0
    assert lib.dl_engine_catch_up(e) == 0
    finish_slice(128 if midslice_fill else None)
    assert st.writes == 256
    after_slice = t.stale_words()
    assert lib.dl_engine_idle(e, 0.4) == 0
    finish_slice()
    assert lib.dl_engine_catch_up(e) == 0
    finish_slice()
    out = np.zeros(pages, dtype=np.uint64)
    n = ffi.new("uint64_t *")
    assert lib.dl_engine_verify(e, ffi.from_buffer("uint64_t[]", out), out.size, n) == 0
    return after_slice, t.stale_words(), out[: int(n[0])].tolist()


def test_a_dirty_fill_while_a_segment_slice_is_partly_applied_loses_no_stale_bit() -> None:
    # A dirty_fill in the middle of a segment's slice changes no stale bit: the end of the slice
    # clears the bits of the writes its sends carried, and the later write to page 5 at 0.3 s is
    # reported (a former "stale floor", which let writes skip their store where every bit was known
    # to be set, once lost it here).
    plain_slice, plain_end, plain_bad = _engine_stale_after_midslice_fill(False)
    slice_, end, bad = _engine_stale_after_midslice_fill(True)
    assert plain_slice.tolist() == [0x1, 0x0, 2**64 - 1]  # page 0's write came after its send
    assert np.array_equal(slice_, plain_slice)
    assert 5 in plain_bad and np.array_equal(end, plain_end) and bad == plain_bad


@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_stale_words_set_while_an_engine_runs_lose_no_write(mode: str) -> None:
    # Words the caller sets while an engine runs (here: pages 64 .. 255 not stale) take the later
    # writes' bits as any others.
    from dirtylog._lib import ffi, lib
    from dirtylog.engine import Engine

    pages = 640
    t = Tracker(pages, mode=mode, vcpus=1, ring_entries=1024)
    t.stale_start(initial=True)
    t.start()
    cfg = ffi.new("dl_engine_config *")
    lib.dl_engine_config_init(cfg)
    engine = Engine(cfg, t, None, None)
    engine.dirty_fill()
    t.set_stale_words(np.zeros(3, dtype=np.uint64), first=1)  # pages 64 .. 255: not stale
    t.write([70, 200, 300], vcpu=0)
    stale = _stale_bits(t, pages)
    assert stale[:64].all() and stale[256:].all() and np.flatnonzero(~stale).size == 192 - 2
    assert stale[70] and stale[200]
    del engine


def test_an_engine_keeps_its_tracker_alive_until_it_is_destroyed() -> None:
    # The Python engine holds the tracker's C handle until its destructor has run, whatever order
    # the two are collected in (the C engine points at the tracker while it lives).
    import gc
    import weakref

    from dirtylog._lib import ffi, lib
    from dirtylog.engine import Engine

    t = Tracker(256, mode="pml")
    t.stale_start(initial=True)
    cfg = ffi.new("dl_engine_config *")
    lib.dl_engine_config_init(cfg)
    engine = Engine(cfg, t, None, None)
    engine.dirty_fill()
    handle = weakref.ref(t._handle)
    del t
    gc.collect()
    assert handle() is not None  # held by the engine's destructor
    del engine
    gc.collect()
    assert handle() is None  # freed once the engine is


@pytest.mark.parametrize("how", ["tracker first", "cycle"])
def test_an_engine_destroyed_after_its_tracker_writes_no_freed_memory(how: str) -> None:
    # The garbage collector frees the objects of a reference cycle in its own order, so a Migration
    # held in a cycle may have its tracker destroyed before its engine (a destructor that wrote into
    # the tracker once did so into freed memory: ASAN, heap-use-after-free in dl_engine_destroy; it
    # no longer touches the tracker). This test fails only under the sanitizers (CI's ASAN+UBSan run);
    # without them, it checks that a migration on a fresh tracker still verifies.
    import gc

    from dirtylog._lib import ffi

    m = Migration(memory="1MiB", workload=Uniform("4MiB/s", seed=1), link=Link("1Gbit/s"), tracker="pml")
    m.run_until(0.01)
    if how == "tracker first":
        ffi.release(m.tracker._handle)  # dl_tracker_destroy now; the engine goes with m below
        del m
    else:
        box: list = [m]
        box.append(box)  # a cycle holding the migration: the collector picks the order
        del m, box
    gc.collect()
    r = simulate(memory="1MiB", workload=Uniform("4MiB/s", seed=1), link=Link("1Gbit/s"), tracker="pml")
    assert r.status == "completed" and r.verified
