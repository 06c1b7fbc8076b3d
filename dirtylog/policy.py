"""Migration policies: when pre-copy stops, and what happens at a limit.

:class:`PreCopy` follows QEMU: iterate until the pending dirty bytes (plus the
device state) fit in ``bandwidth x downtime_limit``, then stop and copy. QEMU has
no iteration cap; Xen's rule (29 iterations, 3x memory sent, or fewer than 50
dirty pages) is available as ``stop="xen"``, and every limit can be set by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from ._validate import as_int
from .errors import ConfigError
from .link import check_bandwidth
from .workloads import check_read_share
from .engine import WINDOW
from .units import (FractionLike, PercentLike, format_size, format_time, parse_fraction, parse_percent, parse_rate,
                    parse_size, parse_time)

__all__ = ["PreCopy", "PostCopy", "STOP_RULES", "ON_LIMIT"]

STOP_RULES = ("qemu", "xen")
ON_LIMIT = ("force", "abort")

TimeLike = Union[float, int, str]

#: Largest send chunk and clear chunk (a chunk larger than memory is memory).
MAX_CHUNK_SIZE = 1 << 40
#: Largest XBZRLE cache (a cache larger than memory holds every page anyway).
MAX_XBZRLE_CACHE = 1 << 50
#: Largest post-copy channel backlog (socket buffers are megabytes).
MAX_CHANNEL_BACKLOG = 1 << 40


def _bounded_size(x: Any, name: str, maximum: int) -> int:
    size = int(parse_size(x, name=name, allow_zero=False))
    if size > maximum:
        raise ConfigError(f"{name} must be at most {format_size(maximum)}, got {x!r} ({format_size(size)})")
    return size


#: QEMU's ranges of the percent parameters (migrate_params_check), in percent: the trigger threshold
#: 1..100, the throttle's steps and cap 1..99. A number is a number of percent (20 is 20 %, as QEMU's
#: cpu-throttle-initial=20); a string may carry the sign ("20%"): :func:`dirtylog.units.parse_percent`.
PERCENT_RANGES: Dict[str, Tuple[int, int]] = {
    "throttle_trigger_threshold": (1, 100), "cpu_throttle_initial": (1, 99), "cpu_throttle_increment": (1, 99),
    "max_cpu_throttle": (1, 99)}


@dataclass(frozen=True, init=False)
class PreCopy:
    """Pre-copy live migration: rounds of dirty pages, then stop-and-copy.

    Parameters
    ----------
    downtime_limit:
        The longest acceptable pause (QEMU's downtime-limit, default 300 ms). The
        switch-over happens when ``pending dirty bytes + device state <=
        bandwidth x downtime_limit``.
    stop:
        ``"qemu"`` (default): no iteration cap; ``"xen"``: at most 29 live iterations
        (the full pass and 28 more, as xc_domain_save's DEF_MAX_ITERS), no more than
        3x memory sent, or stop (successfully) below 50 dirty pages, and
        ``on_limit="force"`` as Xen does.
    max_iterations, max_total_factor, min_dirty_pages, timeout:
        User limits (override the rule's): the number of pre-copy rounds after
        round 0, total bytes sent as a multiple of memory, a dirty-page count under
        which the switch-over happens regardless of the threshold, and the longest
        total migration time (``inf`` is no timeout, as None).
    on_limit:
        What to do when a limit is hit without convergence: ``"force"`` stops and
        copies now (with the long downtime that implies), ``"abort"`` rolls back
        (logging stops, the source keeps running, status "failed").
    resume_time:
        Time for the destination to resume the guest, added to the downtime.
    chunk_size:
        Bytes per send chunk (QEMU's multifd packet is 512 KiB); writes interleave
        with sending at this granularity.
    clear_chunk:
        Manual-protect (tracker "clear") chunk cleared right before its first page
        is sent (QEMU: 1 GiB).
    auto_converge:
        QEMU's auto-converge: at each sync at least 1 s after the last measured one,
        if the bytes dirtied in the period exceed ``throttle_trigger_threshold`` % of
        the bytes sent in it, twice, throttle the vCPUs: ``cpu_throttle_initial`` %
        first, then ``+cpu_throttle_increment`` % each time, at most
        ``max_cpu_throttle`` %. With ``cpu_throttle_tailslow`` the later steps are
        sized by the ratio of the dirty rate to the threshold (smaller near the end).
        A throttled guest runs (100 - throttle) % of the time. The four percentages are
        numbers of percent, as QEMU takes them: ``20``, ``"20"`` and ``"20%"`` are all
        20 % (``0.2`` is refused, not read as 20 %); their ranges are
        :data:`PERCENT_RANGES`, QEMU's.
    dirty_limit, vcpu_dirty_limit, dirty_limit_period:
        QEMU's dirty-limit (instead of auto-converge, which it excludes): when the
        same trigger fires, each vCPU's dirty page rate, read from its dirty ring
        every ``dirty_limit_period`` (1 s), is brought to ``vcpu_dirty_limit`` (QEMU's
        default 1 "MB/s", which QEMU's dirty-rate code counts in MiB: ``"1MiB/s"``)
        by throttling that vCPU alone, in QEMU's steps, until it is within 25 MiB/s of
        it (QEMU's tolerance: a vCPU that dirties less than the quota + 25 MiB/s is
        left alone). Needs ``tracker="ring"``.
    xbzrle, xbzrle_cache_size, xbzrle_ratio:
        XBZRLE delta compression of re-sent pages (a model): from round 1 on, each
        page sent is looked up in a direct-mapped cache of ``xbzrle_cache_size``
        (QEMU's default 64 MiB); a hit is sent as a delta whose size is exponential
        with mean ``xbzrle_ratio`` of a page (a share: 0.25 or "25%", the default: deltas of re-dirtied
        pages are typically a few times smaller than the page; measure yours), a
        delta larger than a page overflows and the page goes whole, a miss sends the
        page whole and caches it unless its slot holds another page cached or hit
        within the last 2 syncs, which QEMU keeps (``CACHED_PAGE_LIFETIME``). The
        first pass does not use it: XBZRLE starts when the scan wraps, as in QEMU.
    multifd_channels, channel_bandwidth:
        What one sending thread can push caps the link: the effective bandwidth is
        ``min(link bandwidth, max(1, multifd_channels) x channel_bandwidth)``
        (``channel_bandwidth`` None: no cap). Multifd sends 512 KiB packets over its
        channels; the default ``chunk_size`` is that packet.
    max_bandwidth:
        QEMU's ``max-bandwidth``: a cap (bytes/s or ``"32MiB/s"``) on the live phase
        only; the wire itself runs at the :class:`Link`'s speed. None (the default):
        no cap, which is what libvirt sets unless ``virsh migrate --bandwidth`` is
        given (QEMU's own default is 128 MiB/s). QEMU lifts the cap when it pauses
        the guest, so the stop-and-copy runs at link speed, and so does post-copy's
        page traffic unless ``max_postcopy_bandwidth`` is given.
    max_postcopy_bandwidth:
        QEMU's ``max-postcopy-bandwidth``: a cap on post-copy's page traffic (None:
        link speed).
    switchover_bandwidth:
        QEMU's ``avail-switchover-bandwidth`` (8.2+): when set, it replaces the
        measured bandwidth in the threshold and in the expected downtime.
    rate_window:
        How long QEMU's rate-limit windows really last (default 100 ms, its
        ``BUFFER_DELAY``; 100 ms to 10 s: a window never ends early). The live phase may send ``max_bandwidth`` x 100 ms per
        window whatever this is; a migration thread that wakes late on a busy host
        stretches the windows, so QEMU then delivers less than ``max_bandwidth``
        and measures (and sets its threshold from) what it delivered. To reproduce
        a host whose ``query-migrate`` shows ``mbps`` below the cap, set it to
        100 ms x cap / delivered rate (the recorded QEMU runs: 100-113 ms).
    stop_when_stalled:
        The early "never converges" verdicts (default on). Both need a stationary
        workload, no throttle still able to step (auto-converge below its maximum,
        dirty-limit), no pending fault or bandwidth change, no post-copy policy and
        no limit whose ``on_limit`` is "force" or "postcopy"; the migration then
        stops with status "failed" and a reason giving the figures. QEMU itself
        would keep iterating until cancelled: ``stop_when_stalled=False``
        reproduces that (up to ``timeout`` or ``give_up_after``).

        *Within a round* (from the distinct pages dirtied since the round's sync,
        probed 0.5, 1, 2, 4 ... s after it, so usually during round 0): when the
        guest dirties distinct pages so much faster than the link sends them that
        the pages written in any window of that length, less all the link could
        send in it, exceed twice the threshold with room to spare, no sync can
        ever find less than the threshold pending. Sound for workloads whose
        writes are i.i.d. in time (``Workload.iid_writes``: Uniform, Hotspot,
        Zipf, DirtyCurve, DirtyRate, one-phase WorkingSet, Mixes of these), with
        QEMU's stop rule, no XBZRLE and a tracker that counts the pages written
        since a sync (not ``clear`` mode); margins cover the randomness of one
        window (5 standard deviations) and the tracking exits' share of guest
        time (see :meth:`dirtylog.decision.SyncPolicy.outrun`).

        *Over syncs* (the fallback near the boundary, and for sweeps, clear mode
        and the rest): a least-squares line through the pending bytes of the later
        half of the syncs since conditions last changed (at least 2 x
        ``stall_syncs``) no longer falls: even tilted down by 6 standard errors of
        its slope it would need more than 20 times as many syncs as it fits to reach
        the threshold, and its level exceeds the threshold by more than 15 standard
        deviations of the pending's scatter about it and 10 % (a fluctuation, or a
        wander slower than that scatter shows, could not get below it). See
        :meth:`dirtylog.decision.SyncPolicy._stalled`.
    stall_syncs:
        The least number of syncs the verdict over syncs fits is twice this
        (default 5).
    """

    downtime_limit: float
    stop: str
    max_iterations: Optional[int]
    max_total_factor: Optional[float]
    min_dirty_pages: int
    timeout: Optional[float]
    on_limit: str
    resume_time: float
    chunk_size: int
    clear_chunk: int
    auto_converge: bool
    throttle_trigger_threshold: int
    cpu_throttle_initial: int
    cpu_throttle_increment: int
    max_cpu_throttle: int
    cpu_throttle_tailslow: bool
    dirty_limit: bool
    vcpu_dirty_limit: float
    dirty_limit_period: float
    xbzrle: bool
    xbzrle_cache_size: int
    xbzrle_ratio: float
    multifd_channels: int
    channel_bandwidth: Optional[float]
    max_bandwidth: Optional[float]
    max_postcopy_bandwidth: Optional[float]
    switchover_bandwidth: Optional[float]
    rate_window: float
    stop_when_stalled: bool
    stall_syncs: int

    def __init__(
        self,
        downtime_limit: TimeLike = "300ms",
        stop: str = "qemu",
        max_iterations: Optional[int] = None,
        max_total_factor: Optional[float] = None,
        min_dirty_pages: Optional[int] = None,
        timeout: Optional[TimeLike] = None,
        on_limit: Optional[str] = None,
        resume_time: TimeLike = 0.0,
        chunk_size: Union[int, str] = "512KiB",
        clear_chunk: Union[int, str] = "1GiB",
        auto_converge: bool = False,
        throttle_trigger_threshold: PercentLike = 50,
        cpu_throttle_initial: PercentLike = 20,
        cpu_throttle_increment: PercentLike = 10,
        max_cpu_throttle: PercentLike = 99,
        cpu_throttle_tailslow: bool = False,
        dirty_limit: bool = False,
        vcpu_dirty_limit: Union[float, str] = "1MiB/s",
        dirty_limit_period: TimeLike = "1s",
        xbzrle: bool = False,
        xbzrle_cache_size: Union[int, str] = "64MiB",
        xbzrle_ratio: FractionLike = 0.25,
        multifd_channels: int = 0,
        channel_bandwidth: Optional[Union[float, str]] = None,
        max_bandwidth: Optional[Union[float, str]] = None,
        max_postcopy_bandwidth: Optional[Union[float, str]] = None,
        switchover_bandwidth: Optional[Union[float, str]] = None,
        rate_window: TimeLike = "100ms",
        stop_when_stalled: bool = True,
        stall_syncs: int = 5,
    ) -> None:
        if not isinstance(stop, str) or stop.lower() not in STOP_RULES:
            raise ConfigError(f"unknown stop rule {stop!r}; allowed: {', '.join(STOP_RULES)}")
        stop = stop.lower()
        if stop == "xen":
            # Xen's DEF_MAX_ITERS 29 counts the full pass as iteration 1: 28 rounds after round 0
            max_iterations = 28 if max_iterations is None else max_iterations
            max_total_factor = 3.0 if max_total_factor is None else max_total_factor
            min_dirty_pages = 50 if min_dirty_pages is None else min_dirty_pages
            on_limit = "force" if on_limit is None else on_limit
        on_limit = "force" if on_limit is None else on_limit
        if not isinstance(on_limit, str) or on_limit.lower() not in ON_LIMIT + ("postcopy",):
            raise ConfigError(f"unknown on_limit {on_limit!r}; allowed: force, abort, postcopy")
        s = object.__setattr__
        s(self, "downtime_limit", parse_time(downtime_limit, name="downtime_limit"))
        s(self, "stop", stop)
        s(self, "max_iterations", None if max_iterations is None
          else as_int("max_iterations", max_iterations, minimum=0))
        if max_total_factor is not None:
            try:
                f = float(max_total_factor)
            except (TypeError, ValueError):
                raise TypeError(f"max_total_factor must be a number, got {max_total_factor!r}") from None
            if not (f >= 1.0) or math.isinf(f):
                raise ConfigError(f"max_total_factor must be a finite number >= 1 (memory is sent once at least), got {f}")
            max_total_factor = f
        s(self, "max_total_factor", max_total_factor)
        s(self, "min_dirty_pages", 0 if min_dirty_pages is None else as_int("min_dirty_pages", min_dirty_pages, minimum=0))
        t = None if timeout is None else parse_time(timeout, name="timeout", allow_zero=False, allow_inf=True)
        s(self, "timeout", t if t is not None and math.isfinite(t) else None)  # inf: no timeout, as None
        s(self, "on_limit", on_limit.lower())
        s(self, "resume_time", parse_time(resume_time, name="resume_time"))
        s(self, "chunk_size", _bounded_size(chunk_size, "chunk_size", MAX_CHUNK_SIZE))
        s(self, "clear_chunk", _bounded_size(clear_chunk, "clear_chunk", MAX_CHUNK_SIZE))
        for flag, val in (("auto_converge", auto_converge), ("cpu_throttle_tailslow", cpu_throttle_tailslow),
                          ("dirty_limit", dirty_limit), ("xbzrle", xbzrle),
                          ("stop_when_stalled", stop_when_stalled)):
            if not isinstance(val, bool):
                raise TypeError(f"{flag} must be a bool, got {val!r}")
            s(self, flag, val)
        for pname, pval in (("throttle_trigger_threshold", throttle_trigger_threshold),
                            ("cpu_throttle_initial", cpu_throttle_initial),
                            ("cpu_throttle_increment", cpu_throttle_increment), ("max_cpu_throttle", max_cpu_throttle)):
            lo, hi = PERCENT_RANGES[pname]
            s(self, pname, parse_percent(pval, name=pname, minimum=lo, maximum=hi))
        if auto_converge and dirty_limit:
            raise ConfigError("auto_converge and dirty_limit exclude each other (as in QEMU): choose one")
        s(self, "vcpu_dirty_limit", parse_rate(vcpu_dirty_limit, name="vcpu_dirty_limit", allow_zero=False))
        s(self, "dirty_limit_period", parse_time(dirty_limit_period, name="dirty_limit_period", allow_zero=False))
        s(self, "xbzrle_cache_size", _bounded_size(xbzrle_cache_size, "xbzrle_cache_size", MAX_XBZRLE_CACHE))
        ratio = parse_fraction(xbzrle_ratio, name="xbzrle_ratio", allow_zero=False)  # a delta's mean share of a page
        s(self, "xbzrle_ratio", ratio)
        s(self, "multifd_channels", as_int("multifd_channels", multifd_channels, minimum=0, maximum=256))
        s(self, "channel_bandwidth", None if channel_bandwidth is None
          else check_bandwidth(channel_bandwidth, "channel_bandwidth"))
        rates: Dict[str, Optional[Union[float, str]]] = {
            "max_bandwidth": max_bandwidth, "max_postcopy_bandwidth": max_postcopy_bandwidth,
            "switchover_bandwidth": switchover_bandwidth}
        for rname, rval in rates.items():
            s(self, rname, None if rval is None else check_bandwidth(rval, rname))
        s(self, "rate_window", parse_time(rate_window, name="rate_window", allow_zero=False))
        if not WINDOW * (1 - 1e-9) <= self.rate_window <= 10.0:  # a shorter window would beat max_bandwidth
            raise ConfigError(f"rate_window must be between {format_time(WINDOW)} and 10 s (QEMU's windows are "
                              f"{format_time(WINDOW)}; a late thread stretches them by milliseconds, it never "
                              f"shortens them), got {rate_window!r}")
        s(self, "stall_syncs", as_int("stall_syncs", stall_syncs, minimum=2, maximum=10_000))

    def effective_bandwidth(self, link_bandwidth: float) -> float:
        """The link's bandwidth as the sending threads can use it (see ``channel_bandwidth``):
        the rate of the stop-and-copy, which QEMU runs without a rate limit."""
        if self.channel_bandwidth is None:
            return link_bandwidth
        return min(link_bandwidth, max(1, self.multifd_channels) * self.channel_bandwidth)

    def live_bandwidth(self, link_bandwidth: float) -> float:
        """The rate of the live phase: the effective bandwidth capped by ``max_bandwidth``."""
        bw = self.effective_bandwidth(link_bandwidth)
        return bw if self.max_bandwidth is None else min(bw, self.max_bandwidth)

    def postcopy_bandwidth(self, link_bandwidth: float) -> float:
        """The rate of post-copy's page traffic: the effective bandwidth capped by ``max_postcopy_bandwidth``."""
        bw = self.effective_bandwidth(link_bandwidth)
        return bw if self.max_postcopy_bandwidth is None else min(bw, self.max_postcopy_bandwidth)

    def to_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, init=False)
class PostCopy:
    """Post-copy live migration: a few pre-copy rounds, then the destination runs the guest.

    Parameters
    ----------
    after_rounds:
        Pre-copy rounds to run first (round 0, the full pass, counts as one; QEMU
        users typically switch after it). If pre-copy converges before, the
        migration completes as a pre-copy one.
    precopy:
        The :class:`PreCopy` settings of those rounds (downtime limit, limits,
        chunk size, auto-converge ...). Its ``on_limit`` applies as usual.
    read_share:
        Share of the guest's memory accesses that are reads (0.6 or "60%"). None (the default):
        the workload's own (``Workload.with_read_share``), else 2/3 (two reads per
        write, a common load/store mix). Reads follow the write stream's
        distribution over pages (drawn from the same generator at another point of
        its stream); a read of a page the destination lacks faults like a write.
    prepage:
        Pages after a faulting page sent along with it (0: none).
    channel_backlog:
        Bytes the migration channel holds ahead of a requested page while the
        background push runs (default 12 MiB; at most what the push still has to
        send). QEMU 7.2 without ``postcopy-preempt`` (its default) sends a requested
        page on the one stream, right after what the push has already queued in the
        socket buffers, so each fault waits for that backlog to drain: in the
        recorded QEMU 7.2 runs (Linux 6.18 loopback, 4 MiB send and up to 32 MiB
        receive buffers, host load 12) each fault stalled the vCPU while 11.8-12.9
        MB went by, at push rates of 109-192 MB/s; two runs at load 7, 5.1-6.6 MB.
        It depends on the host's TCP buffers and on how fast the destination drains
        them: measure yours (post-copy time x push rate / postcopy-requests, for a
        guest that faults on nearly every access). 0 models ``postcopy-preempt``
        (QEMU 8.0+), whose requests have a channel of their own.

    At the switch-over the guest pauses while the device state and QEMU's discard
    list (the dirty pages as ranges, 12 per command: a scattered dirty set costs
    about 17 bytes per range) are sent (that is its downtime), then runs on the
    destination: every access to a page it does not hold yet is a remote fault (a request crosses the link, the
    vCPU waits a round trip plus the transfer of the channel's backlog and of the
    page), served ahead of the rest of the background push,
    which sends the remaining pages in page order and goes on after the requested
    page, as QEMU's does (``get_queued_page``). A failure before the last page
    arrives loses the VM: neither side holds all of memory. Simplified: a page the
    push has sent counts as arrived, where QEMU's destination may still fault on
    it (and request it) while it is in the channel.
    """

    after_rounds: int
    precopy: PreCopy
    read_share: Optional[float]
    prepage: int
    channel_backlog: int

    def __init__(self, after_rounds: int = 1, precopy: Optional[PreCopy] = None,
                 read_share: Optional[FractionLike] = None, prepage: int = 0,
                 channel_backlog: Union[int, str] = "12MiB") -> None:
        s = object.__setattr__
        s(self, "after_rounds", as_int("after_rounds", after_rounds, minimum=1))
        if precopy is None:
            precopy = PreCopy()
        if not isinstance(precopy, PreCopy):
            raise TypeError(f"precopy must be a PreCopy, got {type(precopy).__name__}")
        s(self, "precopy", precopy)
        s(self, "read_share", None if read_share is None else check_read_share(read_share))
        s(self, "prepage", as_int("prepage", prepage, minimum=0, maximum=4096))
        backlog = int(parse_size(channel_backlog, name="channel_backlog", allow_zero=True))
        if backlog > MAX_CHANNEL_BACKLOG:
            raise ConfigError(f"channel_backlog must be at most {format_size(MAX_CHANNEL_BACKLOG)}, "
                              f"got {channel_backlog!r} ({format_size(backlog)})")
        s(self, "channel_backlog", backlog)

    def to_dict(self) -> Dict[str, Any]:
        return {"after_rounds": self.after_rounds, "precopy": self.precopy.to_dict(),
                "read_share": self.read_share, "prepage": self.prepage, "channel_backlog": self.channel_backlog}
