"""Parallel sweeps of migrations: the capacity planner's table.

>>> from dirtylog.sweeps import grid, sweep
>>> configs = grid(memory="1GiB", workload=["hotspot:200MiB/s", "hotspot:1GiB/s"],
...                bandwidth=["1Gbit/s", "10Gbit/s"], downtime_limit=["100ms", "300ms"])
>>> results = sweep(configs)                                  # doctest: +SKIP
>>> print(results)                        # the table, fitted to the terminal  # doctest: +SKIP
>>> results.to_csv("plan.csv")                                # doctest: +SKIP
>>> frame = pandas.DataFrame(results.records())               # doctest: +SKIP

Every configuration is one :func:`dirtylog.simulate` call, run in its own task
of a :class:`concurrent.futures.Executor`: a ``ProcessPoolExecutor`` by default
(one process per core), or any executor you pass, such as a
``ThreadPoolExecutor`` or a dask.distributed cluster's
(``client.get_executor()``), which spreads a large sweep over many machines.
Tasks get a :class:`SweepConfig` (workloads travel as spec strings or as
workload objects, which pickle without their C state) and return a
:class:`SweepResult`, both plain picklable dataclasses.

Non-converging configurations are where sweeps spend their time (QEMU iterates
forever): a sweep gives up on a configuration after ``give_up_after`` of
simulated time (by default 10 minutes, or 20 times the time to send memory once
if that is longer: :func:`default_give_up`) unless its policy sets a timeout,
and reports it as "does not converge".
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import mmap
import os
import struct
import tempfile
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import wait as _wait
from concurrent.futures import FIRST_COMPLETED
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from .config import MigrationConfig, default_give_up
from .errors import ConfigError, SweepError
from .units import format_dirty_rate, format_rate, format_size, format_time

__all__ = ["SweepConfig", "SweepResult", "SweepResults", "SweepBar", "grid", "sweep", "run_config", "default_give_up",
           "VERDICTS", "RunProgress", "run_fraction"]

#: Columns the table adds with advice (sweep(advise=True)): what would make it converge.
ADVICE_COLUMNS = ("least bw", "least limit", "auto-conv", "dirty quota", "post-copy")

#: Verdicts, best first.
VERDICTS = ("converges", "post-copy", "forced", "does not converge", "lost")

ProgressLike = Union[bool, None, Callable[[float, int, Optional["SweepResult"]], None]]


#: One migration of a sweep: :class:`dirtylog.config.MigrationConfig` (the arguments of
#: :func:`dirtylog.simulate`, flattened), under the name sweeps have always used.
SweepConfig = MigrationConfig


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one configuration (times in seconds, sizes in bytes, rates in bytes/s).

    ``verdict``: "converges" (completed within the downtime limit), "post-copy"
    (completed after switching to post-copy), "forced" (a limit forced the
    stop-and-copy: completed, with a longer downtime), "does not converge" (rolled
    back, or given up after ``give_up_after``) or "lost" (a failure during
    post-copy lost the VM).
    ``guest_slowdown`` is the share (%) of vCPU time lost to tracking exits.
    ``rounds`` counts the pre-copy rounds sent while the guest ran (round 0
    included, and a round a rollback or the give-up cut short), as everywhere in
    dirtylog (``MigrationReport.precopy_rounds``). ``downtime`` is NaN when the guest never
    switched over. ``options`` holds the policy knobs the configuration set.
    """

    index: int
    workload: str
    memory: int
    bandwidth: float
    downtime_limit: float
    tracker: str
    vcpus: int
    status: str
    converged: bool
    verdict: str
    total_time: float
    downtime: float
    transferred: int
    rounds: int
    dirty_sync_count: int
    expected_downtime: float
    guest_writes: int
    exits: int
    faults: int
    pml_full_exits: int
    ring_full_exits: int
    splits: int
    kicks: int
    guest_lost: float
    guest_slowdown: float
    verified: Optional[bool]
    reason: str
    wall_time: float
    options: Dict[str, Any] = field(default_factory=dict)
    # With sweep(advise=True), for a configuration that does not converge: the answers of
    # dirtylog.advice (Advice.columns()): least bandwidth (bytes/s), least downtime limit (s),
    # the throttle auto-converge ends at (%), the largest per-vCPU dirty quota (bytes/s) and
    # post-copy's degraded window (s); None when not found or not asked.
    advice_bandwidth: Optional[float] = None
    advice_downtime_limit: Optional[float] = None
    advice_auto_converge_throttle: Optional[float] = None
    advice_dirty_limit: Optional[float] = None
    advice_postcopy_degraded: Optional[float] = None
    report: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """Every field but ``report``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "report"}


def _verdict(report: Any) -> str:
    if report.status == "lost":
        return "lost"
    if report.status == "completed":
        if report.postcopy_bytes or report.degraded_window > 0:
            return "post-copy"
        return "converges" if report.converged else "forced"
    return "does not converge"


def run_config(config: SweepConfig, index: int = 0, keep_report: bool = False, advise: bool = False,
               progress: Optional[Callable[[Any], None]] = None) -> SweepResult:
    """Run one configuration (in a worker) and summarize it (with ``advise``: the advice too, if it
    does not converge; ``progress``: the hook of :meth:`dirtylog.Migration.run`, called as it runs)."""
    from .migration import simulate

    t0 = time.perf_counter()
    try:
        r = simulate(**config.build(), advise=advise, progress=progress)
    finally:
        close = getattr(progress, "close", None)
        if close is not None:
            close()
    wall = time.perf_counter() - t0
    cols: Dict[str, Any] = r.advice.columns() if r.advice is not None else {}
    ts = r.tracker_stats
    faults = int(ts.get("faults", 0))
    pml = int(ts.get("pml_full_exits", 0))
    ring = int(ts.get("ring_full_exits", 0))
    denom = r.total_time * r.vcpus
    return SweepResult(
        index=index,
        workload=config.workload_label(),
        memory=r.memory,
        bandwidth=r.bandwidth,
        downtime_limit=r.downtime_limit,
        tracker=r.tracker,
        vcpus=r.vcpus,
        status=r.status,
        converged=r.converged,
        verdict=_verdict(r),
        total_time=r.total_time,
        downtime=r.downtime,
        transferred=r.transferred,
        rounds=r.precopy_rounds,
        dirty_sync_count=r.dirty_sync_count,
        expected_downtime=r.expected_downtime,
        guest_writes=r.guest_writes,
        exits=faults + pml + ring,
        faults=faults,
        pml_full_exits=pml,
        ring_full_exits=ring,
        splits=int(ts.get("splits", 0)),
        kicks=int(ts.get("kicks", 0)),
        guest_lost=r.guest_lost,
        guest_slowdown=100.0 * r.guest_lost / denom if denom > 0 else 0.0,
        verified=r.verified,
        reason=r.reason,
        wall_time=wall,
        options=config.knobs(),
        report=r if keep_report else None,
        **cols,
    )


def _task(args: Tuple[SweepConfig, int, bool, bool, Optional["RunProgress"]]) -> SweepResult:
    return run_config(*args)


# ------------------------------------------------------------------------------------ progress of runs in flight

#: Wall seconds between two reports of a run in flight (:class:`RunProgress`).
PROGRESS_INTERVAL = 0.25


def run_fraction(m: Any, give_up_after: float) -> float:
    """How far a migration in flight is, in [0, 1): the simulated time it has run against the most it
    can run while the guest runs on the source: the policy's timeout, else ``give_up_after`` (the
    horizon the command line's simulate bar runs against). 0 when there is none."""
    timeout = getattr(m.policy, "timeout", None)
    horizon = timeout if timeout is not None else give_up_after
    if not (horizon > 0) or not math.isfinite(horizon):
        return 0.0
    return min(m.clock / horizon, 0.99)  # a switch-over under way still has its end to run


