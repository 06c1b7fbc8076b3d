"""Hand-computed scenarios for the numpy reference tracker (dirtylog.reference)."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import numpy as np
import pytest

from dirtylog.errors import ConfigError, ModeError, StateError
from dirtylog.reference import ReferenceTracker
from dirtylog.stats import TrackerStats, VcpuStats


def started(*args, **kwargs) -> ReferenceTracker:
    t = ReferenceTracker(*args, **kwargs)
    t.start()
    return t


def as_list(a: np.ndarray) -> list:
    assert a.dtype == np.uint64
    return a.tolist()


# ---------------------------------------------------------------------- configuration and stats


def test_config_properties():
    t = ReferenceTracker(1000, mode="ring", vcpus=3, page_size=8192, huge_pages="lazy", pml_entries=8, ring_entries=1024)
    assert (t.pages, t.mode, t.vcpus, t.page_size, t.huge_pages, t.pml_entries) == (1000, "ring", 3, 8192, "lazy", 8)
    assert t.config.ring_entries == 1024 and t.config.ring_soft_limit == 448  # KVM's: 1024 - 64 - 512
    assert t.initially_set is False and t.logging is False
    assert t.pending == 0
    s = t.stats
    zeros = {f.name: 0 for f in dataclasses.fields(TrackerStats) if f.name != "vcpus"}
    assert s == TrackerStats(**zeros, vcpus=tuple(VcpuStats(0, 0, 0, 0, 0, 0, 7, 0) for _ in range(3)))
    assert t.memory_bytes >= 2 * 1000 + 3 * 512 * 8
    assert t.memory_bytes > ReferenceTracker(1000).memory_bytes >= 1000


def test_bad_config_rejected():
    with pytest.raises(ConfigError):
        ReferenceTracker(0)
    with pytest.raises(ConfigError):
        ReferenceTracker(10, mode="bogus")
    with pytest.raises(ConfigError):
        ReferenceTracker(10, mode="wp", initially_set=True)
    with pytest.raises(ConfigError):
        ReferenceTracker(10, mode="ring", ring_entries=300)
    with pytest.raises(ConfigError, match="one of 1024, 2048, .*, 65536 .*PML.*got 512"):
        ReferenceTracker(10, mode="ring", ring_entries=512)  # KVM on x86 with PML takes 1024 at least


def test_stats_dataclasses():
    t = started(100, vcpus=2)
    t.write([1, 2], vcpu=1)
    s = t.stats
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.writes = 5  # type: ignore[misc]
    d = s.to_dict()
    assert d["writes"] == 2 and d["faults"] == 2 and d["dirty_pages"] == 2
    assert isinstance(d["vcpus"], list) and d["vcpus"][1]["dirtied"] == 2 and d["vcpus"][0]["writes"] == 0
    assert "exits" not in d
    assert s.exits == 2 and s.vcpus[1].exits == 2 and s.vcpus[0].exits == 0
    assert TrackerStats(**{**d, "vcpus": tuple(VcpuStats(**v) for v in d["vcpus"])}) == s


# ---------------------------------------------------------------------- WP


def test_wp_basic_round_trip():
    t = started(100)
    t.write([5, 5, 7])
    s = t.stats
    assert (s.writes, s.faults, s.dirty_pages, s.vcpus[0].dirtied) == (3, 2, 2, 2)
    assert t.pending == 2
    assert as_list(t.harvest()) == [5, 7]
    s = t.stats
    assert (s.harvests, s.harvested_pages, s.tlb_flushes, s.dirty_pages) == (1, 2, 1, 0)
    t.write([5])  # re-armed by the harvest: faults again
    assert t.stats.faults == 3
    assert as_list(t.harvest()) == [5]
    assert as_list(t.harvest()) == []  # empty harvest: no flush
    s = t.stats
    assert (s.harvests, s.harvested_pages, s.tlb_flushes, s.kicks) == (3, 3, 2, 0)
    assert s.exits == 3


def test_writes_while_not_logging_only_count():
    t = ReferenceTracker(100, vcpus=2)
    t.write([1, 2, 3], vcpu=1)
    s = t.stats
    assert (s.writes, s.vcpus[1].writes, s.faults, s.dirty_pages, s.vcpus[1].dirtied) == (3, 3, 0, 0, 0)
    t.start()
    assert as_list(t.harvest()) == []
    t.write([4])
    t.stop()
    assert t.stats.dirty_pages == 0 and t.pending == 0
    t.write([9])
    t.start()  # nothing survives a stop
    assert as_list(t.harvest()) == []
    assert t.stats.writes == 5 and t.stats.faults == 1


def test_wp_vcpu_attribution():
    t = started(100, vcpus=3)
    t.write([1, 2], vcpu=2)
    t.write([2, 3], vcpu=0)
    s = t.stats
    assert [v.writes for v in s.vcpus] == [2, 0, 2]
    assert [v.faults for v in s.vcpus] == [1, 0, 2]
    assert [v.dirtied for v in s.vcpus] == [1, 0, 2]
    assert s.faults == 3 and s.dirty_pages == 3


def test_harvest_bitmap():
    t = started(130)
    t.write(np.array([0, 63, 64, 129], dtype=np.uint32))
    words = t.harvest_bitmap()
    assert words.dtype == np.uint64 and words.shape == (3,)
    assert words.tolist() == [1 | (1 << 63), 1, 2]
    s = t.stats
    assert (s.harvests, s.harvested_pages, s.tlb_flushes, s.dirty_pages) == (1, 4, 1, 0)
    assert t.harvest_bitmap().tolist() == [0, 0, 0]
    assert t.stats.tlb_flushes == 1


def test_write_accepts_integer_dtypes_and_empty():
    for dtype in (np.int8, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        t = started(100)
        t.write(np.array([3, 99, 3], dtype=dtype))
        assert as_list(t.harvest()) == [3, 99]
    t = started(100)
    t.write([])
    t.write(np.array([], dtype=np.float64))
    t.write(7)  # a single page
    assert t.stats.writes == 1 and as_list(t.harvest()) == [7]


def test_wp_large_batch_is_vectorized():
    rng = np.random.default_rng(1)
    n = 1 << 20
    t = started(n)
    batch = rng.integers(0, n, size=n)
    t.write(batch)
    expected = np.unique(batch)
    assert t.stats.faults == expected.size
    assert np.array_equal(t.harvest(), expected.astype(np.uint64))


# ---------------------------------------------------------------------- PML


def test_pml_log_fills_then_full_exit_on_next_page():
    t = started(100, mode="pml", pml_entries=4)
    t.write([10, 11, 12, 13])  # fills the log exactly: no exit yet
    s = t.stats
    assert (s.pml_logged, s.pml_full_exits, s.faults, s.dirty_pages) == (4, 0, 0, 4)
    assert s.vcpus[0].pml_index == -1
    assert as_list(t.pml_log(0)) == [13, 12, 11, 10]
    t.write([14])  # log full: exit, drain, then log the page
    s = t.stats
    assert (s.pml_logged, s.pml_full_exits, s.vcpus[0].pml_full_exits, s.dirty_pages) == (5, 1, 1, 5)
    assert s.vcpus[0].pml_index == 2
    assert as_list(t.pml_log(0)) == [14]
    t.write([10, 14])  # D bits set: nothing
    assert t.stats.pml_logged == 5 and t.pending == 5
    assert s.exits == 1
    assert as_list(t.harvest()) == [10, 11, 12, 13, 14]
    s = t.stats
    assert (s.kicks, s.vcpus[0].kicks, s.tlb_flushes, s.dirty_pages, s.vcpus[0].pml_index) == (1, 1, 1, 0, 3)
    assert as_list(t.pml_log()) == []
    t.write([10])  # D bit cleared by the harvest: logged again
    assert as_list(t.pml_log(0)) == [10] and t.stats.pml_logged == 6


def test_pml_order_and_duplicates_within_batch():
    t = started(100, mode="pml", pml_entries=8)
    t.write([3, 1, 3, 2, 1])
    assert as_list(t.pml_log()) == [2, 1, 3]
    assert t.stats.pml_logged == 3 and t.stats.writes == 5


def test_pml_several_vcpus_and_kicks():
    t = started(100, mode="pml", vcpus=2, pml_entries=2)
    t.write([1, 2, 3], vcpu=0)  # third page: full exit on vCPU 0
    t.write([4, 1], vcpu=1)  # page 1 already has its D bit set
    s = t.stats
    assert [v.pml_full_exits for v in s.vcpus] == [1, 0]
    assert [v.pml_index for v in s.vcpus] == [0, 0]
    assert [v.dirtied for v in s.vcpus] == [3, 1]
    assert as_list(t.pml_log(0)) == [3] and as_list(t.pml_log(1)) == [4]
    assert as_list(t.harvest()) == [1, 2, 3, 4]
    s = t.stats
    assert s.kicks == 2 and [v.kicks for v in s.vcpus] == [1, 1]
    t.harvest()  # kicks even when nothing is dirty, but no flush
    s = t.stats
    assert (s.kicks, s.tlb_flushes, s.harvests) == (4, 1, 2)


def test_pml_log_exact_multiple():
    t = started(100, mode="pml", pml_entries=4)
    t.write(np.arange(8))  # 8 pages: exit only when the 5th needs a slot
    s = t.stats
    assert (s.pml_full_exits, s.pml_logged, s.vcpus[0].pml_index) == (1, 8, -1)
    t.write([8])
    assert t.stats.pml_full_exits == 2


# ---------------------------------------------------------------------- ring


def test_ring_soft_limit_exit_and_reap():
    t = started(1000, mode="ring", ring_entries=1024)  # soft limit 448: KVM's 1024 - 64 - 512 on x86 with PML
    t.write(np.arange(447))
    s = t.stats
    assert (s.ring_pushed, s.ring_full_exits, s.dirty_pages, s.vcpus[0].ring_used) == (447, 0, 0, 447)
    assert as_list(t.ring_entries(0)) == list(range(447))
    assert t.pending == 447
    t.write([447])
    s = t.stats
    assert (s.ring_pushed, s.ring_full_exits, s.vcpus[0].ring_full_exits) == (448, 1, 1)
    assert (s.ring_reaped, s.vcpus[0].ring_used, s.dirty_pages, s.tlb_flushes) == (448, 0, 448, 1)
    assert s.faults == 0 and s.exits == 1
    assert as_list(t.ring_entries()) == []
    t.write([0])  # reset by the reap: armed again
    s = t.stats
    assert (s.ring_pushed, s.vcpus[0].ring_used, s.vcpus[0].dirtied) == (449, 1, 449)
    assert t.pending == 449  # an upper bound: page 0 is collected and in the ring
    assert as_list(t.harvest()) == list(range(448))
    s = t.stats
    # one flush for the reap of the ring at harvest, one for the harvest itself
    assert (s.ring_reaped, s.tlb_flushes, s.dirty_pages, s.harvested_pages) == (449, 3, 0, 448)
    assert t.pending == 0
    assert as_list(t.harvest()) == []
    assert t.stats.tlb_flushes == 3  # empty rings, empty result: no flush


def test_ring_rearm_within_one_batch():
    t = started(1000, mode="ring", ring_entries=1024)
    t.write(np.concatenate([np.arange(448), [0, 5, 0]]))  # soft limit 448
    s = t.stats
    assert (s.ring_full_exits, s.ring_pushed, s.ring_reaped) == (1, 450, 448)
    assert as_list(t.ring_entries()) == [0, 5]


def test_ring_long_batch_two_passes():
    # 5000 new pages then the same 5000 again, soft limit 448:
    # pass 1 exits at pushes 448, 896, ..., 4928 (11 exits; the ring keeps 4928..4999, 72 entries);
    # pass 2 re-pushes 0..375 (all reaped; 72 + 376 = 448), the exit after 0..375 also resets
    # 4928..4999, so 376..4999 are pushed too: 4624 = 10 x 448 + 144, leaving 4856..4999 in the ring.
    t = started(5000, mode="ring", ring_entries=1024)
    batch = np.concatenate([np.arange(5000), np.arange(5000)])
    t.write(batch)
    s = t.stats
    assert (s.ring_full_exits, s.ring_pushed, s.ring_reaped) == (22, 10000, 22 * 448)
    assert as_list(t.ring_entries()) == list(range(4856, 5000))
    assert (s.dirty_pages, t.pending) == (5000, 5144)
    assert as_list(t.harvest()) == list(range(5000))


def test_ring_pages_shared_between_vcpus():
    t = started(100, mode="ring", vcpus=2, ring_entries=1024)
    t.write([1, 2], vcpu=0)
    t.write([2, 3], vcpu=1)  # page 2 is already in vCPU 0's ring
    assert as_list(t.ring_entries(0)) == [1, 2] and as_list(t.ring_entries(1)) == [3]
    s = t.stats
    assert [v.ring_used for v in s.vcpus] == [2, 1] and [v.dirtied for v in s.vcpus] == [2, 1]
    assert t.pending == 3 and s.dirty_pages == 0
    assert as_list(t.harvest()) == [1, 2, 3]
    s = t.stats
    # the harvest kicks both vCPUs first, as QEMU's kvm_dirty_ring_flush does, then reaps both rings
    assert (s.ring_reaped, s.tlb_flushes, s.kicks) == (3, 3, 2)
    assert [v.kicks for v in s.vcpus] == [1, 1]


def _naive_ring(pages, soft, batches):
    """Per-write loop over a single vCPU's ring: (collected set, ring, exits)."""
    kvm, coll, ring, exits = set(), set(), [], 0
    for batch in batches:
        for p in batch:
            if p in kvm:
                continue
            kvm.add(p)
            ring.append(p)
            if len(ring) == soft:
                exits += 1
                coll.update(ring)
                kvm.difference_update(ring)
                ring = []
    return coll, ring, exits


