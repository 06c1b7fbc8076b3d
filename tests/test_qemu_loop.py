"""QEMU 7.2's migration loop (issue 10): windows, the sync rule, the scan position, the switch-over,
zero pages, status words, phases, next_event_time, bounded reports and committed callbacks."""
from __future__ import annotations

import math
from typing import List

import numpy as np
import pytest

from dirtylog import Link, Migration, PreCopy, simulate
from dirtylog.costs import TrackingCosts
from dirtylog.errors import ConfigError
from dirtylog.engine import WINDOW, Engine, SendResult
from dirtylog.migration import KEEP_ROUNDS, Phase
from dirtylog.report import RoundReport
from dirtylog.workloads import Hotspot, Uniform

NO_COST = TrackingCosts.zero()


def test_the_first_sync_comes_when_what_is_left_falls_below_the_threshold_not_at_the_end_of_the_pass():
    r = simulate(memory="256MiB", workload=Uniform("10MiB/s", seed=1), link=Link("1Gbit/s"), costs=NO_COST)
    first = r.rounds[0]
    assert r.status == "completed" and r.verified
    left = r.pages - first.pages_sent
    # QEMU's threshold: measured bandwidth (1 Gbit/s) x 300 ms, in pages of 4 KiB; checked every 50 ms
    threshold_pages = 1.25e8 * 0.3 / 4096
    assert 0 < left < threshold_pages
    assert left > threshold_pages - 1.25e8 * 0.05 / 4104 - 1


def test_sending_goes_on_from_the_scan_position_and_wraps():
    m = Migration(memory="64MiB", workload=Uniform("20MiB/s", seed=2), link=Link("400Mbit/s"),
                  policy=PreCopy(downtime_limit="100ms"), costs=NO_COST)
    while m.dirty_sync_count < 2:  # the setup sync, then the first one of the loop
        m.advance("10ms")
    c = m.engine.counters()
    assert c.scan > 0 and c.passes == 0  # mid-memory: the rest of the first pass comes first
    m.run()
    assert m.engine.counters().passes >= 1 and m.report().verified


def test_threshold_is_the_measured_bandwidth_of_the_last_window():
    m = Migration(memory="256MiB", workload=Uniform("10MiB/s", seed=1), link=Link("1GiB/s"),
                  policy=PreCopy(max_bandwidth="64MiB/s", downtime_limit="200ms"))
    assert m.threshold() == 0.0  # before the first window closes, as in QEMU
    m.advance("0.35s")
    c = m.engine.counters()
    assert c.windows >= 2 and c.last_length == pytest.approx(WINDOW, abs=1e-9)
    assert c.bandwidth == pytest.approx(64 * 2**20, rel=0.01)
    assert m.threshold() == pytest.approx(c.bandwidth * 0.2)


def test_late_windows_keep_qemus_budget_and_deliver_less():
    # QEMU's budget is max-bandwidth x 100 ms per window; a thread that wakes late stretches the
    # window (rate_window), so the delivered and measured rate (and the threshold) are lower
    cap = 64 * 2**20
    m = Migration(memory="256MiB", workload=Uniform("10MiB/s", seed=1), link=Link("1GiB/s"),
                  policy=PreCopy(max_bandwidth=cap, downtime_limit="200ms", rate_window="125ms"))
    m.advance("0.6s")
    c = m.engine.counters()
    assert c.windows >= 3 and c.last_length == pytest.approx(0.125, abs=1e-9)
    assert c.last_bytes == pytest.approx(cap * WINDOW, abs=4104)  # QEMU's budget, not the delivered rate's
    assert c.bandwidth == pytest.approx(cap * WINDOW / 0.125, rel=0.01)
    assert m.threshold() == pytest.approx(c.bandwidth * 0.2)
    assert m.next_event_time() == pytest.approx(c.window_start + 0.125)
    with pytest.raises(ConfigError, match="rate_window"):
        PreCopy(rate_window="0s")
    with pytest.raises(ConfigError, match="rate_window"):
        PreCopy(rate_window="1min")
    with pytest.raises(ConfigError, match="rate_window must be between 100 ms and 10 s"):
        PreCopy(rate_window="1ms")  # windows never shorter than QEMU's: that would send more than max_bandwidth


def test_near_the_threshold_qemu_syncs_in_every_window():
    # a hot set just above the threshold: re-tested about ten times a second
    r = simulate(memory="64MiB", workload=Hotspot("300MiB/s", hot_fraction=0.06, hot_share=1.0, seed=3),
                 link=Link("100MiB/s"), policy=PreCopy(downtime_limit="30ms", stop_when_stalled=False),
                 give_up_after="5s", costs=NO_COST)
    late = [x for x in r.rounds if x.start > 2.0 and not x.final]
    assert r.dirty_sync_count > 20 and late
    assert max(x.duration for x in late) <= 2 * WINDOW + 1e-9


