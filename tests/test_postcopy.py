"""Post-copy migration: switch-over, remote faults, background push, failures."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest

from dirtylog import Link, Migration, PostCopy, PreCopy, simulate
from dirtylog.errors import ConfigError, StateError
from dirtylog.faults import LinkFailure
from dirtylog.workloads import Hotspot, Sequential, Uniform

PAGE_BYTES = 4096 + 8
KW: Dict[str, Any] = dict(memory="256MiB", link=Link("100MiB/s", latency="1ms"), tracker="pml")


def _stale_pages(r):
    post = [x for x in r.rounds if x.postcopy]
    assert len(post) == 1
    return post[0].pages_sent


def test_postcopy_completes_verified_and_bounded():
    r = simulate(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(after_rounds=1), **KW)
    assert r.status == "completed" and r.verified is True
    assert "post-copy" in r.reason
    assert r.precopy_rounds == 1
    assert r.postcopy_requests > 0 and r.postcopy_stall_time > 0
    stale = _stale_pages(r)
    assert r.postcopy_bytes == stale * PAGE_BYTES
    # the link is never idle after resume: the post-copy phase lasts exactly its bytes' transfer time
    assert r.degraded_window == pytest.approx(stale * PAGE_BYTES / 100 / 2**20, rel=1e-6)
    # total time: round 0 + the switch-over + the remaining pages, nothing more
    round0 = r.rounds[0]
    bound = r.setup_time + round0.duration + r.downtime + r.postcopy_bytes / (100 * 2**20)
    assert r.total_time == pytest.approx(bound, rel=1e-6)
    assert r.total_time <= r.setup_time + (r.memory * PAGE_BYTES / 4096 + r.postcopy_bytes) / (100 * 2**20) + r.downtime + 1e-6
    # the downtime is the device state and QEMU's discard list (the dirty pages' ranges), not the pages
    assert r.downtime_bytes > r.device_bytes
    assert r.downtime_bytes - r.device_bytes <= (16 + 14) * stale
    assert r.downtime < 0.05


def test_start_postcopy_switches_at_the_next_iteration_as_qemus_migrate_start_postcopy():
    m = Migration(workload=Uniform("300MiB/s", seed=5), link=Link("100MiB/s"), tracker="pml",
                  memory="256MiB", policy=PreCopy(stop_when_stalled=False))
    m.run_until("3s")
    assert m.phase == "precopy"
    asked = m.clock
    m.start_postcopy()
    m.run_until(asked + 0.1 + 1e-9)  # the migration thread acts on it at its next iteration: within a window
    assert m.phase in ("switchover", "postcopy")
    r = m.run()
    assert r.status == "completed" and r.verified and r.postcopy_bytes > 0
    assert "start_postcopy()" in r.reason
    with pytest.raises(StateError):
        m.start_postcopy()  # over
    m2 = Migration(workload=Uniform("300MiB/s", seed=5), link=Link("100MiB/s"), memory="256MiB",
                   policy=PostCopy(after_rounds=1))
    while m2.phase != "postcopy":
        m2.advance("50ms")
    with pytest.raises(StateError, match="too late"):
        m2.start_postcopy()


def test_the_discard_list_is_qemus_ranges():
    from dirtylog.migration import discard_bytes

    assert discard_bytes(np.array([], dtype=np.uint64)) == 0
    assert discard_bytes(np.arange(100, 200, dtype=np.uint64)) == 14 + 16  # one run: one range
    scattered = np.arange(0, 2400, 2, dtype=np.uint64)  # 1,200 runs of one page: 100 commands of 12
    assert discard_bytes(scattered) == 100 * 14 + 1200 * 16
    # a half-dirty scattered guest: the list outweighs a bitmap of all memory many times over
    rng = np.random.default_rng(1)
    pages = 1 << 20
    stale = np.flatnonzero(rng.random(pages) < 0.5).astype(np.uint64)
    assert discard_bytes(stale) > 30 * pages // 8


def test_remote_faults_grow_with_the_access_rate():
    # requests on a channel of their own (postcopy-preempt): a fault waits a round trip and its page
    low = simulate(workload=Uniform("20MiB/s", seed=2), policy=PostCopy(channel_backlog=0), **KW)
    high = simulate(workload=Uniform("200MiB/s", seed=2), policy=PostCopy(channel_backlog=0), **KW)
    assert low.verified and high.verified
    assert high.postcopy_requests > 3 * low.postcopy_requests > 0
    assert high.postcopy_stall_time > low.postcopy_stall_time


def test_requests_wait_behind_the_pushs_backlog_as_in_qemu_7_2():
    # QEMU 7.2 without postcopy-preempt: a requested page goes on the one stream behind what the
    # push has queued, so each fault stalls the vCPU for backlog / bandwidth and faults are few
    kw: Dict[str, Any] = dict(KW, link=Link("100MiB/s"))
    w = Uniform("50MiB/s", seed=3).with_read_share(0.0)
    own = simulate(workload=w, policy=PostCopy(channel_backlog=0), **kw)
    shared = simulate(workload=w, policy=PostCopy(), **kw)  # the default: 12 MiB queued ahead
    assert own.verified and shared.verified
    stall = 12 * 2**20 / (100 * 2**20)
    assert shared.postcopy_requests < own.postcopy_requests / 20
    # one vCPU: its faults come one after the other, each a backlog's drain long
    assert shared.postcopy_stall_time == pytest.approx(shared.postcopy_requests * stall, rel=0.15)
    assert shared.postcopy_requests <= shared.degraded_window / stall + 2
    assert shared.postcopy_bytes == _stale_pages(shared) * PAGE_BYTES  # every stale page once
    with pytest.raises(ConfigError, match="channel_backlog"):
        PostCopy(channel_backlog="-1MiB")


def test_the_push_goes_on_after_the_requested_page():
    # QEMU's get_queued_page moves the background scan to the requested page: a sweep slower than
    # the push then finds the push ahead of it (77 requests here; a push that went on from where
    # it stood, as before, made 996: every page from there up to the sweep faulted)
    kw: Dict[str, Any] = dict(memory="64MiB", link=Link("100MiB/s"), tracker="pml")
    sweep = Sequential("60MiB/s", start=8192, length=8192)
    r = simulate(workload=sweep, policy=PostCopy(read_share=0.0, channel_backlog=0,
                                                 precopy=PreCopy(downtime_limit="20ms")), **kw)
    assert r.verified and _stale_pages(r) == 8192
    assert 1 <= r.postcopy_requests <= 200


def test_reads_fault_too():
    # no latency: a fault stalls the vCPU only for the page's transfer, so accesses are not stall-bound
    kw: Dict[str, Any] = dict(KW, link=Link("100MiB/s"))
    few = simulate(workload=Uniform("50MiB/s", seed=3), policy=PostCopy(read_share=0.0, channel_backlog=0), **kw)
    many = simulate(workload=Uniform("50MiB/s", seed=3), policy=PostCopy(read_share=0.5, channel_backlog=0), **kw)
    assert few.verified and many.verified
    assert many.postcopy_requests > 1.4 * few.postcopy_requests


def test_prepaging_sends_the_following_pages_with_each_request():
    # A sweep faster than the link: after round 0 nearly every page is stale.
    kw: Dict[str, Any] = dict(KW, link=Link("50MiB/s", latency="1ms"))
    plain = simulate(workload=Sequential("200MiB/s"), policy=PostCopy(read_share=0.0, channel_backlog=0), **kw)
    pre = simulate(workload=Sequential("200MiB/s"), policy=PostCopy(read_share=0.0, prepage=16, channel_backlog=0),
                   **kw)
    assert plain.verified and pre.verified  # every stale page still arrives exactly once
    assert plain.postcopy_prepaged == 0 and plain.postcopy_requests > 1000
    # a sequential sweep: nearly every request brings its 16 successors along
    assert 15 * pre.postcopy_requests <= pre.postcopy_prepaged <= 16 * pre.postcopy_requests
    assert pre.postcopy_bytes == plain.postcopy_bytes  # the same pages, sent once each


def test_converging_migration_never_switches_to_postcopy():
    r = simulate(workload=Uniform("1MiB/s", seed=4), policy=PostCopy(after_rounds=3), **KW)
    assert r.status == "completed" and r.converged and r.postcopy_bytes == 0 and r.verified


def test_on_limit_postcopy():
    r = simulate(workload=Uniform("300MiB/s", seed=5),
                 policy=PreCopy(max_iterations=2, on_limit="postcopy"), **KW)
    assert r.status == "completed" and r.verified and r.precopy_rounds == 3
    assert "on_limit='postcopy'" in r.reason and r.postcopy_bytes > 0


def test_link_failure_during_postcopy_loses_the_vm():
    ok = simulate(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(), **KW)
    t_fail = ok.total_time - ok.degraded_window / 2
    r = simulate(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(), faults=[LinkFailure(t_fail)], **KW)
    assert r.status == "lost" and r.verified is None
    assert "lost" in r.reason and "neither side" in r.reason
    assert r.guest_running.startswith("nowhere")


def test_link_failure_before_the_switch_rolls_back():
    r = simulate(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(), faults=[LinkFailure("1s")], **KW)
    assert r.status == "failed" and r.verified is True and r.guest_running == "source"


def test_step_api_through_postcopy_and_no_cancel():
    m = Migration(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(), **KW)
    seen = set()
    t = 0.0
    while not m.done:
        t += 0.1
        m.run_until(t)
        assert m.clock <= t + 1e-9
        seen.add(m.phase)
        if m.phase == "postcopy":
            with pytest.raises(StateError):
                m.cancel()
    assert {"precopy", "postcopy", "completed"} <= seen
    r = m.report()
    ref = simulate(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(), **KW)
    assert r.verified and r.total_time == pytest.approx(ref.total_time, rel=0.01)


def test_cancel_is_refused_from_post_copys_switch_over_on_as_qemu_refuses_it():
    """QEMU 10.0+'s qmp_migrate_cancel refuses a cancel once migration_in_postcopy(): post-copy's
    switch-over holds the big QEMU lock the cancel waits for, and leaves the state postcopy-active
    (postcopy-device in 10.2+). The error says so in QEMU's words; the migration goes on unharmed."""
    m = Migration(workload=Hotspot("100MiB/s", seed=1), policy=PostCopy(), **KW)
    while m.phase != "switchover":
        m.advance("1ms")
    with pytest.raises(StateError, match="Postcopy migration in progress, cannot cancel"):
        m.cancel()
    r = m.run()
    assert r.status == "completed" and r.verified


def test_the_workload_read_share_is_used_unless_the_policy_overrides_it():
    kw: Dict[str, Any] = dict(KW, link=Link("100MiB/s"))
    w = Uniform("50MiB/s", seed=3)
    base = simulate(workload=w.with_read_share(0.0), policy=PostCopy(channel_backlog=0), **kw)
    own = simulate(workload=w.with_read_share(0.5), policy=PostCopy(channel_backlog=0), **kw)
    forced = simulate(workload=w.with_read_share(0.5), policy=PostCopy(read_share=0.0, channel_backlog=0),
                      **kw)
    assert own.postcopy_requests > 1.4 * base.postcopy_requests
    assert forced.postcopy_requests == base.postcopy_requests
    assert w.read_share is None  # with_read_share copies
    with pytest.raises(ConfigError):
        w.with_read_share(1.0)


@pytest.mark.parametrize("kw", [dict(after_rounds=0), dict(read_share=1.0), dict(read_share=-0.1), dict(prepage=-1)])
def test_bad_postcopy_parameters(kw):
    with pytest.raises(ConfigError):
        PostCopy(**kw)
