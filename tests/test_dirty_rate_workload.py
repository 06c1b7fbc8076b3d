"""DirtyRate: workloads from a measured dirty rate, and reading QEMU's and libvirt's measurements."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import dirtylog
from dirtylog import DirtyRate, Link, PreCopy
from dirtylog.errors import ConfigError
from dirtylog.measure import dirty_curve, dirty_rate
from dirtylog.measured import MeasuredDirtyRate, parse_domstats, parse_query_dirty_rate, read_dirty_rate
from dirtylog.specs import parse_workload, with_rate

MIB = 1 << 20
GUEST = "1GiB"
PAGES = (1 << 30) // 4096


@pytest.mark.parametrize("rate,window", [("120MiB/s", "1s"), ("40MiB/s", "500ms"), ("300MiB/s", "2s")])
def test_measuring_a_dirty_rate_workload_gives_back_the_rate(rate, window):
    w = DirtyRate(rate, window=window, seed=3)
    r = dirty_rate(w, GUEST, window=window, mode="dirty-bitmap")
    want = dirtylog.units.parse_rate(rate) / MIB
    # expected exactly in the mean; one run is within a few standard deviations of a binomial count
    d = want * MIB / 4096 * r.window
    assert r.dirty_rate_mib_s == pytest.approx(want, abs=4 * math.sqrt(d) * 4096 / MIB / r.window + 1e-9)


def test_the_assumption_about_rewrites_shows_in_longer_windows():
    # Whole memory: almost no rewrites, the rate over 10 windows is nearly the same.
    w = DirtyRate("100MiB/s", window="1s")
    curve = dirty_curve(w, GUEST, [1, 10])
    exp = w.expected([1, 10], PAGES)
    assert exp[0] == pytest.approx(100 * MIB / 4096)
    assert curve.dirty_pages == pytest.approx(exp, rel=0.01)
    # A working set of 256 MiB saturates: the 10 s window reports far less than 10x.
    ws = DirtyRate("100MiB/s", window="1s", working_set="256MiB")
    c2 = dirty_curve(ws, GUEST, [1, 10])
    assert c2.dirty_pages[0] == pytest.approx(100 * MIB / 4096, rel=0.02)
    assert c2.dirty_pages[1] <= 256 * MIB / 4096
    assert c2.dirty_pages == pytest.approx(ws.expected([1, 10], PAGES), rel=0.01)
    # saturation relation: n (1 - exp(-lambda W)) = d
    n = 256 * MIB // 4096
    lam = ws.page_rate(PAGES)
    assert n * (1 - math.exp(-lam * 1.0)) == pytest.approx(100 * MIB / 4096)


def test_per_vcpu_rates_share_the_writes_as_the_ring_measured_them():
    w = DirtyRate(vcpu_rates=["60MiB/s", "20MiB/s"], window="1s")
    r = dirty_rate(w, GUEST, window="1s", mode="dirty-ring", vcpus=2)
    assert r.vcpu_rates is not None
    assert r.vcpu_rates[0] == pytest.approx(60, rel=0.05)
    assert r.vcpu_rates[1] == pytest.approx(20, rel=0.05)
    with pytest.raises(ConfigError, match=r"per-vCPU rates of 2 vCPUs but the guest has 4; give the guest 2 vCPUs"):
        dirty_rate(w, GUEST, window="1s", mode="dirty-ring", vcpus=4)


def test_impossible_measurements_are_clear_errors():
    with pytest.raises(ConfigError, match="not below"):
        DirtyRate("2GiB/s", window="1s").bind(PAGES)  # 2 GiB of distinct pages in a 1 GiB guest
    with pytest.raises(ConfigError, match="not below"):
        DirtyRate("100MiB/s", window="1s", working_set="64MiB").bind(PAGES)
    with pytest.raises(ConfigError):
        DirtyRate("100MiB/s", window="0s")
    with pytest.raises(ConfigError, match="measured rate"):
        DirtyRate()
    # a measured rate of zero is a guest that does not write
    assert DirtyRate("0MiB/s").count(0, 10, pages=PAGES) == 0


def test_dirty_rate_is_stationary_and_pickles():
    import pickle

    w = DirtyRate("120MiB/s", window="2s", working_set=0.5, seed=4)
    assert w.stationary
    c = pickle.loads(pickle.dumps(w))
    assert repr(c) == repr(w)
    assert np.array_equal(c.writes(0, 0.01, pages=PAGES)[0], w.writes(0, 0.01, pages=PAGES)[0])


def test_spec_grammar():
    w = parse_workload("dirty-rate:120MiB/s@2s")
    assert isinstance(w, DirtyRate) and w.window == 2.0 and w.rate == "120MiB/s"
    assert parse_workload("dirty-rate:120MiB/s").window == 1.0
    w = parse_workload("dirty-rate:120MiB/s,window=500ms,set=25%,seed=7")
    assert (w.window, w.working_set, w.seed) == (0.5, 0.25, 7)
    assert with_rate("dirty-rate:120MiB/s@2s", "1GiB/s") == "dirty-rate:1GiB/s@2s"
    assert with_rate("dirty-rate", "1GiB/s") == "dirty-rate:1GiB/s"
    with pytest.raises(ConfigError, match="twice"):
        parse_workload("dirty-rate:120MiB/s@1s,window=2s")
    with pytest.raises(ConfigError, match="after '@'"):
        parse_workload("dirty-rate:120MiB/s@")


QMP_RING = {"return": {"status": "measured", "sample-pages": 0, "dirty-rate": 80, "mode": "dirty-ring",
                       "start-time": 3665220, "calc-time": 1, "calc-time-unit": "second",
                       "vcpu-dirty-rate": [{"id": 1, "dirty-rate": 20}, {"id": 0, "dirty-rate": 60}]}}
QMP_SAMPLING = {"status": "measured", "sample-pages": 512, "dirty-rate": 108, "mode": "page-sampling",
                "start-time": 3665220, "calc-time": 500, "calc-time-unit": "millisecond"}
DOMSTATS = """Domain: 'vm1'
  dirtyrate.calc_status=2
  dirtyrate.calc_start_time=348414
  dirtyrate.calc_period=2
  dirtyrate.megabytes_per_second=80
  dirtyrate.calc_mode=dirty-ring
  dirtyrate.vcpu.0.megabytes_per_second=60
  dirtyrate.vcpu.1.megabytes_per_second=20

