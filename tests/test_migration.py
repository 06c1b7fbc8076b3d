"""End-to-end tests of the pre-copy migration engine."""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List

import numpy as np
import pytest

import dirtylog
from dirtylog import Link, Migration, PreCopy, TrackingCosts, simulate
from dirtylog.devices import Device
from dirtylog.errors import ConfigError, StateError
from dirtylog.report import RoundReport
from dirtylog.workloads import Hotspot, Idle, Mix, Sequential, Trace, Uniform, WorkingSet, Zipf, save_trace

PAGE = 4096
NO_COST = TrackingCosts.zero()


def test_idle_guest_sends_memory_once_and_converges():
    r = simulate(memory="64MiB", workload=None, link=Link("1GiB/s"), devices=[], costs=NO_COST)
    pages = 64 * 256
    assert r.status == "completed" and r.converged and r.verified
    assert r.pages_sent == pages
    assert r.transferred == pages * (PAGE + 8)
    assert r.total_time == pytest.approx(pages * (PAGE + 8) / 2**30, rel=1e-9)
    # the setup sync and the pause's: the pass (62.5 ms) ends before QEMU's first 100 ms window closes,
    # while the threshold is still 0, and QEMU 7.2 completes with nothing left (no sync in between)
    assert r.dirty_sync_count == 2
    assert [x.final for x in r.rounds] == [False, True]
    assert r.rounds[0].dirty_pages == 0


def test_downtime_includes_devices_latency_and_resume():
    devs = [Device("big", "10MiB", 0)]
    r = simulate(memory="16MiB", workload=None, link=Link("100MiB/s", latency="5ms"), devices=devs,
                 policy=PreCopy(downtime_limit="1s", resume_time="20ms"), costs=NO_COST)
    assert r.status == "completed"
    # QEMU's switch-over: what was left (below the threshold) and the device state at link speed
    assert r.downtime_bytes >= r.device_bytes
    assert r.downtime == pytest.approx(r.downtime_bytes / (100 * 2**20) + 0.005 + 0.020, rel=1e-6)
    assert r.device_bytes == 10 * 2**20


def _uniform_run(tracker="pml", **kw):
    n = 1 << 18  # 1 GiB
    w = Uniform(60_000, seed=3)  # page writes per second
    pol = PreCopy(downtime_limit="30ms")
    return n, w, simulate(pages=n, workload=w, link=Link("400MiB/s"), policy=pol, tracker=tracker,
                          devices=[], costs=NO_COST, **kw)


def test_uniform_round_sizes_follow_the_saturation_recursion():
    n, w, r = _uniform_run()
    assert r.status == "completed" and r.verified
    pre = [x for x in r.rounds if not x.final]
    assert len(pre) >= 4
    for x in pre:
        # V(i+1) = N (1 - exp(-w T(i) / N)): distinct pages hit by w*T uniform writes
        expected = n * (1 - math.exp(-60_000 * x.duration / n))
        assert x.dirty_pages == pytest.approx(expected, rel=0.03), (x.index, x.dirty_pages, expected)


def test_engine_agrees_with_geometric_model_without_saturation():
    # lambda = D/R = 0.037: a round's writes hit distinct pages (saturation costs ~lambda/2 = 1.8 %).
    # Re-derived for QEMU's loop (a sync when what is left falls below the threshold T, sending
    # on from the scan position): round 0 sends N - T' pages (0 <= T' < T, T' the pages left at
    # the iteration that crossed T); each sync adds the pages written since the last one, so in
    # all N + w x t_live pages are sent: transferred = V / (1 - lambda) as the geometric sum.
    n = 1 << 20  # 4 GiB
    rate = 9_000  # page writes/s
    bw = 1.0e9
    pb = PAGE + 8
    r = simulate(pages=n, workload=Uniform(rate, seed=1), link=Link(bw), devices=[], costs=NO_COST,
                 policy=PreCopy(downtime_limit="50ms"))
    g = dirtylog.models.geometric(n * pb, bw, rate * pb, downtime_limit="50ms")
    lam = rate * pb / bw
    t_pages = bw * 0.05 / PAGE  # the threshold in pages
    pre = [x for x in r.rounds if not x.final]
    assert r.status == "completed" and r.converged and g.converged
    assert n - t_pages <= pre[0].pages_sent <= n
    assert pre[0].dirty_pages == pytest.approx(rate * pre[0].duration, rel=0.03)
    assert r.transferred == pytest.approx(n * pb / (1 - lam), rel=0.03)
    assert r.transferred == pytest.approx(g.total_bytes, rel=0.03)
    # the pause carries less than one threshold, at link speed
    assert r.downtime_bytes <= bw * 0.05 and r.downtime == pytest.approx(r.downtime_bytes / bw, rel=1e-6)


def test_dirty_rate_above_bandwidth_never_converges_and_aborts_cleanly():
    w = Uniform("200MiB/s", seed=5)
    pol = PreCopy(downtime_limit="10ms", max_iterations=5, on_limit="abort")
    r = simulate(memory="256MiB", workload=w, link=Link("100MiB/s"), policy=pol, tracker="wp")
    assert r.status == "failed" and not r.converged
    assert "iteration limit" in r.reason
    assert r.guest_running == "source"
    assert r.verified is True  # the source holds every write
    assert math.isnan(r.downtime)  # no switch-over: no downtime (null in JSON, "-" in tables)
    assert len(r.rounds) == 6


