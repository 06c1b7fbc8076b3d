"""Dirty-rate measurement, the way QEMU's ``calc-dirty-rate`` does it.

:func:`dirty_rate` runs a workload for one window of guest time and reports a
result like ``query-dirty-rate``; :func:`dirty_curve` measures the distinct
pages dirtied in windows of several lengths from a clean state.

Modes (background: QEMU migration/dirtyrate.c):

``"page-sampling"`` (QEMU's default)
    ``sample_pages`` pages per GiB of guest memory are chosen at random; QEMU
    hashes them at the window's start and end and counts those whose hash
    changed. Here every write changes its page, so a sampled page counts as
    dirty iff it was written in the window. The estimate is the dirty fraction
    of the sample times the number of pages, with its binomial standard error
    (finite-population corrected, with the fraction taken as (d + 1) / (k + 2)
    so that it is never 0).
``"dirty-bitmap"``
    a write-protection tracker started at the window's start and harvested at
    its end: the exact number of distinct pages dirtied.
``"dirty-ring"``
    a dirty-ring tracker; the per-vCPU rates come from the ring entries each vCPU
    pushed (``dirtied``) and the overall rate is their sum, as in QEMU (whose
    vCPU's ``dirty_pages`` counts the entries reaped from its ring). A ring
    that fills up is reaped and its pages re-armed, so a page written again
    after that counts again: this mode can report more than "dirty-bitmap"
    (a ring-full exit reaps every vCPU's ring, as QEMU's does).
    A page goes to the ring of the vCPU that writes it first, so the vCPUs run
    as if at the same time, as real vCPUs do: they take turns in slices of about
    ``INTERLEAVE_WRITES`` writes each, each slice running every vCPU's writes of it
    in turn, as each guest slice of the migration engine does.

Rates are in MiB/s: ``dirty pages * page_size / window / 2**20``. A longer window
gives a lower rate for the same workload, since each page counts once however
often it is written (background.md §3, §5).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _validate as v
from .errors import ConfigError
from .tracker import Tracker
from .units import parse_time

__all__ = ["DirtyRateResult", "DirtyCurveResult", "dirty_rate", "dirty_curve", "windows_within", "MODES"]

MODES = ("page-sampling", "dirty-bitmap", "dirty-ring")
MIB = 1 << 20
GIB = 1 << 30
SAMPLE_PAGES_MIN, SAMPLE_PAGES_MAX = 128, 16384  # QEMU's MIN/MAX_SAMPLE_PAGE_COUNT
SAMPLE_PAGES_DEFAULT = 512  # QEMU's DIRTYRATE_DEFAULT_SAMPLE_PAGES


@dataclass(frozen=True)
class DirtyRateResult:
    """One measurement, with the fields of QEMU's ``query-dirty-rate`` (rates in MiB/s).

    Fields::

        dirty_rate_mib_s  the dirty rate
        dirty_pages       dirty pages in the window (the estimate for page-sampling; the
                          ring entries pushed for dirty-ring)
        window            the window (calc-time), in seconds
        mode              "page-sampling", "dirty-bitmap" or "dirty-ring"
        sample_pages      sampled pages per GiB (page-sampling), else 0
        vcpu_rates        MiB/s of each vCPU (dirty-ring), else None
        stderr_mib_s      standard error of the estimate (page-sampling), else 0
        sampled           pages actually sampled (page-sampling), else 0
        total_pages       pages of the guest
        page_size         bytes per page
        start             guest time at which the window started (s)
    """

    dirty_rate_mib_s: float
    dirty_pages: int
    window: float
    mode: str
    sample_pages: int
    vcpu_rates: Optional[Tuple[float, ...]]
    stderr_mib_s: float
    sampled: int
    total_pages: int
    page_size: int
    start: float = 0.0

    @property
    def dirty_rate_pages_s(self) -> float:
        """The dirty rate in pages per second (libvirt's "Dirty rate")."""
        return self.dirty_rate_mib_s * MIB / self.page_size

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        if self.vcpu_rates is not None:
            d["vcpu_rates"] = list(self.vcpu_rates)
        return d


@dataclass(frozen=True)
class DirtyCurveResult:
    """Distinct dirty pages per window, each window from a clean state at ``start``.

    Fields::

        windows       window lengths (s), in the order asked
        dirty_pages   distinct dirty pages in each (estimates scaled to all of memory in
                      page-sampling mode)
        sample_dirty  page-sampling: dirty pages counted in the sample, else None
        sampled       page-sampling: pages in the sample, else None
        writes        page writes the workload made in each window (counted, not its mean
                      rate x the window: a recording's first second can hold far more than
                      its mean); never fewer than dirty_pages in dirty-bitmap mode
    """

    windows: np.ndarray
    dirty_pages: np.ndarray
    total_pages: int
    page_size: int
    mode: str
    start: float = 0.0
    sample_dirty: Optional[np.ndarray] = None
    sampled: Optional[int] = None
    writes: Optional[np.ndarray] = None

    def rates_mib_s(self) -> np.ndarray:
        """The dirty rate each window would report (MiB/s)."""
        return self.dirty_pages * self.page_size / self.windows / MIB

    def to_dict(self) -> Dict[str, Any]:
        return {
            "windows": self.windows.tolist(),
            "dirty_pages": self.dirty_pages.tolist(),
            "total_pages": self.total_pages,
            "page_size": self.page_size,
            "mode": self.mode,
            "start": self.start,
            "sample_dirty": None if self.sample_dirty is None else self.sample_dirty.tolist(),
            "sampled": self.sampled,
            "writes": None if self.writes is None else self.writes.tolist(),
        }

    def fit(self, **kwargs: Any) -> Any:
        """A :class:`~dirtylog.workloads.DirtyCurve` workload fitted to this curve."""
        from .workloads import DirtyCurve

        if self.sample_dirty is not None:
            return DirtyCurve(self.windows, self.sample_dirty, self.total_pages, sampled_pages=self.sampled, **kwargs)
        return DirtyCurve(self.windows, self.dirty_pages, self.total_pages, **kwargs)


# ---------------------------------------------------------------------------- helpers


def _guest(memory: Any, page_size: Any, vcpus: Any) -> Tuple[int, int, int, int]:
    psize = v.check_page_size(page_size)
    pages = v.guest_pages(memory, psize, whole=True)
    nbytes = pages * psize
    nv = v.as_int("vcpus", vcpus, minimum=1, maximum=v.MAX_VCPUS)
    return nbytes, pages, psize, nv


def _mode(mode: Any, allowed: Sequence[str]) -> str:
    if not isinstance(mode, str) or mode.lower() not in allowed:
        raise ConfigError(f"unknown mode {mode!r}; allowed: {', '.join(allowed)}")
    return mode.lower()


def _sample(nbytes: int, pages: int, sample_pages: Any, seed: Any) -> Tuple[int, np.ndarray]:
    spg = v.as_int("sample_pages", sample_pages, minimum=SAMPLE_PAGES_MIN, maximum=SAMPLE_PAGES_MAX)
    k = min(pages, max(1, (nbytes * spg) // GIB))
    rng = np.random.default_rng(v.as_int("seed", seed, minimum=0))
    if k * 4 >= pages:
        idx = rng.permutation(pages)[:k]
    else:  # without replacement, without an O(pages) permutation
        idx = np.unique(rng.integers(0, pages, size=k))
        while idx.size < k:
            idx = np.unique(np.concatenate([idx, rng.integers(0, pages, size=k - idx.size)]))
        idx = rng.permutation(idx)[:k]
    return spg, np.sort(idx.astype(np.uint64))


def _bits_set(words: np.ndarray, pages: np.ndarray) -> np.ndarray:
    return ((words[pages >> np.uint64(6)] >> (pages & np.uint64(63))) & np.uint64(1)).astype(bool)


#: Writes each vCPU makes per slice when the vCPUs take turns (:func:`_run` with ``interleave``):
#: few enough that they run as if at the same time (per-vCPU dirty-ring figures within 1.2 % of
#: those at 4 writes a slice, measured on hotspot, uniform and Zipf guests of 2 to 8 vCPUs), many
#: enough that the cost of a slice (a few microseconds of Python) stays small beside its writes.
INTERLEAVE_WRITES = 32

#: Progress calls per window, at most (a bar moves in steps of 0.5 %).
PROGRESS_STEPS = 200


def _run(workload: Any, tr: Any, t0: float, t1: float, progress: Optional[Callable[[float, float], None]],
         base: float = 0.0, total: float = 0.0, interleave: bool = False) -> None:
    """The workload from guest time t0 to t1, in slices; with ``progress``, calling
    ``progress(done, total)`` in seconds of guest time as it goes (at most PROGRESS_STEPS times).

    Each slice runs every vCPU's writes of it in turn (one workload run, as each guest slice of the
    migration engine does). The writes are the same however the span is sliced (workloads are
    invariant under slicing), and so are the figures of a tracker that only collects pages (a
    bitmap). A dirty ring's are not: which vCPU pushes a page first, and whose ring fills, depend on
    the order of the vCPUs' writes. With ``interleave`` (a dirty ring of several vCPUs) the slices
    therefore come from the span itself, never from ``progress``: about INTERLEAVE_WRITES writes of
    the busiest vCPU each, evenly spaced from t0, so that the vCPUs run as if at the same time, as
    real vCPUs do, and the figures are the same with a bar or without."""
    bw = workload.bind(tr.pages, tr.vcpus, tr.page_size)
    total = total or (t1 - t0)
    if interleave and tr.vcpus > 1:
        most = max(bw.count(t0, t1, j) for j in range(tr.vcpus))
        n = max(1, -(-most // INTERLEAVE_WRITES))
    elif progress is not None:
        n = max(1, min(PROGRESS_STEPS, math.ceil((t1 - t0) / max(total / PROGRESS_STEPS, 1e-3))))
    else:
        n = 1
    shown = 0
    for i in range(n):
        a = t0 + (t1 - t0) * i / n
        b = t1 if i == n - 1 else t0 + (t1 - t0) * (i + 1) / n
        bw.run(tr, a, b)
        if progress is not None and ((i + 1) * PROGRESS_STEPS // n > shown or i == n - 1):
            shown = (i + 1) * PROGRESS_STEPS // n
            progress(base + (b - t0), total)


def _workload(workload: Any, seed: int) -> Any:
    """The workload object: ``workload`` itself, or built from a spec string (as ``simulate()`` takes it)."""
    if isinstance(workload, str):
        from .specs import parse_workload

        built = parse_workload(workload, seed=seed)
        if built is None:
            raise ConfigError(f"workload {workload!r} writes nothing: a measurement needs a workload that writes")
        return built
    if not hasattr(workload, "run") or not hasattr(workload, "bind"):
        raise TypeError(f"workload must be a dirtylog workload (Uniform, Hotspot, ...) or a spec string such as "
                        f"'hotspot:1GiB/s', got {type(workload).__name__}")
    return workload


# ---------------------------------------------------------------------------- measurements


def dirty_rate(
    workload: Any,
    memory: Union[int, str],
    window: Union[float, str] = "1s",
    mode: str = "page-sampling",
    sample_pages: int = SAMPLE_PAGES_DEFAULT,
    vcpus: int = 1,
    page_size: Union[int, str] = 4096,
    seed: int = 0,
    start: Union[float, str] = 0.0,
    ring_entries: int = 4096,
    progress: Optional[Callable[[float, float], None]] = None,
) -> DirtyRateResult:
    """Measure ``workload``'s dirty rate over one window, like QEMU's ``calc-dirty-rate``.

    Args:
        workload: a :mod:`dirtylog.workloads` workload, or a spec string (``"hotspot:1GiB/s"``,
            :mod:`dirtylog.specs`; built with ``seed``), as :func:`dirtylog.simulate` takes it.
        memory: guest memory in bytes or as a size (``"4GiB"``); a whole number of pages.
        window: the measurement window (calc-time), seconds or ``"1s"``, > 0.
        mode: ``"page-sampling"``, ``"dirty-bitmap"`` or ``"dirty-ring"`` (module docs).
        sample_pages: page-sampling: pages sampled per GiB (QEMU's range, 128..16384;
            at least one page is sampled).
        vcpus, page_size: the guest's.
        seed: page-sampling: seed of the sample (a workload object has its own; a spec string is built with it).
        start: guest time at which the window starts.
        ring_entries: dirty-ring: entries per vCPU ring.
        progress: called as ``progress(done, total)`` (seconds of guest time run, and of the window)
            as the window runs (the command line draws a bar with it); the result is the same without it.
    """
    workload = _workload(workload, seed)
    nbytes, pages, psize, nv = _guest(memory, page_size, vcpus)
    win = parse_time(window, name="window", allow_zero=False)
    t0 = parse_time(start, name="start")
    m = _mode(mode, MODES)
    to_mib = psize / win / MIB
    if m == "dirty-ring":
        tr = Tracker(pages, mode="ring", vcpus=nv, page_size=psize, ring_entries=ring_entries)
        tr.start()
        _run(workload, tr, t0, t0 + win, progress, interleave=True)  # the vCPUs as if at the same time
        tr.harvest()
        per = [vs.dirtied for vs in tr.stats.vcpus]
        total = int(sum(per))
        return DirtyRateResult(
            total * to_mib, total, win, m, 0, tuple(p * to_mib for p in per), 0.0, 0, pages, psize, t0
        )
    if m == "dirty-bitmap":
        tr = Tracker(pages, mode="wp", vcpus=nv, page_size=psize)
        tr.start()
        _run(workload, tr, t0, t0 + win, progress)
        dirty = int(tr.harvest().size)
        return DirtyRateResult(dirty * to_mib, dirty, win, m, 0, None, 0.0, 0, pages, psize, t0)
    spg, sample = _sample(nbytes, pages, sample_pages, seed)
    tr = Tracker(pages, mode="wp", vcpus=nv, page_size=psize)
    tr.start()
    _run(workload, tr, t0, t0 + win, progress)
    d = int(_bits_set(tr.harvest_bitmap(), sample).sum())
    k = sample.size
    est = d / k * pages
    p = (d + 1) / (k + 2)
    fpc = (pages - k) / (pages - 1) if pages > 1 else 0.0
    se_pages = pages * math.sqrt(p * (1 - p) / k * fpc)
    return DirtyRateResult(
        est * to_mib, int(round(est)), win, m, spg, None, se_pages * to_mib, k, pages, psize, t0
    )


def windows_within(windows: Iterable[float], span: float) -> List[float]:
    """The window lengths (seconds) that fit within ``span`` seconds, then ``span`` itself, sorted
    without repeats: the windows of a dirty curve over a trace played once (a recording), which
    writes nothing after its last record, so that a longer window would only add idle time."""
    return sorted({float(w) for w in windows if w <= span + 1e-9} | {float(span)})


def dirty_curve(
    workload: Any,
    memory: Union[int, str],
    windows: Union[Sequence[Union[float, str]], np.ndarray],
    *,
    mode: str = "dirty-bitmap",
    sample_pages: int = SAMPLE_PAGES_DEFAULT,
    vcpus: int = 1,
    page_size: Union[int, str] = 4096,
    seed: int = 0,
    start: Union[float, str] = 0.0,
    progress: Optional[Callable[[float, float], None]] = None,
) -> DirtyCurveResult:
    """Distinct pages dirtied in each window ``[start, start + w)``, from a clean state.

    ``workload`` is a workload object or a spec string, as :func:`dirty_rate` takes it.

    ``mode`` is ``"dirty-bitmap"`` (exact) or ``"page-sampling"`` (counted on a
    sample of ``sample_pages`` pages per GiB and scaled; the raw counts are in
    ``sample_dirty``, ready for :class:`~dirtylog.workloads.DirtyCurve`). The
    workload runs once to the longest window; by the slicing invariance of
    workloads this equals one fresh run per window. ``progress(done, total)``,
    if given, is called in seconds of guest time as it runs.
    """
    workload = _workload(workload, seed)
    nbytes, pages, psize, nv = _guest(memory, page_size, vcpus)
    m = _mode(mode, ("dirty-bitmap", "page-sampling"))
    if isinstance(windows, (str, bytes)) or not hasattr(windows, "__iter__"):
        raise TypeError("windows must be a sequence of window lengths, e.g. [0.1, 1, '10s']")
    ws = np.array([parse_time(w, name=f"windows[{i}]", allow_zero=False) for i, w in enumerate(windows)], dtype=float)
    if ws.size == 0:
        raise ConfigError("windows must hold at least one window length")
    t0 = parse_time(start, name="start")
    order = np.argsort(ws, kind="stable")
    dirty = np.zeros(ws.size, dtype=np.int64 if m == "dirty-bitmap" else np.float64)
    writes = np.zeros(ws.size, dtype=np.int64)
    raw = None
    sample = None
    if m == "page-sampling":
        _, sample = _sample(nbytes, pages, sample_pages, seed)
        raw = np.zeros(ws.size, dtype=np.int64)
        tr = Tracker(pages, mode="clear", vcpus=nv, page_size=psize)  # harvests leave the bitmap as it is
    else:
        tr = Tracker(pages, mode="wp", vcpus=nv, page_size=psize)
    tr.start()
    now = t0
    for i in order:
        end = t0 + ws[i]
        if end > now:
            _run(workload, tr, now, end, progress, now - t0, float(ws.max()))
            now = end
        writes[i] = tr.stats.writes
        if sample is None:
            dirty[i] = tr.stats.dirty_pages
        else:
            assert raw is not None  # set with sample (page-sampling)
            d = int(_bits_set(tr.harvest_bitmap(), sample).sum())
            raw[i] = d
            dirty[i] = d / sample.size * pages
    return DirtyCurveResult(
        ws, dirty, pages, psize, m, t0, raw, None if sample is None else int(sample.size), writes
    )
