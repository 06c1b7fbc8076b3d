"""End-to-end verification: the stale bitmap (a write sets a page's bit, a send clears it).

The check must not lean on the tracker's own bitmaps: a tracker that loses a dirty
page (``inject_drop``) leaves the destination stale, and verification says so, in
every tracking mode. The stale bits themselves follow a numpy oracle: every write
sets its page's bit whatever the tracker does (logging or not, harvests, stops).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pytest

from dirtylog import Link, Migration, PostCopy, PreCopy, Tracker, TrackingCosts, simulate
from dirtylog.workloads import Hotspot, Trace, Uniform, save_trace

NO_COST = TrackingCosts.zero()


@pytest.mark.filterwarnings("ignore:.*the trace ends at:UserWarning")  # a deliberately short trace
@pytest.mark.parametrize("huge", [None, "lazy"])
@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_a_page_the_tracker_drops_fails_verification_in_every_mode(tmp_path, mode: str, huge: Optional[str]) -> None:
    # Page 7 is sent at the start of round 0 and written once at t = 0.1 s, during round 0.
    path = tmp_path / "one.npz"
    save_trace(path, np.array([100_000_000], dtype=np.uint64), np.array([7], dtype=np.uint64))
    # a 10 ms downtime limit: the first sync comes near the end of the pass (0.64 s)
    kw = dict(pages=16384, workload=Trace(path), link=Link("100MiB/s"), devices=[], costs=NO_COST, tracker=mode,
              huge_pages=huge, policy=PreCopy(downtime_limit="10ms"))
    m = Migration(**kw)  # type: ignore[arg-type]
    m.run_until(0.5)
    assert m.phase == "precopy" and m.current_round["index"] == 0
    m.tracker.inject_drop(7)  # the next sync loses page 7
    r = m.run()
    assert r.status == "completed" and r.verified is False
    assert r.mismatches == 1 and r.mismatched_pages == [7]

    clean = simulate(**kw)  # type: ignore[arg-type]
    assert clean.verified is True and clean.mismatches == 0


@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_stale_bits_follow_every_write_whatever_the_tracker_does(mode: str) -> None:
    pages = 5000  # not a multiple of 64
    t = Tracker(pages, mode=mode, vcpus=2, huge_pages="lazy", ring_entries=256)
    words = np.zeros(t.config.bitmap_words, dtype=np.uint64)
    t.attach_stale(words)
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
        got = np.unpackbits(words.view(np.uint8), bitorder="little")[:pages].astype(bool)
        assert np.array_equal(got, oracle), step
    t.attach_stale(None)
    t.write([1, 2, 3])  # detached: no longer marked
    assert np.array_equal(np.unpackbits(words.view(np.uint8), bitorder="little")[:pages].astype(bool), oracle)


def test_verification_keeps_one_bit_per_page() -> None:
    m = Migration(memory="1GiB", workload=Uniform("10MiB/s", seed=1), link=Link("10Gbit/s"))
    assert m._stale is not None and m._stale.nbytes == (1 << 18) // 8  # 32 KiB for 262144 pages
    assert m._src is None  # no per-page versions without zero-page modelling
    off = Migration(memory="1GiB", workload=Uniform("10MiB/s", seed=1), link=Link("10Gbit/s"), verify=False)
    assert off._stale is None


def test_postcopy_and_zero_pages_verify_with_the_stale_bitmap() -> None:
    r = simulate(memory="64MiB", workload=Hotspot("100MiB/s", seed=7), link=Link("1Gbit/s"), zero_pages=0.3,
                 policy=PostCopy(after_rounds=1, precopy=PreCopy(downtime_limit="20ms")))
    assert r.status == "completed" and r.postcopy_requests > 0 and r.duplicate > 0
    assert r.verified is True
