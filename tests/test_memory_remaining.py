"""``memory_remaining`` is QEMU's query-migrate ``ram.remaining``: the dirty pages in the migration bitmap x
page size (``ram_bytes_remaining()``). The bitmap starts all ones and each page sent clears its bit, so it
falls as pages are sent, round 0 included; it grows only at a sync; it is 0 once completed. The recorded QEMU
runs (validation/results) poll it every 100 ms: tests/test_validation.py compares dirtylog's with them."""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from dirtylog import BandwidthChange, Link, LinkFailure, Migration, PostCopy, PreCopy, simulate
from dirtylog.render import plain, summary_lines
MIB = 1 << 20
from dirtylog.workloads import Hotspot, Uniform

PAGE = 4096


def _slow(**kw):
    """64 MiB at 32 MiB/s: round 0 lasts about 2 s."""
    args: Dict[str, Any] = dict(memory="64MiB", workload=Uniform("8MiB/s", seed=1), link=Link("1Gbit/s"),
                                policy=PreCopy(max_bandwidth="32MiB/s"), tracker="pml")
    args.update(kw)
    return Migration(**args)


def test_setup_holds_all_of_memory():
    m = _slow()
    assert m.phase == "setup"
    assert m.memory_remaining == 64 * MIB == m.report().memory_remaining


def test_round_0_falls_as_pages_are_sent():
    m = _slow(zero_pages=0.25)  # zero pages are sent (as headers) and clear their bits too
    last = m.memory_remaining
    seen = 0
    for t in (0.1, 0.3, 0.6, 0.9, 1.2):
        m.run_until(t)
        assert m.phase == "precopy" and m.dirty_sync_count == 1, "still in round 0"
        st = m.report()
        assert st.memory_remaining == m.memory_remaining == (m.pages - st.pages_sent) * PAGE
        assert 0 < m.memory_remaining < last
        cr = m.current_round
        assert m.memory_remaining == (cr["pages_total"] - cr["pages_sent"]) * PAGE
        last = m.memory_remaining
        seen += 1
    assert seen == 5 and last < 32 * MIB  # most of memory has gone


def test_later_rounds_start_from_the_sync_and_fall():
    m = _slow(workload=Uniform("24MiB/s", seed=2))
    checked = 0
    prev_sync, prev = m.dirty_sync_count, None
    t = 0.0
    while t < 60:
        t += 0.05
        m.run_until(t)
        if m.phase != "precopy":
            break
        cr = m.current_round
        assert m.memory_remaining == (cr["pages_total"] - cr["pages_sent"]) * PAGE
        if m.dirty_sync_count == prev_sync and prev is not None:
            assert m.memory_remaining <= prev  # only a sync adds pages
            checked += 1
        prev_sync, prev = m.dirty_sync_count, m.memory_remaining
    assert checked > 10 and m.dirty_sync_count >= 3
    r = m.run()
    assert r.status == "completed" and r.memory_remaining == 0 and r.to_dict()["memory_remaining"] == 0


def test_stop_and_copy_falls_to_zero():
    m = _slow(workload=Uniform("24MiB/s", seed=2), link=Link("100MiB/s"))
    seen = []
    while not m.done:
        m.advance("2ms")
        if m.phase == "downtime":
            seen.append(m.memory_remaining)
    assert seen and seen == sorted(seen, reverse=True) and seen[-1] == 0 and seen[0] > 0
    assert m.report().memory_remaining == 0


def test_cancel_in_round_0_keeps_what_was_left():
    m = _slow()
    m.run_until(1.0)
    sent = m.report().pages_sent
    m.cancel()
    r = m.report()
    assert r.status == "cancelled"
    assert r.memory_remaining == (m.pages - sent) * PAGE == m.memory_remaining
    assert 0 < r.memory_remaining < r.memory
    m.advance("1s")  # nothing moves after the end
    assert m.report().memory_remaining == r.memory_remaining


def test_a_link_failure_mid_round_reports_the_round_less_what_it_sent():
    r = simulate(memory="64MiB", workload=Uniform("60MiB/s", seed=14), link=Link("1Gbit/s"), tracker="ring",
                 policy=PreCopy(downtime_limit="20ms"),
                 faults=[BandwidthChange("200ms", "300Mbit/s"), LinkFailure("4s")])  # never converges
    assert r.status == "failed"
    begun = [e for e in r.events if e["event"] == "round"][-1]  # the round the failure cut short
    cut = r.rounds[-1]
    assert cut.partial and cut.ended == "failed" and cut.index == begun["index"]
    assert cut.pages_sent > 0 and sum(x.pages_sent for x in r.rounds) == r.pages_sent
    assert r.memory_remaining == (begun["pages"] - cut.pages_sent) * PAGE == cut.remaining_pages * PAGE


def test_interrupted_report_and_summary_show_what_is_left(interrupted_in_round_0):
    m, r = interrupted_in_round_0
    assert r.interrupted and m.dirty_sync_count == 1  # in round 0
    assert r.memory_remaining == (r.pages - r.pages_sent) * PAGE
    assert 0.5 * r.memory < r.memory_remaining < 0.8 * r.memory  # about 3 s x 128 MiB/s of 1 GiB has gone
    text = plain(summary_lines(r))
    left = next(line for line in text.splitlines() if "Remaining" in line)
    assert "of 1.00 GiB" in left and "1.00 GiB of" not in left, left
    assert json.loads(r.to_json())["memory_remaining"] == r.memory_remaining


def test_postcopy_counts_the_pages_the_destination_lacks():
    m = Migration(memory="64MiB", workload=Hotspot("100MiB/s", seed=7), link=Link("1Gbit/s"), tracker="pml",
                  policy=PostCopy(after_rounds=2, precopy=PreCopy(downtime_limit="20ms")))
    phases: Dict[str, List[int]] = {}
    while not m.done:
        m.advance("1ms")
        phases.setdefault(m.phase, []).append(m.memory_remaining)
        if m.phase == "postcopy":  # the step API's round: the pages post-copy has to send (it said 0)
            cr = m.current_round
            assert cr["pages_total"] * PAGE == phases["switchover"][-1]
            # sent by the source (a requested page counts once it has gone, the destination lacks it no more
            # from the request on)
            assert (cr["pages_total"] - cr["pages_sent"]) * PAGE >= m.memory_remaining
    assert m.status == "completed" and m.memory_remaining == 0
    pc = phases["postcopy"]
    assert pc[0] > 0 and pc == sorted(pc, reverse=True) and len(set(pc)) > 10
    # the pause holds the last dirty set: what post-copy then has to send
    assert phases["switchover"][-1] >= pc[0] > 0
