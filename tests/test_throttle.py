"""The throttle controllers (dirtylog.throttle) and the policy's decision at a sync (dirtylog.decision)."""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List

import pytest

from dirtylog import Link, PreCopy, PostCopy, simulate
from dirtylog.decision import Action, SyncPolicy, SyncState
from dirtylog.costs import TrackingCosts
from dirtylog.throttle import THROTTLE_TIMESLICE, AutoConverge, DirtyLimit, DirtyRatePeriod, kick_wait
from dirtylog.workloads import Uniform


class FakeEngine:
    def __init__(self):
        self.throttle = 0.0
        self.vcpu = {}

    def set_throttle(self, t):
        self.throttle = t

    def set_vcpu_throttle(self, j, t):
        self.vcpu[j] = t


# -- the dirty-rate period ---------------------------------------------------------------
def test_period_closes_only_more_than_1000_ms_after_it_began():
    p = DirtyRatePeriod(50, start=0.7 - 0.4)  # 0.29999999999999993: a float just below 0.3
    p.add(1000)
    # exactly 1 s later on dirtylog's grid: QEMU's `end_time > last + 1000` (milliseconds) is false
    assert not p.due(1.3)
    assert p.close(1.3, 10 * 4096, 4096) is None and p.dirty_pages == 1000  # the period goes on
    assert p.due(1.301)


def test_period_fires_on_the_second_high_period_and_not_on_low_ones():
    p = DirtyRatePeriod(50)
    # bytes dirtied 100 pages x 4 KiB = 400 KiB against 50 % of 400 KiB sent: high
    p.add(100)
    assert p.close(1.5, 100 * 4096, 4096) is None and p.high == 1
    p.add(10)  # low: QEMU's counter does not restart on a low period
    assert p.close(3.0, 200 * 4096, 4096) is None and p.high == 1
    p.add(100)
    fire = p.close(4.5, 300 * 4096, 4096)
    assert fire == (100 * 4096, 100 * 4096 * 50 / 100) and p.high == 0
    assert p.start == 4.5 and p.dirty_pages == 0 and p.xfer0 == 300 * 4096


def test_auto_converge_steps_initial_then_increment_up_to_the_max():
    e = FakeEngine()
    ac = AutoConverge(PreCopy(auto_converge=True, max_cpu_throttle=45), e)
    assert [ac.step(2.0, 1.0) for _ in range(5)] == [20, 30, 40, 45, None]
    assert ac.history == [20, 30, 40, 45] and e.throttle == pytest.approx(0.45) and not ac.can_step()


def test_auto_converge_tailslow_sizes_the_step_by_the_dirty_rate():
    ac = AutoConverge(PreCopy(auto_converge=True, cpu_throttle_tailslow=True), FakeEngine())
    assert ac.step(2.0, 1.0) == 20
    # cpu_now 80, ideal 80 x 0.95 = 76: a step of 4, not 10
    assert ac.step(1.0, 0.95) == 24


