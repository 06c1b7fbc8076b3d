"""Tests of dirtylog.models: closed-form predictions of pre-copy migration."""
from __future__ import annotations

import json
import math
from typing import Any, Dict

import pytest

from dirtylog.errors import ConfigError
from dirtylog.models import (
    GeometricPrediction,
    SaturatingPrediction,
    cloudsim,
    geometric,
    naive,
    saturating,
)
from dirtylog.units import parse_rate, parse_time

GiB, MiB = 2**30, 2**20

# --------------------------------------------------------------------------- geometric


def test_geometric_worked_example() -> None:
    # 8 GiB over 10 Gbit/s (1.25e9 B/s) while dirtying 1 Gbit/s: lambda = 0.1,
    # threshold = 1.25e9 * 0.3 = 3.75e8 B; 8 GiB * 0.1 = 8.6e8 > 3.75e8, * 0.01 = 8.6e7 <= 3.75e8: n = 2.
    p = geometric("8GiB", "10Gbit/s", "1Gbit/s")
    v = 8 * GiB
    assert p.ratio == pytest.approx(0.1)
    assert p.threshold_bytes == pytest.approx(3.75e8)
    assert p.rounds == 2
    assert p.converged
    assert p.round_bytes == pytest.approx([v, v * 0.1, v * 0.01])
    assert p.total_bytes == pytest.approx(v * 1.11)
    assert p.downtime == pytest.approx(v * 0.01 / 1.25e9)
    assert p.total_time == pytest.approx(v * 1.11 / 1.25e9)


@pytest.mark.parametrize(
    "memory, bandwidth, dirty_rate, limit",
    [
        ("8GiB", "10Gbit/s", "1Gbit/s", "300ms"),
        ("64GiB", "10Gbit/s", "5Gbit/s", "300ms"),
        ("4GiB", "1Gbit/s", "900Mbit/s", "30ms"),
        ("1GiB", "128MiB/s", "64MiB/s", "300ms"),
        ("16GiB", "25Gbit/s", "24Gbit/s", "1s"),
        (4096 * 2**20, 1e9, 1e8, 0.001),
    ],
)
def test_geometric_closed_form_equals_sum_and_rule(
    memory: Any, bandwidth: Any, dirty_rate: Any, limit: Any
) -> None:
    p = geometric(memory, bandwidth, dirty_rate, downtime_limit=limit, max_rounds=1000)
    assert p.converged
    assert len(p.round_bytes) == p.rounds + 1
    assert p.total_bytes == pytest.approx(math.fsum(p.round_bytes), rel=1e-9)
    ratio = p.ratio
    for i, sent in enumerate(p.round_bytes):
        assert sent == pytest.approx(p.round_bytes[0] * ratio**i, rel=1e-9)
    # n is the first round at or below the threshold: n = ceil(log_lambda(V_th / V))
    assert p.round_bytes[-1] <= p.threshold_bytes
    assert all(b > p.threshold_bytes for b in p.round_bytes[:-1])
    expected_n = math.ceil(math.log(p.threshold_bytes / p.round_bytes[0]) / math.log(ratio))
    assert abs(p.rounds - expected_n) <= 1  # equal up to the float rounding of the logarithm
    r, t = parse_rate(bandwidth), parse_time(limit)
    assert p.downtime == pytest.approx(p.round_bytes[-1] / r)
    assert p.downtime <= t * (1 + 1e-12)
    assert p.total_time == pytest.approx(p.total_bytes / r)


def test_geometric_n_formula_exact_case() -> None:
    # V = 8, lambda = 1/2, V_th = 1: n = log2(8) = 3 exactly, even though the float logarithm is inexact.
    p = geometric(8 * GiB, 1 * GiB, 0.5 * GiB, downtime_limit=1.0)
    assert p.rounds == 3
    assert p.round_bytes[-1] == GiB == p.threshold_bytes


def test_geometric_no_rounds_when_memory_fits_in_downtime() -> None:
    p = geometric("256MiB", "10Gbit/s", "5Gbit/s", downtime_limit="300ms")
    assert p.rounds == 0 and p.converged
    assert p.round_bytes == [256 * MiB]
    assert p.total_bytes == 256 * MiB
    assert p.downtime == pytest.approx(256 * MiB / 1.25e9)
    assert p.total_time == pytest.approx(p.downtime)


