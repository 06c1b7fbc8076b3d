"""Engine benchmark: simulate() against the pure numpy engine loop, on the same write stream.

A 64 GiB guest, Hotspot at 1 GiB/s, a 10 Gbit/s link, PML, 4 vCPUs. Reports the
wall time of each, the simulated guest writes per second of wall time and their
ratio (the design target: the C engine at least 20x faster). The numpy engine
runs the older pass-based loop (a sync at the end of each pass) over the same
write stream and must verify; its round sizes differ from the C engine's QEMU
loop, so they are not compared.

``test_engine_vs_fused_loop`` reports, in CPU time measured in the same run, ``simulate`` with
verification on and off against the fused workload -> tracker loop alone over the same guest time
(issue 11's target: verification on within 1.6x of it).

``test_engine_at_scale`` runs issue 11's large case (a 1 TiB guest, Hotspot 2 GiB/s, 100 Gbit/s,
32 vCPUs, PML, verification on; targets: 5 s, 3 GiB peak RSS) in a fresh process each, so that
its peak RSS is its own: ``simulate`` with verification on and off, and the fused workload ->
tracker loop over the same guest time with the verification's stale bitmap attached (the guest's
own writes, as ``simulate`` makes them, without sending a page).

Run: ``pytest benchmarks/bench_engine.py --benchmark-only -s``
(``DIRTYLOG_BENCH_ENGINE_MEMORY=8GiB``, ``DIRTYLOG_BENCH_ENGINE_LARGE=64GiB`` and
``DIRTYLOG_BENCH_ENGINE_REPEATS=1`` for a quicker run).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time


import dirtylog
from dirtylog import Link, PreCopy, TrackingCosts
from dirtylog.workloads import Hotspot

import numpy_engine

MEMORY = os.environ.get("DIRTYLOG_BENCH_ENGINE_MEMORY", "64GiB")
LARGE = os.environ.get("DIRTYLOG_BENCH_ENGINE_LARGE", "1TiB")
REPEATS = int(os.environ.get("DIRTYLOG_BENCH_ENGINE_REPEATS", "9"))


def test_engine_vs_numpy(benchmark):
    costs = TrackingCosts(slows_guest=False)  # exits reported, not fed back: same guest time in both
    kw = dict(memory=MEMORY, link=Link("10Gbit/s"), policy=PreCopy(downtime_limit="300ms"), tracker="pml",
              vcpus=4, costs=costs)
    w = Hotspot("1GiB/s", seed=1)

    report = benchmark.pedantic(lambda: dirtylog.simulate(workload=w, **kw), rounds=3, iterations=1)
    c_wall = benchmark.stats.stats.median
    assert report.status == "completed" and report.verified

    m = dirtylog.Migration(workload=w, **kw)
    bound = w.bind(m.pages, vcpus=4, page_size=m.page_size)
    t_gen = time.perf_counter()
    streams = bound.writes(0.0, report.total_time)  # the write stream, generated once
    t_gen = time.perf_counter() - t_gen

    t0 = time.perf_counter()
    res = numpy_engine.run(streams, bound, m.pages, m.page_bytes, m.link.bandwidth,
                           max(1, m.policy.chunk_size // m.page_size), m.policy.downtime_limit,
                           m.device_bytes, m.setup_time)
    np_wall = time.perf_counter() - t0

    c_rounds = [r.dirty_pages for r in report.rounds if not r.final]
    # The numpy engine runs the pass-based loop (a sync at the end of each pass) over the same write
    # stream; the C engine runs QEMU's loop (windows, a sync below the threshold), so their round
    # sizes differ: the comparison is of speed on the same stream, each engine verified on its own.
    assert res.verified

    ratio = np_wall / c_wall
    wps_c = report.guest_writes / c_wall
    wps_np = res.writes / np_wall
    benchmark.extra_info.update(
        memory=MEMORY, rounds=len(c_rounds), simulated_time_s=report.total_time, guest_writes=report.guest_writes,
        c_wall_s=c_wall, numpy_wall_s=np_wall, numpy_stream_generation_s=t_gen, speedup=ratio,
        c_guest_writes_per_wall_s=wps_c, numpy_guest_writes_per_wall_s=wps_np,
    )
    print(
        f"\nengine benchmark ({MEMORY}, Hotspot 1 GiB/s, 10 Gbit/s, PML, 4 vCPUs): "
        f"{len(c_rounds)} rounds, {report.total_time:.1f} s simulated, {report.guest_writes:,} guest writes\n"
        f"  C engine     {c_wall:8.3f} s wall   {wps_c / 1e6:8.2f} M simulated writes/s\n"
        f"  numpy engine {np_wall:8.3f} s wall   {wps_np / 1e6:8.2f} M simulated writes/s"
        f"   (+{t_gen:.2f} s to generate its stream)\n"
        f"  speedup      {ratio:8.1f}x  (target >= 20x)"
    )


def _cpu_time(fn):
    """(result, CPU seconds of this process): robust to a loaded machine."""
    c0 = time.process_time()
    out = fn()
    return out, time.process_time() - c0


def test_engine_vs_fused_loop(benchmark):
    """The engine's cost over the guest's own: ``simulate`` with verification on and off against the
    fused workload -> tracker loop alone (``workload.run`` in one call over the guest time the
    migration ran, on a PML tracker of the same guest) measured in the same run, in CPU time.

    The fused loop is the floor the engine adds to: the same writes through the same tracker,
    without sending a page (and without the harvests between rounds), and without the stale bitmap
    (verification's mark on every write) unless said. Issue 11's target: verify on within 1.6x of
    the plain loop (the former version of this benchmark measured the loop with the stale bitmap
    attached, printed too).

    Statistics. One CPU-time figure of this memory-bound loop on a shared 2-core machine varies by
    20 % and more from run to run, and by more between minutes as the other core's load changes.
    So the four measurements (verify on, verify off, the fused loop, the loop with the stale
    bitmap) are taken in turn, ``REPEATS`` times (9 by default; it was 5), each repeat starting
    one measurement later in the cycle than the last (so that none always runs right after the
    same other one, whose memory it finds in the caches), and compared three ways, all printed:
    the ratio of the medians; the median of each repeat's own ratio (its runs are back to back,
    so a change of load between repeats cancels), with that ratio's spread over the repeats and
    how many repeats met the target; and the ratio of the best runs (other work on the machine
    only ever adds time, so the minimum is the least disturbed figure of each). What is measured
    is as before: the same four runs, CPU time of each, nothing left out of any of them; only the
    repeats, their order and the figures printed changed."""
    costs = TrackingCosts(slows_guest=False)
    kw = dict(memory=MEMORY, link=Link("10Gbit/s"), policy=PreCopy(downtime_limit="300ms"), tracker="pml",
              vcpus=4, costs=costs)
    w = Hotspot("1GiB/s", seed=1)
    report = benchmark.pedantic(lambda: dirtylog.simulate(workload=w, **kw), rounds=1, iterations=1)
    assert report.status == "completed" and report.verified
    guest_time = report.total_time - report.downtime  # the guest ran until the pause (nothing slows it here)
    repeats = REPEATS

    def fused(stale):
        m = dirtylog.Migration(workload=w, verify=stale, **kw)  # verify: the stale bitmap attached
        m.tracker.start()
        bound = w.bind(m.pages, vcpus=4, page_size=m.page_size)
        return _cpu_time(lambda: bound.run(m.tracker, 0.0, guest_time))

    def sim(verify):
        out, c = _cpu_time(lambda: dirtylog.simulate(workload=w, verify=verify, **kw))
        assert out.guest_writes == report.guest_writes
        return out.guest_writes, c

    runs = {"on": lambda: sim(True), "off": lambda: sim(False), "fused": lambda: fused(False),
            "stale": lambda: fused(True)}
    order = list(runs)
    cpu: dict = {k: [] for k in order}
    fused_writes = 0
    for i in range(repeats):
        for k in order[i % len(order):] + order[: i % len(order)]:
            n, c = runs[k]()
            cpu[k].append(c)
            if k == "fused":
                fused_writes = n
    on_cpu, off_cpu, fused_cpu, stale_cpu = cpu["on"], cpu["off"], cpu["fused"], cpu["stale"]
    on_m, off_m, fused_m, stale_m = (statistics.median(x) for x in (on_cpu, off_cpu, fused_cpu, stale_cpu))
    on_rs = sorted(a / b for a, b in zip(on_cpu, fused_cpu))
    off_rs = sorted(a / b for a, b in zip(off_cpu, fused_cpu))
    on_r, off_r = statistics.median(on_rs), statistics.median(off_rs)
    on_best, off_best = min(on_cpu) / min(fused_cpu), min(off_cpu) / min(fused_cpu)
    met = sum(r <= 1.6 for r in on_rs)
    benchmark.extra_info.update(
        memory=MEMORY, simulated_time_s=report.total_time, guest_writes=report.guest_writes, repeats=repeats,
        verify_on_cpu_s=on_m, verify_off_cpu_s=off_m, fused_cpu_s=fused_m, fused_writes=fused_writes,
        verify_on_cpu_runs_s=on_cpu, verify_off_cpu_runs_s=off_cpu, fused_cpu_runs_s=fused_cpu,
        fused_stale_cpu_s=stale_m, fused_stale_cpu_runs_s=stale_cpu, verify_on_over_fused_stale=on_m / stale_m,
        verify_on_over_fused=on_m / fused_m, verify_off_over_fused=off_m / fused_m,
        verify_on_over_fused_per_repeat=on_r, verify_off_over_fused_per_repeat=off_r,
        verify_on_over_fused_per_repeat_runs=on_rs, verify_off_over_fused_per_repeat_runs=off_rs,
        verify_on_over_fused_best=on_best, verify_off_over_fused_best=off_best,
        verify_on_repeats_within_target=met, load_average=os.getloadavg()[0],
    )

    def spread(x):
        return f"(runs {min(x):.3f} to {max(x):.3f} s)"

    print(
        f"\nengine vs fused loop ({MEMORY}, Hotspot 1 GiB/s, 10 Gbit/s, PML, 4 vCPUs), CPU time, median of "
        f"{repeats} runs each in turn, load average {os.getloadavg()[0]:.1f}:\n"
        f"  simulate, verify on   {on_m:7.3f} s   {on_m / fused_m:5.2f}x the fused loop (target <= 1.6x)  "
        f"{spread(on_cpu)}\n"
        f"  simulate, verify off  {off_m:7.3f} s   {off_m / fused_m:5.2f}x  {spread(off_cpu)}\n"
        f"  fused loop alone      {fused_m:7.3f} s   {spread(fused_cpu)}  ({fused_writes:,} writes over "
        f"{guest_time:.1f} s of guest time; simulate: {report.guest_writes:,})\n"
        f"  fused loop + stale    {stale_m:7.3f} s   {spread(stale_cpu)}  (verify on is {on_m / stale_m:.2f}x it)\n"
        f"  each repeat's own ratio to the fused loop: verify on median {on_r:.2f}x (repeats {on_rs[0]:.2f} to "
        f"{on_rs[-1]:.2f}x; {met} of {repeats} within 1.6x), off median {off_r:.2f}x ({off_rs[0]:.2f} to "
        f"{off_rs[-1]:.2f}x)\n"
        f"  best run over best run: verify on {on_best:.2f}x, off {off_best:.2f}x"
    )


# One measurement of the large case, in a fresh process: CPU and wall seconds, peak RSS.
_LARGE_RUN = r"""
import json, resource, sys, time
import numpy as np
import dirtylog
from dirtylog import Link
from dirtylog.workloads import Hotspot
memory, what = sys.argv[1], sys.argv[2]
w = Hotspot("2GiB/s", seed=1)
kw = dict(memory=memory, link=Link("100Gbit/s"), tracker="pml", vcpus=32)
out = {}
t0, c0 = time.perf_counter(), time.process_time()
if what == "fused":
    m = dirtylog.Migration(workload=w, **kw)  # its tracker, with the stale bitmap (verify=True)
    m.tracker.start()
    bound = w.bind(m.pages, vcpus=32, page_size=m.page_size)
    t0, c0 = time.perf_counter(), time.process_time()
    out["writes"] = bound.run(m.tracker, 0.0, float(sys.argv[3]))
