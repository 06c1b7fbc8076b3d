"""dirtylog: simulate how a hypervisor tracks dirty guest memory, and live migration.

The C core tracks writes the way KVM does (write protection, Intel PML, dirty
rings, manual protect with huge pages), workloads generate writes in C, and the
migration engine runs pre-copy, stop-and-copy and post-copy on top.
"""
from __future__ import annotations

from .errors import ConfigError, DirtylogError, ModeError, StateError, UnsupportedError
from .stats import TrackerStats, VcpuStats
from .tracker import Tracker
from .realtracker import RealTracker
from . import models
from .costs import TrackingCosts
from .devices import Device, default_devices
from .faults import BandwidthChange, LinkFailure
from .link import Link
from .engine import Engine
from .migration import Migration, Phase, simulate
from .policy import PostCopy, PreCopy
from .report import MigrationReport, RoundReport
from . import measure, workloads
from .measure import DirtyCurveResult, DirtyRateResult, dirty_curve, dirty_rate
from .workloads import (
    DirtyCurve,
    DirtyRate,
    Hotspot,
    Idle,
    Mix,
    Sequential,
    Trace,
    Uniform,
    WorkingSet,
    Workload,
    Zipf,
    load_trace,
    save_trace,
)
from .embed import get_include, get_library_dir
from .sweeps import SweepConfig, SweepResult, sweep  # the function; its module is dirtylog.sweeps

__version__ = "0.1.0"

__all__ = [
    "BandwidthChange",
    "ConfigError",
    "LinkFailure",
    "Device",
    "Engine",
    "Link",
    "Migration",
    "MigrationReport",
    "Phase",
    "PostCopy",
    "PreCopy",
    "RoundReport",
    "TrackingCosts",
    "default_devices",
    "models",
    "simulate",
    "DirtylogError",
    "ModeError",
    "StateError",
    "UnsupportedError",
    "Tracker",
    "RealTracker",
    "TrackerStats",
    "VcpuStats",
    "__version__",
    "measure",
    "workloads",
    "Workload",
    "Uniform",
    "Hotspot",
    "Zipf",
    "Sequential",
    "WorkingSet",
    "Idle",
    "Mix",
    "Trace",
    "DirtyCurve",
    "DirtyRate",
    "save_trace",
    "load_trace",
    "dirty_rate",
    "dirty_curve",
    "DirtyRateResult",
    "DirtyCurveResult",
    "sweep",
    "SweepConfig",
    "SweepResult",
    "get_include",
    "get_library_dir",
]
