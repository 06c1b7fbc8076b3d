"""`Link`: the migration network path."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Union

from ._validate import as_int
from .errors import ConfigError
from .units import format_rate, format_time, parse_rate, parse_time

__all__ = ["Link", "as_link", "check_bandwidth", "MIN_BANDWIDTH"]

#: The slowest link dirtylog models: 1 byte/s (a 4 KiB page every 68 minutes).
MIN_BANDWIDTH = 1.0


def check_bandwidth(x: Any, name: str) -> float:
    """A link or sending-thread bandwidth: a positive, finite rate of at least MIN_BANDWIDTH."""
    bw = parse_rate(x, name=name, allow_zero=False)
    if bw < MIN_BANDWIDTH:
        raise ConfigError(f"{name} must be at least {format_rate(MIN_BANDWIDTH)} (8 bit/s), got {x!r}")
    return bw


def as_link(x: Any, also: str = "") -> "Link":
    """``x`` if it is a :class:`Link`; else a TypeError saying what a link is (``also``: what else the
    caller takes in its place, said after it)."""
    if isinstance(x, Link):
        return x
    got = f"{type(x).__name__} {x!r}" if isinstance(x, (str, int, float)) else type(x).__name__
    raise TypeError(f"link must be a dirtylog.Link such as Link('10Gbit/s', latency='1ms'), got {got}{also}")


@dataclass(frozen=True, init=False)
class Link:
    """The path the migration stream takes.

    Parameters
    ----------
    bandwidth:
        Bytes per second, or a string such as ``"10Gbit/s"``, ``"128MiB/s"`` (QEMU's
        default max-bandwidth). Must be positive.
    latency:
        One-way latency (``"0s"`` by default): added to the downtime (the last byte
        must arrive before the destination resumes) and to each post-copy request.
    header_bytes:
        Bytes of protocol header per page (QEMU: an 8-byte page address with flags).

    The simulator models the link as a constant-rate pipe; QEMU measures its
    bandwidth over 100 ms windows, which on a dedicated link gives the same figure.
    """

    bandwidth: float
    latency: float
    header_bytes: int

    def __init__(self, bandwidth: Union[float, str] = "10Gbit/s", latency: Union[float, str] = 0.0,
                 header_bytes: int = 8) -> None:
        object.__setattr__(self, "bandwidth", check_bandwidth(bandwidth, "bandwidth"))
        object.__setattr__(self, "latency", parse_time(latency, name="latency"))
        object.__setattr__(self, "header_bytes", as_int("header_bytes", header_bytes, minimum=0, maximum=1 << 20))

    def to_dict(self) -> Dict[str, Any]:
        return {"bandwidth": self.bandwidth, "latency": self.latency, "header_bytes": self.header_bytes}

    def __str__(self) -> str:
        return f"{format_rate(self.bandwidth, bits=True)}, latency {format_time(self.latency)}"