else:
    r = dirtylog.simulate(workload=w, verify=what == "on", **kw)
    out.update(writes=r.guest_writes, guest_time=r.total_time - r.downtime, status=r.status,
               verified=r.verified, rounds=len(r.rounds))
out.update(cpu=time.process_time() - c0, wall=time.perf_counter() - t0,
           rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps(out))
"""


def _large(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _LARGE_RUN, LARGE, *args], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.splitlines()[-1])


def test_engine_at_scale(benchmark):
    """Issue 11's large case: ``simulate`` of a 1 TiB guest (Hotspot 2 GiB/s, 100 Gbit/s, 32 vCPUs,
    PML) with verification on (targets: 5 s, 3 GiB peak RSS) and off, and the fused workload ->
    tracker loop with the stale bitmap over the same guest time, each in a fresh process, in one run.
    CPU time is the figure to compare under load; wall time is what the target names."""
    on = benchmark.pedantic(lambda: _large("on"), rounds=1, iterations=1)
    assert on["status"] == "completed" and on["verified"]
    off = _large("off")
    fused = _large("fused", repr(on["guest_time"]))
    assert off["writes"] == on["writes"]
    gib = 2.0**30
    benchmark.extra_info.update(
        memory=LARGE, guest_writes=on["writes"], rounds=on["rounds"],
        verify_on_cpu_s=on["cpu"], verify_on_wall_s=on["wall"], verify_on_peak_rss_bytes=on["rss"],
        verify_off_cpu_s=off["cpu"], verify_off_wall_s=off["wall"], verify_off_peak_rss_bytes=off["rss"],
        fused_cpu_s=fused["cpu"], fused_writes=fused["writes"],
        verify_on_wall_over_target=on["wall"] / 5.0, verify_on_rss_over_target=on["rss"] / (3 * gib),
        load_average=os.getloadavg()[0],
    )
    print(
        f"\nengine at scale ({LARGE}, Hotspot 2 GiB/s, 100 Gbit/s, 32 vCPUs, PML), one process each, "
        f"load average {os.getloadavg()[0]:.1f}:\n"
        f"  simulate, verify on   {on['cpu']:6.2f} s CPU  {on['wall']:6.2f} s wall ({on['wall'] / 5.0:.2f}x the 5 s target)"
        f"  peak RSS {on['rss'] / gib:.2f} GiB ({on['rss'] / (3 * gib):.2f}x the 3 GiB target)\n"
        f"  simulate, verify off  {off['cpu']:6.2f} s CPU  {off['wall']:6.2f} s wall  peak RSS {off['rss'] / gib:.2f} GiB\n"
        f"  fused loop + stale    {fused['cpu']:6.2f} s CPU  ({fused['writes']:,} writes over the same "
        f"{on['guest_time']:.1f} s of guest time; simulate: {on['writes']:,}); "
        f"verify on is {on['cpu'] / fused['cpu']:.2f}x it"
    )
