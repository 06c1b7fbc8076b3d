"""Benchmarks of real dirty tracking: what `dirtylog record` costs a program, and the
kernel operations RealTracker is built on.

Recording: a write-heavy C program (benchmarks/data/randwrite.c, built with the system cc)
populates 1 GiB of anonymous memory, then makes random page writes; it runs plain and under
`dirtylog record` (100 ms intervals), best of two runs each. Reported: the slowdown of its
timed phase, the recorder's harvest time per interval, and the cost per written page: the
extra time of the timed phase divided by the dirty pages the recording holds for it (each
one a first write after a harvest, i.e. one async write-protect fault). The CPU time of the
whole runs (populate phase, recorder thread and start-up included) is reported beside the
wall times, which other jobs on a loaded machine inflate.

Recording from outside (`dirtylog record --pid`, the userfaultfd registration injected with
ptrace, harvests by PAGEMAP_SCAN on /proc/PID/pagemap; kernels without soft-dirty bits): the
same program, populated, then recorded from the start of its timed phase until it exits;
reported beside the launcher's figures: its slowdown, the harvest time per interval (from
outside, injections included) and the cost per written page.

In-process (RealTracker over a 1 GiB anonymous mmap, numpy strided writes, one byte per
page; CPU time of this process, so that other jobs on the machine do not inflate it): the cost of a first write to a protected page (tracked minus untracked time, per
page), and the harvest time per written page with 100 % of the pages written and per page
of the region with 0 % and 1 % written.

Run with ``dirtylog bench -- -k record -s`` (``-s`` shows the table; the figures are also in
each benchmark's ``extra_info``, e.g. with ``dirtylog bench --save-json FILE``).
Figures are reported, never asserted.
"""
from __future__ import annotations

import mmap
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dirtylog import RealTracker
from dirtylog.realtracker import kernel_support

HERE = Path(__file__).resolve().parent
SUPPORT = kernel_support()
pytestmark = pytest.mark.skipif(not SUPPORT.ok, reason=SUPPORT.missing() or "supported")
GIB_MIB = 1024
WRITES = 1 << 24  # 16M random page writes in the timed phase
PAGE = mmap.PAGESIZE
RESULTS: dict = {}


@pytest.fixture(scope="module")
def randwrite(tmp_path_factory) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the benchmark program")
    out = tmp_path_factory.mktemp("bench") / "randwrite"
    subprocess.run([cc, "-O2", "-o", str(out), str(HERE / "data" / "randwrite.c")], check=True)
    return str(out)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _plain(prog: str):
    c0 = _children_cpu()
    r = subprocess.run([prog, str(GIB_MIB), str(WRITES)], capture_output=True, text=True, check=True)
    t0, t1, _ = map(int, r.stdout.split())
    return (t1 - t0) / 1e9, _children_cpu() - c0


def _recorded(prog: str, tmp: Path):
    from dirtylog.record import record

    log = tmp / "out.txt"
    c0 = _children_cpu()
    with open(log, "w") as f:
        rec = record([prog, str(GIB_MIB), str(WRITES)], None, interval="100ms", stdout=f)
    t0, t1, _ = map(int, log.read_text().split())
    return rec, t0, t1, _children_cpu() - c0


