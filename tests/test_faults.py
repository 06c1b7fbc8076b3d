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


def test_set_bandwidth_at_a_later_time_is_the_scheduled_change():
    """A host that shares a link passes its own time: set_bandwidth(bw, at=t) with t ahead of the
    migration's clock gives the report of faults=[BandwidthChange(t, bw)], and next_event_time() stops
    there; at the clock itself it applies now."""
    want = simulate(workload=Uniform("10MiB/s", seed=4), faults=[BandwidthChange("1.25s", "50MiB/s")], **KW)
    m = Migration(workload=Uniform("10MiB/s", seed=4), **KW)
    m.run_until("0.5s")
    m.set_bandwidth("50MiB/s", at="1.25s")
    assert m.next_event_time() <= 1.25
    m.run()
    got = m.report()
    assert (got.total_time, got.downtime, got.transferred, got.dirty_sync_count) == (
        want.total_time, want.downtime, want.transferred, want.dirty_sync_count)
    assert [e for e in got.events if e["event"] == "bandwidth"] == [
        e for e in want.events if e["event"] == "bandwidth"] != []
    now = Migration(workload=Uniform("10MiB/s", seed=4), **KW)
    now.run_until("1.25s")
    now.set_bandwidth("50MiB/s", at=now.clock)
    assert now.events[-1] == {"time": 1.25, "event": "bandwidth", "bandwidth": 50 * 2**20}


def test_set_bandwidth_refuses_a_past_time_and_an_ended_migration():
    m = Migration(workload=Uniform("10MiB/s", seed=4), **KW)
    m.run_until("1s")
    with pytest.raises(StateError, match=r"already run to 1(\.00)? s.*at or after its clock"):
        m.set_bandwidth("50MiB/s", at="0.5s")
    m.run()
    events = list(m.events)
    # it had been taken, and recorded as an event after "completed", changing nothing
    with pytest.raises(StateError, match="already ended"):
        m.set_bandwidth("50MiB/s")
    assert m.events == events
