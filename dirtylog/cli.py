"""The ``dirtylog`` command line (also ``python -m dirtylog``).

Commands: ``simulate``, ``trackers``, ``dirty-rate``, ``curve``, ``record``,
``sweep``, ``advise``, ``bench`` and ``validate``; and ``--cflags``, ``--libs``
and friends for building C programs against the core. ``main(argv)`` runs one
command line in-process and returns its exit status:

* 0: done;
* 1: the simulation ran but its end-to-end check found a lost dirty write, or the
  benchmarks failed;
* 2: a bad option, value or unit (one message on stderr, no traceback), or
  something this build cannot do (post-copy, a missing optional package);
* 130: interrupted.

Set ``DIRTYLOG_DEBUG=1`` to get the traceback of an error instead of its line.

Text goes to stdout through one renderer (:mod:`dirtylog.render`: plain-text tables and
wrapped paragraphs fitted to the terminal), coloured with rich on a terminal; progress
bars (rich) go to stderr, only when stderr is a terminal (``--progress`` forces them,
``--no-progress`` turns them off); ``--json`` prints machine output instead. Errors and
warnings are one line each on stderr, wrapped at spaces to the terminal's width when stderr
is a terminal (their later lines indented), never when it is a pipe or a file.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, List, NoReturn, Optional, Sequence, Tuple

from . import config as _config_mod
from .errors import ConfigError, DirtylogError
from .units import (UNIT_HINTS, MissingUnitError, format_dirty_rate, format_rate, format_size, format_time,
                    parse_count_rate, parse_fraction, parse_percent, parse_rate, parse_size, parse_time)

__all__ = ["main", "build_parser"]

PROG = "dirtylog"

# The defaults of every command are dirtylog.config's: the same as simulate()'s and grid()'s.
DEFAULTS = _config_mod.DEFAULTS
TRACKERS = _config_mod.TRACKERS
DIRTY_RATE_MODES = ("page-sampling", "dirty-bitmap", "dirty-ring")
HUGE_PAGES = ("none", "lazy", "eager")
# The axes of a bare `dirtylog sweep`.
SWEEP_AXES = {"bandwidth": ["1Gbit/s", "10Gbit/s", "25Gbit/s"], "downtime_limit": ["100ms", "300ms", "1s"]}


# Each command's examples, shown at the start of the epilog of its --help (tests parse every one).
EXAMPLES: Dict[str, Tuple[str, ...]] = {
    "simulate": ("dirtylog simulate -m 64GiB --vcpus 8 -w hotspot:2GiB/s -b 25Gbit/s -d 100ms",
                 "dirtylog simulate -w zipf:1GiB/s,s=1.2 -b 1Gbit/s --auto-converge --plot a.png",
                 "dirtylog simulate -m 16GiB -w trace:app.npz,repeat=yes --json report.json"),
    "trackers": ("dirtylog trackers -m 16GiB -w hotspot:1GiB/s -b 10Gbit/s",
                 "dirtylog trackers --trackers pml,ring --vcpus 4 --huge-pages lazy"),
    "dirty-rate": ("dirtylog dirty-rate -m 8GiB -w zipf:1GiB/s,s=1.2 --window 1s",
                   "dirtylog dirty-rate -w hotspot:1GiB/s --vcpus 4 --mode dirty-ring"),
    "curve": ("dirtylog curve -w hotspot:1GiB/s --windows 100ms,1s,10s --plot curve.png",
              "dirtylog curve app.npz --json c.json   # then: simulate -w curve:c.json"),
    "record": ("dirtylog record -o app.npz --duration 30s -- ./my-app --its-options",
               "dirtylog record --pid 1234 --duration 20s -o job.npz"),
    "sweep": ("dirtylog sweep -m 16GiB -w hotspot:1GiB/s -w zipf:1GiB/s,s=1.2 -d 100ms,1s",
              "dirtylog sweep --dirty-rate 100MiB/s,1GiB/s -b 10Gbit/s --heatmap plan.png"),
    "advise": ("dirtylog advise -m 8GiB -b 1Gbit/s -w hotspot:1GiB/s",
               "dirtylog advise -m 64GiB -w dirty-rate:120MiB/s@1s --questions bandwidth"),
    "bench": ("dirtylog bench -- -k harvest",),
    "validate": ("dirtylog validate --scenario hot-under   # in a source checkout",
                 "dirtylog validate --rst                    # the table of docs/validation.rst"),
}


class UsageError(DirtylogError):
    """A command line that cannot be run (exit status 2)."""


# ----------------------------------------------------------------------------- argument parsing


def _suggest(word: str, allowed: Sequence[str]) -> str:
    lower = {a.lower(): a for a in allowed}  # 'PML' is near 'pml': the case is all that differs
    near = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return f"; did you mean {lower[near[0]]}?" if near else ""


class _Parser(argparse.ArgumentParser):
    """argparse, with every error on one line of stderr (exit status 2) and a suggestion for a typo."""

    def error(self, message: str) -> NoReturn:
        message, prog = self._with_suggestion(message)
        _tell(f"{prog}: error: {message} (see '{prog} --help')")
        self.exit(2)

    def _options(self, argv: Sequence[str]) -> Tuple[List[str], List[str], Optional[str]]:
        """The option strings (of the subcommand named in argv, if any), the subcommand names and
        the subcommand's prog ("dirtylog simulate"; None without one)."""
        options = [s for a in self._actions for s in a.option_strings]
        commands: List[str] = []
        sub: Optional[str] = None
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                commands = list(a.choices)
                for word in argv:
                    if word in a.choices:
                        options += [s for b in a.choices[word]._actions for s in b.option_strings]
                        sub = a.choices[word].prog
                        break
        return options, commands, sub

    def _with_suggestion(self, message: str) -> Tuple[str, str]:
        """The message to print, and the prog to name: the subcommand's for an unknown option
        (argparse reports those from the top-level parser, whose --help does not list them)."""
        argv = sys.argv[1:] if _ARGV is None else _ARGV
        options, commands, sub = self._options(argv)
        m = re.match(r"unrecognized arguments: (.*)$", message)
        if m:
            words = m.group(1).split()
            unknown = [w for w in words if w.startswith("-")]
            if unknown:
                w = unknown[0].split("=", 1)[0]
                return (f"unknown option {w}{_suggest(w, [o for o in options if o.startswith('--')])}",
                        sub or self.prog)
            return f"unexpected argument {words[0]!r}", sub or self.prog
        m = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m:
            allowed = re.findall(r"'([^']*)'", m.group(3))
            what = "command" if m.group(1) in ("COMMAND", "command") else f"value for {m.group(1)}"
            head = f"unknown {what} {m.group(2)!r}" if what == "command" else f"argument {m.group(1)}: {m.group(2)!r} is not allowed"
            return f"{head}{_suggest(m.group(2), allowed)} (allowed: {', '.join(allowed)})", self.prog
        m = re.match(r"argument (\S+): expected one argument$", message)
        if m:
            return f"argument {m.group(1)}: expected a value after it", self.prog
        return message, self.prog


_ARGV: Optional[List[str]] = None


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help fitted to the terminal: prose lines wrapped, indented blocks (the spec grammar) kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=min(100, _terminal_width(100)))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out = []
        for line in text.splitlines():
            if len(indent + line) > width and not line.startswith(" "):
                out.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent))
            else:
                out.append(indent + line)
        return "\n".join(out)


def _terminal_width(default: int) -> int:
    """The terminal's width ($COLUMNS first, as shutil reads it), or ``default``."""
    import shutil

    return shutil.get_terminal_size((default, 24)).columns


def _stderr_columns() -> Optional[int]:
    """The width to wrap messages on stderr at: the terminal's ($COLUMNS first) when stderr is a terminal;
    None when it is a pipe or a file, where each message stays one line for grep and for logs."""
    try:
        if not sys.stderr.isatty():
            return None
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            return int(columns)
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return None


def _message_text(line: str, columns: Optional[int]) -> str:
    """A message wrapped by the renderer at the spaces of its text to ``columns`` (its later lines indented
    by two), never inside a word, an option (``--cpu-throttle-initial``) or a value; as it is without
    ``columns``."""
    from .render import wrap

    return "\n".join("".join(t for t, _ in ln) for ln in wrap("", [(line, "")], -1, columns, hang=2))


def _tell(line: str) -> None:
    """An error, a warning or a notice on stderr ("dirtylog simulate: error: ..."): the one place the command
    line prints them, wrapped to the terminal's width (one line each into a pipe or a file)."""
    print(_message_text(line, _stderr_columns()), file=sys.stderr)


def _strip_name(msg: str, name: str) -> str:
    for prefix in (f"{name}: ", f"{name} "):
        if msg.startswith(prefix) and prefix.endswith(": "):
            return msg[len(prefix):]
    return msg


_PARSERS: Dict[str, Callable[..., Any]] = {"size": parse_size, "rate": parse_rate, "time": parse_time}


def _united(kind: str, allow_zero: bool = True, allow_inf: bool = False) -> Callable[[str], str]:
    """An argparse type for a size, rate or time: checked with dirtylog's parser (which wants the
    unit: units.MissingUnitError), and the text kept for the configuration."""
    parse = _PARSERS[kind]

    def check(text: str) -> str:
        try:
            parse(text, name=kind, allow_zero=allow_zero, allow_inf=allow_inf)
        except MissingUnitError as exc:  # the command line takes no bare number: no "or pass the number"
            raise argparse.ArgumentTypeError(f"{exc.number!r} has no unit; "
                                             + UNIT_HINTS[exc.kind].format(n=exc.number)) from None
        except (ConfigError, TypeError) as exc:
            msg = re.sub(r"use a number of [^;]*? or a string like", "write", _strip_name(str(exc), kind))
            raise argparse.ArgumentTypeError(msg) from None
        return text

    check.__name__ = kind
    return check