def test_dirty_limit_steps_each_vcpus_sleep_as_qemu_does():
    """QEMU's dirtylimit_process (system/dirtylimit.c), counted by hand: a 4096-entry ring of 4 KiB pages (16
    MiB, soft limit 3520 entries), quota 4 MiB/s, 1 s periods."""
    e = FakeEngine()
    pol = PreCopy(dirty_limit=True, vcpu_dirty_limit="4MiB/s", dirty_limit_period="1s")
    dl = DirtyLimit(pol, e, vcpus=2, page_size=4096, ring_entries=4096, ring_soft_limit=3520)
    assert dl.figures() == (None, None)
    dl.engage(2.0, [0, 0])
    assert dl.active and dl.next_at == 3.0
    # vCPU 0 dirtied 100 MiB/s (25,600 pages), vCPU 1 20 MiB/s: within 25 MiB/s of the quota (dirtylimit_done)
    rates, thr, moving = dl.adjust([25600, 5120], 3.0)
    assert rates == [100 * 2**20, 20 * 2**20] and moving
    full = 16 / 100  # dirtylimit_dirty_ring_full_time: the 16 MiB ring at the highest rate, 100 MiB/s
    # 96 % off, more than 50 %: the sleep per ring fill grows by full x 96 / 4 (dirtylimit_set_throttle)
    assert dl.sleep == [pytest.approx(full * 96 / 4), 0.0]
    # vCPU 0 fills 3520 entries in 3520 / 25600 s of running, then sleeps 3.84 s
    share = 3.84 / (3.84 + 3520 / 25600)
    assert thr == [pytest.approx(share), 0.0] and e.vcpu == {0: pytest.approx(share)}
    assert dl.figures() == (pytest.approx(full), pytest.approx(3.84))
    # the next period it dirties 25,600 x (1 - share) pages, 3.46 MiB/s: within the band, nothing moves
    rates, thr, moving = dl.adjust([25600 + round(25600 * (1 - share)), 5120 * 2], 4.0)
    assert not moving and dl.sleep[0] == pytest.approx(3.84) and thr[0] == pytest.approx(share, rel=1e-3)
    dl.lift()
    assert not dl.active and e.vcpu[0] == 0.0 and dl.next_at == math.inf
    assert dl.figures() == (pytest.approx(full), pytest.approx(3.84))  # kept as of the last period in service


def test_dirty_limit_reads_a_late_period_over_its_nominal_length():
    """vcpu_calculate_dirtyrate divides the pages counted after its sync's wait by the period alone: a 1 s
    period read 0.25 s late (its flush waited for sleeping vCPUs) reads 25,600 pages as 100 MiB/s, and
    the next period begins then. The ring fills in the time that really passed: 25,600 pages in 1.25 s."""
    pol = PreCopy(dirty_limit=True, vcpu_dirty_limit="4MiB/s", dirty_limit_period="1s")
    dl = DirtyLimit(pol, FakeEngine(), vcpus=1, page_size=4096, ring_entries=4096, ring_soft_limit=3520)
    dl.engage(0.0, [0])
    rates, thr, _ = dl.adjust([25600], 1.25)
    assert rates == [100 * 2**20] and dl.sleep == [pytest.approx(0.16 * 96 / 4)]
    assert thr == [pytest.approx(3.84 / (3.84 + 3520 / (25600 / 1.25)))] and dl.next_at == 2.25


def test_dirty_limit_steps_a_tenth_of_a_ring_full_time_near_the_quota():
    pol = PreCopy(dirty_limit=True, vcpu_dirty_limit="40MiB/s", dirty_limit_period="1s")
    dl = DirtyLimit(pol, FakeEngine(), vcpus=1, page_size=4096, ring_entries=4096, ring_soft_limit=3520)
    dl.engage(0.0, [0])
    _, thr, _ = dl.adjust([70 * 256], 1.0)  # 70 MiB/s: 30 MiB/s off (beyond the band), 43 % of 70 (not beyond 50 %)
    full = 16 / 70
    assert dl.sleep == [pytest.approx(full / 10)]
    assert thr == [pytest.approx(full / 10 / (full / 10 + 3520 / (70 * 256)))]
    # the guest now dirties 5 MiB/s while running: 87 % below the quota, the sleep shrinks by
    # full x 87 / 13, to nothing (never below 0)
    dl.adjust([70 * 256 + round(5 * 256 * (1 - thr[0]))], 2.0)
    assert dl.sleep == [0.0] and dl.throttles == [0.0]
    # at most 99 ring-full times (DIRTYLIMIT_THROTTLE_PCT_MAX, a factor there)
    assert dl._step(98 * full, 1.0, 70.0) == pytest.approx(99 * full)


