"""Workload specs: one short string per workload, for the command line and for sweeps.

Grammar::

    WORKLOAD := TERM ( "+" TERM )*          several terms: their sum (a Mix)
    TERM     := KIND [ ":" ARG ( "," ARG )* ]
    ARG      := VALUE | NAME "=" VALUE

Arguments are given in the order listed below or by name; names may be
abbreviated to any unique prefix. Rates are page writes per second of guest
time: a byte rate (``1GiB/s``: that many bytes of 4 KiB pages per second), a
count (``5000/s``) or a bare number (pages/s). Fractions are ``0.1`` or ``10%``.

=============================  =========================================================================
``idle[:RATE]``                an idle guest, uniform writes at RATE (default 50 pages/s)
``uniform:RATE``               writes spread uniformly over memory, or over ``start=PAGE|SIZE`` (default 0)
                               ``length=PAGES|SIZE|FRACTION`` (default: to the end of memory); ``seed=N``
``hotspot:RATE``               ``hot=FRACTION`` of memory (default 10%) takes ``share=FRACTION`` of the
                               writes (default 90%); hot pages scattered over memory; ``seed=N``
``zipf:RATE``                  Zipf-distributed writes, ``s=EXPONENT`` (default 1.0); ``seed=N``
``sequential:RATE``            a wrapping sweep over ``start=PAGE|SIZE`` (default 0) ``length=PAGES|SIZE|
                               FRACTION`` (default: to the end of memory), ``stride=N`` (default 1)
``workingset:PHASE,PHASE...``
                               a moving working set; PHASE is ``DURATION:SET:RATE`` (``2s:25%:1GiB/s``:
                               for 2 s, write 25 % of memory at 1 GiB/s; SET is a fraction, a percentage, a
                               size or a page count); ``repeat=yes|no`` (default yes); ``seed=N``
``trace:FILE``                 replay recorded writes (.npy, .npz or .csv; see dirtylog.trace);
                               ``repeat=yes`` replays them over and over (``repeat=PERIOD``, e.g. ``10s``,
                               sets the period), otherwise the guest idles after the last record
``curve:FILE``                 a DirtyCurve fitted to a measured curve: the JSON that ``dirtylog curve
                               --json FILE`` writes, or a CSV of ``window,dirty_pages`` rows with
                               ``total=PAGES``
``dirty-rate:RATE@WINDOW``
                               a DirtyRate: a dirty rate as calc-dirty-rate measures it (distinct pages
                               dirtied per second over WINDOW, default 1s); ``set=FRACTION|SIZE`` (the
                               working set the writes stay in, default all memory); ``seed=N``
``qemu-dirty-rate:FILE``
                               a DirtyRate read from QEMU's query-dirty-rate JSON or libvirt's ``virsh
                               domstats --dirtyrate`` output (per-vCPU rates included); ``set=``, ``seed=``
=============================  =========================================================================

Examples: ``hotspot:2GiB/s``, ``hotspot:1GiB/s,hot=5%,share=0.95``, ``zipf:1GiB/s,s=1.2``,
``uniform:500MiB/s+sequential:200MiB/s``, ``workingset:2s:10%:800MiB/s,2s:30%:200MiB/s``.

:func:`parse_workload` builds the workload objects of :mod:`dirtylog.workloads`;
:func:`with_rate` puts another rate into a one-term spec (for sweeps over the dirty
rate). Errors are :class:`~dirtylog.errors.ConfigError` naming the term and the
argument.

Zero-page placements (``zero_pages=``, ``--zero-pages``; :func:`parse_zero_pages`,
:mod:`dirtylog.zeropages`): ``30%`` or ``0.3`` (scattered at random),
``scattered:30%``, ``top:25%`` / ``top:512MiB`` / ``top:4096`` (the last pages of
memory: a share, a size or a page count), ``ranges:0-1023,65536-131071``
(inclusive page numbers, like a CPU list).
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import ConfigError
from .units import parse_fraction

__all__ = ["GRAMMAR", "KINDS", "Term", "parse_terms", "parse_workload", "with_rate", "describe", "ZERO_GRAMMAR",
           "parse_zero_pages"]

#: One line per kind, for ``--help``.
GRAMMAR = """\
workload spec: KIND[:ARG,...][+KIND[:ARG,...]...]  (+ sums the terms)
  idle[:RATE]                          an idle guest: uniform writes at RATE
                                       (default 50 pages/s)
  uniform:RATE[,start=0][,length=ALL][,seed=N]
                                       writes spread over memory (or the
                                       region from start=)
  hotspot:RATE[,hot=10%][,share=90%][,seed=N]
                                       hot= of memory takes share= of the writes
  zipf:RATE[,s=1.0][,seed=N]           Zipf-distributed writes
  sequential:RATE[,start=0][,length=ALL][,stride=1]
                                       a wrapping sweep (as QEMU's
                                       migration-test guest)
  workingset:DUR:SET:RATE[,DUR:SET:RATE...][,repeat=yes][,seed=N]
                                       a moving working set, e.g. 2s:25%:1GiB/s
  trace:FILE[,repeat=yes|PERIOD]       replay recorded writes: a .csv with the
                                       header time_ns,page[,vcpu], then one
                                       write per line (guest time in ns, page
                                       index, vCPU), or .npy/.npz with those
                                       columns; repeat=yes replays them again
                                       and again (repeat=10s: that period)
  curve:FILE[,total=PAGES]             fit a measured dirty curve (JSON from
                                       'dirtylog curve --json', or a CSV of
                                       window,dirty_pages)
  dirty-rate:RATE[@WINDOW][,set=ALL][,seed=N]
                                       a measured dirty rate (calc-dirty-rate),
                                       e.g. dirty-rate:120MiB/s@1s; set= the
                                       working set
  qemu-dirty-rate:FILE[,set=ALL][,seed=N]
                                       a dirty rate from QEMU's query-dirty-rate
                                       JSON or 'virsh domstats --dirtyrate'
                                       output (per-vCPU rates)
