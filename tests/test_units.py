"""Tests of dirtylog.units: parsing and formatting sizes, rates and durations."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Dict

import numpy as np
import pytest

from dirtylog.errors import ConfigError
from dirtylog.units import (
    format_dirty_rate,
    format_rate,
    format_size,
    format_time,
    parse_count_rate,
    parse_rate,
    parse_size,
    parse_time,
)

KiB, MiB, GiB, TiB, PiB = 2**10, 2**20, 2**30, 2**40, 2**50

# --------------------------------------------------------------------------- parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8GiB", 8 * GiB),
        ("8 GiB", 8 * GiB),
        ("  8 GiB  ", 8 * GiB),
        ("512KiB", 512 * KiB),
        ("4KB", 4000),
        ("4kB", 4000),
        ("1.5TiB", 3 * TiB // 2),
        ("1.5GiB", 3 * GiB // 2),
        ("100MB", 100_000_000),
        ("2 GB", 2_000_000_000),
        ("1PB", 10**15),
        ("1PiB", PiB),
        ("4G", 4 * GiB),  # bare prefixes are binary, as in QEMU
        ("4g", 4 * GiB),
        ("512k", 512 * KiB),
        ("512K", 512 * KiB),
        ("1M", MiB),
        ("2T", 2 * TiB),
        ("1P", PiB),
        ("1E", 2**60),
        ("4Gi", 4 * GiB),
        ("8gib", 8 * GiB),  # the i-forms are case-insensitive
        ("8GIB", 8 * GiB),
        ("8giB", 8 * GiB),
        ("4096B", 4096),
        ("4096 B", 4096),
        ("4096b", 4096),  # QEMU accepts a lone b for bytes
        ("4096 bytes", 4096),
        ("1e3B", 1000),
        ("1e3 KiB", 1000 * KiB),
        ("0", 0),
        ("0 GiB", 0),
        ("0.5KiB", 512),
        ("0.1KiB", 102),  # strings with a prefix are rounded to whole bytes
        ("1.1GB", 1_100_000_000),  # exact decimal arithmetic, no float error
        (".5MiB", MiB // 2),
        ("+4K", 4 * KiB),
    ],
)
def test_parse_size_strings(text: str, expected: int) -> None:
    result = parse_size(text)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value, expected",
    [
        (4096, 4096),
        (0, 0),
        (4096.0, 4096),
        (8 * GiB, 8 * GiB),
        (np.int64(4096), 4096),
        (np.uint32(512), 512),
        (np.float64(2.0**33), 2**33),
        (Fraction(8, 2), 4),
        (2**70, 2**70),
    ],
)
def test_parse_size_numbers(value: Any, expected: int) -> None:
    result = parse_size(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("text", ["4Gb", "4 Mb", "10Kb", "1Tb", "4Gbit", "64 bits", "4 Gibit", "8bit"])
def test_parse_size_rejects_bits(text: str) -> None:
    with pytest.raises(ConfigError, match=r"memory.*bits"):
        parse_size(text, name="memory")


def test_parse_size_bits_message_suggests_bytes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_size("4Gb", name="memory")
    msg = str(info.value)
    assert "'4Gb'" in msg and "'4GB'" in msg and "'4GiB'" in msg


@pytest.mark.parametrize(
    "value",
    ["", "   ", "GiB", "8 XB", "8 GiBs", "eight GiB", "8GiB/s", "8 GB/s", "1.2.3", "4 G B x", "nan GiB", "--4K"],
)
def test_parse_size_unreadable(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(value, name="memory")
    msg = str(info.value)
    assert msg.startswith("memory")
    assert "'8GiB'" in msg  # an example of an allowed form


@pytest.mark.parametrize("value", [-1, -1.0, "-1B", "-4GiB", -math.inf, "-inf"])
def test_parse_size_negative(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"memory must be >= 0"):
        parse_size(value, name="memory")


@pytest.mark.parametrize("value", [1.5, "1.5b", "1.5 B", 0.25, np.float32(2.5)])
def test_parse_size_fractional_bytes(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"page_size must be a whole number of bytes"):
        parse_size(value, name="page_size")


@pytest.mark.parametrize("value", [math.nan, "nan", "NaN", np.float64("nan")])
def test_parse_size_nan(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"memory must be a number, got NaN"):
        parse_size(value, name="memory")


@pytest.mark.parametrize("value", [math.inf, "inf", "Infinity", "inf GiB"])
def test_parse_size_inf(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"memory must be finite"):
        parse_size(value, name="memory")
    assert parse_size(value, name="memory", allow_inf=True) == math.inf


@pytest.mark.parametrize("value", [0, 0.0, "0", "0 GiB", "0.0001KiB"])
def test_parse_size_zero(value: Any) -> None:
    assert parse_size(value) == 0
    with pytest.raises(ConfigError, match=r"page_size must be > 0"):
        parse_size(value, name="page_size", allow_zero=False)


@pytest.mark.parametrize("value", [None, [4096], (1,), {"a": 1}, b"4G", True, False, np.bool_(True), object()])
def test_parse_size_wrong_type(value: Any) -> None:
    with pytest.raises(TypeError, match=r"memory must be"):
        parse_size(value, name="memory")


def test_config_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_size("lots", name="memory")


# --------------------------------------------------------------------------- parse_rate


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10Gbit/s", 1.25e9),
        ("10 Gbit/s", 1.25e9),
        ("10 Gbps", 1.25e9),
        ("10Gb/s", 1.25e9),
        ("10gbps", 1.25e9),
        ("10 GBIT/S", 1.25e9),
        ("10Gbits/s", 1.25e9),
        ("1Gbit", 1.25e8),
        ("1Gb", 1.25e8),
        ("800Mbit/s", 1e8),
        ("800 Mbps", 1e8),
        ("100kbit/s", 12_500.0),
        ("100Kb/s", 12_500.0),
        ("1Tbit/s", 1.25e11),
        ("8 bit/s", 1.0),
        ("8 bps", 1.0),
        ("1Kibit/s", 128.0),
        ("1Gibit/s", GiB / 8),
        ("1GiB/s", float(GiB)),
        ("1 giB/s", float(GiB)),
        ("128MiB/s", float(128 * MiB)),
        ("128 MiB / s", float(128 * MiB)),
        ("128MiBps", float(128 * MiB)),
        ("100MB/s", 1e8),
        ("100 MBps", 1e8),
        ("1.5 GB/s", 1.5e9),
        ("1.25GB/s", 1.25e9),
        ("1e9 B/s", 1e9),
        ("1e9B/s", 1e9),
        ("100 Bps", 100.0),
        ("100 bytes/s", 100.0),
        ("12500000B/s", 12_500_000.0),
        ("12500000/s", 12_500_000.0),
        ("0.5B/s", 0.5),
        ("0", 0.0),
        ("0 Gbit/s", 0.0),
        ("1 MB/sec", 1e6),
    ],
)
def test_parse_rate_strings(text: str, expected: float) -> None:
    result = parse_rate(text)
    assert result == pytest.approx(expected, rel=1e-15)
    assert type(result) is float


def test_parse_rate_exact_values() -> None:
    assert parse_rate("10Gbit/s") == 1.25e9
    assert parse_rate("1GiB/s") == 2.0**30
    assert parse_rate("128MiB/s") == 128 * 2.0**20


@pytest.mark.parametrize(
    "value, expected",
    [(12_500_000, 12_500_000.0), (1.5, 1.5), (0, 0.0), (np.float32(2.0), 2.0), (np.int64(7), 7.0)],
)
def test_parse_rate_numbers(value: Any, expected: float) -> None:
    result = parse_rate(value)
    assert result == expected and type(result) is float


@pytest.mark.parametrize("text", ["1GiB", "100MB", "100 B", "5 bytes", "1e9B"])
def test_parse_rate_byte_size_is_not_a_rate(text: str) -> None:
    """A byte unit without /s is a size: 'hotspot:1GiB' or '-b 1GiB' ran silently at 1 GiB/s."""
    with pytest.raises(ConfigError, match=r"bandwidth: .* is a size, not a rate; write '.*/s'"):
        parse_rate(text, name="bandwidth")


@pytest.mark.parametrize("text", ["10G", "10 G/s", "10g", "512k", "1 M/s"])
def test_parse_rate_bare_prefix_is_ambiguous(text: str) -> None:
    with pytest.raises(ConfigError, match=r"bandwidth.*ambiguous.*bit/s"):
        parse_rate(text, name="bandwidth")


def test_parse_rate_gib_lower_b_is_ambiguous() -> None:
    with pytest.raises(ConfigError, match=r"'1GiB/s' \(bytes\) or '1Gibit/s' \(bits\)"):
        parse_rate("1Gib/s", name="bandwidth")


def test_parse_rate_error_message_example() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rate("10 Gbits per s", name="bandwidth")
    assert str(info.value) == (
        "bandwidth: cannot read '10 Gbits per s' as a rate; use a number of bytes/s or a string "
        "like '10Gbit/s', '1.25GB/s', '128MiB/s'"
    )


@pytest.mark.parametrize("text", ["", "fast", "10 Gbit/h", "10 GHz", "10 Gbit/s/s", "Gbit/s", "10 Gbit per second"])
def test_parse_rate_unreadable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^bandwidth: cannot read .* as a rate.*'10Gbit/s'"):
        parse_rate(text, name="bandwidth")


@pytest.mark.parametrize("value", [-1, -0.5, "-1Gbit/s", "-inf"])
def test_parse_rate_negative(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"dirty_rate must be >= 0.*'10Gbit/s'"):
        parse_rate(value, name="dirty_rate")


@pytest.mark.parametrize("value", [0, 0.0, "0", "0 Gbit/s"])
def test_parse_rate_zero(value: Any) -> None:
    assert parse_rate(value, name="bandwidth") == 0.0
    with pytest.raises(ConfigError, match=r"bandwidth must be > 0, got"):
        parse_rate(value, name="bandwidth", allow_zero=False)


def test_parse_rate_negative_message_when_zero_not_allowed() -> None:
    with pytest.raises(ConfigError, match=r"bandwidth must be > 0"):
        parse_rate(-5, name="bandwidth", allow_zero=False)


@pytest.mark.parametrize("value", [math.inf, "inf", "inf Gbit/s", np.inf])
def test_parse_rate_inf(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"bandwidth must be finite"):
        parse_rate(value, name="bandwidth")
    assert parse_rate(value, name="bandwidth", allow_inf=True) == math.inf


@pytest.mark.parametrize("value", [math.nan, "nan", "NaN B/s"])
def test_parse_rate_nan(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"bandwidth must be a number, got NaN"):
        parse_rate(value, name="bandwidth")


@pytest.mark.parametrize("value", [None, [1e9], True, b"1G", {1: 2}])
def test_parse_rate_wrong_type(value: Any) -> None:
    with pytest.raises(TypeError, match=r"bandwidth must be"):
        parse_rate(value, name="bandwidth")


def test_parse_rate_too_large_for_float() -> None:
    with pytest.raises(ConfigError, match=r"bandwidth.*too large"):
        parse_rate(10**400, name="bandwidth")


# --------------------------------------------------------------------------- parse_time


@pytest.mark.parametrize(
    "text, expected",
    [
        ("300ms", 0.3),
        ("300 ms", 0.3),
        ("300MS", 0.3),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("1.5 sec", 1.5),
        ("2 seconds", 2.0),
        ("5us", 5e-6),
        ("5µs", 5e-6),  # micro sign U+00B5
        ("5μs", 5e-6),  # Greek mu U+03BC
        ("250ns", 2.5e-7),
        ("2min", 120.0),
        ("2 minutes", 120.0),
        ("1h", 3600.0),
        ("1.5 h", 5400.0),
        ("1 hour", 3600.0),
        ("1d", 86400.0),
        ("0s", 0.0),
        ("0", 0.0),
        ("30 sec", 30.0),
        ("1e-3 s", 1e-3),
        ("2 min 5 s", 125.0),
        ("1h30min", 5400.0),
        ("1 h 2 min 5 s", 3725.0),
        ("1 s 500 ms", 1.5),
    ],
)
def test_parse_time_strings(text: str, expected: float) -> None:
    result = parse_time(text)
    assert result == pytest.approx(expected, rel=1e-15)
    assert type(result) is float


@pytest.mark.parametrize("value, expected", [(0.3, 0.3), (1, 1.0), (0, 0.0), (np.float64(0.03), 0.03)])
def test_parse_time_numbers(value: Any, expected: float) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("text", ["", "soon", "5 m", "3 fortnights", "1 s 2", "s 5", "1:30"])
def test_parse_time_unreadable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^downtime_limit: cannot read .* as a duration.*'300ms'"):
        parse_time(text, name="downtime_limit")


def test_parse_time_m_is_ambiguous() -> None:
    with pytest.raises(ConfigError, match=r"'min' for minutes or 'ms' for milliseconds"):
        parse_time("5m", name="downtime_limit")


@pytest.mark.parametrize("value", [-1, "-300ms", -0.001])
def test_parse_time_negative(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"downtime_limit must be >= 0.*'300ms'"):
        parse_time(value, name="downtime_limit")


def test_parse_time_zero_inf_nan() -> None:
    assert parse_time("0s", name="t") == 0.0
    with pytest.raises(ConfigError, match=r"^t must be > 0"):
        parse_time("0s", name="t", allow_zero=False)
    with pytest.raises(ConfigError, match=r"^t must be finite"):
        parse_time("inf", name="t")
    assert parse_time("inf", name="t", allow_inf=True) == math.inf
    assert parse_time(math.inf, name="t", allow_inf=True) == math.inf
    with pytest.raises(ConfigError, match=r"^t must be a number, got NaN"):
        parse_time(math.nan, name="t")


@pytest.mark.parametrize("value", [None, [1], True, b"1s"])
def test_parse_time_wrong_type(value: Any) -> None:
    with pytest.raises(TypeError, match=r"resume_time must be"):
        parse_time(value, name="resume_time")


# --------------------------------------------------------------------------- parse_count_rate


@pytest.mark.parametrize(
    "value, page_size, expected",
    [
        (5000, 4096, 5000.0),
        (2.5, 4096, 2.5),
        ("5000", 4096, 5000.0),
        ("5000/s", 4096, 5000.0),
        ("5000 pages/s", 4096, 5000.0),
        ("5000 page/s", 4096, 5000.0),
        ("5000 writes/s", 4096, 5000.0),
        ("1GiB/s", 4096, GiB / 4096),
        ("1GiB/s", "4KiB", GiB / 4096),
        ("1GiB/s", "2MiB", 512.0),
        ("128MiB/s", 4096, 32768.0),
        ("800Mbit/s", 4000, 25_000.0),
        ("0/s", 4096, 0.0),
    ],
)
def test_parse_count_rate(value: Any, page_size: Any, expected: float) -> None:
    result = parse_count_rate(value, page_size)
    assert result == pytest.approx(expected, rel=1e-15)
    assert type(result) is float


def test_parse_count_rate_errors() -> None:
    with pytest.raises(ConfigError, match=r"^write_rate: cannot read .*'5000/s'"):
        parse_count_rate("lots/s", 4096, name="write_rate")
    with pytest.raises(ConfigError, match=r"^write_rate must be >= 0"):
        parse_count_rate(-1, 4096, name="write_rate")
    with pytest.raises(ConfigError, match=r"^write_rate must be > 0"):
        parse_count_rate(0, 4096, name="write_rate", allow_zero=False)
    with pytest.raises(ConfigError, match=r"write_rate.*ambiguous"):
        parse_count_rate("1G/s", 4096, name="write_rate")
    with pytest.raises(ConfigError, match=r"^page_size must be > 0"):
        parse_count_rate(5, 0, name="write_rate")
    with pytest.raises(ConfigError, match=r"^write_rate must be finite"):
        parse_count_rate("inf", 4096, name="write_rate")
    assert parse_count_rate("inf", 4096, allow_inf=True) == math.inf
    with pytest.raises(TypeError, match=r"write_rate must be"):
        parse_count_rate(None, 4096, name="write_rate")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"page_size must be"):
        parse_count_rate(5, None, name="write_rate")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "value, expected",
    [
        (4 * GiB, "4.00 GiB"),
        (512, "512 B"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1.5 * MiB, "1.50 MiB"),
        (12.5 * MiB, "12.5 MiB"),
        (300 * GiB, "300 GiB"),
        (MiB - 1, "1.00 MiB"),  # rounds up into the next unit
        (2 * TiB, "2.00 TiB"),
        (1.5, "1.50 B"),
        ("8GiB", "8.00 GiB"),
        (-2048, "-2.00 KiB"),
        (math.inf, "inf B"),
    ],
)
def test_format_size(value: Any, expected: str) -> None:
    assert format_size(value) == expected


@pytest.mark.parametrize(
    "value, bits, expected",
    [
        (1.25e9, False, "1.25 GB/s"),
        (1.25e9, True, "10.0 Gbit/s"),
        (128 * MiB, False, "134 MB/s"),
        (512, False, "512 B/s"),
        (0, False, "0 B/s"),
        (12.5, False, "12.5 B/s"),
        (999.7, False, "1.00 kB/s"),
        (1.25e5, True, "1.00 Mbit/s"),
        ("10Gbit/s", True, "10.0 Gbit/s"),
        ("10Gbit/s", False, "1.25 GB/s"),
    ],
)
def test_format_rate(value: Any, bits: bool, expected: str) -> None:
    assert format_rate(value, bits=bits) == expected


def test_format_dirty_rate_counts_as_qemu_does() -> None:
    """Dirty rates and dirty-limit quotas in MiB/s: QEMU's vcpu-dirty-limit, documented in "MB/s",
    counts MiB, so a quota read off the output sets in QEMU what dirtylog ran (a decimal 126 MB/s
    would be set 4.9 % higher there)."""
    assert format_dirty_rate(126 * MiB) == "126 MiB/s"
    assert format_dirty_rate("1MiB/s") == "1.00 MiB/s"
    assert format_dirty_rate(126e6) == "120 MiB/s"
    assert parse_rate(format_dirty_rate(153.5 * MiB)) == pytest.approx(153.5 * MiB, rel=4e-3)
    with pytest.raises(TypeError):
        format_dirty_rate(None)  # type: ignore[arg-type]  # the wrong type is the point


def test_format_dirty_rate_whole_quotas_as_qemu_takes_them() -> None:
    """A quota that is a whole number of MiB/s by construction (QEMU's vcpu-dirty-limit is a uint64 of
    MiB/s; advice searches only those) prints exactly, in MiB/s, without a false third digit; a value
    that is not whole prints as without ``whole``."""
    assert format_dirty_rate(75 * MiB, whole=True) == "75 MiB/s"
    assert format_dirty_rate(75 * MiB) == "75.0 MiB/s"
    assert format_dirty_rate("1MiB/s", whole=True) == "1 MiB/s"
    assert format_dirty_rate(1100 * MiB, whole=True) == "1100 MiB/s"  # three digits would say 1.07 GiB/s
    assert parse_rate(format_dirty_rate(1100 * MiB, whole=True)) == 1100 * MiB
    assert format_dirty_rate(74.7 * MiB, whole=True) == format_dirty_rate(74.7 * MiB) == "74.7 MiB/s"
    assert format_dirty_rate(0, whole=True) == format_dirty_rate(0)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.3, "300 ms"),
        (1.5, "1.50 s"),
        (125, "2 min 5 s"),
        (12e-6, "12.0 us"),
        (250e-9, "250 ns"),
        (0, "0 s"),
        (0.99999, "1.00 s"),
        (59.999, "1 min"),
        (120, "2 min"),
        (3600, "1 h"),
        (3725, "1 h 2 min 5 s"),
        ("300ms", "300 ms"),
        (math.inf, "inf s"),
    ],
)
def test_format_time(value: Any, expected: str) -> None:
    assert format_time(value) == expected


@pytest.mark.parametrize(
    "value, decimals, expected",
    [
        (340.0571, 2, "5 min 40.06 s"),
        (23.456, 1, "23.5 s"),
        (0.0204, 3, "0.020 s"),
        (3725.5, 0, "1 h 2 min 6 s"),
        (3600.04, 1, "1 h 0 min 0.0 s"),
        (59.996, 2, "1 min 0.00 s"),
        (-1.26, 1, "-1.3 s"),
    ],
)
def test_format_time_with_decimals(value: float, decimals: int, expected: str) -> None:
    # for a column of times that must tell close values apart; parse_time reads it back
    assert format_time(value, decimals) == expected
    assert parse_time(expected.lstrip("-")) == pytest.approx(abs(value), abs=0.5 * 10.0**-decimals + 1e-9)


def test_format_time_decimals_out_of_range() -> None:
    with pytest.raises(ConfigError, match="decimals must be a whole number from 0 to 9"):
        format_time(1.0, 10)


@pytest.mark.parametrize("func", [format_size, format_rate, format_time])
@pytest.mark.parametrize("value", [None, [1], True])
def test_format_wrong_type(func: Any, value: Any) -> None:
    with pytest.raises(TypeError):
        func(value)


def test_format_then_parse_round_trips() -> None:
    rng = np.random.default_rng(2024)
    for exponent in rng.uniform(-8, 5, size=200):
        seconds = float(10**exponent)
        assert parse_time(format_time(seconds)) == pytest.approx(seconds, rel=6e-3, abs=0.5)
    for exponent in rng.uniform(0, 15, size=200):
        nbytes = int(10**exponent)
        assert parse_size(format_size(nbytes)) == pytest.approx(nbytes, rel=6e-3, abs=1)
        assert parse_rate(format_rate(nbytes)) == pytest.approx(nbytes, rel=6e-3)
        assert parse_rate(format_rate(nbytes, bits=True)) == pytest.approx(nbytes, rel=6e-3)


@pytest.mark.parametrize("value, hint", [(4, "'4GiB'"), (16.0, "'16.0GiB'"), (np.int64(8), "'8GiB'"),
                                         ("100B", None), ("2KiB", None)])
def test_a_guest_smaller_than_a_page_is_an_error_everywhere(value: Any, hint: Any) -> None:
    """memory=4 is 4 bytes: below one page, whatever takes a guest size says so (it ran a one-page guest)."""
    import dirtylog
    from dirtylog._validate import guest_pages
    from dirtylog.config import MigrationConfig
    from dirtylog.measure import dirty_curve, dirty_rate

    calls = [lambda: guest_pages(value, 4096), lambda: dirtylog.simulate(memory=value),
             lambda: dirtylog.Migration(memory=value), lambda: MigrationConfig(memory=value).check(),
             lambda: dirty_rate(dirtylog.workloads.Uniform(100), value),
             lambda: dirty_curve(dirtylog.workloads.Uniform(100), value, [1])]
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        msg = str(info.value)
        assert msg.startswith("memory must be at least one page (4,096 bytes), got "), msg
        assert repr(value) in msg  # what was given
        assert (hint in msg) if hint else "GiB'" not in msg, msg
    assert guest_pages(4096, 4096) == 1 and guest_pages(4097, 4096) == 2 and guest_pages("4GiB", 4096) == 1 << 20
    assert guest_pages("1KiB", 1024) == 1  # the page size is the floor
    with pytest.raises(ConfigError, match="whole number of 4096-byte pages"):
        guest_pages(4097, 4096, whole=True)


@pytest.mark.parametrize("value, got", [(3000, "got 3000"), ("3KiB", "got '3KiB' (3,072 bytes)"), (256, "got 256"),
                                        (2 << 20, "got 2097152")])
def test_a_bad_page_size_is_one_error_everywhere(value: Any, got: str) -> None:
    """One check of a page size (_validate.check_page_size, with dl_tracker_create's limits read from the C
    header), where the tracker, the workloads and the measurements each had a copy; Migration checks it
    before it counts the guest's pages in it (memory=1000 with page_size=3000 said the memory was too small)."""
    import dirtylog
    from dirtylog._lib import lib
    from dirtylog._validate import check_page_size
    from dirtylog.measure import dirty_curve

    wl = dirtylog.workloads.Uniform(100)
    calls = [lambda: check_page_size(value), lambda: dirtylog.Migration(memory=1000, page_size=value),
             lambda: dirtylog.Migration(memory="1GiB", page_size=value), lambda: dirtylog.Tracker(64, page_size=value),
             lambda: wl.bind(64, page_size=value), lambda: dirty_curve(wl, "1MiB", [1], page_size=value)]
    for call in calls:
        with pytest.raises(ConfigError) as info:
            call()
        msg = str(info.value)
        assert msg == f"page_size must be a power of two from {lib.DL_PAGE_SIZE_MIN} to {lib.DL_PAGE_SIZE_MAX} " \
                      f"bytes, {got}", msg
    assert (lib.DL_PAGE_SIZE_MIN, lib.DL_PAGE_SIZE_MAX) == (512, 1 << 20)
    assert [check_page_size(x) for x in (512, "4KiB", 4096.0, np.int64(65536), 1 << 20)] == [512, 4096, 4096, 65536,
                                                                                              1 << 20]
    assert dirtylog.Migration(memory="1MiB", page_size="64KiB").pages == 16