def test_dirty_limit_ring_full_time_takes_the_rates_of_the_vcpus_stepped_in_order():
    """QEMU's dirtylimit_set_throttle reads the ring-full time through dirtylimit_dirty_ring_full_time(current),
    whose static max_dirtyrate takes in the rate of the vCPU being stepped, vCPU by vCPU (CPU_FOREACH): a vCPU
    stepped before a faster one is stepped by the ring-full time at the highest rate seen so far, its own, and a
    vCPU within the tolerance band (not stepped) raises nothing. The figure query-migrate reports
    (dirtylimit_ring_full_time) is taken at the vCPUs' mean rate. A 16 MiB ring, quota 4 MiB/s."""
    pol = PreCopy(dirty_limit=True, vcpu_dirty_limit="4MiB/s", dirty_limit_period="1s")
    dl = DirtyLimit(pol, FakeEngine(), vcpus=2, page_size=4096, ring_entries=4096, ring_soft_limit=3520)
    dl.engage(0.0, [0, 0])
    dl.adjust([60 * 256, 200 * 256], 1.0)  # 60 and 200 MiB/s
    # vCPU 0: 93 % off (56 / 60), ring-full time 16 / 60 s; vCPU 1: 98 % off, 16 / 200 s
    assert dl.sleep == [pytest.approx(16 / 60 * 93 / 7), pytest.approx(16 / 200 * 98 / 2)]
    assert dl.figures()[0] == pytest.approx(16 / 200)
    # every vCPU within 25 MiB/s of a 20 MiB/s quota: none is stepped; the figure is at their mean, 20 MiB/s
    pol = PreCopy(dirty_limit=True, vcpu_dirty_limit="20MiB/s", dirty_limit_period="1s")
    dl = DirtyLimit(pol, FakeEngine(), vcpus=2, page_size=4096, ring_entries=4096, ring_soft_limit=3520)
    dl.engage(0.0, [0, 0])
    dl.adjust([30 * 256, 10 * 256], 1.0)
    assert dl.sleep == [0.0, 0.0] and dl.figures() == (pytest.approx(16 / 20), 0.0)


def test_dirty_limit_steps_linearly_only_beyond_a_whole_50_percent():
    """dirtylimit_need_linear_adjustment compares QEMU's integer percentage, (max - min) x 100 / max in
    uint64, with 50: a rate 50.5 % off (quota 50 MiB/s, rate 101 MiB/s) is 50, not beyond, so the sleep
    grows by a tenth of a ring-full time (16 MiB / 101 MiB/s), not by a whole one (50 / (100 - 50))."""
    pol = PreCopy(dirty_limit=True, vcpu_dirty_limit="50MiB/s", dirty_limit_period="1s")
    dl = DirtyLimit(pol, FakeEngine(), vcpus=1, page_size=4096, ring_entries=4096, ring_soft_limit=3520)
    dl.engage(0.0, [0])
    dl.adjust([101 * 256], 1.0)
    assert dl.sleep == [pytest.approx(16 / 101 / 10)]


def test_report_carries_the_dirty_limit_figures_in_json_and_text():
    kw: Dict[str, Any] = dict(memory="1GiB", vcpus=2, link=Link("1GiB/s"), tracker="ring")
    r = simulate(workload=Uniform("4GiB/s", shares=[0.99, 0.01], seed=1),
                 policy=PreCopy(dirty_limit=True, vcpu_dirty_limit="20MB/s"), **kw)
    assert r.status == "completed" and r.verified
    full, per = r.dirty_limit_ring_full_time, r.dirty_limit_throttle_time_per_round
    assert full is not None and per is not None and full > 0 and per > 0
    # the heavy vCPU's rate before the limit bounds the ring-full time: 4096 entries x 4 KiB
    rates = [max(e["rates"]) for e in r.events if e["event"] == "dirty-limit-period"]
    assert r.dirty_limit_ring_full_time == pytest.approx(4096 * 4096 / max(rates))
    d = json.loads(r.to_json())
    assert d["dirty_limit_ring_full_time"] == pytest.approx(r.dirty_limit_ring_full_time)
    assert "ring-full time" in r.summary(200) and "throttle time per round" in r.summary(200)
    plain = simulate(workload=Uniform("20MiB/s", seed=1), **dict(kw, tracker="pml"))
    assert plain.dirty_limit_ring_full_time is None and plain.dirty_limit_throttle_time_per_round is None
    assert json.loads(plain.to_json())["dirty_limit_ring_full_time"] is None
    assert "ring-full time" not in plain.summary(200)