def _list_of(item: Callable[[str], Any]) -> Callable[[str], List[Any]]:
    def parse(text: str) -> List[Any]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of values")
        return [item(p) for p in parts]

    parse.__name__ = "list"
    return parse


def _whole(name: str, minimum: Optional[float] = 1, maximum: Optional[float] = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text.replace("_", ""), 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if minimum is not None and maximum is not None and not minimum <= v <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum:g} to {maximum:g}, got {v}")
        if minimum is not None and v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {v}")
        if maximum is not None and v > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {v}")
        return v

    parse.__name__ = name
    return parse


_positive_int = _whole


def _add_sample_pages(p: argparse.ArgumentParser) -> None:
    """--sample-pages (dirty-rate, curve): pages sampled per GiB, in QEMU's range, QEMU's default."""
    from .measure import SAMPLE_PAGES_DEFAULT, SAMPLE_PAGES_MAX, SAMPLE_PAGES_MIN

    p.add_argument("--sample-pages", type=_whole("sample-pages", SAMPLE_PAGES_MIN, SAMPLE_PAGES_MAX),
                   default=SAMPLE_PAGES_DEFAULT, metavar="N",
                   help=f"page-sampling: pages sampled per GiB ({SAMPLE_PAGES_MIN}..{SAMPLE_PAGES_MAX}; "
                        "default %(default)s)")


def _read_with(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type reading with one of dirtylog.units' parsers: its ConfigError, less the name that
    argparse's "argument --x:" already says."""
    def read(text: str) -> Any:
        try:
            return parse(text)
        except (ConfigError, TypeError) as exc:
            raise argparse.ArgumentTypeError(re.sub(rf"^{re.escape(name)}:? ", "", str(exc))) from None

    read.__name__ = name
    return read


def _percent(name: str, minimum: int, maximum: int) -> Callable[[str], int]:
    """A whole percentage (units.parse_percent): 20 or 20%."""
    return _read_with(name, functools.partial(parse_percent, name=name, minimum=minimum, maximum=maximum))


def _zero_pages(text: str) -> str:
    """A zero-page placement (dirtylog.specs.parse_zero_pages), kept as the spec string."""
    from .specs import parse_zero_pages

    try:
        parse_zero_pages(text)
    except (ConfigError, TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{exc}; e.g. 30%, top:25%, top:512MiB, ranges:0-1023") from None
    return text


#: A share from 0 to 1 (units.parse_fraction): 0.3 or 30%.
_fraction = _read_with("fraction", functools.partial(parse_fraction, name="fraction"))


def _number(name: str, minimum: Optional[float] = None) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(v) or (minimum is not None and v < minimum):
            raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum:g}, got {text!r}"
                                             if minimum is not None else f"must be finite, got {text!r}")
        return v

    parse.__name__ = name
    return parse


def _spec(text: str) -> str:
    from .specs import parse_terms

    try:
        parse_terms(text)
    except (ConfigError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


_size = _united("size", allow_zero=False)
_rate = _united("rate", allow_zero=False)
_time = _united("time")
_time_pos = _united("time", allow_zero=False)
_time_inf = _united("time", allow_zero=False, allow_inf=True)


def _count_rate(text: str) -> str:
    try:
        parse_count_rate(text, 4096, name="rate", allow_zero=False)
    except (ConfigError, TypeError) as exc:
        raise argparse.ArgumentTypeError(_strip_name(str(exc), "rate")) from None
    return text


def _knob_type(k: Any) -> Callable[[str], Any]:
    """The command-line reader of a policy knob (dirtylog.config.KNOBS)."""
    if k.kind in _PARSERS:
        return _united(k.kind, allow_zero=k.allow_zero, allow_inf=k.allow_inf)
    if k.kind == "int":
        return _whole(k.name, k.minimum, k.maximum)
    if k.kind == "percent":
        from .policy import PERCENT_RANGES

        return _percent(k.name, *PERCENT_RANGES[k.parameter])
    if k.kind == "number":
        return _number(k.name, k.minimum)
    if k.kind == "fraction":
        return _fraction
    if k.kind == "choice":
        return lambda x: _choice(x, k.choices, "value")
    raise AssertionError(k.kind)


def _default_text(k: Any) -> str:
    d = k.default
    if d is None:
        return k.unset
    if isinstance(d, bool):
        return ""
    if k.kind == "time" and isinstance(d, (int, float)):
        return f"{d:g}s"
    if k.kind == "percent":
        return f"{d}%"
    if k.kind == "size" and isinstance(d, int):
        return format_size(d).replace(" ", "").replace(".00", "")
    return str(d)


_METAVAR = {"time": "TIME", "rate": "RATE", "size": "SIZE", "int": "N", "percent": "PCT", "number": "X",
            "fraction": "FRACTION"}


def _add_knobs(groups: Dict[str, Any], listed: bool = False, skip: Sequence[str] = ()) -> None:
    """One option per policy knob of dirtylog.config.KNOBS, in the group of its name.

    ``listed`` (sweeps): every valued knob takes a comma-separated list, a sweep axis."""
    from .config import KNOBS

    for k in KNOBS:
        if k.name in skip:
            continue
        g = groups.get(k.group) or groups["policy"]
        flags = ([k.short] if k.short else []) + [k.option]
        default = _default_text(k)
        said = ": " if k.default is None else " "  # an unset knob's default is prose ("default: no cap")
        help_text = k.help.replace("%", "%%") + (f" (default{said}{default.replace('%', '%%')})" if default else "")
        if k.kind == "flag":  # a switch: turns the knob on, or off (--no-...) when it is on by default
            g.add_argument(*([k.short] if k.short else []), k.option, dest=k.name, action="store_const",
                           const=k.default is not True, default=None, help=help_text)
            continue
        typ = _knob_type(k)
        if listed and k.name in SWEEP_AXES:
            help_text = f"{k.help} (default {','.join(SWEEP_AXES[k.name])})".replace("%", "%%")
        if listed:
            help_text += "; a comma-separated list is a sweep axis"
        metavar = "|".join(k.choices) if k.choices else (k.metavar or _METAVAR.get(k.kind, "VALUE"))
        g.add_argument(*flags, dest=k.name, type=_list_of(typ) if listed else typ, default=None,
                       metavar="LIST" if listed else metavar, help=help_text)


def _knob_values(args: argparse.Namespace) -> Dict[str, Any]:
    """The policy knobs given on the command line (the others keep the policy's defaults)."""
    from .config import KNOBS

    return {k.name: getattr(args, k.name) for k in KNOBS if getattr(args, k.name, None) is not None}


# Help of the options simulate-like commands and sweep share (one text, one place).
_HELP = {
    "seed": "seed of the workload's writes (default %(default)s)",
    "huge_pages": "2 MiB mappings split lazily on the first write or eagerly at start (default none)",
    "zero_pages": "zero pages, sent as headers only: a share scattered at random (30%%), the top of memory "
                  "(top:25%%, top:512MiB) or page ranges (ranges:0-1023,4096-8191); default 0",
    "latency": "one-way link latency, added to the downtime (default %(default)s)",
}


def _add_guest(p: argparse.ArgumentParser, workload_help: str = "", memory_help: str = "") -> None:
    g = p.add_argument_group("guest")
    g.add_argument("-m", "--memory", type=_size, default=DEFAULTS["memory"], metavar="SIZE",
                   help=memory_help or "guest memory (default %(default)s)")
    g.add_argument("-w", "--workload", type=_spec, default=DEFAULTS["workload"], metavar="SPEC",
                   help=workload_help or "how the guest writes its memory (default %(default)s; grammar below)")
    g.add_argument("--vcpus", type=_whole("vcpus"), default=DEFAULTS["vcpus"], metavar="N",
                   help="vCPUs sharing the writes (default %(default)s)")
    g.add_argument("--seed", type=_whole("seed", 0), default=DEFAULTS["seed"], metavar="N", help=_HELP["seed"])
    g.add_argument("--page-size", type=_size, default=f"{DEFAULTS['page_size'] // 1024}KiB", metavar="SIZE",
                   help="bytes per page (default %(default)s)")


def _add_migration(p: argparse.ArgumentParser, tracker: bool = True, skip: Sequence[str] = ()) -> None:
    g = p.add_argument_group("guest memory mapping")
    g.add_argument("--huge-pages", choices=HUGE_PAGES, default="none", help=_HELP["huge_pages"])
    g.add_argument("--zero-pages", type=_zero_pages, default=DEFAULTS["zero_pages"], metavar="PLACEMENT",
                   help=_HELP["zero_pages"])
    m = p.add_argument_group("link and policy")
    m.add_argument("-b", "--bandwidth", type=_rate, default=DEFAULTS["bandwidth"], metavar="RATE",
                   help="migration bandwidth (default %(default)s)")
    m.add_argument("--latency", type=_time, default=DEFAULTS["latency"], metavar="TIME", help=_HELP["latency"])
    if tracker:
        m.add_argument("-t", "--tracker", choices=TRACKERS, default=DEFAULTS["tracker"],
                       help="dirty tracking: wp (write protection), pml (Intel PML), ring (KVM dirty ring), "
                            "clear (manual protect); default %(default)s")
    _add_policy(p, m, skip=skip)


def _add_policy(p: argparse.ArgumentParser, m: Any, listed: bool = False, skip: Sequence[str] = ()) -> None:
    m.add_argument("--policy", choices=_config_mod.POLICIES, default=DEFAULTS["policy"],
                   help="precopy (default), or postcopy: switch over after --postcopy-after-rounds pre-copy "
                        "rounds, the destination fetching missing pages on demand")
    groups = {"link and policy": m, "policy": m if not listed else p.add_argument_group("policy")}
    for name, title in (("auto-converge", "auto-converge"), ("dirty-limit", "dirty-limit"),
                        ("post-copy", "post-copy"), ("compression", "XBZRLE and multifd")):
        groups[name] = p.add_argument_group(title)
    _add_knobs(groups, listed=listed, skip=skip)
    m.add_argument("--give-up-after", type=_time_inf, metavar="TIME",
                   help="QEMU iterates forever when the dirty rate outruns the link; without --timeout, "
                        "stop simulating (status failed) after this much simulated time (default: 10min, or 20 "
                        "times the time to send memory once if longer)")
    m.add_argument("--no-verify", action="store_true",
                   help="skip the end-to-end check that no dirty write was lost")


def _add_progress(p: argparse._ActionsContainer) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                   help="show a progress bar on stderr even when it is not a terminal")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                   help="never show a progress bar")