@pytest.mark.parametrize("parse, kind, base", [(parse_size, "size", "bytes"), (parse_rate, "rate", "bytes/s"),
                                               (parse_time, "time", "seconds")])
@pytest.mark.parametrize("text", ["300", " 300 ", "+300", "1e3", "0.5", "-1", "4096"])
def test_a_string_number_needs_its_unit(parse: Any, kind: str, base: str, text: str) -> None:
    """A string says its unit: QEMU reads a bare 300 as ms (downtime-limit) and -m 4096 as MiB, so
    "300" read silently as seconds or bytes would be a trap; the number itself is in the base unit."""
    from dirtylog.units import MissingUnitError

    with pytest.raises(MissingUnitError) as info:
        parse(text, name="knob")
    n = text.strip().lstrip("+")
    assert str(info.value).startswith(f"knob: {text!r} has no unit; write a {kind} with its unit, such as '{n}")
    assert str(info.value).endswith(f"or pass the number itself ({n}) for {base}")
    assert isinstance(info.value, ConfigError) and (info.value.kind, info.value.number) == (kind, n)


@pytest.mark.parametrize("parse", [parse_size, parse_rate, parse_time])
def test_zero_and_inf_need_no_unit(parse: Any) -> None:
    assert parse("0") == 0 and parse(" 0.0 ") == 0
    assert parse("inf", allow_inf=True) == math.inf


