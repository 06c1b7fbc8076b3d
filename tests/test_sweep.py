"""dirtylog.sweeps: configurations, executors, results, planning table and files."""
from __future__ import annotations

import csv
import io
import json
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict

import pytest

import dirtylog
from dirtylog import simulate
from dirtylog.errors import ConfigError, SweepError
from dirtylog.sweeps import SweepConfig, SweepResult, SweepResults, default_give_up, grid, run_config, sweep
from dirtylog.workloads import Hotspot, Mix, Uniform

SMALL: Dict[str, Any] = dict(memory="16MiB", vcpus=1, give_up_after="10s")


def small_grid():
    return grid(workload=["hotspot:10MiB/s", "hotspot:200MiB/s"], bandwidth=["200Mbit/s", "1Gbit/s"],
                downtime_limit=["30ms", "300ms"], **SMALL)


def key(r: SweepResult):
    downtime = None if r.downtime != r.downtime else r.downtime  # NaN: no switch-over
    return (r.workload, r.bandwidth, r.downtime_limit, r.status, r.total_time, downtime, r.transferred, r.rounds)


def test_grid_is_the_cartesian_product_last_axis_fastest():
    cfgs = small_grid()
    assert len(cfgs) == 8
    assert [(c.workload, c.bandwidth, c.downtime_limit) for c in cfgs[:3]] == [
        ("hotspot:10MiB/s", "200Mbit/s", "30ms"), ("hotspot:10MiB/s", "200Mbit/s", "300ms"),
        ("hotspot:10MiB/s", "1Gbit/s", "30ms")]
    assert all(c.memory == "16MiB" for c in cfgs)
    with pytest.raises(ConfigError, match="unknown parameter .bandwith.; did you mean .bandwidth."):
        grid(bandwith=["1Gbit/s"])
    with pytest.raises(ConfigError, match="empty"):
        grid(bandwidth=[])


def test_a_config_runs_like_simulate():
    cfg = SweepConfig(memory="16MiB", workload="uniform:20MiB/s", bandwidth="1Gbit/s", downtime_limit="50ms",
                      tracker="wp", vcpus=2, seed=5)
    r = run_config(cfg, keep_report=True)
    ref = simulate(memory="16MiB", workload=Uniform("20MiB/s", seed=5), link=dirtylog.Link("1Gbit/s"),
                   policy=dirtylog.PreCopy(downtime_limit="50ms"), tracker="wp", vcpus=2, seed=5)
    assert r.total_time == ref.total_time and r.transferred == ref.transferred and r.downtime == ref.downtime
    assert r.rounds == ref.precopy_rounds and r.verdict == "converges" and r.verified is True
    assert r.faults == ref.tracker_stats["faults"] and r.exits >= r.faults
    assert r.report is not None and r.report.total_time == ref.total_time


def test_inline_processes_and_threads_agree():
    cfgs = small_grid()
    inline = sweep(cfgs, jobs=1)
    procs = sweep(cfgs, jobs=2)
    with ThreadPoolExecutor(2) as ex:
        threads = sweep(cfgs, executor=ex)
    assert isinstance(inline, SweepResults) and len(inline) == 8
    assert [key(r) for r in inline] == [key(r) for r in procs] == [key(r) for r in threads]
    assert [r.index for r in procs] == list(range(8))
    verdicts = {r.verdict for r in inline}
    assert "converges" in verdicts and "does not converge" in verdicts


def test_dicts_and_workload_objects_are_accepted_even_once_bound():
    w = Hotspot("20MiB/s", seed=2)
    simulate(memory="16MiB", workload=w)  # binds C state to the object
    mix = Mix([Uniform("5MiB/s", seed=1), w])
    configs = [dict(workload=w, label="hot", **SMALL), dict(workload=mix, **SMALL), SweepConfig(workload=None, **SMALL)]
    res = sweep(configs, jobs=2)
    assert [r.workload for r in res] == ["hot", repr(mix), "none"]
    assert all(r.status == "completed" for r in res)
    assert res[2].guest_writes == 0