# -- kicks of vCPUs asleep under a throttle --------------------------------------------------
def test_kick_wait_is_the_expected_longest_remaining_sleep():
    """A vCPU asleep (probability p) has a remaining sleep uniform over its sleep's length L."""
    assert kick_wait([(0.0, 0.0)] * 4, True) == kick_wait([], False) == 0.0
    assert kick_wait([(0.5, 0.02)] * 8, True) == pytest.approx(0.5 * 0.02 / 2)  # together: one sleep
    assert kick_wait([(0.5, 0.02), (0.0, 0.0)], False) == pytest.approx(0.005, rel=1e-4)
    # two independent vCPUs: E[max] = L (1 - ((1)^3 - (1 - p)^3) / (3 p))
    p, length = 0.6, 2.0
    assert kick_wait([(p, length)] * 2, False) == pytest.approx(length * (1 - (1 - (1 - p) ** 3) / (3 * p)), rel=1e-4)
    # apart waits longer than together, and the longest sleep dominates
    assert kick_wait([(p, length)] * 4, False) > kick_wait([(p, length)] * 4, True)
    assert kick_wait([(0.9, 3.0), (0.5, 0.01)], False) == pytest.approx(0.9 * 1.5, rel=0.01)


def test_auto_converge_and_dirty_limit_sleeps():
    class _Engine:
        def set_throttle(self, x):
            pass

        def set_vcpu_throttle(self, j, x):
            pass

    ac = AutoConverge(PreCopy(auto_converge=True), _Engine())
    assert ac.sleeps(2) == [(0.0, 0.0), (0.0, 0.0)]
    ac.step(1e9, 1.0)  # 20 %: 2.5 ms asleep after each 10 ms of running
    assert ac.sleeps(2) == [(0.2, pytest.approx(0.25 * THROTTLE_TIMESLICE))] * 2
    dl = DirtyLimit(PreCopy(dirty_limit=True, vcpu_dirty_limit="4MiB/s"), _Engine(), 2, 4096, 4096, 3520)
    assert dl.sleeps() == [(0.0, 0.0), (0.0, 0.0)]  # not in service
    dl.engage(0.0, [0, 0])
    dl.adjust([25600, 256], 1.0)  # 100 MiB/s and 1 MiB/s over the 1 s period
    (s0, l0), (s1, l1) = dl.sleeps()  # 3.84 s after each ring fill of 3520 / 25600 s (the test above)
    assert s0 == pytest.approx(3.84 / (3.84 + 3520 / 25600)) and l0 == pytest.approx(3.84) and (s1, l1) == (0.0, 0.0)
    assert dl.throttle_time_per_round() == pytest.approx(l0)


def _kick_costs():
    return TrackingCosts(fault=0, pml_full=0, ring_full=0, split=0, kick="1ms", log_start_per_gib=0,
                         log_start_initially_set_per_gib=0)


def test_a_kick_costs_a_throttled_vcpu_only_the_share_of_its_time_it_runs():
    """KVM kicks only a vCPU in guest mode; auto-converge's sleeping vCPU is outside it (QEMU's
    cpu_throttle_thread sleeps on the vCPU thread): each sync's kicks cost (1 - throttle) of a kick each."""
    r = simulate(memory="64MiB", workload=Uniform("200MiB/s", seed=8), link=Link("100MiB/s"), tracker="pml",
                 policy=PreCopy(auto_converge=True), costs=_kick_costs())
    live = [x for x in r.rounds if not x.final]
    assert any(x.throttle > 0 for x in live) and all(x.kicks == 1 for x in live)
    for x in live:
        assert x.guest_lost == pytest.approx(1e-3 * (1 - x.throttle / 100), rel=1e-9)
    assert r.rounds[-1].kicks == 1 and r.rounds[-1].guest_lost == 0  # the pause's: the vCPU is stopped


