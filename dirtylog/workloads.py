"""Workloads: seeded, reproducible guest write streams generated in C.

A workload is a *spec* of how a guest writes its memory: :class:`Uniform`,
:class:`Hotspot`, :class:`Zipf`, :class:`Sequential`, :class:`WorkingSet`,
:class:`Idle`, :class:`Mix`, :class:`Trace`, :class:`DirtyCurve` and
:class:`DirtyRate` (from a measured dirty rate). It is bound
to a guest (pages, vCPUs, page size) when used, and is then a pure function of
guest time: the writes of a slice ``[t0, t1)`` (seconds) depend on nothing but
``t0``, ``t1``, the parameters and the seeds.

>>> from dirtylog import Tracker, Uniform
>>> w = Uniform("40MiB/s", seed=1)          # 10240 page writes/s of 4 KiB pages
>>> [a.size for a in w.writes(0, 0.5, pages=2**20)]
[5120]
>>> t = Tracker(2**20); t.start(); w.run(t, 0, 0.5)
5120

Common parameters
-----------------
``rate``
    page writes per second of guest time: a number, a count string (``"5000/s"``)
    or a byte rate (``"1GiB/s"`` means 1 GiB of page writes per second, i.e.
    2**30 / page_size writes/s), read by :func:`dirtylog.units.parse_count_rate`.
``shares``
    how the writes are shared across vCPUs: None (round robin: equal shares) or
    one non-negative weight per vCPU (normalized).
``seed``
    selects the stream (and the scattering of hot sets); the same seed gives the
    same writes. Components of a :class:`Mix` also mix in their position, so
    equal seeds still give independent components.

Exact semantics (see ``csrc/include/dirtylog/workload.h``): writes are evenly
spaced in guest time, vCPU j of a component writing ``floor(r_j t)`` pages in
``[0, t)``; write k's page is a counter-based hash of (seed, component, j, k).
Splitting a span into slices of any size therefore gives exactly the same
writes. Within a slice, writes are applied vCPU by vCPU and, within a vCPU,
component by component.
"""
from __future__ import annotations

import copy

import math
import numbers
import os
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _validate as v
from ._lib import check, ffi, lib
from .dirtycurve import ClassFit, expected_curve, fit_rate_classes
from .errors import ConfigError
from .trace import TraceData, check_trace, check_trace_bounds, load_trace, save_trace
from .units import FractionLike, parse_count_rate, parse_fraction, parse_size, parse_time

__all__ = [
    "Workload",
    "BoundWorkload",
    "Uniform",
    "Hotspot",
    "Zipf",
    "Sequential",
    "WorkingSet",
    "Idle",
    "Mix",
    "Trace",
    "DirtyCurve",
    "DirtyRate",
    "save_trace",
    "load_trace",
]

TimeLike = Union[float, int, str]
RateLike = Union[float, int, str]

_MAX_RATE = 1e15  # writes/s, the C core's bound
#: Writes applied per C call by :meth:`BoundWorkload.run` (a few milliseconds of work).
RUN_BUDGET = 1 << 22
_SEED_MAX = 2**64 - 1


# ---------------------------------------------------------------------------- argument helpers


def _rate(rate: Any, page_size: int, name: str = "rate") -> float:
    r = parse_count_rate(rate, page_size, name)
    if r > _MAX_RATE:
        raise ConfigError(f"{name} must be at most {_MAX_RATE:g} page writes/s, got {rate!r} ({r:g} writes/s)")
    return r


def check_read_share(share: Any) -> float:
    """A share of the guest's accesses that are reads, from 0 to below 1 (``0.6`` or ``"60%"``): the one check
    of it (:meth:`Workload.with_read_share`, :class:`~dirtylog.PostCopy`)."""
    return parse_fraction(share, name="read_share", allow_one=False)


def _exponent(x: Any) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"s must be a number, got {type(x).__name__} {x!r}")
    f = float(x)
    if not (0.0 < f <= 100.0):  # also rejects NaN
        raise ConfigError(f"s (the Zipf exponent) must be in (0, 100], got {x!r}")
    return f


def check_seed(seed: Any) -> int:
    """A seed of dirtylog's streams: a whole number from 0 to 2**64 - 1 (every seed is checked here)."""
    return v.as_int("seed", seed, minimum=0, maximum=_SEED_MAX)


_seed = check_seed


def _shares(shares: Any) -> Optional[Tuple[float, ...]]:
    if shares is None:
        return None
    if isinstance(shares, (str, bytes)) or not isinstance(shares, Iterable):
        raise TypeError(f"shares must be None or a sequence of one weight per vCPU, got {shares!r}")
    out = []
    for i, s in enumerate(shares):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real):
            raise TypeError(f"shares[{i}] must be a number, got {type(s).__name__} {s!r}")
        f = float(s)
        if not (f >= 0.0) or not math.isfinite(f):
            raise ConfigError(f"shares[{i}] must be a finite number >= 0, got {s!r}")
        out.append(f)
    if not out:
        raise ConfigError("shares must hold one weight per vCPU, got an empty sequence")
    if sum(out) <= 0.0:
        raise ConfigError(f"shares must have a positive sum (at least one vCPU writes), got {list(out)}")
    return tuple(out)


def _time(x: Any, name: str) -> float:
    if type(x) is float and 0.0 <= x < math.inf:  # what parse_time returns for it, without its exact checks
        return x
    return parse_time(x, name=name)


def _span(t0: Any, t1: Any) -> Tuple[float, float]:
    a, b = _time(t0, "t0"), _time(t1, "t1")
    if b < a:
        raise ConfigError(f"t1 must be >= t0 (a slice [t0, t1) of guest time), got t0={a!r} s, t1={b!r} s")
    return a, b


def _pages_of(x: Any, name: str, pages: int, page_size: int, *, fraction: bool) -> int:
    """A page count given as pages (int), a fraction of memory (float), a size or a percentage (str)."""
    if isinstance(x, str):
        s = x.strip()
        if s.endswith("%"):
            f = parse_fraction(s, name=name, allow_zero=False)
            return max(1, min(pages, int(round(f * pages))))
        nbytes = parse_size(s, name=name)
        return nbytes // page_size
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a page count, a fraction or a size, not a bool")
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real) and fraction:
        f = float(x)
        return max(1, min(pages, int(round(f * pages))))
    raise TypeError(f"{name} must be a page count (int), {'a fraction (float), ' if fraction else ''}or a size string, got {x!r}")


def _region(start: Any, length: Any, pages: int, page_size: int) -> Tuple[int, int]:
    """``(start, length)`` in pages of a region ``[start, start + length)`` of a guest of ``pages`` pages
    (``length`` None: to the end of memory; ConfigError if it does not fit): the region that
    :class:`Sequential` sweeps and :class:`Uniform` writes."""
    first = _pages_of(start, "start", pages, page_size, fraction=False)
    if not 0 <= first < pages:
        raise ConfigError(f"start must be a page of the guest (0..{pages - 1}), got {start!r} ({first})")
    n = pages - first if length is None else _pages_of(length, "length", pages, page_size, fraction=True)
    if n < 1 or first + n > pages:
        raise ConfigError(
            f"length must be 1..{pages - first} pages (from start={first} to the end of a {pages}-page guest), "
            f"got {length!r} ({n})"
        )
    return first, n


