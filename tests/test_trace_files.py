"""Trace CSVs (fast and slow path), repeating traces, and the warnings for traces and curves
that do not cover what a migration asks of them."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import dirtylog
from dirtylog import ConfigError, Link, PreCopy
from dirtylog.specs import parse_workload
from dirtylog.trace import load_trace, save_trace
from dirtylog.workloads import DirtyCurve, Trace, Uniform


def _write(path, text):
    with open(path, "w", newline="") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("with_vcpu", [False, True])
def test_csv_fast_path_round_trips_a_large_trace(tmp_path, with_vcpu):
    rng = np.random.default_rng(3)
    n = 50_000
    t = np.sort(rng.integers(0, 2**62, n)).astype(np.uint64)
    p = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)  # values past 2^63 too
    v = rng.integers(0, 2**32 - 1, n).astype(np.uint32) if with_vcpu else None
    path = tmp_path / "t.csv"
    save_trace(path, t, p, v)
    d = load_trace(path)
    assert d.time_ns.dtype == np.uint64 and np.array_equal(d.time_ns, t)
    assert np.array_equal(d.page, p)
    assert (d.vcpu is None) == (v is None)
    if v is not None:
        assert d.vcpu is not None and d.vcpu.dtype == np.uint32 and np.array_equal(d.vcpu, v)


def test_csv_columns_in_any_order_and_what_only_the_slow_path_reads(tmp_path):
    # blank lines before the header and between records, CRLF, quoted and signed numbers
    text = '\r\n\r\npage,VCPU,time_ns\r\n"7",1,0\r\n\r\n  \r\n+8, 0 ,5\r\n9,1,5\r\n'
    d = load_trace(_write(tmp_path / "odd.csv", text))
    assert d.time_ns.tolist() == [0, 5, 5]
    assert d.page.tolist() == [7, 8, 9]
    assert d.vcpu is not None and d.vcpu.tolist() == [1, 0, 1]


def test_csv_with_a_header_only_is_an_empty_trace(tmp_path):
    d = load_trace(_write(tmp_path / "h.csv", "time_ns,page\n"))
    assert len(d) == 0 and d.time_ns.dtype == np.uint64


@pytest.mark.parametrize("body, message", [
    ("0,1\n5,-2\n", "record 1 (line 3): page is negative (-2); it must be >= 0"),
    ("0,1\n5.5,2\n", "record 1 (line 3): time_ns '5.5' is not a whole number"),
    ("0,1\n1e3,2\n", "record 1 (line 3): time_ns '1e3' is not a whole number"),
    ("0,1\n5\n", "record 1 (line 3): 1 fields, expected 2 (time_ns,page)"),
    ("0,1,3\n5,2,4\n", "record 0 (line 2): 3 fields, expected 2 (time_ns,page)"),
    ("0,1\n5,18446744073709551616\n", "record 1 (line 3): page 18446744073709551616 does not fit in 64 bits"),
    ("0,abc\n", "record 0 (line 2): page 'abc' is not a whole number"),
    ("10,1\n5,2\n", "record 1: time_ns 5 is earlier than record 0's 10; timestamps must be non-decreasing"),
])
def test_csv_errors_name_the_record_and_line(tmp_path, body, message):
    path = _write(tmp_path / "bad.csv", "time_ns,page\n" + body)
    with pytest.raises(ConfigError) as e:
        load_trace(path)
    assert str(e.value) == f"trace file {str(path)!r}: {message}"


# ---------------------------------------------------------------------------- repeat


def test_repeat_true_continues_evenly_spaced_records():
    t = Trace(time_ns=[0, 1000, 2000], pages=[1, 2, 3], repeat=True)
    assert t.period == pytest.approx(3e-6)  # the last record plus the mean gap
    assert t.write_rate() == pytest.approx(1e6)
    bw = t.bind(100, 1)
    assert bw.count(0, 10e-6) == 10
    assert bw.generate(0, 10e-6).tolist() == [1, 2, 3] * 3 + [1]
    assert bw.generate(4e-6, 8e-6).tolist() == [2, 3, 1, 2]
    # without repeat nothing comes after the last record
    assert Trace(time_ns=[0, 1000, 2000], pages=[1, 2, 3]).bind(100, 1).count(0, 10e-6) == 3


def test_repeat_with_a_period_and_vcpus():
    t = Trace(time_ns=[0, 1000, 2000], pages=[1, 2, 3], vcpus=[0, 1, 0], repeat="5us")
    assert t.period == pytest.approx(5e-6)
    w = t.bind(100, 2).writes(0, 12e-6)
    assert w[0].tolist() == [1, 3, 1, 3, 1]  # at 0, 2, 5, 7, 10 us
    assert w[1].tolist() == [2, 2, 2]  # at 1, 6, 11 us
    # the tracker sees the same writes through the fused C path
    tr = dirtylog.Tracker(100, vcpus=2)
    tr.start()
    assert t.run(tr, 0, 12e-6) == 8
    assert sorted(tr.harvest().tolist()) == [1, 2, 3]
    assert tr.stats.writes == 8
    # a copy sent to another process keeps the period
    assert pickle.loads(pickle.dumps(t)).bind(100, 2).count(0, 12e-6) == 8


def test_repeat_runs_far_without_overflow():
    t = Trace(time_ns=[0, 500_000_000], pages=[4, 5], repeat=True)  # period 1 s
    bw = t.bind(10, 1)
    assert bw.count(0, 1e6) == 2_000_000
    assert bw.generate(1e6 - 1, 1e6).tolist() == [4, 5]


@pytest.mark.parametrize("kwargs, message", [
    (dict(time_ns=[5, 5], pages=[1, 2], repeat=True), "repeat=True needs records spread over time"),
    (dict(time_ns=[7], pages=[1], repeat=True), "repeat=True needs records spread over time"),
    (dict(time_ns=[], pages=[], repeat="1s"), "an empty trace cannot repeat"),
    (dict(time_ns=[0, 2_000_000_000], pages=[1, 2], repeat="2s"), "must be longer than the last record's time"),
    (dict(time_ns=[0, 1], pages=[1, 2], repeat="-1s"), "repeat"),
])
def test_repeat_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Trace(**kwargs)


def test_spec_repeat_option(tmp_path):
    path = tmp_path / "w,ith comma.csv"  # the file name may hold commas
    save_trace(path, [0, 1_000_000], [1, 2])
    once = parse_workload(f"trace:{path}")
    assert once.period is None and once.path == str(path)
    again = parse_workload(f"trace:{path},repeat=yes")
    assert again.period == pytest.approx(2e-3)
    timed = parse_workload(f"trace:{path},repeat=10ms")
    assert timed.period == pytest.approx(10e-3)
    assert parse_workload(f"trace:{path},repeat=no").period is None
    with pytest.raises(ConfigError, match="repeat='soon' is neither yes/no nor a period"):
        parse_workload(f"trace:{path},repeat=soon")


# ---------------------------------------------------------------------------- warnings


def _migrate(workload):
    return dirtylog.simulate(memory="64MiB", workload=workload, link=Link(bandwidth="1Gbit/s"),
                             policy=PreCopy(downtime_limit="300ms"), tracker="pml")


def test_a_trace_shorter_than_the_migration_warns(tmp_path):
    path = tmp_path / "short.npz"
    save_trace(path, np.arange(0, 100_000_000, 100_000), np.arange(1000) % 16384)  # 0.1 s of writes
    with pytest.warns(UserWarning, match=r"short.npz'?: the trace ends at 0.0999 s of guest time but the guest "
                                         r"ran for .* repeat=True"):
        report = _migrate(Trace(path))
    assert report.verified
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = _migrate(Trace(path, repeat=True))  # repeating: no warning
        assert report.verified


def test_a_trace_in_a_mix_is_checked_too(tmp_path):
    path = tmp_path / "short.npy"
    save_trace(path, [0, 1000], [1, 2])
    with pytest.warns(UserWarning, match="the trace ends at"):
        _migrate(Trace(path) + Uniform(1000))


def test_a_one_window_curve_warns_that_it_is_a_fixed_working_set():
    with pytest.warns(UserWarning, match=r"one window \(5,000 pages in 1 s\) is fitted as a fixed working set"):
        DirtyCurve(["1s"], [5000], 100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DirtyCurve(["0.1s", "1s", "10s"], [1000, 5000, 9000], 100_000)
