"""Fuzzing of what users hand dirtylog as text or files: the unit parser and the trace readers (issue 15).

Every input either reads as a valid value or fails with a ConfigError (a ValueError) that
names the parameter or the file; nothing else escapes (no TypeError, OverflowError,
tokenize.TokenError, zipfile or zlib errors), and nothing takes unbounded work.
"""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dirtylog.errors import ConfigError
from dirtylog.trace import TraceData, load_trace, save_trace
from dirtylog.units import MAX_TEXT, parse_count_rate, parse_rate, parse_size, parse_time

#: Examples per fuzz test (DIRTYLOG_FUZZ_EXAMPLES=5000 for a long run); files cost more than strings.
EXAMPLES = int(os.environ.get("DIRTYLOG_FUZZ_EXAMPLES", "150"))
#: CI (CI=true) replays the same examples on every run, so that a red CI means a change broke something;
#: elsewhere each run explores new inputs.
FUZZ = settings(deadline=None, max_examples=EXAMPLES, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FUZZ_FILES = settings(FUZZ, max_examples=max(1, EXAMPLES // 3))

# ---------------------------------------------------------------------------- the unit parser

_VALID = ["8GiB", "4G", "100MB", "512k", "1.5 TiB", "4096", "4096b", "1e3KiB", "10Gbit/s", "1.25GB/s", "128MiB/s",
          "100 MBps", "1Gbit", "5000/s", "5000 pages/s", "300ms", "1.5s", "2 min 5 s", "1h30min", "250ns", "5µs",
          "inf", "-1", "nan", "0", ".5", "1e-3", "1E+9"]
_PIECES = list("0123456789.eE+-/ \t\n") + ["i", "B", "b", "bit", "ps", "K", "M", "G", "T", "P", "E", "k", "m", "s",
                                           "ms", "us", "µ", "min", "h", "d", "inf", "nan", "e999", "e-999",
                                           "pages", "writes", "/s", "%"]


@st.composite
def mutated_value(draw):
    text = draw(st.sampled_from(_VALID))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        pos = draw(st.integers(0, len(text)))
        piece = draw(st.sampled_from(_PIECES))
        if op == "insert":
            text = text[:pos] + piece + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + 1:]
        elif op == "replace":
            text = text[:pos] + piece + text[pos + 1:]
        else:
            text = text[:pos] + piece * draw(st.integers(1, 400)) + text[pos:]
    return text


def _parses(text: str) -> None:
    def count_rate(x, name, allow_inf):
        return parse_count_rate(x, 4096, name, allow_inf=allow_inf)

    for parse in (parse_size, parse_rate, parse_time, count_rate):
        for allow_inf in (False, True):
            try:
                v = parse(text, name="fuzzed", allow_inf=allow_inf)
            except ConfigError as exc:
                assert "fuzzed" in str(exc), exc  # the message names the parameter
                continue
            assert isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)), (text, v)
            assert v >= 0, (text, v)
            if not allow_inf and isinstance(v, float):  # an int (a size) is exact, and finite however large
                assert math.isfinite(v), (text, v)
            if parse is parse_size:
                assert isinstance(v, int) or v == math.inf


@FUZZ
@given(st.text(max_size=MAX_TEXT + 20))
def test_random_text_parses_or_is_a_config_error(text):
    _parses(text)


@FUZZ
@given(mutated_value())
def test_mutated_values_parse_or_are_config_errors(text):
    _parses(text)


@FUZZ
@example("18E307")  # a size of 1.8e308 bytes: an exact int beyond a float's range
@given(st.text(alphabet=st.sampled_from(list("0123456789eE.+- ")), min_size=1, max_size=MAX_TEXT))
def test_numbers_with_any_exponent_parse_or_are_config_errors(text):
    _parses(text)


def test_the_extremes_of_the_bounds():
    _parses("9" * MAX_TEXT)
    _parses("0." + "0" * (MAX_TEXT - 3) + "1")
    _parses("1e" + "9" * (MAX_TEXT - 2))
    _parses(" " * (MAX_TEXT - 4) + "1GiB")
    _parses("1" + " " * (MAX_TEXT - 4) + "GiB")


# ---------------------------------------------------------------------------- the trace readers