"""


def test_reading_qemu_query_dirty_rate():
    m = parse_query_dirty_rate(QMP_RING)
    assert m.rate == 80 * MIB and m.window == 1.0 and m.mode == "dirty-ring"
    assert m.vcpu_rates == (60 * MIB, 20 * MIB)  # ordered by vCPU id
    m = parse_query_dirty_rate(QMP_SAMPLING)
    assert m.window == 0.5 and m.vcpu_rates is None and m.sample_pages == 512
    with pytest.raises(ConfigError, match="not finished"):
        parse_query_dirty_rate({"status": "measuring", "calc-time": 10})
    with pytest.raises(ConfigError, match="vCPUs 0..N-1"):
        parse_query_dirty_rate({"status": "measured", "dirty-rate": 1, "calc-time": 1,
                                "vcpu-dirty-rate": [{"id": 1, "dirty-rate": 1}]})


def test_reading_libvirt_domstats():
    m = parse_domstats(DOMSTATS)
    assert (m.rate, m.window, m.mode) == (80 * MIB, 2.0, "dirty-ring")
    assert m.vcpu_rates == (60 * MIB, 20 * MIB)
    with pytest.raises(ConfigError, match="not finished"):
        parse_domstats("Domain: 'vm1'\n  dirtyrate.calc_status=1\n  dirtyrate.calc_period=1\n")
    with pytest.raises(ConfigError, match="no dirtyrate"):
        parse_domstats("Domain: 'vm1'\n  state.state=1\n")


def test_files_and_the_qemu_dirty_rate_spec(tmp_path):
    qmp = tmp_path / "q.json"
    qmp.write_text(json.dumps(QMP_RING))
    virsh = tmp_path / "domstats.txt"
    virsh.write_text(DOMSTATS)
    log = tmp_path / "session.log"  # a QMP session: one JSON object per line
    log.write_text('{"QMP": {"version": {}}}\n{"return": {}}\n' + json.dumps(QMP_RING) + "\n")
    for path in (qmp, virsh, log):
        m = read_dirty_rate(path)
        assert isinstance(m, MeasuredDirtyRate) and m.rate == 80 * MIB
        w = parse_workload(f"qemu-dirty-rate:{path}")
        assert isinstance(w, DirtyRate) and w.shares is not None
        assert np.allclose(np.array(w.shares) / sum(w.shares), [0.75, 0.25])
    w = parse_workload(f"qemu-dirty-rate:{virsh},set=50%")
    assert w.window == 2.0 and w.working_set == 0.5
    with pytest.raises(ConfigError, match="no such file"):
        parse_workload(f"qemu-dirty-rate:{tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n")
    with pytest.raises(ConfigError, match="no dirtyrate"):
        read_dirty_rate(bad)


def test_dirtylog_own_measurement_round_trips(tmp_path):
    from dirtylog.__main__ import main

    out = tmp_path / "rate.json"
    assert main(["dirty-rate", "-m", "1GiB", "--vcpus", "2", "-w", "hotspot:200MiB/s", "--json", str(out)]) == 0
    m = read_dirty_rate(out)
    assert m.mode == "dirty-ring" and m.vcpu_rates is not None and len(m.vcpu_rates) == 2
    w = m.workload()
    # the figure is taken as distinct pages per window: the bitmap count of the replay gives it back
    again = dirty_rate(w, GUEST, window=m.window, mode="dirty-bitmap", vcpus=2)
    assert again.dirty_rate_mib_s == pytest.approx(m.rate_mib_s, rel=0.02)


def test_a_dirty_rate_workload_migrates_and_verifies():
    r = dirtylog.simulate(memory="256MiB", workload=DirtyRate("50MiB/s", window="1s"), link=Link("1GiB/s"),
                          policy=PreCopy(downtime_limit="300ms"), vcpus=2)
    assert r.status == "completed" and r.verified
    # the first round's dirty set matches the measured rate over that round's length; as in QEMU the
    # sync adds only pages already sent (the unsent ones are still dirty in the migration bitmap)
    r0 = r.rounds[0]
    w = DirtyRate("50MiB/s", window="1s")
    sent_share = r0.pages_sent / r.pages
    assert r0.dirty_pages == pytest.approx(w.expected([r0.duration], 65536)[0] * sent_share, rel=0.1)
