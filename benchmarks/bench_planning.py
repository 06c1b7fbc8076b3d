"""Planning benchmarks (issue 12): the early "never converges" verdict and the advice search.

1. ``dirtylog simulate -m 64GiB -b 1Gbit/s -w hotspot:1GiB/s``, the command line of
   the issue, run in-process: its wall time with the early verdict (the default;
   issue target: under 2 s; the in-round verdict ends it within round 0), and the
   same command with the verdict off (QEMU's endless loop up to the command line's
   give-up: 20x the time to send memory once, 3 h of simulated time here), measured
   in the same run. The same for a 256 GiB guest given up after 1 h (the issue's
   third case, reconstructed as ``-m 256GiB -b 1Gbit/s -w hotspot:1GiB/s
   --give-up-after 1h``; its run without the verdict only with
   ``DIRTYLOG_BENCH_PLANNING_BASELINE=1``).
2. The 18-cell sweep: ``dirtylog sweep -m 16GiB -w hotspot:1GiB/s -w
   zipf:1GiB/s,s=1.2`` over the default grid (1, 10 and 25 Gbit/s x 100 ms,
   300 ms and 1 s): six cells at 1 Gbit/s cannot converge (issue target: under
   30 s, from 3 min 35 s). The run without the verdict takes minutes: it is
   measured only with ``DIRTYLOG_BENCH_PLANNING_BASELINE=1``.
3. ``dirtylog advise`` on a guest that does not converge: its wall time and the
   number of simulations it ran.

Figures are reported, never asserted (the verdicts are checked: a correctness
check, not a timing threshold). Each is given in wall time and in CPU time (of
this process and its sweep workers): on a shared machine the CPU time is the
figure that does not depend on the load. Run: ``pytest benchmarks/bench_planning.py
--benchmark-only -s``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import time

from dirtylog.__main__ import main

BASELINE = os.environ.get("DIRTYLOG_BENCH_PLANNING_BASELINE", "") not in ("", "0")

SIMULATE = ["simulate", "-m", "64GiB", "-b", "1Gbit/s", "-w", "hotspot:1GiB/s", "--no-progress", "--json", "-"]
SWEEP = ["sweep", "-m", "16GiB", "-w", "hotspot:1GiB/s", "-w", "zipf:1GiB/s,s=1.2", "--no-progress", "--json", "-"]
GIVE_UP_256 = ["simulate", "-m", "256GiB", "-b", "1Gbit/s", "-w", "hotspot:1GiB/s", "--give-up-after", "1h",
               "--no-progress", "--json", "-"]
ADVISE = ["advise", "-m", "8GiB", "-b", "1Gbit/s", "-w", "hotspot:1GiB/s", "--no-progress", "--json", "-"]


NO_VERDICT = ["--no-stop-when-stalled"]  # QEMU's endless loop, up to the command line's give-up


def _cpu() -> float:
    """CPU seconds of this process and its finished children (sweep workers): the load-independent figure."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


LAST_CPU = {}


def _run(argv):
    out = io.StringIO()
    c0, t0 = _cpu(), time.perf_counter()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    wall = time.perf_counter() - t0
    LAST_CPU[argv[0]] = _cpu() - c0
    assert rc == 0, f"{argv} exited with {rc}"
    return json.loads(out.getvalue()), wall


def test_early_verdict_64gib(benchmark):
    report, _ = benchmark.pedantic(lambda: _run(SIMULATE), rounds=1, iterations=1)
    wall = benchmark.stats.stats.median
    assert report["status"] == "failed" and "never converges" in report["reason"]
    cpu = LAST_CPU["simulate"]
    base, base_wall = _run(SIMULATE + NO_VERDICT)
    base_cpu = LAST_CPU["simulate"]
    assert base["status"] == "failed"
    benchmark.extra_info.update(wall_s=wall, cpu_s=cpu, simulated_s=report["total_time"], baseline_wall_s=base_wall,
                                baseline_cpu_s=base_cpu, baseline_simulated_s=base["total_time"],
                                speedup=base_wall / wall)
    print(f"\nsimulate -m 64GiB -b 1Gbit/s -w hotspot:1GiB/s (early verdict): {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"(target < 2 s), {report['total_time']:.0f} s simulated, {report['dirty_sync_count']} syncs\n"
          f"  reason: {report['reason']}\n"
          f"  without the verdict (QEMU's loop up to the give-up): {base_wall:.1f} s wall, {base_cpu:.1f} s CPU, "
          f"{base['total_time']:.0f} s simulated; {base_wall / wall:.1f}x the wall time")