def test_geometric_zero_dirty_rate_needs_one_round() -> None:
    p = geometric("8GiB", "1Gbit/s", 0)
    assert p.ratio == 0 and p.rounds == 1 and p.converged
    assert p.round_bytes == [8 * GiB, 0.0]
    assert p.total_bytes == 8 * GiB
    assert p.downtime == 0.0


@pytest.mark.parametrize("dirty_rate", ["1Gbit/s", "2Gbit/s", "10Gbit/s"])
def test_geometric_lambda_at_least_one_does_not_converge(dirty_rate: str) -> None:
    p = geometric("8GiB", "1Gbit/s", dirty_rate, max_rounds=30)
    assert p.ratio >= 1
    assert not p.converged
    assert p.rounds == 30
    assert len(p.round_bytes) == 31
    assert p.total_bytes == pytest.approx(math.fsum(p.round_bytes), rel=1e-9)
    assert p.downtime == pytest.approx(p.round_bytes[-1] / 1.25e8)


def test_geometric_lambda_one_total() -> None:
    p = geometric(GiB, 1e9, 1e9, max_rounds=7)
    assert p.ratio == 1 and not p.converged
    assert p.total_bytes == 8 * GiB


def test_geometric_round_cap_reached_with_lambda_below_one() -> None:
    p = geometric("64GiB", "10Gbit/s", "9.9Gbit/s", max_rounds=10)
    assert p.ratio < 1 and not p.converged and p.rounds == 10
    assert p.round_bytes[-1] > p.threshold_bytes
    uncapped = geometric("64GiB", "10Gbit/s", "9.9Gbit/s", max_rounds=100_000)
    assert uncapped.converged and uncapped.rounds > 10


def test_geometric_max_rounds_zero_is_stop_and_copy() -> None:
    p = geometric("8GiB", "10Gbit/s", "1Gbit/s", max_rounds=0)
    assert p.rounds == 0 and not p.converged
    assert p.downtime == pytest.approx(8 * GiB / 1.25e9)


def test_geometric_infinite_downtime_limit_is_stop_and_copy() -> None:
    p = geometric("8GiB", "10Gbit/s", "20Gbit/s", downtime_limit=math.inf)
    assert p.rounds == 0 and p.converged
    assert p.downtime == pytest.approx(naive("8GiB", "10Gbit/s"))


def test_geometric_zero_downtime_limit_never_converges_with_dirtying() -> None:
    p = geometric("8GiB", "10Gbit/s", "1Gbit/s", downtime_limit=0, max_rounds=5)
    assert not p.converged and p.rounds == 5


def test_geometric_resume_time_is_added() -> None:
    base = geometric("8GiB", "10Gbit/s", "1Gbit/s")
    p = geometric("8GiB", "10Gbit/s", "1Gbit/s", resume_time="20ms")
    assert p.downtime == pytest.approx(base.downtime + 0.02)
    assert p.total_time == pytest.approx(base.total_time + 0.02)
    assert p.rounds == base.rounds  # the stop rule ignores the resume time


def test_geometric_units_equal_numbers() -> None:
    assert geometric("8GiB", "10Gbit/s", "1Gbit/s", "300ms") == geometric(8 * GiB, 1.25e9, 1.25e8, 0.3)


def test_geometric_more_dirtying_more_rounds() -> None:
    rounds = [geometric("8GiB", "10Gbit/s", f"{d}Gbit/s", max_rounds=1000).rounds for d in (1, 3, 5, 7, 9)]
    assert rounds == sorted(rounds) and rounds[0] < rounds[-1]


