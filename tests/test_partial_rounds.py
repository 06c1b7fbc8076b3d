"""A migration that stops in a round keeps that round: the rounds add up to the report's totals.

The round in progress when a migration fails, is cancelled, gives up, is lost in post-copy, or when
the report is taken (Ctrl-C, the step API), is the report's last round, with what it sent until then
and ``ended`` saying why (``RoundReport.partial``). Seen in the report, JSON, the table, the plot and
the step API. The randomized suite checks the sums over every mode, policy and fault
(tests/test_random_migrations.py: test_random_rounds_add_up, test_random_partial_reports_add_up).
"""
from __future__ import annotations

import json
import math
from typing import List

import pytest

from dirtylog import Link, Migration, PostCopy, PreCopy, simulate
from dirtylog.errors import StateError
from dirtylog.faults import BandwidthChange, LinkFailure
from dirtylog.render import plain, rounds_lines
from dirtylog.report import CUT_SHORT, PARTIAL_ENDS, ROUND_ENDS, RoundReport
from dirtylog.workloads import Hotspot, Uniform


def _adds_up(r) -> None:
    assert sum(x.pages_sent for x in r.rounds) == r.pages_sent
    assert sum(x.zero_pages for x in r.rounds) == r.duplicate
    assert sum(x.bytes for x in r.rounds) == r.transferred
    if r.rounds:
        assert math.isclose(sum(x.duration for x in r.rounds), r.total_time - r.setup_time, abs_tol=1e-9)
    assert all(x.ended in ROUND_ENDS for x in r.rounds)
    assert not any(x.partial for x in r.rounds[:-1])
    # the guest's figures: the setup (what it did while logging started) and the rounds hold every one
    assert r.setup is not None and r.setup.index == -1 and r.setup.ended in ROUND_ENDS
    assert sum(x.writes for x in r.rounds) + r.setup.writes == r.guest_writes
    assert math.isclose(sum(x.guest_lost for x in r.rounds) + r.setup.guest_lost, r.guest_lost, abs_tol=1e-12)
    for k in ("faults", "pml_full_exits", "ring_full_exits", "splits", "kicks"):
        assert sum(getattr(x, k) for x in r.rounds) + getattr(r.setup, k) == r.tracker_stats[k], k


def _link_failure_in_round_3():
    # the golden report faults-bandwidth-link: the link fails at 4.00 s, 0.15 s into round 3
    return simulate(memory="64MiB", workload=Uniform("60MiB/s", seed=14), link=Link("1Gbit/s"), tracker="ring",
                    policy=PreCopy(downtime_limit="20ms"),
                    faults=[BandwidthChange("200ms", "300Mbit/s"), LinkFailure("4s")])


def test_a_link_failure_keeps_the_round_it_cut_short():
    r = _link_failure_in_round_3()
    assert r.status == "failed"
    _adds_up(r)
    cut = r.rounds[-1]
    assert [x.ended for x in r.rounds] == ["sync", "sync", "sync", "failed"] and cut.partial
    assert cut.index == 3 and cut.pages_sent == 1369 and cut.dirty_pages == 0 and cut.dirty_rate == 0
    assert math.isclose(cut.start + cut.duration, 4.0) and 0.14 < cut.duration < 0.16
    assert cut.remaining_pages * r.page_size == r.memory_remaining
    assert r.precopy_rounds == 4 and r.dirty_sync_count == 4  # QEMU's count: setup + 3 live syncs, none at the end
    d = json.loads(r.to_json())
    assert d["rounds"][-1]["ended"] == "failed" and d["rounds"][-1]["partial"] is True
    assert d["rounds"][0]["ended"] == "sync" and d["rounds"][0]["partial"] is False
    # the table marks it and says what it was, at 80 columns
    text = plain(rounds_lines(r, 80))
    row = next(line for line in text.splitlines() if line.lstrip().startswith("3*"))
    assert row.split()[5:8] == ["5.36", "MiB", "-"]  # sent; no dirty pages: no sync ended it
    assert "* cut short: the migration failed and rolled back 150 ms into round 3, after 1,369 pages" in \
        " ".join(text.split())
    assert all(len(line) <= 80 for line in text.splitlines())


def test_a_failure_in_round_0_is_not_no_round():
    r = simulate(memory="1GiB", workload=Uniform("60MiB/s", seed=14), link=Link("1Gbit/s"), faults=[LinkFailure("2s")])
    _adds_up(r)
    assert [(x.index, x.ended) for x in r.rounds] == [(0, "failed")] and r.pages_sent > 50_000
    table = plain(rounds_lines(r, 80))
    assert "no round" not in table and "0*" in table
    text = str(r)
    assert "1 pre-copy round (round 0 sends all memory; it was cut short)" in " ".join(text.split())
    # the geometric model is fed no dirty rate from a round no sync ended
    assert r.models["geometric"]["dirty_rate_measured"] is False