def test_bad_configurations_fail_before_anything_runs():
    calls = []
    with pytest.raises(ConfigError, match="bandwidth"):
        sweep([SweepConfig(**SMALL), SweepConfig(bandwidth="10G", **SMALL)], progress=lambda *a: calls.append(a))
    assert calls == []
    with pytest.raises(ConfigError, match="unknown kind"):
        sweep([SweepConfig(workload="hotpot:1GiB/s", **SMALL)])
    with pytest.raises(ConfigError, match="unknown policy"):
        sweep([SweepConfig(policy="hybrid", **SMALL)])
    with pytest.raises(TypeError):
        sweep([42])
    with pytest.raises(ConfigError, match="jobs"):
        sweep([SweepConfig(**SMALL)], jobs=0)


def test_progress_callback_sees_every_result():
    seen = []
    res = sweep(small_grid()[:3], jobs=2,
                progress=lambda done, total, r: seen.append((done, total, r.index if r is not None else None)))
    assert seen[0] == (0, 3, None)  # once the work is under way: a bar can start its clock
    seen = [x for x in seen[1:] if x[2] is not None]  # (and the runs in flight, when long: below)
    assert [d for d, _, _ in seen] == [1, 2, 3]
    assert {t for _, t, _ in seen} == {3}
    assert sorted(i for _, _, i in seen if i is not None) == [0, 1, 2]
    assert len(res) == 3


def test_verdicts_forced_and_not_converging():
    base: Dict[str, Any] = dict(
        memory="16MiB", workload="uniform:200MiB/s", bandwidth="100MiB/s", downtime_limit="10ms")
    forced, aborted, gave_up = sweep([
        SweepConfig(max_iterations=2, **base),
        SweepConfig(max_iterations=2, on_limit="abort", **base),
        SweepConfig(give_up_after="3s", **base),
    ], jobs=1)
    assert forced.verdict == "forced" and forced.status == "completed" and forced.downtime > 0.01
    assert aborted.verdict == "does not converge" and aborted.status == "failed"
    # the early verdict (stop_when_stalled) comes before the give-up
    assert gave_up.verdict == "does not converge" and gave_up.total_time <= 3.0


def test_postcopy_verdict():
    base: Dict[str, Any] = dict(
        memory="16MiB", workload="uniform:200MiB/s", bandwidth="100MiB/s", downtime_limit="10ms")
    post, switched = sweep([SweepConfig(policy="postcopy", prepage=2, **base),
                            SweepConfig(max_iterations=2, on_limit="postcopy", **base)], jobs=1)
    assert post.verdict == switched.verdict == "post-copy"
    assert post.status == "completed" and post.verified is True


def test_default_give_up_scales_with_memory_over_bandwidth():
    assert default_give_up("4GiB", "10Gbit/s") == 600.0
    assert default_give_up("1TiB", "1Gbit/s") == pytest.approx(20 * 2**40 * 4104 / 4096 / 1.25e8)


def test_planning_table_csv_and_json(tmp_path, monkeypatch):
    res = sweep(small_grid(), jobs=2)
    text = res.table()
    assert text.splitlines()[0].split()[:2] == ["workload", "bandwidth"]
    # print(results) fits the output's width as str(report) does: $COLUMNS in a pipe, else every column
    monkeypatch.setenv("COLUMNS", "80")
    assert str(res) == res.table(width=80) != text and max(len(line) for line in str(res).splitlines()) <= 80
    monkeypatch.delenv("COLUMNS")
    assert str(res) == text
    assert "total time" in text and "verdict" in text and "does not converge" in text
    headers, rows = res.table_rows()
    assert len(rows) == 8 and headers[-1] == "verdict"
    path = tmp_path / "plan.csv"
    res.to_csv(path)
    records = list(csv.DictReader(path.open()))
    assert len(records) == 8 and float(records[0]["total_time"]) == res[0].total_time
    assert "report" not in records[0]
    data = json.loads(res.to_json(tmp_path / "plan.json"))
    assert json.loads((tmp_path / "plan.json").read_text()) == data
    assert data[0]["verdict"] == res[0].verdict
    assert list(csv.DictReader(io.StringIO(res.to_csv())))[1]["workload"] == res[1].workload


def test_results_pickle():
    (r,) = sweep([SweepConfig(**SMALL)])
    assert pickle.loads(pickle.dumps(r)) == r


def test_dask_distributed_executor():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            res = sweep(small_grid()[:4], executor=client.get_executor())
    assert [key(r) for r in res] == [key(r) for r in sweep(small_grid()[:4], jobs=1)]


