"""Advice: what would make a migration converge, each answer checked by simulating around it."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Optional

import pytest

import dirtylog
from dirtylog import Link, PostCopy, PreCopy, simulate
from dirtylog.advice import QUESTIONS, Advice, Answer, _snap, advise
from dirtylog.errors import ConfigError
from dirtylog.workloads import Hotspot, WorkingSet

# A guest that does not converge at 1 Gbit/s and 300 ms: its 51 MiB hot set takes 90 % of 512 MiB/s.
GUEST: Dict[str, Any] = dict(memory="512MiB", workload=Hotspot("512MiB/s", seed=2), vcpus=2)
LINK = Link("1Gbit/s")
POLICY = PreCopy(downtime_limit="300ms")
GIVE_UP = "60s"  # simulated; every check below runs the full QEMU loop, without the early verdict


def _run(link=LINK, policy=POLICY, tracker="pml"):
    # The check runs QEMU's endless loop (no early verdict) up to GIVE_UP: the advice's
    # probes used the early verdict, so this also checks that the verdict was right.
    if "stop_when_stalled" in PreCopy.__dataclass_fields__:
        policy = _without_verdict(policy)
    return simulate(link=link, policy=policy, tracker=tracker, give_up_after=GIVE_UP, verify=False, **GUEST)


def _no(report, answer):
    """Just past the answer the migration does not converge, or, near the boundary, only by a lucky
    fluctuation far later than at the answer: QEMU's loop re-tests the threshold in every 100 ms
    window once what is left is near it, so a pending set hovering just above the threshold can
    still dip below it some time."""
    return not _ok(report) or report.total_time > 2 * answer.total_time


def _without_verdict(policy):
    if isinstance(policy, PostCopy):
        return dataclasses.replace(policy, precopy=dataclasses.replace(policy.precopy, stop_when_stalled=False))
    return dataclasses.replace(policy, stop_when_stalled=False)


def _ok(r):
    return r.status == "completed" and r.converged


def _asked(answer: Optional[Answer]) -> Answer:
    """The answer to a question that was asked (Advice holds None for those that were not)."""
    assert answer is not None
    return answer


@pytest.fixture(scope="module")
def advice() -> Advice:
    return advise(link=LINK, policy=POLICY, give_up_after=GIVE_UP, **GUEST)


def test_the_migration_as_given_does_not_converge(advice):
    assert not advice.converges
    assert not _ok(_run())
    assert [a.question for a in advice.answers()] == list(QUESTIONS)
    assert advice.probes == len(advice.probe_log) > 5


def test_least_bandwidth_converges_and_just_below_does_not(advice):
    a = advice.bandwidth
    assert a.found and a.below is not None and a.value > a.below >= LINK.bandwidth
    assert a.value <= a.below * 1.02 + 1  # within the tolerance
    above = _run(link=Link(a.value))
    assert _ok(above)
    assert above.total_time == pytest.approx(a.total_time) and above.downtime == pytest.approx(a.downtime)
    assert _no(_run(link=Link(a.below)), a)


def test_least_downtime_limit_converges_and_just_below_does_not(advice):
    a = advice.downtime_limit
    assert a.found and a.below is not None and a.value > a.below >= POLICY.downtime_limit
    above = _run(policy=PreCopy(downtime_limit=a.value))
    assert _ok(above) and above.downtime == pytest.approx(a.downtime)
    assert _no(_run(policy=PreCopy(downtime_limit=a.below)), a)


def test_auto_converge_answer(advice):
    a = advice.auto_converge
    r = _run(policy=PreCopy(auto_converge=True))
    assert a.found == _ok(r)
    assert a.found and a.value == r.cpu_throttle_percentage > 0
    assert a.details["slowdown"] > 0 and a.total_time == pytest.approx(r.total_time)


def test_dirty_limit_quota_converges_and_just_above_does_not(advice):
    a = advice.dirty_limit
    assert a.found and a.below is not None and a.below > a.value >= 1e6
    # printed in MiB/s as QEMU counts a vcpu-dirty-limit, to the precision it was searched at: the
    # quota a reader sets is the one that ran
    from dirtylog.units import format_dirty_rate, parse_rate

    assert a.value % 2**20 == 0 and a.below % 2**20 == 0  # whole MiB/s: set-vcpu-dirty-limit takes a uint64
    quota = format_dirty_rate(a.value, whole=True)  # exactly, without a third digit: "22 MiB/s"
    assert parse_rate(quota) == a.value and quota == f"{int(a.value) >> 20} MiB/s"
    assert f"quota {quota} per vCPU" in a.note and f"{format_dirty_rate(a.below, whole=True)} does not" in a.note
    assert _ok(_run(policy=PreCopy(dirty_limit=True, vcpu_dirty_limit=a.value), tracker="ring"))
    assert _no(_run(policy=PreCopy(dirty_limit=True, vcpu_dirty_limit=a.below), tracker="ring"), a)


def test_postcopy_cost(advice):
    a = advice.postcopy
    r = _run(policy=PostCopy(after_rounds=1, precopy=POLICY))
    assert a.found and r.status == "completed"
    assert a.value == pytest.approx(r.degraded_window) and a.value > 0
    assert a.details["postcopy_requests"] == r.postcopy_requests > 0


def test_advice_renders_and_serializes(advice):
    text = str(advice)
    for title in ("least bandwidth", "least downtime limit", "auto-converge", "dirty limit", "post-copy"):
        assert title in text
    d = json.loads(json.dumps(dirtylog.report.json_safe(advice.to_dict())))
    assert d["bandwidth"]["value"] == advice.bandwidth.value
    assert len(d["probe_log"]) == advice.probes


def test_simulate_attaches_advice_on_request():
    kw: Dict[str, Any] = dict(link=LINK, policy=POLICY, give_up_after=GIVE_UP, **GUEST)
    r = simulate(advise=True, **kw)
    assert r.status == "failed" and isinstance(r.advice, Advice)
    bw = _asked(r.advice.bandwidth)
    assert bw.found
    assert json.loads(r.to_json())["advice"]["bandwidth"]["value"] == bw.value
    assert simulate(**kw).advice is None
    # a converging migration gets advice only with advise="always"
    fast: Dict[str, Any] = dict(kw, link=Link("10Gbit/s"))
    assert simulate(advise=True, **fast).advice is None
    adv = simulate(advise="always", **fast).advice
    assert adv is not None and adv.converges


def test_advice_for_a_migration_that_converges_finds_how_far_it_can_go_down():
    link = Link("4Gbit/s")  # converges; its rounds shrink to about 30 ms, not below
    a = advise(link=link, policy=POLICY, give_up_after=GIVE_UP, questions=("bandwidth", "downtime_limit"), **GUEST)
    assert a.converges
    bw = _asked(a.bandwidth)
    assert bw.found and bw.value is not None and bw.value < link.bandwidth
    assert bw.below is not None and bw.below < bw.value
    assert _ok(_run(link=Link(bw.value))) and _no(_run(link=Link(bw.below)), bw)
    dl = _asked(a.downtime_limit)
    assert dl.found and dl.value is not None and dl.value <= POLICY.downtime_limit and dl.below is not None
    assert _ok(_run(link=link, policy=PreCopy(downtime_limit=dl.value)))
    assert _no(_run(link=link, policy=PreCopy(downtime_limit=dl.below)), dl)


def test_a_hopeless_guest_says_so():
    # every page rewritten far faster than any bandwidth searched can send it
    a = advise(memory="64MiB", workload=Hotspot("8GiB/s", hot_fraction=1.0, seed=1), link=Link("100Mbit/s"),
               policy=PreCopy(downtime_limit="1ms"), give_up_after="20s", max_bandwidth="400Mbit/s",
               questions=("bandwidth",), max_probes=4)
    bw = _asked(a.bandwidth)
    assert not bw.found and "does not converge even with a link bandwidth of" in bw.note
    assert bw.probes <= 4


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown advice question"):
        advise(questions=("speed",), **GUEST)
    # one question as a string is that question, not its letters ("unknown advice question 's'")
    with pytest.raises(ConfigError, match="unknown advice question 'speed'; allowed: bandwidth, downtime_limit"):
        advise(questions="speed", **GUEST)
    with pytest.raises(ConfigError, match="tolerance"):
        advise(tolerance=0, **GUEST)
    with pytest.raises(ConfigError, match="max_probes"):
        advise(max_probes=1, **GUEST)
    with pytest.raises(ConfigError):
        simulate(advise="sometimes", **GUEST)


def test_snapping_to_printed_values():
    assert _snap(3.1234, 1.0, up=True) == pytest.approx(3.13)
    assert _snap(3.1234, 1.0, up=False) == pytest.approx(3.12)
    assert _snap(3.0, 1.0, up=True) == pytest.approx(3.0)
    assert _snap(441e6, 8.0, up=True) * 8 == pytest.approx(3.53e9)  # bytes/s printed in bits/s
    # a dirty quota: whole MiB/s, as QEMU's vcpu-dirty-limit takes it (74.7 MiB/s cannot be set)
    assert _snap(74.74 * 2**20, 1 / 2**20, up=False, whole=True) == 74 * 2**20
    assert _snap(74.74 * 2**20, 1 / 2**20, up=True, whole=True) == 75 * 2**20
    assert _snap(0.3 * 2**20, 1 / 2**20, up=False, whole=True) == 2**20  # 1 MiB/s at least
    assert _snap(123.4 * 2**20, 1 / 2**20, up=False, whole=True) == 123 * 2**20


def test_command_line_advise_and_simulate_advise(capsys, tmp_path, monkeypatch):
    from dirtylog.__main__ import main

    monkeypatch.setenv("COLUMNS", "80")
    base = ["-m", "512MiB", "-w", "hotspot:512MiB/s,seed=2", "--vcpus", "2", "-b", "1Gbit/s",
            "--give-up-after", GIVE_UP, "--no-progress"]
    assert main(["advise", *base, "--questions", "bandwidth,auto-converge"]) == 0
    out = capsys.readouterr().out
    assert "What would make it converge" in out and "least bandwidth" in out and "auto-converge" in out
    assert "least downtime limit" not in out
    # one renderer: the plain table style, fitted to 80 columns
    assert max(len(line) for line in out.splitlines()) <= 80 and "─" not in out
    assert any(line.startswith("what would converge") for line in out.splitlines())
    # the reason of the run as given is in command-line words, as simulate prints it
    assert "As given: failed" in out and "--no-stop-when-stalled" in out and "PreCopy(" not in out
    out_json = tmp_path / "advice.json"
    assert main(["advise", *base, "--questions", "bandwidth", "--json", str(out_json)]) == 0
    d = json.loads(out_json.read_text())
    assert d["bandwidth"]["found"] and d["downtime_limit"] is None and not d["converges"]
    # simulate: a hint without --advise, the section with it
    assert main(["simulate", *base]) == 0
    assert "--advise" in capsys.readouterr().out
    assert main(["simulate", *base, "--advise", "--json", "-"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["advice"]["bandwidth"]["value"] == d["bandwidth"]["value"]
    assert main(["advise", *base, "--questions", "speed"]) == 2
    assert "unknown question" in capsys.readouterr().err


def test_a_max_bandwidth_cap_is_the_knob_searched():
    link = Link("10Gbit/s")
    a = advise(link=link, policy=PreCopy(max_bandwidth="1Gbit/s"), give_up_after=GIVE_UP,
               questions=("bandwidth",), **GUEST)
    bw = _asked(a.bandwidth)
    assert bw.found and bw.details["knob"] == "max-bandwidth" and bw.value is not None and bw.below is not None
    assert _ok(_run(link=link, policy=PreCopy(max_bandwidth=bw.value)))
    assert _no(_run(link=link, policy=PreCopy(max_bandwidth=bw.below)), bw)


def test_probe_give_up_scales_with_the_time_to_send_memory():
    from dirtylog.advice import probe_give_up

    assert probe_give_up("1GiB", Link("10Gbit/s")) == 60.0  # at least a minute
    once = 64 * 2**30 * (4096 + 8) / 4096 / 1.25e8
    assert probe_give_up("64GiB", Link("1Gbit/s"), patience=5) == pytest.approx(5 * once)
    assert probe_give_up("64GiB", Link("10Gbit/s"), PreCopy(max_bandwidth="1Gbit/s")) == pytest.approx(5 * once)


def test_sweep_adds_advice_columns_for_configurations_that_do_not_converge():
    from dirtylog.sweeps import grid, sweep

    configs = grid(memory="512MiB", workload="hotspot:512MiB/s,seed=2", vcpus=2, bandwidth=["1Gbit/s", "10Gbit/s"],
                   give_up_after=GIVE_UP)
    res = sweep(configs, jobs=1, advise=True)
    slow, fast = res
    assert slow.verdict == "does not converge" and fast.verdict == "converges"
    alone = advise(link=LINK, policy=POLICY, give_up_after=GIVE_UP, **GUEST)
    assert slow.advice_bandwidth == _asked(alone.bandwidth).value
    assert slow.advice_downtime_limit == _asked(alone.downtime_limit).value
    assert slow.advice_auto_converge_throttle == _asked(alone.auto_converge).value
    assert fast.advice_bandwidth is None and fast.advice_postcopy_degraded is None
    headers, rows = res.table_rows()
    assert "least bw" in headers and rows[1][headers.index("least bw")] == "-"
    assert rows[0][headers.index("dirty quota")].endswith(" MiB/s")  # as QEMU counts a vcpu-dirty-limit
    assert "advice_bandwidth" in res.to_csv().splitlines()[0]
    # the table fits a narrow terminal: the advice columns go first (the caption says so), then come back
    cli = ["workload", "bandwidth", "downtime_limit"]  # the command line's columns
    narrow = res.table(cli, width=90)  # the columns that always stay take 81 here (a long workload label)
    assert max(len(line) for line in narrow.splitlines()) <= 90 and "(narrow terminal:" in narrow
    assert "least bw" in res.table(cli, width=140).splitlines()[0]
    assert all(h in res.table(width=200).splitlines()[0] for h in ("least bw", "least limit", "dirty quota"))