def test_a_failure_in_the_setup_has_no_round():
    r = simulate(memory="4GiB", workload=Uniform("60MiB/s", seed=1), link=Link("1Gbit/s"),
                 faults=[LinkFailure("1ms")])
    assert r.status == "failed" and r.rounds == [] and r.pages_sent == 0 and r.total_time < r.setup_time
    table = plain(rounds_lines(r, 80))
    assert "* no round began: the migration failed in its setup" in table
    assert [line.split()[0] for line in table.splitlines()[3:4]] == ["setup*"]  # the setup's row, marked
    # the setup cut short holds what the guest did in it
    _adds_up(r)
    assert r.setup is not None
    assert r.setup.ended == "failed" and r.setup.partial and r.setup.writes == r.guest_writes > 0
    assert math.isclose(r.setup.duration, r.total_time)


def test_the_setup_holds_the_guests_writes_before_round_0():
    """The setup (dirty logging starting, up to its sync: QEMU's setup status and setup-time, the first
    dirty-sync-count) is no round; its writes, time lost and exits are report.setup's, so that with the
    rounds they add up to the report's totals. In JSON too."""
    r = simulate(memory="1GiB", workload=Uniform("600MiB/s", seed=2), link=Link("10Gbit/s"), tracker="wp")
    _adds_up(r)
    s = r.setup
    assert s is not None
    assert r.status == "completed" and s.ended == "sync" and s.synced and not s.partial
    assert s.start == 0.0 and math.isclose(s.duration, r.setup_time) and r.rounds[0].start == s.duration
    assert s.writes > 500 and s.faults == s.dirty_pages > 0 and s.pages_sent == s.bytes == 0  # WP: a fault a page
    assert s.remaining_pages == r.pages  # after the setup's sync every page is in the bitmap
    assert s not in r.rounds and r.precopy_rounds == len([x for x in r.rounds if not x.final])
    d = json.loads(r.to_json())
    assert d["setup"]["index"] == -1 and d["setup"]["writes"] == s.writes and d["setup"]["ended"] == "sync"
    m = Migration(memory="1GiB", workload=Uniform("600MiB/s", seed=2), link=Link("10Gbit/s"), tracker="wp")
    assert m.report().setup is None  # not started
    m.run_until(r.setup_time / 2)
    mid = m.report()
    assert mid.setup is not None and mid.setup.ended == "running" and mid.rounds == [] and mid.setup.writes == mid.guest_writes


def test_cancel_from_the_step_api():
    seen: List[RoundReport] = []
    m = Migration(memory="1GiB", workload=Hotspot("50MiB/s", seed=3), link=Link("1Gbit/s"),
                  policy=PreCopy(downtime_limit="5ms"), on_round=seen.append)
    m.run_until(3.0)
    assert m.current_round["ended"] == "running"
    running = m.report().rounds[-1]
    cr = m.current_round
    assert running.ended == "running" and running.partial
    assert (cr["pages_sent"], cr["bytes_sent"], cr["zero_pages"], cr["elapsed"]) == (
        running.pages_sent, running.bytes, running.zero_pages, running.duration)
    assert running not in seen  # a running round is not one that ended
    m.cancel()
    r = m.report()
    _adds_up(r)
    assert r.status == "cancelled" and r.rounds[-1].ended == "cancelled"
    assert seen == r.rounds  # on_round got the round the cancel cut short, at once
    assert m.current_round["ended"] == "cancelled" and m.current_round["pages_sent"] == r.rounds[-1].pages_sent
    m.advance("1s")  # nothing moves after the end
    assert m.report().rounds == r.rounds


def test_ctrl_c_reports_the_round_running_and_going_on_completes_it(interrupted_in_round_0):
    m, r = interrupted_in_round_0
    _adds_up(r)
    assert r.interrupted and [x.ended for x in r.rounds] == ["running"]
    assert "* still running: the report was taken" in " ".join(plain(rounds_lines(r, 80)).split())
    done = m.run()  # goes on: the round ends as it would have, once
    _adds_up(done)
    assert done.status == "completed" and done.rounds[0].ended == "sync"
    assert done.rounds[0].pages_sent >= r.rounds[0].pages_sent and not any(x.partial for x in done.rounds)


def test_a_link_failure_in_the_stop_and_copy():
    m = Migration(memory="256MiB", workload=Uniform("20MiB/s", seed=5), link=Link("1Gbit/s"),
                  policy=PreCopy(downtime_limit="300ms", max_iterations=1, on_limit="force"))
    while m.phase != "downtime":
        m.advance("10ms")
    m.advance("1ms")
    m.fail_link()
    r = m.report()
    _adds_up(r)
    last = r.rounds[-1]
    assert r.status == "failed" and last.final and not last.postcopy and last.ended == "failed"
    assert last.pages_sent > 0 and r.precopy_rounds == len(r.rounds) - 1
    assert "into the stop-and-copy" in " ".join(plain(rounds_lines(r, 80)).split())