def test_ring_matches_naive_per_write_loop():
    rng = np.random.default_rng(7)
    for _ in range(20):
        pages = int(rng.integers(1000, 15000))
        batches = [rng.integers(0, pages, size=int(rng.integers(0, 15000))) for _ in range(4)]
        t = started(pages, mode="ring", ring_entries=1024)
        for b in batches:
            t.write(b)
        coll, ring, exits = _naive_ring(pages, 448, [b.tolist() for b in batches])
        assert as_list(t.ring_entries()) == ring
        assert t.stats.ring_full_exits == exits
        assert t.stats.dirty_pages == len(coll)
        assert as_list(t.harvest()) == sorted(coll | set(ring))


# ---------------------------------------------------------------------- clear mode


def test_clear_mode_harvest_does_not_clear():
    t = started(256, mode="clear")
    t.write([1, 70, 200])
    assert t.stats.faults == 3
    assert as_list(t.harvest()) == [1, 70, 200]
    assert as_list(t.harvest()) == [1, 70, 200]
    s = t.stats
    assert (s.harvests, s.harvested_pages, s.tlb_flushes, s.dirty_pages) == (2, 6, 0, 3)
    t.write([1])  # still recorded
    assert t.stats.faults == 3
    assert t.clear(0, 64) == 1
    s = t.stats
    assert (s.cleared_pages, s.tlb_flushes, s.dirty_pages) == (1, 1, 2)
    assert t.pending == 2
    t.write([1])  # re-armed by the clear
    assert t.stats.faults == 4
    assert t.clear(0, 64) == 1
    assert t.clear(0, 64) == 0  # nothing set: no flush
    assert t.stats.tlb_flushes == 2