RATE: 1GiB/s (bytes of page writes per second), 5000/s or 5000 (pages/s).
FRACTION: 0.1 or 10%.  Examples: hotspot:2GiB/s  zipf:1GiB/s,s=1.2
  uniform:300MiB/s+sequential:100MiB/s"""


@dataclass(frozen=True)
class Term:
    """One parsed term: its kind, positional and named arguments (strings), and its text."""

    kind: str
    args: Tuple[str, ...] = ()
    options: Tuple[Tuple[str, str], ...] = ()
    text: str = ""

    def __str__(self) -> str:
        parts = list(self.args) + [f"{k}={v}" for k, v in self.options]
        return self.kind + (":" + ",".join(parts) if parts else "")


@dataclass(frozen=True)
class _Kind:
    positional: Tuple[str, ...]          # names of the positional arguments, in order
    required: int                        # how many of them must be given
    options: Tuple[str, ...]             # every accepted name (positional names included)
    build: Callable[[Dict[str, str], str, Optional[int]], Any]
    has_rate: bool = True
    raw: bool = False                    # the whole argument text is one value (a file name)
    repeated: bool = False               # every positional argument is one more item (phases)
    aliases: Dict[str, str] = field(default_factory=dict)


def _int(value: str, name: str, where: str) -> int:
    try:
        return int(value.strip().replace("_", ""), 0)
    except ValueError:
        raise ConfigError(f"{where}: {name}={value!r} is not a whole number") from None


def _bool(value: str, name: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "yes", "true", "on", "y"):
        return True
    if v in ("0", "no", "false", "off", "n"):
        return False
    raise ConfigError(f"{where}: {name}={value!r} is not yes or no")


def _seed(opts: Dict[str, str], where: str, seed: Optional[int]) -> int:
    if "seed" in opts:
        return _int(opts["seed"], "seed", where)
    return 0 if seed is None else seed


def _pages_or_size(value: str, name: str, where: str, fraction: bool) -> Any:
    """An int page count, a size string ("1GiB") or (if allowed) a fraction of memory (0.5 or "50%", more
    than none)."""
    v = value.strip()
    if fraction and (v.endswith("%") or ("." in v and v.replace(".", "", 1).isdigit())):
        return parse_fraction(v, name=name, allow_zero=False)
    try:
        return int(v.replace("_", ""), 0)
    except ValueError:
        return v  # a size: checked by the workload


def _build_idle(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import Idle

    return Idle(o.get("rate", 50), seed=_seed(o, where, seed))


def _build_uniform(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import Uniform

    start = _pages_or_size(o["start"], "start", where, fraction=False) if "start" in o else 0
    length = _pages_or_size(o["length"], "length", where, fraction=True) if "length" in o else None
    return Uniform(o["rate"], start=start, length=length, seed=_seed(o, where, seed))


def _build_hotspot(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import Hotspot

    shares = {api: o[arg] for api, arg in _KINDS["hotspot"].aliases.items() if arg in o}  # read by Hotspot
    return Hotspot(o["rate"], **shares, seed=_seed(o, where, seed))


def _build_zipf(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import Zipf

    s = 1.0
    if "s" in o:
        try:
            s = float(o["s"])
        except ValueError:
            raise ConfigError(f"{where}: s={o['s']!r} is not a number") from None
    return Zipf(o["rate"], s=s, seed=_seed(o, where, seed))


def _build_sequential(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import Sequential

    start = _pages_or_size(o["start"], "start", where, fraction=False) if "start" in o else 0
    length = _pages_or_size(o["length"], "length", where, fraction=True) if "length" in o else None
    stride = _int(o["stride"], "stride", where) if "stride" in o else 1
    return Sequential(o["rate"], start=start, length=length, stride=stride)


def _build_workingset(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import WorkingSet

    phases = []
    for i, text in enumerate(o.get("_phases", "").split("\x00")):
        if not text:
            continue
        parts = text.split(":")
        if len(parts) != 3:
            raise ConfigError(
                f"{where}: phase {i + 1} {text!r} must be DURATION:SET:RATE, e.g. 2s:25%:1GiB/s"
            )
        dur, ws, rate = (p.strip() for p in parts)
        phases.append((dur, _pages_or_size(ws, f"phase {i + 1} set", where, fraction=True), rate))
    if not phases:
        raise ConfigError(f"{where}: give at least one phase DURATION:SET:RATE, e.g. workingset:2s:25%:1GiB/s")
    repeat = _bool(o["repeat"], "repeat", where) if "repeat" in o else True
    return WorkingSet(phases, repeat=repeat, seed=_seed(o, where, seed))


def _build_trace(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import Trace

    path = o.get("file", "")
    if not path:
        raise ConfigError(f"{where}: give the trace file, e.g. trace:writes.npz")
    if not os.path.exists(path):
        raise ConfigError(f"{where}: no such trace file {path!r}")
    repeat: Any = False
    if "repeat" in o:
        text = o["repeat"].strip()
        if text.lower() in ("1", "yes", "true", "on", "y", "0", "no", "false", "off", "n"):
            repeat = _bool(text, "repeat", where)
        else:  # a period
            from .units import parse_time

            try:
                repeat = parse_time(text, name="repeat", allow_zero=False)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{where}: repeat={text!r} is neither yes/no nor a period such as 10s ({exc})") \
                    from None
    return Trace(path, repeat=repeat)


def _build_curve(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import DirtyCurve

    path = o.get("file", "")
    if not path:
        raise ConfigError(f"{where}: give the curve file, e.g. curve:curve.json")
    if not os.path.exists(path):
        raise ConfigError(f"{where}: no such curve file {path!r}")
    total = _int(o["total"], "total", where) if "total" in o else None
    sampled = None
    try:
        if path.lower().endswith(".json"):
            with open(path) as f:
                d = json.load(f)
            windows = d["windows"]
            if d.get("sample_dirty") is not None and d.get("sampled"):
                dirty, sampled = d["sample_dirty"], int(d["sampled"])
            else:
                dirty = d["dirty_pages"]
            total = total if total is not None else int(d["total_pages"])
        else:
            windows, dirty = [], []
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    if not row or row[0].lstrip().startswith("#"):
                        continue
                    try:
                        w, n = row[0].strip(), float(row[1])
                    except (IndexError, ValueError):
                        if not windows:  # a header line
                            continue
                        raise ConfigError(f"{where}: bad row {row!r} in {path!r}; expected window,dirty_pages") from None
                    windows.append(float(w) if w.replace(".", "", 1).isdigit() else w)
                    dirty.append(n)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: {path!r} is not valid JSON (line {exc.lineno}, column {exc.colno}); "
                          "save curves with 'dirtylog curve --json FILE'") from None
    except KeyError as exc:
        raise ConfigError(f"{where}: {path!r} has no {exc.args[0]!r} field; a curve JSON (from 'dirtylog curve "
                          "--json FILE') has windows, dirty_pages and total_pages") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {path!r} is not a text file; give a curve JSON or a CSV of window,dirty_pages") \
            from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {path!r} does not hold a dirty curve: windows, dirty_pages and total_pages "
                          "must be lists of numbers and a page count") from None
    if total is None:
        raise ConfigError(f"{where}: a CSV curve needs the guest's page count, e.g. curve:{path},total=1048576")
    return DirtyCurve(windows, dirty, total, sampled_pages=sampled, seed=_seed(o, where, seed))


def _build_dirty_rate(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .workloads import DirtyRate

    rate, at, window = o["rate"].partition("@")
    if at and "window" in o:
        raise ConfigError(f"{where}: the window is given twice (RATE@WINDOW and window=)")
    if at and not window.strip():
        raise ConfigError(f"{where}: give the window after '@', e.g. dirty-rate:120MiB/s@1s")
    window = window.strip() if at else o.get("window", "1s")
    ws = _pages_or_size(o["set"], "set", where, fraction=True) if "set" in o else None
    return DirtyRate(rate.strip(), window=window, working_set=ws, seed=_seed(o, where, seed))


def _build_qemu_dirty_rate(o: Dict[str, str], where: str, seed: Optional[int]) -> Any:
    from .measured import read_dirty_rate

    path = o.get("file", "")
    if not path:
        raise ConfigError(f"{where}: give the file, e.g. qemu-dirty-rate:query-dirty-rate.json")
    if not os.path.exists(path):
        raise ConfigError(f"{where}: no such file {path!r}")
    ws = _pages_or_size(o["set"], "set", where, fraction=True) if "set" in o else None
    return read_dirty_rate(path).workload(working_set=ws, seed=_seed(o, where, seed))


_KINDS: Dict[str, _Kind] = {
    "idle": _Kind(("rate",), 0, ("rate", "seed"), _build_idle),
    "uniform": _Kind(("rate",), 1, ("rate", "start", "length", "seed"), _build_uniform),
    "hotspot": _Kind(("rate", "hot", "share"), 1, ("rate", "hot", "share", "seed"), _build_hotspot,
                     aliases={"hot_fraction": "hot", "hot_share": "share"}),
    "zipf": _Kind(("rate", "s"), 1, ("rate", "s", "seed"), _build_zipf),
    "sequential": _Kind(("rate", "start", "length", "stride"), 1, ("rate", "start", "length", "stride"),
                        _build_sequential),
    "workingset": _Kind(("phase",), 1, ("repeat", "seed"), _build_workingset, has_rate=False, repeated=True),
    "trace": _Kind(("file",), 1, ("file", "repeat"), _build_trace, has_rate=False, raw=True),
    "curve": _Kind(("file",), 1, ("file", "total", "seed"), _build_curve, has_rate=False),
    "dirty-rate": _Kind(("rate",), 1, ("rate", "window", "set", "seed"), _build_dirty_rate,
                        aliases={"working_set": "set"}),
    "qemu-dirty-rate": _Kind(("file",), 1, ("file", "set", "seed"), _build_qemu_dirty_rate, has_rate=False,
                             aliases={"working_set": "set"}),
}
_ALIASES = {"working-set": "workingset", "working_set": "workingset", "seq": "sequential",
            "dirtycurve": "curve", "dirtyrate": "dirty-rate", "dirty_rate": "dirty-rate",
            "qemu-dirtyrate": "qemu-dirty-rate", "qemu_dirty_rate": "qemu-dirty-rate",
            "domstats": "qemu-dirty-rate"}

#: The kinds a spec may name.
KINDS = tuple(_KINDS)


def _kind(name: str, text: str) -> Tuple[str, _Kind]:
    key = _ALIASES.get(name.lower(), name.lower())
    if key in _KINDS:
        return key, _KINDS[key]
    matches = [k for k in _KINDS if k.startswith(key)] if key else []
    if len(matches) == 1:
        return matches[0], _KINDS[matches[0]]
    raise ConfigError(
        f"workload {text!r}: unknown kind {name!r}; allowed: {', '.join(KINDS)} (terms joined by '+' are summed)"
    )


def _option_name(name: str, spec: _Kind, where: str) -> str:
    key = spec.aliases.get(name, name)
    allowed = set(spec.options) | set(spec.positional)
    if key in allowed:
        return key
    matches = sorted(k for k in allowed if k.startswith(key))
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(k for k in spec.options if k != "phase")
    raise ConfigError(f"{where}: unknown argument {name!r}" + (f"; allowed: {names}" if names else ""))


def parse_terms(spec: str) -> List[Term]:
    """Split a spec into its terms (no workload is built)."""
    if not isinstance(spec, str):
        raise TypeError(f"a workload spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise ConfigError("empty workload spec; e.g. hotspot:2GiB/s (see the list of kinds in --help)")
    if text.lower().startswith("mix:"):
        text = text[4:]
    terms: List[Term] = []
    for raw in text.split("+"):
        raw = raw.strip()
        if not raw:
            raise ConfigError(f"workload {spec!r}: empty term (two '+' in a row, or '+' at an end)")
        name, sep, rest = raw.partition(":")
        kind, k = _kind(name.strip(), spec)
        where = f"workload {raw!r}"
        if k.raw:
            # The argument is a file name (commas allowed); trailing NAME=VALUE items that name
            # one of the kind's options are options.
            raw_opts: List[Tuple[str, str]] = []
            body = rest
            while "," in body:
                head, _, tail = body.rpartition(",")
                key, eq, value = tail.partition("=")
                key = key.strip().lower()
                if not eq or key not in k.options or key in k.positional:
                    break
                if any(n == key for n, _ in raw_opts):
                    raise ConfigError(f"{where}: {key} is given twice")
                raw_opts.insert(0, (key, value.strip()))
                body = head
            args: Tuple[str, ...] = (body.strip(),) if body.strip() else ()
            terms.append(Term(kind, args, tuple(raw_opts), raw))
            continue
        pos: List[str] = []
        opts: List[Tuple[str, str]] = []
        for item in (rest.split(",") if sep else []):
            item = item.strip()
            if not item:
                raise ConfigError(f"{where}: empty argument (two ',' in a row?)")
            key, eq, value = item.partition("=")
            if eq:
                name_ = _option_name(key.strip().lower(), k, where)
                if any(n == name_ for n, _ in opts):
                    raise ConfigError(f"{where}: {name_} is given twice")
                opts.append((name_, value.strip()))
            else:
                if opts and not k.repeated:
                    raise ConfigError(f"{where}: positional argument {item!r} after a named one")
                pos.append(item)
        if not k.repeated and len(pos) > len(k.positional):
            raise ConfigError(
                f"{where}: too many arguments ({len(pos)}); {kind} takes {', '.join(k.positional)} in that order"
            )
        terms.append(Term(kind, tuple(pos), tuple(opts), raw))
    return terms


def _values(term: Term) -> Dict[str, str]:
    k = _KINDS[term.kind]
    where = f"workload {term.text or str(term)!r}"
    vals: Dict[str, str] = {}
    if k.repeated:
        vals["_phases"] = "\x00".join(term.args)
    else:
        for name, value in zip(k.positional, term.args):
            vals[name] = value
    for name, value in term.options:
        if name in vals:
            raise ConfigError(f"{where}: {name} is given both by position and by name")
        vals[name] = value
    missing = [n for n in k.positional[: k.required] if n not in vals and not k.repeated]
    if missing:
        example = {"rate": "2GiB/s", "file": "FILE"}.get(missing[0], "VALUE")
        raise ConfigError(f"{where}: missing {missing[0]}, e.g. {term.kind}:{example}")
    return vals


def parse_workload(spec: Any, seed: Optional[int] = None) -> Any:
    """Build the workload a spec describes (a Mix for several terms; None for ``"none"``).

    ``seed`` is the default seed of every term that does not give ``seed=``.
    A workload object is returned as it is.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "none"):
        return None
    if not isinstance(spec, str):
        if hasattr(spec, "bind"):
            return spec
        raise TypeError(f"a workload must be a spec string or a dirtylog workload, got {type(spec).__name__}")
    from .workloads import Mix

    built = []
    for term in parse_terms(spec):
        vals = _values(term)
        where = f"workload {term.text or str(term)!r}"
        try:
            built.append(_KINDS[term.kind].build(vals, where, seed))
        except (ConfigError, TypeError, ValueError) as exc:
            msg = str(exc)
            if msg.startswith("workload "):
                raise
            for api, arg in _KINDS[term.kind].aliases.items():  # the spec's words: hot=, not hot_fraction
                msg = re.sub(rf"\b{api}\b", f"{arg}=", msg)
            raise ConfigError(f"{where}: {msg}") from None
    return built[0] if len(built) == 1 else Mix(built)


