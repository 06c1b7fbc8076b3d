"""`dirtylog record --pid PID`: the dirty pages of a process that is already running.

Two methods, chosen automatically (``method="auto"``): soft-dirty bits where the
kernel has them, else userfaultfd write protection injected into the process.

``"soft-dirty"`` (:class:`dirtylog.softdirty.SoftDirtyScanner`)
    ``4`` to ``/proc/PID/clear_refs``, then bit 55 of each ``/proc/PID/pagemap`` entry
    each interval, as CRIU's iterative pre-dumps do. Needs ``CONFIG_MEM_SOFT_DIRTY``.
    **Untested on a real kernel**: the development machine's kernel lacks it; the tests
    run it against a synthetic procfs (the ``procfs`` parameter). A write that falls
    between an interval's read and its clear and is not repeated is not reported.

``"uffd"`` (the ``dl_rt_open_pid`` handle of ``csrc/include/dirtylog/realtrack.h``)
    The userfaultfd registration is injected into the process with ptrace, in the
    spirit of CRIU's parasite code: its main thread is stopped (PTRACE_SEIZE +
    PTRACE_INTERRUPT), runs ``userfaultfd``, ``UFFDIO_API`` (WP async) and
    ``UFFDIO_REGISTER`` for the regions, and is resumed where it was; new regions are
    registered the same way at the interval they appear in. Harvests are the
    PAGEMAP_SCAN ioctl on ``/proc/PID/pagemap`` from outside, which does not stop the
    process. When the recording ends the injected descriptor is closed in the process
    (again by injection), which unregisters everything. Linux 6.7+ on x86-64, with
    ptrace rights over the process (root, or the same user with
    ``kernel.yama.ptrace_scope`` 0); a process under seccomp (strict or a filter) is refused,
    since a filter may kill it for an injected call. Each injection stops the main thread for about a
    millisecond and may dirty one page of its stack (the ioctl arguments are written
    below the stack's red zone); the process keeps one more open descriptor (the
    userfaultfd, close-on-exec) while it is recorded.

The regions tracked are chosen by the same rule as the launcher's (``dl_rt_maps_eligible``:
private writable anonymous memory: heap, anonymous mmaps, thread stacks), re-read from
``/proc/PID/maps`` every interval. Page indices are given to addresses on first sight
and kept, and the recording is the launcher's (:class:`dirtylog.record.Recording`,
same ``.npz`` format, same summary). Differences from the launcher form: memory the
process populated before the recording started gets page indices (it is part of the
recording's size) but is not reported as written: interval 0 holds what the process
wrote after the start; a region that appears later counts its populated pages as
written in that interval, as in the launcher. The recording ends at ``duration``, on
Ctrl-C (``KeyboardInterrupt`` ends it like the duration, with a last harvest), or when
the process exits (then the last, partial interval is lost: ``complete`` is false).
Children of the process are not recorded; an ``exec`` ends the recording.
"""
from __future__ import annotations

import bisect
import contextlib
import errno as _errno
import os
import platform
import signal
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from ._lib import ffi, lib
from .errors import ConfigError, UnsupportedError
from .record import Progress, Recording, RecordError, _check_options, _Raw, _recording

__all__ = ["record_pid", "METHODS", "choose_method", "eligible_regions"]

METHODS = ("auto", "soft-dirty", "uffd")
_HARVEST_CAP = 1 << 20  # page offsets per harvest call
_MAX_GAPS = 64  # unregistered pieces taken per region and interval (more: next interval)


class _Exited(Exception):
    """The recorded process is gone."""


def eligible_regions(maps_text: bytes) -> List[Tuple[int, int]]:
    """The regions of a ``/proc/PID/maps`` text a recorder tracks (the launcher's rule, in C)."""
    s = ffi.new("uint64_t *")
    e = ffi.new("uint64_t *")
    out: List[Tuple[int, int]] = []
    for line in maps_text.splitlines():
        if line and lib.dl_rt_maps_eligible(line, len(line), s, e):
            out.append((int(s[0]), int(e[0])))
    return out