def test_clear_with_mask():
    t = started(256, mode="clear")
    t.write([70, 71, 200, 255])
    # pages 64..255: word 0 covers 64..127, word 1 128..191, word 2 192..255
    mask = np.array([1 << 7, 0, 1 << 8], dtype=np.uint64)  # pages 71 and 200
    assert t.clear(64, 192, mask) == 2
    assert as_list(t.harvest()) == [70, 255]
    assert t.stats.cleared_pages == 2 and t.stats.dirty_pages == 2
    full = np.full(3, np.iinfo(np.uint64).max, dtype=np.uint64)  # longer than needed is fine
    assert t.clear(64, 64, full) == 1  # page 70
    assert as_list(t.harvest()) == [255]


def test_clear_partial_range_at_the_end():
    t = started(100, mode="clear")
    t.write([63, 64, 99])
    assert t.clear(64, 36) == 2
    assert t.clear(64, 36, np.array([np.uint64(1) << np.uint64(35)], dtype=np.uint64)) == 0
    assert as_list(t.harvest()) == [63]


def test_initially_set_lazy():
    t = ReferenceTracker(1000, mode="clear", initially_set=True, huge_pages="lazy")
    t.start()
    s = t.stats
    assert (s.dirty_pages, s.splits, t.pending) == (1000, 0, 1000)
    assert as_list(t.harvest()) == list(range(1000))
    t.write([5, 600])  # blocks are huge and writable: nothing
    assert t.stats.faults == 0 and t.stats.splits == 0
    assert t.clear(0, 64) == 64  # block 0 is write-protected whole now
    s = t.stats
    assert (s.cleared_pages, s.dirty_pages, s.splits, s.tlb_flushes) == (64, 936, 0, 1)
    t.write([100])  # protected block, page still dirty: fault + split, nothing recorded
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages, s.vcpus[0].dirtied) == (1, 1, 936, 0)
    t.write([5, 6, 5])  # block split: one fault per armed page
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages, s.vcpus[0].dirtied) == (3, 1, 938, 2)
    t.write([700])  # block 1 is still huge and writable
    assert t.stats.faults == 3
    t.stop()
    t.start()
    assert t.stats.dirty_pages == 1000