def test_geometric_to_dict() -> None:
    p = geometric("8GiB", "10Gbit/s", "1Gbit/s")
    d = p.to_dict()
    assert set(d) == {
        "rounds", "round_bytes", "total_bytes", "total_time", "downtime", "converged", "ratio", "threshold_bytes"
    }
    assert d["rounds"] == 2 and d["round_bytes"] == p.round_bytes and d["round_bytes"] is not p.round_bytes
    json.dumps(d)
    assert isinstance(p, GeometricPrediction)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"bandwidth": 0}, r"^bandwidth must be > 0"),
        ({"bandwidth": -1}, r"^bandwidth must be > 0"),
        ({"bandwidth": math.nan}, r"^bandwidth must be a number, got NaN"),
        ({"bandwidth": "10G"}, r"^bandwidth: '10G' is ambiguous"),
        ({"bandwidth": math.inf}, r"^bandwidth must be finite"),
        ({"memory": 0}, r"^memory must be > 0"),
        ({"memory": "-8GiB"}, r"^memory must be > 0"),
        ({"memory": "8Gb"}, r"^memory: '8Gb' is in bits"),
        ({"dirty_rate": -1}, r"^dirty_rate must be >= 0"),
        ({"dirty_rate": "nan"}, r"^dirty_rate must be a number"),
        ({"downtime_limit": "-1ms"}, r"^downtime_limit must be >= 0"),
        ({"downtime_limit": "soon"}, r"^downtime_limit: cannot read 'soon' as a duration"),
        ({"resume_time": -0.1}, r"^resume_time must be >= 0"),
        ({"max_rounds": -1}, r"max_rounds"),
        ({"max_rounds": 10**9}, r"max_rounds"),
        ({"max_rounds": 2.5}, r"max_rounds"),
    ],
)
def test_geometric_bad_values(kwargs: Dict[str, Any], pattern: str) -> None:
    args: Dict[str, Any] = {"memory": "8GiB", "bandwidth": "10Gbit/s", "dirty_rate": "1Gbit/s"}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=pattern):
        geometric(**args)


@pytest.mark.parametrize(
    "kwargs", [{"bandwidth": None}, {"memory": [1]}, {"dirty_rate": True}, {"max_rounds": "30"}]
)
def test_geometric_bad_types(kwargs: Dict[str, Any]) -> None:
    args: Dict[str, Any] = {"memory": "8GiB", "bandwidth": "10Gbit/s", "dirty_rate": "1Gbit/s"}
    args.update(kwargs)
    with pytest.raises(TypeError):
        geometric(**args)


# --------------------------------------------------------------------------- saturating


def test_saturating_first_round_is_all_pages() -> None:
    n = 2**21  # 8 GiB of 4 KiB pages
    p = saturating(n, 4096, "10Gbit/s", "200000/s")
    assert p.round_pages[0] == n
    assert p.round_bytes[0] == n * (4096 + 8)
    assert p.round_times[0] == pytest.approx(n * 4104 / 1.25e9)


def test_saturating_recursion() -> None:
    n, psize, header, bw, w = 2**21, 4096, 8, 1.25e9, 200_000.0
    p = saturating(n, psize, bw, w, header_bytes=header)
    assert p.converged
    unit = psize + header
    for i in range(p.rounds):
        t = p.round_pages[i] * unit / bw
        assert p.round_times[i] == pytest.approx(t)
        assert p.round_pages[i + 1] == pytest.approx(n * (1 - math.exp(-w * t / n)), rel=1e-12)
    assert p.round_bytes == pytest.approx([v * unit for v in p.round_pages])
    assert p.total_bytes == pytest.approx(sum(p.round_bytes))
    assert p.total_time == pytest.approx(sum(p.round_times))
    assert p.downtime == pytest.approx(p.round_times[-1])
    # the stop rule: the last round fits in the downtime limit, none before did
    assert p.round_bytes[-1] <= p.threshold_bytes == pytest.approx(bw * 0.3)
    assert all(b > p.threshold_bytes for b in p.round_bytes[:-1])
    assert len(p.round_pages) == len(p.round_bytes) == len(p.round_times) == p.rounds + 1


def test_saturating_never_exceeds_memory_and_not_faster_than_geometric() -> None:
    # Saturation means rounds never hold more than N pages, and no more than the linear (geometric) guess.
    n, psize = 2**20, 4096
    p = saturating(n, psize, "1Gbit/s", "50000/s", header_bytes=0, max_rounds=50)
    g = geometric(n * psize, "1Gbit/s", 50000 * psize, max_rounds=50)
    assert all(v <= n for v in p.round_pages)
    assert p.rounds <= g.rounds
    for sat, geo in zip(p.round_bytes, g.round_bytes):
        assert sat <= geo * (1 + 1e-12)


def test_saturating_heavy_writes_do_not_converge() -> None:
    p = saturating(2**20, 4096, "1Gbit/s", "10GiB/s", max_rounds=20)
    assert not p.converged
    assert p.rounds == 20
    assert p.round_pages[-1] == pytest.approx(2**20, rel=1e-3)  # every page dirty again each round