def _check_region(start: Any, length: Any) -> None:
    """Validate a region's ``start`` and ``length`` before the memory size is known."""
    _check_pages_spec(start, "start", fraction=False, minimum=0)
    if length is not None:
        _check_pages_spec(length, "length", fraction=True)


def _check_pages_spec(x: Any, name: str, *, fraction: bool, minimum: int = 1) -> None:
    """Validate a page-count spec before the memory size is known."""
    if isinstance(x, str):
        s = x.strip()
        if s.endswith("%"):
            _pages_of(s, name, 100, 1, fraction=True)
        else:
            nbytes = parse_size(s, name=name)
            if nbytes < minimum:
                raise ConfigError(f"{name} must be at least {minimum} page(s), got {x!r}")
        return
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a page count, a fraction or a size, not a bool")
    if isinstance(x, numbers.Integral):
        if int(x) < minimum:
            raise ConfigError(f"{name} must be >= {minimum} pages, got {x!r}")
        return
    if isinstance(x, numbers.Real) and fraction:
        parse_fraction(float(x), name=f"{name} as a fraction of memory", allow_zero=False)
        return
    raise TypeError(f"{name} must be a page count (int), {'a fraction (float), ' if fraction else ''}or a size string, got {x!r}")


def _check_slice(rc: int, a: float, b: float, what: str) -> None:
    if rc == lib.DL_ERR_RANGE:
        raise ConfigError(
            f"{what}: guest time {b!r} s is too far: a stream of the workload would pass 2**62 writes, "
            f"or a repeating working set 2**52 cycles (the slice was [{a!r}, {b!r}) s)"
        )
    check(rc, what)


def _dptr(a: Optional[np.ndarray]) -> Any:
    return ffi.NULL if a is None else ffi.from_buffer("double[]", a)


def _u64ptr(a: np.ndarray) -> Any:
    return ffi.from_buffer("uint64_t[]", a)


# ---------------------------------------------------------------------------- bound workloads


class BoundWorkload:
    """A workload bound to a guest: the C handle and the queries on it.

    Made by :meth:`Workload.bind`; cached per (pages, vcpus, page_size).
    """

    def __init__(self, spec: "Workload", pages: int, vcpus: int, page_size: int) -> None:
        self.spec = spec
        self.pages = pages
        self.vcpus = vcpus
        self.page_size = page_size
        out = ffi.new("dl_workload **")
        rc = lib.dl_workload_create(pages, vcpus, 0, out)
        check(rc, "creating the workload")
        self._w = ffi.gc(out[0], lib.dl_workload_destroy)
        spec._add(self)

    # -- C plumbing used by the specs ---------------------------------------------
    def _shares(self, shares: Optional[Tuple[float, ...]], what: str) -> Optional[np.ndarray]:
        if shares is None:
            return None
        if len(shares) != self.vcpus:
            raise ConfigError(
                f"{what}: shares has {len(shares)} weight(s) but the guest has {self.vcpus} vCPU(s); "
                "give one weight per vCPU"
            )
        return np.asarray(shares, dtype=np.float64)

    @property
    def _handle(self) -> Any:
        """The cffi ``dl_workload *`` (for the C engine)."""
        return self._w

    @property
    def components(self) -> int:
        """Number of C components (a DirtyCurve adds one per class)."""
        return int(lib.dl_workload_components(self._w))

    @property
    def memory_bytes(self) -> int:
        return int(lib.dl_workload_memory_bytes(self._w))

    def __repr__(self) -> str:
        return f"BoundWorkload({self.spec!r}, pages={self.pages}, vcpus={self.vcpus}, page_size={self.page_size})"

    # -- queries --------------------------------------------------------------------
    def _vcpu(self, vcpu: Any) -> int:
        return v.check_vcpu(vcpu, self.vcpus)

    def count(self, t0: TimeLike, t1: TimeLike, vcpu: Optional[int] = None) -> int:
        """Writes in ``[t0, t1)``: of one vCPU, or of all of them (``vcpu=None``)."""
        a, b = _span(t0, t1)
        c = ffi.new("uint64_t *")
        vcpus = range(self.vcpus) if vcpu is None else [self._vcpu(vcpu)]
        total = 0
        for j in vcpus:
            _check_slice(lib.dl_workload_count(self._w, a, b, j, c), a, b, "count")
            total += int(c[0])
        return total

    def generate(self, t0: TimeLike, t1: TimeLike, vcpu: int = 0) -> np.ndarray:
        """The pages vCPU ``vcpu`` writes in ``[t0, t1)``, in order (uint64)."""
        a, b = _span(t0, t1)
        j = self._vcpu(vcpu)
        c = ffi.new("uint64_t *")
        _check_slice(lib.dl_workload_count(self._w, a, b, j, c), a, b, "generate")
        out = np.empty(int(c[0]), dtype=np.uint64)
        n = ffi.new("size_t *")
        check(lib.dl_workload_generate(self._w, a, b, j, _u64ptr(out), out.size, n), "generate")
        return out

    def writes(self, t0: TimeLike, t1: TimeLike) -> List[np.ndarray]:
        """The pages each vCPU writes in ``[t0, t1)``: one uint64 array per vCPU."""
        return [self.generate(t0, t1, j) for j in range(self.vcpus)]

    def run(self, tracker: Any, t0: TimeLike, t1: TimeLike, vcpu: Optional[int] = None) -> int:
        """Apply the writes of ``[t0, t1)`` to ``tracker`` (all vCPUs, or one); returns their number.

        A :class:`dirtylog.Tracker` is fed in C without materializing the slice;
        any other object with ``write(pages, vcpu)`` (e.g. the numpy
        :class:`~dirtylog.reference.ReferenceTracker`) gets one batch per vCPU.
        """
        a, b = _span(t0, t1)
        if tracker.pages != self.pages or tracker.vcpus != self.vcpus:
            raise ConfigError(
                f"the workload is bound to {self.pages} pages and {self.vcpus} vCPU(s) but the tracker has "
                f"{tracker.pages} pages and {tracker.vcpus} vCPU(s)"
            )
        handle = getattr(tracker, "_handle", None)
        if handle is None:
            js = range(self.vcpus) if vcpu is None else [self._vcpu(vcpu)]
            total = 0
            for j in js:
                pages = self.generate(a, b, j)
                tracker.write(pages, vcpu=j)
                total += pages.size
            return total
        # In bounded pieces (the order of one dl_workload_run call): Ctrl-C works on any slice.
        n = ffi.new("uint64_t *")
        cursor = ffi.new("dl_workload_cursor *")
        finished = ffi.new("int *")
        j = 0 if vcpu is None else self._vcpu(vcpu)
        while not finished[0]:
            with tracker._lock:  # the tracker's own methods hold it too: one C call on it at a time
                rc = lib.dl_workload_run_part(self._w, handle, int(vcpu is None), j, a, b, cursor, RUN_BUDGET, n,
                                              finished)
            _check_slice(rc, a, b, "run")
        return int(n[0])


# ---------------------------------------------------------------------------- the specs


#: Share of memory accesses that are reads when a workload does not say: two reads
#: per write, a common load/store mix of server and compute code.
DEFAULT_READ_SHARE = 2.0 / 3.0