def _add_json(p: argparse._ActionsContainer, what: str) -> None:
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help=f"write {what} as JSON to FILE, or to stdout (instead of the tables) without FILE")


def build_parser() -> argparse.ArgumentParser:
    from .specs import GRAMMAR

    p = _Parser(
        prog=PROG,
        formatter_class=_Formatter,
        description="Simulate hypervisor dirty-page tracking (write protection, Intel PML, KVM dirty rings) "
                    "and live migration.",
        epilog="Run 'dirtylog COMMAND --help' for a command's options. Sizes: 4GiB, 512MiB, 4G; rates: "
               "10Gbit/s, 1GiB/s; times: 300ms, 1.5s, 2min.\n\nExit status: 0 done, 1 a lost dirty write, a "
               "failed benchmark or a validation figure off QEMU's spread, 2 a bad option or value, 130 "
               "interrupted (Ctrl-C).",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"dirtylog {__version__}")
    c = p.add_argument_group("building C programs against the core (see dirtylog.embed)")
    c.add_argument("--cflags", action="store_true", help="print the compiler flags (like pkg-config --cflags)")
    c.add_argument("--libs", action="store_true", help="print the linker flags (like pkg-config --libs)")
    c.add_argument("--include-dir", action="store_true", help="print the folder of dirtylog.h")
    c.add_argument("--library-dir", action="store_true", help="print the folder of libdirtylog_core.a")
    c.add_argument("--cmake-dir", action="store_true", help="print the folder of dirtylogConfig.cmake")
    c.add_argument("--pkgconfig-dir", action="store_true", help="print the folder of dirtylog.pc")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # simulate ---------------------------------------------------------------------------------
    s = sub.add_parser(
        "simulate", formatter_class=_Formatter, help="run one live migration and show it round by round",
        description="Run one live migration and print it round by round, like a series of "
                    "'virsh domjobinfo' snapshots, then a summary and the closed-form models' predictions.\n"
                    "Bare 'dirtylog simulate' migrates a 4 GiB guest with a hot working set over 10 Gbit/s.",
        epilog=GRAMMAR)
    _add_guest(s)
    _add_migration(s)
    o = s.add_argument_group("output")
    _add_json(o, "the full report (query-migrate fields, every round, the models)")
    o.add_argument("--plot", metavar="FILE", help="draw each round's dirty memory, what is left after each sync and "
                                                  "the switch-over threshold to FILE (.png, .svg, .pdf; needs matplotlib)")
    o.add_argument("--rounds", type=_positive_int("rounds", 0), default=40, metavar="N",
                   help="show at most N rounds in the table, the first and the last ones (0: all; default 40)")
    o.add_argument("--no-models", action="store_true", help="leave out the table of model predictions")
    o.add_argument("--advise", action="store_true",
                   help="also find what would make it converge (more simulations; see 'dirtylog advise')")
    _add_progress(o)
    s.set_defaults(func=cmd_simulate)

    # trackers ---------------------------------------------------------------------------------
    t = sub.add_parser(
        "trackers", formatter_class=_Formatter, help="compare wp, pml, ring and clear on the same migration",
        description="Run the same migration with each dirty-tracking mechanism and compare them side by side: "
                    "VM exits, guest slowdown, harvest cost, rounds, total time and downtime.\n\n"
                    "'sim harvest' is the wall time dirtylog's C core takes to harvest the dirty log after the "
                    "guest ran for one window (--harvest-window): a measured relative cost of each mechanism "
                    "(a bitmap scan, the ring collection, the manual clear), not KVM's absolute figures.",
        epilog=GRAMMAR)
    _add_guest(t)
    _add_migration(t, tracker=False)
    t.add_argument("--trackers", type=_list_of(lambda x: _choice(x, TRACKERS, "tracker")),
                   default=list(TRACKERS), metavar="LIST", help="trackers to compare (default wp,pml,ring,clear)")
    t.add_argument("--harvest-window", type=_time_pos, default="1s", metavar="TIME",
                   help="guest run time before the measured harvest (default 1s)")
    t.add_argument("--jobs", "-j", type=_positive_int("jobs"), metavar="N",
                   help="run N migrations at a time (default: one per CPU)")
    _add_json(t, "the results")
    _add_progress(t)
    t.set_defaults(func=cmd_trackers)

    # dirty-rate -------------------------------------------------------------------------------
    d = sub.add_parser(
        "dirty-rate", formatter_class=_Formatter, help="measure a workload's dirty rate (calc-dirty-rate)",
        description="Measure a workload's dirty rate over one window the way QEMU's calc-dirty-rate does, in "
                    "its three modes: page-sampling (a sample of pages per GiB checked at the window's start "
                    "and end; QEMU's default), dirty-bitmap (exact) and dirty-ring (per-vCPU rates). A longer "
                    "window gives a lower rate: each page counts once however often it is written.",
        epilog=GRAMMAR)
    _add_guest(d)
    d.add_argument("--mode", choices=DIRTY_RATE_MODES + ("all",), default="all",
                   help="measurement mode (default: all three side by side)")
    d.add_argument("--window", "--calc-time", type=_time_pos, default="1s", metavar="TIME",
                   help="measurement window (default %(default)s)")
    _add_sample_pages(d)
    d.add_argument("--start", type=_time, default="0s", metavar="TIME",
                   help="guest time at which the window starts (default 0s)")
    _add_json(d, "the results (query-dirty-rate fields)")
    _add_progress(d)
    d.set_defaults(func=cmd_dirty_rate)

    # curve ------------------------------------------------------------------------------------
    cv = sub.add_parser(
        "curve", formatter_class=_Formatter, help="distinct dirty pages per window length (the dirty curve)",
        description="Measure the dirty curve: the distinct pages a workload dirties in windows of several "
                    "lengths, each from a clean state. Real curves grow far slower than linearly; save the "
                    "curve with --json FILE and replay it with --workload curve:FILE.",
        epilog=GRAMMAR)
    _add_guest(cv, memory_help=f"guest memory (default {DEFAULTS['memory']}, or the recorded size of a TRACE)")
    cv.add_argument("--windows", type=_list_of(_time_pos), default=None, metavar="LIST",
                    help=f"window lengths (default {','.join(CURVE_WINDOWS)}); with a trace played once, those that "
                         "end past its last record give way to one window of the whole trace")
    cv.add_argument("--mode", choices=("dirty-bitmap", "page-sampling"), default="dirty-bitmap",
                    help="exact bitmap, or page-sampling estimates (default dirty-bitmap)")
    _add_sample_pages(cv)
    cv.add_argument("--start", type=_time, default="0s", metavar="TIME",
                    help="guest time of the windows' start (default %(default)s)")
    _add_json(cv, "the curve (readable by --workload curve:FILE)")
    cv.add_argument("--plot", metavar="FILE", help="draw the curve to FILE (.png, .svg, .pdf; needs matplotlib)")
    _add_progress(cv)
    cv.add_argument("trace", nargs="?", metavar="TRACE",
                    help="a recorded trace (.npz from 'dirtylog record', or any trace file): the curve of its "
                         "writes, in a guest of the recorded size unless --memory is given")
    cv.set_defaults(func=cmd_curve, memory=None)  # None: the trace's recorded size, else the usual default

    # record (issue 14) --------------------------------------------------------------------------
    from .record_pid import METHODS as RECORD_METHODS

    rc = sub.add_parser(
        "record", formatter_class=_Formatter, help="record the dirty pages of a real program (Linux 6.7+)",
        description="Run COMMAND with dirtylog's recorder preloaded: the kernel's own write tracking "
                    "(userfaultfd write-protect in async mode, harvested with PAGEMAP_SCAN) records which pages of "
                    "the program's private writable anonymous memory (heap, anonymous mmaps, thread stacks) it "
                    "writes in each interval. Or record a running process (--pid): with soft-dirty bits where the "
                    "kernel has them, else with userfaultfd write protection injected into it with ptrace (x86-64, "
                    "needs the right to trace it). The recording is a trace (.npz) that 'dirtylog simulate "
                    "--workload trace:FILE' replays and 'dirtylog curve FILE' measures. Children of the program are "
                    "not recorded; static and setuid programs cannot be launched under the recorder.",
        usage="dirtylog record [-o FILE] [--interval TIME] [--duration TIME]\n"
              "                       -- COMMAND [ARGS ...]\n"
              "       dirtylog record [-o FILE] [--interval TIME] [--duration TIME]\n"
              "                       --pid PID [--method {" + ",".join(RECORD_METHODS) + "}]\n"
              "       (both take [--json [FILE]] [--progress | --no-progress])")
    rc.add_argument("-o", "--output", default="dirtylog-record.npz", metavar="FILE",
                    help="the recording (.npz; default %(default)s)")
    rc.add_argument("--interval", type=_time_pos, default="100ms", metavar="TIME",
                    help="time between harvests (default %(default)s, at least 1ms)")
    rc.add_argument("--duration", type=_time_pos, metavar="TIME",
                    help="stop after TIME: a launched program gets SIGTERM (SIGKILL 5 s later), a process recorded "
                         "with --pid runs on untracked; default: until it exits (or Ctrl-C, with --pid)")
    rc.add_argument("--pid", type=_positive_int("pid"), metavar="PID",
                    help="record the running process PID instead of launching a program")
    rc.add_argument("--method", choices=RECORD_METHODS, default="auto",
                    help="how --pid records: soft-dirty bits (kernels with CONFIG_MEM_SOFT_DIRTY), uffd "
                         "(userfaultfd injected with ptrace, Linux 6.7+ on x86-64), or auto: soft-dirty if the "
                         "kernel has it, else uffd (default)")
    _add_json(rc, "the summary")
    _add_progress(rc)
    # dest "program": "command" is the subcommand's name (main() names it in every error)
    rc.add_argument("program", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    rc.set_defaults(func=cmd_record)

    # sweep ------------------------------------------------------------------------------------
    w = sub.add_parser(
        "sweep", formatter_class=_Formatter, help="plan: a grid of bandwidth x downtime limit (x workload)",
        description="Run a grid of migrations in parallel (bandwidth x downtime limit, and workloads or dirty "
                    "rates) and print a planning table: rounds, total time, downtime and a verdict for each: "
                    "'converges' (within the downtime limit), 'forced' (a limit forced the stop-and-copy) or "
                    "'does not converge' (gave up, or rolled back).\nLists are comma-separated; --workload may "
                    "be repeated. With --dirty-rate, each rate replaces the rate of each workload.",
        epilog=GRAMMAR)
    wg = w.add_argument_group("grid")
    wg.add_argument("-m", "--memory", type=_list_of(_size), default=[DEFAULTS["memory"]], metavar="LIST",
                    help="guest memory sizes (default %s)" % DEFAULTS["memory"])
    wg.add_argument("-w", "--workload", type=_spec, action="append", metavar="SPEC",
                    help="a workload (repeat the option for several; default %s)" % DEFAULTS["workload"])
    wg.add_argument("--dirty-rate", type=_list_of(_count_rate), metavar="LIST",
                    help="write rates put into each workload spec, e.g. 100MiB/s,500MiB/s,1GiB/s")
    wg.add_argument("-b", "--bandwidth", type=_list_of(_rate), default=SWEEP_AXES["bandwidth"],
                    metavar="LIST", help=f"bandwidths (default {','.join(SWEEP_AXES['bandwidth'])})")
    wg.add_argument("-t", "--tracker", type=_list_of(lambda x: _choice(x, TRACKERS, "tracker")),
                    default=[DEFAULTS["tracker"]], metavar="LIST", help="trackers (default pml)")
    wg.add_argument("--vcpus", type=_list_of(_whole("vcpus")), default=[DEFAULTS["vcpus"]], metavar="LIST",
                    help="vCPUs (default %s)" % DEFAULTS["vcpus"])
    wg.add_argument("--seed", type=_whole("seed", 0), default=DEFAULTS["seed"], metavar="N", help=_HELP["seed"])
    wg.add_argument("--huge-pages", choices=HUGE_PAGES, default="none", help=_HELP["huge_pages"])
    wg.add_argument("--zero-pages", type=_zero_pages, default=DEFAULTS["zero_pages"], metavar="PLACEMENT",
                    help=_HELP["zero_pages"])
    wg.add_argument("--latency", type=_time, default=DEFAULTS["latency"], metavar="TIME", help=_HELP["latency"])
    _add_policy(w, wg, listed=True)
    wo = w.add_argument_group("running and output")
    wo.add_argument("--jobs", "-j", type=_positive_int("jobs"), metavar="N",
                    help="configurations run at a time, in processes (default: one per CPU)")
    wo.add_argument("--csv", nargs="?", const="-", metavar="FILE",
                    help="write every result as CSV to FILE, or to stdout without FILE")
    _add_json(wo, "every result")
    wo.add_argument("--heatmap", metavar="FILE", help="draw the grid as a heatmap to FILE (needs matplotlib)")
    wo.add_argument("--heatmap-value", choices=("total_time", "downtime", "transferred", "rounds"),
                    default="total_time", help="what the heatmap shows (default total_time)")
    wo.add_argument("--advise", action="store_true",
                    help="for each configuration that does not converge, find what would (more simulations): "
                         "columns least bw, least limit, auto-conv (its end throttle), dirty quota, post-copy "
                         "(its degraded window)")
    _add_progress(wo)
    w.set_defaults(func=cmd_sweep)

    # advise -----------------------------------------------------------------------------------
    _add_advise_parser(sub)

    # bench ------------------------------------------------------------------------------------
    b = sub.add_parser(
        "bench", formatter_class=_Formatter, help="run the benchmark suite and print the ratio table",
        usage="dirtylog bench [-h] [--benchmarks DIR] [--save-json FILE]\n"
              "                      [-- PYTEST_ARGS ...]",
        description="Run the benchmark suite (pytest-benchmark; installed with dirtylog, needs the test extra), which "
                    "ends with its ratio table: each measurement against its baseline from the same run. "
                    "Arguments after '--' go to pytest (e.g. dirtylog bench -- -k harvest).")
    b.add_argument("--benchmarks", metavar="DIR", help="the benchmarks folder (default: the one installed with dirtylog)")
    b.add_argument("--save-json", metavar="FILE", help="keep pytest-benchmark's JSON results in FILE")
    b.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    b.set_defaults(func=cmd_bench)

    # validate ---------------------------------------------------------------------------------
    v = sub.add_parser(
        "validate", formatter_class=_Formatter, help="compare dirtylog with recorded real QEMU migrations",
        description="Simulate each scenario recorded from real QEMU (validation/results/*.json of a source "
                    "checkout, written by validation/run.py) with the recorded inputs, and print QEMU's figures "
                    "(median and range over its repeats) beside dirtylog's: verdict, dirty-sync-count, total "
                    "time, downtime, bytes transferred and sent in the pause, throttle, post-copy requests, "
                    "XBZRLE pages. A figure agrees ('ok') when dirtylog lies within QEMU's run-to-run spread "
                    "(plus a floor for QEMU's measurement resolution); 'known gap' marks a listed shortcoming "
                    "of the model. Exit status 1 when a figure that is not a known gap disagrees.")
    v.add_argument("results", nargs="*", metavar="RESULTS",
                   help="recorded runs (JSON files) or folders of them (default: validation/results)")
    v.add_argument("--scenario", action="append", metavar="NAME",
                   help="only this scenario (may be repeated)")
    _add_json(v, "the comparison")
    form = v.add_mutually_exclusive_group()
    form.add_argument("--rst", action="store_true",
                      help="print the table of docs/validation.rst: one row per scenario, QEMU / dirtylog per "
                           "figure (a reStructuredText simple table)")
    form.add_argument("--markdown", action="store_true", help="print that table in Markdown")
    v.set_defaults(func=cmd_validate)
    for name, parser in sub.choices.items():  # each command's help begins its epilog with its examples
        lines = "\n".join(f"  {line}" for line in EXAMPLES[name])
        parser.epilog = f"examples:\n{lines}" + (f"\n\n{parser.epilog}" if parser.epilog else "")
    return p


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    v = value.strip().lower()
    if v not in allowed:
        raise argparse.ArgumentTypeError(f"unknown {what} {value!r}{_suggest(v, allowed)} (allowed: {', '.join(allowed)})")
    return v


# ----------------------------------------------------------------------------- shared helpers


class _Out:
    """rich output on stdout; off a terminal (a file, a pipe) lines lose rich's trailing padding."""

    def __init__(self) -> None:
        from rich.console import Console

        self._tty = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        self._buf = None if self._tty else io.StringIO()
        width = None if self._tty else int(os.environ.get("COLUMNS", "0") or 0) or 160
        self.console = Console(file=sys.stdout if self._buf is None else self._buf, width=width, highlight=False,
                               soft_wrap=False)

    def print(self, *objects: Any, **kw: Any) -> None:
        self.console.print(*objects, **kw)
        if self._buf is not None:
            text = self._buf.getvalue()
            self._buf.seek(0)
            self._buf.truncate()
            sys.stdout.write("\n".join(line.rstrip() for line in text.split("\n")))
            sys.stdout.flush()


def _console(stderr: bool = False, force_terminal: Optional[bool] = None) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if tty else int(os.environ.get("COLUMNS", "0") or 0) or 160
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, force_terminal=force_terminal)