def test_initially_set_lazy_fault_records_page():
    t = started(1000, mode="clear", initially_set=True, huge_pages="lazy")
    t.clear(512, 488)  # every page of the partial block 1
    t.write([513, 514])  # first write: huge fault (records 513), then a normal fault
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages, s.vcpus[0].dirtied) == (2, 1, 514, 2)


def test_initially_set_eager():
    t = started(1000, mode="clear", initially_set=True, huge_pages="eager")
    assert t.stats.splits == 0
    assert t.clear(512, 64) == 64  # block 1 split now
    assert t.stats.splits == 1
    assert t.clear(576, 64) == 64  # same block: already split
    assert t.stats.splits == 1
    t.write([512])
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages) == (1, 1, 873)


def test_initially_set_without_huge_pages():
    t = started(100, mode="clear", initially_set=True)
    mask = np.array([0b1010, 0], dtype=np.uint64)
    assert t.clear(0, 100, mask) == 2
    assert t.pending == 98
    t.write([1, 2, 3])
    assert t.stats.faults == 2
    assert t.pending == 100


# ---------------------------------------------------------------------- huge pages


def test_wp_lazy_split_counting_partial_last_block():
    t = ReferenceTracker(1100, huge_pages="lazy")  # blocks of 512, 512, 76 pages
    t.start()
    assert t.stats.splits == 0
    t.write([1050])
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages) == (1, 1, 1)
    t.write([1051, 1099, 1050])
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages) == (3, 1, 3)
    t.write([7, 7, 8, 600])  # block 0: fault+split on 7, fault on 8; block 1: fault+split on 600
    s = t.stats
    assert (s.faults, s.splits, s.dirty_pages, s.vcpus[0].faults, s.vcpus[0].dirtied) == (6, 3, 6, 6, 6)
    assert as_list(t.harvest()) == [7, 8, 600, 1050, 1051, 1099]
    t.write([7])  # block stays split, page re-armed: ordinary fault
    s = t.stats
    assert (s.faults, s.splits) == (7, 3)
    t.stop()
    t.start()  # blocks collapsed by stop, protected again at start
    t.write([7])
    assert (t.stats.faults, t.stats.splits) == (8, 4)


