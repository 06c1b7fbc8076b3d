"""Verified migrations in every tracker mode x huge-page setting x vCPU count x policy (issue 10).

Small guests (4 MiB), so that the whole matrix runs in a few seconds. Every migration
must end with the destination verified page by page; each policy must also have done
what it is for (a throttle step, the dirty limit engaged, pages sent after the switch).
"""
from __future__ import annotations

from typing import Any, Dict

import pytest

from dirtylog import Link, PostCopy, PreCopy, simulate
from dirtylog.config import TRACKERS
from dirtylog.errors import ConfigError
from dirtylog.workloads import Uniform

HUGE = (None, "lazy", "eager")
VCPUS = (1, 2, 8)
POLICIES = {
    # forced stop-and-copy at the timeout: a run that cannot converge still ends verified
    "precopy": PreCopy(downtime_limit="20ms", timeout="3s", on_limit="force"),
    "postcopy": PostCopy(after_rounds=1, precopy=PreCopy(downtime_limit="20ms")),
    "auto-converge": PreCopy(downtime_limit="20ms", auto_converge=True, timeout="20s", on_limit="force"),
    "dirty-limit": PreCopy(downtime_limit="20ms", dirty_limit=True, vcpu_dirty_limit="2MB/s", timeout="20s",
                           on_limit="force"),
}
# 4 MiB (1024 pages, two 2 MiB blocks) on 20 MiB/s: the guest dirties all of memory faster than it goes
KW: Dict[str, Any] = dict(memory="4MiB", workload=Uniform("50MiB/s", seed=7), link=Link("20MiB/s"), seed=1)


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("vcpus", VCPUS)
@pytest.mark.parametrize("huge", HUGE, ids=lambda h: f"huge-{h}")
@pytest.mark.parametrize("tracker", TRACKERS)
def test_verified_migration(tracker, huge, vcpus, policy):
    kw: Dict[str, Any] = dict(KW, tracker=tracker, huge_pages=huge, vcpus=vcpus, policy=POLICIES[policy])
    if policy == "dirty-limit" and tracker != "ring":
        with pytest.raises(ConfigError, match="ring"):  # QEMU's dirty-limit reads the dirty rings
            simulate(**kw)
        return
    r = simulate(**kw)
    assert r.status == "completed", r.reason
    assert r.verified is True and r.mismatches == 0
    assert r.guest_writes > 0 and r.tracker == tracker and r.vcpus == vcpus
    kinds = {e["event"] for e in r.events}
    if policy == "postcopy":
        assert r.postcopy_bytes > 0 and "postcopy" in kinds
    elif policy == "auto-converge":
        assert r.cpu_throttle_percentage >= 20 and "throttle" in kinds
    elif policy == "dirty-limit":
        assert "dirty-limit" in kinds and r.dirty_limit_ring_full_time is not None
    if huge == "eager" or (huge == "lazy" and r.guest_writes):
        assert r.tracker_stats["splits"] > 0 or tracker in ("clear",)