class RunProgress:
    """The progress hook of one configuration's run in a sweep's task (``Migration.run(progress=...)``):
    every :data:`PROGRESS_INTERVAL` s of wall time it tells the sweep how far the run is
    (:func:`run_fraction`), so that its bar moves within long runs, not only as each one ends.

    In the sweep's own process (``jobs=1``) it calls ``sink(index, fraction)``. Elsewhere it is
    pickled into the task and writes the fraction into its slot of the sweep's progress file
    (:class:`_InFlight`: one float per configuration, mapped into memory), so it works with every
    executor whose workers see this machine's temporary directory: processes, threads, a local dask
    cluster. A worker that cannot open the file (another machine) stays silent: the bar then moves as
    each of its configurations ends. Nothing a worker does here can wait on the sweep."""

    def __init__(self, index: int, give_up_after: float, sink: Optional[Callable[[int, float], None]] = None,
                 path: Optional[str] = None) -> None:
        self.index = index
        self.give_up_after = give_up_after
        self._sink = sink
        self._path = path
        self._map: Optional[mmap.mmap] = None
        self._next = 0.0
        self._off = sink is None and path is None

    def __getstate__(self) -> Dict[str, Any]:  # travels without its mapping or local sink
        state = dict(self.__dict__)
        state.update(_map=None, _sink=None, _next=0.0, _off=self._path is None)
        return state

    def __call__(self, m: Any) -> None:
        if self._off:
            return
        now = time.monotonic()
        if not self._next:
            self._next = now + PROGRESS_INTERVAL  # a run shorter than that says nothing
            return
        if now < self._next:
            return
        self._next = now + PROGRESS_INTERVAL
        f = run_fraction(m, self.give_up_after)
        if self._sink is not None:
            self._sink(self.index, f)
            return
        try:
            if self._map is None:
                with open(str(self._path), "r+b") as fh:
                    self._map = mmap.mmap(fh.fileno(), 0)
            _SLOT.pack_into(self._map, self.index * _SLOT.size, f)
        except (OSError, ValueError, struct.error):  # not on the sweep's machine, or the sweep is over
            self._off = True
            self.close()

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