def test_the_api_refuses_a_string_number_without_its_unit() -> None:
    import dirtylog
    from dirtylog import Link, PreCopy

    with pytest.raises(ConfigError, match=r"downtime_limit: '300' has no unit; .*'300ms'.*\(300\) for seconds"):
        PreCopy(downtime_limit="300")
    with pytest.raises(ConfigError, match=r"memory: '4096' has no unit; .*'4096MiB'"):
        dirtylog.simulate(memory="4096")
    with pytest.raises(ConfigError, match=r"bandwidth: '1000' has no unit"):
        Link("1000")
    assert PreCopy(downtime_limit=0.3) == PreCopy(downtime_limit="300ms")


# --------------------------------------------------------------------------- percentages and shares


@pytest.mark.parametrize("given", [20, 20.0, "20", "20%", " 20 % ", np.int64(20), np.float64(20.0)])
def test_a_percent_is_a_number_of_percent_with_or_without_its_sign(given: Any) -> None:
    """QEMU's cpu-throttle-initial=20 is 20 %: a number, a string and a string with '%' read alike."""
    from dirtylog.units import parse_percent

    assert parse_percent(given, name="knob", minimum=1, maximum=99) == 20
    assert type(parse_percent(given, name="knob")) is int


@pytest.mark.parametrize("given, words", [
    (0.2, "got 0.2 (a number here is percent, as in QEMU: for 20 % write 20)"),
    ("12.5%", "got '12.5%'"),
    ("100%", "from 1 to 99, got '100%'"),
    (0, "from 1 to 99, got 0"),
    (float("nan"), "got nan"),
    ("20 %%", "cannot read '20 %%' as a percentage; use a whole number of percent (20, or '20%')"),
    ("twenty", "cannot read 'twenty' as a percentage"),
])
def test_a_bad_percent_says_what_was_written_and_the_range(given: Any, words: str) -> None:
    from dirtylog.units import parse_percent

    with pytest.raises(ConfigError) as info:
        parse_percent(given, name="knob", minimum=1, maximum=99)
    assert str(info.value).startswith("knob")
    assert words in str(info.value)


