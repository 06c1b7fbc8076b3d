"""`dirtylog.RealTracker`: real dirty tracking of this process's memory (userfaultfd WP async + PAGEMAP_SCAN).

The tests run where the kernel has the features (Linux 6.7+, userfaultfd allowed) and
skip with the reason elsewhere.
"""
from __future__ import annotations

import mmap
import threading

import numpy as np
import pytest

import dirtylog
from dirtylog import ConfigError, RealTracker, StateError
from dirtylog._lib import ffi, lib
from dirtylog.realtracker import kernel_support

SUPPORT = kernel_support()
needs_kernel = pytest.mark.skipif(not SUPPORT.ok, reason=SUPPORT.missing() or "supported")
PAGE = int(lib.dl_rt_page_size())


def mapped(pages: int, shared: bool = False) -> tuple:
    m = mmap.mmap(-1, pages * PAGE, flags=(mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE) | mmap.MAP_ANONYMOUS)
    return m, np.frombuffer(m, dtype=np.uint8)


def test_support_is_reported_in_one_sentence():
    s = kernel_support()
    assert isinstance(s.ok, bool)
    assert (s.missing() == "") == s.ok


@needs_kernel
def test_exact_pages_per_harvest():
    m, a = mapped(64)
    t = RealTracker(a)
    assert (t.pages, t.offset, t.page_size) == (64, 0, PAGE)
    t.start()
    assert t.logging and t.harvest().size == 0  # nothing written since start
    for p in (5, 7, 63, 7):
        a[p * PAGE + 11] = 1
    h = t.harvest()
    assert h.dtype == np.uint64 and h.tolist() == [5, 7, 63]
    assert t.harvest().size == 0  # re-protected: nothing new
    a[7 * PAGE] = 2
    a[0] = 1
    assert t.harvest().tolist() == [0, 7]
    t.stop()
    a[3 * PAGE] = 1  # not tracked any more
    assert not t.logging
    with pytest.raises(StateError):
        t.harvest()


@needs_kernel
def test_writes_before_start_are_not_reported_and_restart_works():
    m, a = mapped(8)
    a[:] = 1  # populated before tracking
    t = RealTracker(a)
    t.start()
    assert t.harvest().size == 0
    a[2 * PAGE] = 5
    t.stop()
    t.start()  # a fresh start re-arms every page
    assert t.harvest().size == 0
    a[4 * PAGE] = 5
    assert t.harvest().tolist() == [4]
    t.close()


