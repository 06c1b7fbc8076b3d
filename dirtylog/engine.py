"""The Python face of the C migration engine (``dl_engine_*``, csrc/include/dirtylog/engine.h).

:class:`Engine` owns one ``dl_engine``: a simulated clock, the link, the guest's
writes through a :class:`~dirtylog.tracker.Tracker`, QEMU's migration bitmap and its
rate-limited send loop (100 ms windows, 50 ms iterations), and post-copy. It is
mechanism only: it never decides when to sync, switch over or throttle;
:class:`~dirtylog.migration.Migration` does (with :mod:`dirtylog.policy`,
:mod:`dirtylog.decision` and :mod:`dirtylog.throttle`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ._lib import check, ffi, lib
from .errors import ConfigError

__all__ = ["Engine", "Counters", "SendResult", "WINDOW", "ITERATION"]

#: QEMU's BUFFER_DELAY: the rate-limit window and the period of its counters (seconds).
WINDOW = 0.1
#: QEMU's MAX_WAIT: the longest an iteration sends before the pending size is checked again.
ITERATION = 0.05


class SendResult(enum.IntEnum):
    """Why :meth:`Engine.send_dirty` returned."""

    DEADLINE = int(lib.DL_SEND_DEADLINE)
    EMPTY = int(lib.DL_SEND_EMPTY)
    BELOW = int(lib.DL_SEND_BELOW)


#: SendResult by its C value (a dict lookup: SendResult(value) takes a microsecond, at every send).
_SEND_RESULTS = {int(r): r for r in SendResult}


@dataclass(frozen=True)
class Counters:
    """QEMU's per-window counters and the migration bitmap's state (see ``dl_engine_counters``)."""

    remaining: int
    scan: int
    passes: int
    windows: int
    iterations: int
    window_start: float
    window_bytes: int
    bandwidth: float
    last_length: float
    last_bytes: int
    last_pages: int


def _destructor(tracker_handle: Any) -> Callable[[Any], None]:
    """dl_engine_destroy, holding the tracker's handle until it has run, so that an engine freed by
    reference counting goes first. dl_engine_destroy does not touch the tracker, so the reverse
    order, which the garbage collector may take for a reference cycle holding both, is safe too."""
    destroy = lib.dl_engine_destroy

    def _destroy(e: Any, _tracker: Any = tracker_handle) -> None:
        destroy(e)

    return _destroy


class Engine:
    """One C engine bound to a tracker and a workload (both must outlive it): a migration's mechanism,
    ``Migration.engine`` (also ``dirtylog.Engine``, for annotations and ``isinstance``).

    :class:`~dirtylog.migration.Migration` builds it, with the C configuration it derives from its
    link and policy, and makes every decision; a program embedding a migration reads its figures
    (:meth:`counters`: QEMU's per-window counters and the migration bitmap, :attr:`remaining`,
    :attr:`bandwidth`, :attr:`clock`) rather than driving it. C programs drive the same engine
    through ``dirtylog/engine.h`` (``dl_engine_*``; :mod:`dirtylog.embed`)."""

    def __init__(self, config: Any, tracker: Any, workload_handle: Any, dst: Optional[np.ndarray] = None) -> None:
        """``dst``: destination versions (uint32 per page, DL_ABSENT at first) to verify against the
        tracker's source versions; None when the tracker keeps stale bits (or no verification)."""
        out = ffi.new("dl_engine **")
        dst_ptr = ffi.from_buffer("uint32_t[]", dst) if dst is not None else ffi.NULL
        check(lib.dl_engine_create(config, tracker._handle, workload_handle if workload_handle is not None
                                   else ffi.NULL, dst_ptr, dst.size if dst is not None else 0, out),
              "creating the engine")
        self._e = ffi.gc(out[0], _destructor(tracker._handle))
        self._dst = dst  # kept alive while the engine writes into it
        self._state = ffi.new("dl_engine_state *")
        self._ct = ffi.new("dl_engine_counters *")
        self._u64 = ffi.new("uint64_t *")
        self._why = ffi.new("int *")
        self.words = int(tracker.config.bitmap_words)
        self.vcpus = int(tracker.vcpus)
        self._lock = tracker._lock  # held around the C calls that write into the tracker (catch_up)
        #: Checked between two bounded calls while a guest slice is finished (:meth:`drain`):
        #: when it returns True, KeyboardInterrupt is raised there (the engine keeps the rest).
        self.interrupt: Optional[Callable[[], bool]] = None

    @property
    def handle(self) -> Any:
        return self._e

    def state(self) -> Any:
        """The ``dl_engine_state`` (a cffi struct, reused: copy what you keep)."""
        check(lib.dl_engine_get_state(self._e, self._state), "engine state")
        return self._state

    @property
    def clock(self) -> float:
        """The simulated clock (seconds since the migration started)."""
        return float(self.state().clock)

    def counters(self) -> Counters:
        """QEMU's per-window counters and the migration bitmap's state, now."""
        check(lib.dl_engine_get_counters(self._e, self._ct), "engine counters")
        c = self._ct
        return Counters(int(c.remaining), int(c.scan), int(c.passes), int(c.windows), int(c.iterations),
                        float(c.window_start), int(c.window_bytes), float(c.bandwidth), float(c.last_length),
                        int(c.last_bytes), int(c.last_pages))

    @property
    def remaining(self) -> int:
        """Dirty pages in the migration bitmap, still to send (QEMU's ``remaining`` is this x page size)."""
        check(lib.dl_engine_get_counters(self._e, self._ct), "engine counters")
        return int(self._ct.remaining)

    @property
    def bandwidth(self) -> float:
        """The last closed window's measured bandwidth (:attr:`Counters.bandwidth`; 0 before one closed)."""
        check(lib.dl_engine_get_counters(self._e, self._ct), "engine counters")
        return float(self._ct.bandwidth)

    # -- rates and throttles -------------------------------------------------------
    def set_bandwidth(self, bandwidth: float) -> None:
        check(lib.dl_engine_set_bandwidth(self._e, float(bandwidth)), "set_bandwidth")

    def set_rate_limit(self, budget: int, window: float = WINDOW, iteration: float = ITERATION) -> None:
        """``budget`` bytes per ``window`` (0: no limit), iterations of at most ``iteration`` seconds."""
        check(lib.dl_engine_set_rate_limit(self._e, window, int(budget), iteration), "rate limit")

    def set_throttle(self, throttle: float) -> None:
        self.catch_up()
        check(lib.dl_engine_set_throttle(self._e, float(throttle)), "throttle")

    def set_vcpu_throttle(self, vcpu: int, throttle: float) -> None:
        self.catch_up()
        check(lib.dl_engine_set_vcpu_throttle(self._e, vcpu, float(throttle)), "vCPU throttle")

    def charge(self, seconds: Union[float, Sequence[float]]) -> None:
        """Guest time lost to kicks done outside the engine: ``seconds`` of vCPU time spread evenly over the
        vCPUs (``dl_engine_charge``), or one figure per vCPU, each vCPU's own running time
        (``dl_engine_charge_vcpus``: under per-vCPU throttles each vCPU pays its own)."""
        self.catch_up()
        if isinstance(seconds, (int, float, np.integer, np.floating)):  # a number, numpy's too
            check(lib.dl_engine_charge(self._e, float(seconds)), "charge")
            return
        per = [float(x) for x in seconds]
        if len(per) != self.vcpus:
            raise ConfigError(f"charge takes one figure (spread over the vCPUs) or one per vCPU ({self.vcpus}), "
                              f"got {len(per)}")
        check(lib.dl_engine_charge_vcpus(self._e, ffi.new("double[]", per), len(per)), "charge")

    # -- the migration bitmap ----------------------------------------------------
    def dirty_fill(self) -> None:
        check(lib.dl_engine_dirty_fill(self._e), "dirty_fill")

    def dirty_add(self, pages: np.ndarray) -> int:
        """Marks ``pages`` (uint64) dirty; returns how many were not dirty yet."""
        if pages.size == 0:
            return 0
        check(lib.dl_engine_dirty_add(self._e, ffi.from_buffer("uint64_t[]", pages), pages.size, self._u64),
              "dirty_add")
        return int(self._u64[0])

    def dirty_add_words(self, words: np.ndarray) -> int:
        """Marks dirty the pages of a packed bitmap (uint64 words, bit p % 64 of word p // 64, as
        :meth:`Tracker.harvest_bitmap <dirtylog.tracker.Tracker.harvest_bitmap>` returns it); returns how
        many were not dirty yet. A sync in clear mode, whose words are also the clear mask."""
        check(lib.dl_engine_dirty_add_words(self._e, ffi.from_buffer("uint64_t[]", words), words.size, self._u64),
              "dirty_add_words")
        return int(self._u64[0])

    def dirty_harvest(self) -> int:
        """QEMU's migration_bitmap_sync: the tracker's harvest ORed straight into the migration bitmap
        (``dl_engine_dirty_harvest``; not in clear mode); returns how many pages were not dirty yet."""
        with self._lock:
            check(lib.dl_engine_dirty_harvest(self._e, self._u64), "dirty_harvest")
        return int(self._u64[0])

    def dirty_words(self) -> np.ndarray:
        out = np.empty(self.words, dtype=np.uint64)
        check(lib.dl_engine_dirty_get(self._e, ffi.from_buffer("uint64_t[]", out), out.size), "dirty_get")
        return out

    def dirty_clear(self) -> None:
        check(lib.dl_engine_dirty_clear(self._e), "dirty_clear")

    def set_zero_map(self, words: Optional[np.ndarray]) -> None:
        ptr = ffi.from_buffer("uint64_t[]", words) if words is not None else ffi.NULL
        check(lib.dl_engine_set_zero_map(self._e, ptr, words.size if words is not None else 0), "zero map")

    # -- time passing ----------------------------------------------------------------
    def guest_pending(self) -> bool:
        """Whether a guest slice is only partly applied (a C call stopped at its work budget)."""
        check(lib.dl_engine_get_state(self._e, self._state), "engine state")
        return bool(self._state.guest_pending)

    def drain(self, what: str = "guest") -> None:
        """Finish a partly applied guest slice, one bounded C call (``dl_engine_resume``) at a time.

        Every C call does bounded work (a few million guest writes at most), so that Ctrl-C
        takes effect at once even when one slice holds billions of writes; the slice is
        applied in the same order, with the same result, as in one go. :attr:`interrupt`
        is checked between two calls: KeyboardInterrupt leaves the rest to the next call.
        """
        while self.guest_pending():
            if self.interrupt is not None and self.interrupt():
                raise KeyboardInterrupt
            check(lib.dl_engine_resume(self._e), what)

    def catch_up(self) -> None:
        """Run the guest up to the clock (``dl_engine_catch_up``).

        :meth:`send_dirty` runs the guest once per segment (at most one 50 ms iteration), and a
        return at a deadline inside an iteration leaves the guest behind the clock, so that where
        the deadlines fall (the step sizes of :meth:`~dirtylog.migration.Migration.advance`)
        changes nothing. Every method here that runs the guest or changes its timing catches up
        first; a caller reading the guest's figures (writes, the tracker) mid-iteration catches up
        itself."""
        with self._lock:
            check(lib.dl_engine_catch_up(self._e), "catch up")
            self.drain("catch up")

    def send_dirty(self, deadline: float, below_seconds: float = 0.0, below_bytes: int = 0) -> SendResult:
        """Send dirty pages until ``deadline``, an empty bitmap, or (at an iteration's end) remaining
        below the threshold (``below_bytes``, or the measured bandwidth x ``below_seconds``)."""
        while True:
            check(lib.dl_engine_send_dirty(self._e, deadline, below_seconds, int(below_bytes), self._why),
                  "send")
            if not self.guest_pending():
                return _SEND_RESULTS[self._why[0]]
            # stopped inside a guest slice (bounded work): finish it, then go on where the call stopped
            self.drain("send")

    def idle(self, deadline: float) -> None:
        """Let the clock reach ``deadline`` without sending; on the source the guest's time joins its open
        segment (see :meth:`catch_up`)."""
        check(lib.dl_engine_idle(self._e, deadline), "idle")
        self.drain("idle")

    def transfer(self, nbytes: int, deadline: float, drain: bool = True) -> int:
        """Sends ``nbytes`` of other state; returns what is left at ``deadline``.

        ``drain=False`` leaves a partly applied guest slice for the caller's :meth:`drain`
        (so that an interrupt there cannot lose the result)."""
        self.catch_up()
        check(lib.dl_engine_transfer(self._e, int(nbytes), deadline, self._u64), "transfer")
        left = int(self._u64[0])
        if drain:
            self.drain("transfer")
        return left

    def postcopy_step(self, deadline: float) -> None:
        """Post-copy until ``deadline`` (``dl_engine_postcopy_step``), its guest slice finished."""
        self.catch_up()
        check(lib.dl_engine_postcopy_step(self._e, deadline), "post-copy")
        self.drain("post-copy")

    def reset_carry(self) -> None:
        check(lib.dl_engine_reset_carry(self._e), "reset carry")

    def set_clear_mask(self, words: Optional[np.ndarray], chunk_pages: int = 0) -> None:
        if words is None:
            check(lib.dl_engine_set_clear_mask(self._e, ffi.NULL, 0, 0), "clear mask")
        else:
            check(lib.dl_engine_set_clear_mask(self._e, ffi.from_buffer("uint64_t[]", words), words.size,
                                               chunk_pages), "clear mask")

    def verify(self, cap: int = 16) -> "tuple[int, np.ndarray]":
        """(mismatched pages, the first ``cap`` of them)."""
        self.catch_up()
        out = np.empty(cap, dtype=np.uint64)
        check(lib.dl_engine_verify(self._e, ffi.from_buffer("uint64_t[]", out), cap, self._u64), "verify")
        n = int(self._u64[0])
        return n, out[: min(cap, n)].copy()