#: One slot of the progress file: a run's fraction, a native double.
_SLOT = struct.Struct("d")


class _InFlight:
    """The sweep's side of :class:`RunProgress`: a temporary file of one float per configuration,
    mapped into memory, where each run in flight writes how far it is and the sweep reads the sum.
    A slot is written by one worker and read by the sweep: no lock, no connection, no thread."""

    def __init__(self, n: int) -> None:
        fd, self.path = tempfile.mkstemp(prefix="dirtylog-sweep-", suffix=".progress")
        size = _SLOT.size * max(n, 1)
        try:
            with open(fd, "r+b") as fh:  # closes fd
                # Zeros written, not a sparse ftruncate: a full disk fails here (OSError), not with
                # SIGBUS at the first touch of the mapping.
                fh.write(bytes(size))
                fh.flush()
                self._map = mmap.mmap(fh.fileno(), size)
        except BaseException:
            os.unlink(self.path)
            raise

    def hook(self, index: int, give_up_after: float) -> RunProgress:
        return RunProgress(index, give_up_after, path=self.path)

    def total(self, running: Iterable[int]) -> float:
        """The parts done of the runs in flight, by index (each in [0, 0.99], as run_fraction gives it)."""
        parts = (_SLOT.unpack_from(self._map, i * _SLOT.size)[0] for i in running)
        return sum(min(max(f, 0.0), 0.99) for f in parts if math.isfinite(f))

    def close(self) -> None:
        self._map.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


# ------------------------------------------------------------------------------------ configs


def _as_list(x: Any) -> List[Any]:
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        return [x]
    return list(x)


def grid(**axes: Any) -> List[SweepConfig]:
    """The cartesian product of the given values: one :class:`SweepConfig` per combination.

    Each keyword is a :class:`SweepConfig` field; a list (or tuple) is an axis,
    anything else a fixed value. The order is that of the keywords, the last
    varying fastest.
    """
    keys = list(axes)
    values = [_as_list(axes[k]) for k in keys]
    for k, v in zip(keys, values):
        if not v:
            raise ConfigError(f"sweep axis {k!r} is empty")
    return [SweepConfig(**dict(zip(keys, combo))) for combo in itertools.product(*values)]


def _as_config(c: Any) -> SweepConfig:
    if isinstance(c, SweepConfig):
        cfg = c
    elif isinstance(c, dict):
        cfg = SweepConfig(**c)
    else:
        raise TypeError(f"a sweep configuration must be a SweepConfig or a dict, got {type(c).__name__}")
    return cfg


# ------------------------------------------------------------------------------------ results


def _option(r: "SweepResult", name: str) -> Any:
    """A result's policy knob: as the configuration set it, else the policy's default."""
    from .config import KNOB

    return r.options[name] if name in r.options else KNOB[name].default