# Runs of about a second of wall time each (8 GiB, 40 s simulated), that never converge.
LONG: Dict[str, Any] = dict(memory="8GiB", workload="uniform:2GiB/s", bandwidth="10Gbit/s", downtime_limit="10ms",
                            give_up_after="40s", stop_when_stalled=False)


@pytest.mark.parametrize("how", ["inline", "processes", "threads", "dask"])
def test_the_progress_moves_within_runs_on_every_executor(how, monkeypatch):
    """The bar moves while long runs are in flight, not only as each ends: between results, the
    callback gets the results plus the part of each run in flight that is done (its simulated time
    against its give-up horizon), on every executor (workers write it into the sweep's progress file)."""
    import dirtylog.sweeps as sw

    monkeypatch.setattr(sw, "PROGRESS_INTERVAL", 0.05)  # the workers fork after this (or are threads)
    cfgs = [SweepConfig(**LONG), SweepConfig(**LONG)]
    seen = []

    def progress(done, total, r):
        seen.append((done, r))

    if how == "inline":
        res = sweep(cfgs, jobs=1, progress=progress)
    elif how == "processes":
        res = sweep(cfgs, jobs=2, progress=progress)
    elif how == "threads":
        with ThreadPoolExecutor(2) as ex:
            res = sweep(cfgs, executor=ex, progress=progress)
    else:
        distributed = pytest.importorskip("distributed")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            res = sweep(cfgs, executor=client.get_executor(), progress=progress)
    assert [r.verdict for r in res] == ["does not converge"] * 2 and all(r.total_time == 40.0 for r in res)
    between = [d for d, r in seen if r is None and d > 0]
    assert between and all(isinstance(d, float) and 0 < d < 2 for d in between)
    assert len([d for d, r in seen if r is not None]) == 2 and seen[-1][0] == 2
    if how == "inline":  # one run at a time: the first run's part, then the second's on top of 1
        first = [d for d in between if d < 1]
        assert first == sorted(first) and first[-1] > 0.5 and any(d > 1 for d in between)
    assert all(b >= a for a, b in zip([d for d, _ in seen], [d for d, _ in seen][1:]))  # never backwards


def test_a_run_reports_its_part_of_the_horizon():
    from dirtylog import Migration
    from dirtylog.sweeps import RunProgress, run_fraction

    slow: Dict[str, Any] = dict(memory="1GiB", workload=Uniform("10MiB/s", seed=1), link=dirtylog.Link("100Mbit/s"))
    m = Migration(**slow, policy=dirtylog.PreCopy(timeout="20s"))
    m.run_until(5.0)
    assert run_fraction(m, 100.0) == pytest.approx(0.25)  # the policy's timeout is the horizon
    m2 = Migration(**slow)
    m2.run_until(5.0)
    assert run_fraction(m2, 10.0) == pytest.approx(0.5) and run_fraction(m2, float("inf")) == 0.0
    assert run_fraction(m2, 1.0) == 0.99  # past the horizon: a switch-over still has its end to run
    # a hook travels to a worker without its mapping; one that cannot open the sweep's file stays silent
    hook = RunProgress(3, 10.0, path="/nonexistent/dirtylog-sweep.progress")
    copy = pickle.loads(pickle.dumps(hook))
    assert copy.index == 3 and copy.give_up_after == 10.0
    r = run_config(SweepConfig(**SMALL), progress=copy)
    assert r.status == "completed"


def test_the_progress_file_takes_each_runs_part_and_is_removed_with_the_sweep():
    """Workers write their run's part into the slot of the sweep's progress file; the sweep sums the
    slots of the runs still in flight (only those: a grid of a million is not read whole every 0.25 s),
    and removes the file when it ends. A hook whose file is gone
    (the sweep is over, or it runs on another machine) stays silent and never fails its run."""
    import os
    from types import SimpleNamespace

    from dirtylog.sweeps import _InFlight

    inflight = _InFlight(3)
    try:
        hooks = [pickle.loads(pickle.dumps(inflight.hook(i, 10.0))) for i in range(3)]  # as a worker gets them
        for h, clock in zip(hooks, (2.0, 5.0, 50.0)):
            h._next = 1e-9  # a report is due at the next call
            h(SimpleNamespace(policy=None, clock=clock))
        assert inflight.total(range(3)) == pytest.approx(0.2 + 0.5 + 0.99)
        assert inflight.total([0, 1]) == pytest.approx(0.7)  # run 2 has ended: its slot is left out
        for h in hooks:
            h.close()
    finally:
        inflight.close()
    assert not os.path.exists(inflight.path)
    late = inflight.hook(0, 10.0)
    late._next = 1e-9
    late(SimpleNamespace(policy=None, clock=5.0))  # the file is gone: silent, and off from then on
    assert late._off