def test_ring_syncs_wait_for_throttled_vcpus_to_wake():
    """Ring mode's kick is QEMU's kvm_cpu_synchronize_kick_all (run_on_cpu): a vCPU asleep in
    cpu_throttle_thread serves it when its sleep ends, and kvm_dirty_ring_flush reaps after that, so a
    sync under auto-converge waits (sync-wait events), the migration thread sending nothing meanwhile.
    PML's kicks (KVM's kvm_vcpu_kick) wait for nothing."""
    kw: Dict[str, Any] = dict(memory="64MiB", workload=Uniform("200MiB/s", seed=8), link=Link("100MiB/s"),
                              policy=PreCopy(auto_converge=True), vcpus=2)
    ring, pml = simulate(tracker="ring", **kw), simulate(tracker="pml", **kw)
    assert not [e for e in pml.events if e["event"] == "sync-wait"]
    waits = [e for e in ring.events if e["event"] == "sync-wait"]
    assert waits and ring.status == "completed" and ring.verified
    steps = [e for e in ring.events if e["event"] == "throttle"]
    for w in waits:  # the throttle in force then: p / (1 - p) x 10 ms asleep, together, half left on average
        p = max([e["percent"] for e in steps if e["time"] <= w["time"]]) / 100
        assert w["seconds"] == pytest.approx(p * p / (1 - p) * THROTTLE_TIMESLICE / 2)
        nxt = next(e for e in ring.events if e["event"] in ("round", "switchover") and e["time"] >= w["time"])
        assert nxt["time"] >= w["time"] + w["seconds"] - 1e-9  # the sync and its decision came after


def _writes_under(throttle: float, vcpu_throttles: List[float], charge: Any) -> List[int]:
    """Each vCPU's writes in 2 s of wall time: 2 vCPUs of a Uniform guest writing 1024 times per second each
    while it runs, under a global ``throttle`` and per-vCPU (dirty-limit) ``vcpu_throttles``, after
    ``charge`` (Engine.charge's argument; None: no charge) at t = 0. Tracking exits cost nothing here."""
    import dirtylog._lib as L
    from dirtylog import Tracker
    from dirtylog.engine import Engine

    pages = 1 << 16
    t = Tracker(pages, mode="wp", vcpus=2)
    t.start()
    w = Uniform(2048, seed=1).bind(pages, vcpus=2, page_size=4096)
    cfg = L.ffi.new("dl_engine_config *")
    L.lib.dl_engine_config_init(cfg)
    cfg.cost_fault = cfg.cost_pml_full = cfg.cost_ring_full = cfg.cost_split = cfg.cost_kick = 0.0
    e = Engine(cfg, t, w._handle, None)
    e.set_throttle(throttle)
    for j, s in enumerate(vcpu_throttles):
        e.set_vcpu_throttle(j, s)
    if charge is not None:
        e.charge(charge)
    e.idle(2.0)
    e.catch_up()
    return [v.writes for v in t.stats.vcpus]


def test_a_charge_takes_running_time_under_a_global_or_a_per_vcpu_throttle_alike():
    """What a vCPU owes (exits, kicks) is running time: a kick or an exit takes it while it runs. Under
    a global throttle the guest pays it out of its throttled time; under dirty-limit's per-vCPU
    throttles each vCPU must pay it out of its own running time too, not out of the time before its
    throttle (which took only (1 - s) of it: half here). 0.5 vCPU-seconds over 2 vCPUs: 0.25 s of
    running time each, 256 of the 1024 writes per running second."""
    assert _writes_under(0.5, [], None) == _writes_under(0.0, [0.5, 0.5], None) == [1024, 1024]  # 1 s running
    assert _writes_under(0.5, [], 0.5) == [1024 - 256, 1024 - 256]
    assert _writes_under(0.0, [0.5, 0.5], 0.5) == [1024 - 256, 1024 - 256]
    # vCPU 0 at 75 % runs 0.5 s (512 writes), vCPU 1 unthrottled 2 s (2048): each still loses 0.25 s
    assert _writes_under(0.0, [0.75, 0.0], None) == [512, 2048]
    assert _writes_under(0.0, [0.75, 0.0], 0.5) == [512 - 256, 2048 - 256]


