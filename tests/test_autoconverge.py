"""Auto-converge (QEMU's cpu throttling) in the migration engine."""
from __future__ import annotations

from typing import Any, Dict

import pytest

from dirtylog import Link, PreCopy, simulate
from dirtylog.errors import ConfigError
from dirtylog.workloads import Uniform

KW: Dict[str, Any] = dict(memory="1GiB", link=Link("100MiB/s"), tracker="pml")


def _throttles(report):
    return [e["percent"] for e in report.events if e["event"] == "throttle"]


def test_does_not_converge_without_auto_converge():
    r = simulate(workload=Uniform("200MiB/s", seed=1), policy=PreCopy(max_iterations=20, on_limit="abort"), **KW)
    assert r.status == "failed" and not r.converged
    assert _throttles(r) == []


def test_auto_converge_throttles_20_30_40_and_converges():
    r = simulate(workload=Uniform("200MiB/s", seed=1), policy=PreCopy(auto_converge=True), **KW)
    assert r.status == "completed" and r.converged and r.verified
    steps = _throttles(r)
    assert steps[:5] == [20, 30, 40, 50, 60]
    assert all(b - a == 10 for a, b in zip(steps, steps[1:]))
    assert r.cpu_throttle_percentage == steps[-1]
    assert r.guest_throttled > 0
    # each round reports the throttle it ran under, and a throttled guest writes less
    rounds = [x for x in r.rounds if not x.final]
    assert rounds[0].throttle == 0 and max(x.throttle for x in rounds) == steps[-1]
    for x in rounds:
        full_rate = 200 * 2**20 / 4096
        assert x.writes == pytest.approx(full_rate * x.duration * (1 - x.throttle / 100), rel=0.02, abs=50)


def test_tailslow_takes_smaller_last_steps():
    plain = simulate(workload=Uniform("200MiB/s", seed=1), policy=PreCopy(auto_converge=True), **KW)
    slow = simulate(workload=Uniform("200MiB/s", seed=1),
                    policy=PreCopy(auto_converge=True, cpu_throttle_tailslow=True), **KW)
    a, b = _throttles(plain), _throttles(slow)
    assert slow.converged and slow.verified
    assert b[0] == 20
    assert all(0 < y - x <= 10 for x, y in zip(b, b[1:]))
    assert any(y - x < 10 for x, y in zip(b, b[1:]))  # a step smaller than the increment
    assert b[-1] <= a[-1]


def test_max_cpu_throttle_caps_the_throttle():
    r = simulate(workload=Uniform("400MiB/s", seed=1),
                 policy=PreCopy(auto_converge=True, max_cpu_throttle=45, timeout="120s", on_limit="abort"), **KW)
    assert max(_throttles(r)) == 45


@pytest.mark.parametrize("kw", [dict(cpu_throttle_initial=0), dict(cpu_throttle_increment=100),
                                dict(max_cpu_throttle=100), dict(throttle_trigger_threshold=0)])
def test_bad_throttle_parameters(kw):
    with pytest.raises(ConfigError):
        PreCopy(auto_converge=True, **kw)