class _AddressIndex:
    """Page indices given to addresses on first sight and kept (a guest-physical page per address)."""

    def __init__(self, page_size: int) -> None:
        self.page_size = page_size
        self.starts: List[int] = []
        self.ends: List[int] = []
        self.bases: List[int] = []
        self.regions: List[Tuple[int, int, int]] = []  # (start, pages, first index), in order of assignment
        self.next = 0
        self._arrays: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    def assign(self, start: int, end: int) -> List[Tuple[int, int]]:
        """Give indices to the addresses of [start, end) that have none; return those pieces."""
        fresh: List[Tuple[int, int]] = []
        at = start
        while at < end:
            i = bisect.bisect_right(self.ends, at)
            if i < len(self.starts) and self.starts[i] <= at:
                at = self.ends[i]
                continue
            stop = min(end, self.starts[i]) if i < len(self.starts) else end
            pages = (stop - at) // self.page_size
            self.starts.insert(i, at)
            self.ends.insert(i, stop)
            self.bases.insert(i, self.next)
            self.regions.append((at, pages, self.next))
            self.next += pages
            fresh.append((at, stop))
            self._arrays = None
            at = stop
        return fresh

    def indices(self, addresses: np.ndarray) -> np.ndarray:
        """Page indices of page-aligned addresses that have one (others are dropped)."""
        if self._arrays is None:
            self._arrays = (np.array(self.starts, dtype=np.uint64), np.array(self.ends, dtype=np.uint64),
                            np.array(self.bases, dtype=np.uint64))
        st, en, ba = self._arrays
        a = np.asarray(addresses, dtype=np.uint64)
        i = np.searchsorted(st, a, side="right").astype(np.int64) - 1
        ok = i >= 0
        ok[ok] &= a[ok] < en[i[ok]]
        return ba[i[ok]] + (a[ok] - st[i[ok]]) // np.uint64(self.page_size)


class _UffdScanner:
    """Written pages of another process: userfaultfd WP async injected with ptrace, PAGEMAP_SCAN from outside."""

    name = "uffd"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.page_size = int(lib.dl_rt_page_size())
        out = ffi.new("dl_rt **")
        err = ffi.new("int *")
        _check(lib.dl_rt_open_pid(out, pid, err), int(err[0]), pid, f"opening /proc/{pid}/pagemap")
        self._rt = out[0]
        self._err = err
        self._buf = np.empty(_HARVEST_CAP, dtype=np.uint64)
        self._gaps = np.empty(2 * _MAX_GAPS, dtype=np.uint64)
        self._count = ffi.new("size_t *")
        self._walk = ffi.new("uint64_t *")

    def close(self) -> None:
        if self._rt is not None:
            lib.dl_rt_close(self._rt)  # closes the injected userfaultfd in the process, if it still runs
            self._rt = None

    def _unregistered(self, s: int, e: int) -> List[Tuple[int, int]]:
        rc = lib.dl_rt_unregistered(self._rt, s, e - s, ffi.from_buffer("uint64_t[]", self._gaps), _MAX_GAPS,
                                    self._count, self._err)
        if rc not in (lib.DL_OK, lib.DL_ERR_BUFFER):
            _check(rc, int(self._err[0]), self.pid, "scanning /proc/PID/pagemap")
        n = int(self._count[0])
        return [(int(self._gaps[2 * k]), int(self._gaps[2 * k + 1])) for k in range(n)]

    def _harvest(self, s: int, e: int, flags: int) -> np.ndarray:
        got: List[np.ndarray] = []
        buf = ffi.from_buffer("uint64_t[]", self._buf)
        at = s
        while at < e:
            rc = lib.dl_rt_harvest(self._rt, at, e - at, flags | lib.DL_RT_SKIP_UNREGISTERED, buf, _HARVEST_CAP,
                                   self._count, self._walk, self._err)
            n = int(self._count[0])
            if n:
                got.append(np.uint64(at) + self._buf[:n] * np.uint64(self.page_size))
            if rc != lib.DL_OK:
                _check(rc, int(self._err[0]), self.pid, "harvesting with PAGEMAP_SCAN")
            walk = int(self._walk[0])
            if walk <= at:
                break
            at = walk
        return np.concatenate(got) if got else np.zeros(0, dtype=np.uint64)

    def interval(self, regions: List[Tuple[int, int]],
                 assign: Callable[[int, int], List[Tuple[int, int]]]) -> np.ndarray:
        gaps = [g for s, e in regions for g in self._unregistered(s, e)]
        found: List[np.ndarray] = []
        if gaps:
            pairs = np.array(gaps, dtype=np.uint64).ravel()
            status = ffi.new("int[]", len(gaps))
            rc = lib.dl_rt_register_ranges(self._rt, ffi.from_buffer("uint64_t[]", pairs), len(gaps), status,
                                           self._err)
            _check(rc, int(self._err[0]), self.pid, "injecting the userfaultfd registration with ptrace")
            for k, (gs, ge) in enumerate(gaps):
                if status[k] == lib.DL_OK:  # else not registrable, or it vanished meanwhile
                    assign(gs, ge)
                    found.append(self._harvest(gs, ge, lib.DL_RT_FIRST))  # a new region: its populated pages
        for s, e in regions:
            found.append(self._harvest(s, e, 0))
        return np.concatenate(found) if found else np.zeros(0, dtype=np.uint64)


