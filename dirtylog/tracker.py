"""`Tracker`: the C core's dirty-logging page table, with a Pythonic face.

See ``csrc/include/dirtylog/tracker.h`` for the exact semantics, which follow
KVM's (write protection, Intel PML, dirty rings, manual protect). The numpy model
in :mod:`dirtylog.reference` implements the same interface.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Optional, Sequence, TypeVar, Union, cast

import numpy as np

from . import _validate as v
from ._lib import as_buffer, check, ffi, lib, raise_status
from .errors import ConfigError, StateError
from .stats import TrackerStats, VcpuStats

__all__ = ["Tracker"]

_MODES = v.MODE_VALUES
_HUGE = {None: 0, "lazy": 1, "eager": 2}

PagesLike = Union[np.ndarray, Sequence[int], int, np.integer]  # a batch, or one page
_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(fn: _F) -> _F:
    """Run the method holding the tracker's lock (cffi releases the GIL inside C calls)."""

    @functools.wraps(fn)
    def wrapper(self: "Tracker", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return fn(self, *args, **kwargs)

    return cast(_F, wrapper)

# Which C entry point takes which dtype without a copy; narrower ints are widened.
_WRITERS = {
    np.dtype(np.uint64): ("dl_tracker_write", "uint64_t[]"),
    np.dtype(np.int64): ("dl_tracker_write_i64", "int64_t[]"),
    np.dtype(np.uint32): ("dl_tracker_write_u32", "uint32_t[]"),
    np.dtype(np.int32): ("dl_tracker_write_i32", "int32_t[]"),
}


class Tracker:
    """Dirty-page tracking of a guest's memory, as a hypervisor does it during migration.

    Parameters
    ----------
    pages:
        Guest pages (any positive count, up to 2**40).
    mode:
        ``"wp"`` write protection (a fault per newly dirtied page), ``"pml"`` Intel
        Page Modification Logging (a per-vCPU log, one exit per ``pml_entries`` pages),
        ``"ring"`` KVM dirty rings (per-vCPU rings, an exit at the soft limit), or
        ``"clear"`` manual protect (KVM_CLEAR_DIRTY_LOG: harvest does not re-protect,
        :meth:`clear` does).
    vcpus:
        Number of vCPUs writing (1 to 4096).
    page_size:
        Bytes per page (power of two, 512 B to 1 MiB; used for reporting).
    huge_pages:
        None, ``"lazy"`` (2 MiB blocks write-protected whole, split on the first
        write) or ``"eager"`` (every block split when logging starts).
    pml_entries, ring_entries:
        Per-vCPU PML log size (512 in hardware) and dirty ring size (a power of two
        from 1024 to 65536, what KVM on x86 with PML takes; soft limit ``ring_entries - 576``,
        KVM's: 64 reserved entries and a 512-entry PML log).
    initially_set:
        Clear mode only: the bitmap starts all ones and nothing is protected.

    A 1 TiB guest (2**28 pages) takes 32 MiB of state (64 MiB in ring mode).

    Thread safety: one tracker may be used from several threads. The C calls run
    without the GIL, so every method holds a per-tracker lock: concurrent calls
    on one tracker take turns (a harvest sees each concurrent write batch either
    whole or not at all), calls on different trackers run in parallel.
    """

    def __init__(
        self,
        pages: int,
        mode: str = "wp",
        vcpus: int = 1,
        page_size: Union[int, str] = 4096,
        huge_pages: Optional[str] = None,
        pml_entries: int = 512,
        ring_entries: int = 4096,
        initially_set: bool = False,
    ) -> None:
        self.config = v.tracker_config(
            pages, mode, vcpus, page_size, huge_pages, pml_entries, ring_entries, initially_set
        )
        c = self.config
        cfg = ffi.new("dl_tracker_config *")
        lib.dl_tracker_config_init(cfg, c.pages)
        cfg.mode = _MODES[c.mode]
        cfg.vcpus = c.vcpus
        cfg.page_size = c.page_size
        cfg.huge = _HUGE[c.huge_pages]
        cfg.pml_entries = c.pml_entries
        cfg.ring_entries = c.ring_entries
        cfg.initially_set = int(c.initially_set)
        out = ffi.new("dl_tracker **")
        rc = lib.dl_tracker_create(cfg, out)
        if rc == lib.DL_ERR_NOMEM:
            raise MemoryError(
                f"cannot allocate the tracker state for {c.pages} pages ({c.bitmap_words * 8} bytes per bitmap)"
            )
        check(rc, "creating the tracker")
        self._t = ffi.gc(out[0], lib.dl_tracker_destroy)
        #: Held around every C call on this tracker (also by the fused workload runs).
        self._lock = threading.RLock()
        self._stats_out = ffi.new("dl_tracker_stats *")  # read under the lock
        self._versions: Optional[np.ndarray] = None
        self._stale_on = False

    # -- configuration ------------------------------------------------------
    pages = property(lambda self: self.config.pages, doc="Guest pages.")
    mode = property(lambda self: self.config.mode, doc="Tracking mode.")
    vcpus = property(lambda self: self.config.vcpus, doc="Number of vCPUs.")
    page_size = property(lambda self: self.config.page_size, doc="Bytes per page.")
    huge_pages = property(lambda self: self.config.huge_pages, doc="None, 'lazy' or 'eager'.")
    pml_entries = property(lambda self: self.config.pml_entries, doc="PML log entries per vCPU.")
    initially_set = property(lambda self: self.config.initially_set, doc="Clear mode: bitmap starts all ones.")

    @property
    @_locked
    def memory_bytes(self) -> int:
        """Bytes of tracker state held by the C core.

        Fixed by the configuration: a :meth:`write` of 32768 pages or more allocates an
        undo buffer for the call only (so that a bad index leaves the tracker as it was),
        of the bitmap's size (twice with stale bits) or a bit per write, plus a PML
        log or ring, and frees it before it returns."""
        return int(lib.dl_tracker_memory_bytes(self._t))

    @property
    @_locked
    def logging(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return bool(lib.dl_tracker_is_logging(self._t))

    @property
    @_locked
    def reap_own(self) -> bool:
        """Ring mode: whether a ring-full exit reaps only the exiting vCPU's ring.

        False (the default): every vCPU's ring is reaped, as QEMU's ``kvm_cpu_exec`` does on
        ``KVM_EXIT_DIRTY_RING_FULL`` (``kvm_dirty_ring_reap(kvm_state, NULL)``, then
        ``KVM_RESET_DIRTY_RINGS``). True: the exiting vCPU's ring alone, as QEMU does while
        dirty-limit is in service (``kvm_dirty_ring_reap(kvm_state, cpu)``); a
        :class:`~dirtylog.Migration` sets it while its dirty-limit is engaged. Settable at any
        time; in other modes it is False and setting it raises :class:`~dirtylog.ModeError`.
        """
        return bool(lib.dl_tracker_reap_own(self._t))

    @reap_own.setter
    @_locked
    def reap_own(self, own: bool) -> None:
        check(lib.dl_tracker_set_reap_own(self._t, int(bool(own))),
              f"reap_own (a ring-full exit's reap; tracker mode {self.config.mode!r}, needs 'ring')")

    def __repr__(self) -> str:
        c = self.config
        huge = f", huge_pages={c.huge_pages!r}" if c.huge_pages else ""
        return (
            f"Tracker(pages={c.pages}, mode={c.mode!r}, vcpus={c.vcpus}{huge}, "
            f"logging={self.logging})"
        )

    # -- logging ------------------------------------------------------------
    @_locked
    def start(self) -> None:
        """Start dirty logging: every page armed (or, with initially_set, all dirty)."""
        if self.logging:
            raise StateError("dirty logging is already started; call stop() first to restart it")
        check(lib.dl_tracker_start(self._t), "start")

    @_locked
    def stop(self) -> None:
        """Stop dirty logging: every page writable again, nothing left pending."""
        if not self.logging:
            raise StateError("dirty logging is not started; nothing to stop")
        check(lib.dl_tracker_stop(self._t), "stop")

    def _require_logging(self, what: str) -> None:
        if not self.logging:
            raise StateError(f"{what}() needs dirty logging: call start() first")

    def write(self, pages: PagesLike, vcpu: int = 0) -> None:
        """A batch of guest writes by one vCPU, in order.

        ``pages`` is a 1-D integer numpy array (passed to C without a copy when its
        dtype is int32/int64/uint32/uint64 and it is contiguous) or a sequence of
        ints, or one page number. A bad page or vCPU rejects the whole batch and changes nothing.
        """
        vc = v.check_vcpu(vcpu, self.config.vcpus)
        arr = v.write_batch(pages, self.config.pages)
        if arr.size == 0:
            return
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if arr.dtype not in _WRITERS:
            arr = arr.astype(np.int64 if arr.dtype.kind == "i" else np.uint64)
        arr = np.ascontiguousarray(arr)
        fname, ctype = _WRITERS[arr.dtype]
        bad = ffi.new("size_t *")
        with self._lock:  # held only around the C call: the checks above touch no tracker state
            rc = getattr(lib, fname)(self._t, vc, ffi.from_buffer(ctype, arr), arr.size, bad)
        if rc == lib.DL_ERR_RANGE:
            raise ConfigError(v.describe_bad_page(arr, int(bad[0]), self.config.pages))
        check(rc, "write")

    @property
    @_locked
    def pending(self) -> int:
        """Upper bound on the size of the next harvest (exact but in ring mode), no side effects."""
        return int(lib.dl_tracker_pending(self._t))

    def exits_per_write(self) -> "tuple[float, float, float]":
        """The most tracking exits one write can cause, as (faults, PML-full exits, ring-full exits),
        huge blocks aside (a block's split and fault happen once, on its first write while logging):
        a write to a protected page faults once (``wp``, ``clear``), logs one PML entry (``pml``: an
        exit per ``pml_entries``) or pushes one ring entry (``ring``: an exit per soft limit)."""
        c = self.config
        if c.mode == "pml":
            return (0.0, 1.0 / c.pml_entries, 0.0)
        if c.mode == "ring":
            return (0.0, 0.0, 1.0 / c.ring_soft_limit)
        return (1.0, 0.0, 0.0)

    @property
    def counts_since_harvest(self) -> bool:
        """Whether :attr:`dirtied_since_harvest` can tell (every mode but ``clear``)."""
        return self.config.mode != "clear"

    @property
    @_locked
    def dirtied_since_harvest(self) -> Optional[int]:
        """Distinct pages written since the previous harvest, or a lower bound on them; no side effects.

        Exact in ``wp`` and ``pml`` modes (the next harvest's size: :attr:`pending`). In ``ring``
        mode :attr:`pending` may count a page twice (reaped into the bitmap, reset, written and
        pushed again), so this is the larger of the pages already collected and the ring entries
        not collected yet (a page sits in at most one ring, once). None in ``clear`` mode: its log
        is cleared chunk by chunk as pages are sent, not at the harvest, so it does not hold the
        pages written since then. None when logging is off."""
        mode = self.config.mode
        if not self.counts_since_harvest or not self.logging:
            return None
        if mode != "ring":
            return int(lib.dl_tracker_pending(self._t))
        st = self.stats
        return max(int(st.dirty_pages), sum(int(v.ring_used) for v in st.vcpus))

    @_locked
    def flush(self) -> None:
        """Kick every vCPU and collect its log into the dirty bitmap, without harvesting it.

        PML logs are drained and dirty rings collected and reset (their pages armed again),
        as QEMU's ``kvm_dirty_ring_flush`` does in a global dirty-log sync that is not the
        migration's own (the dirty-limit rate thread's, once per ``dirty_limit_period``).
        The pages wait in the bitmap for the next :meth:`harvest`. Nothing to collect in
        ``wp`` and ``clear`` modes (no kicks either).
        """
        self._require_logging("flush")
        check(lib.dl_tracker_flush(self._t), "flush")

    @_locked
    def harvest(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Pages dirtied since the previous harvest, sorted (uint64), re-protecting them.

        In clear mode the set is returned but neither cleared nor re-protected.
        With ``out`` (a writable, C-contiguous uint64 array of at least
        :attr:`pending` elements, e.g. reused from round to round) the pages are
        written there and a view of it is returned.
        """
        self._require_logging("harvest")
        cap = self.pending
        if out is not None:
            if (not isinstance(out, np.ndarray) or out.dtype != np.uint64 or out.ndim != 1
                    or not out.flags.c_contiguous or not out.flags.writeable):
                raise TypeError("out must be a writable, C-contiguous 1-D numpy uint64 array")
            if out.size < cap:
                raise ConfigError(f"out holds {out.size} pages but the harvest may need {cap} (see pending)")
            buf = out
        else:
            buf = np.empty(cap, dtype=np.uint64)
        count = ffi.new("size_t *")
        rc = lib.dl_tracker_harvest(self._t, ffi.from_buffer("uint64_t[]", buf), buf.size, count)
        if rc == lib.DL_ERR_BUFFER and out is None:  # cannot happen by the pending() contract; be safe
            buf = np.empty(int(count[0]), dtype=np.uint64)
            rc = lib.dl_tracker_harvest(self._t, ffi.from_buffer("uint64_t[]", buf), buf.size, count)
        check(rc, "harvest")
        n = int(count[0])
        if out is not None or n == buf.size:
            return buf[:n]
        return buf[:n].copy() if n < cap // 2 else buf[:n]

    @_locked
    def harvest_bitmap(self) -> np.ndarray:
        """The same harvest as :meth:`harvest`, as packed uint64 words (bit p % 64 of word p // 64)."""
        self._require_logging("harvest_bitmap")
        words = np.empty(self.config.bitmap_words, dtype=np.uint64)
        count = ffi.new("size_t *")
        check(
            lib.dl_tracker_harvest_bitmap(self._t, ffi.from_buffer("uint64_t[]", words), words.size, count),
            "harvest_bitmap",
        )
        return words

    @_locked
    def clear(self, first: int, count: int, mask: Optional[np.ndarray] = None) -> int:
        """Clear mode: clear and re-protect dirty pages in ``[first, first + count)``.

        Only pages whose bits are set (and set in ``mask``, uint64 words covering the
        range, if given: KVM_CLEAR_DIRTY_LOG's bitmap) are re-armed. ``first`` must be
        a multiple of 64 and ``count`` too unless the range reaches the last page.
        Returns the number of pages re-armed.
        """
        if self.config.mode != "clear":
            from .errors import ModeError

            raise ModeError(f"clear() needs mode='clear' (manual protect); this tracker is in mode {self.mode!r}")
        self._require_logging("clear")
        f, c = v.check_clear_range(first, count, self.config.pages)
        mptr: Any = ffi.NULL
        nmask = 0
        if mask is not None:
            m = v.clear_mask(mask, c)
            mptr, nmask = ffi.from_buffer("uint64_t[]", m), m.size
        cleared = ffi.new("uint64_t *")
        check(lib.dl_tracker_clear(self._t, f, c, mptr, nmask, cleared), "clear")
        return int(cleared[0])

    # -- introspection -------------------------------------------------------
    @property
    def stats(self) -> TrackerStats:
        """Counters read from the C core (see :class:`dirtylog.stats.TrackerStats`)."""
        return self._read_stats(vcpus=True)

    @property
    def totals(self) -> TrackerStats:
        """The counters of :attr:`stats` without the per-vCPU ones (``vcpus`` empty): one C call, for
        callers that read them often (the migration reads them at every sync)."""
        return self._read_stats(vcpus=False)

    @_locked
    def _read_stats(self, vcpus: bool) -> TrackerStats:
        s = self._stats_out
        check(lib.dl_tracker_get_stats(self._t, s), "stats")
        per = []
        if vcpus:
            vs = ffi.new("dl_vcpu_stats *")
            for i in range(self.config.vcpus):
                check(lib.dl_tracker_get_vcpu_stats(self._t, i, vs), "stats")
                per.append(
                    VcpuStats(
                        writes=vs.writes, faults=vs.faults, pml_full_exits=vs.pml_full_exits,
                        ring_full_exits=vs.ring_full_exits, kicks=vs.kicks, dirtied=vs.dirtied,
                        pml_index=vs.pml_index, ring_used=vs.ring_used,
                    )
                )
        return TrackerStats(
            writes=s.writes, faults=s.faults, pml_full_exits=s.pml_full_exits,
            ring_full_exits=s.ring_full_exits, kicks=s.kicks, splits=s.splits, harvests=s.harvests,
            harvested_pages=s.harvested_pages, tlb_flushes=s.tlb_flushes, cleared_pages=s.cleared_pages,
            pml_logged=s.pml_logged, ring_pushed=s.ring_pushed, ring_reaped=s.ring_reaped,
            dirty_pages=s.dirty_pages, vcpus=tuple(per),
        )

    @_locked
    def pml_log(self, vcpu: int = 0) -> np.ndarray:
        """The live entries of a vCPU's PML log, most recent first (PML mode)."""
        vc = v.check_vcpu(vcpu, self.config.vcpus)
        out = np.empty(self.config.pml_entries, dtype=np.uint64)
        count = ffi.new("size_t *")
        check(lib.dl_tracker_pml_log(self._t, vc, ffi.from_buffer("uint64_t[]", out), out.size, count), "pml_log")
        return out[: int(count[0])].copy()

    @_locked
    def ring_entries(self, vcpu: int = 0) -> np.ndarray:
        """Page offsets in a vCPU's dirty ring not yet collected, oldest first (ring mode)."""
        vc = v.check_vcpu(vcpu, self.config.vcpus)
        buf = ffi.new("dl_ring_entry[]", self.config.ring_entries)
        count = ffi.new("size_t *")
        check(lib.dl_tracker_ring_entries(self._t, vc, buf, self.config.ring_entries, count), "ring_entries")
        n = int(count[0])
        raw = np.frombuffer(ffi.buffer(buf, n * ffi.sizeof("dl_ring_entry")), dtype=np.uint64)
        return raw[1::2].copy()

    # -- verification hooks (used by the migration engine and tests) ----------
    @_locked
    def attach_versions(self, versions: Optional[np.ndarray]) -> None:
        """Count writes per page into ``versions`` (uint32, >= pages long), or detach with None."""
        if versions is None:
            check(lib.dl_tracker_attach_versions(self._t, ffi.NULL, 0), "attach_versions")
            self._versions = None
            return
        if not isinstance(versions, np.ndarray) or versions.dtype != np.uint32 or not versions.flags.c_contiguous:
            raise TypeError("versions must be a C-contiguous numpy uint32 array")
        if versions.size < self.config.pages:
            raise ConfigError(f"versions must hold at least {self.config.pages} elements, got {versions.size}")
        check(lib.dl_tracker_attach_versions(self._t, ffi.from_buffer("uint32_t[]", versions), versions.size), "attach_versions")
        self._versions = versions  # keep it alive as long as the C side points at it

    @_locked
    def stale_start(self, initial: bool = False) -> None:
        """Keep a stale bit per page from now on: every write to page ``p`` sets it.

        Every bit starts as ``initial`` (True: every page stale, as before a migration's
        first send); called again, it resets them. The migration engine clears a page's
        bit when it sends the page: a bit set at the end is a page whose newest content
        the destination lacks (verification at 1 bit per page). The tracker keeps the
        bits beside its own, in the same cache lines (a write touches one line, not two),
        and counts them in :attr:`memory_bytes`.
        """
        if not isinstance(initial, (bool, np.bool_)):
            raise TypeError(f"initial must be True or False, got {initial!r}")
        rc = lib.dl_tracker_stale_start(self._t, int(initial))
        if rc == lib.DL_ERR_NOMEM:
            raise MemoryError(f"cannot allocate the stale bits for {self.config.pages} pages")
        check(rc, "stale_start")
        self._stale_on = True

    @_locked
    def stale_stop(self) -> None:
        """Stop keeping stale bits (and free them)."""
        rc = lib.dl_tracker_stale_stop(self._t)
        if rc == lib.DL_ERR_NOMEM:
            raise MemoryError(f"cannot allocate the tracker's bitmap for {self.config.pages} pages")
        check(rc, "stale_stop")
        self._stale_on = False

    @property
    def stale_kept(self) -> bool:
        """True between :meth:`stale_start` and :meth:`stale_stop`."""
        return self._stale_on

    @_locked
    def stale_words(self) -> np.ndarray:
        """A copy of the stale bits: bit ``p % 64`` of word ``p // 64`` is page ``p``'s
        (``config.bitmap_words`` words)."""
        if not self._stale_on:
            raise StateError("no stale bits are kept: call stale_start() first")
        out = np.empty(self.config.bitmap_words, dtype=np.uint64)
        check(lib.dl_tracker_stale_get(self._t, 0, ffi.from_buffer("uint64_t[]", out), out.size), "stale_words")
        return out

    @_locked
    def set_stale_words(self, words: np.ndarray, first: int = 0) -> None:
        """Replace stale words ``first .. first + len(words) - 1`` with ``words`` (uint64)."""
        if not self._stale_on:
            raise StateError("no stale bits are kept: call stale_start() first")
        if not isinstance(words, np.ndarray) or words.dtype != np.uint64 or words.ndim != 1:
            raise TypeError("the stale words must be a one-dimensional numpy uint64 array")
        need = self.config.bitmap_words
        f = v.as_int("first", first, minimum=0, maximum=need)
        if words.size > need - f:
            raise ConfigError(f"stale words {f} .. {f + words.size - 1} go past the last word, {need - 1}")
        w = np.ascontiguousarray(words)
        check(lib.dl_tracker_stale_set(self._t, f, ffi.from_buffer("uint64_t[]", w), w.size), "set_stale_words")

    @_locked
    def inject_drop(self, page: Optional[int]) -> None:
        """Fault injection: the next harvest silently loses ``page`` (None disarms)."""
        if page is None:
            check(lib.dl_tracker_inject_drop(self._t, 2**64 - 1), "inject_drop")
            return
        p = v.as_int("page", page, minimum=0, maximum=self.config.pages - 1)
        check(lib.dl_tracker_inject_drop(self._t, p), "inject_drop")

    @property
    def _handle(self) -> Any:
        """The cffi ``dl_tracker *`` (for the C workload generators and the engine)."""
        return self._t


del raise_status, as_buffer