def _want_progress(args: argparse.Namespace) -> Optional[bool]:
    """None: no bar; True: forced (draw as on a terminal); False: stderr is a terminal."""
    if args.progress is False:
        return None
    if args.progress is True:
        return True
    return False if sys.stderr.isatty() else None


def _settings(args: argparse.Namespace) -> Dict[str, Any]:
    """The configuration (dirtylog.config.MigrationConfig keywords) of a simulate-like command line;
    in a sweep, lists are axes."""
    kw: Dict[str, Any] = dict(
        memory=args.memory,
        workload=args.workload,
        bandwidth=args.bandwidth,
        latency=args.latency,
        tracker=getattr(args, "tracker", DEFAULTS["tracker"]),
        vcpus=args.vcpus,
        huge_pages=None if args.huge_pages == "none" else args.huge_pages,
        zero_pages=args.zero_pages,
        page_size=getattr(args, "page_size", DEFAULTS["page_size"]),
        seed=args.seed,
        verify=not args.no_verify,
        give_up_after=args.give_up_after,
        policy=args.policy,
    )
    kw.update(_knob_values(args))
    return kw


def _config(args: argparse.Namespace, **over: Any) -> Any:
    """The MigrationConfig of a simulate-like command line, checked (errors name the options)."""
    from .config import MigrationConfig

    kw = _settings(args)
    kw.update(over)
    cfg = MigrationConfig(**kw)
    cfg.check()
    return cfg


def _emit(text: str, dest: str, what: str) -> None:
    """Write text to stdout (dest '-') or to a file (and say so on stderr)."""
    if dest == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    with open(dest, "w", newline="") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    _tell(f"{what} written to {dest}")


def _to_json(obj: Any) -> str:
    from .report import json_safe

    return json.dumps(json_safe(obj), indent=2)


def _plural(n: int, noun: str) -> str:
    from .render import plural

    return plural(n, noun)