def test_dirty_rate_above_bandwidth_forced_stop_and_copy():
    w = Uniform("200MiB/s", seed=5)
    pol = PreCopy(downtime_limit="10ms", max_iterations=3, on_limit="force")
    r = simulate(memory="256MiB", workload=w, link=Link("100MiB/s"), policy=pol)
    assert r.status == "completed" and not r.converged and r.verified
    assert r.downtime > 0.5  # most of memory is dirty again
    assert r.rounds[-1].final


def test_xen_rule_stops_at_29_iterations_or_3x():
    w = Uniform("300MiB/s", seed=2)
    r = simulate(memory="128MiB", workload=w, link=Link("100MiB/s"), policy=PreCopy(stop="xen"))
    assert r.status == "completed" and not r.converged and r.verified
    assert r.precopy_rounds - 1 <= 29
    # Xen checks at each sync: it stops at the first one past 3x memory, a round (< 1x) later at most.
    assert "3x" in r.reason
    assert 3.0 * r.memory <= r.precopy_bytes <= 4.0 * r.memory * (4104 / 4096)


def test_timeout_mid_round():
    w = Uniform("200MiB/s", seed=2)
    r = simulate(memory="256MiB", workload=w, link=Link("100MiB/s"),
                 policy=PreCopy(timeout="1.5s", on_limit="abort"))
    assert r.status == "failed" and "timeout" in r.reason
    assert r.total_time == pytest.approx(1.5, abs=1e-6)
    assert r.verified


def test_an_infinite_timeout_is_no_timeout():
    # it used to switch off both give_up_after and the early verdict ("the limit will end it"): a run for ever
    assert PreCopy(timeout="inf").timeout is None and PreCopy(timeout=math.inf).timeout is None
    r = simulate(memory="64MiB", workload=Uniform("200MiB/s", seed=2), link=Link("100MiB/s"),
                 policy=PreCopy(timeout=math.inf))
    assert r.status == "failed" and "does not converge" in r.reason


def test_give_up_after_rolls_back_a_run_away_qemu_migration():
    w = Uniform("200MiB/s", seed=2)
    r = simulate(memory="64MiB", workload=w, link=Link("100MiB/s"), give_up_after="3s",
                 policy=PreCopy(stop_when_stalled=False))
    assert r.status == "failed" and "QEMU would iterate forever" in r.reason


WORKLOADS = {
    "uniform": lambda: Uniform("40MiB/s", seed=1),
    "hotspot": lambda: Hotspot("80MiB/s", hot_fraction=0.05, hot_share=0.95, seed=2),
    "zipf": lambda: Zipf("60MiB/s", s=1.1, seed=3),
    "sequential": lambda: Sequential("100MiB/s"),
    "mix": lambda: Mix([Idle(), Uniform("20MiB/s", seed=4), Sequential("50MiB/s", start=1000)]),
    "workingset": lambda: WorkingSet([(0.2, 0.1, "80MiB/s"), (0.2, 0.3, "40MiB/s")]),
}


@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
@pytest.mark.parametrize("huge", [None, "lazy", "eager"])
@pytest.mark.parametrize("vcpus", [1, 3])
def test_no_dirty_write_lost_in_any_mode(mode, huge, vcpus):
    r = simulate(memory="64MiB", workload=WORKLOADS["hotspot"](), link=Link("200MiB/s"), tracker=mode,
                 huge_pages=huge, vcpus=vcpus, policy=PreCopy(downtime_limit="20ms"))
    assert r.status == "completed"
    assert r.verified is True, r.mismatched_pages
    assert r.guest_writes > 5_000
    assert len(r.rounds) >= 3


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_no_dirty_write_lost_under_every_workload(name):
    r = simulate(memory="64MiB", workload=WORKLOADS[name](), link=Link("300MiB/s"), tracker="ring", vcpus=2,
                 policy=PreCopy(downtime_limit="20ms"), zero_pages=0.3)
    assert r.status == "completed" and r.verified is True, (name, r.mismatched_pages)
    assert r.duplicate > 0


@pytest.mark.filterwarnings("ignore:.*the trace ends at:UserWarning")  # a deliberately short trace
def test_verification_catches_a_dropped_dirty_page(tmp_path):
    # Page 7 is sent at the start of round 0 and written once at t = 0.1 s, during round 0.
    path = tmp_path / "one.npz"
    save_trace(path, np.array([100_000_000], dtype=np.uint64), np.array([7], dtype=np.uint64))
    # a 10 ms downtime limit: the first sync comes near the end of the pass (0.64 s)
    m = Migration(pages=16384, workload=Trace(path), link=Link("100MiB/s"), devices=[], costs=NO_COST,
                  policy=PreCopy(downtime_limit="10ms"))
    m.run_until(0.5)
    assert m.phase == "precopy" and m.current_round["index"] == 0
    m.tracker.inject_drop(7)  # the next sync loses page 7
    r = m.run()
    assert r.status == "completed"
    assert r.verified is False
    assert r.mismatched_pages == [7]

    clean = simulate(pages=16384, workload=Trace(path), link=Link("100MiB/s"), devices=[], costs=NO_COST,
                     policy=PreCopy(downtime_limit="10ms"))
    assert clean.verified is True