def test_a_vcpu_charged_alone_pays_alone():
    """Engine.charge with one figure per vCPU (dl_engine_charge_vcpus): under per-vCPU throttles only the
    vCPU charged loses running time. vCPU 0 at 75 % runs 0.5 s of the 2 s (512 writes) and pays 0.25 s
    of it (256 writes); vCPU 1 loses nothing. With one guest clock the vCPUs pay the total together."""
    assert _writes_under(0.0, [0.75, 0.0], [0.25, 0.0]) == [512 - 256, 2048]
    assert _writes_under(0.5, [], [0.5, 0.0]) == [1024 - 256, 1024 - 256]


def test_each_vcpu_pays_its_own_ring_full_exits_under_dirty_limit():
    """KVM's KVM_EXIT_DIRTY_RING_FULL takes the vCPU whose ring filled, and under dirty-limit QEMU's
    kvm_cpu_exec has that vCPU reap its own ring (kvm_dirty_ring_reap(kvm_state, cpu)): the exit's cost is
    its running time alone. Hand-counted: 2 vCPUs of a Sequential guest (every write a new page) writing
    1024 pages per running second each, 1024-entry rings (full at 448 entries), 1/16 s per ring-full exit,
    vCPU 1 at a 50 % dirty-limit throttle. In the first second vCPU 0 writes 1024 pages (2 exits: 1/8 s
    owed), vCPU 1 runs 0.5 s and writes 512 (1 exit: 1/16 s). In the next second vCPU 0 runs 1 - 1/8 s
    (896 writes), vCPU 1 0.5 - 1/16 s (448). Spread evenly, each would have owed 3/32 s: 928 and 416."""
    import dirtylog._lib as L
    from dirtylog import Tracker
    from dirtylog.engine import Engine
    from dirtylog.workloads import Sequential

    pages = 1 << 16
    t = Tracker(pages, mode="ring", vcpus=2, ring_entries=1024)
    t.start()
    w = Sequential(2048).bind(pages, vcpus=2, page_size=4096)
    cfg = L.ffi.new("dl_engine_config *")
    L.lib.dl_engine_config_init(cfg)
    cfg.cost_fault = cfg.cost_pml_full = cfg.cost_split = cfg.cost_kick = 0.0
    cfg.cost_ring_full = 1 / 16
    e = Engine(cfg, t, w._handle, None)
    e.set_vcpu_throttle(0, 0.0)
    e.set_vcpu_throttle(1, 0.5)
    e.idle(1.0)
    e.catch_up()
    assert [v.writes for v in t.stats.vcpus] == [1024, 512]
    assert [v.ring_full_exits for v in t.stats.vcpus] == [2, 1]
    e.idle(2.0)
    e.catch_up()
    assert [v.writes for v in t.stats.vcpus] == [1024 + 896, 512 + 448]


def test_engine_charge_takes_numpy_numbers_and_says_what_a_list_must_hold():
    """Engine.charge takes one number (numpy's too: an int64 was read as a list, "'numpy.int64' object is not
    iterable") or one figure per vCPU; a list of another length says so, where it said "charge: invalid
    argument"."""
    import numpy as np

    from dirtylog.errors import ConfigError

    assert _writes_under(0.5, [], np.float32(0.5)) == _writes_under(0.5, [], np.int64(1) / 2) == [768, 768]
    assert _writes_under(0.5, [], np.int64(1)) == [1024 - 512, 1024 - 512]
    with pytest.raises(ConfigError, match=r"one figure \(spread over the vCPUs\) or one per vCPU \(2\), got 1"):
        _writes_under(0.5, [], [0.5])