def _guest_line(memory: int, spec: str, vcpus: int) -> str:
    """'a 4.00 GiB guest, 1 vCPU, workload ...' ('an 8.00 GiB guest': the article as the size is read)."""
    size = format_size(memory)
    article = "an" if re.match(r"8|1[18](\D|$)", size) else "a"
    return f"{article} {size} guest, {vcpus} vCPU{'s' if vcpus != 1 else ''}, workload {spec}"


# ----------------------------------------------------------------------------- simulate


class _MigrationBar:
    """simulate's progress bar (stderr), called by Migration.run: one bar over the give-up horizon (it
    does not restart each round), with the simulated time, the round, the memory remaining (QEMU's
    ram.remaining: Migration.memory_remaining), the expected downtime against the limit, and where the run
    gives up."""

    def __init__(self, forced: bool, limit: float, downtime_limit: float) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self._limit = limit
        self._dl = downtime_limit
        self._p = Progress(SpinnerColumn(), TextColumn("{task.description:<9}"), BarColumn(bar_width=8),
                           TextColumn("{task.fields[info]}"),
                           console=_console(stderr=True, force_terminal=True if forced else None), transient=True)
        self._task = self._p.add_task("setup", total=limit if math.isfinite(limit) else None, info="")
        self._p.start()

    def __call__(self, m: Any) -> None:
        cr = m.current_round
        phase = cr["phase"]
        desc = {"precopy": f"round {cr['index']}", "downtime": "stop-and-copy", "switchover": "switch-over",
                "postcopy": "post-copy"}.get(phase, phase)
        left = m.memory_remaining
        exp = m.expected_downtime
        # the bar: simulated time against the give-up horizon; then what is left to send (QEMU's
        # remaining), and the downtime expected at the last sync against the limit (fits 80 columns)
        horizon = f" / {format_time(self._limit)}" if math.isfinite(self._limit) else " simulated"
        info = [f"{format_time(cr['clock'])}{horizon}", f"{format_size(left)} left"]
        if exp == exp:  # known after the first sync
            info.append(f"downtime {format_time(exp)} {'>' if exp > self._dl else '<='} {format_time(self._dl)}")
        self._p.update(self._task, description=desc, completed=min(float(cr["clock"]), self._limit),
                       info=", ".join(info))

    def close(self) -> None:
        self._p.stop()


class _StepBar:
    """A progress bar on stderr for work in counted steps: ``bar(done, total, text)`` (advice: one step
    per question, the probe in progress); :meth:`guest_time` adapts it to a measurement's
    ``progress(done, total)`` in seconds of guest time (dirty-rate, curve)."""

    def __init__(self, label: str, forced: bool, counts: bool = True) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        cols = [SpinnerColumn(), TextColumn(label), BarColumn()] + ([MofNCompleteColumn()] if counts else [])
        self._p = Progress(*cols, TextColumn("{task.description}"), TimeElapsedColumn(),
                           console=_console(stderr=True, force_terminal=True if forced else None), transient=True)
        self._task = self._p.add_task("", total=None)
        self._p.start()

    def __call__(self, done: float, total: float, text: str) -> None:
        self._p.update(self._task, completed=done, total=total, description=text)

    def guest_time(self, done: float, total: float, what: str = "") -> None:
        self(done, total, f"{what + ': ' if what else ''}{format_time(done)} of {format_time(total)} of guest time")

    def close(self) -> None:
        self._p.stop()


def _measure_bar(args: argparse.Namespace, label: str) -> Optional[_StepBar]:
    """dirty-rate's and curve's bar, when wanted (a long window of a large guest takes a while)."""
    mode = _want_progress(args)
    return _StepBar(label, forced=bool(mode), counts=False) if mode is not None else None


def _run_sweep(configs: List[Any], args: argparse.Namespace, what: str) -> Tuple[Any, bool]:
    """The results, and whether Ctrl-C cut the sweep short (then the results are those that finished)."""
    from .errors import Interrupted
    from .sweeps import SweepBar, sweep

    mode = _want_progress(args)
    bar = SweepBar(what, force_terminal=True if mode else None) if mode is not None else None
    try:
        return sweep(configs, progress=bar if bar is not None else False, jobs=args.jobs,
                     advise=getattr(args, "advise", False)), False
    except Interrupted as exc:
        return exc.report, True
    finally:
        if bar is not None:
            bar.close()


def _interrupted(command: str, results: Any, total: int) -> int:
    _tell(f"{PROG} {command}: interrupted: {len(results)} of {_plural(total, 'configuration')} finished"
          f"{' (shown above)' if len(results) else ''}")
    return 130


_STYLES = {"bold": "bold", "dim": "dim", "good": "green", "warn": "yellow", "bad": "bold red", "": ""}


def _width() -> Optional[int]:
    """The width to fit output to: the terminal's, or $COLUMNS; None (no limit) in a pipe or a file."""
    from .render import output_width

    return output_width()


def _print_lines(lines: Sequence[Any]) -> None:
    """Lines of dirtylog.render, coloured on a terminal (the text is the same as str(report)'s)."""
    from rich.text import Text

    con = _Out()
    for line in lines:
        t = Text(no_wrap=True, overflow="ignore")
        for text, style in line:
            t.append(text, style=_STYLES.get(style, ""))
        con.print(t, soft_wrap=True)  # never folded by rich: the renderer fitted it


def _say(*segments: Tuple[str, str]) -> None:
    """One paragraph of (text, style) segments, wrapped to the output's width by the renderer."""
    from .render import wrap

    _print_lines(wrap("", list(segments), -1, _width()))


def _run(m: Any, give_up: float, args: argparse.Namespace) -> Any:
    """Migration.run (the one run loop), with simulate's progress bar when wanted."""
    mode = _want_progress(args)
    limit = math.inf if m.policy.timeout is not None else give_up
    bar = _MigrationBar(bool(mode), limit, m.policy.downtime_limit) if mode is not None else None
    try:
        return m.run(give_up_after=give_up, progress=bar)
    finally:
        if bar is not None:
            bar.close()


def cmd_simulate(args: argparse.Namespace) -> int:
    from .errors import Interrupted
    from .migration import Migration

    cfg = _config(args)
    kw = cfg.build()
    give_up = kw.pop("give_up_after")
    m = Migration(**kw)
    interrupted = False
    try:
        report = _run(m, give_up, args)
    except Interrupted as exc:  # Ctrl-C: the rounds so far, marked interrupted, then exit status 130
        report, interrupted = exc.report, True
    report = _with_advice(args, cfg, report)
    to_stdout_json = args.json == "-"
    if args.json is not None:
        _emit(report.to_json(), args.json, "report")
    if not to_stdout_json:
        from .render import report_lines

        title = (f"Live migration of {_guest_line(report.memory, cfg.workload_label(), report.vcpus)}",
                 f"over {format_rate(report.bandwidth, bits=True)}, downtime limit {format_time(report.downtime_limit)}, "
                 f"tracker {report.tracker}")
        _print_lines(report_lines(report, _width(), args.rounds, models=not args.no_models, title=title,
                                  more="--rounds 0 shows all", words=cli_words))
        if not interrupted:  # advice on a run that had not ended would mislead
            _print_advice(report)
    if interrupted:
        _tell(f"{PROG} simulate: interrupted at {format_time(report.total_time)} (simulated); the rounds so far "
              "are above")
        return 130
    if args.plot:
        from .plot import plot_report

        plot_report(report, args.plot)
        _tell(f"plot written to {args.plot}")
    return 1 if report.verified is False else 0


# ----------------------------------------------------------------------------- trackers


def _harvest_cost(workload: Any, pages: int, vcpus: int, page_size: int, huge: Optional[str], mode: str,
                  window: float) -> Tuple[float, int]:
    """Wall seconds of one harvest (plus the clear, in clear mode) after ``window`` of the workload."""
    from .tracker import Tracker

    best, dirty = math.inf, 0
    for _ in range(3):  # the best of three: a fresh tracker each time
        tr = Tracker(pages, mode=mode, vcpus=vcpus, page_size=page_size, huge_pages=huge)
        tr.start()
        if workload is not None:
            workload.run(tr, 0.0, window)
        t0 = time.perf_counter()
        harvested = tr.harvest()
        if mode == "clear":
            tr.clear(0, pages)
        best = min(best, time.perf_counter() - t0)
        dirty = int(harvested.size)
    return best, dirty


