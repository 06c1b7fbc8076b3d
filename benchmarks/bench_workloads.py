"""Workload benchmark: writes generated and tracked in C, against numpy generation + Tracker.write.

For each workload (uniform, hotspot, Zipf) on a 16 GiB guest (2**22 pages of
4 KiB, a WP tracker started fresh for every round), it measures

* fused:  ``workload.run(tracker, t, t + 1)``: the C core generates the pages
  into a stack buffer and feeds the tracker, no Python per write and no array;
* numpy:  the same number of page indices drawn with numpy (``rng.integers`` for
  uniform; a coin and two ``integers`` over a precomputed scattered hot set for
  hotspot; inverse-CDF ``searchsorted`` over a precomputed table for Zipf, the
  tables built outside the timing) and then ``tracker.write(pages)``;
* generation alone, both ways (``bound.generate`` against the numpy draw).

It reports writes per second of each and the ratio fused / numpy, measured in
the same run (``benchmark.extra_info`` and a printed table). There are no timing
thresholds. Run:

    pytest benchmarks/bench_workloads.py --benchmark-only -s
    python benchmarks/bench_workloads.py           # the table only

``DIRTYLOG_BENCH_WRITES`` (default 4000000) sets the writes per round and
``DIRTYLOG_BENCH_PAGES`` (default 4194304) the guest's pages.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

import dirtylog as d
from dirtylog.render import Column, output_width, plain, table
from dirtylog.units import format_size

WRITES = int(os.environ.get("DIRTYLOG_BENCH_WRITES", 4_000_000))
PAGES = int(os.environ.get("DIRTYLOG_BENCH_PAGES", 2**22))
ROUNDS = 5
RESULTS: Dict[str, Dict[str, float]] = {}


def _numpy_uniform(pages: int, seed: int) -> Callable[[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.integers(0, pages, size=n, dtype=np.uint64)


def _numpy_hotspot(pages: int, seed: int, hot_fraction: float = 0.1, hot_share: float = 0.9) -> Callable[[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(pages).astype(np.uint64)  # scattered hot set, built outside the timing
    hot = max(1, round(hot_fraction * pages))

    def draw(n: int) -> np.ndarray:
        is_hot = rng.random(n) < hot_share
        idx = np.where(is_hot, rng.integers(0, hot, size=n), rng.integers(hot, pages, size=n))
        return perm[idx]

    return draw


def _numpy_zipf(pages: int, seed: int, s: float = 1.0) -> Callable[[int], np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(pages).astype(np.uint64)
    cdf = np.cumsum(np.arange(1, pages + 1, dtype=np.float64) ** -s)
    cdf /= cdf[-1]

    def draw(n: int) -> np.ndarray:
        ranks = np.searchsorted(cdf, rng.random(n), side="right")
        return perm[np.minimum(ranks, pages - 1)]

    return draw


CASES: Dict[str, Tuple[Callable[[float], d.Workload], Callable[[int, int], Callable[[int], np.ndarray]]]] = {
    "uniform": (lambda rate: d.Uniform(rate, seed=1), _numpy_uniform),
    "hotspot": (lambda rate: d.Hotspot(rate, hot_fraction=0.1, hot_share=0.9, seed=1), _numpy_hotspot),
    "zipf": (lambda rate: d.Zipf(rate, s=1.0, seed=1), _numpy_zipf),
}


def _fresh_tracker() -> d.Tracker:
    t = d.Tracker(PAGES, mode="wp")
    t.start()
    return t


def _median_time(fn: Callable[[], object], setup: Callable[[], object] = lambda: None, rounds: int = ROUNDS) -> float:
    times: List[float] = []
    for _ in range(rounds):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, fused_seconds: float = 0.0) -> Dict[str, float]:
    """Time the four variants for one case; ``fused_seconds`` (if > 0) replaces the fused timing."""
    make, numpy_factory = CASES[name]
    w = make(float(WRITES))  # WRITES per second of guest time: one round = 1 s
    bound = w.bind(PAGES)
    assert bound.count(0, 1) == WRITES
    draw = numpy_factory(PAGES, 1)
    state: Dict[str, d.Tracker] = {}

    def setup() -> None:
        state["t"] = _fresh_tracker()

    if fused_seconds <= 0:
        fused_seconds = _median_time(lambda: w.run(state["t"], 0.0, 1.0), setup)
    numpy_seconds = _median_time(lambda: state["t"].write(draw(WRITES)), setup)
    gen_c = _median_time(lambda: bound.generate(0.0, 1.0))
    gen_np = _median_time(lambda: draw(WRITES))
    row = {
        "writes": WRITES,
        "pages": PAGES,
        "fused_writes_per_s": WRITES / fused_seconds,
        "numpy_writes_per_s": WRITES / numpy_seconds,
        "ratio": numpy_seconds / fused_seconds,
        "generate_c_per_s": WRITES / gen_c,
        "generate_numpy_per_s": WRITES / gen_np,
        "generate_ratio": gen_np / gen_c,
    }
    RESULTS[name] = row
    return row


def print_table() -> None:
    """The results, by dirtylog's own table renderer (as the other benchmarks' summary tables),
    fitted to the terminal."""
    head = [Column("workload", justify="left"), Column("fused C"), Column("numpy+write"), Column("ratio"),
            Column("gen C", priority=3), Column("gen numpy", priority=2), Column("gen ratio", priority=1)]
    rows = [([name, f"{r['fused_writes_per_s'] / 1e6:.1f} M/s", f"{r['numpy_writes_per_s'] / 1e6:.1f} M/s",
              f"{r['ratio']:.1f}x", f"{r['generate_c_per_s'] / 1e6:.1f} M/s",
              f"{r['generate_numpy_per_s'] / 1e6:.1f} M/s", f"{r['generate_ratio']:.1f}x"], "")
            for name, r in RESULTS.items()]
    title = (f"writes per second, fused C against numpy + Tracker.write, and generation alone (guest: {PAGES:,} pages, "
             f"{format_size(PAGES * 4096)}, {WRITES:,} writes per round, WP tracker)")
    print()
    print(plain(table(head, rows, output_width(), title=title)))


@pytest.fixture(scope="module", autouse=True)
def _table():
    yield
    if RESULTS:
        print_table()


@pytest.mark.parametrize("name", list(CASES))
def test_fused_vs_numpy(benchmark, name):
    make, _ = CASES[name]
    w = make(float(WRITES))
    w.bind(PAGES)
    state: Dict[str, d.Tracker] = {}

    def setup():
        state["t"] = _fresh_tracker()
        return (), {}

    benchmark.pedantic(lambda: w.run(state["t"], 0.0, 1.0), setup=setup, rounds=ROUNDS, iterations=1)
    assert state["t"].stats.writes == WRITES
    row = measure(name, fused_seconds=benchmark.stats.stats.median)
    benchmark.extra_info.update(row)


if __name__ == "__main__":
    for case in CASES:
        measure(case)
    print_table()
