"""`dirtylog record`: the dirty pages of a real program, recorded by the kernel's write tracking.

:func:`record` launches ``COMMAND ARGS`` with the recorder library
(``libdirtylog_record.so``, shipped in the package) preloaded. Inside the program the
recorder tracks its private writable anonymous memory (heap, anonymous mmaps, thread
stacks, .bss) with userfaultfd WP async and PAGEMAP_SCAN (see
:mod:`dirtylog.realtracker`), re-reads ``/proc/self/maps`` every interval to register
new mappings (a region that appears counts its populated pages as dirty in that
interval), and harvests every ``interval`` from its own thread.

The result is a trace in dirtylog's format (:mod:`dirtylog.trace`, ``.npz``): records
``(time_ns, page)`` that :class:`dirtylog.Trace` replays, plus arrays that describe the
recording (ignored by trace readers that do not know them)::

    pages              the recording's size in pages: every address the program used for
                       such memory got one page index, kept for the whole run (a guest of
                       this many pages runs it)
    page_size, interval_ns, pid, command, exit_status, complete (the exit ran the final harvest),
    method             preload (launched), soft-dirty or uffd (dirtylog record --pid:
                       :mod:`dirtylog.record_pid`)
    interval           each record's harvest interval
    interval_end_ns    end of each interval; scan_ns the recorder's time to harvest it
    region_start, region_pages, region_first_page
                       the page -> address map: pages first .. first + pages are the
                       addresses start + i * page_size

A page written during interval k (between harvests k-1 and k) is reported in interval
k; a write racing harvest k may be reported in k or k+1. The records of interval k are
spread evenly over it in page order (the kernel tells which pages were written in an
interval, not when). Documented extra reports: a private page discarded with
``MADV_DONTNEED`` (e.g. by an allocator giving memory back) reads as written once, and a new mapping's
populated pages count as written in the interval it appears in.
"""
from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ConfigError, UnsupportedError
from .units import parse_time

__all__ = ["Recording", "RecordSummary", "record", "summarize", "summary_lines", "load_recording", "preload_library",
           "check_program", "RecordError", "Progress"]

PRELOAD_NAME = "libdirtylog_record.so"
_MAGIC = 0x31434552474C5244
_REC_REGION, _REC_HARVEST, _REC_ERROR, _REC_END = 1, 2, 3, 4
_STATUS = {-2: "out of memory", -7: "not supported by this kernel", -8: "permission denied", -9: "a system call failed"}


class RecordError(ConfigError):
    """The program cannot be recorded (static, setuid, missing), or the recorder failed in it."""


def preload_library() -> Path:
    """The recorder library shipped in the package."""
    p = Path(__file__).resolve().parent / PRELOAD_NAME
    if not p.is_file():
        raise UnsupportedError(
            f"the recorder library {PRELOAD_NAME} is not installed next to {Path(__file__).parent}: "
            "dirtylog record needs Linux and a build of dirtylog that includes it"
        )
    return p


def _elf_interp(path: str) -> Tuple[bool, Optional[str]]:
    """(is ELF, PT_INTERP or None) of an executable."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False, None
        is64 = head[4] == 2
        end = "<" if head[5] == 1 else ">"
        if is64:
            phoff, = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(end + "I", head, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        for i in range(phnum):
            ptype, = struct.unpack_from(end + "I", table, i * phentsize)
            if ptype == 3:  # PT_INTERP
                if is64:
                    off, = struct.unpack_from(end + "Q", table, i * phentsize + 8)
                    size, = struct.unpack_from(end + "Q", table, i * phentsize + 32)
                else:
                    off, = struct.unpack_from(end + "I", table, i * phentsize + 4)
                    size, = struct.unpack_from(end + "I", table, i * phentsize + 16)
                f.seek(off)
                return True, f.read(size).rstrip(b"\0").decode(errors="replace")
        return True, None


def check_program(command: Sequence[str]) -> str:
    """The program's full path; RecordError if it cannot be recorded (missing, static, setuid)."""
    if not command:
        raise RecordError("give the program to record after '--', e.g. dirtylog record -- python3 job.py")
    name = command[0]
    path = shutil.which(name) if os.sep not in name else (name if os.path.exists(name) else None)
    if path is None:
        raise RecordError(f"program {name!r} not found (not a file, and not on PATH)")
    path = os.path.realpath(path)
    st = os.stat(path)
    if st.st_mode & 0o6000:
        raise RecordError(f"{path} is setuid/setgid: the dynamic loader runs it in secure mode and ignores "
                          "LD_PRELOAD, so it cannot be recorded; record a copy without the setuid bit")
    is_elf, interp = _elf_interp(path)
    if is_elf and interp is None:
        raise RecordError(f"{path} is statically linked: the recorder is a preloaded library, which a static "
                          "program never loads; record a dynamically linked build of it")
    if not is_elf:
        with open(path, "rb") as f:
            first = f.readline(256)
        if first.startswith(b"#!"):
            parts = first[2:].decode(errors="replace").split()
            if parts:
                check_program(parts[:1] if parts[0] != "/usr/bin/env" or len(parts) < 2 else parts[1:2])
        elif not os.access(path, os.X_OK):
            raise RecordError(f"{path} is not an executable program")
    return path