def cmd_trackers(args: argparse.Namespace) -> int:
    from .specs import parse_workload

    base = _config(args)
    configs = [_config(args, tracker=t) for t in args.trackers]
    results, stopped = _run_sweep(configs, args, "trackers")
    if stopped:
        return _interrupted("trackers", results, len(configs))
    window = parse_time(args.harvest_window)
    wl = parse_workload(base.workload, seed=base.seed)
    page_size = int(parse_size(args.page_size))
    from ._validate import guest_pages

    pages = guest_pages(args.memory, page_size)
    harvest = {}
    for r in results:
        harvest[r.tracker] = _harvest_cost(wl, pages, r.vcpus, page_size, base.huge_pages, r.tracker, window)
    if args.json is not None:
        rows = []
        for r in results:
            d = r.to_dict()
            d["sim_harvest_seconds"], d["sim_harvest_pages"] = harvest[r.tracker]
            rows.append(d)
        _emit(_to_json(rows), args.json, "results")
        if args.json == "-":
            return 1 if any(r.verified is False for r in results) else 0
    r0 = results[0]
    _say(("Dirty tracking compared", "bold"), (f" on {_guest_line(r0.memory, base.workload_label(), r0.vcpus)}; "
                                               f"{format_rate(r0.bandwidth, bits=True)}, downtime limit "
                                               f"{format_time(r0.downtime_limit)}", ""))
    from .render import ROUNDS_MEANING, Column, slowdown_text, table

    extra = [c for c in ("kicks", "splits") if any(getattr(r, c) for r in results)]
    harvested = (f"one harvest of the pages dirtied by {format_time(window)} of the workload "
                 f"({harvest[results[0].tracker][1]:,} with {results[0].tracker}), timed in dirtylog's C core")
    cols = [Column("tracker", "left"), Column("exits", note="VM exits caused by tracking"),
            Column("faults", priority=5), Column("PML full", priority=5), Column("ring full", priority=5),
            *[Column(c, priority=6) for c in extra], Column("guest lost", priority=3),
            Column("slowdown", note="vCPU time lost to them / (total time x vCPUs)"),
            Column("sim harvest", priority=1, note=harvested), Column("rounds", priority=2, note=ROUNDS_MEANING),
            Column("total time", short="total"), Column("downtime"), Column("verdict", "left")]
    styles = {"converges": "good", "post-copy": "good", "forced": "warn", "does not converge": "bad", "lost": "bad"}
    rows = []
    for r in results:
        cells = [r.tracker, f"{r.exits:,}", f"{r.faults:,}", f"{r.pml_full_exits:,}", f"{r.ring_full_exits:,}",
                 *[f"{getattr(r, c):,}" for c in extra], format_time(r.guest_lost), slowdown_text(r.guest_slowdown),
                 format_time(harvest[r.tracker][0]), str(r.rounds), format_time(r.total_time),
                 format_time(r.downtime) if r.status == "completed" else "-", r.verdict]
        rows.append((cells, [""] * (len(cells) - 1) + [styles.get(r.verdict, "")]))
    _print_lines(table(cols, rows, _width()))
    bad = [r.tracker for r in results if r.verified is False]
    _say(("Verified:", ""), (f" DIRTY WRITES LOST with {', '.join(bad)}", "bad") if bad else
         (" no dirty write lost with any tracker" if all(r.verified for r in results) else " not checked", ""))
    return 1 if any(r.verified is False for r in results) else 0


# ----------------------------------------------------------------------------- dirty-rate and curve


def cmd_dirty_rate(args: argparse.Namespace) -> int:
    from .measure import dirty_rate
    from .specs import parse_workload

    wl = parse_workload(args.workload, seed=args.seed)
    if wl is None:
        raise UsageError("dirty-rate needs a workload (not 'none')")
    modes = DIRTY_RATE_MODES if args.mode == "all" else (args.mode,)
    bar = _measure_bar(args, "dirty-rate")
    try:
        results = []
        for mo in modes:
            shown: Optional[Callable[[float, float], None]] = None
            if bar is not None:
                shown = functools.partial(bar.guest_time, what=mo)
            results.append(dirty_rate(wl, args.memory, window=args.window, mode=mo, sample_pages=args.sample_pages,
                                      vcpus=args.vcpus, page_size=args.page_size, seed=args.seed, start=args.start,
                                      progress=shown))
    finally:
        if bar is not None:
            bar.close()
    if args.json is not None:
        _emit(_to_json([r.to_dict() for r in results]), args.json, "results")
        if args.json == "-":
            return 0
    r0 = results[0]
    memory = r0.total_pages * r0.page_size
    nominal = wl.write_rate(pages=r0.total_pages, page_size=r0.page_size)
    _say(("Dirty rate", "bold"), (f" of {_guest_line(memory, args.workload, args.vcpus)}; window "
                                  f"{format_time(r0.window)} from t = {format_time(r0.start)}; the workload writes "
                                  f"{format_dirty_rate(nominal * r0.page_size)} ({nominal:,.0f} pages/s)", ""))
    from .render import Column, table, wrap

    cols = [Column("mode", "left"), Column("dirty rate"), Column("± std. error", priority=2, short="± s.e."),
            Column("dirty pages", priority=1), Column("pages/s", priority=3), Column("sampled", priority=4)]
    rows = []
    for r in results:
        rows.append(([r.mode, format_dirty_rate(r.dirty_rate_mib_s * 2**20),
                      format_dirty_rate(r.stderr_mib_s * 2**20) if r.mode == "page-sampling" else "-",
                      f"{r.dirty_pages:,}", f"{r.dirty_rate_pages_s:,.0f}",
                      f"{r.sampled:,} ({r.sample_pages}/GiB)" if r.mode == "page-sampling" else "-"], ""))
    by_mode = {r.mode: r for r in results}
    caption = ""
    if "dirty-ring" in by_mode:  # a figure that can be twice dirty-bitmap's: say why beside it
        caption = ("dirty-ring counts ring entries: a page written again after a full ring was reaped (its "
                   "pages protected again) counts again, so a guest that rewrites a hot set reads higher than "
                   "dirty-bitmap")
        exact = by_mode.get("dirty-bitmap")
        if exact is not None and exact.dirty_pages:
            caption += f" (here {by_mode['dirty-ring'].dirty_pages / exact.dirty_pages:.2f}x)"
    lines = table(cols, rows, _width(), caption=caption)
    for r in results:
        if r.vcpu_rates:
            lines += wrap("", [(f"per-vCPU dirty rates ({r.mode}): "
                                + ", ".join(format_dirty_rate(x * 2**20) for x in r.vcpu_rates), "")], -1, _width())
    _print_lines(lines)
    return 0


#: ``dirtylog curve``'s window lengths unless --windows is given.
CURVE_WINDOWS = ("100ms", "200ms", "500ms", "1s", "2s", "5s", "10s")


def _curve_windows(wl: Any, texts: Sequence[str], start_text: str) -> List[float]:
    """The curve's windows. A trace played once (every part of the workload one) writes nothing after its
    last record: a window that ends past it would only add idle time (its rate would read low, and a
    curve replayed from it, ``-w curve:FILE``, would stop dirtying there). Such windows are replaced by
    the whole trace, saying so."""
    from .measure import windows_within
    from .workloads import Trace

    windows = [parse_time(w) for w in texts]
    start = parse_time(start_text)
    leaves = wl._leaves()
    if not leaves or not all(isinstance(leaf, Trace) and leaf.period is None for leaf in leaves):
        return windows
    if not any(leaf.records for leaf in leaves):
        raise UsageError("the trace holds no records: its dirty curve is empty")
    last = max(leaf.duration for leaf in leaves)
    span = last + 1e-9 - start  # the window [start, start + span) holds the last record
    if span <= 1e-9:
        raise UsageError(f"the trace's last record is at {format_time(last)}: from --start {format_time(start)} on "
                         "it writes nothing (replay it over and over with -w trace:FILE,repeat=yes)")
    longer = sorted({w for w in windows if w > span + 1e-9})
    if longer:
        warnings.warn(f"the trace ends {format_time(span)} after the start (its last record): the last window is "
                      f"the whole trace, in place of {', '.join(format_time(w) for w in longer)}; "
                      "-w trace:FILE,repeat=yes replays it for longer windows")
        windows = windows_within(windows, span)
    return windows


def cmd_curve(args: argparse.Namespace) -> int:
    from .measure import dirty_curve
    from .specs import parse_workload

    if getattr(args, "trace", None):  # dirtylog curve app.npz: a recorded trace in a guest of its size
        from .workloads import Trace

        if not os.path.isfile(args.trace):
            raise UsageError(f"no such trace file {args.trace!r}")
        args.workload = f"trace:{args.trace}"
        size = Trace(args.trace).guest_pages
        if args.memory is None and size is not None:
            args.memory = f"{size * int(parse_size(args.page_size))}B"
    if args.memory is None:
        args.memory = DEFAULTS["memory"]
    wl = parse_workload(args.workload, seed=args.seed)
    if wl is None:
        raise UsageError("curve needs a workload (not 'none')")
    windows = _curve_windows(wl, args.windows or CURVE_WINDOWS, args.start)
    bar = _measure_bar(args, "curve")
    try:
        c = dirty_curve(wl, args.memory, windows, mode=args.mode, sample_pages=args.sample_pages,
                        vcpus=args.vcpus, page_size=args.page_size, seed=args.seed, start=args.start,
                        progress=None if bar is None else bar.guest_time)
    finally:
        if bar is not None:
            bar.close()
    if args.json is not None:
        d = c.to_dict()
        d["workload"] = args.workload
        _emit(_to_json(d), args.json, "curve")
    if args.json != "-":
        from .render import curve_lines

        memory = c.total_pages * c.page_size
        _say(("Dirty curve", "bold"), (f" of {_guest_line(memory, args.workload, args.vcpus)} ({c.mode}); each window "
                                       f"from a clean state at t = {format_time(c.start)}", ""))
        _print_lines(curve_lines(c, _width()))
    if args.plot:
        from .plot import plot_curve

        plot_curve(c, args.plot, title=f"Dirty curve: {args.workload}, {format_size(c.total_pages * c.page_size)}")
        _tell(f"plot written to {args.plot}")
    return 0


# ----------------------------------------------------------------------------- record (issue 14)


def cmd_record(args: argparse.Namespace) -> int:
    from .record import record, summarize

    command = list(args.program)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.pid is not None and command:
        raise UsageError("give either --pid PID (a running process) or a program after '--', not both")
    if args.pid is None and args.method != "auto":
        raise UsageError("--method chooses how --pid records a running process; a launched program is always "
                         "recorded with the preloaded recorder")
    if args.pid is None and not command:
        raise UsageError("give the program to record after '--', e.g. dirtylog record -- python3 job.py, "
                         "or a running process with --pid PID")
    con = _console(stderr=True)
    mode = _want_progress(args)
    status = None
    if mode is not None:
        status = con.status("starting", spinner="dots")
        status.start()
    name = f"pid {args.pid}" if args.pid is not None else os.path.basename(command[0])[:16]

    def show(p: Any) -> None:
        if status is not None:
            from rich.text import Text

            rate = format_dirty_rate(p.last_dirty * p.page_size / p.interval)
            status.update(Text(f"{name}: {format_time(p.elapsed)}, {p.intervals:,} intervals, last {p.last_dirty:,} "
                               f"pages dirty ({rate}) of {format_size(p.pages * p.page_size)}",
                               no_wrap=True, overflow="ellipsis"))

    try:
        if args.pid is not None:
            from .record_pid import record_pid

            rec = record_pid(args.pid, args.output, interval=args.interval, duration=args.duration,
                             method=args.method, progress=show)
        else:
            rec = record(command, args.output, interval=args.interval, duration=args.duration, progress=show)
    finally:
        if status is not None:
            status.stop()
    _tell(f"recording written to {args.output}")
    s = summarize(rec)
    if args.json is not None:
        d = s.to_dict()
        d.update(command=rec.command, exit_status=rec.exit_status, output=args.output, pid=rec.pid, method=rec.method,
                 complete=rec.complete)
        _emit(_to_json(d), args.json, "summary")
        if args.json == "-":
            return 0
    from .record import summary_lines

    _print_lines(summary_lines(rec, s, args.output, _width()))
    return 0


