"""The step API's cost against ``Migration.run()``: what a host simulator pays for driving a migration itself.

One migration (16 GiB, Hotspot 1 GiB/s over 10 Gbit/s: it converges in 19.3 s; ``DIRTYLOG_BENCH_STEP_MEMORY`` and
``DIRTYLOG_BENCH_STEP_RATE`` change it) is run to its end four ways, alternated within each repeat:

* ``run()``: the run loop, as ``simulate()`` runs it;
* ``next_event_time``: a host that advances only to ``next_event_time()`` (no polling);
* ``tick 10 ms`` and ``tick 1 ms``: a host polling on a fixed tick (``run_until`` every tick).

Every way gives the same report (checked: status and bytes sent). It reports the CPU time of each (medians
of ``DIRTYLOG_BENCH_STEP_REPEATS`` repeats, default 7), its ratio to ``run()``, its steps and the overhead per
step: (its time - run()'s) / its steps, all measured in the same run. Figures are reported, never asserted.
Run::

    pytest benchmarks/bench_step_api.py --benchmark-only -s
    python benchmarks/bench_step_api.py            # the table only
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import dirtylog
from dirtylog.render import Column, output_width, plain, table
from dirtylog.workloads import Hotspot

MEMORY = os.environ.get("DIRTYLOG_BENCH_STEP_MEMORY", "16GiB")
RATE = os.environ.get("DIRTYLOG_BENCH_STEP_RATE", "1GiB/s")
REPEATS = int(os.environ.get("DIRTYLOG_BENCH_STEP_REPEATS", 7))

Run = Callable[[], Tuple[float, dirtylog.MigrationReport, Optional[int]]]


def _new() -> dirtylog.Migration:
    return dirtylog.Migration(memory=MEMORY, workload=Hotspot(RATE, seed=1), link=dirtylog.Link("10Gbit/s"))


def _by_run() -> Tuple[float, dirtylog.MigrationReport, Optional[int]]:
    m = _new()
    t = time.process_time()
    r = m.run()
    return time.process_time() - t, r, None


def _by_events() -> Tuple[float, dirtylog.MigrationReport, Optional[int]]:
    m = _new()
    steps = 0
    t = time.process_time()
    while not m.done:
        m.run_until(m.next_event_time())
        steps += 1
    return time.process_time() - t, m.report(), steps


def _by_tick(dt: float) -> Run:
    def run() -> Tuple[float, dirtylog.MigrationReport, Optional[int]]:
        m = _new()
        steps = 0
        now = 0.0
        t = time.process_time()
        while not m.done:
            now += dt
            m.run_until(now)
            steps += 1
        return time.process_time() - t, m.report(), steps

    return run


WAYS: Dict[str, Run] = {"run()": _by_run, "next_event_time": _by_events, "tick 10 ms": _by_tick(0.01),
                        "tick 1 ms": _by_tick(0.001)}


def measure(repeats: int = REPEATS) -> Tuple[Dict[str, List[float]], Dict[str, int], dirtylog.MigrationReport]:
    """CPU seconds of each way, per repeat (alternated), the steps of each stepping way and the report."""
    times: Dict[str, List[float]] = {k: [] for k in WAYS}
    steps: Dict[str, int] = {}
    ref: Optional[dirtylog.MigrationReport] = None
    for _ in range(repeats):
        for name, way in WAYS.items():
            dt, r, n = way()
            times[name].append(dt)
            if n is not None:
                steps[name] = n
            if ref is None:
                ref = r
            assert (r.status, r.transferred) == (ref.status, ref.transferred), f"{name} gave another report"
    assert ref is not None
    return times, steps, ref


def render(times: Dict[str, List[float]], steps: Dict[str, int], ref: dirtylog.MigrationReport) -> str:
    base = statistics.median(times["run()"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        n = steps.get(name)
        rows.append(([name, f"{med:.3f} s", f"{med / base:.2f}x", "-" if n is None else f"{n:,}",
                      "-" if n is None else f"{1e6 * (med - base) / n:.0f} us"], ""))
    cols = [Column("way", "left"), Column("CPU, median"), Column("x run()"), Column("steps"),
            Column("overhead per step")]
    title = (f"{MEMORY}, Hotspot {RATE}, 10 Gbit/s ({ref.status}, {ref.total_time:.1f} s simulated): "
             f"{len(times['run()'])} repeats, alternated")
    return plain(table(cols, rows, output_width(), title=title))


def test_step_api_against_run(benchmark) -> None:  # type: ignore[no-untyped-def]
    times, steps, ref = benchmark.pedantic(measure, rounds=1, iterations=1)
    base = statistics.median(times["run()"])
    benchmark.extra_info.update({f"{k} cpu_s": statistics.median(v) for k, v in times.items()})
    benchmark.extra_info.update({f"{k} us_per_step": 1e6 * (statistics.median(times[k]) - base) / n
                                 for k, n in steps.items()})
    print("\n" + render(times, steps, ref))


if __name__ == "__main__":
    print(render(*measure()))
