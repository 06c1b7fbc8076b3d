"""What a pre-copy migration does after a sync: the policy's decision, in one place.

:class:`SyncPolicy` holds a :class:`~dirtylog.policy.PreCopy` (and the
:class:`~dirtylog.policy.PostCopy` around it, if any) and the early verdict's
history. :class:`~dirtylog.migration.Migration` hands it a :class:`SyncState`
after each sync of the live phase (QEMU's ``migration_iteration_run``) and
carries out the :class:`Decision` it returns:

- ``switchover``: what is pending (RAM only, as QEMU counts it) is below the
  threshold (measured bandwidth x downtime limit), or fewer than ``min_dirty_pages``;
- ``postcopy``: a post-copy policy's ``after_rounds`` are done;
- ``rollback``: the early verdict (``stop_when_stalled``): this migration can never
  converge under QEMU's rules;
- ``limit``: a user limit (iterations, bytes sent, timeout) is reached; what happens
  then is :meth:`SyncPolicy.at_limit`'s decision (``on_limit``);
- ``continue``: keep sending from where the scan stands.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import List, Optional

from .policy import PostCopy, PreCopy
from .units import format_dirty_rate, format_size, format_time

__all__ = ["Action", "Decision", "SyncState", "ProbeState", "SyncPolicy"]

#: How both early verdicts end their reason (the command line shows the option in its own words).
NEVER_CONVERGES = ("Under QEMU's rules this migration never converges; QEMU itself would keep iterating until "
                   "cancelled (PreCopy(stop_when_stalled=False) simulates that)")
#: The in-round verdict's statistical margin: the distinct pages counted in one window, less this
#: many standard deviations (the number of distinct pages among i.i.d. writes has a variance below
#: its mean: page indicators are negatively associated), stand for their expectation.
SIGMAS = 5.0
#: ... and it judges no window with fewer distinct pages than this.
MIN_DIRTIED = 1000
#: The in-round verdict's first probe, in seconds after a round's sync; the next ones at twice the
#: window of the one before (1, 2, 4, ... s), so a round of any length is judged a few times only.
PROBE_FIRST = 0.5
#: The in-round verdict tries future rounds at least window / k long, for these k (see outrun()).
ROUND_SPLITS = (1, 2, 4, 8, 16, 32)
#: The stall verdict (over syncs, see SyncPolicy._stalled) keeps the pending bytes of at most this many
#: times ``stall_syncs`` syncs since conditions last changed ...
STALL_HISTORY = 40
#: ... gives no verdict while its fitted line, tilted down by this many standard errors of the slope,
#: would reach the threshold within this many times as many syncs as it fits ...
STALL_HORIZON = 20
#: (the standard errors of the slope the line is tilted down by, above)
STALL_SIGMAS = 6.0
#: ... nor while the line's level is within this many standard deviations of the pending's scatter
#: about it of the threshold ... Near the threshold the pending set can hold level for tens of syncs
#: and then wander or drift below it, more slowly than the scatter about a line through the later
#: syncs shows: a randomized search found QEMU's loop converging after levels 6.0-9.9 such standard
#: deviations (1.10-1.97x the threshold) above it. A margin in the threshold's units alone would not
#: do: one such run converged from 1.5x, and a hopeless one holds at 1.22x with a scatter of 0.3 %.
STALL_LEVEL_SIGMAS = 15.0
#: ... nor while it is within this share of the threshold (a scatter too small to judge by).
STALL_MARGIN = 0.1


class Action(str, enum.Enum):
    """What the migration does next (compares equal to its string value)."""

    CONTINUE = "continue"
    SWITCHOVER = "switchover"  # stop and copy
    POSTCOPY = "postcopy"      # pause, then the destination runs the guest
    ROLLBACK = "rollback"      # stop logging, the source keeps running
    LIMIT = "limit"            # a user limit: see SyncPolicy.at_limit

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    #: for a switch-over: whether it is a converged one (False: forced by a limit)
    converged: bool = False


@dataclass(frozen=True)
class SyncState:
    """What the policy sees at a sync of the live phase."""

    pending_pages: int       # dirty pages in the migration bitmap after the sync
    page_size: int
    threshold: float         # bytes: measured bandwidth (or switchover_bandwidth) x downtime limit
    round_index: int         # the round that the sync ended (0: the first pass)
    sent_precopy: int        # bytes sent so far
    memory: int              # guest memory in bytes
    clock: float             # simulated seconds
    throttle_can_step: bool  # a throttle (auto-converge, dirty-limit) may still slow the guest more
    faults_pending: bool     # a fault or bandwidth change is still to come
    stationary: bool         # the workload's dirty rate does not change over time

    @property
    def pending(self) -> int:
        return self.pending_pages * self.page_size


@dataclass(frozen=True)
class ProbeState:
    """What the policy sees at a probe inside a round of the live phase (the in-round verdict).

    The figures of the window from the round's sync to the probe: the guest's writes counted in
    ``dirtied`` may lag the clock by an iteration (the engine runs the guest once per segment)."""

    dirtied: Optional[int]     # distinct pages written since the round's sync, or a lower bound (None: unknown)
    window: float              # wall seconds since the round's sync
    guest_time: float          # guest seconds that the writes counted in `dirtied` span
    applied: float             # wall seconds that they span (at most `window`)
    lost: float                # guest seconds per vCPU lost to their tracking exits
    throttle: float            # the guest's throttle now (0 .. 1)
    writes: int                # the guest's writes over `guest_time`
    loss_per_write: float      # guest seconds per vCPU one write can cost in tracking exits, at most
    kick_rate: float           # guest seconds per vCPU per wall second the syncs' kicks can cost, at most
    loss_once: float           # guest seconds per vCPU still to lose once at most (huge blocks to split)
    segment: float             # wall seconds of guest time one charge of exits covers, at most
    page_size: int
    page_bytes: int            # bytes on the wire per page the guest has written (page + header)
    send_bandwidth: float      # bytes/s: the most the live phase sends
    threshold_bandwidth: float  # bytes/s: the most QEMU's threshold can use (a window's measured bandwidth,
    #                             or switchover_bandwidth)
    burst: float               # s: over any span the link sends at most send_bandwidth x (span + burst)
    round_index: int
    iid_writes: bool           # the workload's writes are i.i.d. in time (Workload.iid_writes)
    throttle_can_step: bool    # a throttle may still change (auto-converge below its maximum, dirty-limit)
    faults_pending: bool
    stationary: bool
    sync_loss: float = 0.0     # guest seconds per vCPU each sync charges (its kicks: PML and ring mode), outside `lost`
    debt: float = 0.0          # guest seconds per vCPU the engine owes now (exits charged, not yet paid)
    send_slack: float = 0.0    # bytes/s the live phase may send above send_bandwidth (under a rate limit,
    #                            the page that crosses each window's budget)


class SyncPolicy:
    """Decides at each sync of the live phase (see the module's docstring)."""

    def __init__(self, precopy: PreCopy, postcopy: Optional[PostCopy] = None) -> None:
        self.precopy = precopy
        self.postcopy = postcopy
        #: pending bytes at each sync since conditions last changed (the early verdict's history)
        self.history: List[int] = []

    def conditions_changed(self) -> None:
        """A throttle stepped, the bandwidth changed...: the early verdict starts its history again."""
        self.history.clear()

    def decide(self, s: SyncState) -> Decision:
        p = self.precopy
        pending, threshold = s.pending, s.threshold
        stalled = self._stalled(s) if pending >= threshold and s.pending_pages else None
        if s.pending_pages == 0 or pending < threshold:
            return Decision(Action.SWITCHOVER, f"converged: {format_size(pending)} pending < threshold "
                                               f"{format_size(threshold)} (bandwidth x downtime limit)", True)
        if s.pending_pages < p.min_dirty_pages:
            return Decision(Action.SWITCHOVER, f"converged: {s.pending_pages} dirty pages < {p.min_dirty_pages}",
                            True)
        if self.postcopy is not None and p.on_limit != "postcopy" and s.round_index + 1 >= self.postcopy.after_rounds:
            return Decision(Action.POSTCOPY, f"switched to post-copy after {s.round_index + 1} pre-copy round(s)")
        if stalled is not None:
            return Decision(Action.ROLLBACK, stalled)
        if p.max_iterations is not None and s.round_index >= p.max_iterations:
            return Decision(Action.LIMIT, f"iteration limit reached ({p.max_iterations} rounds after round 0)")
        if p.max_total_factor is not None and s.sent_precopy > p.max_total_factor * s.memory:
            return Decision(Action.LIMIT, f"sent {s.sent_precopy / s.memory:.2f}x memory "
                                          f"(limit {p.max_total_factor:g}x)")
        if p.timeout is not None and s.clock >= p.timeout:
            return Decision(Action.LIMIT, f"timeout of {format_time(p.timeout)} reached")
        return Decision(Action.CONTINUE)

    def at_limit(self, reason: str) -> Decision:
        """What ``on_limit`` makes of a limit reached without convergence."""
        on = self.precopy.on_limit
        if on == "abort":
            return Decision(Action.ROLLBACK, f"{reason}; rolled back (on_limit='abort')")
        if on == "postcopy":
            return Decision(Action.POSTCOPY, f"{reason}; switched to post-copy (on_limit='postcopy')")
        return Decision(Action.SWITCHOVER, f"{reason}; forced stop-and-copy (on_limit='force')", False)

    def _verdict_allowed(self, throttle_can_step: bool, faults_pending: bool, stationary: bool) -> bool:
        """The conditions of both early verdicts (at a sync and within a round): on, no post-copy to
        come, nothing that changes the rates still to come, no limit with its own action."""
        p = self.precopy
        if not p.stop_when_stalled or self.postcopy is not None or faults_pending:
            return False
        if p.on_limit != "abort" and (p.timeout is not None or p.max_iterations is not None
                                      or p.max_total_factor is not None):
            return False  # a limit with its own action will end it
        return stationary and not throttle_can_step

    def _stalled(self, s: SyncState) -> Optional[str]:
        """The early verdict (``PreCopy.stop_when_stalled``): the reason if the migration can never converge.

        It reads the pending bytes of the syncs since conditions last changed (at most STALL_HISTORY x
        ``stall_syncs`` of them) and fits a least-squares line to the later half (at least 2 x ``stall_syncs``
        syncs: the fall of the first passes stays out). No verdict while the line, tilted down by
        STALL_SIGMAS standard errors of its slope, reaches the threshold within STALL_HORIZON times as many
        syncs as it fits (a slow drift down, or one the sync-to-sync noise may hide), nor while the line's
        level at the last sync is within STALL_LEVEL_SIGMAS standard deviations of the pending's scatter about
        the line, or STALL_MARGIN (10 %), of the threshold (a fluctuation, or a wander slower than the scatter
        shows, may still get below it)."""
        p = self.precopy
        threshold = s.threshold
        hist = self.history
        hist.append(int(s.pending))
        k = p.stall_syncs
        if len(hist) > STALL_HISTORY * k:
            del hist[: -STALL_HISTORY * k]  # memory stays bounded
        if not self._verdict_allowed(s.throttle_can_step, s.faults_pending, s.stationary):
            return None
        if threshold <= 0:
            return None  # no window has closed yet: nothing measured to judge against (QEMU's threshold is 0)
        if len(hist) < 2 * k:
            return None
        ys = hist[-max(2 * k, len(hist) // 2):]
        m = len(ys)
        x_mean, y_mean = (m - 1) / 2.0, sum(ys) / m
        sxx = m * (m * m - 1) / 12.0
        slope = sum((i - x_mean) * (y - y_mean) for i, y in enumerate(ys)) / sxx
        level = y_mean + slope * (m - 1 - x_mean)  # the line at the last sync
        scatter = math.sqrt(sum((y - y_mean - slope * (i - x_mean)) ** 2 for i, y in enumerate(ys)) / (m - 2))
        fall = -slope + STALL_SIGMAS * scatter / math.sqrt(sxx)  # the fastest fall per sync the fit allows
        gap = level - threshold
        if gap <= STALL_HORIZON * m * fall:
            return None  # it may still be drifting down: at this pace it may reach the threshold
        if gap <= max(STALL_LEVEL_SIGMAS * scatter, STALL_MARGIN * threshold):
            return None  # close to the threshold: a fluctuation or a slow wander may still get below it
        steady = level
        return (f"does not converge: pending holds steady at {format_size(steady)} (RAM, "
                f"least-squares level of the last {m} syncs) against a threshold of {format_size(threshold)} "
                f"(bandwidth x downtime limit): {format_size(steady - threshold)} too much, "
                f"{steady / threshold if threshold > 0 else math.inf:.1f}x the threshold. {NEVER_CONVERGES}")

    def may_outrun(self, iid_writes: bool, counted: bool) -> bool:
        """Whether the in-round verdict can ever be given (what does not change during a migration):
        the conditions of both verdicts, QEMU's stop rule, no XBZRLE (a delta is smaller than a
        page), writes i.i.d. in time (``Workload.iid_writes``) and a tracker that counts the pages
        written since a sync (``Tracker.counts_since_harvest``). The migration sets no probe
        otherwise."""
        p = self.precopy
        return (p.stop == "qemu" and not p.xbzrle and iid_writes and counted
                and self._verdict_allowed(throttle_can_step=False, faults_pending=False, stationary=True))

    def outrun(self, s: ProbeState) -> Optional[str]:
        """The in-round early verdict (``PreCopy.stop_when_stalled``): the reason if the guest dirties
        distinct pages so much faster than the link sends them that no sync can ever find less than
        the threshold pending, judged from the window since the round's sync.

        The argument. (1) At a sync (a tracker whose log restarts at each harvest, or not: only the
        count needs it) the migration bitmap holds every page whose newest content the destination
        lacks; so what is pending at a sync at time t is at least the distinct pages written in
        (t - W, t] less the pages sent in it, ``D - (send_bandwidth + send_slack) (W + burst) / page_bytes`` (a
        page written is no longer a zero page and, without XBZRLE, goes whole). (2) With i.i.d.
        writes the expectation of D depends only on the window's guest time, increasing and
        concave: a later window of the same wall length W = ``window`` with at least as much guest
        time dirties at least ``dirtied`` pages in expectation, one with less at least that share of
        them (``kappa``). Its guest time is ``(1 - throttle) W`` less its tracking exits, which
        follow the pages first written after each sync: at most k + 1 times those of a fresh window
        of W (the measured ones, scaled to W) when it spans at most k + 1 rounds, plus what each of
        those k + 1 syncs charges the guest (``sync_loss``: the kicks of PML and ring mode). (3) The count of
        one window is random: SIGMAS standard deviations (at most its square root) are taken off.
        (4) If the floor of (1)-(3) exceeds twice the threshold plus what the link sends in W / k
        (a round ends once the pending set, less at most one threshold of leftovers that may be zero
        pages, has been sent down to the threshold), the next round lasts at least W / k, and by
        induction every later one: no sync ever finds less than the threshold, nor fewer than
        ``min_dirty_pages``. Tried for k in ROUND_SPLITS (the tracking exits grow with k, the
        rounds' least length falls): form (B) in the code.

        Form (A), tried first, needs no length of rounds and so only a floor above the threshold:
        (1) holds at every sync whatever the syncs before it, and a later window's guest time is
        bounded from what tracking can take whatever their number: at most ``loss_per_write`` per
        write (the window's own writes, at the measured writes per guest second), ``kick_rate`` per
        wall second (no more than one sync's kicks per ``sync`` time), ``loss_once`` (huge blocks
        still to split), and the debt owed at the window's start: what the engine owes now (``debt``:
        exits already charged, a split storm's for instance, are paid later) plus one segment's charge of
        those, as long as a write's exits take less guest time than it spans.

        Ring mode's wait for its kicks (:func:`dirtylog.throttle.kick_wait`: a vCPU asleep under a
        throttle serves the sync's run_on_cpu only when its sleep ends) is in none of these bounds, and
        need not be: it is the migration thread's time, not the guest's (the sleep is the throttle's,
        already out of ``run``; the kick itself is in ``sync_loss`` and ``kick_rate``), so it only
        lengthens a sync (fewer syncs, and kicks, per wall second than ``kick_rate`` assumes) and the
        rounds, and holds sends back (fewer pages sent than ``sent``): each bound stays a bound."""
        if s.dirtied is None or not self.may_outrun(s.iid_writes, True):
            return None
        if not self._verdict_allowed(s.throttle_can_step, s.faults_pending, s.stationary):
            return None
        p = self.precopy
        d, run = s.dirtied, 1.0 - s.throttle
        if d < MIN_DIRTIED or not (s.window > 0 and s.guest_time > 0 and s.applied > 0 and run > 0):
            return None
        d_low = d - SIGMAS * math.sqrt(d)
        send_bw = s.send_bandwidth + s.send_slack
        sent = send_bw * (s.window + s.burst) / s.page_bytes  # the most pages sent in any window
        threshold = s.threshold_bandwidth * p.downtime_limit
        thr_pages = threshold / s.page_size
        need = max(thr_pages, float(p.min_dirty_pages))
        # (A) whatever the syncs: a later window's guest time from the most tracking can take per write
        # (while exits take less guest time than they leave, the debt owed at the window's start is at most
        # one segment's charge, a kick and what is charged once)
        w = s.writes / s.guest_time
        debt = s.debt + s.loss_per_write * w * run * s.segment + s.kick_rate * s.segment + s.loss_once
        later = (run * s.window - debt - s.kick_rate * s.window - s.loss_once) / (1.0 + s.loss_per_write * w)
        if s.loss_per_write * w < 1.0 and later > 0:
            floor = min(1.0, later / s.guest_time) * d_low - sent
            if floor > need:
                return self._outrun_reason(s, floor * s.page_size, threshold)
        # (B) rounds at least window / k long: a later window's exits are at most k + 1 times those of a fresh
        # one, which fall as it goes on (they follow the pages first written in it): scaled from the measured
        fresh_loss = s.lost * max(1.0, s.window / s.applied)
        for k in ROUND_SPLITS:
            later = run * s.window - (k + 1) * (fresh_loss + s.sync_loss)  # guest time of a later window, at least
            if later <= 0:
                break
            floor = min(1.0, later / s.guest_time) * d_low - sent
            if floor > max(need, 2 * thr_pages + send_bw * (s.window / k + s.burst) / s.page_bytes):
                return self._outrun_reason(s, floor * s.page_size, threshold)
        return None

    def _outrun_reason(self, s: ProbeState, floor: float, threshold: float) -> str:
        assert s.dirtied is not None
        rate = s.dirtied * s.page_size / s.window
        where = "round 0 (the first pass)" if s.round_index == 0 else f"round {s.round_index}"
        return (f"does not converge: in the first {format_time(s.window)} of {where} the guest dirtied "
                f"{s.dirtied:,} distinct pages ({format_dirty_rate(rate)}), {rate / s.send_bandwidth:.1f}x what the "
                f"link sends ({format_size(s.send_bandwidth)}/s). With a stationary workload every later sync "
                f"would find at least {format_size(floor)} pending, against a threshold of at most "
                f"{format_size(threshold)} (bandwidth x downtime limit). {NEVER_CONVERGES}")
