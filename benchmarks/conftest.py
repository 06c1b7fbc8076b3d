"""Shared fixtures of the dirtylog benchmarks, and the ratio table printed at the end.

Run them with::

    python -m pytest benchmarks/ --benchmark-only

On a machine shared with other work, time with CPU time instead of wall time
(``--benchmark-timer time.process_time``): the rounds a process spends descheduled
then do not count, which keeps the ratios stable under load.

The plain test run never sees these files: pyproject's ``testpaths`` is
``tests``, and the benchmark modules are named ``bench_*.py``, which this
conftest collects only when the benchmarks directory (or a file in it) is named
on the command line.

Every benchmark records its time per operation in a session-wide table; the
ratios (tracker / bare C loop, reference / tracker) are computed from figures
measured in the same run and printed at the end beside dirtylog's design targets (TARGETS below).
The targets are reported, never asserted.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

from dirtylog.render import Column, plain, table, wrap

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------- collection


def _named_on_command_line(config: pytest.Config) -> bool:
    for arg in config.args:
        p = Path(arg.split("::", 1)[0])
        p = (Path(config.invocation_params.dir) / p).resolve() if not p.is_absolute() else p.resolve()
        if p == HERE or HERE in p.parents:
            return True
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_") or file_path.parent != HERE:
        return None
    if parent.session.isinitpath(file_path):
        return None  # named explicitly: pytest's own collector takes it
    if not _named_on_command_line(parent.config):
        return None
    return pytest.Module.from_parent(parent, path=file_path)


# ---------------------------------------------------------------------------- workload data

WRITE_BATCH = 1 << 20  # writes per batch (batches of 1 M writes)
BATCHES_PER_ROUND = 4  # a round: harvest (untimed), then this many batches (timed)
GUESTS = {"4GiB": 1 << 20, "128GiB": 1 << 25, "1TiB": 1 << 28}  # 4 KiB pages
STREAMS = ("uniform", "skewed", "sequential")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # odd: k -> k * GOLDEN mod 2^b is a bijection on [0, 2^b)


@functools.lru_cache(maxsize=None)
def write_batches(pages: int, stream: str) -> Tuple[np.ndarray, ...]:
    """The round's batches of page indices (contiguous uint64), made once per session.

    uniform     every page equally likely
    skewed      90 % of the writes go to a hot 10 % of the pages, scattered over the
                guest (hot page k is k * GOLDEN mod pages), 10 % anywhere
    sequential  page after page through the guest, wrapping around
    """
    assert pages & (pages - 1) == 0, "the skewed stream's scattering needs a power-of-two guest"
    rng = np.random.default_rng(20240 + pages.bit_length() * 7 + STREAMS.index(stream))
    out = []
    for j in range(BATCHES_PER_ROUND):
        if stream == "uniform":
            b = rng.integers(0, pages, size=WRITE_BATCH, dtype=np.uint64)
        elif stream == "skewed":
            hot = max(1, pages // 10)
            b = rng.integers(0, pages, size=WRITE_BATCH, dtype=np.uint64)
            is_hot = rng.random(WRITE_BATCH) < 0.9
            k = rng.integers(0, hot, size=int(is_hot.sum()), dtype=np.uint64)
            with np.errstate(over="ignore"):
                b[is_hot] = (k * GOLDEN) & np.uint64(pages - 1)
        elif stream == "sequential":
            b = (np.arange(j * WRITE_BATCH, (j + 1) * WRITE_BATCH, dtype=np.uint64)) % np.uint64(pages)
        else:
            raise ValueError(stream)
        b = np.ascontiguousarray(b, dtype=np.uint64)
        b.flags.writeable = False
        out.append(b)
    return tuple(out)


# The first-write stream (issue 11): every write finds its page armed, as just after
# a harvest. Each batch holds WRITE_BATCH distinct pages in random order (slices of
# seeded permutations of the guest's pages) and is written right after a harvest.
FIRST_GUESTS = ("4GiB", "128GiB")


@functools.lru_cache(maxsize=None)
def first_write_batches(pages: int) -> Tuple[np.ndarray, ...]:
    rng = np.random.default_rng(4111 + pages.bit_length())
    out: List[np.ndarray] = []
    perm = rng.permutation(pages).astype(np.uint64)
    at = 0
    for _ in range(BATCHES_PER_ROUND):
        if at + WRITE_BATCH > perm.size:
            perm, at = rng.permutation(pages).astype(np.uint64), 0
        b = np.ascontiguousarray(perm[at : at + WRITE_BATCH])
        at += b.size
        b.flags.writeable = False
        out.append(b)
    return tuple(out)


HARVEST_GUEST = "128GiB"
DENSITIES = {"0.1%": 0.001, "10%": 0.10, "100%": 1.0}


@functools.lru_cache(maxsize=None)
def dirty_pages(pages: int, density: float) -> np.ndarray:
    """Scattered distinct dirty pages (sorted uint64), about `density` of the guest."""
    if density >= 1.0:
        return np.arange(pages, dtype=np.uint64)
    rng = np.random.default_rng(77)
    return np.flatnonzero(rng.random(pages) < density).astype(np.uint64)


# ---------------------------------------------------------------------------- results

TARGETS = {"wp": 1.5, "clear": 1.5, "pml": 1.7, "ring": 2.0, "harvest": 1.5}
# issue 11: first writes against the bare loop, by mode and guest
FIRST_TARGETS = {("wp", "4GiB"): 2.0, ("wp", "128GiB"): 2.0, ("pml", "4GiB"): 1.8, ("pml", "128GiB"): 1.8,
                 ("ring", "4GiB"): 2.0, ("ring", "128GiB"): 2.2}
REFERENCE_TARGET = 5.0


@dataclass
class Results:
    """ns per operation by (table, case, implementation)."""

    ns: Dict[Tuple[str, str, str], float] = field(default_factory=dict)
    extra: Dict[Tuple[str, str, str], str] = field(default_factory=dict)

    def record(self, table: str, case: str, impl: str, ns: float) -> None:
        self.ns[(table, case, impl)] = ns

    def get(self, table: str, case: str, impl: str) -> Optional[float]:
        return self.ns.get((table, case, impl))

    def ratio(self, table: str, case: str, num: str, den: str) -> Optional[float]:
        a, b = self.get(table, case, num), self.get(table, case, den)
        return a / b if a is not None and b else None


_RESULTS_KEY = pytest.StashKey[Results]()


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config) -> Results:
    return pytestconfig.stash.setdefault(_RESULTS_KEY, Results())


def per_op_ns(benchmark, ops_per_round: int, which: str = "min") -> float:
    """Time of a round divided by its operations, in ns (NaN under --benchmark-disable).

    ``min`` (the default, used for the ratios) is the best of the rounds: on a shared
    2-core machine other processes only ever add time, so the minimum is the most
    repeatable estimate of the code's own cost. ``median`` goes to extra_info too.
    """
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return math.nan
    return getattr(stats.stats, which) / ops_per_round * 1e9


# ---------------------------------------------------------------------------- the table at the end


def _fmt(x: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}{suffix}"


def _verdict(ok: Optional[bool]) -> str:
    return "" if ok is None else ("ok" if ok else "MISSED")


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own (wide) tables: the run ends with this one
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    res = config.stash.get(_RESULTS_KEY, None)
    if res is None or not res.ns:
        return
    tr = terminalreporter
    tr.section("dirtylog: tracker vs bare C loop vs numpy reference")  # within 80 columns with its rule
    cpu = os.cpu_count()
    tr.write_line(plain(wrap("", [(f"(best of rounds, same run; {cpu} CPUs; ns per write or per harvest; targets "
                                   "are design goals, reported, never asserted)", "")], -1, _width(tr))))

    # write table
    rows: List[List[str]] = []
    cases = sorted({c for (t, c, _) in res.ns if t == "write"}, key=_write_order)
    for case in cases:
        mode, guest, stream = case.split("/")
        tr_ns = res.get("write", case, "tracker")
        bare = res.get("write-bare", f"{guest}/{stream}", "bare")
        ref = res.get("write", case, "reference")
        med = res.get("write", case, "paired_median")
        q1, q3 = res.get("write", case, "paired_q1"), res.get("write", case, "paired_q3")
        r_bare = tr_ns / bare if tr_ns and bare else None
        r_ref = ref / tr_ns if ref and tr_ns else None
        tgt = TARGETS.get(mode)
        ok = None
        if med is not None or r_ref is not None:
            ok = (med is None or med <= tgt) and (r_ref is None or r_ref >= REFERENCE_TARGET)
        if tr_ns is None:
            continue
        spread = f"{q1:.2f}-{q3:.2f}" if q1 is not None and q3 is not None else "-"
        rows.append([mode, guest, stream, _fmt(tr_ns), _fmt(bare), _fmt(ref, ".0f"), _fmt(r_bare, ".2f", "x"),
                     _fmt(med, ".2f", "x"), spread, f"<= {tgt}x", _fmt(r_ref, ".0f", "x"), _verdict(ok)])
    if rows:
        head = [Column("mode"), Column("guest"), Column("stream"), Column("tracker ns", priority=3),
                Column("bare ns", priority=4), Column("ref ns", priority=5), Column("best/best", priority=2),
                Column("paired median", short="median"), Column("IQR", priority=1), Column("target"),
                Column("ref/tracker", priority=1, short="ref/trk"), Column("")]
        _table(tr, "write throughput in steady state (ns per write, best round; each round paired with an adjacent "
                   "bare-loop round; the target applies to the paired median)", head, rows)

    rows = []
    for case in sorted({c for (t, c, _) in res.ns if t == "first-write"}, key=_write_order):
        mode, guest, stream = case.split("/")
        tr_ns = res.get("first-write", case, "tracker")
        bare = res.get("first-write", case, "bare_ns_per_write")
        best = res.get("first-write", case, "best_ratio")
        med = res.get("first-write", case, "paired_median")
        q1, q3 = res.get("first-write", case, "paired_q1"), res.get("first-write", case, "paired_q3")
        tgt = FIRST_TARGETS.get((mode, guest)) if stream == "-" else None  # the rows: no marks
        ok = None if med is None or tgt is None else med <= tgt
        spread = f"{q1:.2f}-{q3:.2f}" if q1 is not None and q3 is not None else "-"
        rows.append([mode, guest, stream, _fmt(tr_ns), _fmt(bare), _fmt(best, ".2f", "x"), _fmt(med, ".2f", "x"),
                     spread, f"<= {tgt}x" if tgt else "-", _verdict(ok)])
    if rows:
        head = [Column("mode"), Column("guest"), Column("marks"), Column("tracker ns", priority=3),
                Column("bare ns", priority=4), Column("best/best", priority=2), Column("paired median", short="median"),
                Column("IQR", priority=1), Column("target"), Column("")]
        _table(tr, "first writes: 1M distinct pages right after a harvest (ns per write, best round; each round "
                   "paired with an adjacent bare-loop round; the target applies to the paired median)", head, rows)
    rows = []
    for case in sorted({c for (t, c, _) in res.ns if t == "call"}):  # each case once (two records a case)
        calls = res.get("call", case, "locked")
        bare = res.get("call", case, "unlocked")
        rows.append([case, _fmt(calls, ".0f"), _fmt(bare, ".0f"), _fmt(calls and bare and calls - bare, ".0f")])
    if rows:
        head = [Column("batch"), Column("Tracker.write ns/call"), Column("without the lock"),
                Column("lock cost ns/call")]
        _table(tr, "per-call cost of Tracker.write and of its thread-safety lock", head, rows)

    rows = []
    for case in sorted({c for (t, c, _) in res.ns if t == "harvest"}, key=lambda c: DENSITIES.get(c.split("/")[-1], 0)):
        core = res.get("harvest", case, "tracker")
        api = res.get("harvest", case, "tracker-api")
        bare = res.get("harvest", case, "bare")
        ref = res.get("harvest", case, "reference")
        npages = res.extra.get(("harvest", case, "pages"), "")
        r_bare = core / bare if core and bare else None
        r_api = api / bare if api and bare else None
        r_ref = ref / core if ref and core else None
        ok = None
        if r_bare is not None or r_ref is not None:
            ok = (r_bare is None or r_bare <= TARGETS["harvest"]) and (r_ref is None or r_ref >= REFERENCE_TARGET)
        rows.append([case, npages, _fmt(core and core / 1e6, ".3f"), _fmt(api and api / 1e6, ".3f"),
                     _fmt(bare and bare / 1e6, ".3f"), _fmt(ref and ref / 1e6, ".1f"), _fmt(r_bare, ".2f", "x"),
                     _fmt(r_api, ".2f", "x"), "<= 1.5x", _fmt(r_ref, ".0f", "x"), _verdict(ok)])
    if rows:
        head = [Column("guest/density"), Column("pages", priority=1), Column("tracker ms", priority=3),
                Column("API ms", priority=4), Column("bare ms", priority=5), Column("ref ms", priority=6),
                Column("tracker/bare", short="trk/bare"), Column("API/bare"), Column("target"),
                Column("ref/tracker", priority=2, short="ref/trk"), Column("")]
        _table(tr, "harvest (ms per harvest; tracker = dl_tracker_harvest into a caller buffer, "
                   "API = Tracker.harvest() incl. the result array)", head, rows)


def _write_order(case: str) -> tuple:
    mode, guest, stream = case.split("/")
    stream = {"-": STREAMS[0], "stale": STREAMS[1]}.get(stream, stream)  # first-write rows: marks
    return (("wp", "pml", "ring", "clear").index(mode) if mode in ("wp", "pml", "ring", "clear") else 9,
            list(GUESTS).index(guest) if guest in GUESTS else 9,
            STREAMS.index(stream) if stream in STREAMS else 9)


def _table(tr, title: str, head: List[Column], rows: List[List[str]]) -> None:
    """One table of the summary, by dirtylog's own renderer: fitted to the terminal as the command
    line's tables are (the columns of the highest priority go first; the caption names them)."""
    tr.write_line("")
    tr.write_line(plain(table(head, [(r, "") for r in rows], _width(tr), title=title)))


def _width(tr) -> int:
    """The terminal's width (pytest's: $COLUMNS, else the terminal's, else 80)."""
    return tr.config.get_terminal_writer().fullwidth