def _knob_text(name: str, value: Any) -> str:
    from .config import KNOB
    from .units import parse_percent, parse_rate, parse_size, parse_time

    kind = KNOB[name].kind
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if kind == "time":
        return format_time(parse_time(value, allow_inf=True))
    if kind == "rate":
        return format_rate(parse_rate(value), bits=True)
    if kind == "size":
        return format_size(parse_size(value))
    if kind == "percent":
        return f"{parse_percent(value)} %"
    return str(value)


class SweepResults(list):  # of SweepResult
    """The results of a sweep, in the order of the configurations (a list of :class:`SweepResult`)."""

    def varying(self) -> List[str]:
        """The configuration fields (and policy knobs) that differ between results."""
        keys = ("workload", "memory", "bandwidth", "downtime_limit", "tracker", "vcpus")
        out = [k for k in keys if len({getattr(r, k) for r in self}) > 1]
        return out + [k for k in self.knobs() if k not in out and len({repr(_option(r, k)) for r in self}) > 1]

    def knobs(self) -> List[str]:
        """The policy knobs any configuration set (but those with their own field, such as
        ``downtime_limit``), in the order of :data:`dirtylog.config.KNOBS`."""
        from .config import KNOBS

        given = {k for r in self for k in r.options}
        own = {f.name for f in fields(SweepResult)}
        return [k.name for k in KNOBS if k.name in given and k.name not in own]

    def table_rows(self, columns: Optional[Sequence[str]] = None) -> Tuple[List[str], List[List[str]]]:
        """Headers and formatted cells of the planning table."""
        axes = list(columns) if columns is not None else (self.varying() or ["workload", "bandwidth", "downtime_limit"])
        head_names = {"workload": "workload", "memory": "memory", "bandwidth": "bandwidth",
                      "downtime_limit": "downtime limit", "tracker": "tracker", "vcpus": "vCPUs"}
        fmt: Dict[str, Callable[[Any], str]] = {
            "workload": str, "memory": format_size, "bandwidth": lambda b: format_rate(b, bits=True),
            "downtime_limit": format_time, "tracker": str, "vcpus": str,
        }
        headers = [head_names.get(a, a.replace("_", " ")) for a in axes] + [
            "rounds", "total time", "downtime", "transferred", "verdict"]
        advised = any(r.advice_bandwidth is not None or r.advice_downtime_limit is not None
                      or r.advice_auto_converge_throttle is not None or r.advice_dirty_limit is not None
                      or r.advice_postcopy_degraded is not None for r in self)
        if advised:
            # what would converge: the least bandwidth, or the least downtime limit, or auto-converge
            # (its end throttle), or a dirty limit (its quota), or post-copy (its degraded window)
            headers += list(ADVICE_COLUMNS)

        def opt(x: Optional[float], f: Callable[[float], str]) -> str:
            return "-" if x is None else f(x)

        rows = []
        for r in self:
            row = [fmt[a](getattr(r, a)) if a in fmt else _knob_text(a, _option(r, a)) for a in axes] + [
                str(r.rounds),
                format_time(r.total_time),
                format_time(r.downtime) if r.status == "completed" and r.downtime == r.downtime else "-",
                format_size(r.transferred),
                r.verdict,
            ]
            if advised:
                row += [opt(r.advice_bandwidth, lambda b: format_rate(b, bits=True)),
                        opt(r.advice_downtime_limit, format_time),
                        opt(r.advice_auto_converge_throttle, lambda t: f"{t:.0f} %"),
                        opt(r.advice_dirty_limit, format_dirty_rate),
                        opt(r.advice_postcopy_degraded, format_time)]
            rows.append(row)
        return headers, rows

    def table_lines(self, columns: Optional[Sequence[str]] = None, width: Optional[int] = None,
                    caption: str = "") -> List[Any]:
        """The planning table as :mod:`dirtylog.render` lines (the verdicts styled), with ``caption`` and
        then what the rounds and advice columns hold, for those of them the width leaves."""
        from .render import ROUNDS_MEANING, Column, table

        headers, rows = self.table_rows(columns)
        nax = headers.index("rounds")
        v = headers.index("verdict")
        shorts = {"downtime limit": "limit", "total time": "total", "bandwidth": "link", "transferred": "sent"}
        # dropped first in a narrow terminal: rounds, transferred, then the advice columns, the least
        # used first (with advice the kept columns alone are 85 wide: at 80 the table showed 88-column rows)
        drop = {"rounds": 5, "transferred": 4, "dirty quota": 3, "post-copy": 2, "auto-conv": 1, "least limit": 1,
                "least bw": 1}
        # the advice columns: what would make a configuration that does not converge converge, found by
        # simulation as `dirtylog advise` finds it ("least bw" is dropped last: it says so for them all)
        notes = {"rounds": ROUNDS_MEANING,
                 "least bw": "for a configuration that does not converge, the least bandwidth that makes it "
                             "converge at its downtime limit (found by simulation, see 'dirtylog advise')",
                 "least limit": "the least downtime limit that makes it converge at its bandwidth",
                 "auto-conv": "the throttle auto-converge ends at when it makes it converge",
                 "dirty quota": "the largest per-vCPU dirty limit that makes it converge",
                 "post-copy": "post-copy's degraded window"}
        cols = [Column(h, "left" if h in ("workload", "verdict") else "right", 0 if i < nax else
                       drop.get(h, 0), shorts.get(h, ""), notes.get(h, "")) for i, h in enumerate(headers)]
        styles = {"converges": "good", "post-copy": "good", "forced": "warn", "does not converge": "bad",
                  "lost": "bad"}
        return table(cols, [(row, [styles.get(r.verdict, "") if i == v else "" for i in range(len(row))])
                            for r, row in zip(self, rows)], width, caption=caption)

    def table(self, columns: Optional[Sequence[str]] = None, width: Optional[int] = None) -> str:
        """The planning table as plain text: the varying parameters, total time, downtime and verdict
        (``width``: fitted to that many columns; None: every column), and what its rounds and advice
        columns hold."""
        from .render import plain

        return plain(self.table_lines(columns, width))

    def __str__(self) -> str:
        """The planning table fitted to the terminal, as ``str(report)`` and the command line fit theirs."""
        from .render import output_width

        return self.table(width=output_width())

    def to_dicts(self) -> List[Dict[str, Any]]:
        """Every result as a dict (:meth:`SweepResult.to_dict`: the knobs a configuration set in ``options``)."""
        return [r.to_dict() for r in self]

    def records(self) -> List[Dict[str, Any]]:
        """One flat dict per result, the rows of :meth:`to_csv` as numbers: ``pandas.DataFrame(results.records())``.
        Every field but ``report``, and in place of ``options`` a column for each policy knob any configuration
        set (:meth:`knobs`), holding the policy's default where a configuration left it unset."""
        knobs = self.knobs()
        rows = []
        for r in self:
            row = r.to_dict()
            row.pop("options")
            row.update({k: _option(r, k) for k in knobs})
            rows.append(row)
        return rows

    def to_csv(self, path: Union[str, "os.PathLike[str]", None] = None) -> str:
        """Every field of every result as CSV (returned, and written to ``path`` if given): :meth:`records`."""
        buf = io.StringIO()
        names = [f.name for f in fields(SweepResult) if f.name not in ("report", "options")] + self.knobs()
        w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        w.writeheader()
        for row in self.records():
            # not a number (a downtime that never happened): an empty cell
            w.writerow({k: "" if isinstance(v, float) and v != v else v for k, v in row.items()})
        text = buf.getvalue()
        if path is not None:
            with open(path, "w", newline="") as f:
                f.write(text)
        return text

    def to_json(self, path: Union[str, "os.PathLike[str]", None] = None, indent: Optional[int] = 2) -> str:
        """Every result as a JSON list (non-finite numbers as null)."""
        from .report import json_safe

        text = json.dumps(json_safe(self.to_dicts()), indent=indent)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text


