"""Workloads: exact counts, slicing invariance, reproducibility, the shapes of their dirty curves,
traces, DirtyCurve fitting and parameter checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

import dirtylog as d
from dirtylog import dirtycurve
from dirtylog._lib import ffi, lib
from dirtylog.errors import ConfigError
from dirtylog.measure import dirty_curve
from dirtylog.reference import ReferenceTracker
from dirtylog.specs import parse_workload
from dirtylog.workloads import BoundWorkload

N_BIG = 2**20


def distinct(arrays):
    return np.unique(np.concatenate(arrays)).size


def all_kinds(vcpus=1):
    """One of every workload kind, with rates giving a few thousand writes per second."""
    return [
        d.Uniform(5000, seed=3),
        d.Idle(),
        d.Hotspot(4000, hot_fraction=0.05, hot_share=0.8, seed=4),
        d.Zipf(3000, s=1.1, seed=5),
        d.Sequential(2500, start=100, length=5000, stride=7),
        d.WorkingSet([(0.3, 2000, 6000), (0.2, 0.25, 1000), ("100ms", "1MiB", 0)], seed=6),
        d.WorkingSet([(0.3, 300, 4000), (0.4, 700, 2000)], repeat=False, seed=7),
        d.Mix([d.Uniform(1000, seed=1), d.Hotspot(2000, seed=1), d.Sequential(500)]),
    ]


# ---------------------------------------------------------------------------- counts and rates


def test_uniform_counts_are_floor_of_rate_times_time():
    w = d.Uniform(1000)
    assert w.count(0, 1, pages=100) == 1000
    assert w.count(0, 0.3, pages=100) == 300  # 0.3 * 1000 counts as whole
    assert w.count(0.3, 0.7, pages=100) == 400
    assert w.count(0, "250ms", pages=100) == 250
    assert w.count(1.5, 1.5, pages=100) == 0
    assert [a.size for a in w.writes(0, 2, pages=100, vcpus=4)] == [500] * 4


def test_uniform_over_a_region_writes_only_there_and_is_the_full_stream_shifted():
    """Uniform(start=, length=): uniform over [start, start + length) only (the validation guest writes
    the memory it filled); over all of memory, the default stream write for write."""
    w = d.Uniform(5000, start=100, length=300, seed=4)
    a = w.writes(0, 2, pages=1000)[0]
    assert a.size == 10000 and a.min() >= 100 and a.max() < 400
    assert np.unique(a).size > 290  # spread over the whole region
    full = d.Uniform(5000, seed=4).writes(0, 2, pages=1000)[0]
    assert np.array_equal(d.Uniform(5000, start=0, length=1000, seed=4).writes(0, 2, pages=1000)[0], full)
    assert np.array_equal(d.Uniform(5000, start="400KiB", length=0.3, seed=4).writes(0, 2, pages=1000)[0], a)
    assert w.span(1000) == (100, 300) and d.Uniform(1).span(1000) == (0, 1000)
    assert repr(w) == "Uniform(rate=5000, start=100, length=300, seed=4)" and repr(d.Uniform(5)) == "Uniform(rate=5)"
    assert parse_workload("uniform:5000,start=100,length=300,seed=4").writes(0, 2, pages=1000)[0].tolist() == a.tolist()
    with pytest.raises(ConfigError, match="length must be 1..100 pages"):
        d.Uniform(1, start=900, length=200).writes(0, 1, pages=1000)
    with pytest.raises(ConfigError, match="start must be a page of the guest"):
        d.Uniform(1, start=1000).writes(0, 1, pages=1000)


def test_byte_rates_are_page_writes():
    w = d.Uniform("1GiB/s")
    assert w.count(0, 1, pages=1000) == 2**30 // 4096
    assert w.count(0, 1, pages=1000, page_size=2**16) == 2**30 // 2**16
    assert d.Uniform("5000/s").count(0, 2, pages=10) == 10000
    assert w.write_rate(page_size=4096) == 262144.0


def test_explicit_shares_split_the_rate():
    w = d.Uniform(1000, shares=[1, 3])
    sizes = [a.size for a in w.writes(0, 1, pages=1000, vcpus=2)]
    assert sizes == [250, 750]
    # equal weights are the same stream as the default round robin
    a = d.Uniform(1000, shares=[2, 2], seed=9).writes(0, 1, pages=10**4, vcpus=2)
    b = d.Uniform(1000, seed=9).writes(0, 1, pages=10**4, vcpus=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # a vCPU with share 0 never writes
    assert d.Hotspot(1000, shares=[0, 1]).writes(0, 1, pages=100, vcpus=2)[0].size == 0


def test_idle_default_rate_is_50_pages_per_second():
    assert d.Idle().count(0, 10, pages=2**20) == 500
    assert d.Idle().write_rate() == 50.0


def test_pages_are_in_range_and_uint64():
    for w in all_kinds():
        for a in w.writes(0, 0.7, pages=10007, vcpus=3):
            assert a.dtype == np.uint64
            assert a.size == 0 or int(a.max()) < 10007


# ---------------------------------------------------------------------------- reproducibility


def test_same_seed_same_stream_other_seed_other_stream():
    for cls in (d.Uniform, d.Hotspot, d.Zipf):
        a = cls(5000, seed=11).writes(0, 1, pages=N_BIG, vcpus=2)
        b = cls(5000, seed=11).writes(0, 1, pages=N_BIG, vcpus=2)
        c = cls(5000, seed=12).writes(0, 1, pages=N_BIG, vcpus=2)
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
        assert not np.array_equal(a[0], c[0])
        assert not np.array_equal(a[0], a[1])  # the vCPUs have different streams


def test_mix_components_are_independent_even_with_equal_seeds():
    a, b = d.Mix([d.Uniform(1000), d.Uniform(1000)]).writes(0, 1, pages=N_BIG)[0].reshape(2, -1)
    assert a.size == b.size == 1000
    assert np.intersect1d(a, b).size < 10
    # the first component of a Mix is the same stream as the workload alone
    assert np.array_equal(a, d.Uniform(1000).writes(0, 1, pages=N_BIG)[0])


@pytest.mark.parametrize("kind", range(8))
def test_any_slicing_gives_identical_writes(kind):
    w = all_kinds()[kind]
    leaves = w._leaves()
    rng = np.random.default_rng(kind)
    cuts = np.sort(rng.uniform(0, 1.7, size=25))
    edges = np.concatenate([[0.0], cuts, [1.7]])
    for vcpus in (1, 3):
        for leaf in leaves:  # per component the stream is identical, order included
            whole = leaf.writes(0, 1.7, pages=50000, vcpus=vcpus)
            for j in range(vcpus):
                parts = [leaf.writes(a, b, pages=50000, vcpus=vcpus)[j] for a, b in zip(edges[:-1], edges[1:])]
                assert np.array_equal(np.concatenate(parts), whole[j])
        # for the whole workload, slices hold the same multiset of writes
        whole = w.writes(0, 1.7, pages=50000, vcpus=vcpus)
        for j in range(vcpus):
            parts = [w.writes(a, b, pages=50000, vcpus=vcpus)[j] for a, b in zip(edges[:-1], edges[1:])]
            assert np.array_equal(np.sort(np.concatenate(parts)), np.sort(whole[j]))


def test_sliced_run_equals_one_run_in_the_tracker():
    w = d.Mix([d.Hotspot(20000, seed=2), d.Zipf(5000, seed=2), d.WorkingSet([(0.1, 0.01, 30000), (0.1, 0.02, 0)])])
    t1 = d.Tracker(N_BIG, mode="pml", vcpus=2)
    t2 = d.Tracker(N_BIG, mode="pml", vcpus=2)
    t1.start()
    t2.start()
    n1 = w.run(t1, 0, 0.9)
    n2 = sum(w.run(t2, a, b) for a, b in zip(np.linspace(0, 0.9, 14)[:-1], np.linspace(0, 0.9, 14)[1:]))
    assert n1 == n2 == w.count(0, 0.9, pages=N_BIG, vcpus=2)
    assert np.array_equal(t1.harvest(), t2.harvest())
    assert t1.stats.writes == t2.stats.writes == n1


def test_run_matches_generated_writes_and_reference_tracker():
    w = d.Mix([d.Uniform(3000, seed=5), d.Sequential(2000, stride=3)])
    for mode in ("wp", "ring"):
        t = d.Tracker(4096, mode=mode, vcpus=2, ring_entries=1024)
        r = ReferenceTracker(4096, mode=mode, vcpus=2, ring_entries=1024)
        t.start()
        r.start()
        assert w.run(t, 0, 1) == w.run(r, 0, 1) == 5000
        assert np.array_equal(t.harvest(), r.harvest())
        assert t.stats.to_dict() == r.stats.to_dict()
    # run_vcpu: one vCPU only
    t = d.Tracker(4096, vcpus=2)
    t.start()
    assert w.run(t, 0, 1, vcpu=1) == 2500
    assert t.stats.vcpus[0].writes == 0 and t.stats.vcpus[1].writes == 2500


# ---------------------------------------------------------------------------- shapes of the curves


def test_uniform_curve_matches_saturation_formula():
    n = N_BIG
    windows = [0.25, 0.5, 1, 2, 4]
    res = dirty_curve(d.Uniform(n / 2, seed=1), n * 4096, windows)
    for w, got in zip(windows, res.dirty_pages):
        writes = int(n / 2 * w)
        expect = n * (1 - (1 - 1 / n) ** writes)
        assert abs(got - expect) / expect < 0.02, (w, got, expect)


def test_sequential_curve_is_exactly_linear_until_it_wraps():
    w = d.Sequential(1000, start=10, length=3000)
    res = dirty_curve(w, 8192 * 4096, [0.5, 1, 1.5, 2, 2.999, 3, 5])
    assert res.dirty_pages.tolist() == [500, 1000, 1500, 2000, 2999, 3000, 3000]
    a = w.writes(0, 4, pages=8192)[0]
    assert a[:5].tolist() == [10, 11, 12, 13, 14]
    assert a[2999] == 3009 and a[3000] == 10  # wraps to start
    # the stride formula: page = start + (q * stride) % length
    s = d.Sequential(100, start=5, length=10, stride=3).writes(0, 0.12, pages=100)[0]
    assert s.tolist() == [5 + (q * 3) % 10 for q in range(12)]


def test_sequential_with_several_vcpus_sweeps_together():
    got = d.Sequential(3000, length=4000).writes(0, 1, pages=4000, vcpus=3)
    assert [a[:3].tolist() for a in got] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert np.array_equal(np.sort(np.concatenate(got)), np.arange(3000))


def test_hotspot_saturates_at_the_hot_set_first():
    n, frac, share, rate = N_BIG, 0.01, 0.9, 200000
    w = d.Hotspot(rate, hot_fraction=frac, hot_share=share, seed=3)
    hot = w.hot_pages(n)
    assert hot == round(frac * n)
    windows = [0.05, 0.5, 2]
    res = dirty_curve(w, n * 4096, windows)
    for t, got in zip(windows, res.dirty_pages):
        wh, wc = rate * t * share, rate * t * (1 - share)
        expect = hot * (1 - math.exp(-wh / hot)) + (n - hot) * (1 - math.exp(-wc / (n - hot)))
        assert abs(got - expect) / expect < 0.02, (t, got, expect)
    # after 2 s the hot set (10486 pages, 360000 writes) is full: dirty = H + the cold part
    cold = res.dirty_pages[-1] - hot
    assert abs(cold - (n - hot) * (1 - math.exp(-40000 / (n - hot)))) < 0.02 * cold
    # the hot pages are scattered: they hit most 2 MiB blocks and span memory
    pages = w.writes(0, 1, pages=n)[0]
    counts = np.bincount(pages.astype(np.int64), minlength=n)
    hot_pages = np.argsort(counts)[::-1][:hot]
    assert np.unique(hot_pages // 512).size > 0.95 * (n // 512)
    assert counts[hot_pages].sum() > 0.88 * pages.size


def test_hotspot_edge_cases():
    assert d.Hotspot(100, hot_fraction=0.0).hot_pages(1000) == 0
    a = d.Hotspot(1000, hot_fraction=0.0).writes(0, 1, pages=50)[0]  # every write cold = uniform
    assert a.size == 1000 and np.unique(a).size == 50
    a = d.Hotspot(1000, hot_fraction=0.1, hot_share=1.0).writes(0, 1, pages=100)[0]
    assert np.unique(a).size == 10  # only the hot set


def test_working_set_follows_its_phases():
    n = 2**16
    w = d.WorkingSet([(1, 1000, 5000), (1, 0.1, 20000), (0.5, 500, 0)], seed=2)
    sets = w.set_pages(n)
    assert sets == [1000, 6554, 500]
    p0 = w.writes(0, 1, pages=n)[0]
    p1 = w.writes(1, 2, pages=n)[0]
    assert p0.size == 5000 and p1.size == 20000 and w.count(2, 2.5, pages=n) == 0
    s0, s1 = np.unique(p0), np.unique(p1)
    assert s0.size <= 1000 and abs(s0.size - 1000 * (1 - math.exp(-5))) < 30
    assert abs(s1.size - 6554 * (1 - math.exp(-20000 / 6554))) < 100
    assert np.intersect1d(s0, s1).size == 0  # the set moved
    assert s0.max() - s0.min() > n / 2  # and is scattered
    # repeat: the next cycle writes the same sets again
    again = np.unique(w.writes(2.5, 3.5, pages=n)[0])
    assert np.setdiff1d(again, s0).size < 0.01 * again.size + 10
    assert np.intersect1d(again, s0).size > 0.9 * s0.size
    res = dirty_curve(w, n * 4096, [1, 2, 2.5])
    assert res.dirty_pages[0] == s0.size
    assert res.dirty_pages[1] == s0.size + s1.size
    assert res.dirty_pages[2] == res.dirty_pages[1]
    assert w.write_rate() == pytest.approx((5000 + 20000) / 2.5)


def test_working_set_hold_keeps_the_last_phase():
    w = d.WorkingSet([(1, 100, 1000), (1, 200, 3000)], repeat=False, seed=1)
    assert w.count(2, 12, pages=10**4) == 30000
    last = np.unique(w.writes(1, 2, pages=10**4)[0])
    later = np.unique(w.writes(5, 6, pages=10**4)[0])
    assert np.array_equal(last, later) and last.size == 200
    assert w.write_rate() == 3000.0


def test_zipf_is_skewed_and_scattered():
    n, rate = 2**16, 400000
    pages = d.Zipf(rate, s=1.0, seed=8).writes(0, 1, pages=n)[0]
    counts = np.sort(np.bincount(pages.astype(np.int64), minlength=n))[::-1]
    hn = np.sum(1.0 / np.arange(1, n + 1))
    for r in range(1, 6):  # the top ranks get rate / (r H_n) writes each
        expect = rate / (r * hn)
        assert abs(counts[r - 1] - expect) < 5 * math.sqrt(expect), (r, counts[r - 1], expect)
    assert counts[: n // 100].sum() > 0.55 * rate  # the top 1 % of pages take most writes
    top = np.argsort(np.bincount(pages.astype(np.int64), minlength=n))[::-1][:64]
    assert np.unique(top // 512).size > 40  # the top ranks are scattered over memory
    # a larger exponent is more skewed
    steep = d.Zipf(rate, s=2.0, seed=8).writes(0, 1, pages=n)[0]
    assert np.unique(steep).size < np.unique(pages).size / 3


# ---------------------------------------------------------------------------- traces


def make_trace(n=500, vcpu=True, seed=0):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(0, 2 * 10**9, size=n)).astype(np.uint64)
    times[10] = times[11]  # equal timestamps are fine
    pages = rng.integers(0, 4096, size=n).astype(np.uint64)
    vcpus = rng.integers(0, 2, size=n).astype(np.uint32) if vcpu else None
    return times, pages, vcpus


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
@pytest.mark.parametrize("with_vcpu", [True, False])
def test_trace_round_trips_exactly(tmp_path, suffix, with_vcpu):
    times, pages, vcpus = make_trace(vcpu=with_vcpu)
    times[-1] = 2**64 - 1  # the full range survives
    path = tmp_path / f"t{suffix}"
    d.save_trace(path, times, pages, vcpus)
    data = d.load_trace(path)
    assert data.time_ns.dtype == np.uint64 and data.page.dtype == np.uint64
    assert np.array_equal(data.time_ns, times) and np.array_equal(data.page, pages)
    if with_vcpu:
        assert data.vcpu is not None and data.vcpu.dtype == np.uint32 and np.array_equal(data.vcpu, vcpus)
    else:
        assert data.vcpu is None
    d.Trace(path).save(tmp_path / f"again{suffix}")
    assert (tmp_path / f"again{suffix}").read_bytes() == path.read_bytes()


def test_trace_replays_the_recorded_pages(tmp_path):
    times, pages, vcpus = make_trace()
    d.save_trace(tmp_path / "t.npz", times, pages, vcpus)
    w = d.Trace(tmp_path / "t.npz")
    assert w.records == 500
    for t0, t1 in [(0, 2.5), (0.5, 1.25), (1.0, 1.0)]:
        got = w.writes(t0, t1, pages=4096, vcpus=2)
        inwin = (times >= t0 * 1e9) & (times < t1 * 1e9)
        for j in range(2):
            assert np.array_equal(got[j], pages[inwin & (vcpus == j)])
    # without a vCPU column, record i goes to vCPU i % vcpus
    w2 = d.Trace(time_ns=times, pages=pages)
    got = w2.writes(0, 3, pages=4096, vcpus=3)
    for j in range(3):
        assert np.array_equal(got[j], pages[j::3])
    # fused replay into a tracker
    t = d.Tracker(4096, vcpus=2)
    t.start()
    assert w.run(t, 0, 3) == 500
    assert np.array_equal(t.harvest(), np.unique(pages))
    assert w.count(3, 100, pages=4096, vcpus=2) == 0  # nothing after the last record


def test_trace_2d_npy_is_accepted(tmp_path):
    arr = np.array([[0, 5, 1], [10, 6, 0], [10, 7, 1]], dtype=np.int64)
    np.save(tmp_path / "t.npy", arr)
    data = d.load_trace(tmp_path / "t.npy")
    assert data.page.tolist() == [5, 6, 7] and data.vcpu is not None and data.vcpu.tolist() == [1, 0, 1]


def test_bad_trace_files_name_the_record(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("time_ns,page\n0,1\n5,2\n3,4\n")
    with pytest.raises(ConfigError, match=r"record 2: time_ns 3 is earlier than record 1's 5"):
        d.Trace(p)
    p.write_text("time_ns,page,vcpu\n0,1,0\n5,x,0\n")
    with pytest.raises(ConfigError, match=r"record 1 \(line 3\): page 'x' is not a whole number"):
        d.Trace(p)
    p.write_text("time_ns,page\n0,1\n5,-2\n")
    with pytest.raises(ConfigError, match=r"record 1 \(line 3\): page is negative"):
        d.load_trace(p)
    p.write_text("time_ns,page\n0,1\n5\n")
    with pytest.raises(ConfigError, match=r"record 1 \(line 3\): 1 fields, expected 2"):
        d.load_trace(p)
    p.write_text("time,page\n0,1\n")
    with pytest.raises(ConfigError, match="bad header"):
        d.load_trace(p)
    p.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        d.load_trace(p)
    np.savez(tmp_path / "bad.npz", time_ns=np.arange(3), pages=np.arange(3))
    with pytest.raises(ConfigError, match="missing array.*page"):
        d.load_trace(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", time_ns=np.arange(3), page=np.arange(4))
    with pytest.raises(ConfigError, match="one length"):
        d.load_trace(tmp_path / "bad2.npz")
    np.save(tmp_path / "bad.npy", np.zeros(3, dtype=[("time_ns", "<u8"), ("vcpu", "<u4")]))
    with pytest.raises(ConfigError, match="missing column.*page"):
        d.load_trace(tmp_path / "bad.npy")
    np.save(tmp_path / "bad2.npy", np.arange(5))
    with pytest.raises(ConfigError, match="shape"):
        d.load_trace(tmp_path / "bad2.npy")
    with pytest.raises(ConfigError, match="unknown format"):
        d.load_trace(tmp_path / "t.txt")
    # out-of-range pages and vCPUs are found when the trace is bound to a guest
    w = d.Trace(time_ns=[0, 1, 2], pages=[1, 2, 99], vcpus=[0, 1, 0])
    with pytest.raises(ConfigError, match=r"record 2: page 99 is out of range for a guest of 50 pages "
                                          r"\(pages 0..49\); the trace needs a guest of at least 100 pages"):
        w.writes(0, 1, pages=50, vcpus=2)
    with pytest.raises(ConfigError, match=r"record 1: vcpu 1 is out of range for a guest of 1 vCPU "
                                          r"\(vCPUs 0..0\); the trace needs at least 2 vCPUs \(vcpus=2\)"):
        w.writes(0, 1, pages=100, vcpus=1)
    with pytest.raises(ConfigError, match="record 1: time_ns 1 is earlier"):
        d.save_trace(tmp_path / "x.npy", [2, 1], [0, 0])
    with pytest.raises(ConfigError, match="record 0: page 1.5 is not a whole number"):
        d.Trace(time_ns=[0], pages=[1.5])


# ---------------------------------------------------------------------------- DirtyCurve


def mixture_curve(windows, sizes, rates):
    return dirtycurve.expected_curve(np.asarray(windows, float), np.asarray(sizes, float), np.asarray(rates, float))


def test_dirty_curve_reproduces_a_known_mixture():
    n = 2**18
    windows = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]
    y = mixture_curve(windows, [3000, 20000, 60000], [30.0, 1.0, 0.03])
    w = d.DirtyCurve(windows, y, n, seed=1)
    assert w.fit_error < 0.05
    assert w.class_pages.sum() <= n
    assert np.all(np.abs(w.expected(windows) - y) / y < 0.05)
    got = dirty_curve(w, n * 4096, windows).dirty_pages
    rel = np.abs(got - y) / y
    assert rel.max() < 0.05, rel


def test_dirty_curve_reproduces_a_saturating_real_looking_curve():
    n = 2**18
    windows = np.array([0.1, 0.3, 1, 3, 10, 30])
    y = 0.5 * n * (1 - np.exp(-((windows / 20) ** 0.5)))  # stretched exponential: far from linear
    w = d.DirtyCurve(windows, np.round(y), n, seed=2)
    assert w.fit_error < 0.05
    got = dirty_curve(w, n * 4096, windows).dirty_pages
    assert (np.abs(got - y) / y).max() < 0.05
    # the same curve, counted on a sample of 4096 pages, is scaled by total / sampled
    ws = d.DirtyCurve(windows, y * 4096 / n, n, sampled_pages=4096)
    assert np.allclose(ws.dirty_pages, y)
    assert ws.fit_error < 0.05


def test_dirty_curve_scales_to_another_memory_size():
    windows = [0.1, 1, 10]
    y = mixture_curve(windows, [1000, 10000], [10.0, 0.1])
    w = d.DirtyCurve(windows, y, 2**16)
    assert np.allclose(w.expected(windows, pages=2**17), 2 * w.expected(windows), rtol=0.01)
    assert w.write_rate(pages=2**17) == pytest.approx(2 * w.write_rate(), rel=0.01)


def test_fit_without_scipy_uses_the_numpy_solver(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # "import scipy.optimize" now fails
    windows = [0.05, 0.2, 1, 5]
    y = mixture_curve(windows, [500, 5000], [20.0, 0.2])
    w = d.DirtyCurve(windows, y, 10**5)
    assert w._fit.solver == "numpy" and w.fit_error < 0.05
    x, r = dirtycurve.nnls(np.eye(2), np.array([1.0, -1.0]))
    assert x.tolist() == [1.0, 0.0] and r == pytest.approx(1.0)


def test_numpy_nnls_matches_scipy():
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    for _ in range(20):
        A = rng.uniform(0, 1, size=(12, 30))
        b = rng.uniform(-1, 3, size=12)
        x, r = dirtycurve.nnls_numpy(A, b)
        xs, rs = scipy_opt.nnls(A, b)
        assert np.all(x >= 0)
        assert r == pytest.approx(rs, rel=1e-6, abs=1e-9)
    windows = [0.05, 0.2, 1, 5]
    y = mixture_curve(windows, [500, 5000], [20.0, 0.2])
    fit = dirtycurve.fit_rate_classes(np.array(windows), y, 10**5, solver="numpy")
    assert fit.solver == "numpy" and fit.fit_error < 0.05


def test_dirty_curve_rejects_bad_curves():
    with pytest.raises(ConfigError, match="must not decrease"):
        d.DirtyCurve([1, 2], [100, 50], 1000)
    with pytest.raises(ConfigError, match="more than total_pages"):
        d.DirtyCurve([1, 2], [100, 5000], 1000)
    with pytest.raises(ConfigError, match="more than the sample of 10 pages"):
        d.DirtyCurve([1, 2], [5, 11], 1000, sampled_pages=10)
    with pytest.raises(ConfigError, match="one value per period"):
        d.DirtyCurve([1, 2], [5], 1000)
    with pytest.raises(ConfigError, match="distinct"):
        d.DirtyCurve([1, "1s"], [5, 6], 1000)
    with pytest.raises(ConfigError, match=r"dirty_pages\[1\]"):
        d.DirtyCurve([1, 2], [5, float("nan")], 1000)
    with pytest.raises(ConfigError, match="periods"):
        d.DirtyCurve([0, 2], [5, 6], 1000)
    with pytest.warns(UserWarning, match="more than 5%"):  # convex: no Poisson mixture fits
        d.DirtyCurve([1, 2, 3, 4], [1, 10, 100, 1000], 10**6)


# ---------------------------------------------------------------------------- parameter checks


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: d.Uniform(-1), "rate"),
        (lambda: d.Uniform(float("nan")), "rate"),
        (lambda: d.Uniform("10G"), "ambiguous"),
        (lambda: d.Uniform("5 parsecs/s"), "rate"),
        (lambda: d.Uniform(1e16), "at most"),
        (lambda: d.Idle(rate=-5), "rate"),
        (lambda: d.Hotspot(100, hot_fraction=1.5), r"hot_fraction must be from 0 to 1 \(0% to 100%\), got 1.5; for 1.5 % write '1.5%'"),
        (lambda: d.Hotspot(100, hot_fraction="200%"), r"hot_fraction must be from 0 to 1 \(0% to 100%\), got '200%'"),
        (lambda: d.Hotspot(100, hot_share=-0.1), r"hot_share must be from 0 to 1 \(0% to 100%\), got -0.1"),
        (lambda: d.Hotspot(100, hot_share=float("nan")), "hot_share"),
        (lambda: d.Zipf(100, s=0), r"s \(the Zipf exponent\) must be in \(0, 100\]"),
        (lambda: d.Zipf(100, s=-1), "Zipf exponent"),
        (lambda: d.Zipf(100, s=float("nan")), "Zipf exponent"),
        (lambda: d.Sequential(100, stride=0), "stride"),
        (lambda: d.Sequential(100, start=-1), "start"),
        (lambda: d.Sequential(100, length=0), "length"),
        (lambda: d.Sequential(100, length=1.5), "fraction"),
        (lambda: d.WorkingSet([]), "at least one"),
        (lambda: d.WorkingSet([(0, 10, 100)]), "duration"),
        (lambda: d.WorkingSet([(1, 0, 100)]), "working_set"),
        (lambda: d.WorkingSet([(1, 1.5, 100)]), r"working_set as a fraction of memory must be above 0 and at most 1"),
        (lambda: d.WorkingSet([(1, "150%", 100)]), r"working_set must be above 0 and at most 1 \(above 0%, up to 100%\), got '150%'"),
        (lambda: d.WorkingSet([(1, 10, -3)]), r"phases\[0\] rate"),
        (lambda: d.WorkingSet([(1, 10)]),  # type: ignore[list-item]  # the wrong shape is the point
         r"phases\[0\] must be a \(duration, working_set, rate\)"),
        (lambda: d.WorkingSet([(1, 10, 5)], shares=[-1]), r"shares\[0\]"),
        (lambda: d.Uniform(5, shares=[0, 0]), "positive sum"),
        (lambda: d.Uniform(5, shares=[]), "empty"),
        (lambda: d.Uniform(5, shares=[1, float("inf")]), r"shares\[1\]"),
        (lambda: d.Uniform(5, seed=-1), "seed"),
        (lambda: d.Mix([]), "at least one"),
        (lambda: d.Trace(), "path"),
        (lambda: d.Uniform(5).writes(1, 0.5, pages=10), "t1 must be >= t0"),
        (lambda: d.Uniform(5).writes(-1, 0.5, pages=10), "t0"),
        (lambda: d.Uniform(5).writes(0, float("nan"), pages=10), "t1"),
        (lambda: d.Uniform(5).writes(0, "1 fortnight", pages=10), "t1"),
        (lambda: d.Uniform(5).writes(0, 1, pages=0), "pages"),
        (lambda: d.Uniform(5).writes(0, 1, pages=10, page_size=1000), "page_size"),
        (lambda: d.Uniform(5, shares=[1, 2]).writes(0, 1, pages=10, vcpus=3), "shares has 2 weight"),
        (lambda: d.Sequential(5, start=10).writes(0, 1, pages=10), "start must be a page"),
        (lambda: d.Sequential(5, start=5, length=6).writes(0, 1, pages=10), "length must be 1..5"),
        (lambda: d.WorkingSet([(1, 11, 5)]).writes(0, 1, pages=10), r"working_set must be 1..10"),
        (lambda: d.Uniform(1e15).writes(0, 1e4, pages=10), "would pass 2\\*\\*62 writes"),
    ],
)
def test_bad_parameters_raise_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError):
        d.Hotspot(100, hot_fraction=[0.1])  # type: ignore[arg-type]  # the wrong types are the point
    with pytest.raises(TypeError):
        d.Mix(d.Uniform(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.Mix([d.Uniform(1), 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        d.Uniform(True)


def test_tracker_must_match_the_binding():
    w = d.Uniform(100)
    bw = w.bind(1000, vcpus=2)
    t = d.Tracker(1000, vcpus=1)
    t.start()
    with pytest.raises(ConfigError, match="bound to 1000 pages and 2 vCPU"):
        bw.run(t, 0, 1)
    assert w.run(t, 0, 1) == 100  # Workload.run binds to the tracker's guest


# ---------------------------------------------------------------------------- the C API directly


def test_c_api_rejects_bad_input_without_crashing():
    out = ffi.new("dl_workload **")
    assert lib.dl_workload_create(0, 1, 0, out) == lib.DL_ERR_INVALID and out[0] == ffi.NULL
    assert lib.dl_workload_create(10, 0, 0, out) == lib.DL_ERR_INVALID
    assert lib.dl_workload_create(100, 2, 0, out) == lib.DL_OK
    w = ffi.gc(out[0], lib.dl_workload_destroy)
    nan = float("nan")
    assert lib.dl_workload_add_uniform(w, -1.0, ffi.NULL, 0) == lib.DL_ERR_INVALID
    assert lib.dl_workload_add_uniform(w, nan, ffi.NULL, 0) == lib.DL_ERR_INVALID
    assert lib.dl_workload_add_uniform_range(w, 1.0, 50, 51, ffi.NULL, 0) == lib.DL_ERR_RANGE
    assert lib.dl_workload_add_uniform_range(w, 1.0, 100, 1, ffi.NULL, 0) == lib.DL_ERR_RANGE
    assert lib.dl_workload_add_uniform_range(w, 1.0, 0, 0, ffi.NULL, 0) == lib.DL_ERR_INVALID
    assert lib.dl_workload_add_uniform_range(ffi.NULL, 1.0, 0, 1, ffi.NULL, 0) == lib.DL_ERR_INVALID
    assert lib.dl_workload_add_hotspot(w, 1.0, 101, 0.5, ffi.NULL, 0) == lib.DL_ERR_RANGE
    assert lib.dl_workload_add_hotspot(w, 1.0, 10, 1.5, ffi.NULL, 0) == lib.DL_ERR_INVALID
    assert lib.dl_workload_add_zipf(w, 1.0, 0.0, ffi.NULL, 0) == lib.DL_ERR_INVALID
    assert lib.dl_workload_add_sequential(w, 1.0, 50, 51, 1, ffi.NULL) == lib.DL_ERR_RANGE
    assert lib.dl_workload_add_sequential(w, 1.0, 0, 0, 1, ffi.NULL) == lib.DL_ERR_INVALID
    bad_shares = ffi.new("double[]", [1.0, -1.0])
    assert lib.dl_workload_add_uniform(w, 1.0, bad_shares, 0) == lib.DL_ERR_INVALID
    d1 = ffi.new("double[]", [1.0])
    s1 = ffi.new("uint64_t[]", [0])
    assert lib.dl_workload_add_phases(w, d1, s1, d1, 1, 1, ffi.NULL, 0) == lib.DL_ERR_RANGE
    assert lib.dl_workload_add_phases(w, d1, s1, d1, 0, 1, ffi.NULL, 0) == lib.DL_ERR_INVALID
    big = ffi.new("uint64_t[]", [60, 41])
    rates = ffi.new("double[]", [1.0, 1.0])
    assert lib.dl_workload_add_classes(w, big, rates, 2, ffi.NULL, 0) == lib.DL_ERR_RANGE
    times = ffi.new("uint64_t[]", [5, 3])
    pages = ffi.new("uint64_t[]", [1, 2])
    bad = ffi.new("size_t *")
    assert lib.dl_workload_add_trace(w, times, pages, ffi.NULL, 2, bad) == lib.DL_ERR_INVALID and bad[0] == 1
    assert lib.dl_workload_components(w) == 0  # nothing was added
    assert lib.dl_workload_add_uniform(w, 10.0, ffi.NULL, 0) == lib.DL_OK
    c = ffi.new("uint64_t *")
    assert lib.dl_workload_count(w, 1.0, 0.5, 0, c) == lib.DL_ERR_INVALID
    assert lib.dl_workload_count(w, 0.0, 1.0, 2, c) == lib.DL_ERR_RANGE
    assert lib.dl_workload_count(w, 0.0, 1.0, 1, c) == lib.DL_OK and c[0] == 5
    buf = ffi.new("uint64_t[]", 4)
    n = ffi.new("size_t *")
    assert lib.dl_workload_generate(w, 0.0, 1.0, 0, buf, 4, n) == lib.DL_ERR_BUFFER and n[0] == 5
    t = d.Tracker(100, vcpus=1)
    assert lib.dl_workload_run(w, t._handle, 0.0, 1.0, c) == lib.DL_ERR_INVALID  # vCPUs differ
    assert lib.dl_workload_run(ffi.NULL, t._handle, 0.0, 1.0, c) == lib.DL_ERR_INVALID
    lib.dl_workload_destroy(ffi.NULL)


def test_bound_workload_is_cached_and_reports_its_size():
    w = d.DirtyCurve([0.1, 1, 10], mixture_curve([0.1, 1, 10], [100, 1000], [5.0, 0.05]), 10**4)
    b = w.bind(10**4)
    assert isinstance(b, BoundWorkload) and w.bind(10**4) is b and w.bind(10**4, vcpus=2) is not b
    assert b.components == w.class_pages.size
    assert b.memory_bytes > 0
    assert "DirtyCurve" in repr(w) and "Hotspot(rate=5" in repr(d.Hotspot(5))


def test_specs_pickle_and_copy_without_their_bindings():
    import copy
    import pickle

    w = d.Mix([d.Hotspot(1000, seed=3), d.WorkingSet([(1, 50, 500)], seed=4)])
    a = w.writes(0, 1, pages=5000, vcpus=2)
    assert w._bound
    for c in (pickle.loads(pickle.dumps(w)), copy.copy(w), copy.deepcopy(w)):
        assert not c._bound
        assert all(np.array_equal(x, y) for x, y in zip(c.writes(0, 1, pages=5000, vcpus=2), a))
    assert w._bound  # the original keeps its binding
    u = d.Uniform(100)
    b = u.bind(1000)
    u.rate = 200  # changing a parameter drops the cached bindings
    assert u.bind(1000) is not b and u.count(0, 1, pages=1000) == 200
    t = d.Trace(time_ns=[0, 1], pages=[1, 2])
    with pytest.raises(ValueError):
        t.data.page[0] = 7


def test_a_repeating_working_set_far_in_time_errors_instead_of_hanging():
    w = d.WorkingSet([(1e-6, 10, 1e6), (1e-6, 10, 1e6)])
    assert w.writes(1e3, 1e3 + 1e-5, pages=100)[0].size > 0
    with pytest.raises(ConfigError, match="2\\*\\*52 cycles"):
        w.writes(2e10, 2e10 + 1e-5, pages=100)


@pytest.mark.parametrize("name, content", [
    ("bad.npz", b"PK\x03\x04garbage"),
    ("empty.npy", b""),
    ("quote.csv", b'time_ns,page\n0,"' + b"x" * 200_000 + b"\n"),
    ("sup.csv", "time_ns,page\n0,\u00b2\n".encode()),
    ("latin.csv", b"time_ns,page\n0,\xff\xfe\n"),
])
def test_malformed_trace_files_raise_config_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="trace file"):
        d.Trace(path)