def _check(rc: int, err: int, pid: int, what: str) -> None:
    if rc == lib.DL_OK:
        return
    if err == _errno.ESRCH:
        raise _Exited()
    detail = f" ({_errno.errorcode.get(err, err)}: {os.strerror(err)})" if err else ""
    if rc == lib.DL_ERR_PERM:
        tracer = _tracer_of(pid)
        if tracer:
            raise PermissionError(f"process {pid} is already traced by process {tracer} (a debugger or strace?); "
                                  "a process has one tracer at a time: detach it, then record")
        raise PermissionError(
            f"not allowed to trace process {pid}{detail}: recording another process with userfaultfd needs ptrace "
            "rights over it (run as root or with CAP_SYS_PTRACE, or as its user with kernel.yama.ptrace_scope = 0; "
            "containers may forbid ptrace with seccomp)")
    if rc == lib.DL_ERR_UNSUPPORTED:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise UnsupportedError(f"recording another process with userfaultfd (--method uffd) is implemented for "
                                   f"x86-64 only, this is {platform.machine()}; launch the program under the "
                                   "recorder instead: dirtylog record -- COMMAND ARGS")
        raise UnsupportedError(f"{what}: not supported{detail}: process {pid} is 32-bit, has no vDSO, or its "
                               "kernel lacks userfaultfd WP async (Linux 6.7+)")
    raise OSError(err, f"{what} in process {pid}: {os.strerror(err) if err else f'status {rc}'}")


