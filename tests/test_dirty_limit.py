"""Dirty-limit: per-vCPU dirty rate caps read from the dirty rings."""
from __future__ import annotations

from typing import Any, Dict

import pytest

from dirtylog import Link, PreCopy, simulate
from dirtylog.errors import ConfigError
from dirtylog.workloads import Uniform

# One vCPU dirtying far above the link, the others at the quota: its syncs wait for the heavy vCPU's
# long sleeps (ring mode's kvm_cpu_synchronize_kick_all), and the others dirty meanwhile, about half a
# ring each per sync (dirtylog.throttle.kick_wait): the link sends that within a window or two.
KW: Dict[str, Any] = dict(memory="4GiB", vcpus=4, link=Link("1GiB/s"), tracker="ring")
HEAVY: Dict[str, Any] = dict(shares=[0.961, 0.013, 0.013, 0.013], seed=1)
RATE = "1.5GiB/s"


def _periods(r):
    return [e for e in r.events if e["event"] == "dirty-limit-period"]


def test_dirty_limit_holds_each_vcpu_within_qemus_band_of_its_quota_and_converges():
    stuck = simulate(workload=Uniform(RATE, **HEAVY), policy=PreCopy(max_iterations=12, on_limit="abort"), **KW)
    assert stuck.status == "failed"
    r = simulate(workload=Uniform(RATE, **HEAVY), policy=PreCopy(dirty_limit=True, vcpu_dirty_limit="20MB/s"),
                 **KW)
    assert r.status == "completed" and r.converged and r.verified
    periods = _periods(r)
    assert len(periods) >= 3
    first = periods[0]
    assert first["rates"][0] > 5 * 20e6  # the heavy vCPU dirtied far above the limit before
    for p in periods[1:]:  # afterwards every vCPU is within QEMU's 25 MiB/s of the quota (dirtylimit_done)
        for rate in p["rates"]:
            assert abs(rate - 20e6) <= 25 * 2**20
    # only the heavy vCPU is throttled: the others dirty 20.9 MB/s, within the band from the start
    thr = periods[-1]["throttles"]
    assert thr[0] > 0.8 and thr[1:] == [0.0, 0.0, 0.0]
    assert r.cpu_throttle_percentage == 0  # no global (auto-converge) throttle


def test_each_dirty_limit_period_syncs_the_dirty_log_kicking_every_vcpu():
    """QEMU's dirty-limit thread ends every period with a global dirty-log sync of its own
    (vcpu_dirty_rate_stat_collect -> global_dirty_log_sync -> kvm_dirty_ring_flush): every vCPU kicked,
    every ring reaped into the dirty bitmap, which the migration's next sync takes; dirty-sync-count
    does not count it. So the tracker kicks every vCPU once per period on top of once per sync, nothing
    written is lost, and a sync's harvest holds what the periods since the last sync reaped."""
    r = simulate(workload=Uniform(RATE, **HEAVY), policy=PreCopy(dirty_limit=True, vcpu_dirty_limit="20MB/s"), **KW)
    periods = len(_periods(r))
    assert periods >= 3 and r.status == "completed" and r.verified
    assert r.tracker_stats["kicks"] == r.vcpus * (r.dirty_sync_count + periods)
    assert r.setup is not None and sum(x.kicks for x in [r.setup] + r.rounds) == r.tracker_stats["kicks"]
    # the rings were reaped at each period too: more collections than syncs and ring-full exits explain
    assert r.tracker_stats["ring_reaped"] > 0


def test_dirty_limit_needs_the_ring_tracker():
    with pytest.raises(ConfigError, match="ring"):
        simulate(workload=Uniform("20MiB/s"), policy=PreCopy(dirty_limit=True), **dict(KW, tracker="pml"))


def test_dirty_limit_and_auto_converge_exclude_each_other():
    with pytest.raises(ConfigError, match="exclude"):
        PreCopy(dirty_limit=True, auto_converge=True)


@pytest.mark.parametrize("kw", [dict(vcpu_dirty_limit=0), dict(vcpu_dirty_limit="fast"),
                                dict(dirty_limit_period=0)])
def test_bad_dirty_limit_parameters(kw):
    with pytest.raises(ConfigError):
        PreCopy(dirty_limit=True, **kw)


def test_each_period_is_read_after_its_flush_waited_for_the_sleeping_vcpus():
    """QEMU's vcpu_calculate_dirtyrate sleeps the period, then syncs (global_dirty_log_sync: in ring mode
    kvm_cpu_synchronize_kick_all, which waits for every vCPU asleep at a ring-full exit), then reads the
    counts and divides them by the period alone; the next period starts after that. So the periods are
    read ``wait`` after their nominal end, and that wait is the one a migration sync under the same
    sleeps waits (the sleeps change only at a period's end)."""
    r = simulate(memory="128MiB", workload=Uniform("150MiB/s", shares=[0.7, 0.1, 0.1, 0.1], seed=9),
                 link=Link("100MiB/s"), tracker={"mode": "ring", "ring_entries": 1024}, vcpus=4,
                 policy=PreCopy(downtime_limit="300ms", dirty_limit=True, vcpu_dirty_limit="20MiB/s"))
    assert r.status == "completed" and r.verified
    periods = _periods(r)
    assert len(periods) >= 2 and periods[0]["wait"] == 0.0  # nobody slept under the limit before the first
    start = next(e["time"] for e in r.events if e["event"] == "dirty-limit")
    for p in periods:
        assert p["time"] == pytest.approx(start + 1.0 + p["wait"], abs=1e-9)
        between = [e["seconds"] for e in r.events if e["event"] == "sync-wait" and start < e["time"] < p["time"]]
        assert all(w == pytest.approx(p["wait"], rel=1e-12) for w in between)
        start = p["time"]
    assert any(p["wait"] > 0 for p in periods)


def test_ring_full_exits_reap_their_own_ring_only_while_the_limit_serves():
    """QEMU's kvm_cpu_exec reaps every vCPU's ring at a ring-full exit, but only the exiting vCPU's while
    dirtylimit_in_service(): the migration's tracker reaps every ring until the limit engages, its own from
    then on, and every ring again once the limit is lifted (the pause). Seen at each progress call."""
    from dirtylog import Migration

    m = Migration(memory="128MiB", workload=Uniform("150MiB/s", shares=[0.7, 0.1, 0.1, 0.1], seed=9),
                  link=Link("100MiB/s"), tracker={"mode": "ring", "ring_entries": 1024}, vcpus=4,
                  policy=PreCopy(downtime_limit="300ms", dirty_limit=True, vcpu_dirty_limit="20MiB/s"))
    seen = set()
    m.run(progress=lambda mig: seen.add((mig.dirty_limit_active, mig.tracker.reap_own)))
    assert seen == {(False, False), (True, True)}
    assert m.tracker.reap_own is False  # lifted at the pause