def test_eager_splits_at_start():
    t = ReferenceTracker(1100, huge_pages="eager")
    t.start()
    assert t.stats.splits == 3
    t.write([0, 1, 1099])
    s = t.stats
    assert (s.faults, s.splits) == (3, 3)
    t.stop()
    t.start()
    assert t.stats.splits == 6


def test_pml_lazy_fault_bypasses_the_log():
    t = started(1024, mode="pml", huge_pages="lazy", pml_entries=4)
    t.write([0])
    s = t.stats
    assert (s.faults, s.splits, s.pml_logged, s.dirty_pages, s.vcpus[0].dirtied) == (1, 1, 0, 1, 1)
    assert as_list(t.pml_log()) == []
    t.write([1, 2, 0])
    assert as_list(t.pml_log()) == [2, 1]
    assert t.stats.faults == 1 and t.stats.pml_logged == 2
    assert as_list(t.harvest()) == [0, 1, 2]
    t.write([0])  # block split: through the log now
    assert as_list(t.pml_log()) == [0]
    t.write([600, 601])
    s = t.stats
    assert (s.faults, s.splits, s.pml_logged) == (2, 2, 4)


def test_ring_lazy_fault_pushes_to_ring():
    t = started(1024, mode="ring", huge_pages="lazy", ring_entries=1024)
    t.write([0, 1, 0])
    s = t.stats
    assert (s.faults, s.splits, s.ring_pushed) == (1, 1, 2)
    assert as_list(t.ring_entries()) == [0, 1]


def test_ring_lazy_huge_fault_can_fill_the_ring():
    t = started(4096, mode="ring", huge_pages="lazy", ring_entries=1024)
    t.write(np.concatenate([np.arange(300), np.arange(512, 659)]))  # blocks 0 and 1: two huge faults, 445 pushes
    t.write([1024])  # huge fault whose push reaches the soft limit (448)
    s = t.stats
    assert (s.faults, s.splits, s.ring_full_exits, s.ring_reaped, s.dirty_pages) == (3, 3, 1, 448, 448)


# ---------------------------------------------------------------------- errors leave the state unchanged