# ------------------------------------------------------------------------------------ running


class SweepBar:
    """A sweep's progress bar on stderr (rich), for ``sweep(progress=...)``: drawn from the start
    (``progress(0, total, None)``), with the elapsed time since then and the verdicts so far; it
    moves within long runs too (``done`` counts the part of each run in flight that is done)."""

    def __init__(self, description: str = "sweep", force_terminal: Optional[bool] = None) -> None:
        self._what = description
        self._force = force_terminal
        self._p: Any = None
        self._task: Any = None
        self._verdicts: Dict[str, int] = {}

    def __call__(self, done: float, total: int, result: Optional[SweepResult]) -> None:
        if self._p is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            # the bar: done, runs in flight included; the count: the configurations finished
            self._p = Progress(TextColumn(self._what), BarColumn(bar_width=24), TextColumn("{task.fields[count]}"),
                               TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                               console=Console(stderr=True, force_terminal=self._force), transient=True)
            self._task = self._p.add_task(self._what, total=total, info="", count=f"0/{total}")
            self._p.start()
        if result is not None:
            self._verdicts[result.verdict] = self._verdicts.get(result.verdict, 0) + 1
        info = ", ".join(f"{n} {v}" for v, n in sorted(self._verdicts.items(), key=lambda kv: VERDICTS.index(kv[0])))
        self._p.update(self._task, completed=done, info=info, count=f"{sum(self._verdicts.values())}/{total}")

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _in_flight(n: int) -> Optional[_InFlight]:
    """The progress file for the runs in flight; None where no temporary file can be had (the bar
    then moves as each configuration ends)."""
    try:
        return _InFlight(n)
    except OSError:
        return None


