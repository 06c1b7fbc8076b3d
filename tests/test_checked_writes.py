"""A batch with a bad page index changes nothing, in large batches too.

Large batches (DL_CHECKED_MIN = 32768 writes and more, logging, no huge pages, no
versions attached) have their indices checked by the write loop as it reads them,
and a bad one undoes the writes before it (tracker.c, write_checked): the bits they
set (from a copy of the bitmap, and of the stale bitmap, when it is small beside the
batch, else from a journal of the writes), the counters, PML-full exits and ring-full reaps, and the log and ring
entries those overwrote. Here a tracker that was given a bad batch is compared, in
everything observable, with a twin that never saw it: the stats (every counter, per
vCPU too), what is pending, the PML logs, the rings, the stale bitmap, the versions,
and then what a good batch and two harvests do to both. Batches that keep the
separate check (narrow dtypes, marks attached) are held to the same contract.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
import pytest

from dirtylog import Tracker
from dirtylog.errors import ConfigError

CHECKED_MIN = 32768  # tracker.c: DL_CHECKED_MIN
N = 40000  # writes per large batch: above CHECKED_MIN
# tracker.c undoes from a copy of the bitmap when it has at most N / 8 words, else
# from a journal: one guest size for each
GUESTS = {"copy": 1 << 16, "journal": 1 << 19}
PAGES = GUESTS["copy"]
MODES = ("wp", "pml", "ring", "clear")
DTYPES = ("uint64", "int64", "uint32", "int32")


def _make(mode: str, stale: bool, versions: bool, small_logs: bool, pages: int = PAGES) -> Tracker:
    kw: dict = {}
    if small_logs:  # many PML-full exits and ring-full reaps per batch
        kw = {"pml_entries": 64, "ring_entries": 1024}
    t = Tracker(pages, mode=mode, vcpus=2, **kw)
    if stale:
        t.stale_start()
    if versions:
        t.attach_versions(np.zeros(pages, dtype=np.uint32))
    t.start()
    return t


def _observe(t: Tracker) -> List[Any]:
    obs: List[Any] = [t.stats, t.pending, t.logging]
    for v in range(t.vcpus):
        if t.mode == "pml":
            obs.append(t.pml_log(v).tolist())
        if t.mode == "ring":
            obs.append(t.ring_entries(v).tolist())
    obs.append(t.stale_words() if t.stale_kept else None)
    obs.append(None if t._versions is None else t._versions.copy())
    return obs


def _assert_same(a: Tracker, b: Tracker, what: str) -> None:
    oa, ob = _observe(a), _observe(b)
    for x, y in zip(oa, ob):
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, y), what
        else:
            assert x == y, what


def _bad_values(dtype: str, pages: int) -> List[int]:
    vals = [pages, pages + 12345]
    if dtype in ("uint64",):
        vals.append(2**64 - 1)
    if dtype in ("uint32",):
        vals.append(2**32 - 1)
    if dtype in ("int64", "int32"):
        vals += [-1, -(2**31)]
    return vals


def _history(t: Tracker, rng_seed: int) -> None:
    """Some state before the batch: bits set, logs and rings partly full, a harvest."""
    rng = np.random.default_rng(rng_seed)
    t.write(rng.integers(0, t.pages, 3000, dtype=np.uint64), vcpu=0)
    t.harvest()
    t.write(np.arange(100, 140, dtype=np.uint64), vcpu=1)  # a partly filled log or ring on vCPU 1
    t.write(rng.integers(0, t.pages, 20, dtype=np.uint64), vcpu=0)


def _batches(pages: int) -> dict:
    rng = np.random.default_rng(7)
    return {
        # distinct pages: in ring mode no write needs the live bits, unless its page was
        # pushed before the batch
        "first": rng.permutation(pages)[:N].astype(np.uint64),
        # random pages, repeats included: ring mode builds its live bits on the way
        "mixed": rng.integers(0, min(pages, 2 * N), N, dtype=np.uint64),
        # runs of neighbours (the loop that keeps the current word in a register)
        "runs": (rng.integers(0, pages // 64, N // 16, dtype=np.uint64)[:, None] * np.uint64(64)
                 + np.arange(16, dtype=np.uint64)[None, :]).reshape(-1),
    }


POSITIONS = (0, 1, 63, 64, 65, 150, 191, 192, 193, 500, 4097, N // 2, N - 64, N - 2, N - 1)


CASES = [(g, m, d) for g in GUESTS for m in ("-", "stale", "versions", "stale+versions") for d in DTYPES
         if g == "copy" or (m in ("-", "stale") and d in ("uint64", "int64"))]  # the journal: without marks


@pytest.mark.parametrize("guest,marks,dtype", CASES)
@pytest.mark.parametrize("mode", MODES)
def test_bad_large_batch_changes_nothing(mode: str, guest: str, marks: str, dtype: str) -> None:
    small = dtype in ("uint64", "int32")  # both log sizes over the dtypes
    stale, versions = "stale" in marks, "versions" in marks
    npages = GUESTS[guest]
    t = _make(mode, stale, versions, small, npages)
    twin = _make(mode, stale, versions, small, npages)
    for x in (t, twin):
        _history(x, 3)
    _assert_same(t, twin, "history")
    bads = _bad_values(dtype, npages)
    for kind, pages in _batches(npages).items():
        good = pages.astype(dtype)
        for vcpu in (0, 1):
            for k, pos in enumerate(POSITIONS):
                arr = good.copy()
                arr[pos] = bads[k % len(bads)]
                with pytest.raises(ConfigError, match=f"position {pos} "):
                    t.write(arr, vcpu=vcpu)
                _assert_same(t, twin, f"{kind} batch, vCPU {vcpu}, bad {arr[pos]} at {pos}")
            # two bad indices: the first is reported
            arr = good.copy()
            arr[N - 10] = bads[0]
            arr[N - 5] = bads[-1]
            with pytest.raises(ConfigError, match=f"position {N - 10} "):
                t.write(arr, vcpu=vcpu)
            _assert_same(t, twin, f"{kind}: two bad indices")
        # the two go on alike: this good batch, a harvest, more writes
        for x in (t, twin):
            x.write(good, vcpu=1)
        _assert_same(t, twin, f"{kind}: the good batch after the bad ones")
        assert np.array_equal(t.harvest(), twin.harvest())
        _assert_same(t, twin, f"{kind}: after a harvest")
    for x in (t, twin):
        x.write(np.arange(0, npages, 3, dtype=np.uint64), vcpu=0)
    assert np.array_equal(t.harvest(), twin.harvest())
    _assert_same(t, twin, "end")


@pytest.mark.parametrize("guest", GUESTS)
@pytest.mark.parametrize("small_logs", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_large_batches_write_as_small_ones(mode: str, small_logs: bool, guest: str) -> None:
    """The checked loop applies a good batch exactly as the separately checked one does
    (the same batch fed in pieces below CHECKED_MIN): counters, exits, logs, rings,
    harvests, over several rounds."""
    npages = GUESTS[guest]
    whole = _make(mode, False, False, small_logs, npages)
    pieces = _make(mode, False, False, small_logs, npages)
    for x in (whole, pieces):
        _history(x, 5)
    for rnd in range(3):
        for kind, batch in _batches(npages).items():
            for vcpu in (0, 1):
                whole.write(batch, vcpu=vcpu)
                for at in range(0, batch.size, 10000):
                    pieces.write(batch[at : at + 10000], vcpu=vcpu)
                _assert_same(whole, pieces, f"round {rnd}, {kind} batch on vCPU {vcpu}")
            if kind != "runs":
                assert np.array_equal(whole.harvest(), pieces.harvest())
        _assert_same(whole, pieces, f"round {rnd}")


# Bitmaps over 1 MiB take the prefetching variants of the write loops (tracker.c,
# DL_PF_MIN_BYTES); the guests above never do. A copy of such a bitmap is taken for
# batches of at least eight writes per word.
BIG_PAGES = (1 << 23) + 1000  # a 1 MiB + bitmap, a partial last word
BIG_COPY_N = ((BIG_PAGES + 63) // 64) * 8  # the smallest batch undone from a copy


@pytest.mark.parametrize("undo,stale", [("journal", False), ("copy", False), ("copy", True)])
@pytest.mark.parametrize("mode", ("wp", "pml", "ring"))
def test_large_guest_checked_batches(mode: str, undo: str, stale: bool) -> None:
    """Checked batches on a large guest (prefetching, both kinds of undo, with a stale
    bitmap copied too) do what the numpy reference does, and a bad one changes nothing.
    The batches are first writes (ring mode's first-write loop, no live bits), then
    rewrites of pages pushed before (ring mode builds its live bits on the way). The
    copy's batches (a million writes) are compared with a twin fed the same writes in
    pieces below CHECKED_MIN (the reference would take 20 s), the stale bitmap with
    every written page."""
    from dirtylog.reference import ReferenceTracker

    from test_tracker import observe

    rng = np.random.default_rng(11)
    n = BIG_COPY_N if undo == "copy" else N
    kw: dict = dict(mode=mode, vcpus=2)
    t = Tracker(BIG_PAGES, **kw)
    other: Any = Tracker(BIG_PAGES, **kw) if undo == "copy" else ReferenceTracker(BIG_PAGES, **kw)
    expected = np.zeros(BIG_PAGES, dtype=bool)
    if stale:
        t.stale_start()
    for x in (t, other):
        x.start()
    # distinct pages in scattered order (1000003 is a prime, coprime with BIG_PAGES)
    perm = (np.arange(2 * n, dtype=np.uint64) * np.uint64(1000003) + np.uint64(rng.integers(BIG_PAGES))) % np.uint64(BIG_PAGES)
    first = perm[:n]
    again = np.concatenate([perm[n : n + n // 2], first[: n - n // 2]])  # half new, half pushed before
    bad = first.copy()
    bad[n - 3] = BIG_PAGES
    for step, (vcpu, batch) in enumerate([(0, first), (1, bad), (1, again), (0, first[::-1].copy())]):
        if batch is bad:
            with pytest.raises(ConfigError, match=f"position {n - 3} "):
                t.write(batch, vcpu=vcpu)
        else:
            t.write(batch, vcpu=vcpu)
            for at in range(0, n, CHECKED_MIN - 1):
                other.write(batch[at : at + CHECKED_MIN - 1], vcpu=vcpu)
            expected[batch.astype(np.int64)] = True
        assert observe(t) == observe(other), f"step {step}"
        if stale:
            got = np.unpackbits(t.stale_words().view(np.uint8), bitorder="little")[:BIG_PAGES].astype(bool)
            assert np.array_equal(got, expected), f"step {step}: stale bitmap"
        if step == 2:
            assert np.array_equal(t.harvest(), other.harvest())
    assert np.array_equal(t.harvest(), other.harvest())
    assert observe(t) == observe(other)


@pytest.mark.parametrize("guest", GUESTS)
@pytest.mark.parametrize("stale", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_checked_batches_keep_no_memory(mode: str, stale: bool, guest: str) -> None:
    """A checked batch's undo buffer (the bitmap's copy or the journal) lives for the
    call only: the tracker's memory_bytes is the same before and after a large batch,
    good or rejected, and does not grow with the batch's size."""
    npages = GUESTS[guest]
    t = _make(mode, stale, False, False, npages)
    before = t.memory_bytes
    assert before == _make(mode, stale, False, False, npages).memory_bytes
    rng = np.random.default_rng(5)
    for n in (N, 4 * N, 40 * N):
        batch = rng.integers(0, npages, n, dtype=np.uint64)
        bad = batch.copy()
        bad[n // 2] = npages
        with pytest.raises(ConfigError, match=f"position {n // 2} "):
            t.write(bad)
        assert t.memory_bytes == before, f"after a rejected batch of {n}"
        t.write(batch, vcpu=1)
        assert t.memory_bytes == before, f"after a batch of {n}"
        t.harvest()


@pytest.mark.parametrize("seed", range(4))
def test_random_batches_match_the_reference(seed: int) -> None:
    """Ring and PML modes' first writes run in a loop of their own (tracker.c, fresh_*) that stops at a
    rewrite, where the write loop takes over for the rest of the span, and large batches check their indices
    in the loop: random batches (scattered, a hot set, sequential, mixed; short, within a log's or ring's
    room, above DL_CHECKED_MIN; sometimes with a bad index; every dtype) against the numpy reference, in
    everything observable after each call: the error, the stats, every vCPU's ring or PML log, the harvest.
    (A C harness comparing two builds, with fresh_* on and off, on 3,600 such cases found no difference.)"""
    from dirtylog.reference import ReferenceTracker

    rng = np.random.default_rng(seed)
    own_rng = np.random.default_rng(1000 + seed)
    for _ in range(3):
        pages = int(rng.choice([100, 3000, 70000]))
        mode = str(rng.choice(["ring", "pml"]))
        nv = int(rng.integers(1, 4))
        kw: dict = {"mode": mode, "vcpus": nv}
        if mode == "ring":
            kw["ring_entries"] = int(2 ** rng.integers(10, 17))  # 1024 .. 65536
        else:
            kw["pml_entries"] = int(rng.choice([512, 1, 37, 4096]))
        a, b = Tracker(pages, **kw), ReferenceTracker(pages, **kw)
        if mode == "ring":  # a ring-full exit reaps every ring, or its own (dirty-limit's), at random
            a.reap_own = b.reap_own = bool(own_rng.random() < 0.5)
        a.start()
        b.start()
        hot0, hot = int(rng.integers(0, pages)), int(rng.integers(1, min(pages, 5000) + 1))
        for _ in range(12):
            r = rng.random()
            if r < 0.8:
                n = int(rng.choice([1 + rng.integers(0, 64), 64 + rng.integers(0, 8000),
                                    CHECKED_MIN + rng.integers(0, 8000)]))
                shape = int(rng.integers(0, 4))
                if shape == 0:
                    batch = rng.integers(0, pages, n)
                elif shape == 1:
                    batch = (hot0 + rng.integers(0, hot, n)) % pages
                elif shape == 2:
                    batch = (int(rng.integers(0, pages)) + np.arange(n)) % pages
                else:
                    batch = np.where(rng.random(n) < 0.75, rng.integers(0, pages, n),
                                     (hot0 + rng.integers(0, hot, n)) % pages)
                if rng.random() < 0.15:
                    batch[rng.integers(0, n)] = pages + int(rng.integers(0, 3))
                batch = batch.astype(str(rng.choice(DTYPES)))
                v = int(rng.integers(0, nv))
                errors: List[Optional[str]] = []
                for t in (a, b):
                    try:
                        t.write(batch, vcpu=v)
                        errors.append(None)
                    except ConfigError as e:
                        errors.append(str(e))
                assert errors[0] == errors[1]
            elif r < 0.95:
                assert np.array_equal(a.harvest(), b.harvest())
            else:
                for t in (a, b):
                    t.stop()
                    t.start()
            assert a.stats.to_dict() == b.stats.to_dict()
            for v in range(nv):
                if mode == "ring":
                    assert np.array_equal(a.ring_entries(v), b.ring_entries(v))
                else:
                    assert np.array_equal(a.pml_log(v), b.pml_log(v))
        assert np.array_equal(a.harvest(), b.harvest())


@pytest.mark.parametrize("pages", [N + 1000, 64 * 8 * N])  # the bitmap copied, or the writes journaled
def test_a_rejected_batch_restores_the_rings_its_exit_reaped(pages: int) -> None:
    """A ring-full exit reaps every vCPU's ring (QEMU's kvm_dirty_ring_reap(kvm_state, NULL)), so a large
    checked batch that fills its vCPU's ring and then meets a bad index must give back the other vCPUs'
    rings too: vCPU 1's 100 entries, emptied by vCPU 0's exit, are there again after the error."""
    t = Tracker(pages, mode="ring", vcpus=2, ring_entries=1024)  # soft limit 448
    t.start()
    t.write(np.arange(N, N + 100, dtype=np.uint64), vcpu=1)
    before = (t.stats, t.ring_entries(0).tolist(), t.ring_entries(1).tolist())
    batch = np.arange(N, dtype=np.uint64)  # first writes: vCPU 0's ring fills 89 times
    batch[N - 5] = pages
    with pytest.raises(ConfigError, match=f"position {N - 5} "):
        t.write(batch, vcpu=0)
    assert (t.stats, t.ring_entries(0).tolist(), t.ring_entries(1).tolist()) == before
    t.write(batch[: N - 5], vcpu=0)  # the good part: the first exit reaps vCPU 1's ring
    assert t.stats.vcpus[1].ring_used == 0 and t.stats.ring_full_exits == (N - 5) // 448
