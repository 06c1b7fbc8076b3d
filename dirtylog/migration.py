"""The migration engine: pre-copy rounds, stop-and-copy and rollback on a simulated clock.

:class:`Migration` is advanced by its caller (:meth:`Migration.advance`,
:meth:`Migration.run_until`), so that a host simulator can own the clock;
:func:`simulate` runs one to the end and returns its :class:`MigrationReport`.

How time passes (the C engine, ``csrc/engine.c``, does the hot part):

1. Setup: dirty logging starts (write-protecting memory takes ``setup_time``,
   see :mod:`dirtylog.costs`), then the first sync.
2. The live phase runs QEMU's loop: pages are sent from the scan position of the
   migration bitmap (wrapping at the end of memory) in iterations of at most 50 ms,
   rate-limited per 100 ms window (``PreCopy.max_bandwidth``); during each chunk's
   transfer time the guest runs and its writes go through the tracker. A page that
   still holds zeros goes as a header only, in every pass (:mod:`dirtylog.zeropages`).
3. When what is left falls below the threshold (measured bandwidth x downtime
   limit), a sync harvests the dirty log into the bitmap (``dirty_sync_count``;
   the throttles of :mod:`dirtylog.throttle` are evaluated there) and the policy
   decides (:mod:`dirtylog.decision`): switch over if what is pending is still below
   the threshold (pause, sync once more, send the rest and the device state at link
   speed: the downtime is that transfer + latency + resume_time), start post-copy,
   or go on sending. A round is the span between two syncs.
4. Limits (iterations, total bytes, dirty pages, timeout) end the migration by
   ``on_limit``: "force" (stop-and-copy now) or "abort" (roll back: logging stops,
   the source keeps running, nothing is lost).

With ``verify=True`` stale bits, independent of the tracker's own bits (which
the tracker keeps beside them, in the same cache lines), have a bit per page:
set by every write, cleared when the page is sent (and set for every page at the
start: the destination holds nothing). At the end no bit may be left: the
destination holds the newest content of every page.
"""
from __future__ import annotations

import enum
import inspect
import math
import signal
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import models as _models
from ._lib import check, ffi, lib
from ._validate import MAX_PAGES, as_int, check_page_size, guest_pages, tracker_config, tracker_mode
from .config import DEFAULTS, simulate_kwargs, suggest
from .costs import TrackingCosts
from .decision import PROBE_FIRST, Action, Decision, ProbeState, SyncPolicy, SyncState
from .devices import Device, default_devices, device_bytes, ordered
from .engine import ITERATION, WINDOW, Engine, SendResult
from .errors import ConfigError, CoreError, Interrupted, StateError
from .faults import BandwidthChange, Fault, LinkFailure, check_fault
from .link import Link, as_link, check_bandwidth
from .policy import PostCopy, PreCopy
from .report import MigrationReport, RoundReport
from .resources import check_memory, migration_memory
from .throttle import AutoConverge, DirtyLimit, DirtyRatePeriod, Sleeps, kick_wait
from .tracker import Tracker
from .workloads import check_seed
from .units import format_size, format_time, parse_time
from .zeropages import ZeroPages

__all__ = ["Migration", "Phase", "simulate"]

GIB = 1 << 30
#: Guest writes (and pages sent) per C call at most; 0: the core's default (tests set it small).
_WORK_BUDGET = 0
_ABSENT = int(lib.DL_ABSENT)  # csrc/include/dirtylog/engine.h


_USER_POSTCOPY = "switched to post-copy by start_postcopy() (QEMU's migrate-start-postcopy)"


class Phase(str, enum.Enum):
    """Where a migration stands (``Migration.phase``; compares equal to its string value)."""

    SETUP = "setup"            # dirty logging starts
    PRECOPY = "precopy"        # iterating: the guest runs on the source
    DOWNTIME = "downtime"      # the stop-and-copy: paused, the rest and the device state go
    SWITCHOVER = "switchover"  # post-copy's pause: device state and the dirty bitmap go
    POSTCOPY = "postcopy"      # the guest runs on the destination, pages follow
    COMPLETED = "completed"
    FAILED = "failed"          # rolled back (a failure, a limit, the early verdict, the give-up)
    CANCELLED = "cancelled"    # rolled back by the user's cancel, as QEMU's status
    LOST = "lost"              # a failure during post-copy

    def __str__(self) -> str:
        return str(self.value)


#: The phases in which a migration has ended (plain strings: ``phase in ENDED`` holds for both forms).
ENDED = ("completed", "failed", "cancelled", "lost")
#: Rounds kept at each end of a long migration's report (the ones between are summed into one).
KEEP_ROUNDS = 500
#: How far behind the clock (relative, at least that many seconds) a host's time passed to
#: :meth:`Migration.set_bandwidth` as ``at`` is still the clock: a rounding error of the host's offsets.
AT_CLOCK = 1e-9


def _merge_rounds(a: RoundReport, b: RoundReport) -> RoundReport:
    """Rounds a and b (consecutive) summed into one, marked ``aggregated``."""
    import dataclasses

    dur = a.duration + b.duration
    lost = a.guest_lost + b.guest_lost
    n = max(a.aggregated, 1) + max(b.aggregated, 1)
    return dataclasses.replace(
        a, duration=dur, pages_sent=a.pages_sent + b.pages_sent, bytes=a.bytes + b.bytes,
        dirty_pages=a.dirty_pages + b.dirty_pages,
        dirty_rate=(a.dirty_pages + b.dirty_pages) / dur if dur > 0 else 0.0,
        bandwidth=(a.bytes + b.bytes) / dur if dur > 0 else a.bandwidth,
        expected_downtime=b.expected_downtime, writes=a.writes + b.writes, faults=a.faults + b.faults,
        pml_full_exits=a.pml_full_exits + b.pml_full_exits, ring_full_exits=a.ring_full_exits + b.ring_full_exits,
        splits=a.splits + b.splits, kicks=a.kicks + b.kicks, guest_lost=lost,
        guest_slowdown=a.guest_slowdown if dur <= 0 else min(100.0, (a.guest_slowdown * a.duration
                                                                      + b.guest_slowdown * b.duration) / dur),
        throttle=(a.throttle * a.duration + b.throttle * b.duration) / dur if dur > 0 else b.throttle,
        remaining_pages=b.remaining_pages, threshold=b.threshold, aggregated=n,
        zero_pages=a.zero_pages + b.zero_pages, ended=b.ended)


def _bind(workload: Any, pages: int, vcpus: int, page_size: int) -> Any:
    """The workload bound to this guest (None for an idle guest); keep it alive while its handle is used."""
    if workload is None:
        return None
    bind = getattr(workload, "bind", None)
    if bind is None:
        hint = ""
        if isinstance(workload, str):  # simulate() and sweeps take spec strings; Migration takes the objects
            hint = (f" {workload!r}: build the object from the spec with "
                    f"dirtylog.specs.parse_workload({workload!r}) (simulate() takes the spec itself)")
        raise TypeError(f"workload must be a dirtylog workload (Uniform, Hotspot, ...), got "
                        f"{type(workload).__name__}{hint}")
    return bind(pages, vcpus=vcpus, page_size=page_size)


def _nominal_write_rate(workload: Any, pages: int, page_size: int) -> Optional[float]:
    """Page writes per second the workload issues (for the closed-form models)."""
    if workload is None:
        return 0.0
    fn = getattr(workload, "write_rate", None)
    if fn is None:
        return None
    try:
        return float(fn(pages=pages, page_size=page_size))
    except TypeError:
        return None


def _written_pages(workload: Any, pages: int, page_size: int) -> int:
    """The pages the workload's writes fall among (Workload.written_pages; all of them for a workload that
    does not say), for the closed-form models."""
    fn = getattr(workload, "written_pages", None)
    return pages if fn is None else int(fn(pages, page_size))