def test_zero_pages_are_detected_on_every_send():
    # an idle guest whose memory fits the threshold: most of pass 0 goes in the pause, zero pages as headers
    r = simulate(memory="256MiB", workload=None, link=Link("1Gbit/s"), zero_pages=0.5, seed=4)
    assert r.status == "completed" and r.downtime_bytes > 0 and r.verified
    assert r.pages_sent == r.pages  # each page once
    assert abs(r.duplicate - r.pages / 2) < 4 * math.sqrt(r.pages / 4)
    final = r.rounds[-1]
    page_bytes = r.downtime_bytes - r.device_bytes
    zeros_in_pause = (final.pages_sent * 4104 - page_bytes) / (4104 - 9)
    assert zeros_in_pause > 0.3 * final.pages_sent  # the pause sent its zero pages as headers too


def test_a_users_cancel_is_cancelled_a_failure_is_failed():
    m = Migration(memory="64MiB", workload=Uniform("20MiB/s", seed=1), link=Link("100MiB/s"))
    m.advance("0.2s")
    m.cancel()
    assert m.report().status == "cancelled" and m.phase == Phase.CANCELLED and m.done
    m = Migration(memory="64MiB", workload=Uniform("20MiB/s", seed=1), link=Link("100MiB/s"))
    m.advance("0.2s")
    m.fail_link()
    assert m.report().status == "failed" and m.phase == "failed"


def test_phases_are_an_enum_that_compares_as_strings():
    m = Migration(memory="16MiB", workload=None, link=Link("1Gbit/s"))
    assert m.phase == Phase.SETUP == "setup"
    m.run()
    assert m.phase == Phase.COMPLETED and str(Phase.COMPLETED) == "completed"


@pytest.mark.parametrize("policy", [PreCopy(), PreCopy(timeout="0.3s", on_limit="force")], ids=["converges", "forced"])
def test_next_event_time_lets_a_host_schedule_instead_of_polling(policy):
    """A host that advances to next_event_time() and nowhere else (no step of its own) reaches the end,
    with simulate()'s report. A forced switch-over's stop-and-copy ends exactly at the time it gave:
    run_until(that time) left the stage "pages" with nothing to send, and next_event_time() then gave
    the clock itself, forever (a SimPy host spun at one instant)."""
    kw = dict(memory="64MiB", workload=Uniform("20MiB/s", seed=5), link=Link("400Mbit/s"), policy=policy)
    m = Migration(**kw)
    steps = 0
    while not m.done:
        t = m.next_event_time()
        assert t >= m.clock
        m.run_until(t)
        steps += 1
        assert steps < 10_000, f"stuck at {m.clock} s in {m.phase}"
    assert m.next_event_time() == math.inf
    ref = simulate(**kw)
    r = m.report()
    assert r.status == ref.status == "completed" and r.converged == ref.converged
    assert (r.dirty_sync_count, r.transferred, r.guest_writes) == (ref.dirty_sync_count, ref.transferred, ref.guest_writes)
    assert r.total_time == pytest.approx(ref.total_time, rel=1e-12)
    assert r.downtime == pytest.approx(ref.downtime, rel=1e-12)


def test_tracker_mode_names_in_any_case():
    for t in ("RING", {"mode": "RING"}, {"mode": "Pml"}):
        r = simulate(memory="16MiB", workload=Uniform(1000, seed=1), link=Link("1Gbit/s"), tracker=t)
        assert r.status == "completed" and r.verified
    with pytest.raises(ValueError, match="allowed: wp, pml, ring, clear"):
        Migration(memory="16MiB", tracker={"mode": "nope"})


def test_long_reports_keep_the_first_and_last_rounds_and_sum_the_middle():
    seen: List[RoundReport] = []
    r = simulate(memory="64MiB", workload=Hotspot("300MiB/s", hot_fraction=0.06, hot_share=1.0, seed=3),
                 link=Link("100MiB/s"), policy=PreCopy(downtime_limit="30ms", stop_when_stalled=False),
                 give_up_after="150s", costs=NO_COST, on_round=seen.append)
    assert len(seen) > 2 * KEEP_ROUNDS + 10  # every round went to on_round
    assert r.rounds_aggregated == len(seen) - 2 * KEEP_ROUNDS
    assert len(r.rounds) == 2 * KEEP_ROUNDS + 1
    mid = r.rounds[KEEP_ROUNDS]
    assert mid.aggregated == r.rounds_aggregated
    assert sum(x.bytes for x in r.rounds) == sum(x.bytes for x in seen) == r.transferred
    # the give-up cut the last round short; the count holds every round, the summed ones too
    assert r.rounds[-1].ended == "failed" and seen[-1] == r.rounds[-1]
    assert r.precopy_rounds == len(seen)


