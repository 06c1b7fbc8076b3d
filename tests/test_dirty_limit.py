"""Dirty-limit: per-vCPU dirty rate caps read from the dirty rings."""
from __future__ import annotations

import pytest

from dirtylog import Link, PreCopy, simulate
from dirtylog.errors import ConfigError
from dirtylog.workloads import Uniform

KW = dict(memory="1GiB", vcpus=4, link=Link("100MiB/s"), tracker="ring")
HEAVY = dict(shares=[0.7, 0.1, 0.1, 0.1], seed=1)


def _periods(r):
    return [e for e in r.events if e["event"] == "dirty-limit-period"]


def test_dirty_limit_holds_each_vcpu_at_its_quota_and_converges():
    stuck = simulate(workload=Uniform("200MiB/s", **HEAVY), policy=PreCopy(max_iterations=12, on_limit="abort"), **KW)
    assert stuck.status == "failed"
    r = simulate(workload=Uniform("200MiB/s", **HEAVY), policy=PreCopy(dirty_limit=True, vcpu_dirty_limit="20MB/s"),
                 **KW)
    assert r.status == "completed" and r.converged and r.verified
    periods = _periods(r)
    assert len(periods) >= 5
    first = periods[0]
    assert first["rates"][0] > 5 * 20e6  # the heavy vCPU dirtied far above the limit before
    for p in periods[1:]:  # afterwards every vCPU is held at the quota
        for rate in p["rates"]:
            assert rate == pytest.approx(20e6, rel=0.1)
    # only the heavy vCPU needed a real throttle
    thr = periods[-1]["throttles"]
    assert thr[0] > 0.8 and max(thr[1:]) < 0.1
    assert r.cpu_throttle_percentage == 0  # no global (auto-converge) throttle


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
