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
from .units import format_size, format_time

__all__ = ["Action", "Decision", "SyncState", "SyncPolicy"]


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

    def _stalled(self, s: SyncState) -> Optional[str]:
        """The early verdict (``PreCopy.stop_when_stalled``): the reason if the migration can never converge."""
        p = self.precopy
        threshold = s.threshold
        hist = self.history
        hist.append(int(s.pending))
        if len(hist) > 2 * p.stall_syncs:
            del hist[: -2 * p.stall_syncs]  # the verdict reads the last 2 x stall_syncs: memory stays bounded
        if not p.stop_when_stalled or self.postcopy is not None or s.faults_pending:
            return None
        if p.on_limit != "abort" and (p.timeout is not None or p.max_iterations is not None
                                      or p.max_total_factor is not None):
            return None  # a limit with its own action will end it
        if not s.stationary or s.throttle_can_step:
            return None
        if threshold <= 0:
            return None  # no window has closed yet: nothing measured to judge against (QEMU's threshold is 0)
        k = p.stall_syncs
        if len(hist) < 2 * k:
            return None
        recent, before = sorted(hist[-k:]), sorted(hist[-2 * k:-k])
        steady = recent[k // 2]  # medians: robust to one sync's fluctuation
        gap = recent[0] - threshold
        shrink = max(0, before[k // 2] - steady)
        if gap <= 20 * shrink:
            return None  # still shrinking: at this pace it may reach the threshold within 20 x k syncs
        if gap <= max(4 * (recent[-1] - recent[0]), 0.1 * threshold):
            return None  # close to the threshold: a lucky fluctuation may still get below it
        return (f"does not converge: pending holds steady at {format_size(steady)} (RAM, "
                f"median of the last {k} syncs) against a threshold of {format_size(threshold)} "
                f"(bandwidth x downtime limit): {format_size(steady - threshold)} too much, "
                f"{steady / threshold if threshold > 0 else math.inf:.1f}x the threshold. Under QEMU's rules this "
                f"migration never converges; QEMU itself would keep iterating until cancelled "
                f"(PreCopy(stop_when_stalled=False) simulates that)")