def test_each_vcpu_is_charged_its_own_kick_under_dirty_limit():
    """QEMU's vCPU j loses a kick only while it runs, (1 - s_j) of the time under dirty-limit's throttle
    s_j: Migration._kicked charges each vCPU its own (1 - s_j) x kick (1 ms here, one kick per vCPU per
    sync or dirty-limit flush), where it charged their mean to all of them."""
    from dirtylog import Migration

    m = Migration(memory="128MiB", workload=Uniform("150MiB/s", shares=[0.7, 0.1, 0.1, 0.1], seed=9),
                  link=Link("100MiB/s"), tracker={"mode": "ring", "ring_entries": 1024}, vcpus=4,
                  policy=PreCopy(downtime_limit="300ms", dirty_limit=True, vcpu_dirty_limit="20MiB/s",
                                 timeout="60s"), costs=_kick_costs())
    charged = []
    charge = m.engine.charge

    def record(seconds: Any) -> None:
        dl = m._dirtylimit
        throttles = list(dl.throttles) if dl is not None and dl.active else [0.0] * 4
        charged.append((list(seconds), throttles))
        charge(seconds)

    m.engine.charge = record  # type: ignore[method-assign]
    r = m.run()
    assert r.status == "completed" and r.verified
    assert charged and all(got == pytest.approx([1e-3 * (1 - s) for s in thr], rel=1e-12) for got, thr in charged)
    uneven = [got for got, thr in charged if len(set(thr)) > 1]
    assert uneven and all(got[0] < min(got[1:]) for got in uneven)  # vCPU 0, the most throttled, loses least
    assert r.guest_lost == pytest.approx(sum(sum(got) for got, _ in charged), rel=1e-9)


# -- the decision at a sync ----------------------------------------------------------------
def _state(**kw):
    base: Dict[str, Any] = dict(pending_pages=1000, page_size=4096, threshold=1e6, round_index=3, sent_precopy=10 << 20,
                                memory=8 << 20, clock=5.0, throttle_can_step=False, faults_pending=False, stationary=True)
    base.update(kw)
    return SyncState(**base)


def test_sync_policy_decides_each_action():
    sp = SyncPolicy(PreCopy())
    d = sp.decide(_state(pending_pages=100))
    assert d.action == Action.SWITCHOVER and d.converged and "converged" in d.reason
    assert sp.decide(_state()).action == Action.CONTINUE
    assert SyncPolicy(PreCopy(min_dirty_pages=2000)).decide(_state()).action == Action.SWITCHOVER
    d = SyncPolicy(PreCopy(max_iterations=3)).decide(_state())
    assert d.action == Action.LIMIT and "iteration limit" in d.reason
    assert SyncPolicy(PreCopy(max_total_factor=1.0)).decide(_state()).action == Action.LIMIT
    assert SyncPolicy(PreCopy(timeout="5s")).decide(_state()).action == Action.LIMIT
    pc = PostCopy(after_rounds=4)
    assert SyncPolicy(pc.precopy, pc).decide(_state()).action == Action.POSTCOPY
    assert SyncPolicy(pc.precopy, pc).decide(_state(round_index=1)).action == Action.CONTINUE


@pytest.mark.parametrize("on_limit,action,converged", [("force", Action.SWITCHOVER, False),
                                                        ("abort", Action.ROLLBACK, False),
                                                        ("postcopy", Action.POSTCOPY, False)])
def test_sync_policy_at_a_limit_follows_on_limit(on_limit, action, converged):
    d = SyncPolicy(PreCopy(on_limit=on_limit)).at_limit("timeout of 5 s reached")
    assert d.action == action and d.converged is converged and d.reason.startswith("timeout of 5 s reached; ")


def test_sync_policy_early_verdict_needs_a_steady_set_and_no_throttle_left():
    sp = SyncPolicy(PreCopy(stall_syncs=3))
    for _ in range(5):
        assert sp.decide(_state(pending_pages=10_000)).action == Action.CONTINUE
    d = sp.decide(_state(pending_pages=10_000))
    assert d.action == Action.ROLLBACK and "does not converge" in d.reason
    sp.conditions_changed()  # e.g. a throttle step: the history starts again
    assert sp.decide(_state(pending_pages=10_000)).action == Action.CONTINUE
    still = SyncPolicy(PreCopy(stall_syncs=3))
    for _ in range(10):  # a throttle that can still step keeps the verdict back
        assert still.decide(_state(pending_pages=10_000, throttle_can_step=True)).action == Action.CONTINUE