class Workload:
    """Base class of the workload specs (see the module documentation).

    A spec caches its bindings to guests (:meth:`bind`); treat it as immutable.
    Setting a parameter afterwards drops the cached bindings (they are rebuilt
    on the next use), and copies and pickles carry no binding, so specs can be
    sent to other processes.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_") and "_bound" in self.__dict__:
            object.__setattr__(self, "_bound", {})

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_bound"] = {}
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __copy__(self) -> "Workload":
        c = object.__new__(type(self))
        c.__dict__.update(self.__dict__)
        c.__dict__["_bound"] = {}
        return c

    def __init__(self, *, shares: Any = None, seed: Any = 0) -> None:
        self._shares_spec = _shares(shares)
        self._seed_value = _seed(seed)
        self._bound: Dict[Tuple[int, int, int], BoundWorkload] = {}

    seed = property(lambda self: self._seed_value, doc="The stream's seed.")
    shares = property(lambda self: self._shares_spec, doc="Per-vCPU weights, or None for equal shares.")

    #: Share of the guest's memory accesses that are reads (post-copy faults on reads
    #: too). None: the default, :data:`DEFAULT_READ_SHARE`. Set with :meth:`with_read_share`.
    read_share: Optional[float] = None

    def with_read_share(self, share: FractionLike) -> "Workload":
        """A copy of this workload whose accesses are ``share`` reads (0 <= share < 1, or ``"60%"``).

        Reads follow the same distribution over pages as the writes; they matter
        only after a post-copy switch-over, where a read of a page the destination
        lacks is a remote fault like a write.
        """
        rs = check_read_share(share)
        c = copy.copy(self)
        c.read_share = rs
        return c

    @property
    def stationary(self) -> bool:
        """True when the write stream's statistics do not change with time (Uniform,
        Hotspot, Zipf, Sequential, DirtyCurve, and a Mix of such): the migration
        engine's early "never converges" verdict (``PreCopy(stop_when_stalled=True)``)
        is only given for these. False for phases (WorkingSet with more than one
        phase) and traces."""
        return False

    @property
    def iid_writes(self) -> bool:
        """True when each write's page is drawn independently from one fixed distribution over the
        pages, writes evenly spaced in guest time (Uniform, Hotspot, Zipf, DirtyCurve, DirtyRate, a
        single-phase WorkingSet, and a Mix of such). Then the expected number of distinct pages
        dirtied in a window depends only on its length, not on where it starts, and grows concavely
        with it: the premise of the in-round early verdict (:mod:`dirtylog.decision`), which judges
        every future sync from one measured window. False for sweeps (Sequential), phases and
        traces, repeating or not."""
        return False

    # -- to implement --------------------------------------------------------------
    def _add(self, bw: BoundWorkload) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        """Long-run page writes per second (for models; ``pages`` matters only for DirtyCurve)."""
        raise NotImplementedError  # pragma: no cover

    def written_pages(self, pages: int, page_size: int = 4096) -> int:
        """The pages of a guest of ``pages`` pages that the writes fall among (for models: the saturating
        model's ``N``, :func:`dirtylog.models.saturating`): all of them, unless the workload writes part
        of memory only: a region (Uniform and Sequential with ``start``/``length``), a hot or cold set
        taking every write (Hotspot with ``hot_share`` 1 or 0), the phases' sets (WorkingSet), the union
        of its parts' (Mix)."""
        return int(pages)

    def _written_region(self, pages: int, page_size: int = 4096) -> Optional[range]:
        """The pages written, as a range, when they are a region of memory (for Mix's union); None when
        they are a set scattered over memory by a seeded permutation (a hot set, a working set)."""
        return range(0, int(pages)) if self.written_pages(pages, page_size) == pages else None

    def _params(self) -> str:  # for repr
        return ""

    def __repr__(self) -> str:
        extra = []
        if self._shares_spec is not None:
            extra.append(f"shares={list(self._shares_spec)}")
        if self._seed_value:
            extra.append(f"seed={self._seed_value}")
        p = ", ".join([x for x in [self._params()] + extra if x])
        return f"{type(self).__name__}({p})"

    # -- binding and queries ----------------------------------------------------------
    def bind(self, pages: int, vcpus: int = 1, page_size: Union[int, str] = 4096) -> BoundWorkload:
        """The workload bound to a guest of ``pages`` pages and ``vcpus`` vCPUs (cached)."""
        npages = v.as_int("pages", pages, minimum=1, maximum=v.MAX_PAGES)
        nv = v.as_int("vcpus", vcpus, minimum=1, maximum=v.MAX_VCPUS)
        psize = v.check_page_size(page_size)
        key = (npages, nv, psize)
        bw = self._bound.get(key)
        if bw is None:
            bw = BoundWorkload(self, npages, nv, psize)
            if len(self._bound) >= 8:  # keep a few bindings, not every size ever used
                self._bound.pop(next(iter(self._bound)))
            self._bound[key] = bw
        return bw

    def writes(
        self, t0: TimeLike, t1: TimeLike, *, pages: int, vcpus: int = 1, page_size: Union[int, str] = 4096
    ) -> List[np.ndarray]:
        """The pages each vCPU writes in ``[t0, t1)`` of guest time (one uint64 array per vCPU)."""
        return self.bind(pages, vcpus, page_size).writes(t0, t1)

    def count(
        self, t0: TimeLike, t1: TimeLike, *, pages: int, vcpus: int = 1, page_size: Union[int, str] = 4096
    ) -> int:
        """The number of writes (all vCPUs) in ``[t0, t1)``."""
        return self.bind(pages, vcpus, page_size).count(t0, t1)

    def run(self, tracker: Any, t0: TimeLike, t1: TimeLike, vcpu: Optional[int] = None) -> int:
        """Apply the writes of ``[t0, t1)`` to ``tracker`` (fused in C for a Tracker); returns their number.

        The workload is bound to the tracker's pages, vCPUs and page size.
        """
        bw = self.bind(tracker.pages, tracker.vcpus, tracker.page_size)
        return bw.run(tracker, t0, t1, vcpu)

    def __add__(self, other: "Workload") -> "Mix":
        if not isinstance(other, Workload):
            return NotImplemented
        return Mix([self, other])

    # for Mix
    def _leaves(self) -> List["Workload"]:
        return [self]


class Uniform(Workload):
    """Writes spread uniformly over memory at ``rate`` page writes per second: over all of it, or
    over the region ``[start, start + length)`` only (pages as ints, or sizes such as ``"4MiB"``;
    ``length`` may also be a fraction of memory, and defaults to the rest of memory), like a guest
    that writes only the memory it filled (the validation guest: dirtylog.validation). Over all of
    memory (the default) the draws are those of the region ``[0, pages)``, write for write."""

    @property
    def iid_writes(self) -> bool:
        return True

    @property
    def stationary(self) -> bool:
        return True

    def __init__(self, rate: RateLike, *, start: Union[int, str] = 0, length: Union[int, float, str, None] = None,
                 shares: Any = None, seed: Any = 0) -> None:
        super().__init__(shares=shares, seed=seed)
        _rate(rate, 4096)
        _check_region(start, length)
        self.rate = rate
        self.start = start
        self.length = length

    def _params(self) -> str:
        where = "" if self.start == 0 and self.length is None else f", start={self.start!r}, length={self.length!r}"
        return f"rate={self.rate!r}{where}"

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        return _rate(self.rate, page_size)

    def span(self, pages: int, page_size: int = 4096) -> Tuple[int, int]:
        """``(start, length)`` in pages of the region written, in a guest of ``pages`` pages (ConfigError
        if it does not fit)."""
        return _region(self.start, self.length, pages, page_size)

    def written_pages(self, pages: int, page_size: int = 4096) -> int:
        return self.span(pages, page_size)[1]

    def _written_region(self, pages: int, page_size: int = 4096) -> Optional[range]:
        start, length = self.span(pages, page_size)
        return range(start, start + length)

    def _add(self, bw: BoundWorkload) -> None:
        sh = bw._shares(self._shares_spec, type(self).__name__)
        start, length = self.span(bw.pages, bw.page_size)
        check(lib.dl_workload_add_uniform_range(bw._w, _rate(self.rate, bw.page_size), start, length, _dptr(sh),
                                                self.seed), type(self).__name__)


class Idle(Uniform):
    """An idle guest: uniform writes at ``rate`` pages/s (50 by default; idle 4 GiB guests measure 37-74)."""

    def __init__(self, rate: RateLike = 50, *, shares: Any = None, seed: Any = 0) -> None:
        super().__init__(rate, shares=shares, seed=seed)


class Hotspot(Workload):
    """A hot set of ``hot_fraction`` of memory taking ``hot_share`` of the writes.

    The hot pages are scattered over memory (a seeded permutation), not one
    block. The hot set has ``round(hot_fraction * pages)`` pages, at least 1 when
    ``hot_fraction > 0``; writes are uniform within the hot set and within the
    rest. If either set is empty every write goes to the other one. Both shares are
    numbers from 0 to 1 or percentages (``0.05`` or ``"5%"``).
    """

    @property
    def iid_writes(self) -> bool:
        return True

    @property
    def stationary(self) -> bool:
        return True

    def __init__(
        self,
        rate: RateLike,
        hot_fraction: FractionLike = 0.1,
        hot_share: FractionLike = 0.9,
        *,
        shares: Any = None,
        seed: Any = 0,
    ) -> None:
        super().__init__(shares=shares, seed=seed)
        _rate(rate, 4096)
        self.rate = rate
        self.hot_fraction = parse_fraction(hot_fraction, name="hot_fraction")
        self.hot_share = parse_fraction(hot_share, name="hot_share")

    def _params(self) -> str:
        return f"rate={self.rate!r}, hot_fraction={self.hot_fraction}, hot_share={self.hot_share}"

    def hot_pages(self, pages: int) -> int:
        """Size of the hot set in a guest of ``pages`` pages."""
        if self.hot_fraction == 0.0:
            return 0
        return max(1, min(pages, int(round(self.hot_fraction * pages))))

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        return _rate(self.rate, page_size)

    def written_pages(self, pages: int, page_size: int = 4096) -> int:
        """Every page, unless one set takes every write: the hot set (``hot_share`` 1) or the rest
        (``hot_share`` 0); an empty set leaves every write to the other one."""
        hot = self.hot_pages(pages)
        if 0 < hot < pages and self.hot_share in (0.0, 1.0):
            return hot if self.hot_share == 1.0 else int(pages) - hot
        return int(pages)

    def _add(self, bw: BoundWorkload) -> None:
        sh = bw._shares(self._shares_spec, "Hotspot")
        check(
            lib.dl_workload_add_hotspot(
                bw._w, _rate(self.rate, bw.page_size), self.hot_pages(bw.pages), self.hot_share, _dptr(sh), self.seed
            ),
            "Hotspot",
        )


class Zipf(Workload):
    """Zipf-distributed writes: the page of rank r (1..pages) gets a share ~ r**-s.

    Ranks are mapped to pages by a seeded permutation, so the most written pages
    are scattered over memory. ``s`` must be in (0, 100].
    """

    @property
    def iid_writes(self) -> bool:
        return True

    @property
    def stationary(self) -> bool:
        return True

    def __init__(self, rate: RateLike, s: float = 1.0, *, shares: Any = None, seed: Any = 0) -> None:
        super().__init__(shares=shares, seed=seed)
        _rate(rate, 4096)
        self.rate = rate
        # Checked in a helper taking Any: here `s` is annotated float, and type checkers hold
        # that a float is never a numbers.Real (the ABC is registered at run time only).
        self.s = _exponent(s)

    def _params(self) -> str:
        return f"rate={self.rate!r}, s={self.s}"

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        return _rate(self.rate, page_size)

    def _add(self, bw: BoundWorkload) -> None:
        sh = bw._shares(self._shares_spec, "Zipf")
        check(lib.dl_workload_add_zipf(bw._w, _rate(self.rate, bw.page_size), self.s, _dptr(sh), self.seed), "Zipf")


class Sequential(Workload):
    """A sweep over ``[start, start + length)`` that wraps, like QEMU's migration-test guest.

    Write number q (counting every vCPU's writes: vCPU j's k-th write is
    q = k * vcpus + j) goes to page ``start + (q * stride) % length``. With one
    vCPU (or equal shares) the dirty count grows exactly linearly until the sweep
    wraps. ``start`` and ``length`` are pages (int) or sizes (``"100MiB"``);
    ``length`` may also be a fraction of memory (float) and defaults to the rest
    of memory. If ``gcd(stride, length) = g > 1`` only ``length / g`` pages are
    written. No seed: the sweep is deterministic.
    """

    @property
    def stationary(self) -> bool:
        return True

    def __init__(
        self,
        rate: RateLike,
        start: Union[int, str] = 0,
        length: Union[int, float, str, None] = None,
        stride: int = 1,
        *,
        shares: Any = None,
    ) -> None:
        super().__init__(shares=shares, seed=0)
        _rate(rate, 4096)
        self.rate = rate
        _check_region(start, length)
        self.start = start
        self.length = length
        self.stride = v.as_int("stride", stride, minimum=1, maximum=2**63 - 1)

    def _params(self) -> str:
        return f"rate={self.rate!r}, start={self.start!r}, length={self.length!r}, stride={self.stride}"

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        return _rate(self.rate, page_size)

    def span(self, pages: int, page_size: int = 4096) -> Tuple[int, int]:
        """``(start, length)`` in pages for a guest of ``pages`` pages (ConfigError if it does not fit)."""
        return _region(self.start, self.length, pages, page_size)

    def written_pages(self, pages: int, page_size: int = 4096) -> int:
        """The region's pages, ``length / gcd(stride, length)`` of them (the sweep's)."""
        length = self.span(pages, page_size)[1]
        return length // math.gcd(self.stride, length)

    def _written_region(self, pages: int, page_size: int = 4096) -> Optional[range]:
        """Every g-th page of the region, g = gcd(stride, length): the pages the sweep visits."""
        start, length = self.span(pages, page_size)
        return range(start, start + length, math.gcd(self.stride, length))

    def _add(self, bw: BoundWorkload) -> None:
        sh = bw._shares(self._shares_spec, "Sequential")
        start, length = self.span(bw.pages, bw.page_size)
        check(
            lib.dl_workload_add_sequential(bw._w, _rate(self.rate, bw.page_size), start, length, self.stride, _dptr(sh)),
            "Sequential",
        )


class WorkingSet(Workload):
    """A writable working set that moves over time.

    ``phases`` is a list of ``(duration, working_set, rate)``: for ``duration``
    (seconds or ``"500ms"``) the guest writes at ``rate`` uniformly over a set
    of ``working_set`` pages (an int), a fraction of memory (a float in (0, 1]),
    a size (``"512MiB"``) or a percentage (``"25%"``). Phase i's set is the
    range ``[o_i, o_i + size_i)`` of a seeded permutation of the pages, with o_i
    the sum of the previous sets' sizes (modulo memory): each set starts where
    the previous one ended, so consecutive phases touch different pages, and
    every set is scattered over memory. With ``repeat=True`` (the default) the
    phase list repeats forever with the same sets; with ``repeat=False`` the
    last phase lasts forever.
    """

    @property
    def iid_writes(self) -> bool:
        """A single phase writes uniformly over its set; phases change the distribution over time."""
        return len(self.phases) == 1

    @property
    def stationary(self) -> bool:
        """A single phase is stationary; a sequence of phases is not."""
        return len(self.phases) == 1

    def __init__(
        self, phases: Sequence[Tuple[TimeLike, Any, RateLike]], *, repeat: bool = True, shares: Any = None, seed: Any = 0
    ) -> None:
        super().__init__(shares=shares, seed=seed)
        if isinstance(phases, (str, bytes)) or not isinstance(phases, Iterable):
            raise TypeError("phases must be a list of (duration, working_set, rate) tuples")
        checked = []
        for i, ph in enumerate(phases):
            if isinstance(ph, (str, bytes)) or not isinstance(ph, Sequence) or len(ph) != 3:
                raise ConfigError(f"phases[{i}] must be a (duration, working_set, rate) tuple, got {ph!r}")
            d, ws, r = ph
            dur = parse_time(d, name=f"phases[{i}] duration", allow_zero=False)
            _check_pages_spec(ws, f"phases[{i}] working_set", fraction=True)
            _rate(r, 4096, f"phases[{i}] rate")
            checked.append((dur, ws, r))
        if not checked:
            raise ConfigError("phases must hold at least one (duration, working_set, rate) phase, got none")
        if not isinstance(repeat, (bool, np.bool_)):
            raise TypeError(f"repeat must be a bool, got {type(repeat).__name__}")
        self.phases = tuple(checked)
        self.repeat = bool(repeat)

    def _params(self) -> str:
        return f"phases={list(self.phases)!r}, repeat={self.repeat}"

    @property
    def cycle(self) -> float:
        """Duration of one pass over the phases, in seconds."""
        return float(sum(d for d, _, _ in self.phases))

    def set_pages(self, pages: int, page_size: int = 4096) -> List[int]:
        """Working-set size of each phase, in pages, for a guest of ``pages`` pages."""
        out = []
        for i, (_, ws, _) in enumerate(self.phases):
            n = _pages_of(ws, f"phases[{i}] working_set", pages, page_size, fraction=True)
            if not 1 <= n <= pages:
                raise ConfigError(
                    f"phases[{i}] working_set must be 1..{pages} pages (the guest's memory), got {ws!r} ({n} pages)"
                )
            out.append(n)
        return out

    def written_pages(self, pages: int, page_size: int = 4096) -> int:
        """The union of the phases' sets: each starts where the previous one ended in the same
        permutation, so together they cover the sum of their sizes, or all of memory."""
        return min(int(pages), sum(self.set_pages(pages, page_size)))

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        """The average over a cycle (repeat) or the last phase's rate (hold)."""
        rates = [_rate(r, page_size) for _, _, r in self.phases]
        if not self.repeat:
            return rates[-1]
        return sum(d * r for (d, _, _), r in zip(self.phases, rates)) / self.cycle

    def _add(self, bw: BoundWorkload) -> None:
        sh = bw._shares(self._shares_spec, "WorkingSet")
        durs = np.array([d for d, _, _ in self.phases], dtype=np.float64)
        sets = np.array(self.set_pages(bw.pages, bw.page_size), dtype=np.uint64)
        rates = np.array(
            [_rate(r, bw.page_size, f"phases[{i}] rate") for i, (_, _, r) in enumerate(self.phases)], dtype=np.float64
        )
        rc = lib.dl_workload_add_phases(
            bw._w, _dptr(durs), _u64ptr(sets), _dptr(rates), len(durs), int(self.repeat), _dptr(sh), self.seed
        )
        if rc == lib.DL_ERR_RANGE:
            cycle = float(np.sum(durs * rates))
            raise ConfigError(
                f"WorkingSet: one cycle of the phases writes {cycle:.3g} pages (the sum of duration x rate); "
                f"it must be below 2**62 (and the durations' sum finite): shorten the phases or lower their rates"
            )
        check(rc, "WorkingSet")


def _union_size(regions: Sequence[range]) -> int:
    """How many pages the ranges cover together."""
    if not regions:
        return 0
    if all(r.step == 1 for r in regions):  # intervals: merged in order
        total, end = 0, -1
        for r in sorted(regions, key=lambda r: r.start):
            if r.stop > end:
                total += r.stop - max(r.start, end)
                end = r.stop
        return total
    lo, hi = min(r.start for r in regions), max(r.stop for r in regions)
    mask = np.zeros(hi - lo, dtype=bool)
    for r in regions:
        mask[r.start - lo:r.stop - lo:r.step] = True
    return int(np.count_nonzero(mask))


class Mix(Workload):
    """The sum of several workloads, each keeping its own rate, shares and stream."""

    @property
    def iid_writes(self) -> bool:
        """Independent i.i.d. streams at constant rates merge into one i.i.d. stream."""
        return all(c.iid_writes for c in self.components)

    @property
    def stationary(self) -> bool:
        return all(c.stationary for c in self.components)

    def __init__(self, components: Sequence[Workload]) -> None:
        super().__init__()
        if isinstance(components, Workload) or not isinstance(components, Iterable):
            raise TypeError("Mix takes a list of workloads, e.g. Mix([Uniform(100), Hotspot(1000)])")
        comps = list(components)
        for i, c in enumerate(comps):
            if not isinstance(c, Workload):
                raise TypeError(f"Mix components must be workloads; component {i} is {type(c).__name__} {c!r}")
        if not comps:
            raise ConfigError("Mix needs at least one workload")
        self.components = tuple(comps)

    def __repr__(self) -> str:
        return f"Mix([{', '.join(repr(c) for c in self.components)}])"

    def _leaves(self) -> List[Workload]:
        return [leaf for c in self.components for leaf in c._leaves()]

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        return float(sum(c.write_rate(pages, page_size) for c in self.components))

    def written_pages(self, pages: int, page_size: int = 4096) -> int:
        """The union of the parts' pages: the regions' exactly (Uniform, Sequential); a set scattered
        over memory (a hot set, a working set: a seeded permutation, independent of the rest) adds its
        expected share of the pages the others leave out."""
        n = int(pages)
        regions: List[range] = []
        missing = 1.0  # the share of the pages outside the regions that no scattered set holds
        for leaf in self._leaves():
            r = leaf._written_region(n, page_size)
            if r is None:
                missing *= 1.0 - leaf.written_pages(n, page_size) / n
            else:
                regions.append(r)
        return int(round(n - (n - _union_size(regions)) * missing))

    def _add(self, bw: BoundWorkload) -> None:
        for leaf in self._leaves():
            leaf._add(bw)


class Trace(Workload):
    """Replays recorded writes: a record ``(time_ns, page[, vcpu])`` is a write at that guest time.

    Give a file (``.npy``, ``.npz`` or ``.csv``, see :mod:`dirtylog.trace`) or the
    columns. The records are validated (timestamps non-decreasing, integers >=
    0, columns present and of one length); pages and vCPUs are checked against
    the guest when bound. The writes of ``[t0, t1)`` are the records with
    ``t0 * 1e9 <= time_ns < t1 * 1e9``. Without a vCPU column, record i belongs
    to vCPU ``i % vcpus``.

    Nothing is written after the last record (a migration that outlasts the trace
    warns that the guest was idle from then on), unless ``repeat`` is given:
    ``repeat=True`` replays the records over and over with a period of the last
    record's time plus the mean gap between records (so evenly spaced records stay
    evenly spaced across cycles); ``repeat="10s"`` (a time, seconds if a number)
    sets the period, which must be longer than the last record's time. Record i of
    cycle m is then written at ``time_ns[i] + m * period``.
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]", None] = None,
        *,
        time_ns: Any = None,
        pages: Any = None,
        vcpus: Any = None,
        repeat: Union[bool, TimeLike] = False,
        guest_pages: Optional[int] = None,
    ) -> None:
        super().__init__()
        if guest_pages is not None:
            guest_pages = v.as_int("guest_pages", guest_pages, minimum=1, maximum=v.MAX_PAGES)
        if path is not None:
            if time_ns is not None or pages is not None or vcpus is not None:
                raise ConfigError("Trace takes a file path or the columns time_ns/pages[/vcpus], not both")
            self.path: Optional[str] = os.fspath(path)
            self.data = load_trace(path)
            self._source = f"trace file {self.path!r}"
        else:
            if time_ns is None or pages is None:
                raise ConfigError("Trace needs a file path, or both time_ns= and pages= (and optionally vcpus=)")
            self.path = None
            self._source = "trace"
            data = check_trace(time_ns, pages, vcpus, source=self._source)
            self.data = TraceData(
                data.time_ns.copy(), data.page.copy(), None if data.vcpu is None else data.vcpu.copy()
            )
        for arr in (self.data.time_ns, self.data.page, self.data.vcpu):
            if arr is not None:
                arr.setflags(write=False)
        self.guest_pages: Optional[int] = guest_pages if guest_pages is not None else self.data.pages
        if self.guest_pages is not None and self.data.page.size and int(self.data.page.max()) >= self.guest_pages:
            raise ConfigError(f"{self._source}: page {int(self.data.page.max())} is beyond guest_pages="
                              f"{self.guest_pages}")
        self._period_ns = self._repeat_period(repeat)

    def _repeat_period(self, repeat: Union[bool, TimeLike]) -> int:
        """The repeat period in ns (0: played once) for ``repeat``."""
        if repeat is None or repeat is False:
            return 0
        t = self.data.time_ns
        last = int(t[-1]) if t.size else 0
        if repeat is True:
            if t.size < 2 or int(t[0]) == last:
                raise ConfigError(
                    f"{self._source}: repeat=True needs records spread over time to take the period from "
                    f"({t.size} record(s), {'none' if not t.size else 'all at ' + str(last) + ' ns'}); "
                    "give the period instead, e.g. repeat='1s'"
                )
            gap = (last - int(t[0]) + t.size - 2) // (t.size - 1)  # the mean gap, rounded up
            return last + max(1, gap)
        if not t.size:
            raise ConfigError(f"{self._source}: an empty trace cannot repeat")
        period = parse_time(repeat, name="repeat", allow_zero=False)
        period_ns = int(round(period * 1e9))
        if period_ns <= last:
            raise ConfigError(
                f"{self._source}: the repeat period {period:g} s must be longer than the last record's time "
                f"({last / 1e9:g} s)"
            )
        return period_ns

    @property
    def records(self) -> int:
        return len(self.data)

    @property
    def duration(self) -> float:
        """Guest time of the last record, in seconds."""
        return self.data.duration

    @property
    def period(self) -> Optional[float]:
        """The repeat period in seconds, or None for a trace played once."""
        return self._period_ns / 1e9 if self._period_ns else None

    def _params(self) -> str:
        base = repr(self.path) if self.path else f"<{self.records} records>"
        return base + (f", repeat={self._period_ns / 1e9:g}" if self._period_ns else "")

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        """Records per second: over one period if it repeats, else over ``[0, last record]``.

        0 for an empty or instantaneous trace played once.
        """
        if self._period_ns:
            return self.records / (self._period_ns / 1e9)
        d = self.duration
        return self.records / d if d > 0 else 0.0

    def check_covers(self, seconds: float) -> None:
        """Warn if a trace played once ends before ``seconds`` of guest time (the guest idles after it)."""
        if self._period_ns or not self.records or self.duration >= seconds:
            return
        warnings.warn(
            f"{self._source}: the trace ends at {self.duration:.3g} s of guest time but the guest ran for "
            f"{seconds:.3g} s; it wrote nothing after the trace's end. Replay it with repeat=True "
            "(Trace(..., repeat=True), or trace:FILE,repeat=yes)",
            stacklevel=2,
        )

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the records to ``path`` (format from its suffix)."""
        save_trace(path, self.data.time_ns, self.data.page, self.data.vcpu)

    def _add(self, bw: BoundWorkload) -> None:
        d = self.data
        check_trace_bounds(d, self._source, bw.pages, bw.vcpus)
        bad = ffi.new("size_t *")
        vp = ffi.NULL if d.vcpu is None else ffi.from_buffer("uint32_t[]", d.vcpu)
        rc = lib.dl_workload_add_trace(bw._w, _u64ptr(d.time_ns), _u64ptr(d.page), vp, len(d), bad)
        check(rc, f"{self._source}: record {int(bad[0])}" if rc in (lib.DL_ERR_RANGE, lib.DL_ERR_INVALID) else "Trace")
        if self._period_ns:
            comp = lib.dl_workload_components(bw._w) - 1
            check(lib.dl_workload_set_trace_period(bw._w, comp, self._period_ns), f"{self._source}: repeat")


class DirtyCurve(Workload):
    """A workload that reproduces a measured dirty curve.

    ``periods`` are window lengths (seconds or strings such as ``"100ms"``) and
    ``dirty_pages`` the distinct pages dirtied in a window of each length from a
    clean state, in a guest of ``total_pages`` pages. If they were counted on a
    sample of ``sampled_pages`` pages only (as page-sampling does), they are
    scaled by ``total_pages / sampled_pages``.

    The curve is fitted by a mixture of per-page Poisson rate classes (see
    :mod:`dirtylog.dirtycurve`): ``class_pages[c]`` pages each written at
    ``class_rates[c]`` per second, the rest of memory never written, so that
    ``sum_c n_c (1 - exp(-lambda_c t))`` matches every point within 5 %;
    :attr:`fit_error` is the largest relative error (a warning is issued if it is
    above 5 %, e.g. for a curve that is not concave). The curve must be
    non-decreasing in the window length and at most ``total_pages``.

    Generation: each class is a component writing uniformly over its own range
    of scattered pages; as writes are evenly spaced, its rate is set so that the
    expected number of distinct pages written in t seconds is exactly
    ``n_c (1 - exp(-lambda_c t))`` (``lambda_c / -log(1 - 1/n_c)`` writes/s), the
    Poisson expectation. Bound to a guest of a different size, the class sizes
    are scaled to it (the same fractions of memory, the same per-page rates).
    """

    @property
    def iid_writes(self) -> bool:
        """Each rate class writes uniformly over its own range: a mixture, drawn write by write."""
        return True

    @property
    def stationary(self) -> bool:
        return True

    def __init__(
        self,
        periods: Union[Sequence[TimeLike], np.ndarray],
        dirty_pages: Union[Sequence[float], np.ndarray],
        total_pages: int,
        sampled_pages: Optional[int] = None,
        *,
        rates: Optional[Sequence[float]] = None,
        per_decade: int = 10,
        solver: str = "auto",
        shares: Any = None,
        seed: Any = 0,
    ) -> None:
        super().__init__(shares=shares, seed=seed)
        total = v.as_int("total_pages", total_pages, minimum=1, maximum=v.MAX_PAGES)
        if isinstance(periods, (str, bytes)) or not isinstance(periods, Iterable):
            raise TypeError("periods must be a sequence of window lengths")
        t = np.array([parse_time(p, name=f"periods[{i}]", allow_zero=False) for i, p in enumerate(periods)], dtype=float)
        y = np.asarray(dirty_pages, dtype=float).reshape(-1)
        if t.size == 0:
            raise ConfigError("periods must hold at least one window length, got none")
        if y.size != t.size:
            raise ConfigError(f"dirty_pages must have one value per period: {t.size} periods, {y.size} values")
        if np.any(~np.isfinite(y)) or np.any(y < 0):
            i = int(np.argmax(~np.isfinite(y) | (y < 0)))
            raise ConfigError(f"dirty_pages[{i}] must be a finite number >= 0, got {y[i]!r}")
        limit = total
        if sampled_pages is not None:
            k = v.as_int("sampled_pages", sampled_pages, minimum=1, maximum=total)
            limit = k
            scale = total / k
        else:
            scale = 1.0
        if np.any(y > limit):
            i = int(np.argmax(y > limit))
            what = f"the sample of {limit} pages" if sampled_pages is not None else f"total_pages ({total})"
            raise ConfigError(f"dirty_pages[{i}] = {y[i]:g} is more than {what}")
        order = np.argsort(t, kind="stable")
        t, y = t[order], y[order] * scale
        if np.any(np.diff(t) == 0):
            i = int(np.argmax(np.diff(t) == 0))
            raise ConfigError(f"periods must be distinct; {t[i]!r} s appears twice")
        if np.any(np.diff(y) < 0):
            i = int(np.argmax(np.diff(y) < 0))
            raise ConfigError(
                f"dirty_pages must not decrease as the window grows: {y[i]:g} pages in {t[i]:g} s but "
                f"{y[i + 1]:g} in {t[i + 1]:g} s"
            )
        per_decade = v.as_int("per_decade", per_decade, minimum=1, maximum=100)
        grid = None
        if rates is not None:
            grid = np.asarray(rates, dtype=float).reshape(-1)
            if grid.size == 0 or np.any(~np.isfinite(grid)) or np.any(grid <= 0):
                raise ConfigError("rates (the candidate per-page rates) must be finite numbers > 0")
        self.periods = t
        self.dirty_pages = y
        self.total_pages = total
        self.sampled_pages = sampled_pages
        se: Optional[np.ndarray] = None
        if sampled_pages is not None:  # a sampled curve: its binomial standard errors, at least one sample
            frac = np.clip(y / total, 0.0, 1.0)
            se = np.maximum(total * np.sqrt(frac * (1.0 - frac) / float(sampled_pages)), scale)
        fit = fit_rate_classes(t, y, total, rates=grid, per_decade=per_decade, solver=solver, resolution=scale,
                               tolerance=se)
        for arr in (fit.class_pages, fit.class_rates, t, y):
            arr.setflags(write=False)
        self._fit: ClassFit = fit
        if t.size == 1:
            # One window cannot show how the dirty set grows with the window length.
            warnings.warn(
                f"DirtyCurve: a curve of one window ({y[0]:,.0f} pages in {t[0]:g} s) is fitted as a fixed "
                f"working set of {int(fit.class_pages.sum()):,} pages; measure two or more window lengths "
                "(e.g. dirtylog curve --windows 0.1s,1s,10s) for a curve that grows with the window",
                stacklevel=2,
            )
        if sampled_pages is None:
            if fit.fit_error > 0.05:
                warnings.warn(
                    f"DirtyCurve: the best fit misses the curve by {fit.fit_error:.1%} at its worst point "
                    "(more than 5%); a mixture of per-page Poisson rates gives a concave, non-decreasing curve",
                    stacklevel=2,
                )
        else:
            # A sampled curve is judged against its sampling error.
            assert se is not None
            off = np.abs(expected_curve(t, fit.class_pages, fit.class_rates) - y) / se
            if float(off.max(initial=0.0)) > 3.0:
                i = int(np.argmax(off))
                warnings.warn(
                    f"DirtyCurve: the fit misses the sampled curve by {off[i]:.1f} sampling standard errors "
                    f"at {t[i]:g} s; a mixture of per-page Poisson rates gives a concave, non-decreasing curve",
                    stacklevel=2,
                )

    class_pages = property(lambda self: self._fit.class_pages, doc="Pages in each rate class.")
    class_rates = property(lambda self: self._fit.class_rates, doc="Per-page write rate of each class (1/s).")
    fit_error = property(lambda self: self._fit.fit_error, doc="Largest relative error of the fit at the given points.")

    def _params(self) -> str:
        return (
            f"<{self.periods.size} points, {self.total_pages} pages, {self.class_pages.size} classes, "
            f"fit_error={self.fit_error:.2%}>"
        )

    def expected(self, windows: Any, pages: Optional[int] = None) -> np.ndarray:
        """The fitted curve: expected distinct dirty pages for each window (seconds)."""
        w = np.atleast_1d(np.asarray(windows, dtype=float))
        n, lam = self._classes(pages if pages is not None else self.total_pages)
        return expected_curve(w, n, lam)

    def _classes(self, pages: int) -> Tuple[np.ndarray, np.ndarray]:
        n = self.class_pages
        if pages != self.total_pages:
            n = np.floor(n * (pages / self.total_pages) + 0.5).astype(np.int64)
            excess = int(n.sum()) - pages
            while excess > 0:
                j = int(np.argmax(n))
                take = min(excess, int(n[j]))
                n[j] -= take
                excess -= take
        return n.astype(np.uint64), self.class_rates.astype(np.float64)

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        n, lam = self._classes(pages if pages is not None else self.total_pages)
        nf = n.astype(float)
        with np.errstate(divide="ignore"):
            per = np.where(nf > 1, lam / -np.log1p(-1.0 / np.maximum(nf, 2.0)), lam)
        return float(np.sum(np.where(nf > 0, per, 0.0)))

    def _add(self, bw: BoundWorkload) -> None:
        sh = bw._shares(self._shares_spec, "DirtyCurve")
        n, lam = self._classes(bw.pages)
        n = np.ascontiguousarray(n)
        lam = np.ascontiguousarray(lam)
        check(lib.dl_workload_add_classes(bw._w, _u64ptr(n), _dptr(lam), n.size, _dptr(sh), self.seed), "DirtyCurve")


class DirtyRate(Workload):
    """A workload from a measured dirty rate: what QEMU's ``calc-dirty-rate`` reports.

    ``rate`` is the measured dirty rate (``"120MiB/s"``: bytes of distinct pages
    dirtied per second of the window, or pages/s such as ``"30000/s"``) and
    ``window`` the window it was measured over (calc-time, default 1 s). The
    measurement says that ``d = rate x window / page_size`` distinct pages were
    dirtied in one window; it does not say how often each was written, nor how
    many pages a longer window would dirty. DirtyRate assumes:

    * the guest writes uniformly at random over a set of ``working_set`` pages
      (default: all of memory; a fraction, a percentage, a size or a page count),
      each page written as a Poisson process of the same rate lambda;
    * lambda is chosen by the saturation relation so that the expected distinct
      pages dirtied in one window equal the measurement exactly:
      ``n (1 - exp(-lambda W)) = d``, i.e. ``lambda = -ln(1 - d / n) / W``
      (n the set's pages). For uniform writes at w writes/s this is
      ``n (1 - (1 - 1/n)^(w W)) = d``, the relation QEMU's dirty-rate tests use.

    So pages are rewritten within the window only by chance: with the whole of
    memory as the set and ``d`` far below it, almost every write dirties a new
    page and the dirty set grows almost linearly with time (the pessimistic
    reading of one measurement: a longer window would report nearly the same
    rate). A smaller ``working_set`` says the writes stay within that set: the
    dirty set saturates at it, and windows longer than the measured one report
    lower rates (:meth:`expected` gives the curve). If you measured several
    windows, fit them with :class:`DirtyCurve` instead (``dirtylog curve``).

    ``vcpu_rates`` (dirty-ring mode's per-vCPU rates, bytes/s or strings) share
    the writes among the vCPUs in those proportions; ``rate`` may then be None
    (their sum). The guest must have that many vCPUs. A measurement above what
    the set can hold in one window (``d >= n``) is an error when the workload is
    bound to a guest. The workload is stationary: the same rate forever.
    """

    @property
    def iid_writes(self) -> bool:
        """Uniform writes over the working set (one rate class)."""
        return True

    @property
    def stationary(self) -> bool:
        """Always: a measured rate is taken to hold for the whole migration."""
        return True

    def __init__(
        self,
        rate: Optional[RateLike] = None,
        window: TimeLike = "1s",
        *,
        working_set: Any = None,
        vcpu_rates: Optional[Sequence[RateLike]] = None,
        seed: Any = 0,
    ) -> None:
        vr: Optional[Tuple[RateLike, ...]] = None
        shares = None
        if vcpu_rates is not None:
            if isinstance(vcpu_rates, (str, bytes)) or not isinstance(vcpu_rates, Iterable):
                raise TypeError(f"vcpu_rates must be a sequence of one rate per vCPU, got {vcpu_rates!r}")
            vr = tuple(vcpu_rates)
            if not vr:
                raise ConfigError("vcpu_rates must hold one rate per vCPU, got an empty sequence")
            vals = [parse_count_rate(r, 4096, f"vcpu_rates[{i}]") for i, r in enumerate(vr)]
            if sum(vals) > 0:
                shares = vals
        super().__init__(shares=shares, seed=seed)
        if rate is None:
            if vr is None:
                raise ConfigError("DirtyRate needs the measured rate (e.g. '120MiB/s') or vcpu_rates")
        else:
            _rate(rate, 4096)
        self.rate = rate
        self.vcpu_rates = vr
        self.window = parse_time(window, name="window", allow_zero=False)
        if working_set is not None:
            _check_pages_spec(working_set, "working_set", fraction=True)
        self.working_set = working_set

    def _params(self) -> str:
        out = f"rate={self.rate!r}, window={self.window!r}"
        if self.working_set is not None:
            out += f", working_set={self.working_set!r}"
        if self.vcpu_rates is not None:
            out += f", vcpu_rates={list(self.vcpu_rates)!r}"
        return out

    def __repr__(self) -> str:  # shares come from vcpu_rates: not repeated
        return f"DirtyRate({self._params()}{', seed=%d' % self.seed if self.seed else ''})"

    def dirty_pages(self, page_size: int = 4096) -> float:
        """Distinct pages dirtied in one window: the measurement, in pages."""
        if self.rate is not None:
            per_s = _rate(self.rate, page_size)
        else:
            assert self.vcpu_rates is not None
            per_s = sum(_rate(r, page_size, f"vcpu_rates[{i}]") for i, r in enumerate(self.vcpu_rates))
        return per_s * self.window

    def set_pages(self, pages: int, page_size: int = 4096) -> int:
        """Pages the writes cover in a guest of ``pages`` pages."""
        if self.working_set is None:
            return pages
        n = _pages_of(self.working_set, "working_set", pages, page_size, fraction=True)
        if not 1 <= n <= pages:
            raise ConfigError(f"working_set must be 1..{pages} pages (the guest's memory), "
                              f"got {self.working_set!r} ({n} pages)")
        return n

    def page_rate(self, pages: int, page_size: int = 4096) -> float:
        """lambda, the per-page write rate (1/s) of the set, from the saturation relation."""
        n = self.set_pages(pages, page_size)
        d = self.dirty_pages(page_size)
        if d >= n:
            what = "memory" if self.working_set is None else f"the working set ({self.working_set!r})"
            raise ConfigError(
                f"DirtyRate: {d:,.0f} distinct pages in {self.window:g} s ({self.rate!r}) is not below the "
                f"{n:,} pages of {what}: no write process over it dirties that many pages in one window; "
                "was the rate measured on a larger guest, or over a shorter window?"
            )
        return -math.log1p(-d / n) / self.window if d > 0 else 0.0

    def expected(self, windows: Any, pages: int, page_size: int = 4096) -> np.ndarray:
        """Distinct dirty pages expected in windows of these lengths (s) from a clean state."""
        w = np.atleast_1d(np.asarray(windows, dtype=float))
        n = self.set_pages(pages, page_size)
        return expected_curve(w, np.array([n]), np.array([self.page_rate(pages, page_size)]))

    def write_rate(self, pages: Optional[int] = None, page_size: int = 4096) -> float:
        """Page writes per second the assumed process issues (needs the guest's ``pages``)."""
        if pages is None:
            return self.dirty_pages(page_size) / self.window  # the small-window limit
        n = self.set_pages(pages, page_size)
        lam = self.page_rate(pages, page_size)
        return lam if n == 1 else lam / -math.log1p(-1.0 / n)

    def _add(self, bw: BoundWorkload) -> None:
        if self._shares_spec is not None and len(self._shares_spec) != bw.vcpus:
            k = len(self._shares_spec)
            raise ConfigError(
                f"DirtyRate: the measurement has per-vCPU rates of {k} vCPUs but the guest has {bw.vcpus}; "
                f"give the guest {k} vCPUs (vcpus={k})"
            )
        sh = bw._shares(self._shares_spec, "DirtyRate (vcpu_rates)")
        lam = self.page_rate(bw.pages, bw.page_size)
        if lam <= 0.0:
            return  # a measured rate of 0: a guest that does not write
        n = np.array([self.set_pages(bw.pages, bw.page_size)], dtype=np.uint64)
        check(lib.dl_workload_add_classes(bw._w, _u64ptr(n), _dptr(np.array([lam])), 1, _dptr(sh), self.seed),
              "DirtyRate")