def test_a_loss_in_postcopy():
    m = Migration(memory="256MiB", workload=Hotspot("200MiB/s", seed=5), link=Link("1Gbit/s"),
                  policy=PostCopy(after_rounds=1, precopy=PreCopy(downtime_limit="10ms")))
    while m.phase != "postcopy":
        m.advance("10ms")
    m.advance("20ms")
    m.fail_link()
    r = m.report()
    _adds_up(r)
    last = r.rounds[-1]
    assert r.status == "lost" and last.postcopy and last.ended == "lost" and last.partial
    assert r.rounds[-2].ended == "resume" and last.remaining_pages * r.page_size == r.memory_remaining > 0


def test_the_ends_a_round_can_have():
    assert set(PARTIAL_ENDS) <= set(ROUND_ENDS)
    assert set(PARTIAL_ENDS) == set(CUT_SHORT)
    r = simulate(memory="64MiB", workload=Uniform("60MiB/s", seed=1), link=Link("1Gbit/s"),
                 policy=PreCopy(downtime_limit="20ms", max_iterations=3, on_limit="force"))
    _adds_up(r)
    assert r.status == "completed" and r.rounds[-1].ended == "completed" and not any(x.partial for x in r.rounds)


def test_the_plot_shows_the_round_cut_short(tmp_path):
    pytest.importorskip("matplotlib")
    from dirtylog.plot import plot_report
    from dirtylog.units import format_size

    r = _link_failure_in_round_3()
    fig = plot_report(r, tmp_path / "cut.png")
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert (f"round 3 cut short (the migration failed and rolled back): {format_size(r.rounds[-1].bytes)} sent "
            "in 150 ms, no sync") in legend
    assert "3 pre-copy rounds + 1 cut short" in fig._suptitle.get_text()
    assert (tmp_path / "cut.png").stat().st_size > 10_000


def test_a_round_cut_short_is_worded_once(tmp_path):
    """ROUND_ENDS (the meaning), the table's note and the plot's legend say what cut a round short in
    the same words (report.CUT_SHORT): a cancel, a failure, the report taken mid-run."""
    pytest.importorskip("matplotlib")
    from dirtylog.plot import plot_report

    m = Migration(memory="1GiB", workload=Hotspot("50MiB/s", seed=3), link=Link("1Gbit/s"))
    m.advance("2s")
    running = m.report()
    m.cancel()
    cases = [(running, "running", "still running", "the report was taken"),
             (m.report(), "cancelled", "cut short", "the migration was cancelled"),
             (_link_failure_in_round_3(), "failed", "cut short", "the migration failed and rolled back")]
    for r, ended, state, how in cases:
        assert r.rounds[-1].ended == ended and CUT_SHORT[ended] == (state, how)
        assert ROUND_ENDS[ended].startswith(f"{state}: {how} while the round ran")
        assert f"* {state}: {how} " in " ".join(plain(rounds_lines(r, 80)).split())
        fig = plot_report(r, tmp_path / f"{ended}.png")
        legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
        assert f"round {r.rounds[-1].index} {state} ({how}): " in legend
        assert fig._suptitle.get_text().endswith(f" + 1 {state}")


def test_a_round_ended_by_a_pause_feeds_no_sync_based_figure(tmp_path):
    """A forced switch-over between syncs (here the timeout, on_limit="force") ends the round in progress
    with ``ended="pause"``: it sent pages and took time, but no sync measured it (the pause's own sync
    belongs to the stop-and-copy). The figures computed from syncs read only the rounds a sync ended
    (``RoundReport.synced``): the measured dirty rate the geometric model is fed, the table's dirty pages,
    dirty rate and expected downtime, the plot's points after each sync."""
    r = simulate(memory="64MiB", workload=Uniform("300MiB/s", seed=2), link=Link("1Gbit/s"),
                 policy=PreCopy(downtime_limit="20ms", timeout="2s", on_limit="force"))
    _adds_up(r)
    assert [x.ended for x in r.rounds] == ["sync", "sync", "sync", "pause", "completed"]
    pause = r.rounds[3]
    assert not pause.synced and not pause.partial and pause.duration > 0.4 and pause.dirty_pages == 0
    synced = [x for x in r.rounds if x.synced]
    assert synced == r.rounds[:3]
    page_bytes = r.page_size + Link("1Gbit/s").header_bytes
    rate = sum(x.dirty_pages for x in synced) / sum(x.duration for x in synced) * page_bytes
    g = r.models["geometric"]
    assert g["dirty_rate_measured"] and g["dirty_rate"] == pytest.approx(rate, rel=1e-12)
    # (counting the pause's 0.48 s too had made it a quarter lower)
    row = next(line for line in plain(rounds_lines(r, 100)).splitlines() if line.split()[0] == "3")
    assert row.split()[7:10] == ["-", "-", "-"]  # dirty pages, dirty/s, exp. downtime: nothing measured
    pytest.importorskip("matplotlib")
    from dirtylog.plot import plot_report

    fig = plot_report(r, tmp_path / "pause.png")
    left = next(line for line in fig.axes[0].get_lines() if line.get_label().startswith("left to send after each sync"))
    assert len(left.get_xdata()) == 3  # one point per sync, none at the pause
    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "pre-copy rounds (3)" in legend and "round 3 ended by the pause, before its sync: 57.4 MiB sent" in legend