def _observe(t: ReferenceTracker):
    obs = [t.stats, t.pending, t.logging]
    if t.mode == "pml":
        obs += [as_list(t.pml_log(v)) for v in range(t.vcpus)]
    if t.mode == "ring":
        obs += [as_list(t.ring_entries(v)) for v in range(t.vcpus)]
    return obs


@pytest.mark.parametrize("mode", ["wp", "pml", "ring", "clear"])
def test_bad_writes_change_nothing(mode):
    t = started(100, mode=mode, vcpus=2, huge_pages="lazy")
    t.write([1, 2, 50])
    before = _observe(t)
    with pytest.raises(ConfigError, match=r"page -1 at position 1 .*negative"):
        t.write([3, -1, 4])
    with pytest.raises(ValueError, match=r"page 100 at position 1 .*out of range"):
        t.write(np.array([3, 100, 200], dtype=np.uint64))
    with pytest.raises(TypeError):
        t.write(np.array([3.0]))
    with pytest.raises(TypeError):
        t.write(["a"])
    with pytest.raises(ConfigError, match="vcpu"):
        t.write([3], vcpu=2)
    with pytest.raises(ConfigError, match="vcpu"):
        t.write([3], vcpu=-1)
    assert _observe(t) == before
    t.write([3])
    assert t.stats.writes == 4
    assert 3 in as_list(t.harvest())


def test_state_errors():
    t = ReferenceTracker(100)
    before = _observe(t)
    with pytest.raises(StateError):
        t.harvest()
    with pytest.raises(StateError):
        t.harvest_bitmap()
    with pytest.raises(StateError):
        t.stop()
    assert _observe(t) == before
    t.start()
    t.write([4])
    before = _observe(t)
    with pytest.raises(StateError):
        t.start()
    with pytest.raises(RuntimeError):
        t.start()
    assert _observe(t) == before
    assert as_list(t.harvest()) == [4]


def test_mode_errors():
    for mode in ("wp", "pml", "ring"):
        t = started(128, mode=mode)
        t.write([1])
        before = _observe(t)
        with pytest.raises(ModeError):
            t.clear(0, 64)
        assert _observe(t) == before
    t = started(128, mode="wp")
    with pytest.raises(ModeError):
        t.pml_log(0)
    with pytest.raises(ModeError):
        t.ring_entries(0)
    with pytest.raises(ModeError):
        started(128, mode="pml").ring_entries(0)
    with pytest.raises(ModeError):
        started(128, mode="ring").pml_log(0)
    with pytest.raises(ConfigError):
        started(128, mode="pml").pml_log(1)
    with pytest.raises(ConfigError):
        started(128, mode="ring").ring_entries(1)


def test_bad_clears_change_nothing():
    t = ReferenceTracker(300, mode="clear", huge_pages="lazy")
    with pytest.raises(StateError):
        t.clear(0, 64)
    t.start()
    t.write([1, 65, 299])
    before = _observe(t)
    bad_calls: List[Dict[str, Any]] = [
        dict(first=32, count=64),  # first not 64-aligned
        dict(first=0, count=10),  # count not aligned and not reaching the end
        dict(first=256, count=64),  # past the last page
        dict(first=-64, count=64),
        dict(first=0, count=64, mask=np.array([1.5])),  # not integer words
        dict(first=0, count=128, mask=np.array([1], dtype=np.uint64)),  # too short
        dict(first=0, count=64, mask=np.ones((1, 1), dtype=np.uint64)),  # not 1-D
    ]
    for kwargs in bad_calls:
        with pytest.raises(ConfigError):
            t.clear(**kwargs)
    with pytest.raises(TypeError):
        t.clear("0", 64)
    assert _observe(t) == before
    assert t.clear(256, 44) == 1
    assert t.clear(0, 128, np.zeros(2, dtype=np.uint64)) == 0
    assert t.clear(0, 0) == 0
    assert as_list(t.harvest()) == [1, 65]
    assert t.clear(0, 64, mask=np.array([1 << 1], dtype=np.int64)) == 1  # any integer words
    assert as_list(t.harvest()) == [65]


def test_reference_harvest_into_a_buffer_like_the_tracker():
    t = ReferenceTracker(100)
    t.start()
    t.write([4, 2, 4])
    buf = np.zeros(10, dtype=np.uint64)
    got = t.harvest(out=buf)
    assert got.tolist() == [2, 4] and np.shares_memory(got, buf)
