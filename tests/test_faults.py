"""Link failures and bandwidth changes during a migration."""
from __future__ import annotations

from typing import Any, Dict

import pytest

from dirtylog import Link, Migration, PreCopy, simulate
from dirtylog.errors import StateError
from dirtylog.faults import BandwidthChange, LinkFailure
from dirtylog.workloads import Hotspot, Uniform

KW: Dict[str, Any] = dict(memory="256MiB", link=Link("100MiB/s"), tracker="pml")


@pytest.mark.parametrize("at", ["0.5s", "2.45s", "2.62s"])  # round 0, round 1, round 2 (QEMU's loop)
def test_link_failure_in_precopy_rolls_back_and_loses_nothing(at):
    r = simulate(workload=Hotspot("50MiB/s", seed=1), faults=[LinkFailure(at)], **KW)
    assert r.status == "failed" and "link failed" in r.reason
    assert r.guest_running == "source"
    assert r.verified is True  # the source holds every write
    assert r.total_time == pytest.approx(float(at.rstrip("s")), abs=1e-9)


def test_link_failure_in_the_stop_and_copy_rolls_back():
    m = Migration(workload=Uniform("20MiB/s", seed=2), policy=PreCopy(downtime_limit="2s"), devices=[], **KW)
    while m.phase != "downtime":
        m.advance("10ms")
    m.fail_link()
    r = m.report()
    assert r.status == "failed" and r.verified and not m.tracker.logging
    with pytest.raises(StateError):
        m.fail_link()


def test_a_faster_link_lets_a_stuck_migration_converge():
    stuck = simulate(workload=Uniform("150MiB/s", seed=3), policy=PreCopy(timeout="30s", on_limit="abort"), **KW)
    assert stuck.status == "failed"
    saved = simulate(workload=Uniform("150MiB/s", seed=3), policy=PreCopy(timeout="30s", on_limit="abort"),
                     faults=[BandwidthChange("5s", "1GiB/s")], **KW)
    assert saved.status == "completed" and saved.converged and saved.verified
    assert any(e["event"] == "bandwidth" for e in saved.events)


def test_a_slower_link_takes_longer():
    base = simulate(workload=Uniform("10MiB/s", seed=4), **KW)
    slow = simulate(workload=Uniform("10MiB/s", seed=4), faults=[BandwidthChange("1s", "50MiB/s")], **KW)
    assert slow.status == base.status == "completed"
    assert slow.total_time > base.total_time * 1.5
    assert slow.verified


def test_bad_fault_arguments():
    with pytest.raises(TypeError):
        simulate(workload=None, faults=["boom"], **KW)  # type: ignore[list-item]  # the wrong type is the point
    with pytest.raises(ValueError):
        BandwidthChange("1s", 0)
    with pytest.raises(ValueError):
        LinkFailure("-1s")