def test_step_api_matches_simulate():
    kw: Dict[str, Any] = dict(
        memory="128MiB", link=Link("200MiB/s"), policy=PreCopy(downtime_limit="20ms"), tracker="pml")
    full = simulate(workload=Uniform("50MiB/s", seed=9), **kw)
    seen: List[RoundReport] = []
    m = Migration(workload=Uniform("50MiB/s", seed=9), on_round=seen.append, **kw)
    t = 0.0
    while not m.done:
        t += 0.05
        m.run_until(t)
        assert m.clock <= t + 1e-12
    stepped = m.report()
    assert stepped.status == full.status == "completed"
    assert stepped.verified
    assert len(stepped.rounds) == len(full.rounds) == len(seen)
    for a, b in zip(stepped.rounds, full.rounds):
        assert a.dirty_pages == pytest.approx(b.dirty_pages, rel=0.02, abs=20)
    assert stepped.total_time == pytest.approx(full.total_time, rel=0.01)


def test_cancel_rolls_back():
    m = Migration(memory="64MiB", workload=Uniform("20MiB/s", seed=1), link=Link("50MiB/s"))
    m.advance("0.3s")
    m.cancel()
    r = m.report()
    assert r.status == "cancelled" and r.reason == "cancelled by the user"  # QEMU's status word
    assert not m.tracker.logging and r.verified
    with pytest.raises(StateError):
        m.cancel()


def test_tracker_modes_differ_in_exits_and_slowdown():
    res = {}
    for mode in ("wp", "pml", "ring"):
        res[mode] = simulate(memory="128MiB", workload=Uniform("100MiB/s", seed=4), link=Link("400MiB/s"),
                             tracker=mode, policy=PreCopy(downtime_limit="20ms"))
    wp, pml = res["wp"], res["pml"]
    assert wp.tracker_stats["faults"] > 100 * max(pml.tracker_stats["pml_full_exits"], 1)
    assert sum(r.guest_slowdown for r in wp.rounds) > sum(r.guest_slowdown for r in pml.rounds)
    assert res["ring"].tracker_stats["ring_full_exits"] > 0
    assert all(x.verified for x in res.values())


def test_clear_mode_clears_chunks_and_verifies():
    r = simulate(memory="256MiB", workload=Hotspot("100MiB/s", seed=3), link=Link("400MiB/s"), tracker="clear",
                 policy=PreCopy(downtime_limit="20ms", clear_chunk="32MiB"))
    assert r.verified and r.tracker_stats["cleared_pages"] > 0


def test_report_serializes():
    r = simulate(memory="32MiB", workload=Uniform("10MiB/s", seed=1), link=Link("100MiB/s"))
    d = json.loads(r.to_json())
    assert d["status"] == "completed" and d["rounds"][0]["index"] == 0
    text = str(r)
    assert "Downtime" in text and "round" in text and "geometric" in text
    assert "saturating" in r.models and "geometric" in r.models


@pytest.mark.parametrize(
    "make",
    [
        lambda: Link(0),
        lambda: Link(-5),
        lambda: Link(float("nan")),
        lambda: Link("10 furlongs"),
        lambda: PreCopy(stop="vmware"),
        lambda: PreCopy(on_limit="panic"),
        lambda: PreCopy(downtime_limit=-1),
        lambda: PreCopy(max_total_factor=0.5),
        lambda: simulate(memory="1MiB", tracker="shadow"),
        lambda: simulate(memory="1MiB", zero_pages=1.5),
        lambda: simulate(memory=0),
        lambda: simulate(memory="1MiB", pages=10),
    ],
)
def test_bad_arguments_raise_clear_errors(make):
    with pytest.raises(ConfigError) as e:
        make()
    assert str(e.value)


def test_an_unknown_tracker_option_is_named_with_the_allowed_ones():
    # it was tracker_config()'s own TypeError ("got an unexpected keyword argument 'ring_entrys'")
    with pytest.raises(ConfigError, match=r"unknown tracker option 'ring_entrys'; did you mean 'ring_entries'\? "
                                          r"\(allowed: mode, pml_entries, ring_entries, initially_set\)"):
        simulate(memory="1MiB", tracker={"mode": "ring", "ring_entrys": 1024})


def test_migration_given_a_spec_string_says_how_to_build_the_workload():
    # simulate() takes spec strings; Migration takes workload objects, and says how to build one
    with pytest.raises(TypeError, match=r"got str 'hotspot:1GiB/s': build the object from the spec with "
                                        r"dirtylog\.specs\.parse_workload\('hotspot:1GiB/s'\)"):
        Migration(memory="64MiB", workload="hotspot:1GiB/s")
    with pytest.raises(TypeError, match=r"got int$"):
        Migration(memory="64MiB", workload=5)