def test_an_exception_in_on_round_loses_nothing():
    calls = []

    def boom(rr):
        calls.append(rr)
        if len(calls) == 2:
            raise RuntimeError("callback failed")

    m = Migration(memory="64MiB", workload=Uniform("20MiB/s", seed=2), link=Link("400Mbit/s"),
                  policy=PreCopy(downtime_limit="100ms"), on_round=boom)
    with pytest.raises(RuntimeError, match="callback failed"):
        m.run()
    r = m.run()  # goes on
    assert r.status == "completed" and r.verified is True
    assert len(calls) == len(r.rounds)  # no round reported twice, none lost


def test_guest_slowdown_never_exceeds_100_percent():
    r = simulate(memory="256MiB", workload=Uniform("2GiB/s", seed=1), link=Link("10Gbit/s"), tracker="wp",
                 page_size="1KiB", policy=PreCopy(chunk_size="16GiB", timeout="3s"), give_up_after="3s")
    assert all(x.guest_slowdown <= 100.0 for x in r.rounds)


def test_the_engine_face_directly():
    from dirtylog import Tracker

    t = Tracker(1000, mode="wp")
    t.start()
    import dirtylog._lib as L

    cfg = L.ffi.new("dl_engine_config *")
    L.lib.dl_engine_config_init(cfg)
    cfg.bandwidth = 4104 * 100.0  # 100 pages/s
    e = Engine(cfg, t, None, None)
    e.dirty_fill()
    assert e.remaining == 1000
    assert e.send_dirty(0.5) == SendResult.DEADLINE and e.remaining == 950
    e.set_rate_limit(4104 * 5)  # 5 pages per 100 ms window
    e.send_dirty(1.5)
    assert 899 <= e.remaining <= 901 and e.counters().bandwidth == pytest.approx(4104 * 50, rel=0.05)
    assert e.dirty_add(np.array([0, 1, 2, 999], dtype=np.uint64)) == 3  # sent pages come back; 999 is still dirty
    assert e.dirty_add(np.array([0], dtype=np.uint64)) == 0
    words = e.dirty_words()
    assert int(words[0]) & 3 == 3
    e.dirty_clear()
    assert e.send_dirty(2.0) == SendResult.EMPTY


@pytest.mark.parametrize("mode", ["wp", "pml", "ring"])
@pytest.mark.parametrize("stale", [False, True])
def test_the_engine_harvests_the_tracker_straight_into_its_bitmap(mode, stale):
    """dl_engine_dirty_harvest (QEMU's cpu_physical_memory_sync_dirty_bitmap: the log ORed into the
    migration bitmap) gives the bitmap, the count and the tracker's figures that the harvest as a page
    list followed by dirty_add gives, over several syncs, with pages already dirty in the bitmap."""
    import dirtylog._lib as L
    from dirtylog import Tracker
    from dirtylog.errors import ModeError

    pages = 1000 + 37  # an odd page count: the last word is partial
    out = []
    for direct in (False, True):
        t = Tracker(pages, mode=mode, vcpus=2, ring_entries=1024)  # 5000 writes fill rings
        if stale:
            t.stale_start(initial=True)
        t.start()
        cfg = L.ffi.new("dl_engine_config *")
        L.lib.dl_engine_config_init(cfg)
        e = Engine(cfg, t, None, None)
        r = np.random.default_rng(5)
        added = []
        for sync in range(4):
            for v in range(2):
                t.write(r.integers(0, pages, size=300 if sync else 5000, dtype=np.uint64), vcpu=v)
            added.append(e.dirty_harvest() if direct else e.dirty_add(t.harvest()))
            if sync == 1:
                e.dirty_clear()  # sent: the next syncs set bits again
        out.append((added, e.remaining, e.dirty_words().tolist(), t.totals,
                    t.stale_words().tolist() if stale else None))
    assert out[0] == out[1]
    assert out[1][0][0] > 0 and out[1][1] > 0

    t = Tracker(pages, mode="clear")
    t.start()
    cfg = L.ffi.new("dl_engine_config *")
    L.lib.dl_engine_config_init(cfg)
    with pytest.raises(ModeError, match="dirty_harvest"):  # clear mode's words are its clear mask too
        Engine(cfg, t, None, None).dirty_harvest()