@pytest.mark.parametrize("given, value", [(0.3, 0.3), ("0.3", 0.3), ("30%", 0.3), ("30 %", 0.3), (0, 0.0),
                                          ("0%", 0.0), (1, 1.0), ("100%", 1.0), ("12.5%", 0.125)])
def test_a_share_is_a_fraction_or_a_percentage(given: Any, value: float) -> None:
    from dirtylog.units import parse_fraction

    assert parse_fraction(given, name="share") == value


@pytest.mark.parametrize("given, kw, words", [
    ("200%", {}, "share must be from 0 to 1 (0% to 100%), got '200%'"),
    (30, {}, "got 30; for 30 % write '30%'"),
    ("30", {}, "got '30'; for 30 % write '30%'"),
    ("-1%", {}, "got '-1%'"),
    ("0%", {"allow_zero": False}, "must be above 0 and at most 1 (above 0%, up to 100%), got '0%'"),
    (1, {"allow_one": False}, "must be from 0 to below 1 (0% to below 100%), got 1"),
    ("a third", {}, "cannot read 'a third' as a fraction; use a number from 0 to 1 (0.3) or a percentage ('30%')"),
])
def test_a_bad_share_is_shown_as_written(given: Any, kw: Dict[str, bool], words: str) -> None:
    from dirtylog.units import parse_fraction

    with pytest.raises(ConfigError) as info:
        parse_fraction(given, name="share", **kw)
    assert words in str(info.value)


