"""Sizes, rates and durations as numbers or strings.

Everywhere in dirtylog a memory size, a bandwidth, a dirty rate or a time may
be given either as a plain number (bytes, bytes per second, seconds) or as a
string with a unit, the way QEMU and libvirt users write them:

>>> parse_size("8GiB") == 8 * 2**30
True
>>> parse_size("4G") == 4 * 2**30            # bare K/M/G/T/P/E are binary, as in QEMU
True
>>> parse_size("100MB")                        # "B" after a prefix is decimal
100000000
>>> parse_rate("10Gbit/s")                     # lower-case "b" / "bit" means bits
1250000000.0
>>> parse_rate("128MiB/s") == 128 * 2**20
True
>>> parse_time("300ms")
0.3
>>> format_size(4 * 2**30), format_rate(1.25e9), format_rate(1.25e9, bits=True)
('4.00 GiB', '1.25 GB/s', '10.0 Gbit/s')
>>> format_dirty_rate(120 * 2**20)             # dirty rates and quotas: MiB/s, as QEMU counts them
'120 MiB/s'
>>> format_time(0.3), format_time(125)
('300 ms', '2 min 5 s')

Conventions
-----------
* Prefixes ``k``/``K``, ``M``, ``G``, ``T``, ``P``, ``E`` are decimal (powers of
  1000) when followed by ``B``, ``b`` or ``bit``; the ``i`` forms (``KiB``,
  ``GiB``, ``Gibit``) are binary (powers of 1024); a bare prefix with no ``B``
  (``"4G"``, ``"512k"``) is binary for sizes, as in QEMU's ``-m 4G``, and is
  rejected as ambiguous for rates (``"10G"`` could be bits or bytes).
* Upper-case ``B`` is bytes, lower-case ``b`` after a prefix is bits
  (``"Gb/s"``, ``"Mbps"``); ``bps`` is bits per second and ``Bps`` bytes per
  second.  Sizes reject bit units.  For sizes the ``i`` forms are
  case-insensitive (``"8gib"`` is 8 GiB) and a lone ``b`` is bytes (QEMU accepts
  ``"4096b"``).
* ``/s`` may be left out of a bit rate (``"1Gbit"``), not of a byte rate:
  ``"1GiB"`` is a size, and :func:`parse_rate` refuses it (write ``"1GiB/s"``).
* Durations: ``ns``, ``us`` (or ``µs``), ``ms``, ``s``, ``min``, ``h``, ``d`` and
  their long forms, and sums of them such as ``"2 min 5 s"`` (what
  :func:`format_time` prints).
* A string says its unit: ``"300"`` is refused (:class:`MissingUnitError`), because
  QEMU reads a bare ``300`` as milliseconds (``downtime-limit``), ``-m 4096`` as MiB,
  and dirtylog would read seconds and bytes. A number (``300``, ``0.3``) is in the base
  unit (bytes, bytes/s, seconds); ``"0"`` and ``"inf"`` need no unit.
* Percentages and shares. A *percent* knob (QEMU's ``cpu-throttle-initial=20``) reads a
  number as a number of percent: ``20``, ``"20"`` and ``"20%"`` are all 20 %
  (:func:`parse_percent`). A *share* (a hot set, a fraction of memory, a ratio) reads a
  number as a fraction of the whole: ``0.3`` and ``"0.3"`` are 30 %, and so is ``"30%"``
  (:func:`parse_fraction`); a share given as ``30`` is refused with a hint to write ``"30%"``.
  Errors show the value as it was written (``'200%'``).

All parsers raise :class:`~dirtylog.errors.ConfigError` (a ``ValueError``) for
a value they cannot read or that is out of range, with a message naming the
parameter, the bad value and the accepted forms; they raise ``TypeError`` for a
value of the wrong type (``None``, a list, a ``bool``...).
"""
from __future__ import annotations

import math
import numbers
import re
from fractions import Fraction
from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

import numpy as np

from .errors import ConfigError

__all__ = [
    "MissingUnitError",
    "UNIT_HINTS",
    "SizeLike",
    "RateLike",
    "TimeLike",
    "parse_size",
    "parse_rate",
    "parse_time",
    "parse_count_rate",
    "PercentLike",
    "FractionLike",
    "parse_percent",
    "parse_fraction",
    "format_size",
    "format_rate",
    "format_dirty_rate",
    "format_time",
]

