"""Guest-side costs of dirty tracking: what each exit takes from the vCPU.

The defaults are order-of-magnitude figures for a recent x86 server running KVM
with the TDP MMU; they differ by a factor of two or more between CPU generations.
Measure your own hosts with KVM's ``dirty_log_perf_test`` (its "dirty memory time"
per iteration divided by the pages dirtied gives the per-page cost in WP mode) and
pass a :class:`TrackingCosts` with your figures.

* ``fault`` (2 us): an EPT/NPT write-protection violation: VM exit, KVM's lockless
  fast page fault making the SPTE writable and marking the page dirty, VM entry.
  A bare VM exit/entry round trip costs on the order of 1 us on current parts.
* ``pml_full`` (8 us): a "PML full" exit plus draining 512 GPAs into the dirty
  bitmap (``kvm_flush_pml_buffers``), about 10-15 ns per entry on top of the exit.
* ``ring_full`` (50 us): a "dirty ring full" exit to userspace; the vCPU thread takes the
  big QEMU lock, collects every vCPU's ring (its own only under dirty-limit) and calls
  KVM_RESET_DIRTY_RINGS (``kvm_dirty_ring_reap``).
* ``split`` (5 us): splitting a 2 MiB block on a write fault: allocating a page-table
  page, writing 512 entries, flushing the block's TLB entries.
* ``kick`` (2 us): an IPI that forces a running vCPU out before a harvest, so that its
  PML log is drained (PML mode) or its ring holds every write (ring mode: QEMU's
  kvm_dirty_ring_flush kicks every vCPU out to userspace before it reaps), and the
  re-entry. Ring mode's kick is a round trip to userspace (run_on_cpu), dearer than PML's;
  dirtylog charges both the same ``kick``. KVM sends no IPI to a vCPU outside guest mode, so
  a kick is counted but costs nothing when the vCPU is stopped (the pause's sync) and costs
  a throttled vCPU only the share of its time it runs (auto-converge and dirty-limit sleep
  outside KVM_RUN). In ring mode the sync itself waits for a sleeping vCPU to wake
  (run_on_cpu): the migration thread's time, not the guest's (:func:`dirtylog.throttle.kick_wait`).
  Dirty-limit's rate thread syncs too, once per period: its kicks are charged alike.
* ``log_start_per_gib`` (5.1 ms): write-protecting memory when logging starts: the
  KVM patch introducing KVM_DIRTY_LOG_INITIALLY_SET measured 650 ms for a 128 GiB
  guest; ``log_start_initially_set_per_gib`` (0.014 ms): 1.8 ms for the same guest
  with INITIALLY_SET (nothing to protect up front). Both count towards setup_time.
* ``sync`` (50 us) and ``sync_per_gib`` (30 us): the migration thread's time for one
  sync of the dirty log (QEMU's migration_bitmap_sync: the BQL, a KVM_GET_DIRTY_LOG
  per memory slot or reaping the rings, walking the dirty bitmaps into the migration
  bitmap). Nothing is sent meanwhile; the guest runs. Chuang Xu (ByteDance) measured
  2.5 ms from KVM into QEMU's ram_list and 5 ms into the RAMBlock bitmaps for a 256 GiB
  guest (QEMU patch merging fragmented clear_dirty ioctls, Dec 2025): about 30 us per
  GiB; the fixed part is an order-of-magnitude figure. A sync is
  never free, so the loop cannot sync more often than once per ``sync`` (plus the
  time to send what the sync found), however small the threshold.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Union

from .errors import ConfigError
from .units import parse_time

__all__ = ["TrackingCosts"]

TimeLike = Union[float, int, str]


@dataclass(frozen=True, init=False)
class TrackingCosts:
    """Seconds of guest time lost per tracking event (see the module docs for sources), and the
    migration thread's time per sync (``sync`` + ``sync_per_gib`` x memory in GiB).

    ``slows_guest``: whether the time lost is taken out of the guest's run time, so
    that a tracker with more exits lets the guest dirty fewer pages (True), or only
    reported (False).
    """

    fault: float
    pml_full: float
    ring_full: float
    split: float
    kick: float
    log_start_per_gib: float
    log_start_initially_set_per_gib: float
    slows_guest: bool
    sync: float
    sync_per_gib: float

    def __init__(
        self,
        fault: TimeLike = "2us",
        pml_full: TimeLike = "8us",
        ring_full: TimeLike = "50us",
        split: TimeLike = "5us",
        kick: TimeLike = "2us",
        log_start_per_gib: TimeLike = "5.1ms",
        log_start_initially_set_per_gib: TimeLike = "0.014ms",
        slows_guest: bool = True,
        sync: TimeLike = "50us",
        sync_per_gib: TimeLike = "30us",
    ) -> None:
        values = dict(
            fault=fault, pml_full=pml_full, ring_full=ring_full, split=split, kick=kick,
            log_start_per_gib=log_start_per_gib, log_start_initially_set_per_gib=log_start_initially_set_per_gib,
            sync=sync, sync_per_gib=sync_per_gib,
        )
        for k, val in values.items():
            object.__setattr__(self, k, parse_time(val, name=f"costs.{k}"))
        if not isinstance(slows_guest, bool):
            raise TypeError("costs.slows_guest must be a bool")
        object.__setattr__(self, "slows_guest", slows_guest)

    def most_per_write(self, faults: float, pml_full_exits: float, ring_full_exits: float) -> float:
        """The most guest time one write can cost in tracking exits (vCPU-seconds), given the most exits of
        each kind one write can cause (:meth:`dirtylog.tracker.Tracker.exits_per_write`); 0 when the
        costs do not slow the guest (``slows_guest=False``)."""
        if not self.slows_guest:
            return 0.0
        return faults * self.fault + pml_full_exits * self.pml_full + ring_full_exits * self.ring_full

    @classmethod
    def zero(cls) -> "TrackingCosts":
        """No tracking cost at all: the idealized tracker of analytical models."""
        return cls(0, 0, 0, 0, 0, 0, 0, slows_guest=False, sync=0, sync_per_gib=0)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrackingCosts":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown tracking cost(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**d)