def test_saturating_byte_rate_equals_page_rate() -> None:
    a = saturating(2**18, "4KiB", "10Gbit/s", "400MiB/s")
    b = saturating(2**18, 4096, 1.25e9, 400 * 2**20 / 4096)
    assert a == b


def test_saturating_no_writes_one_round() -> None:
    p = saturating(2**20, 4096, "10Gbit/s", 0)
    assert p.rounds == 1 and p.converged and p.round_pages == [2**20, 0.0]


def test_saturating_small_guest_stops_at_once() -> None:
    p = saturating(1000, 4096, "10Gbit/s", "1e6/s", resume_time="5ms")
    assert p.rounds == 0 and p.converged
    assert p.downtime == pytest.approx(1000 * 4104 / 1.25e9 + 0.005)


def test_saturating_over_a_region_dirties_its_pages_only() -> None:
    # A guest writing a quarter of memory: round 0 still sends every page, later rounds saturate at the region.
    n, region, psize, bw, w = 2**20, 2**18, 4096, 1.25e8, 200_000.0
    p = saturating(n, psize, bw, w, written_pages=region, max_rounds=20)
    assert p.round_pages[0] == n
    assert all(v <= region for v in p.round_pages[1:])
    assert p.round_pages[-1] == pytest.approx(region, rel=1e-2) and not p.converged  # nearly all of it dirty again
    t = n * (psize + 8) / bw
    assert p.round_pages[1] == pytest.approx(region * (1 - math.exp(-w * t / region)), rel=1e-12)
    assert saturating(n, psize, bw, w, written_pages=n) == saturating(n, psize, bw, w)
    for bad in (0, n + 1):
        with pytest.raises(ConfigError, match="written_pages"):
            saturating(n, psize, bw, w, written_pages=bad)


def test_a_migrations_saturating_model_takes_the_region_its_workload_writes() -> None:
    from dirtylog import Link, simulate
    from dirtylog.workloads import Hotspot, Sequential, Uniform

    pages = 256 * MiB // 4096
    region = Uniform("20MiB/s", start="4MiB", length="16MiB", seed=1)
    assert region.written_pages(pages) == 16 * MiB // 4096
    assert Uniform("20MiB/s").written_pages(pages) == Hotspot("20MiB/s").written_pages(pages) == pages
    assert Sequential("1MiB/s", start=10, length=1000, stride=4).written_pages(pages) == 250  # gcd 4: every 4th
    r = simulate(memory="256MiB", workload=region, link=Link("100Mbit/s"))
    s = r.models["saturating"]
    assert s["round_pages"][0] == pages
    assert 0 < max(s["round_pages"][1:]) <= 16 * MiB // 4096
    n, w, t0 = 16 * MiB // 4096, region.write_rate(), s["round_times"][0]
    assert s["round_pages"][1] == pytest.approx(n * (1 - math.exp(-w * t0 / n)), rel=1e-12)


def test_saturating_to_dict() -> None:
    p = saturating(2**20, 4096, "10Gbit/s", "100000/s")
    d = p.to_dict()
    assert {"round_pages", "round_bytes", "round_times", "total_bytes", "total_time", "downtime", "converged"} <= set(d)
    assert d["round_pages"] == p.round_pages
    json.dumps(d)
    assert isinstance(p, SaturatingPrediction)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"pages": 0}, r"pages"),
        ({"page_size": 0}, r"^page_size must be > 0"),
        ({"bandwidth": 0}, r"^bandwidth must be > 0"),
        ({"bandwidth": "-1Gbit/s"}, r"^bandwidth must be > 0"),
        ({"bandwidth": math.nan}, r"^bandwidth must be a number, got NaN"),
        ({"write_rate": -5}, r"^write_rate must be >= 0"),
        ({"write_rate": "fast"}, r"^write_rate: cannot read 'fast'"),
        ({"header_bytes": -8}, r"^header_bytes must be >= 0"),
        ({"downtime_limit": math.nan}, r"^downtime_limit must be a number"),
        ({"max_rounds": -1}, r"max_rounds"),
    ],
)
def test_saturating_bad_values(kwargs: Dict[str, Any], pattern: str) -> None:
    args: Dict[str, Any] = {"pages": 2**20, "page_size": 4096, "bandwidth": "10Gbit/s", "write_rate": "1000/s"}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=pattern):
        saturating(**args)


