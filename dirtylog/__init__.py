"""dirtylog: simulate how a hypervisor tracks dirty guest memory, and live migration.

The C core tracks writes the way KVM does (write protection, Intel PML, dirty
rings, manual protect with huge pages), workloads generate writes in C, and the
migration engine runs pre-copy, stop-and-copy and post-copy on top.
"""
from __future__ import annotations

from .errors import ConfigError, DirtylogError, ModeError, StateError
from .stats import TrackerStats, VcpuStats
from .tracker import Tracker
from . import models
from .costs import TrackingCosts
from .devices import Device, default_devices
from .link import Link
from .migration import Migration, simulate
from .policy import PreCopy
from .report import MigrationReport, RoundReport

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Device",
    "Link",
    "Migration",
    "MigrationReport",
    "PreCopy",
    "RoundReport",
    "TrackingCosts",
    "default_devices",
    "models",
    "simulate",
    "DirtylogError",
    "ModeError",
    "StateError",
    "Tracker",
    "TrackerStats",
    "VcpuStats",
    "__version__",
]
