"""Exceptions raised by dirtylog.

Every error says what was wrong and what is allowed. They subclass the built-in
exception a caller would expect (ValueError for bad values, TypeError for bad
types, RuntimeError for calls made in the wrong state), so plain ``except
ValueError`` keeps working.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "DirtylogError",
    "ConfigError",
    "StateError",
    "ModeError",
    "CoreError",
    "Interrupted",
    "SweepError",
    "UnsupportedError",
]


class DirtylogError(Exception):
    """Base class of every dirtylog error."""


class ConfigError(DirtylogError, ValueError):
    """A parameter is out of its allowed range or of an unknown kind."""


class StateError(DirtylogError, RuntimeError):
    """A call that the object's current state does not allow (e.g. harvest before start)."""


class ModeError(DirtylogError, ValueError):
    """A call that the tracker's mode does not support (e.g. clear() outside "clear" mode)."""


class CoreError(DirtylogError, RuntimeError):
    """The C core reported an error the Python layer did not anticipate."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped :meth:`dirtylog.Migration.run` between two bounded steps.

    A KeyboardInterrupt, so that an uncaught one still ends a program as Ctrl-C
    does. ``report`` is the migration's partial report (``interrupted=True``); the
    migration object itself is consistent and can be run further.
    """

    def __init__(self, report: Any = None, message: str = "interrupted (Ctrl-C)") -> None:
        super().__init__(message)
        #: a MigrationReport (Migration.run), or the SweepResults that had finished (sweep)
        self.report: Any = report


class SweepError(DirtylogError, RuntimeError):
    """Configurations of a sweep raised; every other one ran to its end.

    ``results`` holds the :class:`~dirtylog.sweeps.SweepResults` of those that finished (in the order of
    the configurations), ``failures`` each one that raised as ``(index, config, exception)``, by index;
    the first failure's exception is the ``__cause__``."""

    def __init__(self, message: str, results: Any, failures: Any) -> None:
        super().__init__(message)
        self.results: Any = results
        self.failures: Any = failures


class UnsupportedError(DirtylogError, RuntimeError):
    """The operating system or kernel lacks a feature a call needs (e.g. userfaultfd WP async for RealTracker)."""
