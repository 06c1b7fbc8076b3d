"""Reports of a simulated migration: per round and overall, like QEMU's query-migrate."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple


__all__ = ["RoundReport", "MigrationReport", "json_safe", "ROUND_ENDS", "PARTIAL_ENDS", "CUT_SHORT", "SYNC_ENDS"]

#: A round cut short (:attr:`RoundReport.partial`), by how it ended: what it is called and what cut it
#: short, worded once for every place that says it: :data:`ROUND_ENDS`, the text report's note
#: (:func:`dirtylog.render.cut_short_text`) and the plot's legend (:func:`dirtylog.plot.plot_report`).
CUT_SHORT: Dict[str, Tuple[str, str]] = {
    "failed": ("cut short", "the migration failed and rolled back"),
    "cancelled": ("cut short", "the migration was cancelled"),
    "lost": ("cut short", "the link failed and the VM was lost"),
    "running": ("still running", "the report was taken"),
}
#: The ends of a round cut short: no sync ended it, and its figures are what it had done by then.
PARTIAL_ENDS = tuple(CUT_SHORT)


def _cut(ended: str, detail: str = "") -> str:
    state, how = CUT_SHORT[ended]
    return f"{state}: {how} while the round ran{detail}"


#: How a round can end (:attr:`RoundReport.ended`), and what that means.
ROUND_ENDS: Dict[str, str] = {
    "sync": "a sync of the dirty log ended the pre-copy round (QEMU's dirty-sync-count counts it)",
    "pause": "the guest paused for the switch-over before the round's own sync (a limit forced it, "
             "post-copy was started, or nothing was left before QEMU's first bandwidth measurement)",
    "resume": "post-copy's switch-over ended: the guest resumed on the destination",
    "completed": "the migration completed: the stop-and-copy, or post-copy's last page, arrived",
    "failed": _cut("failed"),
    "cancelled": _cut("cancelled"),
    "lost": _cut("lost", " (a failure during post-copy)"),
    "running": _cut("running", " (Ctrl-C, or report() mid-run)"),
}
#: The ends of a round that a sync measured (:attr:`RoundReport.synced`): what the guest dirtied in it, and
#: QEMU's pending size and estimates at that sync. Every figure computed from syncs reads only these rounds.
SYNC_ENDS = ("sync",)


def json_safe(x: Any) -> Any:
    """``x`` with numpy values as Python ones and NaN/inf as None, ready for strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist"):  # numpy arrays and scalars
        return json_safe(x.tolist())
    return x


@dataclass(frozen=True)
class RoundReport:
    """One pre-copy round (round 0 sends all memory) or the stop-and-copy (``final``), or the setup
    (:attr:`MigrationReport.setup`, index -1: dirty logging starting, up to the setup's sync).

    ``dirty_pages`` is the size of the sync at the round's end: the pages dirtied
    while the round ran, which the next round sends. ``remaining_pages`` is what the
    migration bitmap holds after that sync (QEMU's remaining / page size, the pending size
    QEMU compares with ``threshold``, QEMU's threshold_size then: the bandwidth measured in
    the last 100 ms window, or avail-switchover-bandwidth, x the downtime limit; the
    pre-copy ends when the pending size is below it). A stop-and-copy or post-copy round
    carries the threshold at the pause. ``dirty_rate`` is that over the
    round's duration (pages/s, as QEMU's dirty-pages-rate). ``expected_downtime`` is
    QEMU's estimate at that sync: dirty bytes / bandwidth. ``guest_slowdown`` is the
    share (%) of the vCPUs' time lost to tracking exits during the round.

    ``ended`` says how the round ended (see :data:`ROUND_ENDS`). A round cut short (``partial``:
    the migration failed, was cancelled or lost, or the report was taken, while it ran) holds what
    it sent up to then, so that the rounds add up to the migration's totals; no sync ended it, so
    its ``dirty_pages`` is 0 (nothing was harvested) and its ``remaining_pages`` is what was left
    to send when it stopped (the report's ``memory_remaining``). QEMU has no such figure per
    round: its ``transferred`` keeps counting after the last sync and ``dirty-sync-count`` does
    not move at a failure or a cancel; neither does dirtylog's.
    """

    index: int
    start: float
    duration: float
    pages_sent: int
    bytes: int
    dirty_pages: int
    dirty_rate: float
    bandwidth: float
    expected_downtime: float
    writes: int
    faults: int
    pml_full_exits: int
    ring_full_exits: int
    splits: int
    kicks: int
    guest_lost: float
    guest_slowdown: float
    throttle: float = 0.0
    final: bool = False
    postcopy: bool = False
    #: pages left in the migration bitmap after the sync that ended the round
    remaining_pages: int = 0
    #: bytes: QEMU's threshold_size when the round ended (see above; :meth:`dirtylog.Migration.threshold`)
    threshold: float = 0.0
    #: > 0: this entry sums that many consecutive rounds of a long migration (see Migration.rounds)
    aggregated: int = 0
    #: pages sent as zero pages in the round (QEMU's duplicate; a header each); part of ``pages_sent``
    zero_pages: int = 0
    #: how the round ended: one of :data:`ROUND_ENDS`
    ended: str = "sync"

    @property
    def partial(self) -> bool:
        """Whether the round was cut short (:data:`PARTIAL_ENDS`): the migration stopped, or the report
        was taken, while it ran. Its figures are what it had done by then, and no sync ended it."""
        return self.ended in PARTIAL_ENDS

    @property
    def synced(self) -> bool:
        """Whether a sync of the dirty log ended the round (:data:`SYNC_ENDS`). Only then are ``dirty_pages``
        and ``dirty_rate`` measured (a round ended by a pause, a forced switch-over between syncs, keeps 0:
        the pause's own sync belongs to the stop-and-copy), and ``remaining_pages``, ``expected_downtime`` and
        ``threshold`` those the switch-over decision compared at a sync. Figures computed from syncs (the
        measured dirty rate, advice's pending sets, the plot's points after each sync) read only these rounds."""
        return self.ended in SYNC_ENDS

    @property
    def exits(self) -> int:
        """VM exits caused by tracking in this round (faults, PML-full and ring-full exits)."""
        return self.faults + self.pml_full_exits + self.ring_full_exits

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["exits"] = self.exits
        d["partial"] = self.partial
        return d