# -- how often the loop can sync (issue 15 item 5) ------------------------------------------
def _spinning(**kw):
    """One page rewritten all the time, a threshold below one page: QEMU syncs after every page it sends.
    4096 pages in 0.2 s (49 us a page), so the first 100 ms window closes during the first pass."""
    from dirtylog.workloads import Sequential

    pages, first_pass = 4096, 0.2
    bw = pages * 4104 / first_pass
    return simulate(pages=pages, workload=Sequential("4GiB/s", length=1), link=Link(bw),
                    policy=PreCopy(downtime_limit="10us", stop_when_stalled=False), verify=False, **kw)


def _syncs_per_second(r):
    live = [x for x in r.rounds if not x.final and not x.partial]  # rounds a sync ended
    after = sum(x.duration for x in live[1:])  # after the first pass
    return (r.dirty_sync_count - 2) / after


def test_a_sync_takes_the_migration_thread_time():
    from dirtylog import TrackingCosts

    r = _spinning(give_up_after="0.6s", costs=TrackingCosts(sync="1ms", sync_per_gib=0))
    assert r.status == "failed" and "not converged" in r.reason
    # a sync of 1 ms, then the page's transfer (49 us): fewer than 1000 syncs per simulated second
    assert 800 < _syncs_per_second(r) <= 1000
    # the sync time shows in the rounds (nothing is sent while the thread syncs)
    live = [x for x in r.rounds if not x.final and not x.partial][5:]  # not the one the give-up cut short
    assert min(x.duration for x in live) >= 1e-3 - 1e-9
    free = _spinning(give_up_after="0.25s", costs=TrackingCosts.zero())
    assert _syncs_per_second(free) > 10 * _syncs_per_second(r)  # a free sync: one sync per page sent


def test_a_long_spinning_migration_keeps_a_bounded_report():
    from dirtylog.migration import KEEP_ROUNDS

    r = _spinning(give_up_after="0.4s")
    assert r.dirty_sync_count > 2 * KEEP_ROUNDS + 100
    assert r.rounds_aggregated > 0 and len(r.rounds) <= 2 * KEEP_ROUNDS + 2
    rounds = [e for e in r.events if e["event"] == "round"]
    assert len(rounds) == 2 * KEEP_ROUNDS  # the first and the last round events, as the rounds
    assert rounds[0]["index"] == 0 and rounds[-1]["index"] == r.dirty_sync_count - 1
    assert len(r.events) < 2 * KEEP_ROUNDS + 20


def test_no_early_verdict_before_a_bandwidth_was_measured():
    # before the first 100 ms window closes QEMU's threshold is 0: nothing to judge a steady set against
    sp = SyncPolicy(PreCopy(stall_syncs=3))
    for _ in range(20):
        assert sp.decide(_state(pending_pages=64, threshold=0.0)).action == Action.CONTINUE
    r = simulate(memory="16MiB", give_up_after="10s")  # the first pass ends long before the first window
    assert r.status == "completed" and r.converged and r.verified


def test_a_first_pass_within_the_first_window_completes_as_qemu_7_2():
    # QEMU 7.2 syncs only below the threshold, 0 until the first window closes: when the first pass
    # leaves nothing to send by then, migration_iteration_run completes (the pause's sync takes the rest)
    r = simulate(memory="16MiB", give_up_after="10s")  # 13 ms to send, a hot set rewritten meanwhile
    assert r.status == "completed" and r.converged and r.verified
    assert r.dirty_sync_count == 2 and r.total_time < 0.1 and r.expected_downtime == 0.0
    assert "before QEMU's first bandwidth measurement" in r.reason
    assert r.downtime_bytes > 0  # the hot pages dirtied during the pass go in the pause