#: A size: a number of bytes or a string such as ``"8GiB"``.
SizeLike = Union[str, int, float, "np.integer[Any]", "np.floating[Any]"]
#: A rate: a number of bytes per second or a string such as ``"10Gbit/s"``.
RateLike = Union[str, int, float, "np.integer[Any]", "np.floating[Any]"]
#: A duration: a number of seconds or a string such as ``"300ms"``.
TimeLike = Union[str, int, float, "np.integer[Any]", "np.floating[Any]"]
#: A percentage (QEMU's percent parameters): a number of percent (``20``) or a string (``"20%"``, ``"20"``).
PercentLike = Union[str, int, float, "np.integer[Any]", "np.floating[Any]"]
#: A share of a whole: a number from 0 to 1 (``0.3``) or a string (``"30%"``, ``"0.3"``).
FractionLike = Union[str, int, float, "np.integer[Any]", "np.floating[Any]"]

_SIZE_FORMS = "use a number of bytes or a string like '8GiB', '512KiB', '4G', '100MB'"
_RATE_FORMS = "use a number of bytes/s or a string like '10Gbit/s', '1.25GB/s', '128MiB/s'"
_TIME_FORMS = "use a number of seconds or a string like '300ms', '1.5s', '2min', '1h'"
_COUNT_FORMS = "use a number of pages/s or a string like '5000/s', '5000 pages/s', '128MiB/s'"
_PERCENT_FORMS = "use a whole number of percent (20, or '20%')"
_FRACTION_FORMS = "use a number from 0 to 1 (0.3) or a percentage ('30%')"

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf(?:inity)?|nan)"
# Matched against the stripped text: no pattern around the unit that could backtrack.
_SPLIT_RE = re.compile(rf"({_NUMBER})\s*(.*)", re.IGNORECASE | re.DOTALL)
_MANTISSA_RE = re.compile(r"[+-]?(\d*)\.?(\d*)(?:[eE]([+-]?\d+))?")

#: Longest string the parsers read: far beyond any real value, and it bounds their work.
MAX_TEXT = 200
#: Decimal exponents beyond this make a number too large (or too small) for any
#: size, rate or duration; bounding it keeps Fraction from building huge integers.
_MAX_EXP10 = 400

# Exponent of each prefix letter: k=1, M=2, ... E=6.
_PREFIX_POWER = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}

# size unit: optional prefix, optional "i", optional "B"/"b"
_SIZE_UNIT_RE = re.compile(r"^(?P<p>[kmgtpe])(?P<i>i?)(?P<b>b?)$", re.IGNORECASE)
_SIZE_BITS_RE = re.compile(r"^(?:[kmgtpe]i?)?bits?$", re.IGNORECASE)
_SIZE_WORDS = {"", "b", "byte", "bytes"}

# rate unit: optional prefix and "i", then bit(s)/byte(s)/B/b, then an optional "per second"
_RATE_UNIT_RE = re.compile(
    r"^(?:(?P<p>[kmgtpe])(?P<i>i?))?(?P<u>bits?|bytes?|b)?(?P<per>/s|/sec|/second|ps)?$",
    re.IGNORECASE,
)

_ONE = Fraction(1)
_TIME_UNITS: Dict[str, Fraction] = {}
for _names, _factor in (
    (("ns", "nsec", "nanosecond", "nanoseconds"), Fraction(1, 10**9)),
    (("us", "µs", "μs", "usec", "microsecond", "microseconds"), Fraction(1, 10**6)),
    (("ms", "msec", "millisecond", "milliseconds"), Fraction(1, 1000)),
    (("s", "sec", "secs", "second", "seconds"), _ONE),
    (("min", "mins", "minute", "minutes"), Fraction(60)),
    (("h", "hr", "hrs", "hour", "hours"), Fraction(3600)),
    (("d", "day", "days"), Fraction(86400)),
):
    for _n in _names:
        _TIME_UNITS[_n] = _factor
_TIME_PART_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµμ]+)", re.IGNORECASE)

# A parsed number: an exact Fraction, or a float for inf/nan.
_Num = Union[Fraction, float]

# How to write a value of each kind with its unit; {n} is the number given.
UNIT_HINTS = {
    "size": "write a size with its unit, such as '{n}GiB', '{n}MiB' or '{n}B'",
    "rate": "write a rate with its unit, such as '{n}Gbit/s' (bits), '{n}MiB/s' or '{n}B/s' (bytes)",
    "time": "write a time with its unit, such as '{n}ms' or '{n}s'",
}
_BASE_UNITS = {"size": "bytes", "rate": "bytes/s", "time": "seconds"}


class MissingUnitError(ConfigError):
    """A size, rate or time given as a string of a number without its unit (``"300"``)."""

    def __init__(self, name: str, text: str, kind: str) -> None:
        self.kind, self.number = kind, text.strip().lstrip("+")
        super().__init__(f"{name}: {text!r} has no unit; {UNIT_HINTS[kind].format(n=self.number)}, "
                         f"or pass the number itself ({self.number}) for {_BASE_UNITS[kind]}")


def _check_unit(number: _Num, unit: str, x: str, name: str, kind: str) -> None:
    """MissingUnitError for a string number without a unit, unless it is 0 or inf/nan (the same in
    every unit)."""
    if unit == "" and not isinstance(number, float) and number != 0:
        raise MissingUnitError(name, x, kind)