def _status_field(pid: int, name: bytes) -> int:
    """An integer field of /proc/PID/status (TracerPid, Seccomp, ...); 0 if absent or unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(name + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tracer_of(pid: int) -> int:
    return _status_field(pid, b"TracerPid")


def _check_injectable(pid: int) -> None:
    """Refuse to inject into a process under seccomp: a filter that kills on userfaultfd or ioctl would kill it."""
    mode = _status_field(pid, b"Seccomp")
    if mode:
        what = "strict mode" if mode == 1 else "a filter"
        raise UnsupportedError(
            f"process {pid} runs under seccomp ({what}: 'Seccomp: {mode}' in /proc/{pid}/status): the system calls "
            "the uffd method injects (userfaultfd, ioctl, close) could be forbidden there, and a filter that kills on "
            "a forbidden call would kill the process, so dirtylog does not inject into it; launch the program under "
            "the recorder instead (dirtylog record -- COMMAND ARGS), or use --method soft-dirty on a kernel with "
            "CONFIG_MEM_SOFT_DIRTY")


def choose_method(method: str = "auto", procfs: str = "/proc") -> str:
    """The method ``record_pid`` uses: ``method`` checked against what this kernel offers."""
    from .realtracker import kernel_support
    from .softdirty import soft_dirty_available

    m = str(method).strip().lower().replace("_", "-")
    if m not in METHODS:
        raise ConfigError(f"unknown recording method {method!r}; choose one of {', '.join(METHODS)}")
    if procfs != "/proc":  # a synthetic procfs: only soft-dirty reads files
        if m == "uffd":
            raise ConfigError("the uffd method works on the real /proc only")
        return "soft-dirty"
    sd = soft_dirty_available()
    if m == "soft-dirty" and not sd:
        raise UnsupportedError(
            f"this kernel (Linux {platform.release()}) has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off); "
            "use --method uffd (userfaultfd injected with ptrace) or launch the program under the recorder: "
            "dirtylog record -- COMMAND ARGS")
    if m == "soft-dirty" or (m == "auto" and sd):
        return "soft-dirty"
    ks = kernel_support()
    if not ks.ok:
        raise UnsupportedError(
            "recording another process needs soft-dirty bits (CONFIG_MEM_SOFT_DIRTY) or userfaultfd WP async and "
            f"PAGEMAP_SCAN; this kernel has neither: {ks.missing()}")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise UnsupportedError(f"this kernel has no soft-dirty bits, and the userfaultfd method is implemented for "
                               f"x86-64 only (this is {platform.machine()}); launch the program under the recorder "
                               "instead: dirtylog record -- COMMAND ARGS")
    return "uffd"


def _process_state(procfs: str, pid: int) -> Optional[str]:
    """The state letter of /proc/PID/stat, or None if the process is gone."""
    try:
        with open(os.path.join(procfs, str(pid), "stat"), "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"
    close = stat.rfind(b")")
    return stat[close + 2: close + 3].decode(errors="replace") if close >= 0 else "?"


def _read_maps(procfs: str, pid: int) -> bytes:
    try:
        with open(os.path.join(procfs, str(pid), "maps"), "rb") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise _Exited() from None
    if not text and _process_state(procfs, pid) in (None, "Z", "X"):
        raise _Exited()  # a zombie's maps are empty
    return text


def _command_of(procfs: str, pid: int) -> str:
    import shlex

    try:
        with open(os.path.join(procfs, str(pid), "cmdline"), "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        argv = []
    if not argv:
        try:
            with open(os.path.join(procfs, str(pid), "comm"), "rb") as f:
                argv = [f"[{f.read().strip().decode(errors='replace')}]"]
        except OSError:
            argv = [f"pid {pid}"]
    return shlex.join(argv)


def record_pid(
    pid: int,
    output: Union[str, "os.PathLike[str]", None] = None,
    *,
    interval: Union[float, str] = "100ms",
    duration: Union[float, str, None] = None,
    method: str = "auto",
    progress: Optional[Callable[[Progress], None]] = None,
    on_start: Optional[Callable[[int], None]] = None,
    procfs: str = "/proc",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], int] = time.monotonic_ns,
) -> Recording:
    """Record the dirty pages of the running process ``pid``; return (and with ``output``, save) the recording.

    ``interval``: time between harvests (default 100 ms, at least 1 ms); ``duration``:
    stop after this long (default: until the process exits or Ctrl-C); ``method``:
    ``"auto"``, ``"soft-dirty"`` or ``"uffd"`` (see the module docs); ``on_start``:
    called with the recording's start (``clock()`` nanoseconds, CLOCK_MONOTONIC by
    default) once the process is tracked, e.g. to start its workload; ``procfs``: the
    procfs root (a synthetic one in tests; soft-dirty only). ``sleep`` and ``clock``
    (monotonic nanoseconds) are the recorder's time, replaceable in tests. Raises
    RecordError for no such process, PermissionError without the rights to trace it,
    UnsupportedError when the kernel has neither method.
    """
    if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)) or int(pid) <= 0:
        raise ConfigError(f"pid must be a positive integer, got {pid!r}")
    pid = int(pid)
    ivl, dur = _check_options(interval, duration, output)
    if procfs == "/proc" and pid == os.getpid():
        raise RecordError("dirtylog cannot record its own process with --pid; use dirtylog.RealTracker")
    if _process_state(procfs, pid) in (None, "Z", "X"):
        raise RecordError(f"no process with pid {pid}" + (" (it is a zombie: it has exited)"
                                                           if _process_state(procfs, pid) else ""))
    chosen = choose_method(method, procfs)
    command = _command_of(procfs, pid)
    if chosen == "uffd":
        _check_injectable(pid)
    try:
        scanner: Any = (_soft_dirty(pid, procfs) if chosen == "soft-dirty" else _UffdScanner(pid))
    except _Exited:
        raise RecordError(f"no process with pid {pid}") from None
    page = int(scanner.page_size)
    index = _AddressIndex(page)
    harvests: List[Tuple[int, int, np.ndarray]] = []
    ivl_ns = int(round(ivl * 1e9))
    end_ns = None if dur is None or dur == float("inf") else int(round(dur * 1e9))
    complete = True
    t0 = clock()
    try:
        try:
            scanner.interval(eligible_regions(_read_maps(procfs, pid)), index.assign)  # the start: nothing reported
        except _Exited:
            raise RecordError(f"process {pid} exited before the recording started") from None
        if on_start is not None:
            on_start(t0)
        k = 0
        next_report = 0.0
        stop = False
        while not stop:
            k += 1
            now = clock() - t0
            if k * ivl_ns <= now:  # overran: the next deadline still ahead
                k = now // ivl_ns + 1
            target = k * ivl_ns
            if end_ns is not None and target >= end_ns:
                target, stop = end_ns, True
            try:
                wait = (t0 + target - clock()) / 1e9
                if wait > 0:
                    sleep(wait)
            except KeyboardInterrupt:
                stop = True  # Ctrl-C: harvest what the last interval holds, and end
            t = clock()
            with _sigint_deferred() as hit:  # a harvest is not cut in half (its pages are re-protected)
                try:
                    addrs = scanner.interval(eligible_regions(_read_maps(procfs, pid)), index.assign)
                except _Exited:
                    complete = False
                    break
                harvests.append((t - t0, clock() - t, index.indices(addrs)))
            stop = stop or bool(hit)
            if progress is not None and (t - t0) / 1e9 >= next_report:
                next_report = (t - t0) / 1e9 + 0.5
                progress(Progress((t - t0) / 1e9, len(harvests), int(harvests[-1][2].size), index.next, page, ivl))
    finally:
        scanner.close()
    raw = _Raw(index.regions, harvests, [], page, ivl_ns, pid, complete, True)
    rec = _recording(raw, command, None)
    rec.method = chosen
    if output is not None:
        rec.save(output)
    return rec


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[List[int]]:
    """Hold Ctrl-C (SIGINT) back until the block ends; the list it yields is non-empty if one came."""
    hit: List[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield hit
        return
    old = signal.signal(signal.SIGINT, lambda *_: hit.append(1))
    try:
        yield hit
    finally:
        signal.signal(signal.SIGINT, old)


def _soft_dirty(pid: int, procfs: str) -> Any:
    from .softdirty import SoftDirtyScanner

    try:
        return SoftDirtyScanner(pid, procfs)
    except (FileNotFoundError, ProcessLookupError):
        raise _Exited() from None
