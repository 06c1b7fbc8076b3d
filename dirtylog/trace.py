"""Recorded guest writes: the trace file formats, their validation and I/O.

A trace is a list of records ``(time_ns, page[, vcpu])``: a guest write to page
``page`` at guest time ``time_ns`` nanoseconds, by vCPU ``vcpu``. Records are in
time order (timestamps non-decreasing) and numbered from 0 in error messages.

Formats (chosen by the file's suffix):

``.npy``
    a structured array with fields ``time_ns`` and ``page`` (and ``vcpu``), as
    :func:`save_trace` writes it, or a 2-D integer array of shape (n, 2) or
    (n, 3) whose columns are time_ns, page[, vcpu].
``.npz``
    arrays named ``time_ns`` and ``page`` (and ``vcpu``), all 1-D and of one length.
``.csv``
    a header line naming the columns (``time_ns,page`` or ``time_ns,page,vcpu``,
    in any order), then one record per line of non-negative integers.

:func:`save_trace` writes ``time_ns`` and ``page`` as uint64 and ``vcpu`` as
uint32, and :func:`load_trace` returns the same, so a trace round-trips exactly.
"""
from __future__ import annotations

import array
import csv
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from .errors import ConfigError

__all__ = ["TraceData", "load_trace", "save_trace", "check_trace", "TRACE_SUFFIXES"]

TRACE_SUFFIXES = (".npy", ".npz", ".csv")
_REQUIRED = ("time_ns", "page")
_OPTIONAL = ("vcpu",)
_MAX_VCPU = 2**32 - 1

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class TraceData:
    """A validated trace: ``time_ns`` and ``page`` (uint64), ``vcpu`` (uint32 or None).

    ``pages``: the size of the recorded memory in pages when the file says it (an
    ``.npz`` with a scalar ``pages``, as ``dirtylog record`` writes), else None.
    """

    time_ns: np.ndarray
    page: np.ndarray
    vcpu: Optional[np.ndarray] = None
    pages: Optional[int] = None

    def __len__(self) -> int:
        return int(self.time_ns.size)

    @property
    def duration(self) -> float:
        """Seconds from time 0 to the last record (0 for an empty trace)."""
        return float(self.time_ns[-1]) / 1e9 if self.time_ns.size else 0.0


def _suffix(path: PathLike) -> str:
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in TRACE_SUFFIXES:
        raise ConfigError(
            f"trace file {os.fspath(path)!r}: unknown format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(TRACE_SUFFIXES)}"
        )
    return suffix


