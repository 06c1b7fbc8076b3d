"""One configuration model for every front end: :func:`dirtylog.simulate`, sweeps and the command line.

A migration is described by a :class:`MigrationConfig`: the guest (``memory``,
``workload``, ``vcpus``, ...), the link (``bandwidth``, ``latency``), the
tracker, and the policy's knobs flattened (``downtime_limit``,
``auto_converge``, ``xbzrle_cache_size``, ...). :func:`dirtylog.simulate`,
:func:`dirtylog.sweeps.grid`, :class:`~dirtylog.sweeps.SweepConfig` (this
class) and the ``dirtylog`` command line all take these names and share these
defaults:

* :data:`DEFAULTS`: the guest, link and run settings;
* the policy knobs' defaults are those of :class:`~dirtylog.PreCopy` and
  :class:`~dirtylog.PostCopy` themselves (read from their signatures), and
  :data:`KNOBS` describes each knob once (its kind, its command-line option and
  help), from which the command line builds its options.

Sizes, rates and times are numbers (bytes, bytes/s, seconds) or strings with
units, as everywhere in the Python API.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

from ._validate import HUGE_MODES, MODES
from .errors import ConfigError
from .throttle import TOLERANCE_MIB_S as _DIRTY_LIMIT_TOLERANCE_MIB_S

__all__ = ["DEFAULTS", "Knob", "KNOBS", "KNOB", "FIELDS", "MigrationConfig", "default_give_up", "suggest",
           "POLICIES", "TRACKERS"]

#: Dirty-tracking mechanisms (Tracker modes).
TRACKERS: Tuple[str, ...] = MODES
#: What runs the migration: pre-copy (QEMU's default) or post-copy after some pre-copy rounds.
POLICIES: Tuple[str, ...] = ("precopy", "postcopy")

#: The defaults of everything but the policy knobs, for every front end.
DEFAULTS: Dict[str, Any] = dict(
    memory="4GiB",
    workload="hotspot:1GiB/s",
    bandwidth="10Gbit/s",
    latency="0s",
    tracker="pml",
    vcpus=1,
    page_size=4096,
    huge_pages=None,
    zero_pages=0.0,
    seed=0,
    verify=True,
    give_up_after=None,  # None: default_give_up(memory, bandwidth)
    policy="precopy",
    label=None,
)


def default_give_up(memory: Any, bandwidth: Any, page_size: Any = 4096) -> float:
    """When a run stops waiting for convergence (QEMU would iterate forever): 10 minutes of
    simulated time, or 20 times the time to send memory once if that is longer (a big guest
    on a slow link needs it)."""
    from .units import parse_rate, parse_size

    mem = parse_size(memory, name="memory", allow_zero=False)
    bw = parse_rate(bandwidth, name="bandwidth", allow_zero=False)
    psize = parse_size(page_size, name="page_size", allow_zero=False)
    once = mem * (psize + 8) / psize / bw
    return max(600.0, 20.0 * once)


def suggest(word: str, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the nearest of ``allowed``, or ``""``."""
    near = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


# ----------------------------------------------------------------------------- the policy knobs