# --------------------------------------------------------------------------- helpers


def _check_type(x: Any, name: str, what: str) -> None:
    """Raise TypeError unless ``x`` is a str or a real number (bool excluded)."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be {what}, not a bool ({x!r})")
    if isinstance(x, str) or isinstance(x, numbers.Real):
        return
    raise TypeError(f"{name} must be {what}, got {type(x).__name__} {x!r}")


def _number_from_real(x: Any, name: str, forms: str) -> _Num:
    """Convert a real number to an exact Fraction (or a float inf/nan)."""
    if isinstance(x, numbers.Integral):
        return Fraction(int(x))
    if isinstance(x, numbers.Rational):
        return Fraction(int(x.numerator), int(x.denominator))
    try:
        f = float(x)
    except (OverflowError, ValueError):
        raise ConfigError(f"{name}: cannot read {x!r} as a number; {forms}") from None
    if math.isnan(f) or math.isinf(f):
        return f
    return Fraction(f)


def _split(s: str) -> Optional[Tuple[_Num, str]]:
    """Split ``"1.5 GiB"`` into ``(Fraction(3, 2), "GiB")``; None if it has no leading number.

    Spaces inside the unit are dropped (``"MiB / s"`` reads as ``"MiB/s"``).
    """
    m = _SPLIT_RE.fullmatch(s.strip())
    if m is None:
        return None
    text, unit = m.group(1), re.sub(r"\s+", "", m.group(2))
    low = text.lower().lstrip("+")
    if low.lstrip("-") in ("inf", "infinity"):
        return (-math.inf if low.startswith("-") else math.inf), unit
    if low.lstrip("-") == "nan":
        return math.nan, unit
    return _bounded_fraction(text), unit


def _bounded_fraction(text: str) -> _Num:
    """``Fraction(text)`` without building the huge integers of ``"1e9999999"``.

    A number whose magnitude is beyond 10**_MAX_EXP10 reads as infinite (then
    rejected as too large, or accepted where infinity is); one below
    10**-_MAX_EXP10 (not zero) as 10**-_MAX_EXP10 with its sign, which every
    parser rounds or rejects as it would the exact value.
    """
    mm = _MANTISSA_RE.fullmatch(text)
    if mm is not None and mm.group(3) is not None:
        whole, frac, exp_text = mm.group(1), mm.group(2), mm.group(3)
        digits = (whole + frac).lstrip("0")
        if digits:
            exp = int(exp_text)  # at most MAX_TEXT digits: cheap
            # the magnitude is 10**(top - 1) .. 10**top
            top = len(whole.lstrip("0")) + exp if whole.lstrip("0") else exp - (len(frac) - len(frac.lstrip("0")))
            negative = text.lstrip().startswith("-")
            if top > _MAX_EXP10:
                return -math.inf if negative else math.inf
            if top < -_MAX_EXP10:
                tiny = Fraction(1, 10**_MAX_EXP10)
                return -tiny if negative else tiny
        else:
            return Fraction(0)  # "0e999999999": Fraction() would still build 10**999999999 to multiply 0 by
    return Fraction(text)


def _check_range(
    value: _Num, x: Any, *, name: str, forms: str, allow_zero: bool, allow_inf: bool
) -> None:
    """Raise ConfigError if ``value`` (read from ``x``) is NaN, negative, infinite or zero when not allowed."""
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{name} must be a number, got NaN ({x!r}); {forms}")
    if value < 0:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got a negative value {x!r}; {forms}")
    if isinstance(value, float) and math.isinf(value) and not allow_inf:
        if isinstance(x, str) and "inf" not in x.lower():
            raise ConfigError(f"{name}: {x!r} is too large; {forms}")
        raise ConfigError(f"{name} must be finite, got {x!r}; {forms}")
    if value == 0 and not allow_zero:
        raise ConfigError(f"{name} must be > 0, got {x!r}; {forms}")


def _check_length(x: str, name: str, noun: str, forms: str) -> None:
    """ConfigError for a string too long to be a value (bounds the parsers' work)."""
    if len(x) > MAX_TEXT:
        raise ConfigError(f"{name}: a {noun} is at most {MAX_TEXT} characters, got a string of {len(x):,} "
                          f"({x[:20]!r}...); {forms}")


def _unreadable(name: str, x: Any, noun: str, forms: str, hint: str = "") -> ConfigError:
    return ConfigError(f"{name}: cannot read {x!r} as a {noun}{hint}; {forms}")


def _number_text(s: str) -> str:
    """The leading number of ``s`` as written (for suggestions in messages)."""
    m = _SPLIT_RE.fullmatch(s.strip())
    return m.group(1) if m else s.strip()


# --------------------------------------------------------------------------- sizes


def _size_multiplier(unit: str, x: str, name: str) -> Optional[int]:
    """Bytes per unit for a size unit; None if unknown; ConfigError for bit units."""
    if unit.lower() in _SIZE_WORDS:
        return 1
    m = _SIZE_UNIT_RE.match(unit)
    if m is not None:
        power: int = _PREFIX_POWER[m.group("p").lower()]
        if m.group("i"):  # KiB, kib, Gi, ...: binary, any case
            return int(1024**power)
        if m.group("b") == "B":  # KB, kB, MB: decimal bytes
            return int(1000**power)
        if m.group("b") == "b":  # Kb, Mb, Gb: bits, not a size
            num, p = _number_text(x), m.group("p").upper()
            raise ConfigError(
                f"{name}: {x!r} is in bits (a lower-case 'b' after a prefix means bits) but a size is "
                f"in bytes; write '{num}{p}B' (decimal) or '{num}{p}iB' (binary), or a number of bytes"
            )
        return int(1024**power)  # bare K, M, G...: binary, as in QEMU
    if _SIZE_BITS_RE.match(unit):
        raise ConfigError(
            f"{name}: {x!r} is in bits but a size is in bytes; {_SIZE_FORMS}"
        )
    return None


@overload
def parse_size(
    x: SizeLike, *, name: str = ..., allow_zero: bool = ..., allow_inf: Literal[False] = ...
) -> int: ...


@overload
def parse_size(
    x: SizeLike, *, name: str = ..., allow_zero: bool = ..., allow_inf: bool
) -> Union[int, float]: ...


def parse_size(
    x: SizeLike, *, name: str = "value", allow_zero: bool = True, allow_inf: bool = False
) -> Union[int, float]:
    """Read a size in bytes.

    Args:
        x: a number of bytes (an int, or a float with no fractional part) or a
            string such as ``"8GiB"``, ``"8 GiB"``, ``"4096B"``, ``"512KiB"``,
            ``"4KB"`` (4000), ``"1.5TiB"``, ``"100MB"``, ``"4G"`` (binary, as in
            QEMU) or ``"512k"``.  A string with a prefix is rounded to a whole
            number of bytes (``"0.1KiB"`` is 102); a plain number must be whole.
        name: the parameter's name, used in error messages.
        allow_zero: accept 0.
        allow_inf: accept ``math.inf`` / ``"inf"`` (then returned as ``math.inf``).

    Returns:
        The size in bytes as an int (``math.inf`` if allowed and given).

    Raises:
        ConfigError: a number in a string without its unit
            (:class:`MissingUnitError`), unreadable string, bit units (``"4Gb"``), a negative, NaN,
            zero (unless allowed), infinite (unless allowed) or fractional
            number of bytes.
        TypeError: ``x`` is not a str or a real number (``bool`` included).
    """
    _check_type(x, name, "a number of bytes or a string like '8GiB'")
    if isinstance(x, str):
        _check_length(x, name, "size", _SIZE_FORMS)
        parts = _split(x)
        if parts is None:
            raise _unreadable(name, x, "size", _SIZE_FORMS)
        number, unit = parts
        _check_unit(number, unit, x, name, "size")
        mult = _size_multiplier(unit, x, name)
        if mult is None:
            hint = " (that looks like a rate)" if "/" in unit or unit.lower().endswith("ps") else ""
            raise _unreadable(name, x, "size", _SIZE_FORMS, hint)
        _check_range(number, x, name=name, forms=_SIZE_FORMS, allow_zero=allow_zero, allow_inf=allow_inf)
        if isinstance(number, float):  # +inf, allowed
            return math.inf
        exact = number * mult
        if mult == 1 and exact.denominator != 1:
            raise ConfigError(f"{name} must be a whole number of bytes, got {x!r}; {_SIZE_FORMS}")
        result = round(exact)
    else:
        number = _number_from_real(x, name, _SIZE_FORMS)
        _check_range(number, x, name=name, forms=_SIZE_FORMS, allow_zero=allow_zero, allow_inf=allow_inf)
        if isinstance(number, float):
            return math.inf
        if number.denominator != 1:
            raise ConfigError(f"{name} must be a whole number of bytes, got {x!r}; {_SIZE_FORMS}")
        result = int(number)
    if result == 0 and not allow_zero:
        raise ConfigError(f"{name} must be > 0, got {x!r}; {_SIZE_FORMS}")
    return result


# --------------------------------------------------------------------------- rates


def _rate_multiplier(unit: str, x: str, name: str) -> Optional[Fraction]:
    """Bytes per second per unit for a rate unit; None if unknown; ConfigError if ambiguous."""
    if unit == "":
        return _ONE
    m = _RATE_UNIT_RE.match(unit)
    if m is None:
        return None
    p, i, u, per = m.group("p"), m.group("i"), m.group("u"), m.group("per")
    if u is None:
        if p is None:  # just "/s" (or "ps"): bytes per second
            return _ONE if per is not None and per.lower() != "ps" else None
        num = _number_text(x)
        P = p.upper()
        raise ConfigError(
            f"{name}: {x!r} is ambiguous as a rate (bits or bytes?); write '{num}{P}bit/s' "
            f"(bits), '{num}{P}B/s' (decimal bytes) or '{num}{P}iB/s' (binary bytes)"
        )
    low = u.lower()
    if low in ("bit", "bits"):
        bits = True
    elif low in ("byte", "bytes") or u == "B":
        bits = False
    else:  # a lone lower-case "b"
        if i:  # "Gib/s": GiB/s or Gibit/s?
            num = _number_text(x)
            P = (p or "").upper()
            raise ConfigError(
                f"{name}: {x!r} is ambiguous (bits or bytes?); write '{num}{P}iB/s' (bytes) "
                f"or '{num}{P}ibit/s' (bits)"
            )
        bits = True
    if not bits and per is None:  # "1GiB": a size (a hot set, a guest?), not a rate
        text = x.strip()
        raise ConfigError(
            f"{name}: {x!r} is a size, not a rate; write '{text}/s' for bytes per second"
        )
    scale = _ONE
    if p is not None:
        base = 1024 if i else 1000
        scale = Fraction(base ** _PREFIX_POWER[p.lower()])
    return scale / 8 if bits else scale


def parse_rate(
    x: RateLike, *, name: str = "value", allow_zero: bool = True, allow_inf: bool = False
) -> float:
    """Read a rate in bytes per second.

    Args:
        x: a number of bytes per second or a string such as ``"10Gbit/s"``,
            ``"10 Gbps"``, ``"10Gb/s"``, ``"1Gbit"`` (bits, decimal prefixes:
            10 Gbit/s is 1.25e9 B/s), ``"1Gibit/s"`` (binary bits), ``"1GiB/s"``,
            ``"128MiB/s"``, ``"100MB/s"``, ``"100 MBps"``, ``"1.5 GB/s"``,
            ``"1e9 B/s"`` or ``"12500000B/s"``.  ``/s`` may be left out of a bit
            rate (``"1Gbit"``), not of a byte rate: ``"1GiB"`` is a size and an error.
        name: the parameter's name, used in error messages.
        allow_zero: accept 0.
        allow_inf: accept ``math.inf`` / ``"inf"``.

    Returns:
        The rate in bytes per second, as a float.

    Raises:
        ConfigError: a number in a string without its unit
            (:class:`MissingUnitError`), unreadable or ambiguous string (``"10G"``), a negative,
            NaN, zero (unless allowed) or infinite (unless allowed) rate.
        TypeError: ``x`` is not a str or a real number (``bool`` included).
    """
    _check_type(x, name, "a number of bytes/s or a string like '10Gbit/s'")
    if isinstance(x, str):
        _check_length(x, name, "rate", _RATE_FORMS)
        parts = _split(x)
        if parts is None:
            raise _unreadable(name, x, "rate", _RATE_FORMS)
        number, unit = parts
        _check_unit(number, unit, x, name, "rate")
        mult = _rate_multiplier(unit, x, name)
        if mult is None:
            raise _unreadable(name, x, "rate", _RATE_FORMS)
        value: _Num = number if isinstance(number, float) else number * mult
    else:
        value = _number_from_real(x, name, _RATE_FORMS)
    _check_range(value, x, name=name, forms=_RATE_FORMS, allow_zero=allow_zero, allow_inf=allow_inf)
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(f"{name}: {x!r} is too large for a float; {_RATE_FORMS}") from None


# --------------------------------------------------------------------------- counts of pages per second

_COUNT_UNIT_RE = re.compile(
    r"^(?:pages?|writes?|page-?writes?)?(?:/s|/sec|/second|ps)?$", re.IGNORECASE
)


def parse_count_rate(
    x: RateLike,
    page_size: SizeLike,
    name: str = "rate",
    *,
    allow_zero: bool = True,
    allow_inf: bool = False,
) -> float:
    """Read a rate of page writes (pages per second).

    Args:
        x: a bare number (pages/s, also as a string: ``"5000"``), a count per
            second (``"5000/s"``, ``"5000 pages/s"``, ``"5000 writes/s"``) or
            a byte or bit rate (``"1GiB/s"``, ``"800Mbit/s"``), which is
            divided by ``page_size``.
        page_size: bytes per page (anything :func:`parse_size` reads, > 0).
        name: the parameter's name, used in error messages.
        allow_zero: accept 0.
        allow_inf: accept ``math.inf`` / ``"inf"``.

    Returns:
        Pages per second, as a float.

    Raises:
        ConfigError: as :func:`parse_rate`, or a bad ``page_size``.
        TypeError: wrong type of ``x`` or ``page_size``.
    """
    _check_type(x, name, "a number of pages/s or a string like '5000/s' or '128MiB/s'")
    psize = parse_size(page_size, name="page_size", allow_zero=False)
    if isinstance(x, str):
        _check_length(x, name, "rate of page writes", _COUNT_FORMS)
        parts = _split(x)
        if parts is None:
            raise _unreadable(name, x, "rate of page writes", _COUNT_FORMS)
        number, unit = parts
        if _COUNT_UNIT_RE.match(unit):  # "", "/s", "pages/s", "writes/s"
            value: _Num = number
        else:
            try:
                mult = _rate_multiplier(unit, x, name)
            except ConfigError as exc:
                raise ConfigError(f"{exc}; or {_COUNT_FORMS}") from None
            if mult is None:
                raise _unreadable(name, x, "rate of page writes", _COUNT_FORMS)
            value = number if isinstance(number, float) else number * mult / psize
    else:
        value = _number_from_real(x, name, _COUNT_FORMS)
    _check_range(value, x, name=name, forms=_COUNT_FORMS, allow_zero=allow_zero, allow_inf=allow_inf)
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(f"{name}: {x!r} is too large for a float; {_COUNT_FORMS}") from None


# --------------------------------------------------------------------------- percentages and shares


def _read_percent_text(x: Any, name: str, noun: str, forms: str) -> Tuple[_Num, bool]:
    """The number in ``x`` (a real number, or a string such as ``"20"``, ``"20%"``, ``"0.3"``) and whether
    it was written with a ``%`` sign."""
    _check_type(x, name, f"a number or a string like '20%' ({noun})")
    if not isinstance(x, str):
        return _number_from_real(x, name, forms), False
    _check_length(x, name, noun, forms)
    text = x.strip()
    pct = text.endswith("%")
    parts = _split(text[:-1] if pct else text)
    if parts is None or parts[1] != "":
        raise _unreadable(name, x, noun, forms)
    return parts[0], pct


def _shown(x: Any) -> str:
    """A value as the user wrote it, for messages: ``'200%'`` for a string, ``2.5`` for a number."""
    return repr(x) if isinstance(x, str) else str(x)


def parse_percent(x: PercentLike, *, name: str = "value", minimum: int = 0, maximum: int = 100) -> int:
    """Read a whole percentage, as QEMU's percent parameters (``cpu-throttle-initial=20``) take it.

    Args:
        x: a number of percent (``20``, ``20.0``) or a string (``"20%"``, ``"20 %"``, ``"20"``): all
            mean 20 %. A number is *not* a fraction here: ``0.2`` is 0.2 %, refused as not whole.
        name: the parameter's name, used in error messages.
        minimum, maximum: the allowed range, in percent (inclusive).

    Returns:
        The percentage as an int (20 for 20 %).

    Raises:
        ConfigError: unreadable, NaN, not whole, or outside ``minimum..maximum``; the message shows the
            value as written and the range.
        TypeError: ``x`` is not a str or a real number (``bool`` included).
    """
    number, _ = _read_percent_text(x, name, "percentage", _PERCENT_FORMS)
    span = f"a whole number of percent from {minimum} to {maximum}"
    if isinstance(number, float) or number != int(number) or not minimum <= number <= maximum:
        hint = ""
        if not isinstance(number, float) and 0 < number < 1 and not (isinstance(x, str) and "%" in x):
            pct = f"{float(number) * 100:g}"
            hint = f" (a number here is percent, as in QEMU: for {pct} % write {pct})"
        raise ConfigError(f"{name} must be {span}, got {_shown(x)}{hint}")
    return int(number)


def parse_fraction(x: FractionLike, *, name: str = "value", allow_zero: bool = True,
                   allow_one: bool = True) -> float:
    """Read a share of a whole (a hot set, a fraction of memory, a ratio), from 0 to 1.

    Args:
        x: a number from 0 to 1 (``0.3``), or a string: ``"0.3"`` or a percentage ``"30%"``.
        name: the parameter's name, used in error messages.
        allow_zero: accept 0 (0 %).
        allow_one: accept 1 (100 %).

    Returns:
        The share, as a float (0.3 for ``"30%"``).

    Raises:
        ConfigError: unreadable, NaN or out of range; the message shows the value as written
            (``'200%'``, not 2.0), and for a number such as ``30`` suggests ``'30%'``.
        TypeError: ``x`` is not a str or a real number (``bool`` included).
    """
    number, pct = _read_percent_text(x, name, "fraction", _FRACTION_FORMS)
    value = number / 100 if pct else number
    low_ok = value >= 0 if allow_zero else value > 0
    high_ok = value <= 1 if allow_one else value < 1
    if isinstance(value, float) and math.isnan(value) or not (low_ok and high_ok):
        span = {(True, True): "from 0 to 1 (0% to 100%)",
                (False, True): "above 0 and at most 1 (above 0%, up to 100%)",
                (True, False): "from 0 to below 1 (0% to below 100%)",
                (False, False): "above 0 and below 1 (between 0% and 100%)"}[allow_zero, allow_one]
        hint = ""
        if not pct and not isinstance(value, float) and 1 < value <= 100:
            hint = f"; for {float(value):g} % write '{float(value):g}%'"
        raise ConfigError(f"{name} must be {span}, got {_shown(x)}{hint}")
    return float(value)


# --------------------------------------------------------------------------- durations


def _parse_time_string(x: str, name: str) -> _Num:
    parts = _split(x)
    if parts is not None:
        number, unit = parts
        _check_unit(number, unit, x, name, "time")
        if unit == "":
            return number
        factor = _TIME_UNITS.get(unit.lower())
        if factor is not None:
            return number if isinstance(number, float) else number * factor
    # a sum of parts, each with its unit: "2 min 5 s", "1h30min"
    pos, total, count = 0, Fraction(0), 0
    stripped = x.strip()
    while pos < len(stripped):
        m = _TIME_PART_RE.match(stripped, pos)
        if m is None:
            break
        factor = _TIME_UNITS.get(m.group(2).lower())
        if factor is None:
            break
        total += Fraction(m.group(1)) * factor
        pos, count = m.end(), count + 1
    if count >= 2 and pos == len(stripped):
        return total
    hint = ""
    if parts is not None and parts[1].lower() == "m":
        hint = " ('m' is ambiguous: use 'min' for minutes or 'ms' for milliseconds)"
    raise _unreadable(name, x, "duration", _TIME_FORMS, hint)


def parse_time(
    x: TimeLike, *, name: str = "value", allow_zero: bool = True, allow_inf: bool = False
) -> float:
    """Read a duration in seconds.

    Args:
        x: a number of seconds or a string such as ``"300ms"``, ``"300 ms"``,
            ``"1s"``, ``"1.5s"``, ``"5us"``, ``"5µs"``, ``"250ns"``, ``"2min"``,
            ``"1h"``, ``"1.5 h"``, ``"0s"``, or a sum such as ``"2 min 5 s"``.
        name: the parameter's name, used in error messages.
        allow_zero: accept 0.
        allow_inf: accept ``math.inf`` / ``"inf"``.

    Returns:
        The duration in seconds, as a float.

    Raises:
        ConfigError: a number in a string without its unit
            (:class:`MissingUnitError`), unreadable string, a negative, NaN, zero (unless allowed)
            or infinite (unless allowed) duration.
        TypeError: ``x`` is not a str or a real number (``bool`` included).
    """
    _check_type(x, name, "a number of seconds or a string like '300ms'")
    if isinstance(x, str):
        _check_length(x, name, "duration", _TIME_FORMS)
        value = _parse_time_string(x, name)
    else:
        value = _number_from_real(x, name, _TIME_FORMS)
    _check_range(value, x, name=name, forms=_TIME_FORMS, allow_zero=allow_zero, allow_inf=allow_inf)
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(f"{name}: {x!r} is too large for a float; {_TIME_FORMS}") from None


# --------------------------------------------------------------------------- formatting


def _sig3(v: float) -> str:
    """``v`` (finite, >= 0) with three significant digits: 4.00, 12.5, 300, 0.5."""
    if v == 0:
        return "0"
    if v < 1:
        text = f"{v:.3g}"
        if float(text) < 1:
            return text
        v = 1.0  # 0.9999 rounds up to 1.00
    text = f"{v:.2f}"
    if float(text) >= 10:
        text = f"{v:.1f}"
        if float(text) >= 100:
            text = f"{v:.0f}"
    return text


def _real_for_format(x: Any, name: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    return float(x)


def _scaled(v: float, base: float, units: Tuple[str, ...], sep: str = " ") -> str:
    """Format ``v`` >= 0 in the largest unit of ``units`` (each ``base`` times the previous)."""
    k = 0
    while k + 1 < len(units) and v >= base ** (k + 1):
        k += 1
    text = _sig3(v / base**k)
    if float(text) >= base and k + 1 < len(units):  # 1023.99 KiB prints as 1.00 MiB
        k += 1
        text = _sig3(v / base**k)
    return f"{text}{sep}{units[k]}"


_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_BYTE_RATE_UNITS = ("B/s", "kB/s", "MB/s", "GB/s", "TB/s", "PB/s", "EB/s")
_BIT_RATE_UNITS = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s", "Ebit/s")


def format_size(nbytes: SizeLike) -> str:
    """Format a size with binary units and three significant digits.

    ``4 * 2**30`` gives ``"4.00 GiB"``, ``512`` gives ``"512 B"``, ``1572864``
    gives ``"1.50 MiB"``.  A string is read with :func:`parse_size` first.
    """
    v = float(parse_size(nbytes, name="nbytes", allow_inf=True)) if isinstance(nbytes, str) else (
        _real_for_format(nbytes, "nbytes")
    )
    if math.isnan(v) or math.isinf(v):
        return f"{v} B"
    if v < 0:
        return "-" + format_size(-v)
    if v < 1024:
        return f"{int(v)} B" if v.is_integer() else f"{_sig3(v)} B"
    return _scaled(v, 1024, _SIZE_UNITS)


def format_rate(bytes_per_s: RateLike, *, bits: bool = False) -> str:
    """Format a rate with decimal units and three significant digits.

    ``1.25e9`` gives ``"1.25 GB/s"``; with ``bits=True`` it gives
    ``"10.0 Gbit/s"``.  A string is read with :func:`parse_rate` first.
    """
    v = parse_rate(bytes_per_s, name="bytes_per_s", allow_inf=True) if isinstance(bytes_per_s, str) else (
        _real_for_format(bytes_per_s, "bytes_per_s")
    )
    units = _BIT_RATE_UNITS if bits else _BYTE_RATE_UNITS
    if bits:
        v *= 8
    if math.isnan(v) or math.isinf(v):
        return f"{v} {units[0]}"
    if v < 0:
        return "-" + _scaled(-v, 1000, units)
    return _scaled(v, 1000, units)


def format_dirty_rate(bytes_per_s: RateLike, *, whole: bool = False) -> str:
    """Format a rate of guest memory (a dirty rate, a dirty-limit quota) in binary units, as QEMU
    counts them: ``"153 MiB/s"``. QEMU's calc-dirty-rate reports MiB/s and its vcpu-dirty-limit,
    though documented in "MB/s", counts MiB (pages x page size >> 20): a quota printed in decimal
    MB/s would be set 4.9 % higher in QEMU. :func:`format_rate`'s decimal units are for links.

    ``whole=True`` is for a value that is a whole number of MiB/s by construction, such as a quota
    for QEMU's vcpu-dirty-limit (a uint64 of MiB/s): it is printed exactly, in MiB/s, as QEMU takes
    it (``"75 MiB/s"``, ``"1100 MiB/s"``), where three significant digits would print ``"75.0 MiB/s"``
    or ``"1.07 GiB/s"``. A value that is not whole is printed as without it."""
    v = parse_rate(bytes_per_s, name="bytes_per_s", allow_inf=True) if isinstance(bytes_per_s, str) else (
        _real_for_format(bytes_per_s, "bytes_per_s")
    )
    if whole and math.isfinite(v) and v > 0 and (v / 2**20).is_integer():
        return f"{int(v) >> 20} MiB/s"
    return f"{format_size(v)}/s"


def format_time(seconds: TimeLike, decimals: Optional[int] = None) -> str:
    """Format a duration for people.

    Below a minute: three significant digits in ns, us, ms or s (``"250 ns"``,
    ``"12.0 us"``, ``"300 ms"``, ``"1.50 s"``); from a minute on: whole seconds
    split into h, min and s (``"2 min 5 s"``, ``"1 h 30 min"``).  With
    ``decimals`` (0 to 9), the seconds to that many decimals instead, as
    times in a column that must tell close values apart (``"5 min 40.06 s"``,
    ``"23.45 s"``).  The output is readable by :func:`parse_time`.  A string is
    read with :func:`parse_time` first.
    """
    v = parse_time(seconds, name="seconds", allow_inf=True) if isinstance(seconds, str) else (
        _real_for_format(seconds, "seconds")
    )
    if math.isnan(v) or math.isinf(v):
        return f"{v} s"
    if v < 0:
        return "-" + format_time(-v, decimals)
    if v == 0:
        return "0 s"
    if decimals is not None:
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 9:
            raise ConfigError(f"decimals must be a whole number from 0 to 9, got {decimals!r}")
        minutes_total, secs = divmod(round(v, decimals), 60)
        hours, minutes = divmod(int(minutes_total), 60)
        head = (f"{hours} h " if hours else "") + (f"{minutes} min " if hours or minutes else "")
        return f"{head}{secs:.{decimals}f} s"
    for scale, unit in ((1e-9, "ns"), (1e-6, "us"), (1e-3, "ms")):
        if v < scale * 1000:
            text = _sig3(v / scale)
            if float(text) < 1000:
                return f"{text} {unit}"
    if v < 60:
        text = _sig3(v)
        if float(text) < 60:
            return f"{text} s"
    total = int(round(v))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs:
        parts.append(f"{secs} s")
    return " ".join(parts)