@dataclass
class Recording:
    """A recorded program: its trace and what describes it (see the module docs)."""

    time_ns: np.ndarray
    page: np.ndarray
    interval: np.ndarray
    interval_end_ns: np.ndarray
    scan_ns: np.ndarray
    region_start: np.ndarray
    region_pages: np.ndarray
    region_first_page: np.ndarray
    pages: int
    page_size: int
    interval_ns: int
    pid: int
    command: str
    exit_status: Optional[int]
    complete: bool  # the program's exit ran the recorder's final harvest
    method: str = "preload"  # how it was recorded: preload (launched), soft-dirty or uffd (--pid)

    @property
    def intervals(self) -> int:
        return int(self.interval_end_ns.size)

    @property
    def duration(self) -> float:
        """Seconds recorded (to the end of the last interval)."""
        return float(self.interval_end_ns[-1]) / 1e9 if self.interval_end_ns.size else 0.0

    def dirty_per_interval(self) -> np.ndarray:
        """Distinct pages dirtied in each interval."""
        return np.bincount(self.interval.astype(np.int64), minlength=self.intervals)

    def address(self, pages: Any) -> np.ndarray:
        """The process addresses of page indices (the page -> address map)."""
        p = np.asarray(pages, dtype=np.uint64)
        i = np.searchsorted(self.region_first_page, p, side="right") - 1
        if p.size and (np.any(i < 0) or np.any(p >= self.region_first_page[i] + self.region_pages[i])):
            raise ConfigError("a page index is not in the recording's page -> address map")
        return self.region_start[i] + (p - self.region_first_page[i]) * np.uint64(self.page_size)

    def page_of(self, addresses: Any) -> np.ndarray:
        """The page indices of process addresses (the inverse map); ConfigError for an address never tracked."""
        a = np.asarray(addresses, dtype=np.uint64)
        order = np.argsort(self.region_start, kind="stable")
        starts = self.region_start[order]
        i = np.searchsorted(starts, a, side="right") - 1
        if a.size and (np.any(i < 0) or np.any(a >= starts[i] + self.region_pages[order][i] * np.uint64(self.page_size))):
            raise ConfigError("an address is not in the recording's page -> address map")
        ps = np.uint64(self.page_size)
        return self.region_first_page[order][i] + (a - starts[i]) // ps

    def trace(self) -> Any:
        """The recording as a :class:`dirtylog.Trace` workload."""
        from .workloads import Trace

        return Trace(time_ns=self.time_ns, pages=self.page, guest_pages=self.pages)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the trace and its description to an ``.npz`` file (compressed)."""
        p = os.fspath(path)
        if not p.lower().endswith(".npz"):
            raise ConfigError(f"a recording is saved as .npz (a trace with its page -> address map), got {p!r}")
        with open(p, "wb") as f:
            np.savez_compressed(
                f, time_ns=self.time_ns, page=self.page, interval=self.interval,
                interval_end_ns=self.interval_end_ns, scan_ns=self.scan_ns, region_start=self.region_start,
                region_pages=self.region_pages, region_first_page=self.region_first_page,
                pages=np.uint64(self.pages), page_size=np.uint64(self.page_size),
                interval_ns=np.uint64(self.interval_ns), pid=np.uint64(self.pid), command=np.str_(self.command),
                exit_status=np.int64(-1 if self.exit_status is None else self.exit_status),
                complete=np.bool_(self.complete), method=np.str_(self.method),
            )


def load_recording(path: Union[str, "os.PathLike[str]"]) -> Recording:
    """Read a recording saved by :func:`record` (``.npz``)."""
    p = os.fspath(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            need = ("time_ns", "page", "interval", "interval_end_ns", "region_start", "pages")
            missing = [n for n in need if n not in z.files]
            if missing:
                raise ConfigError(f"{p!r} is not a recording of dirtylog record (no {', '.join(missing)}); "
                                  "a plain trace loads with dirtylog.Trace")
            st = int(z["exit_status"])
            return Recording(
                z["time_ns"], z["page"], z["interval"], z["interval_end_ns"], z["scan_ns"], z["region_start"],
                z["region_pages"], z["region_first_page"], int(z["pages"]), int(z["page_size"]),
                int(z["interval_ns"]), int(z["pid"]), str(z["command"]), None if st < 0 else st,
                bool(z["complete"]), str(z["method"]) if "method" in z.files else "preload",
            )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the recording {p!r}: {exc}") from exc


# --------------------------------------------------------------------------- the raw file


@dataclass
class _Raw:
    regions: List[Tuple[int, int, int]]
    harvests: List[Tuple[int, int, np.ndarray]]  # (t_end_ns, scan_ns, page indices)
    errors: List[Tuple[int, int]]
    page_size: int
    interval_ns: int
    pid: int
    complete: bool
    started: bool


def _parse_raw(path: str) -> _Raw:
    data = np.fromfile(path, dtype=np.uint64) if os.path.getsize(path) >= 8 else np.zeros(0, np.uint64)
    regions: List[Tuple[int, int, int]] = []
    harvests: List[Tuple[int, int, np.ndarray]] = []
    errors: List[Tuple[int, int]] = []
    page_size = interval_ns = pid = 0
    complete = started = False
    offset = 0  # page index offset of the current segment (an exec'd image of the process)
    seg_pages = 0
    i, n = 0, data.size
    while i < n:
        w = int(data[i])
        if w == _MAGIC:
            if i + 6 > n:
                break
            page_size, interval_ns, pid = int(data[i + 2]), int(data[i + 3]), int(data[i + 4])
            offset += seg_pages
            seg_pages = 0
            started, complete = True, False
            i += 6
        elif w == _REC_REGION and i + 5 <= n:
            start, npages, first = int(data[i + 2]), int(data[i + 3]), int(data[i + 4])
            regions.append((start, npages, first + offset))
            seg_pages = max(seg_pages, first + npages)
            i += 5
        elif w == _REC_HARVEST and i + 5 <= n:
            cnt = int(data[i + 4])
            if i + 5 + cnt > n:
                break  # cut short (the program was killed mid-write)
            harvests.append((int(data[i + 2]), int(data[i + 3]), data[i + 5: i + 5 + cnt] + np.uint64(offset)))
            i += 5 + cnt
        elif w == _REC_ERROR and i + 4 <= n:
            errors.append((int(np.int64(data[i + 1].astype(np.int64))), int(data[i + 2])))
            i += 4
        elif w == _REC_END and i + 3 <= n:
            complete = True
            i += 3
        else:
            break
    return _Raw(regions, harvests, errors, page_size, interval_ns, pid, complete, started)


def _recording(raw: _Raw, command: str, exit_status: Optional[int]) -> Recording:
    times: List[np.ndarray] = []
    pages: List[np.ndarray] = []
    ivals: List[np.ndarray] = []
    prev = 0
    ends = []
    scans = []
    for k, (t_end, scan, idx) in enumerate(raw.harvests):
        u = np.unique(idx)
        dt = max(t_end - prev, 1)
        if u.size:
            times.append(prev + ((np.arange(u.size, dtype=np.float64) + 0.5) * (dt / u.size)).astype(np.uint64))
            pages.append(u)
            ivals.append(np.full(u.size, k, dtype=np.uint32))
        ends.append(t_end)
        scans.append(scan)
        prev = max(prev, t_end)
    reg = sorted(raw.regions, key=lambda r: r[2])
    total = max((r[2] + r[1] for r in reg), default=0)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return Recording(
        time_ns=cat(times, np.uint64), page=cat(pages, np.uint64), interval=cat(ivals, np.uint32),
        interval_end_ns=np.array(ends, dtype=np.uint64), scan_ns=np.array(scans, dtype=np.uint64),
        region_start=np.array([r[0] for r in reg], dtype=np.uint64),
        region_pages=np.array([r[1] for r in reg], dtype=np.uint64),
        region_first_page=np.array([r[2] for r in reg], dtype=np.uint64),
        pages=max(total, 1), page_size=raw.page_size or 4096, interval_ns=raw.interval_ns, pid=raw.pid,
        command=command, exit_status=exit_status, complete=raw.complete,
    )


@dataclass(frozen=True)
class Progress:
    """What :func:`record` passes to its progress callback (about twice a second)."""

    elapsed: float
    intervals: int
    last_dirty: int
    pages: int
    page_size: int
    interval: float


def _check_options(interval: Union[float, str], duration: Union[float, str, None],
                   output: Union[str, "os.PathLike[str]", None]) -> Tuple[float, Optional[float]]:
    """The checks both recorders (the launcher and ``--pid``) make: (interval, duration) in seconds."""
    ivl = parse_time(interval, name="interval", allow_zero=False)
    if ivl < 0.001:
        raise ConfigError(f"interval must be at least 1ms, got {ivl * 1e3:g}ms")
    dur = None if duration is None else parse_time(duration, name="duration", allow_zero=False, allow_inf=True)
    if output is not None and not os.fspath(output).lower().endswith(".npz"):
        raise ConfigError(f"the recording is written as .npz (a trace with its page -> address map), got "
                          f"{os.fspath(output)!r}")
    return ivl, dur


def record(
    command: Sequence[str],
    output: Union[str, "os.PathLike[str]", None] = None,
    *,
    interval: Union[float, str] = "100ms",
    duration: Union[float, str, None] = None,
    progress: Optional[Callable[[Progress], None]] = None,
    env: Optional[Dict[str, str]] = None,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
) -> Recording:
    """Run ``command`` with the recorder preloaded; return (and with ``output``, save) its recording.

    ``interval``: time between harvests (default 100 ms, at least 1 ms). ``duration``:
    stop after this long: the program gets SIGTERM (SIGKILL 5 s later) and the
    recording keeps what was harvested. Raises RecordError for a program that cannot be
    recorded, UnsupportedError / PermissionError when the kernel lacks the features.
    """
    from .realtracker import require_support

    ivl, dur = _check_options(interval, duration, output)
    require_support()
    lib = preload_library()
    path = check_program(command)
    fd, raw_path = tempfile.mkstemp(prefix="dirtylog-record-", suffix=".raw")
    os.close(fd)
    e = dict(os.environ if env is None else env)
    pre = e.get("LD_PRELOAD", "")
    e["LD_PRELOAD"] = f"{pre}:{lib}" if pre else str(lib)
    e["DIRTYLOG_RECORD_OUT"] = raw_path
    e["DIRTYLOG_RECORD_INTERVAL"] = str(int(round(ivl * 1e9)))
    for k in ("DIRTYLOG_RECORD_PID", "DIRTYLOG_RECORD_T0"):
        e.pop(k, None)
    t0 = time.monotonic()
    try:
        # argv[0] as given: some programs act on their name (redis-server is a link to redis-check-rdb)
        proc = subprocess.Popen(list(command), executable=path, env=e, stdin=stdin, stdout=stdout, stderr=stderr)
    except OSError as exc:
        os.unlink(raw_path)
        raise RecordError(f"cannot start {command[0]!r}: {exc}") from exc
    killed = False
    tail = _Tail(raw_path)
    try:
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - t0
            if progress is not None:
                tail.poll()
                progress(Progress(elapsed, tail.intervals, tail.last, tail.pages, tail.page_size, ivl))
            if dur is not None and elapsed >= dur and not killed:
                killed = True
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        raw = _parse_raw(raw_path)
    finally:
        os.unlink(raw_path)
    rc = proc.returncode
    if not raw.started:
        raise RecordError(
            f"{command[0]!r} did not load the recorder (exit status {rc}): it may be statically linked, setuid, "
            "or it may clear LD_PRELOAD; nothing was recorded"
        )
    if raw.errors and not raw.harvests:
        status, err = raw.errors[0]
        why = _STATUS.get(status, f"status {status}") + (f" ({os.strerror(err)})" if err else "")
        raise RecordError(f"the recorder could not track {command[0]!r}: {why}")
    import shlex

    rec = _recording(raw, shlex.join(command), rc)
    if output is not None:
        rec.save(output)
    return rec


class _Tail:
    """Follows the raw file as the recorder appends to it (for the progress line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pos = 0
        self.intervals = 0
        self.last = 0
        self.pages = 0
        self.page_size = 4096

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                buf = f.read()
        except OSError:
            return
        w = np.frombuffer(buf[: len(buf) // 8 * 8], dtype=np.uint64)
        i = 0
        while i < w.size:
            t = int(w[i])
            if t == _MAGIC and i + 6 <= w.size:
                self.page_size = int(w[i + 2])
                i += 6
            elif t == _REC_REGION and i + 5 <= w.size:
                self.pages = max(self.pages, int(w[i + 4]) + int(w[i + 3]))
                i += 5
            elif t == _REC_HARVEST and i + 5 <= w.size and i + 5 + int(w[i + 4]) <= w.size:
                self.last = int(w[i + 4])
                self.intervals += 1
                i += 5 + int(w[i + 4])
            elif t == _REC_ERROR and i + 4 <= w.size:
                i += 4
            elif t == _REC_END and i + 3 <= w.size:
                i += 3
            else:
                break  # incomplete: read again next time
        self.pos += i * 8




@dataclass(frozen=True)
class RecordSummary:
    """What ``dirtylog record`` prints at the end (rates in MiB/s, times in seconds)."""

    duration: float
    intervals: int
    pages: int
    page_size: int
    dirty_mean: float
    dirty_median: float
    dirty_max: int
    dirty_distinct: int
    rate_window: float
    rate_mean_mib_s: float
    rate_max_mib_s: float
    scan_mean: float
    scan_max: float
    curve: Any  # a measure.DirtyCurveResult

    def to_dict(self) -> Dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        d["curve"] = self.curve.to_dict()
        return d


def summarize(rec: Recording, rate_window: Union[float, str] = "1s") -> RecordSummary:
    """Dirty pages per interval, the dirty rate as QEMU's calc-dirty-rate reports it (dirty-bitmap
    mode, each whole ``rate_window`` of the recording), and the dirty curve."""
    from .measure import dirty_curve, dirty_rate, windows_within

    per = rec.dirty_per_interval()
    win = parse_time(rate_window, name="rate_window", allow_zero=False)
    dur = rec.duration
    mem = rec.pages * rec.page_size
    trace = rec.trace()
    rates: List[float] = []
    if dur > 0:
        w = min(win, dur)
        k = 0
        while (k + 1) * w <= dur + 1e-9:
            rates.append(dirty_rate(trace, mem, window=w, mode="dirty-bitmap", page_size=rec.page_size,
                                    start=k * w).dirty_rate_mib_s)
            k += 1
        win = w
    ivl = rec.interval_ns / 1e9 if rec.interval_ns else 0.1
    cands = [ivl, 2 * ivl, 5 * ivl, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0, 120.0, 300.0]
    # the ladder's windows that fit, then the whole recording (a 3 s recording's ladder ends at 2 s)
    windows = windows_within({round(c, 6) for c in cands}, round(max(dur, ivl), 6))
    curve = dirty_curve(trace, mem, windows, page_size=rec.page_size)
    scans = rec.scan_ns / 1e9 if rec.scan_ns.size else np.zeros(1)
    return RecordSummary(
        duration=dur, intervals=rec.intervals, pages=rec.pages, page_size=rec.page_size,
        dirty_mean=float(per.mean()) if per.size else 0.0, dirty_median=float(np.median(per)) if per.size else 0.0,
        dirty_max=int(per.max()) if per.size else 0, dirty_distinct=int(np.unique(rec.page).size),
        rate_window=win, rate_mean_mib_s=float(np.mean(rates)) if rates else 0.0,
        rate_max_mib_s=float(np.max(rates)) if rates else 0.0,
        scan_mean=float(scans.mean()), scan_max=float(scans.max()), curve=curve,
    )


def summary_lines(rec: Recording, summary: RecordSummary, output: str = "FILE",
                  width: Optional[int] = None) -> List[Any]:
    """What ``dirtylog record`` prints, as :mod:`dirtylog.render` lines fitted to ``width``: what
    was recorded, dirty pages and rate per interval, the dirty curve, and how to replay the
    recording (``output``: its file)."""
    from .render import Column, curve_lines, plural, table, wrap
    from .units import format_dirty_rate, format_size, format_time

    s = summary
    if rec.method != "preload":  # --pid: the process was not ours to wait for
        ended = f"{rec.method}, {'ran on' if rec.complete else 'exited'}"
    elif rec.exit_status is not None and rec.exit_status >= 0:
        ended = f"exited with status {rec.exit_status}"
    else:
        ended = f"stopped by signal {-(rec.exit_status or 0)}"
    # one line however the command was written (a `python -c` script keeps its newlines)
    shown = rec.command if len(rec.command) <= 60 and rec.command.isprintable() else (
        rec.command.encode("unicode_escape").decode("ascii")[:57] + "...")
    out: List[Any] = wrap("", [("Recorded", "bold"), (
        f" {shown} (pid {rec.pid}, {ended}): {format_time(s.duration)} in {plural(s.intervals, 'interval')} of "
        f"{format_time(rec.interval_ns / 1e9)}; {format_size(s.pages * s.page_size)} of private writable memory "
        f"tracked ({plural(s.pages, 'page')})", "")], -1, width)
    if not rec.complete:
        why = ("The process exited during the recording" if rec.method != "preload"
               else "The program ended without running its exit handlers")
        out += wrap("", [(f"{why}: the last, partial interval was not harvested.", "warn")], -1, width)
    out.append([])
    cols = [Column("", "left"), Column("mean"), Column("median"), Column("max")]
    rows = [(["dirty pages / interval", f"{s.dirty_mean:,.1f}", f"{s.dirty_median:,.0f}", f"{s.dirty_max:,}"], ""),
            (["dirty rate (calc-dirty-rate)", format_dirty_rate(s.rate_mean_mib_s * 2**20), "-",
              format_dirty_rate(s.rate_max_mib_s * 2**20)], ""),
            (["harvest time / interval", format_time(s.scan_mean), "-", format_time(s.scan_max)], "")]
    out += table(cols, rows, width)
    out += wrap("", [(f"dirty rate: distinct pages dirtied in each whole {format_time(s.rate_window)} window of the "
                      "recording x page size / window, as QEMU's calc-dirty-rate reports it in dirty-bitmap mode; "
                      "harvest time: the recorder's own time to re-read the mappings and harvest them"
                      + (" (with --pid: from outside the process, with the injections)" if rec.method != "preload"
                         else "") + ".", "dim")], -1, width)
    out.append([])
    out += curve_lines(s.curve, width, title="Dirty curve (distinct pages per window, from the start)",
                       of="tracked")
    out.append([])
    out += wrap("", [(f"{plural(s.dirty_distinct, 'distinct page')} written in all.", "")], -1, width)
    from shlex import quote

    out += wrap("Replay", [(f"dirtylog simulate --workload {quote('trace:' + output)} --memory "
                            f"{-(-s.pages * s.page_size // 2**20)}MiB (or larger)", "")], 6, width)
    out += wrap("Curve", [(f"dirtylog curve {quote(output)}", "")], 6, width)
    return out
