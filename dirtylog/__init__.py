"""dirtylog: simulate how a hypervisor tracks dirty guest memory, and live migration.

The C core tracks writes the way KVM does (write protection, Intel PML, dirty
rings, manual protect with huge pages), workloads generate writes in C, and the
migration engine runs pre-copy, stop-and-copy and post-copy on top.
"""
from __future__ import annotations

from .errors import ConfigError, DirtylogError, ModeError, StateError
from .stats import TrackerStats, VcpuStats
from .tracker import Tracker

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DirtylogError",
    "ModeError",
    "StateError",
    "Tracker",
    "TrackerStats",
    "VcpuStats",
    "__version__",
]