def with_rate(spec: str, rate: str) -> str:
    """The spec with its rate replaced by ``rate`` (a bare kind such as ``"hotspot"`` gets one).

    Only for a single term of a kind that has a rate.
    """
    terms = parse_terms(spec)
    if len(terms) != 1:
        raise ConfigError(f"workload {spec!r}: a dirty rate can replace the rate of a single-term workload only")
    t = terms[0]
    k = _KINDS[t.kind]
    if not k.has_rate:
        raise ConfigError(f"workload {spec!r}: a {t.kind} workload has no single rate to replace; "
                          "use hotspot, uniform, zipf, sequential, idle or dirty-rate")
    opts = tuple((n, v) for n, v in t.options if n != "rate")
    if t.kind == "dirty-rate" and t.args and "@" in t.args[0] and "@" not in rate:
        rate = rate + "@" + t.args[0].partition("@")[2]  # a measured rate keeps its window
    args = (rate,) + t.args[1:] if t.args else (rate,)
    return str(Term(t.kind, args, opts, ""))


def describe(spec: Any) -> str:
    """A short label for a workload: the spec itself, or the object's repr."""
    if spec is None:
        return "none"
    if isinstance(spec, str):
        return spec.strip()
    return repr(spec)


# ----------------------------------------------------------------------------- zero-page placement