def _recorded_pid(prog: str):
    from dirtylog.record_pid import record_pid

    c0 = _children_cpu()
    s0 = resource.getrusage(resource.RUSAGE_SELF)
    p = subprocess.Popen([prog, str(GIB_MIB), str(WRITES), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"

        def go(_t0: int) -> None:
            p.stdin.write("go\n")
            p.stdin.flush()

        rec = record_pid(p.pid, interval="100ms", method="uffd", on_start=go)
        out, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    t0, t1, _ = map(int, out.split())
    s1 = resource.getrusage(resource.RUSAGE_SELF)
    recorder = s1.ru_utime + s1.ru_stime - s0.ru_utime - s0.ru_stime
    return rec, (t1 - t0) / 1e9, _children_cpu() - c0, recorder


def test_record_pid_overhead(benchmark, randwrite):
    from dirtylog.softdirty import soft_dirty_available

    if soft_dirty_available() or sys.platform != "linux" or __import__("os").uname().machine != "x86_64":
        pytest.skip("the --pid userfaultfd method is measured on x86-64 kernels without soft-dirty bits")
    benchmark.pedantic(_record_pid_overhead, args=(randwrite,), rounds=1, iterations=1)
    benchmark.extra_info.update(RESULTS["record_pid"])


def _record_pid_overhead(randwrite: str) -> None:
    plain, plain_cpu = min(_plain(randwrite) for _ in range(2))
    rec, took, cpu, recorder_cpu = min((_recorded_pid(randwrite) for _ in range(2)), key=lambda r: r[1])
    dirty = int(rec.page.size)  # recorded from the timed phase's start (the last partial interval is lost)
    scan = rec.scan_ns / 1e9
    RESULTS["record_pid"] = dict(
        plain_s=plain, recorded_s=took, slowdown=took / plain, intervals=int(scan.size),
        harvest_ms_mean=float(scan.mean() * 1e3), harvest_ms_max=float(scan.max() * 1e3), dirty_pages=dirty,
        cost_per_page_us=(took - plain) / max(dirty, 1) * 1e6,
        harvest_ns_per_dirty_page=float(rec.scan_ns.sum()) / max(dirty, 1),
        plain_cpu_s=plain_cpu, recorded_cpu_s=cpu, recorder_cpu_s=recorder_cpu,
    )


def test_record_overhead(benchmark, randwrite, tmp_path):
    benchmark.pedantic(_record_overhead, args=(randwrite, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info.update(RESULTS["record"])


def _record_overhead(randwrite: str, tmp_path: Path) -> None:
    plain, plain_cpu = min(_plain(randwrite) for _ in range(2))
    best = None
    for _ in range(2):
        rec, t0, t1, cpu = _recorded(randwrite, tmp_path)
        took = (t1 - t0) / 1e9
        if best is None or took < best[0]:
            best = (took, rec, t0, t1, cpu)
    took, rec, t0, t1, cpu = best
    # The timed phase is the end of the run (the program exits right after it): its intervals are
    # those that ended within the phase's length of the recording's end (the first may include
    # the end of the populate phase).
    ends = rec.interval_end_ns.astype(np.float64) / 1e9
    per = rec.dirty_per_interval()
    first = int(np.searchsorted(ends, ends[-1] - took - 1e-9))
    dirty = int(per[first:].sum())
    scan = rec.scan_ns[first:] / 1e9
    RESULTS["record"] = dict(
        plain_s=plain, recorded_s=took, slowdown=took / plain, intervals=int(len(scan)),
        harvest_ms_mean=float(scan.mean() * 1e3), harvest_ms_max=float(scan.max() * 1e3),
        dirty_pages=dirty, cost_per_page_us=(took - plain) / max(dirty, 1) * 1e6,
        harvest_ns_per_dirty_page=float(rec.scan_ns[first:].sum()) / max(dirty, 1),
        plain_cpu_s=plain_cpu, recorded_cpu_s=cpu, writes_per_dirty=WRITES / max(dirty, 1),
    )


def _region():
    m = mmap.mmap(-1, GIB_MIB << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    a = np.frombuffer(m, dtype=np.uint8)
    a[::PAGE] = 1  # populate
    return m, a


def test_realtracker_costs(benchmark):
    benchmark.pedantic(_realtracker_costs, rounds=1, iterations=1)
    benchmark.extra_info.update(RESULTS["realtracker"])


def _realtracker_costs() -> None:
    m, a = _region()
    n = a.size // PAGE
    best = {}
    for _ in range(3):
        t = time.process_time()
        a[::PAGE] = 2
        untracked = time.process_time() - t
        with RealTracker(a) as tr:
            t = time.process_time()
            h0 = tr.harvest()  # nothing written
            empty = time.process_time() - t
            a[:: PAGE * 100] = 3  # 1 %
            t = time.process_time()
            h1 = tr.harvest()
            one = time.process_time() - t
            t = time.process_time()
            a[::PAGE] = 4  # every page: one first write each
            tracked = time.process_time() - t
            t = time.process_time()
            h100 = tr.harvest()
            full = time.process_time() - t
        assert h0.size == 0 and h1.size == -(-n // 100) and h100.size == n
        for k, v in (("untracked", untracked), ("tracked", tracked), ("empty", empty), ("one", one), ("full", full)):
            best[k] = min(best.get(k, float("inf")), v)
    RESULTS["realtracker"] = dict(
        pages=n, first_write_us=(best["tracked"] - best["untracked"]) / n * 1e6,
        harvest_full_ns_per_page=best["full"] / n * 1e9, harvest_empty_ns_per_page=best["empty"] / n * 1e9,
        harvest_1pct_ns_per_page=best["one"] / n * 1e9, harvest_full_ms=best["full"] * 1e3,
    )
    del a, tr  # the mapping goes with them


def teardown_module(module) -> None:
    if not RESULTS:
        return
    out = ["", "Real dirty tracking, measured in this run:"]
    r = RESULTS.get("realtracker")
    if r:
        out += [f"  RealTracker over 1 GiB ({r['pages']:,} pages):",
                f"    first write to a protected page       {r['first_write_us']:.2f} us",
                f"    harvest, 100 % written                {r['harvest_full_ns_per_page']:.1f} ns per written page "
                f"({r['harvest_full_ms']:.1f} ms)",
                f"    harvest, 1 % written                  {r['harvest_1pct_ns_per_page']:.2f} ns per page of the region",
                f"    harvest, nothing written              {r['harvest_empty_ns_per_page']:.2f} ns per page of the region"]
    r = RESULTS.get("record")
    if r:
        out += [f"  dirtylog record, random page writes over 1 GiB ({WRITES:,} writes, 100 ms intervals):",
                f"    timed phase plain / recorded          {r['plain_s']:.2f} s / {r['recorded_s']:.2f} s: "
                f"slowdown x{r['slowdown']:.2f}",
                f"    harvest time per interval             {r['harvest_ms_mean']:.1f} ms mean, "
                f"{r['harvest_ms_max']:.1f} ms max ({r['intervals']} intervals)",
                f"    dirty pages recorded in the phase     {r['dirty_pages']:,}",
                f"    cost per written page                 {r['cost_per_page_us']:.2f} us of the program's time, "
                f"+ {r['harvest_ns_per_dirty_page']:.0f} ns of the recorder's harvest",
                f"    CPU time (whole run) plain / recorded {r['plain_cpu_s']:.2f} s / {r['recorded_cpu_s']:.2f} s: "
                f"x{r['recorded_cpu_s'] / max(r['plain_cpu_s'], 1e-9):.2f}",
                f"    writes per recorded dirty page        {r['writes_per_dirty']:.2f}"]
    r = RESULTS.get("record_pid")
    if r:
        out += [f"  dirtylog record --pid (uffd injected), the same program from its timed phase:",
                f"    timed phase plain / recorded          {r['plain_s']:.2f} s / {r['recorded_s']:.2f} s: "
                f"slowdown x{r['slowdown']:.2f}",
                f"    harvest time per interval (outside)   {r['harvest_ms_mean']:.1f} ms mean, "
                f"{r['harvest_ms_max']:.1f} ms max ({r['intervals']} intervals)",
                f"    dirty pages recorded                  {r['dirty_pages']:,}",
                f"    cost per written page                 {r['cost_per_page_us']:.2f} us of the program's time, "
                f"+ {r['harvest_ns_per_dirty_page']:.0f} ns of the recorder's harvest",
                f"    CPU time (whole run) plain / recorded {r['plain_cpu_s']:.2f} s / {r['recorded_cpu_s']:.2f} s: "
                f"x{r['recorded_cpu_s'] / max(r['plain_cpu_s'], 1e-9):.2f} (the recorder, outside: "
                f"{r['recorder_cpu_s']:.2f} s)"]
    sys.stdout.write("\n".join(out) + "\n")