@dataclass(frozen=True)
class Knob:
    """One policy knob: a parameter of :class:`~dirtylog.PreCopy` (or :class:`~dirtylog.PostCopy`).

    ``kind`` says how the command line reads it: ``"time"``, ``"rate"``,
    ``"size"`` (units required), ``"int"``, ``"percent"`` (a whole number of percent,
    20 or 20%, in QEMU's range :data:`dirtylog.policy.PERCENT_RANGES`), ``"number"``,
    ``"fraction"`` (0.3 or 30%), ``"flag"`` (a switch) or ``"choice"`` (one of ``choices``).
    ``owner`` is the class whose parameter ``param`` it is; its default is read
    from that class's signature, so it is written nowhere else.
    """

    name: str
    kind: str
    help: str
    group: str = "policy"
    owner: str = "PreCopy"
    param: str = ""
    short: str = ""
    metavar: str = ""
    choices: Tuple[str, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    allow_zero: bool = True
    allow_inf: bool = False
    #: what the knob's owner does when it is unset (its default is None), said as the option's default
    unset: str = ""

    @property
    def parameter(self) -> str:
        """The name of the owner's constructor parameter."""
        return self.param or self.name

    @property
    def option(self) -> str:
        """The long command-line option, e.g. ``--downtime-limit`` (``--no-...`` for a switch that is on
        by default)."""
        off = self.kind == "flag" and self.default is True
        return ("--no-" if off else "--") + self.name.replace("_", "-")

    @property
    def default(self) -> Any:
        """The owner's default (None when the knob is unset by default)."""
        return _signature(self.owner)[self.parameter].default


def _signature(owner: str) -> Dict[str, inspect.Parameter]:
    from .policy import PostCopy, PreCopy

    cls: type = {"PreCopy": PreCopy, "PostCopy": PostCopy}[owner]
    return dict(inspect.signature(cls).parameters)


_ALL_KNOBS: Tuple[Knob, ...] = (
    Knob("downtime_limit", "time", "longest acceptable pause (QEMU's downtime-limit)", short="-d",
         group="link and policy"),
    Knob("stop", "choice", "stop rule: qemu (no iteration cap) or xen (29 iterations, 3x memory, < 50 pages)",
         choices=("qemu", "xen")),
    Knob("max_iterations", "int", "at most N pre-copy rounds after round 0", metavar="N", minimum=0,
         unset="no cap; 28 with --stop xen"),
    Knob("max_total_factor", "number", "at most X times memory sent before the limit action", metavar="X",
         minimum=1.0, unset="no cap; 3 with --stop xen"),
    Knob("min_dirty_pages", "int", "switch over below N dirty pages whatever the threshold", metavar="N", minimum=0,
         unset="0; 50 with --stop xen"),
    Knob("timeout", "time", "longest total migration time", allow_zero=False, allow_inf=True, unset="none"),
    Knob("on_limit", "choice", "at a limit: force the stop-and-copy (default), abort (roll back) or switch to "
                               "post-copy", choices=("force", "abort", "postcopy")),
    Knob("resume_time", "time", "time for the destination to resume the guest"),
    Knob("max_bandwidth", "rate", "cap on the live phase's bandwidth (QEMU's max-bandwidth; the stop-and-copy "
                                  "runs at link speed)", allow_zero=False,
         unset="no cap"),
    Knob("switchover_bandwidth", "rate", "bandwidth assumed in the switch-over threshold and the expected "
                                         "downtime (QEMU's avail-switchover-bandwidth)", allow_zero=False,
         unset="the measured bandwidth"),
    Knob("rate_window", "time", "how long QEMU's 100 ms rate-limit windows really last (a late migration "
                                "thread stretches them; each still sends max-bandwidth x 100 ms)",
         allow_zero=False),
    Knob("stop_when_stalled", "flag", "keep iterating as QEMU does when the dirty set no longer shrinks "
                                      "(by default the run stops early, failed, with that verdict)"),
    Knob("stall_syncs", "int", "the stall verdict fits at least twice this many syncs", metavar="N",
         minimum=1),
    Knob("auto_converge", "flag", "QEMU's auto-converge: throttle the vCPUs when they dirty more than half of "
                                  "what is sent, twice (20%, then +10% each time, at most 99%)",
         group="auto-converge"),
    Knob("throttle_trigger_threshold", "percent", "auto-converge and dirty-limit: dirtied bytes, as a share of "
                                                  "the bytes sent, that count as too many", group="auto-converge"),
    Knob("cpu_throttle_initial", "percent", "auto-converge: first throttle", group="auto-converge"),
    Knob("cpu_throttle_increment", "percent", "auto-converge: throttle added each time", group="auto-converge"),
    Knob("max_cpu_throttle", "percent", "auto-converge: highest throttle", group="auto-converge"),
    Knob("cpu_throttle_tailslow", "flag", "auto-converge: size the later steps by the ratio of dirty rate to "
                                          "bandwidth", group="auto-converge"),
    Knob("dirty_limit", "flag", "QEMU's dirty-limit instead of auto-converge: step each vCPU's sleep at "
                                "ring-full exits until its dirty rate is within "
                                f"{_DIRTY_LIMIT_TOLERANCE_MIB_S} MiB/s of --vcpu-dirty-limit (a vCPU already within "
                                "it runs free; needs --tracker ring)", group="dirty-limit"),
    Knob("vcpu_dirty_limit", "rate", "dirty-limit: each vCPU's dirty-rate quota", group="dirty-limit",
         allow_zero=False),
    Knob("dirty_limit_period", "time", "dirty-limit: how often the vCPUs' dirty rates are read",
         group="dirty-limit", allow_zero=False),
    Knob("xbzrle", "flag", "XBZRLE: send re-dirtied pages found in a page cache as deltas (a model)",
         group="compression"),
    Knob("xbzrle_cache_size", "size", "XBZRLE: page cache size (QEMU's xbzrle-cache-size)", group="compression",
         allow_zero=False),
    Knob("xbzrle_ratio", "fraction", "XBZRLE: a delta's mean size as a share of a page", group="compression"),
    Knob("multifd_channels", "int", "multifd: sending channels (0: one, no multifd)", metavar="N",
         group="compression", minimum=0, maximum=256),
    Knob("channel_bandwidth", "rate", "multifd: what one sending thread can push (caps the link at channels x "
                                      "this)", group="compression", allow_zero=False,
         unset="no cap"),
    Knob("max_postcopy_bandwidth", "rate", "post-copy: cap on its page traffic (QEMU's max-postcopy-bandwidth)",
         group="post-copy", allow_zero=False, unset="no cap: link speed"),
    Knob("postcopy_after_rounds", "int", "post-copy: pre-copy rounds first, round 0 included", metavar="N",
         group="post-copy", owner="PostCopy", param="after_rounds", minimum=1),
    Knob("prepage", "int", "post-copy: pages after a faulting page sent along with it", metavar="N",
         group="post-copy", owner="PostCopy", minimum=0, maximum=4096),
    Knob("channel_backlog", "size", "post-copy: bytes queued on the migration channel ahead of a requested page "
                                    "(QEMU 7.2's one stream; 0: postcopy-preempt)", group="post-copy",
         owner="PostCopy"),
    Knob("read_share", "fraction", "post-copy: share of the guest's accesses that are reads", group="post-copy",
         owner="PostCopy", unset="the workload's, else 2/3"),
)


def _available(k: Knob) -> bool:
    return k.parameter in _signature(k.owner)


#: The policy knobs this build's PreCopy and PostCopy take, in the order of their options.
KNOBS: Tuple[Knob, ...] = tuple(k for k in _ALL_KNOBS if _available(k))
#: The knobs by name.
KNOB: Dict[str, Knob] = {k.name: k for k in KNOBS}

_BASE_FIELDS: Tuple[str, ...] = ("memory", "workload", "bandwidth", "latency", "tracker", "vcpus", "page_size",
                                 "huge_pages", "zero_pages", "seed", "verify", "give_up_after", "policy", "label")
#: Every name a configuration takes: the guest, link and run settings, then the knobs.
FIELDS: Tuple[str, ...] = _BASE_FIELDS + tuple(KNOB)


def _unknown(names: Sequence[str], what: str = "parameter") -> ConfigError:
    bad = sorted(names)
    hint = suggest(bad[0], FIELDS) if len(bad) == 1 else ""
    return ConfigError(f"unknown {what}{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}{hint} "
                       f"(allowed: {', '.join(FIELDS)})")


@dataclass(frozen=True, init=False)
class MigrationConfig:
    """One migration, described flat: the keyword arguments of :func:`dirtylog.simulate`.

    ``workload`` is a spec string (see :mod:`dirtylog.specs`), a workload object
    or None (an idle guest that never writes). Sizes, rates and times may be
    numbers or strings. ``label`` names the configuration in tables (default:
    the workload spec). Every policy knob (:data:`KNOBS`: ``downtime_limit``,
    ``auto_converge``, ``xbzrle``, ``postcopy_after_rounds``, ...) is a keyword
    too, and an attribute; unset ones read as the policy's default.
    """

    memory: Union[int, str]
    workload: Any
    bandwidth: Union[float, str]
    latency: Union[float, str]
    tracker: str
    vcpus: int
    page_size: Union[int, str]
    huge_pages: Optional[str]
    zero_pages: Any  # a fraction, a spec string or a dirtylog.zeropages.ZeroPages
    seed: int
    verify: bool
    give_up_after: Union[float, str, None]
    policy: str
    label: Optional[str]
    options: Tuple[Tuple[str, Any], ...]

    def __init__(self, **values: Any) -> None:
        unknown = [k for k in values if k not in FIELDS]
        if unknown:
            raise _unknown(unknown)
        for name in _BASE_FIELDS:
            object.__setattr__(self, name, values.get(name, DEFAULTS[name]))
        from .zeropages import ZeroPages

        if isinstance(self.zero_pages, ZeroPages):  # kept as its spec string: labels and JSON stay plain
            object.__setattr__(self, "zero_pages", str(self.zero_pages))
        object.__setattr__(self, "options", tuple((k.name, values[k.name]) for k in KNOBS if k.name in values))

    def __getattr__(self, name: str) -> Any:
        knob = KNOB.get(name)
        if knob is None:
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        for k, v in self.__dict__.get("options", ()):
            if k == name:
                return v
        return knob.default

    def knobs(self) -> Dict[str, Any]:
        """The policy knobs set on this configuration (the rest are the policy's defaults)."""
        return dict(self.options)

    def values(self) -> Dict[str, Any]:
        """Every setting given, as keywords that rebuild this configuration."""
        d = {name: getattr(self, name) for name in _BASE_FIELDS}
        d.update(self.options)
        return d

    def replace(self, **changes: Any) -> "MigrationConfig":
        """A copy with some settings changed."""
        d = self.values()
        d.update(changes)
        return type(self)(**d)

    def workload_label(self) -> str:
        from .specs import describe

        return self.label if self.label is not None else describe(self.workload)

    def make_policy(self) -> Any:
        """The :class:`~dirtylog.PreCopy` or :class:`~dirtylog.PostCopy` of the knobs."""
        return make_policy(self.policy, self.knobs())

    def resolved_give_up(self) -> float:
        from .units import parse_time

        if self.give_up_after is None:
            return default_give_up(self.memory, self.bandwidth, self.page_size)
        return parse_time(self.give_up_after, name="give_up_after", allow_zero=False, allow_inf=True)

    def build(self) -> Dict[str, Any]:
        """The keyword arguments of :class:`~dirtylog.Migration`, plus ``give_up_after`` (checks every value)."""
        from .link import Link
        from .specs import parse_workload
        from .units import parse_size

        parse_size(self.memory, name="memory", allow_zero=False)
        if self.tracker not in TRACKERS:
            raise ConfigError(f"unknown tracker {self.tracker!r}{suggest(str(self.tracker), TRACKERS)} "
                              f"(allowed: {', '.join(TRACKERS)})")
        if self.huge_pages not in HUGE_MODES:
            raise ConfigError(f"huge_pages must be None, 'lazy' or 'eager', got {self.huge_pages!r}")
        return dict(
            memory=self.memory,
            workload=parse_workload(self.workload, seed=self.seed),
            link=Link(self.bandwidth, latency=self.latency),
            policy=self.make_policy(),
            tracker=self.tracker,
            vcpus=self.vcpus,
            page_size=self.page_size,
            huge_pages=self.huge_pages,
            zero_pages=self.zero_pages,
            seed=self.seed,
            verify=self.verify,
            give_up_after=self.resolved_give_up(),
        )

    def check(self) -> None:
        """Raise ConfigError/TypeError now for a value a run would reject."""
        from ._validate import guest_pages
        from .units import parse_size

        self.build()
        guest_pages(self.memory, parse_size(self.page_size, name="page_size", allow_zero=False))


def make_policy(policy: str, knobs: Dict[str, Any]) -> Any:
    """A :class:`~dirtylog.PreCopy` (``policy="precopy"``) or :class:`~dirtylog.PostCopy` of the given knobs."""
    from .policy import PostCopy, PreCopy

    unknown = [k for k in knobs if k not in KNOB]
    if unknown:
        raise _unknown(unknown, "policy knob")
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}{suggest(str(policy), POLICIES)} "
                          f"(allowed: {', '.join(POLICIES)})")
    pre = PreCopy(**{KNOB[k].parameter: v for k, v in knobs.items() if KNOB[k].owner == "PreCopy"})
    post = {KNOB[k].parameter: v for k, v in knobs.items() if KNOB[k].owner == "PostCopy"}
    if policy == "postcopy":
        return PostCopy(precopy=pre, **post)
    if post:
        names = ", ".join(sorted(k for k in knobs if KNOB[k].owner == "PostCopy"))
        raise ConfigError(f"{names} appl{'ies' if ',' in names else 'ies'} to post-copy only: give policy='postcopy' too")
    return pre