@pytest.mark.parametrize("given", [None, [20], True])
def test_percent_and_share_refuse_other_types(given: Any) -> None:
    from dirtylog.units import parse_fraction, parse_percent

    with pytest.raises(TypeError):
        parse_percent(given)
    with pytest.raises(TypeError):
        parse_fraction(given)


def test_the_api_takes_percent_knobs_and_shares_as_the_cli_does() -> None:
    """One parser behind the CLI, the spec strings and the Python API: '20%' is 20 % everywhere."""
    from dirtylog import Hotspot, PostCopy, PreCopy
    from dirtylog.cli import build_parser
    from dirtylog.specs import parse_workload

    assert PreCopy(cpu_throttle_initial="20%") == PreCopy(cpu_throttle_initial=20) == PreCopy()
    assert PreCopy(throttle_trigger_threshold="100%").throttle_trigger_threshold == 100
    assert PreCopy(xbzrle_ratio="25%") == PreCopy(xbzrle_ratio=0.25)
    assert PostCopy(read_share="60%").read_share == 0.6
    assert Hotspot("1GiB/s", hot_fraction="5%", hot_share="95%").hot_fraction == 0.05
    spec = parse_workload("hotspot:1GiB/s,hot=5%,share=0.95")
    assert (spec.hot_fraction, spec.hot_share) == (0.05, 0.95)
    args = build_parser().parse_args(["simulate", "--cpu-throttle-initial", "20%", "--xbzrle-ratio", "25%"])
    assert (args.cpu_throttle_initial, args.xbzrle_ratio) == (20, 0.25)
    with pytest.raises(ConfigError, match=r"cpu_throttle_initial must be a whole number of percent from 1 to 99, "
                                          r"got 0.2 \(a number here is percent"):
        PreCopy(cpu_throttle_initial=0.2)
    with pytest.raises(ConfigError, match=r"hot= must be from 0 to 1 \(0% to 100%\), got '200%'"):
        parse_workload("hotspot:1GiB/s,hot=200%")
