"""Where a guest's zero pages are: scattered at random, at the top of memory, or in given page ranges.

A zero page holds zeros until the guest first writes it; QEMU checks every page it
sends and sends a zero page as a header only (``duplicate`` in query-migrate), in
every pass. Where the zero pages lie decides whether the workload's writes hit
them (a written page is no longer zero):

- :meth:`ZeroPages.scattered` (a fraction, what a bare number means): each page is
  zero with that probability, independently (drawn from the migration's ``seed``);
  the workload writes into its share of them, as it writes anywhere else;
- :meth:`ZeroPages.top`: the last pages of memory (a fraction, a size or a page
  count), like the untouched top of a guest's RAM: a workload writing only the
  lower part of memory (``sequential`` with a ``length``, a trace) never hits them;
- :meth:`ZeroPages.ranges`: explicit page ranges (``range`` objects or
  ``(start, stop)`` pairs, stop excluded), e.g. memory a recorded guest never wrote.

``Migration(zero_pages=...)``, :func:`dirtylog.simulate`, sweeps and the command line
(``--zero-pages``) take a :class:`ZeroPages`, a fraction, or a spec string
(:func:`dirtylog.specs.parse_zero_pages`): ``30%``, ``0.3``, ``scattered:30%``,
``top:30%``, ``top:1GiB``, ``top:4096`` (pages), ``ranges:0-1023,8192-16383``
(inclusive page numbers, like a CPU list).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

import numpy as np

from .errors import ConfigError
from .units import parse_fraction

__all__ = ["ZeroPages", "KINDS"]

#: The placements.
KINDS = ("scattered", "top", "ranges")


@dataclass(frozen=True)
class ZeroPages:
    """A placement of zero pages (build one with :meth:`scattered`, :meth:`top`, :meth:`ranges` or
    :meth:`parse`)."""

    kind: str
    #: scattered: the probability of each page; top: a share of memory (None when ``size``/``count`` is given)
    fraction: Optional[float] = None
    #: top: bytes (rounded up to whole pages)
    size: Optional[int] = None
    #: top: pages
    count: Optional[int] = None
    #: ranges: (start, stop) page ranges, stop excluded, sorted and merged
    spans: Tuple[Tuple[int, int], ...] = ()

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def scattered(cls, fraction: Any) -> "ZeroPages":
        """Each page zero with probability ``fraction`` (0..1, or ``"30%"``)."""
        return cls("scattered", fraction=parse_fraction(fraction, name="zero_pages"))

    @classmethod
    def top(cls, amount: Any) -> "ZeroPages":
        """The last pages of memory: a fraction (a float such as ``0.3``, or ``"30%"``), a size
        (``"1GiB"``) or a page count (an int: ``1`` is one page, ``1.0`` all of memory)."""
        if isinstance(amount, bool):
            raise TypeError(f"zero_pages top: expected a fraction, a size or a page count, got {amount!r}")
        if isinstance(amount, (int, np.integer)):
            if int(amount) < 0:
                raise ConfigError(f"zero_pages top: a page count must be >= 0, got {amount!r}")
            return cls("top", count=int(amount))
        if isinstance(amount, str) and not amount.strip().endswith("%") and any(c.isalpha() for c in amount):
            from .units import parse_size

            return cls("top", size=int(parse_size(amount, name="zero_pages top", allow_zero=True)))
        return cls("top", fraction=parse_fraction(amount, name="zero_pages top"))

    @classmethod
    def ranges(cls, spans: Iterable[Any]) -> "ZeroPages":
        """Explicit page ranges: ``range`` objects or ``(start, stop)`` pairs (stop excluded)."""
        if isinstance(spans, (str, bytes)):
            raise TypeError("zero_pages ranges: give range objects or (start, stop) pairs, or the spec "
                            "'ranges:A-B,...' as a string")
        out = []
        for s in spans:
            if isinstance(s, range):
                if s.step != 1:
                    raise ConfigError(f"zero_pages ranges: a range must have step 1, got {s!r}")
                a, b = s.start, s.stop
            else:
                try:
                    a, b = s
                except (TypeError, ValueError):
                    raise TypeError(f"zero_pages ranges: expected (start, stop) pairs or ranges, got {s!r}") from None
            for v in (a, b):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise TypeError(f"zero_pages ranges: page numbers must be ints, got {v!r} in {s!r}")
            a, b = int(a), int(b)
            if a < 0 or b < a:
                raise ConfigError(f"zero_pages ranges: need 0 <= start <= stop, got ({a}, {b})")
            if b > a:
                out.append((a, b))
        out.sort()
        merged: list = []
        for a, b in out:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return cls("ranges", spans=tuple(merged))

    @classmethod
    def parse(cls, value: Any) -> "ZeroPages":
        """A :class:`ZeroPages` from what the API accepts: itself, a fraction (scattered) or a spec string."""
        if isinstance(value, ZeroPages):
            return value
        if isinstance(value, str):
            from .specs import parse_zero_pages

            return parse_zero_pages(value)
        if isinstance(value, bool) or value is None:
            raise TypeError(f"zero_pages must be a fraction between 0 and 1, a ZeroPages or a spec such as "
                            f"'top:30%', got {value!r}")
        return cls.scattered(value)

    # -- what it means for a guest --------------------------------------------------------
    def page_count(self, pages: int, page_size: int) -> Optional[int]:
        """The zero pages of a guest of ``pages`` pages (None for scattered: a random count)."""
        if self.kind == "scattered":
            return None
        if self.kind == "top":
            if self.count is not None:
                n = self.count
            elif self.size is not None:
                n = -(-self.size // page_size)
            else:
                n = round((self.fraction or 0.0) * pages)
            return min(n, pages)
        return sum(min(b, pages) - a for a, b in self.spans if a < pages)

    def share(self, pages: int, page_size: int) -> float:
        """The expected share of memory that is zero (0..1)."""
        n = self.page_count(pages, page_size)
        return float(self.fraction or 0.0) if n is None else n / pages

    def check(self, pages: int, page_size: int) -> None:
        """ConfigError when the placement does not fit a guest of ``pages`` pages."""
        if self.kind == "top" and self.count is not None and self.count > pages:
            raise ConfigError(f"zero_pages top:{self.count} pages, but the guest has {pages:,} pages")
        if self.kind == "top" and self.size is not None and -(-self.size // page_size) > pages:
            raise ConfigError(f"zero_pages top: {self.size:,} bytes is more than the guest's memory "
                              f"({pages * page_size:,} bytes)")
        if self.kind == "ranges" and self.spans and self.spans[-1][1] > pages:
            a, b = self.spans[-1]
            raise ConfigError(f"zero_pages ranges: pages {a}-{b - 1} reach past the guest's last page "
                              f"({pages - 1:,})")

    def bitmap(self, pages: int, page_size: int) -> Optional[np.ndarray]:
        """One bit per page (uint64 words), set for a zero page; None for scattered (the engine draws them)."""
        if self.kind == "scattered":
            return None
        self.check(pages, page_size)
        bits = np.zeros(pages, dtype=bool)
        if self.kind == "top":
            n = self.page_count(pages, page_size) or 0
            if n:
                bits[pages - n:] = True
        else:
            for a, b in self.spans:
                bits[a:b] = True
        words = (pages + 63) // 64
        packed = np.packbits(bits, bitorder="little")
        out = np.zeros(words * 8, dtype=np.uint8)
        out[: packed.size] = packed
        return out.view(np.uint64)

    def __str__(self) -> str:
        """The spec string (:func:`dirtylog.specs.parse_zero_pages` reads it back exactly: a
        :class:`~dirtylog.config.MigrationConfig` keeps a placement as this string)."""
        if self.kind == "scattered":
            return _fraction_spec(self.fraction or 0.0)
        if self.kind == "top":
            if self.count is not None:
                return f"top:{self.count}"
            if self.size is not None:
                from .units import format_size, parse_size

                short = format_size(self.size)  # three significant digits: exact for round sizes only
                return f"top:{short}" if parse_size(short, name="size") == self.size else f"top:{self.size}B"
            return "top:" + _fraction_spec(self.fraction or 0.0)
        return "ranges:" + ",".join(f"{a}-{b - 1}" for a, b in self.spans)


def _fraction_spec(v: float) -> str:
    """A fraction as a spec that reads back as exactly ``v``: a short percentage where one is exact,
    else the shortest decimal that is (never an exponent: ``top:`` would take its ``e`` for a unit)."""
    short = f"{100 * v:g}%"
    if parse_fraction(short, name="zero_pages") == v:
        return short
    return str(np.format_float_positional(v, unique=True, trim="0"))