# ----------------------------------------------------------------------------- sweep


def sweep_configs(args: argparse.Namespace) -> List[Any]:
    """The grid a `dirtylog sweep` command line describes."""
    from .specs import with_rate
    from .sweeps import grid

    workloads = args.workload or [DEFAULTS["workload"]]
    if args.dirty_rate:
        workloads = [with_rate(w, r) for w in workloads for r in args.dirty_rate]
    kw = _settings(args)
    kw["workload"] = workloads
    kw.setdefault("downtime_limit", SWEEP_AXES["downtime_limit"])
    first = ("memory", "workload", "tracker", "bandwidth", "downtime_limit", "vcpus")  # the last varies fastest
    ordered = {k: kw.pop(k) for k in first}
    ordered.update(kw)
    configs = grid(**ordered)
    for c in configs:
        c.check()
    return configs


def cmd_sweep(args: argparse.Namespace) -> int:
    from .errors import SweepError

    configs = sweep_configs(args)
    failed: Optional[SweepError] = None
    try:
        results, stopped = _run_sweep(configs, args, "sweep")
    except SweepError as exc:  # the others' results are shown and written, then the error (exit status 2)
        results, stopped, failed = exc.results, False, exc
    if not results:
        return _sweep_failed(failed) if failed is not None else \
            _interrupted("sweep", results, len(configs)) if stopped else 0
    quiet = args.json == "-" or args.csv == "-"
    if args.csv is not None:
        _emit(results.to_csv(), args.csv, "CSV")
    if args.json is not None:
        _emit(results.to_json(), args.json, "JSON")
    if not quiet:
        n = len(results)
        vcpus = sorted({r.vcpus for r in results})
        trackers = sorted({r.tracker for r in results})
        done = f"{n} of {_plural(len(configs), 'configuration')} (interrupted)" if stopped else \
            f"{n} of {_plural(len(configs), 'configuration')} ({len(failed.failures)} failed)" if failed else \
            _plural(n, "configuration")
        _say(("Migration plan", "bold"), (f": {done}, {'/'.join(map(str, vcpus))} vCPU{'s' if vcpus != [1] else ''}, "
                                          f"tracker{'s' if len(trackers) > 1 else ''} {', '.join(trackers)}", ""))
        from .sweeps import VERDICTS

        counts = {v: n for v in VERDICTS if (n := sum(1 for r in results if r.verdict == v)) or v != "lost"}
        note = (", ".join(f"{k}: {v}" for k, v in counts.items()) + ". 'does not converge': an early verdict (it "
                "can never converge under QEMU's rules; --no-stop-when-stalled iterates on as QEMU does), gave up "
                "after --give-up-after of simulated time (default 10 min, or 20x the time to send memory once), or "
                "aborted at a limit.")
        # the table's caption: the note, then what each column shown holds (rounds, advice)
        _print_lines(results.table_lines(
            [c for c in ("workload", "memory", "tracker", "vcpus") if c in results.varying() or c == "workload"]
            + ["bandwidth", "downtime_limit"] + [k for k in results.varying() if k in results.knobs()], _width(),
            caption=note))
    if args.heatmap:
        from .plot import plot_heatmap

        plot_heatmap(results, args.heatmap, value=args.heatmap_value)
        _tell(f"heatmap written to {args.heatmap}")
    if stopped:
        return _interrupted("sweep", results, len(configs))
    if failed is not None:
        return _sweep_failed(failed)
    return 1 if any(r.verified is False for r in results) else 0


def _sweep_failed(exc: Any) -> int:
    """A sweep whose configurations raised (errors.SweepError): the error after what finished, exit status 2."""
    _tell(f"{PROG} sweep: error: {cli_words(str(exc))}")
    return 2


# ----------------------------------------------------------------------------- advise

_ADVICE_QUESTIONS = ("bandwidth", "downtime-limit", "auto-converge", "dirty-limit", "postcopy")


def _add_advise_parser(sub: Any) -> None:
    from .specs import GRAMMAR

    a = sub.add_parser(
        "advise", formatter_class=_Formatter, help="what would make a migration converge (found by simulation)",
        description="Simulate the migration, then find by simulation what would make it converge: the least "
                    "bandwidth at this downtime limit, the least downtime limit at this bandwidth, whether "
                    "auto-converge does it (and at which CPU throttle the guest ends), whether a per-vCPU dirty "
                    "limit does (and the largest quota that does), and what post-copy would cost instead. Each "
                    "answer is a bisection over the engine, every probe stopped early once it cannot converge; "
                    "each comes with the total time and downtime predicted there. For a migration that converges "
                    "it tells how far bandwidth and downtime limit could go down.",
        epilog=GRAMMAR)
    _add_guest(a)
    _add_migration(a)
    g = a.add_argument_group("advice")
    g.add_argument("--questions", type=_list_of(lambda x: _choice(x, _ADVICE_QUESTIONS, "question")),
                   default=list(_ADVICE_QUESTIONS), metavar="LIST",
                   help="what to search (default all: %s)" % ",".join(_ADVICE_QUESTIONS))
    g.add_argument("--tolerance", type=_fraction, default=0.02, metavar="FRACTION",
                   help="stop a bisection when its bracket is this narrow (default 2%%)")
    g.add_argument("--max-probes", type=_positive_int("max-probes", 2), default=12, metavar="N",
                   help="at most N simulations per question (default %(default)s)")
    g.add_argument("--max-bandwidth-tried", dest="max_bandwidth_tried", type=_rate, default="1Tbit/s", metavar="RATE",
                   help="the highest bandwidth tried (default %(default)s)")
    g.add_argument("--patience", type=_number, default=5.0, metavar="X",
                   help="a setting converges if it switches over within X times the time to send memory once "
                        "(at least 1 min of simulated time; default %(default)s); --give-up-after sets one "
                        "limit for every probe instead")
    _add_json(g, "the advice (every answer and every probe)")
    _add_progress(g)
    a.set_defaults(func=cmd_advise)


def _advise(args: argparse.Namespace, cfg: Any, report: Any) -> Any:
    """The advice for a command line's migration (with a progress bar), given its report."""
    from .advice import advise

    kw = cfg.build()
    kw.pop("verify", None)
    kw["give_up_after"] = args.give_up_after  # None: each probe's own limit (advice.probe_give_up)
    questions = [q.replace("-", "_") for q in getattr(args, "questions", _ADVICE_QUESTIONS)]
    mode = _want_progress(args)
    bar = _StepBar("advice", forced=bool(mode)) if mode is not None else None
    try:
        return advise(**kw, report=report, questions=questions, tolerance=getattr(args, "tolerance", 0.02),
                      max_probes=getattr(args, "max_probes", 12),
                      max_bandwidth=getattr(args, "max_bandwidth_tried", "1Tbit/s"),
                      patience=getattr(args, "patience", 5.0), progress=bar)
    finally:
        if bar is not None:
            bar.close()


def _with_advice(args: argparse.Namespace, cfg: Any, report: Any) -> Any:
    """simulate --advise: the report with its advice."""
    if not getattr(args, "advise", False):
        return report
    import dataclasses

    return dataclasses.replace(report, advice=_advise(args, cfg, report))


def _print_advice(report: Any) -> None:
    """The advice section of the output (or, for a migration that does not converge, how to get it)."""
    from .render import wrap

    adv = report.advice
    if adv is None:
        if not (report.status == "completed" and report.converged) and report.status != "lost":
            _print_lines([[]] + wrap("", [("What would make it converge: add --advise, or run 'dirtylog advise' with "
                                           "the same options.", "dim")], -1, _width()))
        return
    _print_lines([[]] + adv.lines(_width()))


def cmd_advise(args: argparse.Namespace) -> int:
    import dataclasses

    from .migration import Migration

    cfg = _config(args, verify=False)
    kw = cfg.build()
    give_up = kw.pop("give_up_after")
    m = Migration(**kw)
    report = _run(m, give_up, args)
    adv = _advise(args, cfg, report)
    if args.json is not None:
        _emit(_to_json(adv.to_dict()), args.json, "advice")
        if args.json == "-":
            return 0
    from .render import status_text, wrap

    status, style = status_text(report)
    _print_lines(wrap("", [("Advice", "bold"), (
        f" for {_guest_line(report.memory, cfg.workload_label(), report.vcpus)}; "
        f"{format_rate(report.bandwidth, bits=True)}, downtime limit {format_time(report.downtime_limit)}, "
        f"tracker {report.tracker}", "")], -1, _width())
        + wrap("", [("As given:", ""), (f" {status}", style), (f" after {format_time(report.total_time)}: "
                                                             f"{cli_words(report.reason)}", "")], -1, _width()))
    _print_advice(dataclasses.replace(report, advice=adv))
    return 0


# ----------------------------------------------------------------------------- bench