@pytest.mark.parametrize("kwargs", [{"pages": "1M"}, {"pages": None}, {"bandwidth": [1]}, {"write_rate": None}])
def test_saturating_bad_types(kwargs: Dict[str, Any]) -> None:
    args: Dict[str, Any] = {"pages": 2**20, "page_size": 4096, "bandwidth": "10Gbit/s", "write_rate": "1000/s"}
    args.update(kwargs)
    with pytest.raises(TypeError):
        saturating(**args)


# --------------------------------------------------------------------------- cloudsim and naive


@pytest.mark.parametrize(
    "memory, bandwidth, expected_naive",
    [("1GiB", "1Gbit/s", GiB / 1.25e8), (8 * GiB, 1.25e9, 8 * GiB / 1.25e9), ("4GB", "1GB/s", 4.0)],
)
def test_cloudsim_and_naive(memory: Any, bandwidth: Any, expected_naive: float) -> None:
    assert naive(memory, bandwidth) == pytest.approx(expected_naive)
    assert cloudsim(memory, bandwidth) == pytest.approx(2 * expected_naive)


@pytest.mark.parametrize("func", [cloudsim, naive])
@pytest.mark.parametrize(
    "memory, bandwidth, pattern",
    [
        ("1GiB", 0, r"^bandwidth must be > 0"),
        ("1GiB", -1, r"^bandwidth must be > 0"),
        ("1GiB", math.nan, r"^bandwidth must be a number"),
        (0, "1Gbit/s", r"^memory must be > 0"),
        (math.nan, "1Gbit/s", r"^memory must be a number"),
    ],
)
def test_cloudsim_naive_bad_values(func: Any, memory: Any, bandwidth: Any, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        func(memory, bandwidth)


def test_naive_is_a_lower_bound_of_geometric() -> None:
    for d in ("0", "1Gbit/s", "5Gbit/s", "9Gbit/s"):
        assert geometric("8GiB", "10Gbit/s", d).total_time >= naive("8GiB", "10Gbit/s") * (1 - 1e-12)


def test_written_pages_of_mixes_hot_sets_and_working_sets() -> None:
    """A Mix writes the union of its parts' pages (it reported all of memory): the regions' union exactly,
    a set scattered by a seeded permutation its expected share of what the regions leave out. A Hotspot
    whose hot (or cold) set takes every write, and a WorkingSet, write their sets only."""
    from dirtylog.workloads import Hotspot, Mix, Sequential, Uniform, WorkingSet, Zipf

    n = 16384
    a, b = Uniform("1MiB/s", start=0, length=1000), Uniform("1MiB/s", start=500, length=1000)
    assert Mix([a, b]).written_pages(n) == 1500
    assert Mix([a, Uniform("1MiB/s", start=4000, length=10)]).written_pages(n) == 1010
    # every 2nd page of [500, 1500): 500 pages, 250 of them inside a's [0, 1000)
    assert Mix([a, Sequential("1MiB/s", start=500, length=1000, stride=2)]).written_pages(n) == 1250
    assert Mix([a, Mix([b])]).written_pages(n) == 1500  # nested mixes are flattened
    hot = Hotspot("1MiB/s", hot_fraction=0.25, hot_share=1.0)
    assert hot.written_pages(n) == 4096 and Hotspot("1MiB/s", 0.25, 0.0).written_pages(n) == n - 4096
    assert Hotspot("1MiB/s", 0.0, 1.0).written_pages(n) == n  # an empty hot set leaves every write to the rest
    assert Mix([a, hot]).written_pages(n) == round(n - (n - 1000) * (1 - 4096 / n))
    ws = WorkingSet([("1s", "25%", "1MiB/s"), ("1s", "10%", "1MiB/s")])
    assert ws.written_pages(n) == 4096 + 1638
    assert WorkingSet([("1s", "75%", "1MiB/s"), ("1s", "50%", "1MiB/s")]).written_pages(n) == n
    for whole in (Uniform("1MiB/s"), Hotspot("1MiB/s"), Zipf("1MiB/s")):
        assert Mix([a, whole]).written_pages(n) == n  # a part writing all of memory covers it
