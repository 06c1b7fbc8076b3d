"""Reports of a simulated migration: per round and overall, like QEMU's query-migrate."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from .units import format_rate, format_size, format_time

__all__ = ["RoundReport", "MigrationReport", "json_safe"]


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
    """One pre-copy round (round 0 sends all memory) or the stop-and-copy (``final``).

    ``dirty_pages`` is the size of the sync at the round's end: the pages dirtied
    while the round ran, which the next round sends. ``dirty_rate`` is that over the
    round's duration (pages/s, as QEMU's dirty-pages-rate). ``expected_downtime`` is
    QEMU's estimate at that sync: dirty bytes / bandwidth. ``guest_slowdown`` is the
    share (%) of the vCPUs' time lost to tracking exits during the round.
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

    @property
    def exits(self) -> int:
        """VM exits caused by tracking in this round (faults, PML-full and ring-full exits)."""
        return self.faults + self.pml_full_exits + self.ring_full_exits

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["exits"] = self.exits
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
    downtime: float
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
    events: List[Dict[str, Any]] = field(default_factory=list)
    #: What would make it converge (:class:`dirtylog.advice.Advice`), when asked for
    #: (``simulate(advise=True)``); None otherwise.
    advice: Optional[Any] = None

    @property
    def precopy_rounds(self) -> int:
        """Rounds sent while the guest ran on the source (round 0 included)."""
        return sum(1 for r in self.rounds if not r.final and not r.postcopy)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["rounds"] = [r.to_dict() for r in self.rounds]
        if self.advice is not None:
            d["advice"] = self.advice.to_dict()
        return d

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=indent)

    # -- readable output ------------------------------------------------------
    def rounds_table(self) -> str:
        """The round-by-round table, like a series of `virsh domjobinfo` snapshots."""
        head = ("round", "start", "duration", "sent", "dirty pages", "dirty rate", "exp. downtime",
                "exits", "slowdown", "throttle")
        rows = []
        for r in self.rounds:
            rows.append((
                "post" if r.postcopy else ("final" if r.final else str(r.index)),
                format_time(r.start),
                format_time(r.duration),
                format_size(r.bytes),
                f"{r.dirty_pages:,}",
                f"{r.dirty_rate:,.0f} p/s",
                "-" if r.final else format_time(r.expected_downtime),
                f"{r.exits:,}",
                f"{r.guest_slowdown:.2f} %",
                f"{r.throttle:.0f} %",
            ))
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)

    def summary(self) -> str:
        """The overall figures, one per line."""
        verified = {True: "yes (every page holds its newest version)", False: f"NO: {self.mismatches} pages differ, first {self.mismatched_pages[:8]}",
                    None: "not checked"}[self.verified]
        items = [
            ("Status", self.status + (" (post-copy)" if self.status == "completed" and self.degraded_window > 0
                                      else "" if self.converged or self.status != "completed"
                                      else " (forced, not converged)")),
            ("Reason", self.reason),
            ("Memory", f"{format_size(self.memory)} ({self.pages:,} pages of {self.page_size} B), {self.vcpus} vCPU(s), tracker {self.tracker}"),
            ("Link", f"{format_rate(self.bandwidth, bits=True)}, downtime limit {format_time(self.downtime_limit)}"),
            ("Total time", format_time(self.total_time)),
            ("Downtime", format_time(self.downtime)),
            ("Setup time", format_time(self.setup_time)),
            ("Expected downtime", format_time(self.expected_downtime)),
            ("Transferred", f"{format_size(self.transferred)} ({self.transferred / max(self.memory, 1):.2f}x memory)"),
            ("  pre-copy", format_size(self.precopy_bytes)),
            ("  downtime", format_size(self.downtime_bytes)),
            ("  post-copy", format_size(self.postcopy_bytes)),
            ("Pages sent", f"{self.pages_sent:,} (normal {self.normal:,}, zero {self.duplicate:,})"),
            ("Iterations", f"{self.dirty_sync_count} dirty syncs, {self.precopy_rounds} pre-copy rounds"),
            ("Guest", f"{self.guest_writes:,} writes, {format_time(self.guest_lost)} of vCPU time lost to tracking"),
        ]
        if self.cpu_throttle_percentage or self.guest_throttled:
            items.append(("Throttle", f"{self.cpu_throttle_percentage} % at the end (auto-converge), "
                                      f"{format_time(self.guest_throttled)} of vCPU time throttled away"))
        if self.postcopy_requests or self.postcopy_bytes:
            items.append(("Post-copy", f"{self.postcopy_requests:,} requests, {format_time(self.postcopy_stall_time)} stalled, "
                                       f"degraded for {format_time(self.degraded_window)}"))
        xb = self.compression.get("xbzrle")
        if xb:
            items.append(("XBZRLE", f"{xb['pages']:,} deltas ({format_size(xb['bytes'])}, {xb['encoding_rate']:.1f}x), "
                                    f"{xb['cache_miss']:,} misses ({100 * xb['cache_miss_rate']:.1f} %), "
                                    f"{xb['overflow']:,} overflows"))
        mf = self.compression.get("multifd")
        if mf:
            items.append(("Multifd", f"{mf['channels']} channel(s), effective {format_rate(mf['effective_bandwidth'], bits=True)}"))
        items.append(("Verified", verified))
        w = max(len(k) for k, _ in items)
        return "\n".join(f"{k.ljust(w)}  {v}" for k, v in items)

    def models_table(self) -> str:
        """The closed-form predictions for the same inputs beside the simulated figures."""
        if not self.models:
            return ""
        lines = [f"{'model':<12} {'rounds':>7} {'total time':>11} {'downtime':>10} {'sent':>11}  converged"]
        sim_rounds = max(self.precopy_rounds - 1, 0)
        lines.append(f"{'simulated':<12} {sim_rounds:>7} {format_time(self.total_time):>11} "
                     f"{format_time(self.downtime):>10} {format_size(self.transferred):>11}  {self.converged}")
        for name, m in self.models.items():
            if not isinstance(m, dict) or "total_time" not in m:
                continue
            if m.get("converged", True) is False:  # the closed forms diverge: no meaningful figures
                lines.append(f"{name:<12} {'-':>7} {'never':>11} {'-':>10} {'-':>11}  False")
                continue
            lines.append(f"{name:<12} {m.get('rounds', '-')!s:>7} {format_time(m['total_time']):>11} "
                         f"{format_time(m.get('downtime', 0.0)):>10} {format_size(m.get('total_bytes', 0)):>11}  "
                         f"{m.get('converged', '-')}")
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self.rounds_table(), "", self.summary()]
        mt = self.models_table()
        if mt:
            parts += ["", mt]
        return "\n".join(parts)