def _column(values: Any, name: str, source: str, maximum: int) -> np.ndarray:
    """One column as a 1-D uint64 array; ConfigError naming the first bad record."""
    if isinstance(values, (list, tuple)) and values and all(
            isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in values):
        # Python ints: numpy would make [0, 2**63] a float array and lose the large ones
        for i, x in enumerate(values):
            if not 0 <= int(x) <= maximum:
                what = (f"is negative ({int(x)}); it must be >= 0" if x < 0
                        else f"{int(x)} is too large (at most {maximum})")
                raise ConfigError(f"{source}: record {i}: {name} {what}")
        return np.array([int(x) for x in values], dtype=np.uint64)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{source}: column {name!r} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.int64)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{source}: column {name!r} must hold integers") from None
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            i = int(np.argmax(bad))
            raise ConfigError(f"{source}: record {i}: {name} {float(arr[i])!r} is not a whole number")
        if arr.size and float(arr.max()) >= 2.0**53:
            raise ConfigError(f"{source}: column {name!r} is floating point and too large to be exact; store integers")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iu":
        raise ConfigError(f"{source}: column {name!r} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "i":
        neg = arr < 0
        if neg.any():
            i = int(np.argmax(neg))
            raise ConfigError(f"{source}: record {i}: {name} is negative ({int(arr[i])}); it must be >= 0")
    out = arr.astype(np.uint64, copy=False)
    if maximum < 2**64 - 1:
        big = out > np.uint64(maximum)
        if big.any():
            i = int(np.argmax(big))
            raise ConfigError(f"{source}: record {i}: {name} {int(out[i])} is too large (at most {maximum})")
    return np.ascontiguousarray(out)


def check_trace(
    time_ns: Any,
    page: Any,
    vcpu: Any = None,
    *,
    source: str = "trace",
    pages: Optional[int] = None,
    vcpus: Optional[int] = None,
) -> TraceData:
    """Validate trace columns and return them as a :class:`TraceData`.

    Checks that the columns are 1-D integer sequences of one length with no
    negative values, that the timestamps are non-decreasing and, if ``pages`` or
    ``vcpus`` is given, that every page is below ``pages`` and every vCPU below
    ``vcpus``. A ConfigError names ``source`` and the first bad record.
    """
    t = _column(time_ns, "time_ns", source, 2**64 - 1)
    p = _column(page, "page", source, 2**64 - 1)
    v = None if vcpu is None else _column(vcpu, "vcpu", source, _MAX_VCPU)
    if p.size != t.size or (v is not None and v.size != t.size):
        sizes = f"time_ns has {t.size}, page has {p.size}" + ("" if v is None else f", vcpu has {v.size}")
        raise ConfigError(f"{source}: the columns must have one length; {sizes} records")
    if t.size > 1:
        back = t[1:] < t[:-1]
        if back.any():
            i = int(np.argmax(back)) + 1
            raise ConfigError(
                f"{source}: record {i}: time_ns {int(t[i])} is earlier than record {i - 1}'s {int(t[i - 1])}; "
                "timestamps must be non-decreasing"
            )
    check_trace_bounds(TraceData(t, p, None if v is None else v.astype(np.uint32)), source, pages, vcpus)
    return TraceData(t, p, None if v is None else v.astype(np.uint32))


def check_trace_bounds(data: TraceData, source: str, pages: Optional[int], vcpus: Optional[int]) -> None:
    """ConfigError naming the first record whose page >= pages or vcpu >= vcpus."""
    if pages is not None and data.page.size:
        big = data.page >= np.uint64(pages)
        if big.any():
            i = int(np.argmax(big))
            need = int(data.page.max()) + 1
            raise ConfigError(
                f"{source}: record {i}: page {int(data.page[i])} is out of range for a guest of {pages} pages "
                f"(pages 0..{pages - 1}); the trace needs a guest of at least {need} pages"
            )
    if vcpus is not None and data.vcpu is not None and data.vcpu.size:
        big = data.vcpu >= np.uint32(min(vcpus, _MAX_VCPU))
        if big.any():
            i = int(np.argmax(big))
            need = int(data.vcpu.max()) + 1
            raise ConfigError(
                f"{source}: record {i}: vcpu {int(data.vcpu[i])} is out of range for a guest of {vcpus} "
                f"vCPU{'' if vcpus == 1 else 's'} (vCPUs 0..{vcpus - 1}); the trace needs at least {need} vCPUs "
                f"(vcpus={need})"
            )


# ---------------------------------------------------------------------------- loading


def _from_npy(path: PathLike, source: str) -> TraceData:
    # Mapped first: a header that claims more records than the file holds is refused
    # (ValueError) instead of allocating what it claims; then copied into memory.
    arr = np.array(np.load(os.fspath(path), allow_pickle=False, mmap_mode="r"))
    if arr.dtype.names:
        names = arr.dtype.names
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise ConfigError(
                f"{source}: missing column(s) {', '.join(missing)}; the fields are {', '.join(names)} "
                f"(required: time_ns, page; optional: vcpu)"
            )
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        return check_trace(arr["time_ns"], arr["page"], arr["vcpu"] if "vcpu" in names else None, source=source)
    if arr.ndim == 2 and arr.shape[1] in (2, 3):
        return check_trace(arr[:, 0], arr[:, 1], arr[:, 2] if arr.shape[1] == 3 else None, source=source)
    raise ConfigError(
        f"{source}: expected a structured array with fields time_ns, page[, vcpu] or an integer array of "
        f"shape (n, 2) or (n, 3), got dtype {arr.dtype} and shape {arr.shape}"
    )


def _check_npz_members(path: PathLike, source: str) -> None:
    """ConfigError if a member's header claims more data than the member holds.

    numpy allocates what a header claims before reading: a damaged header must not
    make a small file ask for petabytes.
    """
    with zipfile.ZipFile(os.fspath(path)) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                have = info.file_size - f.tell()
                if claimed > have:
                    raise ConfigError(f"{source}: array {info.filename[:-4]!r} claims {claimed:,} bytes of data "
                                      f"(shape {shape}) but holds {max(have, 0):,}: the file is damaged")


def _from_npz(path: PathLike, source: str) -> TraceData:
    _check_npz_members(path, source)
    with np.load(os.fspath(path), allow_pickle=False) as z:
        names = list(z.files)
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise ConfigError(
                f"{source}: missing array(s) {', '.join(missing)}; the file holds {', '.join(names) or 'nothing'} "
                f"(required: time_ns, page; optional: vcpu)"
            )
        data = check_trace(z["time_ns"], z["page"], z["vcpu"] if "vcpu" in names else None, source=source)
        if "pages" in names:  # a recording's memory size (dirtylog record); optional
            size = z["pages"]
            if size.ndim != 0 or size.dtype.kind not in "iu" or int(size) < 1:
                raise ConfigError(f"{source}: 'pages' must be one positive integer (the recorded memory's size)")
            if data.page.size and int(data.page.max()) >= int(size):
                raise ConfigError(f"{source}: page {int(data.page.max())} is beyond the recorded size of "
                                  f"{int(size)} pages")
            data = TraceData(data.time_ns, data.page, data.vcpu, int(size))
        return data


def _parse_int(text: str, name: str, source: str, record: int, line: int) -> int:
    s = text.strip()
    if not s or not s.isascii() or not (s.isdigit() or (s[0] in "+-" and s[1:].isdigit())):
        raise ConfigError(f"{source}: record {record} (line {line}): {name} {text!r} is not a whole number")
    v = int(s)
    if v < 0:
        raise ConfigError(f"{source}: record {record} (line {line}): {name} is negative ({v}); it must be >= 0")
    if v >= 2**64:
        raise ConfigError(f"{source}: record {record} (line {line}): {name} {v} does not fit in 64 bits")
    return v


def _csv_header(f: Any, source: str) -> "tuple[list[str], int]":
    """The header's column names and its line number (1-based); skips blank lines before it."""
    line_no = 0
    for line in f:
        line_no += 1
        if line.strip():
            row = next(csv.reader([line]), [])
            header = [c.strip().lower() for c in row]
            break
    else:
        raise ConfigError(f"{source}: the file is empty; it needs a header line such as 'time_ns,page,vcpu'")
    unknown = [c for c in header if c not in _REQUIRED + _OPTIONAL]
    missing = [c for c in _REQUIRED if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise ConfigError(
            f"{source}: line {line_no}: bad header {','.join(header)!r}; it must name the columns "
            "time_ns and page, and optionally vcpu, each once (e.g. 'time_ns,page,vcpu')"
        )
    return header, line_no


def _csv_columns(data: np.ndarray, header: "list[str]", source: str) -> TraceData:
    cols = {name: data[:, i] for i, name in enumerate(header)}
    return check_trace(cols["time_ns"], cols["page"], cols.get("vcpu"), source=source)


def _from_csv(path: PathLike, source: str) -> TraceData:
    with open(os.fspath(path)) as f:
        header, header_line = _csv_header(f, source)
    width = len(header)
    # Fast path: numpy's C parser on a clean file of non-negative integers, read in chunks
    # (memory: the result, 8 bytes per value, and one chunk of text).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": an empty body is fine
            data: Optional[np.ndarray] = np.loadtxt(os.fspath(path), dtype=np.uint64, delimiter=",", comments=None,
                                                    skiprows=header_line, ndmin=2)
    except (ValueError, OverflowError):
        data = None
    if data is not None and data.size == 0:
        data = np.zeros((0, width), dtype=np.uint64)
    if data is not None and data.shape[1] == width:
        return _csv_columns(data, header, source)
    # Slow path (a file the fast path rejects): parse record by record, then either accept
    # what numpy's parser would not (blank-looking lines, quoted or signed numbers) or name
    # the first bad record and what is wrong with it.
    values = [array.array("Q") for _ in header]
    record = 0
    with open(os.fspath(path), newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if reader.line_num <= header_line or not row or not any(c.strip() for c in row):
                continue
            if len(row) != width:
                raise ConfigError(
                    f"{source}: record {record} (line {reader.line_num}): {len(row)} fields, expected {width} "
                    f"({','.join(header)})"
                )
            for col, name, cell in zip(values, header, row):
                col.append(_parse_int(cell, name, source, record, reader.line_num))
            record += 1
    data = np.empty((record, width), dtype=np.uint64)
    for i, col in enumerate(values):
        data[:, i] = np.frombuffer(col, dtype=np.uint64) if record else 0
    return _csv_columns(data, header, source)


def load_trace(path: PathLike) -> TraceData:
    """Read and validate a trace file (``.npy``, ``.npz`` or ``.csv``; see the module docs)."""
    suffix = _suffix(path)
    source = f"trace file {os.fspath(path)!r}"
    try:
        if suffix == ".npy":
            return _from_npy(path, source)
        if suffix == ".npz":
            return _from_npz(path, source)
        return _from_csv(path, source)
    except ConfigError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, csv.Error, UnicodeDecodeError) as exc:
        # a file the readers cannot even parse (truncated, corrupt, not what its suffix says): said in
        # dirtylog's words, not numpy's ("pickled data", "allow_pickle") or zipfile's
        raise ConfigError(f"{source}: {_unreadable_why(suffix, exc)}") from exc
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        # numpy's header parser also raises SyntaxError, tokenize.TokenError, KeyError or TypeError
        # on a damaged header: whatever a damaged file makes a reader raise is a bad input, not a bug
        raise ConfigError(f"{source}: {_unreadable_why(suffix, exc)}") from exc


def _unreadable_why(suffix: str, exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, (EOFError, zipfile.BadZipFile)) and exc.errno is not None:
        return f"cannot read it ({exc.strerror or exc})"
    if suffix == ".npy":
        return ("not a valid .npy array file (corrupt, truncated, or another format); "
                "write traces with dirtylog.save_trace() or numpy.save()")
    if suffix == ".npz":
        return ("not a valid .npz archive (corrupt, truncated, or another format); "
                "write traces with dirtylog.save_trace() or numpy.savez()")
    return "not a readable CSV text file (binary or in an unknown encoding); expected rows of time_ns,page[,vcpu]"


def save_trace(
    path: PathLike,
    times_ns: Union[np.ndarray, Sequence[int]],
    pages: Union[np.ndarray, Sequence[int]],
    vcpus: Optional[Union[np.ndarray, Sequence[int]]] = None,
) -> None:
    """Write a trace in the format of ``path``'s suffix (``.npy``, ``.npz`` or ``.csv``).

    The columns are validated as :func:`check_trace` does; :func:`load_trace`
    (and :class:`dirtylog.workloads.Trace`) read the file back exactly.
    """
    suffix = _suffix(path)
    data = check_trace(times_ns, pages, vcpus, source=f"save_trace({os.fspath(path)!r})")
    p = os.fspath(path)
    if suffix == ".npy":
        fields = [("time_ns", "<u8"), ("page", "<u8")] + ([("vcpu", "<u4")] if data.vcpu is not None else [])
        arr = np.empty(len(data), dtype=fields)
        arr["time_ns"] = data.time_ns
        arr["page"] = data.page
        if data.vcpu is not None:
            arr["vcpu"] = data.vcpu
        with open(p, "wb") as f:  # np.save would append ".npy" to other suffixes
            np.save(f, arr, allow_pickle=False)
    elif suffix == ".npz":
        with open(p, "wb") as f:
            # Named arrays spelt out: savez's other keyword (allow_pickle) is not an array.
            if data.vcpu is not None:
                np.savez(f, time_ns=data.time_ns, page=data.page, vcpu=data.vcpu)
            else:
                np.savez(f, time_ns=data.time_ns, page=data.page)
    else:
        cols = [data.time_ns, data.page] + ([data.vcpu] if data.vcpu is not None else [])
        header = "time_ns,page" + (",vcpu" if data.vcpu is not None else "")
        with open(p, "w", newline="") as f:
            f.write(header + "\n")
            if len(data):
                lines = [",".join(map(str, row)) for row in zip(*(c.tolist() for c in cols))]
                f.write("\n".join(lines) + "\n")