class Migration:
    """A live migration advanced step by step.

    Parameters
    ----------
    memory, pages:
        Guest memory as bytes or a string (``"4GiB"``), or as a page count.
    workload:
        A :mod:`dirtylog.workloads` workload (None: an idle guest that never writes).
    link:
        A :class:`Link` (default 10 Gbit/s, no latency, 8-byte page headers).
    policy:
        A :class:`PreCopy` (default: QEMU's rule with a 300 ms downtime limit) or a
        :class:`PostCopy`.
    tracker:
        ``"wp"``, ``"pml"`` (default), ``"ring"`` or ``"clear"`` (manual protect,
        with KVM_DIRTY_LOG_INITIALLY_SET as QEMU uses it), or a dict of
        :class:`Tracker` keyword arguments (``{"mode": "ring", "ring_entries": 65536}``).
    vcpus, page_size, huge_pages:
        As for :class:`Tracker`.
    zero_pages:
        Where the zero pages are (a page holds zeros until the guest first writes it;
        every pass sends a zero page as a header only, as QEMU does): a fraction
        scattered at random (``0.3``), or a :class:`~dirtylog.zeropages.ZeroPages`
        placement or its spec (``"top:25%"``, ``"top:512MiB"``,
        ``"ranges:0-1023,4096-8191"``): the top of memory or page ranges, which a
        workload writing elsewhere never hits.
    devices:
        Device state sent during the downtime (default :func:`default_devices`).
    seed:
        Seed of the scattered zero-page layout (workloads carry their own seeds).
    verify:
        Keep stale bits (1 bit per page: written since last sent) and check at
        the end that no page is stale. With ``zero_pages`` the source also counts
        writes per page (4 bytes each): they tell which zero pages the guest has
        since written.
    costs:
        :class:`TrackingCosts` (default: the documented defaults).
    on_round:
        Called with each :class:`RoundReport` as the round ends.
    faults:
        :class:`~dirtylog.faults.LinkFailure` and :class:`~dirtylog.faults.BandwidthChange`
        events at given simulated times (see also :meth:`fail_link`, :meth:`set_bandwidth`).
    """

    def __init__(
        self,
        memory: Union[int, str, None] = None,
        workload: Any = None,
        link: Optional[Link] = None,
        policy: Union[PreCopy, PostCopy, None] = None,
        tracker: Union[str, Dict[str, Any]] = "pml",
        vcpus: int = 1,
        page_size: Union[int, str] = 4096,
        huge_pages: Optional[str] = None,
        zero_pages: Union[float, str, ZeroPages] = 0.0,
        devices: Optional[Sequence[Device]] = None,
        seed: int = 0,
        verify: bool = True,
        pages: Optional[int] = None,
        costs: Optional[TrackingCosts] = None,
        on_round: Optional[Callable[[RoundReport], None]] = None,
        faults: Optional[Sequence[Fault]] = (),
    ) -> None:
        psize = check_page_size(page_size)  # before the guest's size, which is counted in pages of it
        if memory is None and pages is None and getattr(workload, "guest_pages", None):
            pages = workload.guest_pages  # a recorded trace: a guest of the recorded size
        if (memory is None) == (pages is None):
            raise ConfigError("give exactly one of memory (bytes or a string like '4GiB') and pages")
        if pages is not None:
            npages = as_int("pages", pages, minimum=1, maximum=MAX_PAGES)
        else:
            npages = guest_pages(memory, psize)
        self.link = as_link(link) if link is not None else Link()
        self.policy: PreCopy
        self.postcopy: Optional[PostCopy]
        if isinstance(policy, PostCopy):
            self.postcopy = policy
            self.policy = policy.precopy
        elif policy is None or isinstance(policy, PreCopy):
            self.policy = policy if policy is not None else PreCopy()
            self.postcopy = PostCopy(precopy=self.policy) if self.policy.on_limit == "postcopy" else None
        else:
            raise TypeError(f"policy must be a dirtylog.PreCopy or PostCopy, got {type(policy).__name__}")
        self.costs = costs if costs is not None else TrackingCosts()
        if not isinstance(self.costs, TrackingCosts):
            raise TypeError(f"costs must be a dirtylog.TrackingCosts, got {type(self.costs).__name__}")
        zplace = ZeroPages.parse(zero_pages)
        zplace.check(npages, psize)
        zfrac = zplace.share(npages, psize)
        if isinstance(tracker, str):
            topts: Dict[str, Any] = {"mode": tracker_mode(tracker, "tracker")}
        elif isinstance(tracker, dict):
            topts = dict(tracker)
            topts["mode"] = tracker_mode(topts.get("mode", "pml"), "tracker mode")
        else:
            raise TypeError(f"tracker must be a mode name or a dict of Tracker options, got {type(tracker).__name__}")
        if topts["mode"] == "clear":
            topts.setdefault("initially_set", True)  # QEMU enables it whenever KVM offers it
        own = ("pages", "vcpus", "page_size", "huge_pages")  # Migration's own arguments
        for k in own:
            if k in topts:
                raise ConfigError(f"give {k} to Migration itself, not in the tracker options")
        options = [o for o in inspect.signature(tracker_config).parameters if o not in own]
        unknown = sorted(o for o in topts if o not in options)
        if unknown:  # tracker_config's own TypeError named neither what is allowed nor the nearest
            raise ConfigError(f"unknown tracker option {unknown[0]!r}{suggest(str(unknown[0]), options)} "
                              f"(allowed: {', '.join(options)})")
        if self.policy.dirty_limit and topts["mode"] != "ring":
            raise ConfigError(f"dirty_limit needs the dirty ring tracker (tracker='ring'), as in QEMU, "
                              f"not {topts['mode']!r}: the per-vCPU dirty rates come from the rings")
        tcfg = tracker_config(npages, vcpus=vcpus, page_size=psize, huge_pages=huge_pages, **topts)
        check_memory(migration_memory(
            tcfg, verify=bool(verify), source_versions=zfrac > 0,
            write_rate=_nominal_write_rate(workload, npages, psize),
            written_pages=_written_pages(workload, npages, psize),
            bandwidth=self.policy.live_bandwidth(self.link.bandwidth),
            page_bytes=psize + self.link.header_bytes, postcopy=self.postcopy is not None,
            xbzrle_slots=self._xbzrle_slots(npages, psize)), f"a migration of a {format_size(npages * psize)} guest")
        self.tracker = Tracker(npages, vcpus=vcpus, page_size=psize, huge_pages=huge_pages, **topts)
        self.pages = npages
        self.page_size = psize
        self.vcpus = self.tracker.vcpus
        self.memory = npages * psize
        self.workload = workload
        self.devices = ordered(devices) if devices is not None else default_devices(self.vcpus)
        self.device_bytes = device_bytes(self.devices)
        self.seed = check_seed(seed)
        if not isinstance(verify, (bool, np.bool_)):
            raise TypeError(f"verify must be a bool, got {type(verify).__name__} {verify!r}")
        self.verify = bool(verify)
        if on_round is not None and not callable(on_round):
            raise TypeError(f"on_round must be a callable taking a RoundReport (or None), "
                            f"got {type(on_round).__name__} {on_round!r}")
        self.on_round = on_round
        if faults is None:
            faults = ()
        if isinstance(faults, (str, bytes)) or not isinstance(faults, Iterable):
            raise TypeError(f"faults must be a sequence of LinkFailure and BandwidthChange objects, "
                            f"got {type(faults).__name__} {faults!r}")
        faults = list(faults)
        for f in faults:
            err = check_fault(f)
            if err:
                raise TypeError(err)
        self._faults = sorted(faults, key=lambda f: f.at)
        # Two rates, as in QEMU: the live phase is capped by max_bandwidth, the
        # stop-and-copy (and post-copy unless max_postcopy_bandwidth) runs at link speed.
        self.link_bandwidth = self.policy.effective_bandwidth(self.link.bandwidth)
        self.bandwidth = self.policy.live_bandwidth(self.link.bandwidth)
        self.page_bytes = psize + self.link.header_bytes

        self._src: Optional[np.ndarray] = None
        if zfrac > 0:
            # Versions on the source tell which zero pages the guest has written (no
            # longer zero).
            self._src = np.zeros(npages, dtype=np.uint32)
            self.tracker.attach_versions(self._src)
        if self.verify:
            # Every page stale: the destination holds nothing yet.
            self.tracker.stale_start(initial=True)
        self._bound = _bind(workload, npages, self.vcpus, psize)
        self._wl = self._bound._handle if self._bound is not None else None

        cfg = ffi.new("dl_engine_config *")
        lib.dl_engine_config_init(cfg)
        cfg.bandwidth = self.link_bandwidth  # the wire; max_bandwidth is the live phase's rate limit
        if self.policy.xbzrle:
            cfg.xbzrle_slots = self._xbzrle_slots(npages, psize)
            cfg.xbzrle_ratio = self.policy.xbzrle_ratio
        cfg.page_bytes = self.page_bytes
        cfg.zero_bytes = self.link.header_bytes + 1
        # A chunk larger than memory is all of memory (the C field is 32 bits).
        cfg.chunk_pages = max(1, min(self.policy.chunk_size // psize, npages, 2**32 - 1))
        cfg.feedback = int(self.costs.slows_guest)
        cfg.cost_fault = self.costs.fault
        cfg.cost_pml_full = self.costs.pml_full
        cfg.cost_ring_full = self.costs.ring_full
        cfg.cost_split = self.costs.split
        cfg.cost_kick = self.costs.kick
        cfg.zero_fraction = zfrac
        cfg.zero_seed = (self.seed * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03) % 2**64
        cfg.work_budget = _WORK_BUDGET
        self.engine = Engine(cfg, self.tracker, self._wl)
        #: where the zero pages are (dirtylog.zeropages)
        self.zero_pages = zplace
        zmap = zplace.bitmap(npages, psize)
        if zmap is not None:
            self.engine.set_zero_map(zmap)
        self._e = self.engine.handle
        self._live_rate_limit()
        self._state = ffi.new("dl_engine_state *")
        clear_pages = max(64, (self.policy.clear_chunk // psize) // 64 * 64)
        self._clear_chunk = clear_pages

        self.phase: str = Phase.SETUP
        self.status = "active"
        self.reason = ""
        self.converged = False
        self._rounds_head: List[RoundReport] = []
        self._rounds_tail: List[RoundReport] = []
        self._rounds_mid: Optional[RoundReport] = None
        self._round_count = 0
        self._callbacks: List[RoundReport] = []
        self.events: List[Dict[str, Any]] = []
        self._round_events = 0
        self._late_round_events: List[Dict[str, Any]] = []
        self.dirty_sync_count = 0
        self.expected_downtime = math.nan
        self.setup_time = self._setup_time()
        self._round_index = 0
        self._pending_at_sync = npages  # pages in the migration bitmap after the last sync
        self._round_open = False  # a round has begun and not yet ended (_begin_round ... _end_round)
        self._last_ended: Optional[str] = None  # how the last round ended (current_round's "ended")
        self._mark = self._snapshot()
        self._window: Dict[str, float] = {}  # QEMU's last counters of the live phase (mbps, ...)
        self._sent_precopy = 0
        self._downtime_start = math.nan
        self._downtime_end = math.nan
        self._final_stage = ""
        self._device_left = 0
        self._mismatches: Optional[np.ndarray] = None
        self._mismatch_count = 0
        self._verified: Optional[bool] = None
        self._started = False
        self._pc_started = False
        self._pc_stale: Optional[np.ndarray] = None
        self._pc_words: Optional[np.ndarray] = None
        self._received: Optional[np.ndarray] = None
        self._pc_resume_at = math.nan
        self._pc_done_at = math.nan
        self._pc_state = ffi.new("dl_postcopy_state *")
        self._bytes_at_resume = 0
        self._remaining_at_rollback = 0  # memory_remaining (pages) when a rollback ended the migration
        self._setup_round: Optional[RoundReport] = None  # the setup's figures, once it ended (MigrationReport.setup)
        self._pause_threshold = 0.0  # QEMU's threshold when the guest paused (the final rounds report it)
        # QEMU's dirty-rate period and the throttles it steps (dirtylog.throttle)
        self._period = DirtyRatePeriod(self.policy.throttle_trigger_threshold)
        self._autoconverge = AutoConverge(self.policy, self.engine) if self.policy.auto_converge else None
        self._dirtylimit = (DirtyLimit(self.policy, self.engine, self.vcpus, psize, self.tracker.config.ring_entries,
                                       self.tracker.config.ring_soft_limit)
                            if self.policy.dirty_limit else None)
        # what to do at a sync (dirtylog.decision), with the early verdict's history
        self._decider = SyncPolicy(self.policy, self.postcopy)
        # a live sync takes the migration thread this long (TrackingCosts.sync, sync_per_gib): nothing is
        # sent until _busy_until, so the loop cannot sync more often than that
        self._sync_time = self.costs.sync + self.costs.sync_per_gib * self.memory / GIB
        self._busy_until = 0.0
        self._postcopy_requested = False  # start_postcopy(): QEMU's start_postcopy flag
        # whether the workload's writes are i.i.d. in time (Workload.iid_writes; None, an idle guest: no writes)
        self._iid_writes = bool(getattr(self.workload, "iid_writes", False))
        # the in-round early verdict's next probe (SyncPolicy.outrun), if it can ever be given
        self._probing = self._decider.may_outrun(self._iid_writes,
                                                 self.tracker.counts_since_harvest)
        self._probe_at = math.inf
        self._sync_loss = 0.0
        self._sync_at = math.inf  # a live sync waiting for its kicks to be served (_iteration)
        self._sync_threshold = 0.0  # and the threshold its iteration began with
        self._dl_wait = 0.0  # how long the dirty-limit period in progress will wait for its kicks at its end
        self.interrupted = False
        self._step_to: Optional[float] = None  # where run()'s step in progress ends (a Ctrl-C can cut it)

    def _xbzrle_slots(self, npages: int, psize: int) -> int:
        if not self.policy.xbzrle:
            return 0
        # A cache of more slots than pages holds every page, as one of exactly `pages` slots does.
        return max(1, min(self.policy.xbzrle_cache_size // psize, npages))

    # -- clock and state ---------------------------------------------------------
    def _engine_state(self) -> Any:
        check(lib.dl_engine_get_state(self._e, self._state), "engine state")
        return self._state

    @property
    def clock(self) -> float:
        """Simulated seconds since the migration started."""
        return float(self._engine_state().clock)

    @property
    def done(self) -> bool:
        return self.phase in ENDED

    @property
    def throttle(self) -> int:
        """Auto-converge's throttle now (percent; QEMU's cpu-throttle-percentage)."""
        return self._autoconverge.percent if self._autoconverge is not None else 0

    @property
    def throttle_history(self) -> List[int]:
        """Auto-converge's steps so far (percent)."""
        return list(self._autoconverge.history) if self._autoconverge is not None else []

    @property
    def dirty_limit_active(self) -> bool:
        """Whether dirty-limit is in service (its per-vCPU throttles held)."""
        return self._dirtylimit is not None and self._dirtylimit.active

    def _dl_next(self) -> float:
        return self._dirtylimit.next_at if self._dirtylimit is not None else math.inf

    def next_event_time(self) -> float:
        """The simulated time of the next point at which the migration's state can change in a way a
        host simulator schedules on (SimPy: ``yield env.timeout(m.next_event_time() - env.now)``):

        - setup: the end of dirty-log start; pre-copy: the end of the current 100 ms window (QEMU's
          counters, the earliest a sync or a switch-over can happen), or an earlier fault, timeout or
          dirty-limit period; stop-and-copy and post-copy's switch-over: the end of the transfer in
          progress (at link speed) or the resume; post-copy: the next push slice (one chunk);
        - ``math.inf`` once the migration has ended.

        Advancing to it (:meth:`run_until`) never skips a decision; a caller may also advance by less.
        """
        if self.done:
            return math.inf
        now = self.clock
        nxt = math.inf
        if self._faults:
            nxt = self._faults[0].at
        if self.phase == Phase.SETUP:
            return min(nxt, self.setup_time) if self.setup_time > now else now
        if self.phase == Phase.PRECOPY:
            c = self.engine.counters()
            win = self.policy.rate_window
            end = c.window_start + win
            while end <= now:
                end += win
            return min(nxt, end, self._timeout_at(), self._dl_next(), self._probe_at, self._sync_at)
        bw = self._phase_bandwidth()
        if self._final_stage == "pages":
            if self.phase == Phase.POSTCOPY:
                chunk = max(1, self.policy.chunk_size // self.page_size) * self.page_bytes / bw
                return min(nxt, now + chunk)
            return min(nxt, now + self.engine.remaining * self.page_bytes / bw)
        if self._final_stage == "devices":
            return min(nxt, now + self._device_left / bw)
        if self._final_stage == "resume":
            at = self._pc_resume_at if self.phase == Phase.SWITCHOVER else self._resume_at
            return min(nxt, at)
        if self._final_stage == "tail":
            return min(nxt, self._pc_done_at)
        return min(nxt, now)

    @property
    def memory_remaining(self) -> int:
        """Bytes still to send now, as QEMU's query-migrate ``ram.remaining`` (``ram_bytes_remaining()``:
        the dirty pages in the migration bitmap x page size). The bitmap starts with every page set and
        each page sent clears its bit, so it falls as pages go, in round 0 too, and grows only at a sync
        (by the pages it finds newly dirty); in the stop-and-copy it falls to 0, in post-copy it is the
        pages the destination still lacks. 0 once the migration has completed (QEMU reports none then).
        After a rollback (failed, cancelled) it is what was left when the migration stopped (QEMU's
        query-migrate reports no RAM figures then); after a loss in post-copy, the pages only the
        source held."""
        return self._remaining_pages() * self.page_size

    def _remaining_pages(self) -> int:
        phase = self.phase
        if phase == "completed":
            return 0
        if phase in ("failed", "cancelled"):
            return self._remaining_at_rollback
        if phase == "setup":  # QEMU's ram_state_init: every page dirty before the first send
            return self.pages
        if self._pc_started:  # post-copy, and a loss during it: the pages the destination lacks
            check(lib.dl_engine_postcopy_state(self._e, self._pc_state), "post-copy")
            return int(self._pc_state.remaining)
        if phase == "switchover":  # post-copy's pause: the last dirty set, taken out of the engine's bitmap
            return int(self._pc_stale.size) if self._pc_stale is not None else 0
        return self.engine.remaining

    @property
    def current_round(self) -> Dict[str, Any]:
        """Figures of the round in progress (or the downtime's, during it): the ones its
        :class:`RoundReport` will hold (the report's last round while it runs, marked ``running``).
        ``ended`` is "running" while a round runs; once the migration has ended, how its last round
        ended (e.g. "cancelled", with the figures of that round cut short); None during the setup."""
        st = self._engine_state()
        pages, zero, nbytes, elapsed = self._sent_since_mark(st)
        return {
            "phase": self.phase,
            "index": self._round_index,
            "pages_total": int(self._pending_at_sync),
            "pages_sent": pages,
            "zero_pages": zero,
            "bytes_sent": nbytes,
            "elapsed": elapsed,
            "dirty_sync_count": self.dirty_sync_count,
            "clock": float(st.clock),
            "ended": "running" if self._round_open else self._last_ended,
        }

    def _setup_time(self) -> float:
        gib = self.memory / GIB
        per = (self.costs.log_start_initially_set_per_gib if self.tracker.initially_set
               else self.costs.log_start_per_gib)
        t = per * gib
        if self.tracker.huge_pages == "eager" and not self.tracker.initially_set:
            t += self.costs.split * self.tracker.config.blocks
        return t

    def _snapshot(self) -> Dict[str, Any]:
        st = self._engine_state()
        ts = self.tracker.totals
        return {
            "clock": float(st.clock), "bytes": int(st.bytes_sent), "pages": int(st.pages_sent),
            "zero": int(st.zero_pages_sent),
            "writes": int(st.writes), "lost": float(st.lost), "faults": ts.faults,
            "pml": ts.pml_full_exits, "ring": ts.ring_full_exits, "splits": ts.splits, "kicks": ts.kicks,
            "throttle": float(st.throttle), "guest": float(st.guest_clock), "debt": float(st.debt),
        }

    def _event(self, kind: str, **detail: Any) -> None:
        ev = {"time": self.clock, "event": kind, **detail}
        self.events.append(ev)
        if kind == "round":
            # as the rounds: the first and the last KEEP_ROUNDS round events are kept, so that a
            # migration syncing for hours holds a bounded list
            self._round_events += 1
            if self._round_events > KEEP_ROUNDS:
                self._late_round_events.append(ev)
                if len(self._late_round_events) > KEEP_ROUNDS:
                    old = self._late_round_events.pop(0)
                    i = next(j for j in range(len(self.events) - 1, -1, -1) if self.events[j] is old)
                    del self.events[i]
        if kind in ("completed", "failed", "lost"):  # every end of a migration passes here once
            guest = float(self._engine_state().guest_clock)
            for leaf in self.workload._leaves() if self.workload is not None else []:
                check_covers = getattr(leaf, "check_covers", None)  # a Trace played once
                if check_covers is not None:
                    check_covers(guest)

    # -- stepping ------------------------------------------------------------------
    def advance(self, dt: Union[float, str]) -> "Migration":
        """Run the migration for ``dt`` more simulated seconds (or until it ends)."""
        step = parse_time(dt, name="dt", allow_inf=True)
        return self.run_until(self.clock + step)

    def run_until(self, t: Union[float, str]) -> "Migration":
        """Run the migration until simulated time ``t`` (seconds) or until it ends."""
        return self._run_until(parse_time(t, name="t", allow_inf=True))

    def _position(self) -> Tuple[str, float, str, int, int]:
        """Where the migration stands, as the run loop tells whether a step moved it."""
        return (self.phase, self.clock, self._final_stage, self.dirty_sync_count, self.engine.remaining)

    def _run_until(self, target: float) -> "Migration":
        """:meth:`run_until` for a time in seconds (the run loop's own calls: nothing to parse)."""
        stalled = 0
        self.engine.drain()  # a slice an interrupt left unfinished comes first
        after = None
        interrupt = self.engine.interrupt  # run()'s Ctrl-C, taken between two steps (each bounded work)
        while not self.done:
            if interrupt is not None and interrupt():
                raise KeyboardInterrupt
            faulted = False
            while self._faults and self._faults[0].at <= self.clock:
                self._apply_fault(self._faults.pop(0))
                faulted = True
                if self.done:
                    return self
            step_to = min(target, self._faults[0].at) if self._faults else target
            # where the last step left it (nothing runs between the two but a fault)
            before = after if after is not None and not faulted else self._position()
            with self.tracker._lock:  # the engine's C calls write into the tracker
                self._step(step_to)
            self._fire_callbacks()
            after = self._position()
            if after == before and not (self._faults and self._faults[0].at <= after[1]):
                break  # nothing moved: the target is reached
            stalled = stalled + 1 if after[1] == before[1] else 0
            if stalled > 100_000:
                raise CoreError(f"the migration makes no progress at {format_time(self.clock)} "
                                f"(phase {self.phase}); please report this as a bug")
        return self

    def run(self, give_up_after: Union[float, str, None] = None,
            progress: Optional[Callable[["Migration"], None]] = None) -> MigrationReport:
        """Run to the end and return the report: the one run loop (:func:`simulate`, the CLI and sweeps use it).

        ``give_up_after`` (seconds or ``"1h"``; None: never) bounds the simulated
        time when the policy sets no ``timeout`` of its own: QEMU iterates forever
        when the dirty rate outruns the link, so a migration still iterating then is
        rolled back (status "failed") with a reason saying so. A switch-over already
        under way always finishes. ``progress`` is called with the migration after
        each step of the loop (:meth:`_run_step`: about a million guest writes, at most
        1 s of simulated time); without it the loop takes no steps but the ones where
        something can change (the give-up limit; faults, syncs and the rest are the
        migration's own), and the report is the same either way. A migration that may
        go to post-copy (a :class:`PostCopy` policy, or ``on_limit="postcopy"``) takes
        the steps either way: post-copy charges remote-fault stalls per push slice, and
        a step's end cuts a slice.

        Ctrl-C: every call into the C core does bounded work, and SIGINT is taken
        between two of them (in the main thread), so the migration stays consistent;
        :class:`~dirtylog.errors.Interrupted` (a KeyboardInterrupt) is raised carrying
        ``.report``, the partial report marked ``interrupted``. ``run`` may be called
        again to go on.
        """
        self.interrupted = False
        limit = math.inf if give_up_after is None else parse_time(
            give_up_after, name="give_up_after", allow_zero=False, allow_inf=True)
        if self.policy.timeout is not None:
            limit = math.inf
        with _SigintDeferred() as sigint:
            self.engine.interrupt = lambda: sigint.fired  # checked between two bounded C calls
            try:
                # Unobserved, the loop takes no steps, except where post-copy may come: its remote-fault
                # stalls are charged per push slice, which a step's end cuts, so a post-copy migration
                # takes the same steps with or without a callback (the same report either way).
                observed = progress is not None or self.postcopy is not None
                step = self._run_step() if observed else math.inf
                while not self.done:
                    live = self.phase in ("setup", "precopy")
                    now = self.clock
                    if live and now >= limit:
                        self._rollback(f"not converged after {format_time(limit)} of simulated time: QEMU would "
                                       "iterate forever; set PreCopy(timeout=..., on_limit=...), a higher bandwidth "
                                       "or a longer downtime limit")
                        self._fire_callbacks()  # on_round gets the round the give-up cut short
                        break
                    # a step a Ctrl-C cut short ends where it would have: the same steps as in one run
                    if self._step_to is None or self._step_to <= now:
                        self._step_to = now + step
                    self._run_until(min(limit if live else math.inf, self._step_to))
                    self._step_to = None
                    if progress is not None:
                        progress(self)
            except KeyboardInterrupt:
                self.interrupted = True
                raise Interrupted(self.report()) from None
            finally:
                self.engine.interrupt = None
        return self.report()

    def _run_step(self) -> float:
        """Simulated seconds between two calls of :meth:`run`'s progress callback: about a million
        guest writes, at most 1 s.

        A function of the configuration only (never of wall time), so that a callback sees the
        same points of the same run every time. Pre-copy's figures do not depend on it: the
        engine gives the same result wherever a step ends (see :meth:`Engine.catch_up
        <dirtylog.engine.Engine.catch_up>`), and a run without a callback takes no such steps.
        Post-copy's do (a step's end cuts a push slice), so a migration that may go to post-copy
        takes these steps with or without a callback."""
        rate = _nominal_write_rate(self.workload, self.pages, self.page_size)
        if not rate or not math.isfinite(rate):
            return 1.0
        return min(1.0, max(1e-4, 1e6 / rate))

    def cancel(self, reason: str = "cancelled by the user") -> None:
        """Cancel a migration in progress (status "cancelled", as QEMU's): roll back, the source keeps running.

        In the stop-and-copy too, as QEMU's ``migrate-cancel`` in its ``device`` state: ``migrate_fd_cancel``
        sets ``cancelling`` and shuts the stream, the completion's send fails, ``migration_iteration_finish``
        restarts the source's vCPUs (``vm_start``) and the cleanup sets ``cancelled``. The guest resumes on
        the source, having been paused from the switch-over to the cancel (the stop-and-copy round, cut
        short); there was no downtime to report (NaN), as QEMU reports none. Refused once everything has
        been sent (QEMU has completed then: the destination resumes the guest), and once post-copy has
        begun, its switch-over included, as QEMU 10.0+'s ``qmp_migrate_cancel`` refuses it
        (``migration_in_postcopy()``): post-copy's switch-over (postcopy_start: the pause, the device state
        and the discard bitmap, the destination told to run) holds the big QEMU lock, which the cancel
        waits for, and the state it leaves is postcopy-active (10.2+: postcopy-device)."""
        if self.done:
            raise StateError(f"the migration has already ended ({self.status})")
        if self.phase == "downtime" and self._final_stage == "resume":
            raise StateError("the stop-and-copy has sent everything: the migration has completed on the source's "
                             "side and the destination is resuming the guest; too late to cancel")
        if self.phase in ("postcopy", "switchover"):
            raise StateError("Postcopy migration in progress, cannot cancel (QEMU's refusal): after post-copy has "
                             "started the source cannot take the guest back, its newest pages being on the "
                             "destination; a failure from here loses the VM")
        self._rollback(reason, status="cancelled")
        self._fire_callbacks()  # on_round gets the round the cancel cut short

    def start_postcopy(self) -> None:
        """QEMU's ``migrate-start-postcopy``: switch to post-copy at the migration thread's next
        iteration (QEMU sets a flag that ``migration_iteration_run`` acts on), whatever the
        policy's ``after_rounds``: the guest pauses, then runs on the destination (the settings
        of the :class:`PostCopy` policy if there is one, else the defaults). If what is pending
        at that iteration is below the threshold, the migration completes as pre-copy instead,
        as QEMU's does."""
        if self.done:
            raise StateError(f"the migration has already ended ({self.status})")
        if self.phase not in (Phase.SETUP, Phase.PRECOPY):
            raise StateError(f"the guest is already paused ({self.phase}): too late to start post-copy")
        self._postcopy_requested = True

    def set_bandwidth(self, bandwidth: Union[float, str], at: Union[float, str, None] = None) -> None:
        """Change the link's bandwidth (bytes/s or ``"1Gbit/s"``) from now on, or from simulated time ``at``.

        Now is the migration's :attr:`clock`, which is behind a host simulator's own clock until the host
        advances the migration to it. A host that shares a link between migrations, or changes its
        capacity, passes its own time as ``at`` (seconds since this migration started): a time ahead of
        the clock is kept as a :class:`~dirtylog.faults.BandwidthChange` (as the ``faults`` argument's),
        which the migration applies when it gets there (:meth:`next_event_time` includes it); the clock
        itself is now, and so is a time behind it by a rounding error (:data:`AT_CLOCK`: a host's time
        minus the migration's start can fall an ulp short); a time further behind is refused (the
        migration has already run past it).
        Refused once the migration has ended (StateError)."""
        if self.done:
            raise StateError(f"the migration has already ended ({self.status}): its bandwidth can no longer change")
        link = check_bandwidth(bandwidth, "bandwidth")
        if at is not None:
            when = parse_time(at, name="at")
            now = self.clock
            if now - AT_CLOCK * max(1.0, now) <= when < now:
                when = now  # a host's time carried into the migration's seconds: off by a rounding error
            if when < now:
                raise StateError(f"set_bandwidth(at={format_time(when)}): the migration has already run to "
                                 f"{format_time(now)}; give a time at or after its clock, or advance it no "
                                 f"further than your own clock (run_until) before changing the bandwidth")
            if when > now:
                later = next((i for i, f in enumerate(self._faults) if f.at > when), len(self._faults))
                self._faults.insert(later, BandwidthChange(when, link))
                return
        self.link_bandwidth = self.policy.effective_bandwidth(link)
        self.bandwidth = self.policy.live_bandwidth(link)
        check(lib.dl_engine_set_bandwidth(self._e, self._phase_bandwidth()), "set_bandwidth")
        self._decider.conditions_changed()
        self._event("bandwidth", bandwidth=link)

    def _phase_bandwidth(self) -> float:
        """The rate the link is used at in the current phase."""
        if self.phase in ("setup", "precopy"):
            return self.bandwidth
        if self.phase == "postcopy" or (self.phase == "switchover" and self._pc_started):
            return self.policy.postcopy_bandwidth(self.link_bandwidth)
        return self.link_bandwidth

    def fail_link(self, reason: str = "the migration link failed") -> None:
        """The link fails now: a pre-copy migration (even in its stop-and-copy) rolls back."""
        if self.done:
            raise StateError(f"the migration has already ended ({self.status})")
        self._event("link-failure")
        if self.phase == "postcopy" or (self.phase == "switchover" and self._pc_started):
            self._lose(f"{reason} at {format_time(self.clock)} during post-copy")
        else:
            self._rollback(f"{reason} at {format_time(self.clock)}; rolled back, the source keeps running")
        self._fire_callbacks()  # on_round gets the round the failure cut short

    def _apply_fault(self, f: Fault) -> None:
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        if isinstance(f, BandwidthChange):
            self.set_bandwidth(f.bandwidth)
        elif isinstance(f, LinkFailure) and not self.done:
            self.fail_link()

    def _timeout_at(self) -> float:
        return self.policy.timeout if self.policy.timeout is not None else math.inf

    def _step(self, target: float) -> None:
        if self.phase == "setup":
            if not self._started:
                self.tracker.start()
                self._started = True
                self._event("setup", setup_time=self.setup_time)
            end = self.setup_time
            self.engine.idle(min(target, end))
            if self.clock >= end:
                added = self._sync(measure=False)  # the setup sync (QEMU's ram_init_bitmaps): every page is dirty anyway
                # what the guest did while logging started, up to that sync: no round's (rounds begin after it)
                self._setup_round = self._round_since_mark("sync", added, remaining_pages=self.pages, threshold=0.0,
                                                           index=-1)
                self.engine.dirty_fill()
                self.phase = "precopy"
                self._begin_round(0)
            return
        if self.phase == "precopy":
            limit_at = self._timeout_at()
            deadline = min(target, limit_at, self._dl_next(), self._probe_at)
            p = self.policy
            if self.clock < self._busy_until:  # the migration thread is still in its sync: nothing goes
                self.engine.idle(min(deadline, self._busy_until))
                why = SendResult.DEADLINE
            elif self._postcopy_requested:  # back at the end of this iteration, to act on it
                why = self.engine.send_dirty(deadline, below_bytes=1 << 62)
            elif p.stop == "xen":  # Xen syncs at the end of each pass over the dirty set
                why = self.engine.send_dirty(deadline)
            elif p.switchover_bandwidth is not None:
                why = self.engine.send_dirty(deadline, below_bytes=max(1, int(p.switchover_bandwidth
                                                                              * p.downtime_limit)))
            else:
                why = self.engine.send_dirty(deadline, below_seconds=p.downtime_limit)
            now = self.clock  # one read: what follows does not move the clock
            if now >= self._dl_next():
                self._dirty_limit_adjust()
            if now >= self._sync_at:  # every vCPU has served the sync's kick: the rings are reaped now
                self._sync_and_decide(self._sync_threshold)
            elif why != SendResult.DEADLINE:
                self._iteration()
            elif now >= limit_at:
                self._apply(Decision(Action.LIMIT, f"timeout of {format_time(limit_at)} reached"))
            elif now >= self._probe_at:
                self._probe()
            return
        if self.phase == "downtime":
            self._downtime_step(target)
            return
        if self.phase == "switchover":
            self._switchover_step(target)
            return
        if self.phase == "postcopy":
            self._postcopy_step(target)
            return

    def _begin_round(self, index: int) -> None:
        self._round_open = True
        self._round_index = index
        self._pending_at_sync = self.engine.remaining
        self._mark = self._snapshot()
        self._probe_at = self._mark["clock"] + PROBE_FIRST if self._probing else math.inf
        self._event("round", index=index, pages=self._pending_at_sync)

    def _rate_limited(self) -> bool:
        """Whether the live phase runs under QEMU's rate limit (max_bandwidth below the link's)."""
        cap = self.policy.max_bandwidth
        return cap is not None and cap < self.link_bandwidth

    def _live_rate_limit(self) -> None:
        """QEMU's rate limit of the live phase: max_bandwidth x 100 ms per window (BUFFER_DELAY), the
        window lasting ``rate_window`` (longer on a host that wakes the migration thread late)."""
        cap = self.policy.max_bandwidth
        budget = max(1, int(cap * WINDOW)) if cap is not None and self._rate_limited() else 0
        self.engine.set_rate_limit(budget, window=self.policy.rate_window)

    def threshold(self) -> float:
        """QEMU's threshold_size: the measured bandwidth of the last window (or switchover_bandwidth)
        x downtime limit; 0 before the first window closes, as in QEMU."""
        p = self.policy
        bw = p.switchover_bandwidth if p.switchover_bandwidth is not None else self.engine.bandwidth
        return bw * p.downtime_limit

    def _measured_bandwidth(self) -> float:
        p = self.policy
        if p.switchover_bandwidth is not None:
            return p.switchover_bandwidth
        bw = self.engine.bandwidth
        return bw if bw > 0 else self.bandwidth

    def _sync(self, measure: bool = True, stopped: bool = False) -> int:
        """QEMU's migration_bitmap_sync: harvest the dirty log into the migration bitmap.

        Returns the pages newly set in the bitmap (QEMU's num_dirty_pages_period share);
        with ``measure`` the dirty-rate period and the throttle are evaluated, as QEMU does
        in every sync but the final one. The harvest kicks every vCPU (PML: KVM's
        kvm_arch_sync_dirty_log calls kvm_vcpu_kick on each; ring: QEMU's kvm_dirty_ring_flush calls
        kvm_cpu_synchronize_kick_all; the tracker counts them): :meth:`_kicked` charges them.
        ``stopped``: the vCPUs are stopped (the pause's sync, in QEMU's migration_completion after
        vm_stop)."""
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        kicks0 = self.tracker.totals.kicks
        if self.tracker.mode == "clear":
            words = self.tracker.harvest_bitmap()
            self.engine.set_clear_mask(words, self._clear_chunk)
            added = self.engine.dirty_add_words(words)
        else:
            # The tracker's words ORed straight into the migration bitmap, as QEMU's
            # cpu_physical_memory_sync_dirty_bitmap does: no page list or copy in between.
            added = self.engine.dirty_harvest()
        # per vCPU, what this sync charged the guest (the in-round verdict's probes)
        self._sync_loss = self._kicked(self.tracker.totals.kicks - kicks0, stopped)
        self.dirty_sync_count += 1
        if measure:
            self._period.add(added)
            self._end_period()
        return added

    def _vcpu_sleeps(self) -> Tuple[Sleeps, bool]:
        """Each vCPU's sleep outside guest mode under the throttle in force (dirtylog.throttle), and
        whether the vCPUs sleep together (auto-converge) or each at its own moments (dirty-limit)."""
        if self._autoconverge is not None:
            return self._autoconverge.sleeps(self.vcpus), True
        if self._dirtylimit is not None:
            return self._dirtylimit.sleeps(), False
        return [(0.0, 0.0)] * self.vcpus, True

    def _wait_for_kicks(self) -> float:
        """How long a live sync waits for its kicks (0: not at all): ring mode's kick is QEMU's
        kvm_cpu_synchronize_kick_all, a run_on_cpu per vCPU, which a vCPU asleep under a throttle serves
        only when its sleep ends (dirtylog.throttle.kick_wait); kvm_dirty_ring_flush reaps the rings
        after it. PML's kicks are KVM's kvm_vcpu_kick, which waits for nothing. The guest runs on
        meanwhile at its throttled average (the engine's vCPUs run smoothly at their share, where
        QEMU's run in bursts: the pages a sleeping vCPU would write after the sync are counted in it)."""
        return kick_wait(*self._vcpu_sleeps()) if self.tracker.mode == "ring" else 0.0

    def _kicked(self, kicks: int, stopped: bool = False) -> float:
        """Charge the guest for ``kicks`` (every vCPU kicked once per harvest or flush); returns what it
        cost each vCPU on average, 0 when the costs do not slow the guest.

        KVM kicks only a vCPU in guest mode (kvm_vcpu_kick sends no IPI to one outside it): a kick
        costs TrackingCosts.kick to a running vCPU, nothing to a stopped one (``stopped``: the pause's
        sync, after vm_stop) or to one asleep under a throttle (:meth:`_vcpu_sleeps`; expected value:
        the share of its time it runs). Each vCPU is charged its own expected loss of running time,
        (1 - s_j) x kick, and pays it out of its own running time (the engine's per-vCPU debt under
        dirty-limit's throttles), once."""
        each = kicks / self.vcpus * self.costs.kick
        loss = [0.0 if stopped else each * (1.0 - p) for p, _ in self._vcpu_sleeps()[0]]
        total = sum(loss)
        if total > 0:
            self.engine.charge(loss)
        return total / self.vcpus if self.costs.slows_guest else 0.0

    def _end_period(self) -> None:
        """QEMU's migration_bitmap_sync after the harvest: the dirty-rate period closes at a sync more
        than 1000 ms after it began, and the throttle steps when the dirty rate was high twice."""
        fire = self._period.close(self.clock, int(self._engine_state().bytes_sent), self.page_size)
        if fire is None:
            return
        if self._autoconverge is not None:
            new = self._autoconverge.step(*fire)
            if new is not None:
                self._decider.conditions_changed()
                self._event("throttle", percent=new)
        elif self._dirtylimit is not None and not self._dirtylimit.active:
            self._dirtylimit.engage(self.clock, [v.dirtied for v in self.tracker.stats.vcpus])
            self.tracker.reap_own = True  # QEMU's ring-full exit reaps its own ring while the limit serves
            self._dl_wait = 0.0  # nobody sleeps under the limit yet
            self._decider.conditions_changed()
            self._event("dirty-limit", limit=self.policy.vcpu_dirty_limit)

    def _dirty_limit_adjust(self) -> None:
        """Each dirty-limit period: hold every vCPU's dirty page rate at the limit by throttling it alone.

        QEMU's dirty-limit thread (system/dirtylimit.c: vcpu_dirty_rate_stat_collect, through
        vcpu_calculate_dirtyrate) ends each period with a global dirty-log sync of its own
        (global_dirty_log_sync, which is not the migration's: no dirty-sync-count): in ring mode
        kvm_dirty_ring_flush kicks every vCPU and reaps every ring (Tracker.flush), so that each
        vCPU's count of reaped pages (cpu->dirty_pages) holds the period's; the pages wait in the
        dirty bitmap for the migration's next sync. Its kicks are charged as a harvest's (:meth:`_kicked`)
        under the throttles of the period that ends. Its kvm_cpu_synchronize_kick_all waits for the
        vCPUs asleep at ring-full exits (:meth:`_wait_for_kicks`), which holds up the dirty-limit
        thread, not the migration's; vcpu_calculate_dirtyrate reads the counts after that wait and
        divides them by the period alone (dirty_stat_wait's duration), and the next period starts
        then. So the period in progress ends, and is read, ``wait`` after its nominal end (the
        expected wait under the sleeps in force, fixed when it began), its rates read (period +
        wait) / period high. The rates then step each vCPU's sleep as QEMU's dirtylimit_process does
        (dirtylog.throttle.DirtyLimit.adjust)."""
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        assert self._dirtylimit is not None
        kicks0 = self.tracker.totals.kicks
        self.tracker.flush()
        self._kicked(self.tracker.totals.kicks - kicks0)
        wait = self._dl_wait
        rates, throttles, moving = self._dirtylimit.adjust([v.dirtied for v in self.tracker.stats.vcpus], self.clock)
        self._dl_wait = self._wait_for_kicks()  # under the sleeps now in force, until the next adjust
        self._dirtylimit.next_at += self._dl_wait
        if moving:  # still adjusting: no early verdict yet
            self._decider.conditions_changed()
        self._event("dirty-limit-period", rates=rates, throttles=throttles, wait=wait)

    def _lift_dirty_limit(self) -> None:
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        if self._dirtylimit is not None:
            self._dirtylimit.lift()
            self.tracker.reap_own = False  # out of service: every ring again (Tracker.reap_own)

    def _sent_since_mark(self, st: Any) -> Tuple[int, int, int, float]:
        """Pages, zero pages and bytes sent, and seconds passed, since the round began (the mark), as of
        the engine state ``st``: the figures of current_round and of the round's RoundReport."""
        m = self._mark
        return (int(st.pages_sent) - m["pages"], int(st.zero_pages_sent) - m["zero"], int(st.bytes_sent) - m["bytes"],
                float(st.clock) - m["clock"])

    def _round_since_mark(self, ended: str, dirty_pages: int = 0, remaining_pages: Optional[int] = None,
                          threshold: Optional[float] = None, index: Optional[int] = None) -> RoundReport:
        """The figures of the round that began at the mark, as they stand now, ending by ``ended``
        (:data:`dirtylog.report.ROUND_ENDS`). Whether it is a stop-and-copy or post-copy round follows
        the phase. ``remaining_pages``: what the migration bitmap holds (default: what is left to send
        now, as memory_remaining); ``threshold``: the one the sync ending it compared with (default:
        QEMU's threshold now, :meth:`threshold`; a stop-and-copy or post-copy round: the one at the pause);
        ``index``: the entry's index (default: the round's; -1 for the setup)."""
        final = self.phase in ("downtime", "switchover", "postcopy", "lost")
        postcopy = self._pc_started
        if remaining_pages is None:
            remaining_pages = self._remaining_pages()
        if threshold is None:
            threshold = self._pause_threshold if final else self.threshold()
        st = self._engine_state()
        ts = self.tracker.totals
        m = self._mark
        pages, zero, nbytes, duration = self._sent_since_mark(st)
        lost = float(st.lost) - m["lost"]
        denom = duration * self.vcpus
        return RoundReport(
            index=index if index is not None else (self._round_index if not final else self._round_count),
            start=m["clock"],
            duration=duration,
            pages_sent=pages,
            bytes=nbytes,
            dirty_pages=int(dirty_pages),
            dirty_rate=dirty_pages / duration if duration > 0 else 0.0,
            bandwidth=nbytes / duration if duration > 0 else self.bandwidth,
            expected_downtime=remaining_pages * self.page_size / self._measured_bandwidth(),
            writes=int(st.writes) - m["writes"],
            faults=ts.faults - m["faults"],
            pml_full_exits=ts.pml_full_exits - m["pml"],
            ring_full_exits=ts.ring_full_exits - m["ring"],
            splits=ts.splits - m["splits"],
            kicks=ts.kicks - m["kicks"],
            guest_lost=lost,
            guest_slowdown=min(100.0, 100.0 * lost / denom) if denom > 0 else 0.0,
            throttle=100.0 * m["throttle"],
            final=final,
            postcopy=postcopy,
            remaining_pages=int(remaining_pages),
            threshold=float(threshold),
            zero_pages=zero,
            ended=ended,
        )

    def _end_round(self, ended: str, dirty_pages: int = 0, remaining_pages: Optional[int] = None,
                   threshold: Optional[float] = None) -> RoundReport:
        """The round in progress ends now (how: ``ended``): kept in the report and given to ``on_round``.
        Every end of a round passes here, a round cut short by the migration's end too, so that the
        rounds add up to the migration's totals."""
        r = self._round_since_mark(ended, dirty_pages, remaining_pages, threshold)
        self._round_open = False
        self._last_ended = ended
        self._keep_round(r)
        if self.on_round is not None:
            self._callbacks.append(r)  # called once the step's state is committed (run_until)
        return r

    def _cut_round(self, ended: str) -> None:
        """The migration ends (``ended``: its status) while a round runs: that round ends here, partial."""
        if self._round_open:  # the caller has caught the guest up to the clock
            self._end_round(ended)

    def _report_rounds(self) -> List[RoundReport]:
        """The rounds so far and, while one runs, its figures as they stand (ended "running")."""
        rounds = self.rounds
        if self._round_open:
            rounds.append(self._round_since_mark("running"))
        return rounds

    def _keep_round(self, r: RoundReport) -> None:
        """Keep the first and the last KEEP_ROUNDS rounds; the ones between are summed into one."""
        self._round_count += 1
        if len(self._rounds_head) < KEEP_ROUNDS:
            self._rounds_head.append(r)
            return
        if len(self._rounds_tail) == KEEP_ROUNDS:
            old = self._rounds_tail.pop(0)
            self._rounds_mid = old if self._rounds_mid is None else _merge_rounds(self._rounds_mid, old)
        self._rounds_tail.append(r)

    @property
    def rounds(self) -> List[RoundReport]:
        """The rounds so far: all of them, or the first and last KEEP_ROUNDS with the ones between
        summed into one (``aggregated`` says how many; the report's ``rounds_aggregated`` too)."""
        mid = [self._rounds_mid] if self._rounds_mid is not None else []
        return self._rounds_head + mid + self._rounds_tail

    def _fire_callbacks(self) -> None:
        while self._callbacks:
            r = self._callbacks.pop(0)
            assert self.on_round is not None
            self.on_round(r)  # an exception propagates; the migration's state is already consistent

    @property
    def _stationary(self) -> bool:
        """Whether the guest's dirty rate does not change over time, as both early verdicts need it
        (``Workload.stationary``; no workload writes nothing). Without a workload no probe is ever set
        (``may_outrun`` needs i.i.d. writes), so only the verdict at a sync sees that case."""
        return self.workload is None or bool(getattr(self.workload, "stationary", False))

    def _throttle_can_step(self, *, count_active_limit: bool) -> bool:
        """Whether a throttle may still slow the guest more: auto-converge below its maximum, or a
        dirty-limit not yet started. ``count_active_limit``: a dirty-limit already active counts too.
        The in-round verdict counts it: its per-vCPU throttles follow the measured rates every
        period, so a later window's guest time is never fixed. The verdict at a sync does not: while
        the limit's throttles still move they restart that verdict's history (_dirty_limit_adjust),
        so the syncs it reads are under the settled limit."""
        ac, dl = self._autoconverge, self._dirtylimit
        if ac is not None and ac.can_step():
            return True
        return dl is not None and (count_active_limit or not dl.active)

    def _iteration(self) -> None:
        """QEMU's migration_iteration_run, at an iteration's end with remaining below the threshold
        (or nothing left): sync, then switch over if what is pending is still below it."""
        p = self.policy
        threshold = self.threshold()
        remaining = self.engine.remaining * self.page_size
        if not (remaining < threshold or remaining == 0 or p.stop == "xen"):
            if self._postcopy_requested:  # QEMU: pending still above the threshold, start_postcopy set
                self._start_postcopy(_USER_POSTCOPY)
            return
        if remaining == 0 and threshold <= 0 and p.stop != "xen":
            # QEMU 7.2's ram_save_pending syncs only when what is left is below the threshold, which is 0
            # until the first 100 ms window closes: with nothing left, migration_iteration_run completes
            # at once, and the pause's sync takes what the guest dirtied meanwhile
            self.expected_downtime = 0.0
            self._apply(Decision(Action.SWITCHOVER, "converged: nothing pending at the end of the first pass, "
                                                    "before QEMU's first bandwidth measurement (threshold 0)",
                                                    True))
            return
        wait = self._wait_for_kicks()
        if wait > 0:  # the migration thread sends nothing until the sync is done (_step); the guest runs on
            self._sync_at = self._busy_until = self.clock + wait
            self._sync_threshold = threshold  # QEMU's threshold_size is not updated while its thread waits
            self._event("sync-wait", seconds=wait)
            return
        self._sync_and_decide(threshold)

    def _sync_and_decide(self, threshold: float) -> None:
        """The rest of QEMU's migration_iteration_run once it syncs: the sync, then the decision against
        ``threshold``, the one the iteration began with."""
        self._sync_at = math.inf
        self._sent_precopy = int(self._engine_state().bytes_sent)
        added = self._sync()
        npend = self.engine.remaining
        pending = npend * self.page_size  # QEMU counts RAM only here; the device state goes in the pause
        bw = self._measured_bandwidth()
        self.expected_downtime = pending / bw
        self._end_round("sync", added, remaining_pages=npend, threshold=threshold)  # the decision's threshold
        decision = self._decider.decide(SyncState(
            pending_pages=npend, page_size=self.page_size, threshold=threshold, round_index=self._round_index,
            sent_precopy=self._sent_precopy, memory=self.memory, clock=self.clock,
            throttle_can_step=self._throttle_can_step(count_active_limit=False),
            faults_pending=bool(self._faults), stationary=self._stationary))
        if self._postcopy_requested and decision.action != Action.SWITCHOVER:
            decision = Decision(Action.POSTCOPY, _USER_POSTCOPY)
        self._apply(decision)

    def _probe(self) -> None:
        """A probe of the in-round early verdict (dirtylog.decision.SyncPolicy.outrun): reads the
        window since the round's sync as it stands (the guest's writes up to the engine's open
        segment: no catch-up, so the simulation goes on exactly as without the probe)."""
        st = self._engine_state()
        m = self._mark
        window = float(st.clock) - m["clock"]
        guest_time, throttle = float(st.guest_clock) - m["guest"], float(st.throttle)
        lost = (float(st.lost) - m["lost"]) / self.vcpus  # per vCPU, as the engine's debt
        # the wall time the counted writes span: their guest time and the debt paid in it, unthrottled
        paid = m["debt"] + lost - float(st.debt)
        applied = (guest_time + paid) / (1.0 - throttle) if throttle < 1.0 else 0.0
        self._probe_at = m["clock"] + 2 * window
        p = self.policy
        # what tracking can take from a vCPU's guest time in a later window, whatever the syncs in it:
        # the most per write, a kick per sync (no more often than a sync takes), and once per huge
        # block not yet split (its split and fault)
        c = self.costs
        per_write = c.most_per_write(*self.tracker.exits_per_write()) / self.vcpus
        kick = c.kick if c.slows_guest else 0.0
        kick_rate = kick / self._sync_time if self._sync_time > 0 else (math.inf if kick > 0 else 0.0)
        unsplit = 0
        if self.tracker.huge_pages == "lazy" and c.slows_guest:
            unsplit = max(0, self.tracker.config.blocks - self.tracker.totals.splits)
        once = unsplit * (c.split + c.fault) / self.vcpus
        reason = self._decider.outrun(ProbeState(
            dirtied=self.tracker.dirtied_since_harvest, window=window, guest_time=guest_time, applied=applied,
            lost=lost, throttle=throttle, writes=int(st.writes) - m["writes"], loss_per_write=per_write,
            kick_rate=kick_rate, loss_once=once, segment=ITERATION + p.rate_window + self._sync_time,
            page_size=self.page_size, page_bytes=self.page_bytes,
            send_bandwidth=self.bandwidth,
            # under a rate limit a window sends its budget and the page that crosses it
            send_slack=self.page_bytes / WINDOW if self._rate_limited() else 0.0,
            # a window's measured bandwidth exceeds the rate limit by a page at most
            threshold_bandwidth=max(self.bandwidth + self.page_bytes / WINDOW, p.switchover_bandwidth or 0.0),
            burst=2 * WINDOW,  # a window's budget at the end of a span and the next one's at its start
            round_index=self._round_index, iid_writes=self._iid_writes,
            throttle_can_step=self._throttle_can_step(count_active_limit=True),
            faults_pending=bool(self._faults) or self._postcopy_requested,
            stationary=self._stationary, sync_loss=self._sync_loss,
            debt=float(st.debt)))
        if reason is not None:
            self._apply(Decision(Action.ROLLBACK, reason))

    def _apply(self, d: Decision) -> None:
        """Carry out the policy's decision (dirtylog.decision)."""
        if d.action == Action.LIMIT:
            self._event("limit", reason=d.reason, action=self.policy.on_limit)
            d = self._decider.at_limit(d.reason)
        if d.action == Action.SWITCHOVER:
            self._switchover(d.converged, d.reason)
        elif d.action == Action.POSTCOPY:
            self._start_postcopy(d.reason)
        elif d.action == Action.ROLLBACK:
            self._rollback(d.reason)
        else:
            self._begin_round(self._round_index + 1)
            self._busy_until = self.clock + self._sync_time

    def _pause(self) -> None:
        """End pre-copy as QEMU's migration_completion does: stop the vCPUs, sync once more
        (into the migration bitmap) and lift the rate limit."""
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        self._pause_threshold = self.threshold()
        self._sync_at = math.inf  # a live sync still waiting for its kicks is overtaken by the pause's
        self._lift_dirty_limit()
        c = self.engine.counters()
        self._window = {"bandwidth": c.bandwidth, "mbps": c.bandwidth * 8 / 1e6,
                        "pages_per_second": c.last_pages / c.last_length if c.last_length > 0 else 0.0}
        self.engine.set_throttle(1.0)
        if self._round_open:  # a stop between two syncs: the round's figures up to the pause
            self._end_round("pause", remaining_pages=self.engine.remaining)
        self._sent_precopy = int(self._engine_state().bytes_sent)
        # the paused phase (the stop-and-copy, post-copy's switch-over) begins here: its round holds the
        # pause's sync (QEMU's last dirty-sync-count, in the completion), with the vCPUs stopped
        self._mark = self._snapshot()
        self._sync(measure=False, stopped=True)
        self.engine.set_rate_limit(0)
        self.engine.reset_carry()

    def _switchover(self, converged: bool, reason: str) -> None:
        self.converged = converged
        self.reason = reason
        self._pause()
        if self.tracker.mode == "clear":
            self.engine.set_clear_mask(None)
        pages = self.engine.remaining
        self._event("switchover", pages=pages, converged=converged)
        self._downtime_start = self.clock
        # QEMU lifts the rate limit when it pauses the guest: the stop-and-copy runs at link speed
        self.engine.set_bandwidth(self.link_bandwidth)
        self.phase = "downtime"
        self._final_stage = "pages"
        self._round_index = -1
        self._pending_at_sync = pages
        self._mark["throttle"] = 1.0  # the mark: the pause (_pause)
        self._round_open = True  # the stop-and-copy
        self._device_left = self.device_bytes

    def _downtime_step(self, target: float) -> None:
        if self._final_stage == "pages":
            # With nothing left the pages are done now, in a step that ends now too: a host that advances to
            # next_event_time() lands exactly where the last page went, and the engine finds the bitmap empty
            # only in a call whose deadline is ahead of its clock (with no page left it sends nothing and its
            # clock stays, so the deadline changes nothing else).
            if self.engine.send_dirty(target if self.engine.remaining else math.inf) == SendResult.EMPTY:
                self._final_stage = "devices"
            return
        if self._final_stage == "devices":
            left = ffi.new("uint64_t *")
            self.engine.catch_up()
            check(lib.dl_engine_transfer(self._e, self._device_left, target, left), "device state")
            self._device_left = int(left[0])
            self.engine.drain("device state")  # after the bytes are counted: an interrupt here loses nothing
            if self._device_left == 0:
                self._final_stage = "resume"
                self._resume_at = self.clock + self.link.latency + self.policy.resume_time
            return
        if self._final_stage == "resume":
            self.engine.idle(min(target, self._resume_at))
            if self.clock >= self._resume_at:
                self._finish()

    # -- post-copy ----------------------------------------------------------------------
    def _start_postcopy(self, reason: str) -> None:
        """Pause, take the last dirty set, and send device state and the dirty bitmap."""
        self.reason = reason
        self.converged = False
        self._pause()
        self.tracker.stop()  # the source is paused for good: nothing more to track
        words = self.engine.dirty_words()
        self.engine.dirty_clear()
        self._pc_words = words
        self._pc_stale = _bitmap_pages(words, self.pages)
        self._event("switchover", pages=int(self._pc_stale.size), postcopy=True)
        self._downtime_start = self.clock
        self.engine.set_bandwidth(self.policy.postcopy_bandwidth(self.link_bandwidth))
        self.phase = "switchover"
        self._round_index = -1
        self._pending_at_sync = int(self._pc_stale.size)  # what post-copy sends: current_round's pages_total
        self._mark["throttle"] = 1.0  # the mark: the pause (_pause)
        self._round_open = True  # post-copy's switch-over
        # the device state, and the discard list: the destination drops the pages dirty now
        self._device_left = self.device_bytes + discard_bytes(self._pc_stale)
        self._final_stage = "devices"

    def _switchover_step(self, target: float) -> None:
        if self._final_stage == "devices":
            left = ffi.new("uint64_t *")
            self.engine.catch_up()
            check(lib.dl_engine_transfer(self._e, self._device_left, target, left), "device state")
            self._device_left = int(left[0])
            self.engine.drain("device state")  # after the bytes are counted: an interrupt here loses nothing
            if self._device_left == 0:
                self._final_stage = "resume"
                self._pc_resume_at = self.clock + self.link.latency + self.policy.resume_time
            return
        self.engine.idle(min(target, self._pc_resume_at))
        if self.clock < self._pc_resume_at:
            return
        # the destination resumes the guest: post-copy proper
        self._downtime_end = self.clock
        self._end_round("resume", remaining_pages=0)
        pc = self.postcopy if self.postcopy is not None else PostCopy(precopy=self.policy)
        stale = self._pc_stale
        assert stale is not None
        words = self._pc_words
        assert words is not None
        self._received = np.zeros(self.pages, dtype=np.uint8)
        rs = pc.read_share
        if rs is None:
            from .workloads import DEFAULT_READ_SHARE

            own = getattr(self.workload, "read_share", None)
            rs = DEFAULT_READ_SHARE if own is None else float(own)
        self.engine.catch_up()
        check(lib.dl_engine_set_throttle(self._e, 0.0), "resume on the destination")
        check(lib.dl_engine_postcopy_begin(
            self._e, ffi.from_buffer("uint64_t[]", words), words.size,
            ffi.from_buffer("uint8_t[]", self._received), self.pages, ffi.NULL,
            rs / (1.0 - rs), 1.0e6, self.link.latency, pc.prepage), "post-copy")
        check(lib.dl_engine_postcopy_set_backlog(self._e, pc.channel_backlog), "post-copy channel backlog")
        self._pc_started = True
        self._bytes_at_resume = int(self._engine_state().bytes_sent)
        self.phase = "postcopy"
        self._final_stage = "pages"
        self._mark = self._snapshot()
        self._round_open = True  # post-copy proper
        self._event("postcopy", pages=int(stale.size))

    def _postcopy_step(self, target: float) -> None:
        st = self._pc_state
        if self._final_stage == "pages":
            self.engine.postcopy_step(target)
            check(lib.dl_engine_postcopy_state(self._e, st), "post-copy")
            if st.remaining == 0:
                self._pc_done_at = float(st.done_at)
                self._final_stage = "tail"
            return
        self.engine.idle(min(target, self._pc_done_at))
        if self.clock >= self._pc_done_at:
            self._end_round("completed", remaining_pages=0)
            self.phase = "completed"
            self.status = "completed"
            if self.verify:
                self._check_destination()
                assert self._received is not None and self._pc_stale is not None
                expect = np.zeros(self.pages, dtype=np.uint8)
                expect[self._pc_stale.astype(np.intp)] = 1
                once = bool(np.array_equal(self._received, expect))
                if not once:
                    bad = np.flatnonzero(self._received != expect)
                    self._mismatch_count += int(bad.size)
                    self._mismatches = np.concatenate([self._mismatches if self._mismatches is not None
                                                       else np.empty(0, np.uint64), bad[:16].astype(np.uint64)])
                self._verified = bool(self._verified) and once
            self._event("completed", downtime=self._downtime_end - self._downtime_start, verified=self._verified)

    def _lose(self, reason: str) -> None:
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        check(lib.dl_engine_postcopy_state(self._e, self._pc_state), "post-copy")
        left = int(self._pc_state.remaining)
        self._cut_round("lost")
        self.phase = "lost"
        self.status = "lost"
        self.converged = False
        missing = (f"{left:,} pages were still only on the source" if left
                   else "the last requested pages were still in flight")
        self.reason = (f"{reason}: the VM is lost, neither side holds all of its memory "
                       f"({missing}, the newest versions of the rest only on the destination)")
        self._verified = None
        self._event("lost", pages_missing=left)

    def _finish(self) -> None:
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        self._downtime_end = self.clock
        self._end_round("completed", remaining_pages=0)
        self.tracker.stop()
        self.phase = "completed"
        self.status = "completed"
        if self.verify:
            self._check_destination()
        self._event("completed", downtime=self._downtime_end - self._downtime_start, verified=self._verified)

    def _check_destination(self) -> None:
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        cap = 16
        out = np.empty(cap, dtype=np.uint64)
        n = ffi.new("uint64_t *")
        check(lib.dl_engine_verify(self._e, ffi.from_buffer("uint64_t[]", out), cap, n), "verify")
        self._mismatch_count = int(n[0])
        self._mismatches = out[: min(cap, self._mismatch_count)].copy()
        self._verified = self._mismatch_count == 0

    def _rollback(self, reason: str, status: str = "failed") -> None:
        self.engine.catch_up()  # the guest runs up to the clock first (see Engine.catch_up)
        if self.phase == "setup":  # the setup cut short: its figures up to now
            self._setup_round = self._round_since_mark(status, index=-1)
        self._cut_round(status)
        self._remaining_at_rollback = self._remaining_pages()
        if self.tracker.logging:
            self.tracker.stop()
        check(lib.dl_engine_set_throttle(self._e, 0.0), "resume the source")
        self._sync_at = math.inf
        self._lift_dirty_limit()
        self.phase = status
        self.status = status
        self.reason = reason
        self.converged = False
        if self.verify:
            # Nothing lost: every write the guest made reached the source's memory.
            writes = int(self._engine_state().writes)
            self._verified = self.tracker.totals.writes == writes
        self._event(status, reason=reason)

    # -- report ----------------------------------------------------------------------
    def report(self) -> MigrationReport:
        """The migration's report (partial while it is still running)."""
        st = self._engine_state()
        total = float(st.clock)
        # QEMU's ram_transferred_add counts what it sends while the guest runs as precopy-bytes, while it is
        # stopped as downtime-bytes, in post-copy as postcopy-bytes: the pause ends pre-copy's bytes, and a
        # rollback after it (a cancel in the stop-and-copy) leaves what the pause sent in downtime-bytes
        ended_precopy = not math.isnan(self._downtime_start)
        # NaN (null in JSON): no switch-over happened, so there was no downtime to report
        downtime = (self._downtime_end - self._downtime_start) if not math.isnan(self._downtime_end) else math.nan
        transferred = int(st.bytes_sent)
        precopy = self._sent_precopy if ended_precopy else transferred
        after_resume = self._bytes_at_resume if self._pc_started else transferred
        downtime_bytes = after_resume - precopy if ended_precopy else 0
        pcs = self._pc_state
        if self._pc_started:
            check(lib.dl_engine_postcopy_state(self._e, pcs), "post-copy")
        degraded = 0.0
        if self._pc_started:
            end = self._pc_done_at if not math.isnan(self._pc_done_at) else total
            degraded = end - self._downtime_end
        zero = int(st.zero_pages_sent)
        pages_sent = int(st.pages_sent)
        normal = pages_sent - zero - int(st.xbzrle_pages)  # QEMU counts XBZRLE pages apart
        rate = _nominal_write_rate(self.workload, self.pages, self.page_size)
        dl_figures = self._dirtylimit.figures() if self._dirtylimit is not None else (None, None)
        rounds = self._report_rounds()
        return MigrationReport(
            status=self.status,
            converged=self.converged,
            reason=self.reason,
            total_time=total,
            downtime=downtime,
            setup_time=self.setup_time,
            transferred=transferred,
            precopy_bytes=precopy,
            downtime_bytes=downtime_bytes,
            postcopy_bytes=transferred - after_resume,
            pages_sent=pages_sent,
            duplicate=zero,
            normal=normal,
            normal_bytes=normal * self.page_size,
            dirty_sync_count=self.dirty_sync_count,
            expected_downtime=self.expected_downtime,
            verified=self._verified,
            mismatches=self._mismatch_count,
            mismatched_pages=[int(x) for x in self._mismatches] if self._mismatches is not None else [],
            memory=self.memory,
            pages=self.pages,
            page_size=self.page_size,
            vcpus=self.vcpus,
            tracker=self.tracker.mode,
            bandwidth=self.link.bandwidth,
            downtime_limit=self.policy.downtime_limit,
            guest_writes=int(st.writes),
            guest_lost=float(st.lost),
            device_bytes=self.device_bytes,
            memory_remaining=self.memory_remaining,
            rounds=rounds,
            tracker_stats=self.tracker.stats.to_dict(),
            models=self._models(rate),
            guest_running={"completed": "destination", "lost": "nowhere (lost)"}.get(self.status, "source"),
            postcopy_requests=int(pcs.requests) if self._pc_started else 0,
            postcopy_prepaged=int(pcs.prepaged) if self._pc_started else 0,
            postcopy_stall_time=float(pcs.stall) if self._pc_started else 0.0,
            degraded_window=degraded,
            events=list(self.events),
            cpu_throttle_percentage=self.throttle,
            compression=self._compression(st),
            guest_throttled=sum(r.duration * r.throttle / 100.0 * self.vcpus for r in rounds if not r.final),
            interrupted=self.interrupted,
            rounds_aggregated=self._rounds_mid.aggregated if self._rounds_mid is not None else 0,
            window_mbps=self._window_figures()["mbps"],
            window_pages_per_second=self._window_figures()["pages_per_second"],
            dirty_limit_ring_full_time=dl_figures[0],
            dirty_limit_throttle_time_per_round=dl_figures[1],
            switchover_bandwidth=self.policy.switchover_bandwidth,
            setup=self._setup_round if self._setup_round is not None or not self._started
            else self._round_since_mark("running", index=-1),
        )

    def _window_figures(self) -> Dict[str, float]:
        """QEMU's mbps and pages-per-second of the last window of the live phase."""
        if self._window:
            return self._window
        c = self.engine.counters()
        return {"bandwidth": c.bandwidth, "mbps": c.bandwidth * 8 / 1e6,
                "pages_per_second": c.last_pages / c.last_length if c.last_length > 0 else 0.0}

    def _compression(self, st: Any) -> Dict[str, Any]:
        p = self.policy
        out: Dict[str, Any] = {"zero_pages": int(st.zero_pages_sent)}
        if p.xbzrle:
            # as QEMU's query-migrate counts them (save_xbzrle_page): every cache hit is an XBZRLE
            # page, an overflow (a delta larger than the page) included, whose page goes whole
            hits = int(st.xbzrle_pages + st.xbzrle_overflows)
            xbytes = int(st.xbzrle_bytes) + int(st.xbzrle_overflows) * self.page_size
            looked = hits + int(st.xbzrle_misses)
            out["xbzrle"] = {
                "cache_size": p.xbzrle_cache_size,
                "pages": hits,
                "bytes": xbytes,
                "cache_miss": int(st.xbzrle_misses),
                "cache_miss_rate": st.xbzrle_misses / looked if looked else 0.0,
                "overflow": int(st.xbzrle_overflows),
                "encoding_rate": (hits * self.page_size / xbytes) if xbytes else 0.0,
            }
        if p.multifd_channels or p.channel_bandwidth is not None:
            out["multifd"] = {"channels": p.multifd_channels, "channel_bandwidth": p.channel_bandwidth,
                              "effective_bandwidth": self.bandwidth}
        return out

    def _measured_dirty_rate(self) -> Optional[float]:
        """Bytes dirtied per second over the pre-copy rounds, as the syncs measured them (QEMU's
        dirty-pages-rate): distinct pages per round over the rounds' time, page headers included."""
        # only a sync measures what the guest dirtied: not a round cut short, nor one ended by a pause
        live = [r for r in self.rounds if r.synced and r.duration > 0]
        span = sum(r.duration for r in live)
        if span <= 0:
            return None
        return sum(r.dirty_pages for r in live) / span * self.page_bytes

    def _models(self, write_rate: Optional[float]) -> Dict[str, Any]:
        if write_rate is None:
            return {}
        out: Dict[str, Any] = {}
        # The bandwidth pre-copy runs at: a multifd cap (channel_bandwidth) or max_bandwidth applies to the models too.
        bw = self.policy.live_bandwidth(self.link.bandwidth)
        try:
            # Liu et al.'s D is the dirty rate: fed the measured one (distinct pages per period), not the
            # page-write rate, which counts a hot page's rewrites and makes it pessimistic for skewed workloads.
            measured = self._measured_dirty_rate()
            dirty = measured if measured is not None else write_rate * self.page_bytes
            g = _models.geometric(self.memory, bw, dirty,
                                  downtime_limit=self.policy.downtime_limit,
                                  resume_time=self.policy.resume_time + self.link.latency)
            out["geometric"] = dict(g.to_dict(), dirty_rate=dirty, dirty_rate_measured=measured is not None)
            s = _models.saturating(self.pages, self.page_size, bw, write_rate,
                                   downtime_limit=self.policy.downtime_limit, header_bytes=self.link.header_bytes,
                                   resume_time=self.policy.resume_time + self.link.latency,
                                   written_pages=_written_pages(self.workload, self.pages, self.page_size))
            out["saturating"] = s.to_dict()
            out["cloudsim"] = {"total_time": _models.cloudsim(self.memory, bw)}
        except ConfigError:
            pass
        return out


#: QEMU 7.2's discard commands at a post-copy switch-over (postcopy_discard_send_range,
#: migration/postcopy-ram.c; qemu_savevm_send_postcopy_ram_discard, migration/savevm.c): up to
#: 12 (start, length) ranges of dirty pages per command, 16 bytes each, after a header of 14
#: bytes for the RAM block "pc.ram" (command byte, command, length, version, name length, name, NUL).
DISCARD_RANGES_PER_COMMAND = 12
DISCARD_COMMAND_HEADER = 1 + 2 + 2 + 1 + 1 + len("pc.ram") + 1


def discard_bytes(stale: np.ndarray) -> int:
    """Bytes of QEMU's discard list for the dirty pages ``stale`` (sorted page numbers): one
    range per run of consecutive pages, so a scattered dirty set costs far more than a bitmap."""
    if stale.size == 0:
        return 0
    ranges = int(np.count_nonzero(np.diff(stale.astype(np.int64)) != 1)) + 1
    commands = -(-ranges // DISCARD_RANGES_PER_COMMAND)
    return commands * DISCARD_COMMAND_HEADER + 16 * ranges


def _bitmap_pages(words: np.ndarray, pages: int) -> np.ndarray:
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:pages]
    return np.flatnonzero(bits).astype(np.uint64)


def simulate(
    memory: Union[int, str, None] = None,
    workload: Any = DEFAULTS["workload"],
    link: Optional[Link] = None,
    policy: Union[PreCopy, PostCopy, str, None] = None,
    tracker: Union[str, Dict[str, Any]] = DEFAULTS["tracker"],
    vcpus: int = DEFAULTS["vcpus"],
    page_size: Union[int, str] = DEFAULTS["page_size"],
    huge_pages: Optional[str] = DEFAULTS["huge_pages"],
    zero_pages: Union[float, str, ZeroPages] = DEFAULTS["zero_pages"],
    devices: Optional[Sequence[Device]] = None,
    seed: int = DEFAULTS["seed"],
    verify: bool = DEFAULTS["verify"],
    pages: Optional[int] = None,
    costs: Optional[TrackingCosts] = None,
    on_round: Optional[Callable[[RoundReport], None]] = None,
    faults: Optional[Sequence[Fault]] = (),
    give_up_after: Union[float, str, None] = DEFAULTS["give_up_after"],
    advise: Union[bool, str] = False,
    progress: Optional[Callable[["Migration"], None]] = None,
    **settings: Any,
) -> MigrationReport:
    """Run a live migration to its end and return its :class:`MigrationReport`.

    Takes the arguments of :class:`Migration` (``memory`` defaults to 4 GiB, or to a
    recorded trace's own size, and ``workload`` to ``"hotspot:1GiB/s"``; a workload may be a spec string, see
    :mod:`dirtylog.specs`, and None is an idle guest), and the flat settings of
    :class:`dirtylog.config.MigrationConfig` in place of ``link`` and ``policy``:
    ``bandwidth=``, ``latency=``, ``policy="precopy"|"postcopy"`` and any policy
    knob (``downtime_limit="100ms"``, ``auto_converge=True``, ...).

    QEMU iterates forever when the dirty rate outruns the link; so that a call
    always returns, a migration still running after ``give_up_after`` of simulated
    time (when the policy sets no timeout of its own; by default 10 minutes, or 20
    times the time to send memory once if longer) is rolled back with a reason
    saying so.

    ``advise``: True to attach :class:`~dirtylog.advice.Advice` (what would make it
    converge, found by more simulations: see :func:`dirtylog.advice.advise`) as
    ``report.advice`` when the migration does not converge; ``"always"`` to attach it
    to one that converges too (how far bandwidth and downtime limit could go down).

    ``progress``: called with the :class:`Migration` as it runs (the hook of :meth:`Migration.run`).
    """
    if advise not in (True, False, "always"):
        raise ConfigError(f"advise must be True, False or 'always', got {advise!r}")
    kw, limit = simulate_kwargs(
        dict(memory=memory, workload=workload, link=link, policy=policy, tracker=tracker, vcpus=vcpus,
             page_size=page_size, huge_pages=huge_pages, zero_pages=zero_pages, devices=devices, seed=seed,
             verify=verify, pages=pages, costs=costs, on_round=on_round, faults=faults, give_up_after=give_up_after),
        settings)
    m = Migration(**kw)
    given_up = limit
    report = m.run(give_up_after=limit, progress=progress)
    if advise == "always" or (advise and not (report.status == "completed" and report.converged)):
        import dataclasses

        from .advice import advise as _advise

        same = {k: v for k, v in kw.items() if k not in ("verify", "on_round")}
        adv = _advise(**same, give_up_after=given_up, report=report)
        report = dataclasses.replace(report, advice=adv)
    return report


class _SigintDeferred:
    """Within ``with``: SIGINT sets ``fired`` instead of raising (main thread, default handler only)."""

    def __init__(self) -> None:
        self.fired = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.fired:  # a second Ctrl-C while the first is pending: raise at once
            raise KeyboardInterrupt
        self.fired = True

    def __enter__(self) -> "_SigintDeferred":
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