def simulate_kwargs(kw: Dict[str, Any], settings: Dict[str, Any]) -> Tuple[Dict[str, Any], float]:
    """:func:`dirtylog.simulate`'s arguments as :class:`~dirtylog.Migration`'s, and the give-up horizon.

    ``kw``: the arguments :class:`~dirtylog.Migration` takes too, plus
    ``give_up_after``; ``policy`` may be an object or a name ("precopy",
    "postcopy"). ``settings``: the flat ones (``bandwidth``, ``latency`` and the
    policy knobs of :data:`KNOBS`).
    """
    from .link import Link, as_link
    from .specs import parse_workload
    from .units import parse_time
    from .workloads import check_seed

    kw = dict(kw)
    settings = dict(settings)
    unknown = [k for k in settings if k not in ("bandwidth", "latency") and k not in KNOB]
    if unknown:
        raise _unknown(unknown, "argument")
    if isinstance(kw.get("workload"), str):  # the seed checked first: its error is the call's, not the spec's
        kw["workload"] = parse_workload(kw["workload"], seed=check_seed(kw.get("seed") or 0))
    if kw.get("memory") is None and kw.get("pages") is None:
        recorded = getattr(kw.get("workload"), "guest_pages", None)  # a recorded trace: its own size
        if recorded:
            kw["pages"] = recorded
        else:
            kw["memory"] = DEFAULTS["memory"]
    link_keys = [k for k in ("bandwidth", "latency") if k in settings]
    if kw.get("link") is not None:
        as_link(kw["link"], also="; or give bandwidth= (and latency=) in its place, e.g. bandwidth='10Gbit/s'")
    if link_keys:
        if kw.get("link") is not None:
            raise ConfigError(f"give either link=Link(...) or {' and '.join(link_keys)}, not both")
        kw["link"] = Link(settings.pop("bandwidth", DEFAULTS["bandwidth"]),
                          latency=settings.pop("latency", DEFAULTS["latency"]))
    elif kw.get("link") is None:
        kw["link"] = Link(DEFAULTS["bandwidth"], latency=DEFAULTS["latency"])
    kind = kw.get("policy")
    if isinstance(kind, str) or settings:
        if kind is not None and not isinstance(kind, str):
            raise ConfigError(f"give either policy=PreCopy(...)/PostCopy(...) or its settings "
                              f"({', '.join(sorted(settings))}), not both")
        kw["policy"] = make_policy(kind or DEFAULTS["policy"], settings)
    give_up = kw.pop("give_up_after", None)
    if give_up is None:
        memory = kw["memory"] if kw.get("memory") is not None else int(kw["pages"]) * _page_size(kw)
        limit = default_give_up(memory, kw["link"].bandwidth, _page_size(kw))
    else:
        limit = parse_time(give_up, name="give_up_after", allow_zero=False, allow_inf=True)
    return kw, limit


def _page_size(kw: Dict[str, Any]) -> int:
    from .units import parse_size

    return int(parse_size(kw.get("page_size") or DEFAULTS["page_size"], name="page_size", allow_zero=False))
