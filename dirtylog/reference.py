"""A plain numpy model of the dirty-page tracker: the yardstick for the C core.

:class:`ReferenceTracker` has the same API as the C-backed :class:`dirtylog.Tracker`
and follows the semantics written at the top of ``csrc/include/dirtylog/tracker.h``.
It is meant to be read: the C core is tested against it operation by operation,
and it is the "numpy baseline" of the benchmarks, so whole batches are handled
with numpy where the semantics allow it.

State kept while logging:

* ``_bits`` (wp, pml, clear): one bool per page, True = recorded (dirty in the
  bitmap, or D bit set in PML mode). A page is *armed* when its bit is clear and
  its huge block (if any) is not write-protected. In PML mode the dirty set is
  the D bits: pages in a PML log already have their bit set, so draining a log
  only resets its index.
* ``_kvm`` and ``_coll`` (ring): ``_kvm`` = the page is in some vCPU's dirty ring
  and not reset yet (recorded); ``_coll`` = collected from a ring into the dirty
  bitmap and not harvested yet.
* ``_blocks`` (huge pages): one state per 512-page block (the last may be
  partial): huge and writable, write-protected whole, or split into 4 KiB pages.
* per-vCPU PML logs (filled from index pml_entries-1 down to 0) and dirty rings
  (offsets, oldest first).
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np

from ._validate import (
    BLOCK_PAGES,
    TrackerConfig,
    check_clear_range,
    clear_mask,
    check_vcpu,
    describe_bad_page,
    first_bad_page,
    tracker_config,
    write_batch,
)
from .errors import ConfigError, ModeError, StateError
from .stats import TrackerStats, VcpuStats

__all__ = ["ReferenceTracker"]

# States of a huge block.
_HUGE_WRITABLE = 0  # mapped huge and writable: not logging, or clear mode with initially_set
_PROTECTED = 1      # write-protected whole: the next write to it faults and splits it
_SPLIT = 2          # split into 4 KiB pages, each armed or recorded on its own

_COUNTERS = (
    "writes", "faults", "pml_full_exits", "ring_full_exits", "kicks", "splits", "harvests",
    "harvested_pages", "tlb_flushes", "cleared_pages", "pml_logged", "ring_pushed", "ring_reaped",
    "dirty_pages",
)
_VCPU_COUNTERS = ("writes", "faults", "pml_full_exits", "ring_full_exits", "kicks", "dirtied")


class ReferenceTracker:
    """Numpy model of a stage-2 page table under dirty logging (see ``dirtylog.Tracker``).

    Parameters are those of :func:`dirtylog._validate.tracker_config`: ``pages``,
    ``mode`` ("wp", "pml", "ring" or "clear"), ``vcpus``, ``page_size``,
    ``huge_pages`` (None, "lazy" or "eager"), ``pml_entries``, ``ring_entries`` and
    ``initially_set`` (clear mode only). The tracker is not logging until :meth:`start`.
    """

    def __init__(
        self,
        pages: Any,
        mode: str = "wp",
        vcpus: Any = 1,
        page_size: Any = 4096,
        huge_pages: Optional[str] = None,
        pml_entries: Any = 512,
        ring_entries: Any = 4096,
        initially_set: bool = False,
    ) -> None:
        cfg = tracker_config(pages, mode, vcpus, page_size, huge_pages, pml_entries, ring_entries, initially_set)
        self._cfg: TrackerConfig = cfg
        self._logging = False
        self._c = dict.fromkeys(_COUNTERS, 0)
        self._v = {name: np.zeros(cfg.vcpus, dtype=np.int64) for name in _VCPU_COUNTERS}

        if cfg.mode == "ring":
            self._kvm = np.zeros(cfg.pages, dtype=bool)
            self._coll = np.zeros(cfg.pages, dtype=bool)
            self._recorded = self._kvm
        else:
            self._bits = np.zeros(cfg.pages, dtype=bool)
            self._recorded = self._bits
        self._blocks = np.zeros(cfg.blocks, dtype=np.uint8) if cfg.huge_pages else None

        # The PML index exists in every mode (it is part of the vCPU stats); the logs only in PML mode.
        self._pml_index = np.full(cfg.vcpus, cfg.pml_entries - 1, dtype=np.int64)
        if cfg.mode == "pml":
            self._pml_log = np.zeros((cfg.vcpus, cfg.pml_entries), dtype=np.uint64)
        self._ring_used = np.zeros(cfg.vcpus, dtype=np.int64)
        self._reap_own = False
        if cfg.mode == "ring":
            self._ring = np.zeros((cfg.vcpus, cfg.ring_entries), dtype=np.uint64)

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> TrackerConfig:
        return self._cfg

    @property
    def pages(self) -> int:
        return self._cfg.pages

    @property
    def mode(self) -> str:
        return self._cfg.mode

    @property
    def vcpus(self) -> int:
        return self._cfg.vcpus

    @property
    def page_size(self) -> int:
        return self._cfg.page_size

    @property
    def huge_pages(self) -> Optional[str]:
        return self._cfg.huge_pages

    @property
    def pml_entries(self) -> int:
        return self._cfg.pml_entries

    # NOTE: the ring size is ``config.ring_entries``: the name ``ring_entries`` is
    # taken by the method that lists a vCPU's ring (dl_tracker_ring_entries).

    @property
    def initially_set(self) -> bool:
        return self._cfg.initially_set

    @property
    def logging(self) -> bool:
        return self._logging

    @property
    def memory_bytes(self) -> int:
        """Bytes of tracking state (bitmaps, blocks, logs and rings) this model holds."""
        arrays: List[np.ndarray] = [self._recorded, self._pml_index, self._ring_used]
        if self._cfg.mode == "ring":
            arrays += [self._coll, self._ring]
        if self._cfg.mode == "pml":
            arrays.append(self._pml_log)
        if self._blocks is not None:
            arrays.append(self._blocks)
        return int(sum(a.nbytes for a in arrays))

    def __repr__(self) -> str:
        c = self._cfg
        return (
            f"ReferenceTracker(pages={c.pages}, mode={c.mode!r}, vcpus={c.vcpus}, huge_pages={c.huge_pages!r}, "
            f"logging={self._logging}, dirty_pages={self._c['dirty_pages']})"
        )

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Start dirty logging: arm every page (or, with initially_set, mark every page dirty)."""
        if self._logging:
            raise StateError("dirty logging is already started; call stop() first")
        self._reset_tracking_state()
        cfg = self._cfg
        if cfg.initially_set:
            # Clear mode with initially_set: every page dirty, nothing protected, blocks stay huge.
            self._bits[:] = True
            self._c["dirty_pages"] = cfg.pages
        elif self._blocks is not None:  # huge_pages is "lazy" or "eager"
            if cfg.huge_pages == "lazy":
                self._blocks[:] = _PROTECTED
            else:
                self._blocks[:] = _SPLIT
                self._c["splits"] += cfg.blocks
        self._logging = True

    def stop(self) -> None:
        """Stop dirty logging and drop everything pending (counters are kept)."""
        if not self._logging:
            raise StateError("dirty logging is not started; call start() first")
        self._reset_tracking_state()
        self._logging = False

    def _reset_tracking_state(self) -> None:
        self._recorded[:] = False
        if self._cfg.mode == "ring":
            self._coll[:] = False
        if self._blocks is not None:
            self._blocks[:] = _HUGE_WRITABLE
        self._pml_index[:] = self._cfg.pml_entries - 1
        self._ring_used[:] = 0
        self._c["dirty_pages"] = 0

    # ------------------------------------------------------------------ writes

    def write(self, pages: Any, vcpu: Any = 0) -> None:
        """A batch of guest writes by one vCPU, applied in order.

        Raises TypeError for a non-integer dtype and ConfigError (a ValueError) for a
        bad vCPU or naming the first page index outside [0, pages); the tracker is
        unchanged on error.
        """
        v = check_vcpu(vcpu, self._cfg.vcpus)
        arr = write_batch(pages, self._cfg.pages)
        bad = first_bad_page(arr, self._cfg.pages)
        if bad is not None:
            raise ConfigError(describe_bad_page(arr, bad, self._cfg.pages))

        self._c["writes"] += arr.size
        self._v["writes"][v] += arr.size
        if not self._logging or arr.size == 0:
            return
        arr = arr.astype(np.int64, copy=False)
        if self._cfg.mode in ("wp", "clear"):
            self._write_wp(arr, v)
        elif self._cfg.mode == "pml":
            self._write_pml(arr, v)
        else:
            self._write_ring(arr, v)

    def _first_writes(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in ``arr`` and pages of the first write to every page that the
        write may change: pages not recorded, or in a write-protected block. In batch order.

        Later writes to the same page find it recorded (as long as no ring reset
        happens in between: see :meth:`_write_ring`), so they change nothing.
        """
        candidate = ~self._recorded[arr]
        if self._blocks is not None:
            candidate |= self._blocks[arr // BLOCK_PAGES] == _PROTECTED
        pos = np.flatnonzero(candidate)
        _, first = np.unique(arr[pos], return_index=True)
        first.sort()
        pos = pos[first]
        return pos, arr[pos]

    def _write_wp(self, arr: np.ndarray, v: int) -> None:
        """WP and clear modes, vectorized: every newly recorded page costs one fault, and
        the first write to a protected block is one fault that splits it and records its page."""
        _, cand = self._first_writes(arr)
        if cand.size == 0:
            return
        huge_fault = np.zeros(cand.size, dtype=bool)
        if self._blocks is not None:
            blocks, first = np.unique(cand // BLOCK_PAGES, return_index=True)
            protected = self._blocks[blocks] == _PROTECTED
            huge_fault[first[protected]] = True  # the batch's first write into each protected block
            self._blocks[blocks[protected]] = _SPLIT
            self._c["splits"] += int(protected.sum())
        new = ~self._bits[cand]  # pages recorded by this batch (through either kind of fault)
        faults = int(huge_fault.sum()) + int((new & ~huge_fault).sum())
        dirtied = int(new.sum())
        self._bits[cand[new]] = True
        self._c["faults"] += faults
        self._v["faults"][v] += faults
        self._c["dirty_pages"] += dirtied
        self._v["dirtied"][v] += dirtied

    def _write_pml(self, arr: np.ndarray, v: int) -> None:
        """PML mode: the order of the newly dirtied pages matters (log contents, full exits)."""
        _, cand = self._first_writes(arr)
        for p in cand.tolist():
            if self._block_protected(p):
                self._huge_fault(p, v)
            elif not self._bits[p]:
                self._pml_append(v, p)

    def _write_ring(self, arr: np.ndarray, v: int) -> None:
        """Ring mode. A ring-full exit resets the ring, which re-arms its pages, so a
        later write in the same batch to one of them is recorded again. The batch is
        therefore handled in windows: the first writes of a window are applied in order
        until a ring-full exit; the next window starts right after the write that caused it.
        """
        n = arr.size
        start = 0
        while start < n:
            room = self._cfg.ring_soft_limit - int(self._ring_used[v])  # pushes until the next exit, >= 1
            stop = min(n, start + max(2 * room, 1024))
            pos, cand = self._first_writes(arr[start:stop])
            next_start = stop
            for i, p in zip(pos.tolist(), cand.tolist()):
                if self._block_protected(p):
                    reaped = self._huge_fault(p, v)
                elif not self._kvm[p]:
                    reaped = self._ring_push(v, p)
                else:
                    reaped = False
                if reaped:
                    next_start = start + i + 1
                    break
            start = next_start

    def _block_protected(self, page: int) -> bool:
        return self._blocks is not None and self._blocks[page // BLOCK_PAGES] == _PROTECTED

    def _huge_fault(self, p: int, v: int) -> bool:
        """A write to a write-protected block: one fault, the block is split and the page
        recorded directly (into the bitmap, or onto the ring; never into the PML log).
        Returns True if a ring push caused a ring-full exit."""
        assert self._blocks is not None  # only blocks of a huge-page tracker are write-protected
        self._blocks[p // BLOCK_PAGES] = _SPLIT
        self._c["splits"] += 1
        self._c["faults"] += 1
        self._v["faults"][v] += 1
        if self._cfg.mode == "ring":
            return False if self._kvm[p] else self._ring_push(v, p)
        if not self._bits[p]:
            self._bits[p] = True
            self._c["dirty_pages"] += 1
            self._v["dirtied"][v] += 1
        return False

    def _pml_append(self, v: int, p: int) -> None:
        if self._pml_index[v] == -1:
            # "PML full" exit: the log is drained (its pages already have their D bits set).
            self._c["pml_full_exits"] += 1
            self._v["pml_full_exits"][v] += 1
            self._pml_index[v] = self._cfg.pml_entries - 1
        idx = self._pml_index[v]
        self._pml_log[v, idx] = p
        self._pml_index[v] = idx - 1
        self._c["pml_logged"] += 1
        self._bits[p] = True
        self._c["dirty_pages"] += 1
        self._v["dirtied"][v] += 1

    def _ring_push(self, v: int, p: int) -> bool:
        """Push page p to vCPU v's ring; returns True if that caused a ring-full exit (and reap)."""
        self._kvm[p] = True
        self._ring[v, self._ring_used[v]] = p
        self._ring_used[v] += 1
        self._c["ring_pushed"] += 1
        self._v["dirtied"][v] += 1
        if self._ring_used[v] < self._cfg.ring_soft_limit:
            return False
        self._c["ring_full_exits"] += 1
        self._v["ring_full_exits"][v] += 1
        # QEMU reaps every vCPU's ring at a ring-full exit, only the exiting one's under dirty-limit
        for w in [v] if self._reap_own else range(self._cfg.vcpus):
            self._reap(w)
        return True

    @property
    def reap_own(self) -> bool:
        """Ring mode: a ring-full exit reaps only its own vCPU's ring (see ``dirtylog.Tracker.reap_own``)."""
        return self._reap_own

    @reap_own.setter
    def reap_own(self, own: bool) -> None:
        if self._cfg.mode != "ring":
            raise ModeError(f"reap_own (a ring-full exit's reap; tracker mode {self._cfg.mode!r}, needs 'ring')")
        self._reap_own = bool(own)

    def _reap(self, v: int) -> None:
        """Collect vCPU v's ring into the dirty bitmap, then reset it (re-arming its pages)."""
        used = int(self._ring_used[v])
        if used == 0:
            return
        # A page is in at most one ring, at most once (_kvm guards the push), so the
        # entries are distinct and can be collected all at once.
        entries = self._ring[v, :used].astype(np.int64)
        self._c["dirty_pages"] += int(np.count_nonzero(~self._coll[entries]))
        self._coll[entries] = True
        self._kvm[entries] = False
        self._ring_used[v] = 0
        self._c["ring_reaped"] += used
        self._c["tlb_flushes"] += 1

    # ------------------------------------------------------------------ harvest / clear

    def harvest(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Pages dirtied since the previous harvest (or since start), sorted, as uint64.

        With ``out`` (a uint64 array of at least ``pending`` pages) they are written there
        and a view of it is returned, as :meth:`dirtylog.Tracker.harvest` does.
        """
        if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.uint64 or out.ndim != 1):
            raise TypeError("out must be a writable, C-contiguous 1-D numpy uint64 array")
        if out is not None and out.size < self.pending:
            raise ConfigError(f"out holds {out.size} pages but the harvest may need {self.pending} (see pending)")
        pages = np.flatnonzero(self._harvest_mask()).astype(np.uint64)
        if out is None:
            return pages
        out[: pages.size] = pages
        return out[: pages.size]

    def harvest_bitmap(self) -> np.ndarray:
        """The same harvest as packed uint64 words: bit (p % 64) of word p // 64."""
        mask = self._harvest_mask()
        padded = np.zeros(self._cfg.bitmap_words * 64, dtype=bool)
        padded[: self._cfg.pages] = mask
        return np.packbits(padded, bitorder="little").view("<u8").astype(np.uint64)

    def flush(self) -> None:
        """Kick every vCPU and collect its log into the dirty bitmap, without harvesting it."""
        if not self._logging:
            raise StateError("flush() needs dirty logging: call start() first")
        self._sync_logs()

    def _sync_logs(self) -> None:
        mode = self._cfg.mode
        if mode in ("pml", "ring"):
            # Kick every vCPU (QEMU's kvm_dirty_ring_flush kicks them in ring mode too), then
            # drain each PML log (the D bits are already set) or collect and reset each ring.
            self._c["kicks"] += self._cfg.vcpus
            self._v["kicks"] += 1
        if mode == "pml":
            self._pml_index[:] = self._cfg.pml_entries - 1
        elif mode == "ring":
            for v in range(self._cfg.vcpus):
                self._reap(v)

    def _harvest_mask(self) -> np.ndarray:
        """Sync (kicks, then PML drain / ring collection), then snapshot the dirty bitmap and clear it."""
        if not self._logging:
            raise StateError("cannot harvest: dirty logging is not started; call start() first")
        mode = self._cfg.mode
        self._sync_logs()

        if mode == "clear":
            snapshot = self._bits.copy()  # manual protect: GET neither clears nor re-arms
        else:
            dirty = self._coll if mode == "ring" else self._bits
            snapshot = dirty.copy()
            dirty[:] = False  # re-arms exactly the harvested pages (ring: already re-armed at reset)
            self._c["dirty_pages"] = 0
        count = int(np.count_nonzero(snapshot))
        if mode != "clear" and count:
            self._c["tlb_flushes"] += 1
        self._c["harvests"] += 1
        self._c["harvested_pages"] += count
        return snapshot

    def clear(self, first: Any, count: Any, mask: Any = None) -> int:
        """Clear mode: clear and re-arm the dirty pages in [first, first + count).

        With ``mask`` (uint64 words, word i covering pages first + 64 i ...), only
        pages whose mask bit is set too. Returns the number of pages re-armed.
        """
        if self._cfg.mode != "clear":
            raise ModeError(f"clear() needs mode='clear' (manual dirty-log protect); this tracker's mode is {self._cfg.mode!r}")
        if not self._logging:
            raise StateError("cannot clear: dirty logging is not started; call start() first")
        first, count = check_clear_range(first, count, self._cfg.pages)
        selected = self._bits[first : first + count].copy()
        if mask is not None:
            selected &= self._mask_bits(mask, count)
        pages = np.flatnonzero(selected) + first
        if pages.size == 0:
            return 0
        self._bits[pages] = False
        self._c["cleared_pages"] += pages.size
        self._c["dirty_pages"] -= pages.size
        if self._blocks is not None:
            # A huge writable block (initially_set) is write-protected or split when a page in it is re-armed.
            blocks = np.unique(pages // BLOCK_PAGES)
            blocks = blocks[self._blocks[blocks] == _HUGE_WRITABLE]
            if self._cfg.huge_pages == "lazy":
                self._blocks[blocks] = _PROTECTED
            else:
                self._blocks[blocks] = _SPLIT
                self._c["splits"] += blocks.size
        self._c["tlb_flushes"] += 1
        return int(pages.size)

    @staticmethod
    def _mask_bits(mask: Any, count: int) -> np.ndarray:
        words = clear_mask(mask, count)
        need = (count + 63) // 64
        bits = np.unpackbits(words[:need].astype("<u8").view(np.uint8), bitorder="little")
        return bits[:count].astype(bool)

    # ------------------------------------------------------------------ inspection

    @property
    def pending(self) -> int:
        """Upper bound on the next harvest's size, without side effects (exact except in
        ring mode, where ring entries may repeat pages already collected)."""
        pending = self._c["dirty_pages"]
        if self._cfg.mode == "ring":
            pending += int(self._ring_used.sum())
        return int(pending)

    @property
    def stats(self) -> TrackerStats:
        vcpus = tuple(
            VcpuStats(
                **{name: int(self._v[name][v]) for name in _VCPU_COUNTERS},
                pml_index=int(self._pml_index[v]),
                ring_used=int(self._ring_used[v]),
            )
            for v in range(self._cfg.vcpus)
        )
        return TrackerStats(**{name: int(self._c[name]) for name in _COUNTERS}, vcpus=vcpus)

    def pml_log(self, vcpu: Any = 0) -> np.ndarray:
        """Live entries of a vCPU's PML log, most recent first (as the hardware fills it downwards)."""
        v = check_vcpu(vcpu, self._cfg.vcpus)
        if self._cfg.mode != "pml":
            raise ModeError(f"pml_log() needs mode='pml'; this tracker's mode is {self._cfg.mode!r}")
        return self._pml_log[v, self._pml_index[v] + 1 :].copy()

    def ring_entries(self, vcpu: Any = 0) -> np.ndarray:
        """Page offsets in a vCPU's dirty ring not yet collected, oldest first."""
        v = check_vcpu(vcpu, self._cfg.vcpus)
        if self._cfg.mode != "ring":
            raise ModeError(f"ring_entries() needs mode='ring'; this tracker's mode is {self._cfg.mode!r}")
        return self._ring[v, : self._ring_used[v]].copy()