def _ignore_sigint() -> None:
    """Worker processes leave Ctrl-C to the parent, which cancels the sweep."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(ex: Executor) -> None:
    """Cancel what is queued and end the default executor's running workers now (Ctrl-C)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())  # shutdown() forgets them
    ex.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        try:
            proc.terminate()
        except Exception:  # noqa: BLE001 (already gone)
            pass
    for proc in procs:
        proc.join(5)


def sweep(
    configs: Iterable[Any],
    executor: Optional[Executor] = None,
    progress: ProgressLike = False,
    *,
    jobs: Optional[int] = None,
    keep_reports: bool = False,
    advise: bool = False,
) -> SweepResults:
    """Run every configuration and return their results, in the order given.

    Args:
        configs: :class:`SweepConfig` objects or dicts of their fields (see :func:`grid`).
        executor: any :class:`concurrent.futures.Executor` (its ``submit``, and
            futures that :func:`concurrent.futures.wait` accepts), e.g. a
            ``ThreadPoolExecutor`` or a dask.distributed ``client.get_executor()``.
            Default: a ``ProcessPoolExecutor`` of ``jobs`` processes, made and shut
            down here; with ``jobs=1`` (or a single configuration) everything runs in
            this process.
        progress: True for a progress bar on stderr (:class:`SweepBar`), or a callable
            ``progress(done, total, result)``, called with ``(0, total, None)`` once
            the work is under way, then as each result arrives, and in between, about
            every :data:`PROGRESS_INTERVAL` s while runs are long, with ``result`` None.
            ``done`` counts the results, plus the part of each run in flight that is done
            (:func:`run_fraction`, reported by workers on this machine: see
            :class:`RunProgress`), so that it is a float while runs are in flight.
        jobs: worker processes of the default executor (default: the CPU count).
        keep_reports: keep each full :class:`~dirtylog.MigrationReport` in ``result.report``.
        advise: for each configuration that does not converge, find what would make it
            converge (:mod:`dirtylog.advice`; more simulations in the same task) and add
            the answers as the ``advice_*`` fields (and table columns).

    Every configuration is checked before anything runs (a bad value raises
    ConfigError or TypeError here, not in a worker). A configuration that raises
    in its task (out of memory, a worker that died) does not stop the others: once
    they have all run, :class:`~dirtylog.errors.SweepError` is raised, naming each
    configuration that failed and why, with the results of the others in
    ``.results`` and the failures in ``.failures``. Ctrl-C cancels the work
    still queued, stops the default executor's workers, and raises
    :class:`~dirtylog.errors.Interrupted` whose ``report`` is the
    :class:`SweepResults` that had finished.
    """
    from .errors import Interrupted

    cfgs = [_as_config(c) for c in configs]
    for c in cfgs:
        c.check()
    n = len(cfgs)
    results: List[Optional[SweepResult]] = [None] * n
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"jobs must be a whole number >= 1, got {jobs!r}")
    if not (progress in (True, False, None) or callable(progress)):
        raise TypeError("progress must be a bool or a callable(done, total, result)")
    bar: Optional[SweepBar] = SweepBar() if progress is True else None
    callback: Optional[Callable[[float, int, Optional[SweepResult]], None]] = (
        bar if bar is not None else progress if callable(progress) else None)
    done = 0

    def finished() -> SweepResults:
        return SweepResults(r for r in results if r is not None)

    failures: List[Tuple[int, SweepConfig, Exception]] = []

    inflight: Optional[_InFlight] = None
    try:
        if executor is None and (n <= 1 or jobs == 1):
            if callback is not None:
                callback(0, n, None)
            for i, c in enumerate(cfgs):
                hook = None
                if callback is not None:
                    cb = callback

                    def sink(_: int, f: float, cb: Callable[[float, int, Optional[SweepResult]], None] = cb,
                             base: int = done) -> None:
                        cb(base + f, n, None)

                    hook = RunProgress(i, c.resolved_give_up(), sink=sink)
                try:
                    results[i] = run_config(c, i, keep_reports, advise, hook)
                except Exception as exc:  # noqa: BLE001 (reported with the others' results at the end)
                    failures.append((i, c, exc))
                done += 1
                if callback is not None:
                    callback(done, n, results[i])
        else:
            own = executor is None
            ex = executor if executor is not None else ProcessPoolExecutor(
                max_workers=min(jobs or os.cpu_count() or 1, n), initializer=_ignore_sigint)
            stopped = False
            try:
                inflight = _in_flight(n) if callback is not None else None
                pending: Dict[Future, int] = {
                    ex.submit(_task, (c, i, keep_reports, advise,
                                      inflight.hook(i, c.resolved_give_up()) if inflight is not None else None)): i
                    for i, c in enumerate(cfgs)}
                # The bar starts once the workers exist: never fork while its refresh thread runs.
                if callback is not None:
                    callback(0, n, None)
                shown = 0.0
                try:
                    while pending:
                        done_now, _ = _wait(list(pending), timeout=PROGRESS_INTERVAL if inflight else None,
                                            return_when=FIRST_COMPLETED)
                        for fut in done_now:
                            i = pending.pop(fut)
                            try:
                                results[i] = fut.result()
                            except Exception as exc:  # noqa: BLE001 (the others go on: reported at the end)
                                failures.append((i, cfgs[i], exc))
                            done += 1
                            if callback is not None:
                                shown = done + (inflight.total(pending.values()) if inflight is not None else 0.0)
                                callback(shown, n, results[i])
                        if inflight is not None and callback is not None and pending:
                            now = done + inflight.total(pending.values())
                            if now > shown:
                                callback(now, n, None)
                                shown = now
                except KeyboardInterrupt:
                    for fut in pending:
                        fut.cancel()
                    if own:
                        _stop_workers(ex)
                        stopped = True
                    raise
            finally:
                if own and not stopped:
                    ex.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt as exc:
        partial = finished()
        if isinstance(exc, Interrupted):  # a run in this process: its partial report is not a result
            pass
        raise Interrupted(partial, f"interrupted: {done} of {n} configurations finished") from None
    finally:
        if inflight is not None:
            inflight.close()
        if bar is not None:
            bar.close()
    if failures:
        failures.sort(key=lambda f: f[0])
        raise _failed(failures, finished(), n) from failures[0][2]
    return finished()


def _describe(config: SweepConfig) -> str:
    """A configuration as the settings it gives beyond the defaults (its workload first)."""
    from .config import DEFAULTS

    given = {k: v for k, v in config.values().items() if k not in ("workload", "label") and
             (k not in DEFAULTS or v != DEFAULTS[k])}
    return ", ".join([config.workload_label()] + [f"{k}={v}" for k, v in given.items()])


def _failed(failures: List[Tuple[int, SweepConfig, Exception]], results: SweepResults, n: int) -> SweepError:
    """The error of a sweep whose configurations raised: which ones and why, the others' results kept."""
    shown = failures[:3]
    lines = "; ".join(f"configuration {i} ({_describe(c)}): {type(e).__name__}: {str(e).strip() or '-'}"
                      for i, c, e in shown)
    more = f"; and {len(failures) - len(shown)} more" if len(failures) > len(shown) else ""
    return SweepError(f"{len(failures)} of {n} configurations failed ({len(results)} finished): {lines}{more}",
                      results, failures)