#: The zero-page specs (``--zero-pages``, ``zero_pages=``): see :mod:`dirtylog.zeropages`.
ZERO_GRAMMAR = """\
ZERO := FRACTION | "scattered:" FRACTION | "top:" (FRACTION | SIZE | PAGES) | "ranges:" RANGE ("," RANGE)*
RANGE := PAGE ["-" PAGE]     (inclusive page numbers, like a CPU list)
FRACTION is 0.3 or 30% (1.0 or 100%: all); SIZE has a unit (1GiB); PAGES is a whole
number (top:1 is one page).
Examples: 30%, scattered:10%, top:25%, top:512MiB, top:4096, ranges:0-1023,65536-131071"""


def parse_zero_pages(spec: str) -> Any:
    """A :class:`~dirtylog.zeropages.ZeroPages` from a spec string (see :data:`ZERO_GRAMMAR`)."""
    from .zeropages import ZeroPages

    if not isinstance(spec, str):
        raise TypeError(f"a zero-page spec must be a string, got {type(spec).__name__}")
    if len(spec) > 10_000:
        raise ConfigError(f"zero-page spec too long ({len(spec):,} characters)")
    text = spec.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        return ZeroPages.scattered(text)
    if kind == "scattered":
        return ZeroPages.scattered(arg)
    if kind == "top":
        amount = arg.strip()
        if amount.isdigit():  # a page count: top:1 is one page (top:100% or top:1.0 is all of memory)
            return ZeroPages.top(int(amount))
        return ZeroPages.top(amount)
    if kind == "ranges":
        spans = []
        for part in arg.split(","):
            p = part.strip()
            lo, dash, hi = p.partition("-")
            if not lo.strip().isdigit() or (dash and not hi.strip().isdigit()):
                raise ConfigError(f"zero-page spec {spec!r}: {p!r} is not a page range (A-B, inclusive page "
                                  f"numbers)")
            first = int(lo)
            last = int(hi) if dash else first
            if last < first:
                raise ConfigError(f"zero-page spec {spec!r}: range {p!r} ends before it starts")
            spans.append((first, last + 1))
        return ZeroPages.ranges(spans)
    from .config import suggest
    from .zeropages import KINDS

    raise ConfigError(f"unknown zero-page placement {kind!r} in {spec!r}; allowed: a fraction, "
                      f"{', '.join(k + ':...' for k in KINDS)}{suggest(kind, KINDS)}")
