"""Parallel sweeps of migrations: the capacity planner's table.

>>> from dirtylog.sweeps import grid, sweep
>>> configs = grid(memory="1GiB", workload=["hotspot:200MiB/s", "hotspot:1GiB/s"],
...                bandwidth=["1Gbit/s", "10Gbit/s"], downtime_limit=["100ms", "300ms"])
>>> results = sweep(configs)                                  # doctest: +SKIP
>>> print(results.table())                                    # doctest: +SKIP
>>> results.to_csv("plan.csv")                                # doctest: +SKIP

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
import os
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import wait as _wait
from concurrent.futures import FIRST_COMPLETED
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .errors import ConfigError
from .units import format_rate, format_size, format_time

__all__ = ["SweepConfig", "SweepResult", "SweepResults", "grid", "sweep", "run_config", "default_give_up", "VERDICTS"]

#: Verdicts, best first.
VERDICTS = ("converges", "post-copy", "forced", "does not converge", "lost")

ProgressLike = Union[bool, None, Callable[[int, int, "SweepResult"], None]]


def default_give_up(memory: Any, bandwidth: Any, page_size: Any = 4096) -> float:
    """When a sweep stops waiting for convergence: 10 minutes of simulated time, or 20 times
    the time to send memory once if that is longer (a big guest on a slow link needs it)."""
    from .units import parse_rate, parse_size

    mem = parse_size(memory, name="memory", allow_zero=False)
    bw = parse_rate(bandwidth, name="bandwidth", allow_zero=False)
    psize = parse_size(page_size, name="page_size", allow_zero=False)
    once = mem * (psize + 8) / psize / bw
    return max(600.0, 20.0 * once)


@dataclass(frozen=True)
class SweepConfig:
    """One migration of a sweep: the arguments of :func:`dirtylog.simulate`, flattened.

    ``workload`` is a spec string (see :mod:`dirtylog.specs`), a workload object
    or None (an idle guest that never writes). Sizes, rates and times may be
    numbers or strings. ``label`` names the configuration in tables (default:
    the workload spec).
    """

    memory: Union[int, str] = "4GiB"
    workload: Any = "hotspot:1GiB/s"
    bandwidth: Union[float, str] = "10Gbit/s"
    downtime_limit: Union[float, str] = "300ms"
    tracker: str = "pml"
    vcpus: int = 1
    latency: Union[float, str] = 0.0
    stop: str = "qemu"
    max_iterations: Optional[int] = None
    max_total_factor: Optional[float] = None
    timeout: Union[float, str, None] = None
    on_limit: Optional[str] = None
    resume_time: Union[float, str] = 0.0
    auto_converge: bool = False
    cpu_throttle_initial: int = 20
    cpu_throttle_increment: int = 10
    max_cpu_throttle: int = 99
    cpu_throttle_tailslow: bool = False
    dirty_limit: bool = False
    vcpu_dirty_limit: Union[float, str] = "1MB/s"
    dirty_limit_period: Union[float, str] = "1s"
    policy: str = "precopy"
    postcopy_after_rounds: int = 1
    prepage: int = 0
    huge_pages: Optional[str] = None
    zero_pages: float = 0.0
    page_size: Union[int, str] = 4096
    seed: int = 0
    verify: bool = True
    give_up_after: Union[float, str, None] = None
    label: Optional[str] = None

    def workload_label(self) -> str:
        from .specs import describe

        return self.label if self.label is not None else describe(self.workload)

    def build(self) -> Dict[str, Any]:
        """The keyword arguments of :func:`dirtylog.simulate` (checks every value)."""
        from .link import Link
        from .policy import PostCopy, PreCopy
        from .specs import parse_workload

        if self.policy not in ("precopy", "postcopy"):
            raise ConfigError(f"unknown policy {self.policy!r}; allowed: precopy, postcopy")
        pre = PreCopy(downtime_limit=self.downtime_limit, stop=self.stop, max_iterations=self.max_iterations,
                      max_total_factor=self.max_total_factor, timeout=self.timeout, on_limit=self.on_limit,
                      resume_time=self.resume_time, auto_converge=self.auto_converge,
                      cpu_throttle_initial=self.cpu_throttle_initial,
                      cpu_throttle_increment=self.cpu_throttle_increment,
                      max_cpu_throttle=self.max_cpu_throttle, cpu_throttle_tailslow=self.cpu_throttle_tailslow,
                      dirty_limit=self.dirty_limit, vcpu_dirty_limit=self.vcpu_dirty_limit,
                      dirty_limit_period=self.dirty_limit_period)
        policy: Any = pre
        if self.policy == "postcopy":
            policy = PostCopy(after_rounds=self.postcopy_after_rounds, precopy=pre, prepage=self.prepage)
        return dict(
            memory=self.memory,
            workload=parse_workload(self.workload, seed=self.seed),
            link=Link(self.bandwidth, latency=self.latency),
            policy=policy,
            tracker=self.tracker,
            vcpus=self.vcpus,
            page_size=self.page_size,
            huge_pages=self.huge_pages,
            zero_pages=self.zero_pages,
            seed=self.seed,
            verify=self.verify,
            give_up_after=self.give_up_after if self.give_up_after is not None
            else default_give_up(self.memory, self.bandwidth, self.page_size),
        )

    def check(self) -> None:
        """Raise ConfigError/TypeError now for a value the worker would reject."""
        from .units import parse_size

        self.build()
        parse_size(self.memory, name="memory", allow_zero=False)


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one configuration (times in seconds, sizes in bytes, rates in bytes/s).

    ``verdict``: "converges" (completed within the downtime limit), "post-copy"
    (completed after switching to post-copy), "forced" (a limit forced the
    stop-and-copy: completed, with a longer downtime), "does not converge" (rolled
    back, or given up after ``give_up_after``) or "lost" (a failure during
    post-copy lost the VM).
    ``guest_slowdown`` is the share (%) of vCPU time lost to tracking exits.
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


def run_config(config: SweepConfig, index: int = 0, keep_report: bool = False) -> SweepResult:
    """Run one configuration (in a worker) and summarize it."""
    from .migration import simulate

    t0 = time.perf_counter()
    r = simulate(**config.build())
    wall = time.perf_counter() - t0
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
        report=r if keep_report else None,
    )


def _task(args: Tuple[SweepConfig, int, bool]) -> SweepResult:
    return run_config(*args)


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
    names = {f.name for f in fields(SweepConfig)}
    unknown = sorted(set(axes) - names)
    if unknown:
        raise ConfigError(f"unknown sweep parameter(s) {unknown}; allowed: {sorted(names)}")
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
        names = {f.name for f in fields(SweepConfig)}
        unknown = sorted(set(c) - names)
        if unknown:
            raise ConfigError(f"unknown sweep parameter(s) {unknown}; allowed: {sorted(names)}")
        cfg = SweepConfig(**c)
    else:
        raise TypeError(f"a sweep configuration must be a SweepConfig or a dict, got {type(c).__name__}")
    return cfg


# ------------------------------------------------------------------------------------ results


class SweepResults(list):  # of SweepResult
    """The results of a sweep, in the order of the configurations (a list of :class:`SweepResult`)."""

    def varying(self) -> List[str]:
        """The configuration fields that differ between results."""
        keys = ("workload", "memory", "bandwidth", "downtime_limit", "tracker", "vcpus")
        return [k for k in keys if len({getattr(r, k) for r in self}) > 1]

    def table_rows(self, columns: Optional[Sequence[str]] = None) -> Tuple[List[str], List[List[str]]]:
        """Headers and formatted cells of the planning table."""
        axes = list(columns) if columns is not None else (self.varying() or ["workload", "bandwidth", "downtime_limit"])
        head_names = {"workload": "workload", "memory": "memory", "bandwidth": "bandwidth",
                      "downtime_limit": "downtime limit", "tracker": "tracker", "vcpus": "vCPUs"}
        fmt: Dict[str, Callable[[Any], str]] = {
            "workload": str, "memory": format_size, "bandwidth": lambda b: format_rate(b, bits=True),
            "downtime_limit": format_time, "tracker": str, "vcpus": str,
        }
        headers = [head_names[a] for a in axes] + ["rounds", "total time", "downtime", "transferred", "verdict"]
        rows = []
        for r in self:
            rows.append([fmt[a](getattr(r, a)) for a in axes] + [
                str(r.rounds),
                format_time(r.total_time),
                format_time(r.downtime) if r.status == "completed" else "-",
                format_size(r.transferred),
                r.verdict,
            ])
        return headers, rows

    def table(self, columns: Optional[Sequence[str]] = None) -> str:
        """The planning table as plain text: the varying parameters, total time, downtime and verdict."""
        headers, rows = self.table_rows(columns)
        widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
        lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
        lines.append("  ".join("-" * w for w in widths))
        for row in rows:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        return "\n".join(lines)

    def to_dicts(self) -> List[Dict[str, Any]]:
        return [r.to_dict() for r in self]

    def to_csv(self, path: Union[str, "os.PathLike[str]", None] = None) -> str:
        """Every field of every result as CSV (returned, and written to ``path`` if given)."""
        buf = io.StringIO()
        names = [f.name for f in fields(SweepResult) if f.name != "report"]
        w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        w.writeheader()
        for r in self:
            w.writerow(r.to_dict())
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


class _RichProgress:
    """A progress bar on stderr (rich)."""

    def __init__(self, total: int, description: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self._task = self._p.add_task(description, total=total)
        self._p.start()

    def __call__(self, done: int, total: int, result: SweepResult) -> None:
        self._p.update(self._task, completed=done)

    def close(self) -> None:
        self._p.stop()


def sweep(
    configs: Iterable[Any],
    executor: Optional[Executor] = None,
    progress: ProgressLike = False,
    *,
    jobs: Optional[int] = None,
    keep_reports: bool = False,
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
        progress: True for a progress bar on stderr, or a callable
            ``progress(done, total, result)`` called as each result arrives.
        jobs: worker processes of the default executor (default: the CPU count).
        keep_reports: keep each full :class:`~dirtylog.MigrationReport` in ``result.report``.

    Every configuration is checked before anything runs (a bad value raises
    ConfigError or TypeError here, not in a worker). If a task raises, the others
    still queued are cancelled and the error is raised.
    """
    cfgs = [_as_config(c) for c in configs]
    for c in cfgs:
        c.check()
    n = len(cfgs)
    results: List[Optional[SweepResult]] = [None] * n
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ConfigError(f"jobs must be a whole number >= 1, got {jobs!r}")
    if not (progress in (True, False, None) or callable(progress)):
        raise TypeError("progress must be a bool or a callable(done, total, result)")
    bar: Optional[_RichProgress] = None
    callback: Optional[Callable[[int, int, SweepResult], None]] = progress if callable(progress) else None

    def start_bar() -> None:
        # Started after the worker processes exist: never fork while the bar's thread runs.
        nonlocal bar, callback
        if progress is True:
            bar = _RichProgress(n, "sweep")
            callback = bar

    done = 0
    try:
        if executor is None and (n <= 1 or jobs == 1):
            start_bar()
            for i, c in enumerate(cfgs):
                results[i] = run_config(c, i, keep_reports)
                done += 1
                if callback is not None:
                    callback(done, n, results[i])  # type: ignore[arg-type]
        else:
            own = executor is None
            ex = executor if executor is not None else ProcessPoolExecutor(max_workers=min(jobs or os.cpu_count() or 1, n))
            try:
                pending: Dict[Future, int] = {ex.submit(_task, (c, i, keep_reports)): i for i, c in enumerate(cfgs)}
                start_bar()
                while pending:
                    finished, _ = _wait(list(pending), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        i = pending.pop(fut)
                        try:
                            results[i] = fut.result()
                        except BaseException:
                            for other in pending:
                                other.cancel()
                            raise
                        done += 1
                        if callback is not None:
                            callback(done, n, results[i])  # type: ignore[arg-type]
            finally:
                if own:
                    ex.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return SweepResults(r for r in results if r is not None)