@dataclass(frozen=True)
class MigrationReport:
    """The outcome of a simulated migration (times in seconds, sizes in bytes).

    ``status`` is "completed", "failed" (rolled back: the source keeps running and
    nothing is lost) or "lost" (a failure during post-copy: neither side holds all
    of memory). ``verified`` is True when every page on the destination holds the
    newest version the source wrote (or, after a rollback, when the source still
    holds every write), None when verification was off.
    """

    status: str
    converged: bool
    reason: str
    total_time: float
    downtime: float  # NaN when the guest never switched over
    setup_time: float
    transferred: int
    precopy_bytes: int
    downtime_bytes: int
    postcopy_bytes: int
    pages_sent: int
    duplicate: int
    normal: int
    normal_bytes: int
    dirty_sync_count: int
    expected_downtime: float
    verified: Optional[bool]
    mismatches: int
    mismatched_pages: List[int]
    memory: int
    pages: int
    page_size: int
    vcpus: int
    tracker: str
    bandwidth: float
    downtime_limit: float
    guest_writes: int
    guest_lost: float
    device_bytes: int
    #: Bytes still to send when the report was taken: QEMU's query-migrate ``ram.remaining``
    #: (``ram_bytes_remaining()``, the dirty pages in the migration bitmap x page size). It falls as
    #: pages are sent (in round 0 too: the bitmap starts with every page set) and grows only at a sync;
    #: 0 once completed. In a failed or cancelled report, what was left when the migration stopped
    #: (QEMU reports no RAM figures then); after a loss in post-copy, the pages only the source held.
    #: See :attr:`dirtylog.Migration.memory_remaining`.
    memory_remaining: int
    #: The rounds, in order, a round the migration stopped in (or the report was taken in) included,
    #: marked ``partial``: their pages_sent, zero_pages, bytes and durations add up to pages_sent,
    #: duplicate, transferred and total_time - setup_time (rounds begin after the setup).
    rounds: List[RoundReport] = field(default_factory=list)
    tracker_stats: Dict[str, Any] = field(default_factory=dict)
    models: Dict[str, Any] = field(default_factory=dict)
    postcopy_requests: int = 0
    postcopy_prepaged: int = 0
    postcopy_stall_time: float = 0.0
    degraded_window: float = 0.0
    guest_running: str = "destination"
    cpu_throttle_percentage: int = 0
    compression: Dict[str, Any] = field(default_factory=dict)
    guest_throttled: float = 0.0
    #: True when Ctrl-C stopped the run loop: a partial report (see dirtylog.errors.Interrupted)
    interrupted: bool = False
    #: rounds summed into one entry of ``rounds`` (a long migration keeps its first and last rounds)
    rounds_aggregated: int = 0
    #: QEMU's query-migrate mbps and pages-per-second as of the live phase's last 100 ms window
    #: (``mbps`` and ``pages_per_second`` are the means over the whole migration)
    window_mbps: float = 0.0
    window_pages_per_second: float = 0.0
    #: QEMU's dirty-limit-throttle-time-per-round and dirty-limit-ring-full-time (QEMU 8.1+, there in
    #: microseconds, here in seconds): the longest a vCPU sleeps each time its dirty ring fills, and how
    #: long a vCPU at the highest dirty rate seen (as QEMU counts it) takes to fill its ring, as of the last
    #: dirty-limit period; None when dirty-limit never completed a period (QEMU omits both then)
    dirty_limit_throttle_time_per_round: Optional[float] = None
    dirty_limit_ring_full_time: Optional[float] = None
    events: List[Dict[str, Any]] = field(default_factory=list)
    #: The setup, as a round (index -1; None before the migration starts): from the start to the setup's sync
    #: (QEMU's ram_init_bitmaps, the first dirty-sync-count), while dirty logging starts and the guest runs.
    #: Its ``writes``, ``guest_lost``, exits and the rest are what no round holds (rounds begin after it):
    #: with the rounds they add up to the report's ``guest_writes``, ``guest_lost`` and the tracker's counts.
    #: ``dirty_pages`` is what that sync harvested (every page is in the bitmap then anyway); it sends
    #: nothing. ``ended`` is "sync", or how the migration ended in its setup ("failed", "cancelled"), or
    #: "running" in a report taken during it (QEMU's setup-time is its length: ``setup_time``).
    setup: Optional[RoundReport] = None
    #: QEMU's avail-switchover-bandwidth (bytes/s) when the policy set it (``PreCopy(switchover_bandwidth=...)``):
    #: the bandwidth each threshold (``RoundReport.threshold``) and expected downtime assumed instead of the
    #: measured one; None: they used the bandwidth measured in the last 100 ms window
    switchover_bandwidth: Optional[float] = None
    #: What would make it converge (:class:`dirtylog.advice.Advice`), when asked for
    #: (``simulate(advise=True)``); None otherwise.
    advice: Optional[Any] = None

    @property
    def precopy_rounds(self) -> int:
        """The round count used everywhere in dirtylog: pre-copy rounds sent while the guest ran on
        the source, round 0 (all of memory) included, and a round the migration stopped in (a failure,
        a cancel: ``RoundReport.partial``); the stop-and-copy is not one of them. QEMU's own count of
        syncs is ``dirty_sync_count``. An entry summing several rounds of a long migration (``aggregated``)
        counts as the rounds it sums."""
        return sum(max(1, r.aggregated) for r in self.rounds if not r.final and not r.postcopy)

    @property
    def mbps(self) -> float:
        """The migration's mean throughput in megabits per second (QEMU's mbps)."""
        return self.transferred * 8 / 1e6 / self.total_time if self.total_time > 0 else 0.0

    @property
    def pages_per_second(self) -> float:
        """Pages sent per second over the migration (QEMU's pages-per-second)."""
        return self.pages_sent / self.total_time if self.total_time > 0 else 0.0

    @property
    def multifd_bytes(self) -> int:
        """Page data sent over the multifd channels (0 without multifd): all pages, not the device state."""
        if not self.compression.get("multifd"):
            return 0
        return max(0, self.precopy_bytes + self.downtime_bytes + self.postcopy_bytes - self.device_bytes)

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=indent)

    def to_dict(self) -> Dict[str, Any]:
        """Every field, and the operator figures (``precopy_rounds``, ``mbps``, ``pages_per_second``,
        ``multifd_bytes``); a downtime that never happened is NaN (null in JSON)."""
        d = asdict(self)
        d["rounds"] = [r.to_dict() for r in self.rounds]
        d["setup"] = self.setup.to_dict() if self.setup is not None else None
        d["precopy_rounds"] = self.precopy_rounds
        d["mbps"] = self.mbps
        d["pages_per_second"] = self.pages_per_second
        d["multifd_bytes"] = self.multifd_bytes
        if self.advice is not None:
            d["advice"] = self.advice.to_dict()
        return d

    # -- readable output: dirtylog.render builds the lines, the command line colours the same ----
    def rounds_table(self, width: Optional[int] = None) -> str:
        """The round-by-round table (the setup first), like a series of `virsh domjobinfo` snapshots."""
        from .render import plain, rounds_lines

        return plain(rounds_lines(self, width))

    def summary(self, width: Optional[int] = None) -> str:
        """The overall figures, one per line."""
        from .render import plain, summary_lines

        return plain(summary_lines(self, width))

    def models_table(self, width: Optional[int] = None) -> str:
        """The closed-form predictions for the same inputs beside the simulated figures."""
        from .render import models_lines, plain

        return plain(models_lines(self, width))

    def render(self, width: Optional[int] = None, max_rounds: int = 40) -> str:
        """The tables as text, fitted to ``width`` columns (None: no limit)."""
        from .render import plain, report_lines

        return plain(report_lines(self, width, max_rounds))

    def __str__(self) -> str:
        from .render import output_width

        return self.render(output_width())