records = st.integers(0, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n).map(sorted),
    st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n),
    st.one_of(st.none(), st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n)),
))


@st.composite
def mutations(draw, size):
    """A list of (op, position, bytes) edits of a file of ``size`` bytes."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "overwrite"]))
        pos = draw(st.integers(0, max(size - 1, 0)))
        data = draw(st.binary(min_size=1, max_size=8))
        out.append((op, pos, data))
    return out


def _mutate(raw: bytes, edits) -> bytes:
    b = bytearray(raw)
    for op, pos, data in edits:
        pos = min(pos, len(b))
        if op == "flip" and pos < len(b):
            b[pos] ^= data[0] or 1
        elif op == "delete":
            del b[pos:pos + len(data)]
        elif op == "insert":
            b[pos:pos] = data
        elif op == "truncate":
            del b[pos:]
        elif op == "overwrite":
            b[pos:pos + len(data)] = data
    return bytes(b)


def _loads_or_config_error(path) -> None:
    try:
        data = load_trace(path)
    except ConfigError as exc:
        assert os.fspath(path) in str(exc), exc  # names the file
        return
    assert isinstance(data, TraceData)
    assert data.time_ns.dtype == np.uint64 and data.page.dtype == np.uint64
    assert data.page.size == data.time_ns.size
    assert data.vcpu is None or (data.vcpu.dtype == np.uint32 and data.vcpu.size == data.time_ns.size)
    assert np.all(data.time_ns[1:] >= data.time_ns[:-1])


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
@FUZZ_FILES
@given(rec=records, data=st.data())
def test_mutated_trace_files_load_or_are_config_errors(tmp_path, suffix, rec, data):
    times, pages, vcpus = rec
    good = tmp_path / f"good{suffix}"
    save_trace(good, times, pages, vcpus)
    raw = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(_mutate(raw, data.draw(mutations(len(raw)))))
    _loads_or_config_error(bad)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
@FUZZ_FILES
@given(raw=st.binary(max_size=600))
def test_random_bytes_as_a_trace_file_are_config_errors(tmp_path, suffix, raw):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(raw)
    _loads_or_config_error(path)


@FUZZ_FILES
@given(rec=records, data=st.data())
def test_npz_with_mutated_members_loads_or_is_a_config_error(tmp_path, rec, data):
    """The archive is intact but an array inside it is damaged (its own .npy header or data)."""
    times, pages, vcpus = rec
    good = tmp_path / "good.npz"
    save_trace(good, times, pages, vcpus)
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    victim = data.draw(st.sampled_from(sorted(members)))
    members[victim] = _mutate(members[victim], data.draw(mutations(len(members[victim]))))
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    _loads_or_config_error(bad)


@FUZZ_FILES
@given(st.lists(st.lists(st.text(alphabet=st.sampled_from(list("0123456789-+ ,xe.\"\t")), max_size=30),
                         max_size=4), max_size=12),
       st.sampled_from(["time_ns,page", "time_ns,page,vcpu", "page,time_ns", "vcpu,page,time_ns", "time,page", ""]))
def test_csv_with_random_cells_loads_or_is_a_config_error(tmp_path, rows, header):
    path = tmp_path / "cells.csv"
    path.write_text("\n".join([header] + [",".join(r) for r in rows]) + "\n")
    _loads_or_config_error(path)


def test_a_npy_header_claiming_a_huge_shape_is_a_config_error(tmp_path):
    import io

    buf = io.BytesIO()
    dtype = np.dtype([("time_ns", "<u8"), ("page", "<u8")])
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype),
                                               "fortran_order": False, "shape": (10**15,)})
    (tmp_path / "huge.npy").write_bytes(buf.getvalue() + bytes(64))  # four records' worth of data
    _loads_or_config_error(tmp_path / "huge.npy")


def test_a_npz_member_claiming_a_huge_shape_is_a_config_error(tmp_path):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<u8", "fortran_order": False, "shape": (10**15,)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as z:
        z.writestr("time_ns.npy", buf.getvalue() + bytes(64))
        z.writestr("page.npy", buf.getvalue() + bytes(64))
    with pytest.raises(ConfigError, match="claims"):
        load_trace(tmp_path / "huge.npz")