def test_a_sweep_leaves_no_progress_file(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    res = sweep(small_grid()[:2], jobs=2, progress=lambda done, total, r: None)
    assert len(res) == 2 and list(tmp_path.iterdir()) == []


def fail_at_32mib(monkeypatch: Any) -> None:
    """simulate() raises MemoryError for a 32 MiB guest (a task that fails) and runs every other one."""
    from dirtylog import migration

    real = migration.simulate

    def simulate_or_fail(**kw: Any) -> Any:
        if kw["memory"] == "32MiB":
            raise MemoryError("no room for the bitmaps")
        return real(**kw)

    monkeypatch.setattr(migration, "simulate", simulate_or_fail)


@pytest.mark.parametrize("how", ["in this process", "executor"])
def test_a_configuration_that_raises_is_named_and_the_others_finish(monkeypatch, how):
    """A task that raises (out of memory, a worker that died) had stopped the sweep with its bare exception:
    which configuration it was went unsaid, and the results that had finished were lost. The others now
    run to their end; SweepError names each failure and keeps the others' results."""
    fail_at_32mib(monkeypatch)
    cfgs = grid(memory=["16MiB", "32MiB", "48MiB"], workload="hotspot:10MiB/s", bandwidth="1Gbit/s")
    seen = []
    with ThreadPoolExecutor(2) as ex:
        with pytest.raises(SweepError, match=r"^1 of 3 configurations failed \(2 finished\): configuration 1 "
                                             r"\(hotspot:10MiB/s, memory=32MiB, bandwidth=1Gbit/s\): MemoryError: "
                                             r"no room for the bitmaps$") as info:
            sweep(cfgs, executor=ex if how == "executor" else None, jobs=1,
                  progress=lambda done, total, r: seen.append(done))
    err = info.value
    assert [r.index for r in err.results] == [0, 2] and all(r.verdict == "converges" for r in err.results)
    assert [(i, c.memory, type(e)) for i, c, e in err.failures] == [(1, "32MiB", MemoryError)]
    assert isinstance(err.__cause__, MemoryError)
    assert max(seen) == 3  # the bar reached the end: the failed configuration's work is done too


def test_records_are_the_csv_rows_as_numbers_for_pandas():
    res = sweep(grid(workload="hotspot:10MiB/s", bandwidth=["200Mbit/s", "1Gbit/s"], auto_converge=[False, True],
                     **SMALL), jobs=1)
    rows = res.records()
    assert list(rows[0]) == list(next(csv.DictReader(io.StringIO(res.to_csv()))))  # the CSV's columns, in order
    assert "options" not in rows[0] and [r["auto_converge"] for r in rows] == [False, True, False, True]
    assert [r["total_time"] for r in rows] == [r.total_time for r in res]
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(res.records())
    assert frame.shape == (4, len(rows[0]))
    assert frame.groupby("auto_converge")["total_time"].count().tolist() == [2, 2]


def test_cli_sweep_shows_what_finished_then_the_configuration_that_failed(monkeypatch, capsys, tmp_path):
    from dirtylog.__main__ import main

    fail_at_32mib(monkeypatch)
    csv_path = tmp_path / "plan.csv"
    rc = main(["sweep", "-m", "16MiB,32MiB", "-w", "hotspot:10MiB/s", "-b", "1Gbit/s", "-d", "300ms",
               "--jobs", "1", "--no-progress", "--csv", str(csv_path)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "1 of 2 configurations (1 failed)" in out and "converges" in out
    assert len(list(csv.DictReader(csv_path.open()))) == 1  # the one that finished, written
    assert "dirtylog sweep: error: 1 of 2 configurations failed (1 finished): configuration 1 (" in err
    assert "--memory 32MiB" in err and "MemoryError: no room for the bitmaps" in err