@needs_kernel
def test_numpy_heap_array_and_out_buffer():
    b = np.zeros(3 * 2**20, dtype=np.uint8)  # 3 MiB: its own mapping, not page-aligned
    with RealTracker(b) as t:
        assert t.offset == b.ctypes.data % PAGE
        b[::PAGE * 16] = 1
        out = np.empty(t.pages, dtype=np.uint64)
        h = t.harvest(out=out)
        assert h.base is out or h.base is out.base
        want = sorted({(t.offset + i) // PAGE for i in range(0, b.size, PAGE * 16)})
        assert h.tolist() == want
    assert not t.logging


@needs_kernel
def test_address_range_and_transparent_huge_pages():
    n = 1024  # 4 MiB: may be backed by THP; reports stay per 4 KiB page
    m = mmap.mmap(-1, n * PAGE)
    a = np.frombuffer(m, dtype=np.uint8)
    a[:] = 1
    addr = int(ffi.cast("uintptr_t", ffi.from_buffer(m)))
    t = RealTracker(address=addr, length=n * PAGE)
    t.start()
    a[513 * PAGE] = 2
    a[1000 * PAGE] = 2
    assert t.harvest().tolist() == [513, 1000]
    t.stop()


@needs_kernel
def test_discarded_pages():
    """Private anonymous memory discarded with MADV_DONTNEED is reported once (its content became
    zeros); shared memory keeps its write protection and is not (documented in realtrack.h)."""
    for shared, want in ((False, [3, 4]), (True, [])):
        m, a = mapped(16, shared=shared)
        a[:] = 1
        t = RealTracker(a)
        t.start()
        m.madvise(mmap.MADV_DONTNEED, 3 * PAGE, 2 * PAGE)
        assert t.harvest().tolist() == want
        assert t.harvest().size == 0
        a[3 * PAGE] = 1
        assert t.harvest().tolist() == [3]
        t.stop()


@needs_kernel
def test_shared_memory_is_tracked():
    m, a = mapped(8, shared=True)
    with RealTracker(m) as t:
        a[6 * PAGE] = 1
        assert t.harvest().tolist() == [6]


@needs_kernel
def test_two_trackers_cannot_share_a_range_and_errors_say_why():
    m, a = mapped(4)
    t = RealTracker(a)
    t.start()
    with pytest.raises(StateError, match="already"):
        t.start()
    with pytest.raises(StateError, match="already tracked"):
        RealTracker(a).start()
    t.stop()
    with pytest.raises(StateError, match="not started"):
        t.stop()


def test_bad_targets():
    with pytest.raises(TypeError, match="numpy array, an mmap"):
        RealTracker(12345)
    with pytest.raises(ConfigError, match="read-only"):
        RealTracker(np.frombuffer(b"abc", dtype=np.uint8))
    with pytest.raises(ConfigError, match="empty"):
        RealTracker(np.zeros(0))
    with pytest.raises(ConfigError, match="not both"):
        RealTracker(np.zeros(4), address=4096, length=4096)
    with pytest.raises(ConfigError, match="address="):
        RealTracker(address=4096)
    with pytest.raises(ConfigError, match="length"):
        RealTracker(address=4096, length=0)


def test_raw_c_api_rejects_bad_input():
    out = ffi.new("dl_rt **")
    err = ffi.new("int *")
    count = ffi.new("size_t *")
    assert lib.dl_rt_open(ffi.NULL, err) == lib.DL_ERR_INVALID
    assert lib.dl_rt_probe(ffi.NULL, err) == lib.DL_ERR_INVALID
    assert lib.dl_rt_register(ffi.NULL, 4096, 4096, err) == lib.DL_ERR_INVALID
    assert lib.dl_rt_harvest(ffi.NULL, 4096, 4096, 0, ffi.NULL, 0, count, ffi.NULL, err) == lib.DL_ERR_INVALID
    if not SUPPORT.ok:
        return
    assert lib.dl_rt_open(out, err) == lib.DL_OK
    rt = out[0]
    try:
        assert lib.dl_rt_register(rt, 4097, 4096, err) == lib.DL_ERR_INVALID  # unaligned
        assert lib.dl_rt_register(rt, 4096, 0, ffi.NULL) == lib.DL_ERR_INVALID  # empty
        assert lib.dl_rt_register(rt, 2**64 - 4096, 8192, ffi.NULL) == lib.DL_ERR_INVALID  # wraps
        m, a = mapped(4)
        addr = int(ffi.cast("uintptr_t", ffi.from_buffer(m)))
        buf = ffi.new("uint64_t[4]")
        # a range never registered: the harvest refuses, or skips it when asked to
        assert lib.dl_rt_harvest(rt, addr, 4 * PAGE, 0, buf, 4, count, ffi.NULL, err) == lib.DL_ERR_STATE
        assert lib.dl_rt_harvest(rt, addr, 4 * PAGE, lib.DL_RT_SKIP_UNREGISTERED, buf, 4, count, ffi.NULL, err) == 0
        assert count[0] == 0
        assert lib.dl_rt_harvest(rt, addr, 4 * PAGE, 99, buf, 4, count, ffi.NULL, err) == lib.DL_ERR_INVALID
        pairs = ffi.new("uint64_t[2]")
        assert lib.dl_rt_unregistered(rt, addr, 4 * PAGE, pairs, 1, count, err) == 0
        assert count[0] == 1 and (pairs[0], pairs[1]) == (addr, addr + 4 * PAGE)
        a[:] = 1
        assert lib.dl_rt_register(rt, addr, 4 * PAGE, err) == 0
        assert lib.dl_rt_unregistered(rt, addr, 4 * PAGE, pairs, 1, count, err) == 0 and count[0] == 0
        # first harvest: the populated pages; a small buffer stops early at walk_end
        end = ffi.new("uint64_t *")
        assert lib.dl_rt_harvest(rt, addr, 4 * PAGE, lib.DL_RT_FIRST, buf, 2, count, end, err) == 0
        assert (count[0], end[0]) == (2, addr + 2 * PAGE)
        assert lib.dl_rt_harvest(rt, end[0], 2 * PAGE, lib.DL_RT_FIRST, buf, 4, count, end, err) == 0
        assert count[0] == 2 and end[0] == addr + 4 * PAGE
        assert lib.dl_rt_harvest(rt, addr, 4 * PAGE, 0, buf, 4, count, end, err) == 0 and count[0] == 0
        assert lib.dl_rt_unregister(rt, addr, 4 * PAGE, err) == 0
        del a
        m.close()
    finally:
        lib.dl_rt_close(rt)
    assert ffi.string(lib.dl_strerror(lib.DL_ERR_UNSUPPORTED)).startswith(b"not supported")


@needs_kernel
def test_no_write_is_lost_to_a_racing_harvest():
    """A writer thread writes a known sequence while harvests run: every write is in the
    harvest that started after it completed, or (racing) in the one it overlapped or the
    next; no page is reported that was not written in that window."""
    n_pages = 2048
    m, a = mapped(n_pages)
    rng = np.random.default_rng(7)
    seq = rng.integers(0, n_pages, size=60_000)
    done = np.full(1, -1, dtype=np.int64)  # index of the last completed write
    t = RealTracker(a)
    t.start()
    stop = threading.Event()

    def writer() -> None:
        for i, p in enumerate(seq.tolist()):
            a[p * PAGE] = i & 0xFF
            done[0] = i
        stop.set()

    th = threading.Thread(target=writer)
    th.start()
    windows = []  # (s0, s1, pages): writes <= s0 finished before the harvest, > s1 + 1 started after
    while True:
        finished = stop.is_set()
        s0 = int(done[0])
        h = t.harvest()
        s1 = int(done[0])
        windows.append((s0, s1, set(h.tolist())))
        if finished:
            break
    th.join()
    t.stop()
    assert sum(len(w[2]) for w in windows) > 0
    prev_s0, prev_s1 = -1, -1
    for k, (s0, s1, got) in enumerate(windows):
        # every write that started after the previous harvest ended and completed before this one began
        must = set(seq[prev_s1 + 2: s0 + 1].tolist()) if s0 >= prev_s1 + 2 else set()
        assert must <= got, f"harvest {k} lost pages {sorted(must - got)[:10]}"
        # a write racing harvest k-1 is in harvest k-1 or k
        if k > 0:
            racing = set(seq[max(prev_s0 + 1, 0): min(prev_s1 + 1, s0) + 1].tolist())
            assert racing <= got | windows[k - 1][2]
        # nothing extra: each reported page was written between the start of harvest k-1 and the end of harvest k
        allowed = set(seq[max(prev_s0 + 1, 0): s1 + 2].tolist())
        assert got <= allowed, f"harvest {k} has pages never written in its window: {sorted(got - allowed)[:10]}"
        prev_s0, prev_s1 = s0, s1
    del a
