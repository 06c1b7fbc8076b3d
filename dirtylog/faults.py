"""Fault injection for migrations: link failures and bandwidth changes at given times."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

from .link import check_bandwidth
from .units import parse_time

__all__ = ["LinkFailure", "BandwidthChange", "Fault"]


@dataclass(frozen=True, init=False)
class LinkFailure:
    """The migration link fails at simulated time ``at`` (seconds or ``"12s"``).

    During pre-copy (and the stop-and-copy, before the destination resumes) the
    migration fails and rolls back: the source keeps running and nothing is lost.
    """

    at: float

    def __init__(self, at: Union[float, str]) -> None:
        object.__setattr__(self, "at", parse_time(at, name="LinkFailure.at"))

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": "link-failure", "at": self.at}


@dataclass(frozen=True, init=False)
class BandwidthChange:
    """The link's bandwidth becomes ``bandwidth`` at simulated time ``at``."""

    at: float
    bandwidth: float

    def __init__(self, at: Union[float, str], bandwidth: Union[float, str]) -> None:
        object.__setattr__(self, "at", parse_time(at, name="BandwidthChange.at"))
        object.__setattr__(self, "bandwidth", check_bandwidth(bandwidth, "BandwidthChange.bandwidth"))

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": "bandwidth-change", "at": self.at, "bandwidth": self.bandwidth}


Fault = Union[LinkFailure, BandwidthChange]


def check_fault(f: Any) -> Optional[str]:
    if isinstance(f, (LinkFailure, BandwidthChange)):
        return None
    return f"faults must be LinkFailure or BandwidthChange objects, got {type(f).__name__}"