def test_early_verdict_256gib(benchmark):
    report, _ = benchmark.pedantic(lambda: _run(GIVE_UP_256), rounds=1, iterations=1)
    wall = benchmark.stats.stats.median
    assert report["status"] == "failed" and "never converges" in report["reason"]
    cpu = LAST_CPU["simulate"]
    benchmark.extra_info.update(wall_s=wall, cpu_s=cpu, simulated_s=report["total_time"])
    line = (f"\nsimulate -m 256GiB -b 1Gbit/s -w hotspot:1GiB/s --give-up-after 1h (early verdict): {wall:.2f} s "
            f"wall, {cpu:.2f} s CPU, {report['total_time']:.1f} s simulated")
    if BASELINE:
        base, base_wall = _run(GIVE_UP_256 + NO_VERDICT)
        base_cpu = LAST_CPU["simulate"]
        assert base["status"] == "failed" and "iterate forever" in base["reason"]
        benchmark.extra_info.update(baseline_wall_s=base_wall, baseline_cpu_s=base_cpu)
        line += (f"\n  without the verdict (to the 1 h give-up): {base_wall:.1f} s wall, {base_cpu:.1f} s CPU, "
                 f"{base['total_time']:.0f} s simulated; {base_wall / wall:.1f}x the wall time")
    print(line)


def test_sweep_18_cells(benchmark):
    results, _ = benchmark.pedantic(lambda: _run(SWEEP), rounds=1, iterations=1)
    wall = benchmark.stats.stats.median
    assert len(results) == 18
    verdicts = [r["verdict"] for r in results]
    hopeless = sum(v == "does not converge" for v in verdicts)
    slow = sorted((r["wall_time"] for r in results), reverse=True)
    cpu = LAST_CPU["sweep"]
    benchmark.extra_info.update(wall_s=wall, cpu_s=cpu, hopeless=hopeless, slowest_cell_s=slow[0])
    line = (f"\n18-cell sweep (16 GiB, hotspot and zipf at 1 GiB/s, 3 bandwidths x 3 downtime limits): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU in all processes (target < 30 s wall), {hopeless} cells do not "
            f"converge; slowest cell {slow[0]:.1f} s")
    if BASELINE:
        base, base_wall = _run(SWEEP + NO_VERDICT)
        base_cpu = LAST_CPU["sweep"]
        assert [r["verdict"] for r in base] == verdicts
        benchmark.extra_info.update(baseline_wall_s=base_wall, baseline_cpu_s=base_cpu)
        line += (f"\n  without the verdict: {base_wall:.1f} s wall, {base_cpu:.1f} s CPU; "
                 f"{base_wall / wall:.1f}x the wall time")
    print(line)


def test_advise_8gib(benchmark):
    advice, _ = benchmark.pedantic(lambda: _run(ADVISE), rounds=1, iterations=1)
    wall = benchmark.stats.stats.median
    assert not advice["converges"] and advice["bandwidth"]["found"]
    cpu = LAST_CPU["advise"]
    benchmark.extra_info.update(wall_s=wall, cpu_s=cpu, probes=advice["probes"])
    print(f"\nadvise -m 8GiB -b 1Gbit/s -w hotspot:1GiB/s: {wall:.1f} s wall, {cpu:.1f} s CPU, "
          f"{advice['probes']} simulations; "
          + "; ".join(f"{q}: {advice[q]['note']}" for q in ("bandwidth", "downtime_limit")))
