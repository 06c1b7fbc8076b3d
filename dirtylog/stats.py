"""Counters of a dirty-page tracker, as returned by ``Tracker.stats`` and ``ReferenceTracker.stats``.

The fields mirror ``dl_tracker_stats`` and ``dl_vcpu_stats`` in
``csrc/include/dirtylog/tracker.h``. Both classes are frozen snapshots: reading
``tracker.stats`` again gives a new object, the old one never changes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

__all__ = ["VcpuStats", "TrackerStats"]


@dataclass(frozen=True)
class VcpuStats:
    """Counters of one vCPU.

    Fields::

        writes           guest writes this vCPU made, logging or not
        faults           write-protection faults it took (including huge-block faults)
        pml_full_exits   "PML full" exits (PML mode)
        ring_full_exits  "dirty ring full" exits (ring mode)
        kicks            kicks it received before PML or ring harvests
        dirtied          pages it newly recorded (by a fault, a PML entry or a ring push)
        pml_index        next free slot of its PML log, -1 when the log is full
                         (pml_entries - 1 when the log is empty, also outside PML mode)
        ring_used        entries in its dirty ring not yet collected (0 outside ring mode)
    """

    writes: int
    faults: int
    pml_full_exits: int
    ring_full_exits: int
    kicks: int
    dirtied: int
    pml_index: int
    ring_used: int

    @property
    def exits(self) -> int:
        """VM exits of this vCPU caused by dirty tracking: PML-full + ring-full exits + faults (kicks excluded)."""
        return self.pml_full_exits + self.ring_full_exits + self.faults

    def to_dict(self) -> Dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class TrackerStats:
    """Counters of a whole tracker (sums over its vCPUs where that applies).

    Fields::

        writes           guest writes seen, logging or not
        faults           write-protection faults (including huge-block faults)
        pml_full_exits   "PML full" exits
        ring_full_exits  "dirty ring full" exits
        kicks            vCPU kicks before PML or ring harvests (one per vCPU per harvest)
        splits           huge blocks split (at a fault, at start with eager splitting, or by clear())
        harvests         harvest() / harvest_bitmap() calls that succeeded
        harvested_pages  sum of the sizes of every harvest's result
        tlb_flushes      TLB flushes after re-arming pages (harvest, ring reset, clear)
        cleared_pages    pages re-armed by clear() (clear mode)
        pml_logged       PML log entries written
        ring_pushed      dirty ring entries pushed
        ring_reaped      dirty ring entries collected and reset
        dirty_pages      pages dirty now in the dirty bitmap (in ring mode, entries
                         still in the rings are not counted: see ``Tracker.pending``)
        vcpus            one :class:`VcpuStats` per vCPU, in vCPU order
    """

    writes: int
    faults: int
    pml_full_exits: int
    ring_full_exits: int
    kicks: int
    splits: int
    harvests: int
    harvested_pages: int
    tlb_flushes: int
    cleared_pages: int
    pml_logged: int
    ring_pushed: int
    ring_reaped: int
    dirty_pages: int
    vcpus: Tuple[VcpuStats, ...] = ()

    @property
    def exits(self) -> int:
        """VM exits caused by dirty tracking: PML-full exits + ring-full exits + write-protection faults.

        Kicks are not counted: they are requested by userspace for a harvest, and
        a kicked vCPU would usually have exited soon for other reasons anyway.
        """
        return self.pml_full_exits + self.ring_full_exits + self.faults

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict of every field (``vcpus`` as a list of dicts), e.g. for JSON."""
        out: Dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "vcpus"}
        out["vcpus"] = [v.to_dict() for v in self.vcpus]
        return out