def test_cancel_in_the_stop_and_copy_resumes_the_source():
    """QEMU's migrate-cancel acts in its device state (the stop-and-copy): migrate_fd_cancel sets
    cancelling and shuts the stream, the completion's send fails, migration_iteration_finish restarts the
    source's vCPUs and the cleanup sets cancelled. dirtylog's cancel() does the same: status cancelled,
    the guest runs on the source, nothing lost, the stop-and-copy kept as the last round, cut short."""
    seen: List[RoundReport] = []
    m = Migration(memory="256MiB", workload=Uniform("20MiB/s", seed=5), link=Link("1Gbit/s"),
                  policy=PreCopy(downtime_limit="300ms", max_iterations=1, on_limit="force"), on_round=seen.append)
    while m.phase != "downtime":
        m.advance("10ms")
    m.advance("1ms")
    assert m.phase == "downtime" and m.status == "active"
    m.cancel()
    r = m.report()
    _adds_up(r)
    last = r.rounds[-1]
    assert r.status == "cancelled" and r.reason == "cancelled by the user" and m.done
    assert r.guest_running == "source" and r.verified and not m.tracker.logging  # rolled back, nothing lost
    assert math.isnan(r.downtime)  # no switch-over happened: QEMU reports no downtime after a cancel
    assert last.final and last.ended == "cancelled" and last.partial and last.pages_sent > 0
    paused_at = next(e["time"] for e in r.events if e["event"] == "switchover")
    assert math.isclose(last.start, paused_at) and math.isclose(last.start + last.duration, r.total_time)
    assert seen == r.rounds  # on_round got the stop-and-copy the cancel cut short
    assert m.memory_remaining == last.remaining_pages * r.page_size > 0  # what the pause had left to send
    assert [e["event"] for e in r.events][-2:] == ["switchover", "cancelled"]
    # QEMU's ram_transferred_add: what went while the guest was stopped is downtime-bytes, cancel or not
    assert r.downtime_bytes == last.bytes > 0 and r.precopy_bytes == r.transferred - last.bytes
    assert r.postcopy_bytes == 0
    text = " ".join(plain(rounds_lines(r, 80)).split())
    assert "* cut short: the migration was cancelled" in text and "into the stop-and-copy, after 290 pages" in text
    with pytest.raises(StateError, match="already ended"):
        m.cancel()


def test_cancel_is_refused_once_the_stop_and_copy_has_sent_everything():
    """Once the pages and the device state are sent QEMU has completed (the destination resumes the
    guest): too late to cancel; and in post-copy the destination already runs the guest."""
    m = Migration(memory="16MiB", workload=Uniform("2MiB/s", seed=5), link=Link("1Gbit/s", latency="50ms"),
                  policy=PreCopy(downtime_limit="300ms"))
    while not (m.phase == "downtime" and m._final_stage == "resume"):
        m.advance("1ms")
    with pytest.raises(StateError, match="too late to cancel"):
        m.cancel()
    assert m.run().status == "completed"


def test_the_table_shows_the_setup_as_its_first_row():
    """report.setup is the table's first row, shown as the rounds are: its time, its writes' dirty pages
    (the setup's sync measured them), its exits; the rounds follow."""
    r = simulate(memory="256MiB", workload=Hotspot("100MiB/s", seed=2), link=Link("1Gbit/s"), tracker="pml", vcpus=2)
    text = plain(rounds_lines(r, 80))
    rows = [line.split() for line in text.splitlines()[3:]]
    s = r.setup
    assert s is not None
    assert rows[0][0] == "setup" and s.ended == "sync" and s.dirty_pages > 0
    assert f"{s.dirty_pages:,}" in rows[0] and rows[0][-1] == f"{s.exits:,}"
    assert [row[0] for row in rows[1:len(r.rounds) + 1]] == [str(x.index) for x in r.rounds[:-1]] + ["final"]
    assert all(len(line) <= 80 for line in text.splitlines())