def _benchmarks_dir(given: Optional[str]) -> Optional[Path]:
    """The benchmark suite: --benchmarks DIR, the copy installed with the package, or a checkout's."""
    if given:
        return Path(given)
    import dirtylog

    for pkg in getattr(dirtylog, "__path__", []):
        installed = Path(pkg).resolve() / "benchmarks"  # shipped in the wheel
        checkout = Path(pkg).resolve().parent / "benchmarks"  # an editable install's source tree
        for cand in (installed, checkout):
            if cand.is_dir() and any(cand.glob("bench_*.py")) and (cand / "conftest.py").is_file():
                return cand
    return None


def cmd_bench(args: argparse.Namespace) -> int:
    bdir = _benchmarks_dir(args.benchmarks)
    if bdir is None or not bdir.is_dir():
        where = f"{args.benchmarks} is not a folder" if args.benchmarks else "no benchmarks/ beside the package"
        raise UsageError(f"the benchmark suite is not available ({where}); reinstall dirtylog (pip install "
                         "'dirtylog[test]'), which ships it, or pass --benchmarks DIR")
    if not any(bdir.glob("bench_*.py")):  # pytest would collect whatever the folder holds
        raise UsageError(f"--benchmarks {args.benchmarks}: no benchmark (bench_*.py) in that folder; give the "
                         "benchmarks/ folder of a dirtylog checkout, or leave the option out for the installed one")
    if importlib.util.find_spec("pytest") is None or importlib.util.find_spec("pytest_benchmark") is None:
        raise UsageError("the benchmarks need pytest and pytest-benchmark: pip install 'dirtylog[test]'")
    extra = list(args.pytest_args or [])
    if extra and extra[0] == "--":
        extra = extra[1:]
    bdir = bdir.resolve()
    # The suite's own folder is the working directory, and its pytest.ini the configuration:
    # `python -m` puts the working directory first on sys.path, so run from a source checkout
    # it would import the source tree (without the compiled core) instead of the installed
    # package; and the settings of a project around the folder must not apply.
    ini = bdir / "pytest.ini"
    cmd = [sys.executable, "-m", "pytest", str(bdir), "--benchmark-only", "-p", "no:cacheprovider",
           "--rootdir", str(bdir), "-c", str(ini) if ini.is_file() else os.devnull, *extra]
    if args.save_json:
        cmd.append(f"--benchmark-json={os.path.abspath(args.save_json)}")
    print("running: " + " ".join(cmd), file=sys.stderr)
    sys.stdout.flush()
    # The suite prints its ratio table (measured against its baselines in the same run) at the end.
    rc = subprocess.call(cmd, cwd=str(bdir))
    if rc == 5:
        _tell(f"{PROG} bench: error: no benchmark was collected in {bdir}")
    return 0 if rc == 0 else 1


# ----------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    from .validation import compare

    result = compare(args.results, scenarios=args.scenario)
    if args.json is not None:
        _emit(_to_json(result.to_dict()), args.json, "comparison")
        if args.json == "-":
            return 1 if result.regressions else 0
    if args.rst or args.markdown:
        sys.stdout.write(result.markup("rst" if args.rst else "markdown") + "\n")
        return 1 if result.regressions else 0
    _print_lines(result.lines(_width()))
    return 1 if result.regressions else 0


# ----------------------------------------------------------------------------- entry point


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before a long run, not after it: output folders exist, matplotlib is there for pictures."""
    for opt in ("json", "csv", "plot", "heatmap", "save_json"):
        dest = getattr(args, opt, None)
        if dest is None or dest == "-":
            continue
        folder = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(folder):
            raise UsageError(f"--{opt.replace('_', '-')} {dest}: the folder {folder} does not exist")
        if opt in ("plot", "heatmap") and importlib.util.find_spec("matplotlib") is None:
            from .plot import PlotUnavailable

            raise PlotUnavailable(f"--{opt} needs matplotlib, which is not installed: pip install 'dirtylog[plot]'")
        if opt in ("plot", "heatmap"):
            from .plot import check_path

            try:
                check_path(dest)
            except ConfigError as exc:
                raise UsageError(f"--{opt} {dest}: {exc}") from None


# ----------------------------------------------------------------------------- messages in CLI syntax


def _option_of(name: str) -> str:
    return "--" + name.replace("_", "-")


_PY_ARG = re.compile(r"\b([a-z][a-z0-9_]*)=('[^']*'|\"[^\"]*\"|True|False|[0-9][\w./]*|\.\.\.)")
_PY_CALL = re.compile(r"\b(?:PreCopy|PostCopy|Link)\(([^()]*)\)")


@functools.lru_cache(maxsize=1)
def _negated_options() -> FrozenSet[str]:
    """Every ``--no-X`` option of the command line (``--no-verify``, ``--no-stop-when-stalled``, ...)."""
    found: set = set()
    stack = [build_parser()]
    while stack:
        p = stack.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                stack.extend(a.choices.values())
            found.update(o for o in a.option_strings if o.startswith("--no-"))
    return frozenset(found)


def cli_words(msg: str) -> str:
    """A message of the Python API in command-line syntax: ``tracker='ring'`` becomes ``--tracker ring``,
    ``PreCopy(timeout=..., on_limit=...)`` becomes ``--timeout and --on-limit``, ``give_up_after``
    becomes ``--give-up-after``."""
    from .config import FIELDS

    names = set(FIELDS) | {"page_size", "give_up_after"}

    def arg(m: "re.Match[str]") -> str:
        name, value = m.group(1), m.group(2)
        if name not in names:
            return m.group(0)
        if value == "True":
            return _option_of(name)
        if value == "...":
            return _option_of(name)
        if value == "False":
            negated = "--no-" + name.replace("_", "-")
            return negated if negated in _negated_options() else f"without {_option_of(name)}"
        return f"{_option_of(name)} {value.strip(chr(39) + chr(34))}"

    out = _PY_CALL.sub(lambda m: m.group(1).replace(", ", " and "), msg)
    out = _PY_ARG.sub(arg, out)
    out = re.sub(r"\b([a-z]+(?:_[a-z]+)+)\b", lambda m: _option_of(m.group(1)) if m.group(1) in names else m.group(0),
                 out)
    first = re.match(r"^([a-z]+)(:| must| is| of)", out)
    if first and first.group(1) in names:
        out = _option_of(first.group(1)) + out[len(first.group(1)):]
    return out


def _merge_negative_values(parser: argparse.ArgumentParser, argv: List[str]) -> List[str]:
    """``-d -1s`` as ``-d=-1s``: argparse would take ``-1s`` for an option; its own parser should judge it."""
    takes_value: set = set()
    stack = [parser]
    while stack:
        p = stack.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                stack.extend(a.choices.values())
            elif a.option_strings and a.nargs is None and a.const is None:
                takes_value.update(a.option_strings)
    out: List[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            out.extend(argv[i:])
            break
        if (word in takes_value and i + 1 < len(argv) and re.match(r"^-\.?\d", argv[i + 1])):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _embed_flags(args: argparse.Namespace) -> Optional[int]:
    from . import embed

    wanted = [(args.cflags, embed.cflags), (args.libs, embed.libs)]
    dirs = [(args.include_dir, embed.get_include), (args.library_dir, embed.get_library_dir),
            (args.cmake_dir, embed.get_cmake_dir), (args.pkgconfig_dir, embed.get_pkgconfig_dir)]
    if not any(flag for flag, _ in wanted + dirs):
        return None
    flags = [fn() for flag, fn in wanted if flag]
    if flags:
        print(" ".join(flags))
    for flag, fn in dirs:
        if flag:
            print(fn())
    return 0


class _own_warnings:
    """dirtylog's own warnings as one ``PROG: warning:`` line each (in CLI syntax), as they come;
    other packages' warnings keep Python's format, and their deprecation notices stay quiet."""

    def __init__(self, prog: str) -> None:
        self._prog = prog
        self._cm = warnings.catch_warnings()

    def __enter__(self) -> None:
        self._cm.__enter__()
        here = os.path.dirname(os.path.abspath(__file__))
        original = warnings.showwarning
        prog = self._prog
        seen = set()

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: Optional[str] = None) -> None:
            if os.path.abspath(filename).startswith(here + os.sep) and issubclass(category, UserWarning):
                text = cli_words(str(message).strip())
                if text not in seen:
                    seen.add(text)
                    _tell(f"{prog}: warning: {text}")
                return
            if issubclass(category, (DeprecationWarning, PendingDeprecationWarning)) \
                    or "Deprecation" in category.__name__:
                return
            original(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.filterwarnings("always", category=UserWarning, module=r"dirtylog(\.|$)")

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``dirtylog`` command line; returns the exit status."""
    global _ARGV
    parser = build_parser()
    _ARGV = _merge_negative_values(parser, list(argv) if argv is not None else sys.argv[1:])
    try:
        args = parser.parse_args(_ARGV)
    except SystemExit as exc:  # --help, --version, or a usage error already reported
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    prog = f"{PROG} {args.command}" if args.command else PROG
    debug = os.environ.get("DIRTYLOG_DEBUG", "") not in ("", "0")
    try:
        rc = _embed_flags(args)
        if rc is not None and args.command is None:
            return rc
        if args.command is None:
            parser.print_help()
            return 0
        _check_outputs(args)
        with _own_warnings(prog):
            return int(args.func(args))
    except KeyboardInterrupt:
        _tell(f"{prog}: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `dirtylog sweep --csv | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except MemoryError as exc:
        if debug:
            raise
        _tell(f"{prog}: error: out of memory: {str(exc).strip() or 'an allocation failed'}; "
              "try a smaller guest (--memory) or fewer jobs")
        return 2
    except (DirtylogError, TypeError, ValueError, OSError, ImportError) as exc:
        if debug:
            raise
        msg = cli_words(str(exc).strip().replace("\n", " ")) or type(exc).__name__
        if isinstance(exc, OSError) and getattr(exc, "filename", None) and str(exc.filename) not in msg:
            msg = f"{msg}: {exc.filename}"
        _tell(f"{prog}: error: {msg}")
        return 2
