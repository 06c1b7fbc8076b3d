"""What would make a migration converge: answers found by simulation.

:func:`advise` takes the arguments of :func:`dirtylog.simulate` and answers the
operator's third question ("if it does not converge, what would fix it?") by
running the engine again with one setting changed at a time:

* ``bandwidth``: the least link bandwidth (QEMU's max-bandwidth, if that is what
  limits the stream) that converges at this downtime limit;
* ``downtime_limit``: the least downtime limit that converges at this bandwidth;
* ``auto_converge``: whether QEMU's auto-converge converges it, and at which CPU
  throttle the guest ends (the slowdown it costs);
* ``dirty_limit``: whether a per-vCPU dirty limit (QEMU's dirty-limit, which needs
  the dirty ring) converges it, and the largest quota that does;
* ``postcopy``: what post-copy after one pre-copy pass costs instead: its downtime,
  the window during which the guest runs degraded on the destination, and its
  remote page faults.

Each answer comes with the total time and downtime the engine predicts at that
point. The searches are geometric bisections over the engine: each probe is a
full simulation with ``PreCopy(stop_when_stalled=True)`` (when the engine offers
it), so that a probe that cannot converge stops as soon as its pending set stops
shrinking instead of iterating for an hour of simulated time, and without the
per-page verification. Probe values are rounded up to three significant digits
(what the tables print), the search stops when the bracket is within
``tolerance`` (2 %) or after ``max_probes`` probes of one question, and every
answer records the nearest value tried that does *not* converge (``below``), so
that "just below" and "just above" are both simulated results.

Assumptions: convergence is taken to be monotone in each setting (more bandwidth,
a longer downtime limit or a smaller dirty quota never hurts); for stationary
workloads it is, up to the chunk-level noise of where a round ends. For the
downtime limit the first guess comes from the round history of the migration
itself (the trajectory does not depend on the limit until the switch-over: the
least limit is the smallest pending set seen at a sync, plus the device state,
over the bandwidth), then checked by simulation.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import ConfigError
from .link import Link
from .policy import PostCopy, PreCopy
from .units import format_dirty_rate, format_rate, format_size, format_time, parse_rate, parse_time

__all__ = ["Advice", "Answer", "Probe", "advise", "probe_give_up", "QUESTIONS"]

#: The questions, in the order they are answered and printed.
QUESTIONS = ("bandwidth", "downtime_limit", "auto_converge", "dirty_limit", "postcopy")

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Probe:
    """One simulation run by the search: the setting tried and what the engine predicts."""

    question: str
    value: float
    status: str
    converged: bool
    total_time: float
    downtime: float
    transferred: int
    reason: str
    wall_time: float

    @property
    def ok(self) -> bool:
        """Completed by a switch-over within the downtime limit (or by post-copy, for that question)."""
        return self.status == "completed" and (self.converged or self.question == "postcopy")


@dataclass(frozen=True)
class Answer:
    """The answer to one question.

    ``found`` is True when a setting that converges was found; ``value`` is it (the
    least bandwidth in bytes/s, the least downtime limit in s, the throttle in % at
    which auto-converge ends, the largest per-vCPU dirty quota in bytes/s, a whole
    number of MiB/s as QEMU's vcpu-dirty-limit takes it, the post-copy degraded window in s) and ``below`` the nearest setting simulated that
    does not converge (None if none was needed: e.g. the migration already converges
    at the lowest setting searched). ``total_time``, ``downtime`` and
    ``transferred`` are the engine's prediction at ``value``. ``details`` holds the
    question's own figures (guest slowdown, remote faults ...). ``note`` says it in
    one sentence.
    """

    question: str
    found: bool
    value: Optional[float]
    below: Optional[float]
    total_time: Optional[float]
    downtime: Optional[float]
    transferred: Optional[int]
    note: str
    probes: int
    details: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Advice:
    """What would make the migration converge (see :mod:`dirtylog.advice`).

    ``converges`` tells whether the migration converges as given; the answers are
    ``bandwidth``, ``downtime_limit``, ``auto_converge``, ``dirty_limit`` and
    ``postcopy`` (:class:`Answer`, None for a question not asked). ``probes`` is
    the number of simulations run and ``wall_time`` the seconds they took.
    """

    converges: bool
    memory: int
    bandwidth_given: float
    downtime_limit_given: float
    bandwidth: Optional[Answer] = None
    downtime_limit: Optional[Answer] = None
    auto_converge: Optional[Answer] = None
    dirty_limit: Optional[Answer] = None
    postcopy: Optional[Answer] = None
    probes: int = 0
    wall_time: float = 0.0
    probe_log: List[Probe] = field(default_factory=list, repr=False)

    def answers(self) -> List[Answer]:
        """The answers given, in the order of :data:`QUESTIONS`."""
        out = [getattr(self, q) for q in QUESTIONS]
        return [a for a in out if a is not None]

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["probe_log"] = [dataclasses.asdict(p) for p in self.probe_log]
        return d

    def columns(self) -> Dict[str, Optional[float]]:
        """The answers as flat numbers, for sweep tables and CSV (None: not found or not asked).

        ``advice_bandwidth`` (bytes/s), ``advice_downtime_limit`` (s),
        ``advice_auto_converge_throttle`` (%), ``advice_dirty_limit`` (bytes/s per
        vCPU), ``advice_postcopy_degraded`` (s).
        """
        def v(a: Optional[Answer]) -> Optional[float]:
            return a.value if a is not None and a.found else None

        return {"advice_bandwidth": v(self.bandwidth), "advice_downtime_limit": v(self.downtime_limit),
                "advice_auto_converge_throttle": v(self.auto_converge), "advice_dirty_limit": v(self.dirty_limit),
                "advice_postcopy_degraded": v(self.postcopy)}

    def table_rows(self) -> Tuple[List[str], List[List[str]]]:
        """Headers and cells of the advice table (what the command line prints); notes apart."""
        head = ["what would converge", "setting", "total time", "downtime"]
        rows = []
        for a in self.answers():
            rows.append([_TITLES[a.question], _setting_text(a),
                         format_time(a.total_time) if a.found and a.total_time is not None else "-",
                         format_time(a.downtime) if a.found and a.downtime is not None else "-"])
        return head, rows

    def notes(self) -> List[Tuple[str, str]]:
        """(title, note) of each answer: what the setting means, and the nearest one that fails."""
        return [(_TITLES[a.question], a.note) for a in self.answers()]

    def lines(self, width: Optional[int] = None) -> List[Any]:
        """The advice as :mod:`dirtylog.render` lines fitted to ``width`` (what the command line
        prints): the table of answers, a note on each, and what the search cost."""
        from .render import Column, table, wrap

        head, rows = self.table_rows()
        cols = [Column(h, "left" if i < 2 else "right", priority=0 if i < 2 else 1) for i, h in enumerate(head)]
        title = "What would make it converge" if not self.converges else "How far it could go (it converges)"
        out = table(cols, [(r, ["", "good" if a.found else "bad", "", ""]) for a, r in zip(self.answers(), rows)],
                    width, title=title)
        out.append([])
        for t, n in self.notes():
            out += wrap("", [(f"{t}:", "bold"), (f" {n}", "")], -1, width)
        out += wrap("", [(f"Found by {self.probes} simulations in {self.wall_time:.1f} s: bisections to the printed "
                          "precision, each probe stopped as soon as it can no longer converge.", "dim")], -1, width)
        return out

    def __str__(self) -> str:
        from .render import output_width, plain

        return plain(self.lines(output_width()))


_TITLES = {
    "bandwidth": "least bandwidth",
    "downtime_limit": "least downtime limit",
    "auto_converge": "auto-converge",
    "dirty_limit": "dirty limit (per vCPU)",
    "postcopy": "post-copy instead",
}


def _setting_text(a: Answer) -> str:
    if not a.found or a.value is None:
        return "no" if a.question in ("auto_converge", "dirty_limit") else "not found"
    if a.question == "bandwidth":
        return format_rate(a.value, bits=True)
    if a.question == "downtime_limit":
        return format_time(a.value)
    if a.question == "auto_converge":
        return f"yes, ends at {a.value:.0f} % throttle"
    if a.question == "dirty_limit":
        return f"yes, quota {format_dirty_rate(a.value, whole=True)}"
    return f"degraded {format_time(a.value)}"


# ----------------------------------------------------------------------------------- rounding


def _snap(x: float, scale: float, up: bool, whole: bool = False) -> float:
    """x rounded (up or down) to three significant digits of ``x * scale`` (the printed precision);
    ``whole``: then to a whole number of that unit, the only values the setting takes."""
    y = x * scale
    if not (y > 0) or math.isinf(y):
        return x
    e = 10.0 ** (math.floor(math.log10(y)) - 2)
    q = y / e
    n = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
    y = max(n, 1) * e
    if whole:
        y = max(math.ceil(y - 1e-9) if up else math.floor(y + 1e-9), 1)
    return y / scale


# ----------------------------------------------------------------------------------- the search


class _Searcher:
    """Runs the probes of one advice computation (counts them, reports progress)."""

    def __init__(self, kw: Dict[str, Any], progress: Optional[ProgressFn], give_up_after: Optional[float],
                 patience: float, memory: int) -> None:
        self.kw = kw
        self.progress = progress
        self.give_up_after = give_up_after
        self.patience = patience
        self.memory = memory
        self.log: List[Probe] = []
        self.question = ""
        self.index = 0

    def give_up(self, kw: Dict[str, Any], question: str = "") -> float:
        """How long a probe may take (simulated): see :func:`probe_give_up`."""
        if self.give_up_after is not None:
            return self.give_up_after
        # A throttle steps once per two periods (syncs, when a round is long): give it time to reach
        # its end; the early verdict stops the probe once it has and the migration still stalls.
        slow = question in ("auto_converge", "dirty_limit")
        return probe_give_up(self.memory, _link_of(kw), _policy_of(kw), self.patience * (4 if slow else 1))

    def run(self, question: str, value: float, label: str, **over: Any) -> Tuple[Probe, Any]:
        from .migration import simulate

        if self.progress is not None:
            self.progress(self.index, len(QUESTIONS), f"{_TITLES[question]}: trying {label}")
        kw = dict(self.kw)
        kw.update(over)
        kw["verify"] = False
        kw["policy"] = _cheap(kw.get("policy"))
        kw["give_up_after"] = self.give_up(kw, question)
        t0 = time.perf_counter()
        r = simulate(**kw)
        p = Probe(question, float(value), r.status, bool(r.converged), r.total_time,
                  r.downtime, r.transferred, r.reason, time.perf_counter() - t0)
        self.log.append(p)
        return p, r


def probe_give_up(memory: Union[int, str], link: Link, policy: Union[PreCopy, PostCopy, None] = None,
                  patience: float = 5.0) -> float:
    """How long (simulated seconds) an advice probe may run before it counts as not converging.

    ``patience`` times the time to send memory once at the live bandwidth, and at
    least a minute (auto-converge and dirty-limit need a few periods to act). The
    early verdict stops most probes that cannot converge long before; this bounds
    the others: near the boundary the pending set can level off just above the
    threshold, where QEMU's loop converges only when a fluctuation happens to dip
    below it, which may take hours. The advice counts such a migration as not
    converging: its answers are settings that converge within this time.
    """
    from .units import parse_size

    mem = parse_size(memory, name="memory", allow_zero=False)
    pol = policy.precopy if isinstance(policy, PostCopy) else (policy if policy is not None else PreCopy())
    bw = pol.live_bandwidth(link.bandwidth)
    once = mem * (4096 + link.header_bytes) / 4096 / bw
    return max(60.0, float(patience) * once)


def _cheap(policy: Any) -> Any:
    """The policy with the early verdict on, whatever the caller chose for the migration itself."""
    if policy is None:
        return PreCopy(stop_when_stalled=True)
    if isinstance(policy, PostCopy):
        return dataclasses.replace(policy, precopy=dataclasses.replace(policy.precopy, stop_when_stalled=True))
    return dataclasses.replace(policy, stop_when_stalled=True)


def _bisect(
    probe: Callable[[float], Tuple[Probe, Any]],
    helps_up: bool,
    lo_limit: float,
    hi_limit: float,
    scale: float,
    tolerance: float,
    max_probes: int,
    known: Sequence[Tuple[float, Probe, Any]] = (),
    guess: Optional[float] = None,
    whole: bool = False,
) -> Tuple[Optional[Tuple[float, Probe, Any]], Optional[float], int]:
    """Find the boundary between settings that converge and settings that do not.

    ``helps_up``: larger values help (bandwidth, downtime limit); else smaller ones
    do (a dirty quota). ``known``: settings already simulated (value, probe,
    report); ``guess``: where the boundary probably is (a model's estimate): it is
    tried first, then the printed value just past it, which closes the bracket at
    once when the guess was right. Returns ``(value, probe, report)`` of the
    converging setting nearest the boundary (or None), the nearest failing setting
    (or None) and the number of probes run. Values are snapped to the printed
    precision (``scale``: the unit factor); the bracket closes at ``tolerance`` or
    after ``max_probes``; the range is ``[lo_limit, hi_limit]``. ``whole``: the setting takes only
    whole numbers of the unit (see :func:`_snap`).
    """
    good: Optional[Tuple[float, Probe, Any]] = None
    bad: Optional[float] = None
    used = 0

    def better(x: float, than: float) -> bool:  # x helps more than `than`
        return x > than if helps_up else x < than

    def add(x: float, p: Probe, r: Any) -> None:
        nonlocal good, bad
        if p.ok:
            if good is None or better(good[0], x):
                good = (x, p, r)
        elif bad is None or better(x, bad):
            bad = x

    for x, p, r in known:
        add(x, p, r)

    def snap(x: float, toward_help: bool = True) -> float:  # a printed value
        return _snap(min(max(x, lo_limit), hi_limit), scale, up=(helps_up == toward_help), whole=whole)

    def inside(x: float) -> bool:  # strictly inside the bracket (and the range)
        if not (lo_limit * (1 - 1e-9) <= x <= hi_limit * (1 + 1e-9)):
            return False
        if good is not None and not better(good[0], x):
            return False
        return bad is None or better(x, bad)

    def record(x: float) -> bool:
        nonlocal used
        p, r = probe(x)
        used += 1
        add(x, p, r)
        return p.ok

    factor = 4.0  # expansion step; 2 around a guess (the boundary is likely near it)
    if guess is not None and math.isfinite(guess) and guess > 0:
        factor = 2.0
        g = snap(guess)
        if inside(g) and used < max_probes and record(g) and used < max_probes:
            below = snap(g / (1.0 + tolerance) if helps_up else g * (1.0 + tolerance), toward_help=False)
            if inside(below):
                record(below)
    if good is None and bad is None and used < max_probes:
        record(snap(hi_limit if helps_up else lo_limit))  # the most helpful setting of the range
    # Expand until the boundary is bracketed.
    while used < max_probes and (good is None or bad is None):
        if good is None:
            assert bad is not None
            x = snap(bad * factor if helps_up else bad / factor)
        else:
            x = snap(good[0] / factor if helps_up else good[0] * factor, toward_help=False)
        if not inside(x):
            break  # at an end of the range
        record(x)
    # Bisect geometrically.
    while used < max_probes and good is not None and bad is not None:
        lo, hi = (bad, good[0]) if helps_up else (good[0], bad)
        if hi <= lo * (1.0 + tolerance):
            break
        mid = math.sqrt(lo * hi)
        x = snap(mid)
        if not inside(x):
            x = snap(mid, toward_help=False)
            if not inside(x):
                break  # the printed precision cannot split the bracket further
        record(x)
    return good, bad, used


def _dirty_curve(kw: Dict[str, Any], report: Any, windows: Sequence[float]) -> Optional[Callable[[float], float]]:
    """The workload's dirty curve (distinct pages per window from a clean state), for first guesses."""
    from .measure import dirty_curve

    wl = kw.get("workload")
    if wl is None:
        return lambda w: 0.0
    ws = sorted({float(w) for w in windows if w > 0})
    try:
        c = dirty_curve(wl, report.pages * report.page_size, ws, vcpus=report.vcpus, page_size=report.page_size)
    except (ConfigError, TypeError, ValueError, MemoryError):
        return None
    xs = [float(x) for x in c.windows]
    ys = [float(y) for y in c.dirty_pages]

    def at(w: float) -> float:  # log-log interpolation between the measured windows
        if w <= xs[0]:
            return ys[0] * w / xs[0]
        for i in range(1, len(xs)):
            if w <= xs[i]:
                a, b = xs[i - 1], xs[i]
                ya, yb = max(ys[i - 1], 1e-9), max(ys[i], 1e-9)
                f = math.log(w / a) / math.log(b / a)
                return math.exp(math.log(ya) + f * math.log(yb / ya))
        return ys[-1]

    return at


def _grid(lo: float, hi: float, per_decade: int = 8) -> List[float]:
    n = max(2, int(math.ceil(math.log10(hi / lo) * per_decade)) + 1)
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


# ----------------------------------------------------------------------------------- questions


def _policy_of(kw: Dict[str, Any]) -> PreCopy:
    pol = kw.get("policy")
    if isinstance(pol, PostCopy):
        return pol.precopy
    return pol if isinstance(pol, PreCopy) else PreCopy()


def _link_of(kw: Dict[str, Any]) -> Link:
    link = kw.get("link")
    return link if isinstance(link, Link) else Link()


def _answer_from(question: str, good: Optional[Tuple[float, Probe, Any]], bad: Optional[float], used: int,
                 note: str, details: Optional[Dict[str, Any]] = None) -> Answer:
    if good is None:
        return Answer(question, False, None, bad, None, None, None, note, used, details or {})
    v, p, _ = good
    return Answer(question, True, v, bad, p.total_time, p.downtime, p.transferred, note, used, details or {})


def _switch_bw(pol: PreCopy, link: Link) -> float:
    """The bandwidth of QEMU's switch-over test (threshold = this x downtime limit)."""
    return pol.switchover_bandwidth if pol.switchover_bandwidth is not None else pol.live_bandwidth(link.bandwidth)


def _ask_bandwidth(s: _Searcher, base: Any, tolerance: float, max_probes: int, max_bandwidth: float,
                   curve: Optional[Callable[[float], float]]) -> Answer:
    link = _link_of(s.kw)
    pol = _policy_of(s.kw)
    # The knob: QEMU's max-bandwidth when it is what caps the stream, else the link itself.
    capped = pol.max_bandwidth is not None and pol.max_bandwidth < pol.effective_bandwidth(link.bandwidth)
    knob = "max-bandwidth" if capped else "link bandwidth"
    b0 = pol.live_bandwidth(link.bandwidth)
    dl = pol.downtime_limit
    guess = None
    if curve is not None and dl > 0 and pol.switchover_bandwidth is None:
        # what the guest dirties within one downtime limit must be sendable within it
        guess = (curve(dl) * (base.page_size + link.header_bytes) + base.device_bytes) / dl

    def probe(bw: float) -> Tuple[Probe, Any]:
        if capped:
            return s.run("bandwidth", bw, f"max-bandwidth {format_rate(bw, bits=True)}",
                         link=dataclasses.replace(link, bandwidth=max(link.bandwidth, bw)),
                         policy=_with_precopy(s.kw.get("policy"), max_bandwidth=bw))
        return s.run("bandwidth", bw, format_rate(bw, bits=True), link=dataclasses.replace(link, bandwidth=bw))

    good, bad, used = _bisect(probe, True, lo_limit=max(b0 / 1024, 1e5), hi_limit=max(max_bandwidth, b0),
                              scale=8.0, tolerance=tolerance, max_probes=max_probes,
                              known=[(b0, _probe_of(base, "bandwidth", b0), base)], guess=guess)
    details = {"knob": knob}
    if good is None:
        note = (f"does not converge even with a {knob} of {format_rate(bad or b0, bits=True)}"
                + (" (the multifd channels cap the stream)" if pol.channel_bandwidth is not None else ""))
        return _answer_from("bandwidth", None, bad, used, note, details)
    v = good[0]
    if bad is None:
        note = f"{knob}: converges down to {format_rate(v, bits=True)} (the lowest tried)"
    else:
        note = (f"{knob} {v / b0:.3g}x the given {format_rate(b0, bits=True)}; "
                f"{format_rate(bad, bits=True)} does not converge")
    if pol.channel_bandwidth is not None and pol.effective_bandwidth(v) < v:
        note += f"; the multifd channels cap it at {format_rate(pol.effective_bandwidth(v), bits=True)}"
    return _answer_from("bandwidth", good, bad, used, note, details)


def _probe_of(report: Any, question: str, value: float) -> Probe:
    return Probe(question, float(value), report.status, bool(report.converged), report.total_time, report.downtime,
                 report.transferred, report.reason, 0.0)


def _least_window(curve: Callable[[float], float], need: Callable[[float, float], bool], lo: float,
                  hi: float) -> Optional[float]:
    """The smallest window w in [lo, hi] (on a grid, then refined) for which need(w, D(w)) holds."""
    grid = _grid(lo, hi, 16)
    prev = None
    for w in grid:
        if need(w, curve(w)):
            if prev is None:
                return w
            a, b = prev, w
            for _ in range(20):
                m = math.sqrt(a * b)
                if need(m, curve(m)):
                    b = m
                else:
                    a = m
            return b
        prev = w
    return None


def _ask_downtime(s: _Searcher, base: Any, converges: bool, tolerance: float, max_probes: int,
                  curve: Optional[Callable[[float], float]]) -> Answer:
    pol = _policy_of(s.kw)
    link = _link_of(s.kw)
    d0 = pol.downtime_limit
    bw = _switch_bw(pol, link)
    pb = base.page_size + link.header_bytes
    guess = None
    pending = [r.expected_downtime for r in base.rounds if r.synced]
    if pending and not converges:
        # The trajectory does not depend on the limit until the switch-over: the least limit
        # that switches over is the smallest pending set seen at a sync (plus the device state)
        # over the bandwidth.
        guess = min(pending) + base.device_bytes / bw
    elif curve is not None:
        guess = _least_window(curve, lambda w, d: d * pb + base.device_bytes <= bw * w, 1e-3, max(d0, 1e-3))

    def probe(dl: float) -> Tuple[Probe, Any]:
        return s.run("downtime_limit", dl, format_time(dl), policy=_with_precopy(s.kw.get("policy"), downtime_limit=dl))

    good, bad, used = _bisect(probe, True, lo_limit=1e-3, hi_limit=3600.0, scale=1.0, tolerance=tolerance,
                              max_probes=max_probes, guess=guess,
                              known=[(d0, _probe_of(base, "downtime_limit", d0), base)])
    if good is None:
        return _answer_from("downtime_limit", None, bad, used,
                            f"does not converge with any downtime limit up to {format_time(bad or d0)}")
    v = good[0]
    note = (f"{v / d0:.3g}x the given {format_time(d0)}; " if d0 > 0 else "") + \
        (f"{format_time(bad)} does not converge" if bad is not None else "the lowest tried")
    return _answer_from("downtime_limit", good, bad, used, note)


def _with_precopy(policy: Any, **over: Any) -> Any:
    if isinstance(policy, PostCopy):
        return dataclasses.replace(policy, precopy=dataclasses.replace(policy.precopy, **over))
    return dataclasses.replace(policy if isinstance(policy, PreCopy) else PreCopy(), **over)


def _ask_auto_converge(s: _Searcher, base: Any) -> Answer:
    pol = _policy_of(s.kw)
    over = dict(auto_converge=True, dirty_limit=False)
    p, r = s.run("auto_converge", pol.max_cpu_throttle, "auto-converge", policy=_with_precopy(pol, **over))
    vcpu_time = r.total_time * max(r.vcpus, 1)
    slowdown = 100.0 * r.guest_throttled / vcpu_time if vcpu_time > 0 else 0.0
    details = {"throttle": r.cpu_throttle_percentage, "guest_throttled": r.guest_throttled,
               "slowdown": slowdown, "max_cpu_throttle": pol.max_cpu_throttle}
    if p.ok:
        note = (f"throttles the vCPUs up to {r.cpu_throttle_percentage} %: {format_time(r.guest_throttled)} of vCPU "
                f"time taken from the guest ({slowdown:.0f} % over the migration)")
        return Answer("auto_converge", True, float(r.cpu_throttle_percentage), None, p.total_time, p.downtime,
                      p.transferred, note, 1, details)
    if r.cpu_throttle_percentage < pol.max_cpu_throttle and "not converged after" in r.reason:
        note = (f"no switch-over within {format_time(r.total_time)} (the throttle had reached "
                f"{r.cpu_throttle_percentage} % of at most {pol.max_cpu_throttle} %)")
    else:
        note = f"not even at {r.cpu_throttle_percentage} % throttle (max {pol.max_cpu_throttle} %)"
    return Answer("auto_converge", False, None, float(r.cpu_throttle_percentage), None, None, None, note, 1, details)


def _ask_dirty_limit(s: _Searcher, base: Any, tolerance: float, max_probes: int, write_rate: Optional[float],
                     curve: Optional[Callable[[float], float]]) -> Answer:
    pol = _policy_of(s.kw)
    link = _link_of(s.kw)
    psize = int(base.page_size)
    pb = psize + link.header_bytes
    vcpus = max(int(base.vcpus), 1)
    bw = _switch_bw(pol, link)
    dl = pol.downtime_limit
    period = pol.dirty_limit_period
    # A quota above what a vCPU dirties does nothing: search below the per-vCPU write rate.
    q_min = float(2**20)  # QEMU's default (and smallest useful) vcpu-dirty-limit: 1 "MB/s", in MiB (>> 20)
    top = max((write_rate or 0.0) * psize / vcpus, q_min * 4)
    guess = None
    if curve is not None and dl > 0:
        # Throttled to a share f of its time, the guest dirties D(f t) in t: converging needs
        # D(f dl) pages sendable within dl; the quota is then what it dirties per period.
        def fits(w: float) -> bool:
            return curve(w) * pb + base.device_bytes <= bw * dl

        if fits(dl):
            guess = top
        elif fits(1e-6 * dl):
            a, b = 1e-6 * dl, dl  # fits(a), not fits(b): the largest window that fits
            for _ in range(40):
                m = math.sqrt(a * b)
                a, b = (m, b) if fits(m) else (a, m)
            guess = curve(a / dl * period) * psize / period / vcpus

    def probe(q: float) -> Tuple[Probe, Any]:
        return s.run("dirty_limit", q, f"{format_dirty_rate(q, whole=True)} per vCPU", tracker="ring",
                     policy=_with_precopy(pol, dirty_limit=True, auto_converge=False, vcpu_dirty_limit=q))

    # QEMU's vcpu-dirty-limit (the migration parameter, and set-vcpu-dirty-limit's dirty-rate) is a whole
    # number (uint64) of "MB/s", counted in MiB: a quota of 74.7 MiB/s could not be set
    good, bad, used = _bisect(probe, False, lo_limit=q_min, hi_limit=top, scale=1.0 / 2**20, tolerance=tolerance,
                              max_probes=max_probes, guess=guess, whole=True)
    if good is None:
        return _answer_from("dirty_limit", None, bad, used,
                            f"not even at {format_dirty_rate(bad or q_min, whole=True)} per vCPU (with the dirty ring tracker)")
    v, _, r = good
    note = f"quota {format_dirty_rate(v, whole=True)} per vCPU (tracker 'ring')"
    note += f"; {format_dirty_rate(bad, whole=True)} does not converge" if bad is not None else "; any quota up to the vCPUs' rate"
    details = {"tracker": "ring", "guest_lost": r.guest_lost, "rounds": r.precopy_rounds}
    return _answer_from("dirty_limit", good, bad, used, note, details)


def _ask_postcopy(s: _Searcher, base: Any) -> Answer:
    pol = _policy_of(s.kw)
    p, r = s.run("postcopy", 1, "post-copy after round 0", policy=PostCopy(after_rounds=1, precopy=pol))
    details = {"postcopy_requests": r.postcopy_requests, "postcopy_stall_time": r.postcopy_stall_time,
               "degraded_window": r.degraded_window, "postcopy_bytes": r.postcopy_bytes}
    if r.status != "completed":
        return Answer("postcopy", False, None, None, None, None, None, f"post-copy did not complete: {r.reason}", 1,
                      details)
    note = (f"{r.postcopy_requests:,} remote faults, {format_time(r.postcopy_stall_time)} of vCPU time stalled, "
            f"{format_size(r.postcopy_bytes)} after the switch-over; the VM is lost if the link fails meanwhile")
    return Answer("postcopy", True, r.degraded_window, None, p.total_time, p.downtime, p.transferred, note, 1, details)


# ----------------------------------------------------------------------------------- entry point


def advise(
    memory: Union[int, str, None] = None,
    workload: Any = None,
    link: Optional[Link] = None,
    policy: Optional[Union[PreCopy, PostCopy]] = None,
    tracker: Union[str, Dict[str, Any]] = "pml",
    vcpus: int = 1,
    page_size: Union[int, str] = 4096,
    huge_pages: Optional[str] = None,
    zero_pages: float = 0.0,
    devices: Optional[Sequence[Any]] = None,
    seed: int = 0,
    pages: Optional[int] = None,
    costs: Optional[Any] = None,
    faults: Sequence[Any] = (),
    give_up_after: Union[float, str, None] = None,
    *,
    report: Optional[Any] = None,
    questions: Sequence[str] = QUESTIONS,
    tolerance: float = 0.02,
    max_probes: int = 12,
    max_bandwidth: Union[float, str] = "1Tbit/s",
    patience: float = 5.0,
    progress: Optional[ProgressFn] = None,
) -> Advice:
    """What would make this migration converge (see :mod:`dirtylog.advice`).

    Takes the arguments of :func:`dirtylog.simulate` (``verify`` is off in the
    probes). ``report``: the migration's own report, if already simulated (saves a
    probe; it must come from the same arguments). ``questions``: one of, or a subset of
    :data:`QUESTIONS`. ``tolerance``: the relative width at which a bisection
    stops; ``max_probes``: probes per question at most; ``max_bandwidth``: the
    highest bandwidth tried. ``progress(done, total, text)`` is called before each
    probe (done: questions answered so far).

    A probe converges if it switches over within ``give_up_after`` of simulated
    time; by default (None) that is :func:`probe_give_up`: ``patience`` (5) times
    the time to send memory once at the probe's bandwidth, at least a minute (four
    times that for auto-converge and dirty-limit, whose throttles step slowly). The
    early verdict stops most failing probes long before; the others (near the
    boundary, or with a workload that is not stationary) run to that limit.
    """
    from .migration import simulate

    if isinstance(questions, str):  # one question: "bandwidth" is not the questions "b", "a", "n", ...
        questions = (questions,)
    for q in questions:
        if q not in QUESTIONS:
            raise ConfigError(f"unknown advice question {q!r}; allowed: {', '.join(QUESTIONS)}")
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        raise TypeError(f"tolerance must be a number, got {tolerance!r}") from None
    if not 0.001 <= tol <= 1.0:
        raise ConfigError(f"tolerance must be between 0.001 and 1 (a relative bracket width), got {tolerance!r}")
    if isinstance(max_probes, bool) or not isinstance(max_probes, int) or max_probes < 2:
        raise ConfigError(f"max_probes must be a whole number >= 2, got {max_probes!r}")
    max_bw = parse_rate(max_bandwidth, name="max_bandwidth", allow_zero=False)
    kw: Dict[str, Any] = dict(memory=memory, workload=workload, link=link if link is not None else Link(),
                              policy=policy if policy is not None else PreCopy(), tracker=tracker, vcpus=vcpus,
                              page_size=page_size, huge_pages=huge_pages, zero_pages=zero_pages, devices=devices,
                              seed=seed, pages=pages, costs=costs, faults=faults)
    from .units import parse_size

    mem = parse_size(memory, name="memory", allow_zero=False) if memory is not None else \
        int(pages or 0) * parse_size(page_size, name="page_size")
    fixed = None if give_up_after is None else parse_time(give_up_after, name="give_up_after", allow_zero=False,
                                                          allow_inf=True)
    try:
        pat = float(patience)
    except (TypeError, ValueError):
        raise TypeError(f"patience must be a number, got {patience!r}") from None
    if not pat >= 1.0 or math.isinf(pat):
        raise ConfigError(f"patience must be a finite number >= 1 (times the time to send memory once), got {patience!r}")
    t0 = time.perf_counter()
    s = _Searcher(kw, progress, fixed, pat, int(mem))
    if report is None:
        s.question = "given"
        if progress is not None:
            progress(0, len(QUESTIONS), "the migration as given")
        kwr = dict(kw, verify=False, policy=_cheap(kw["policy"]), give_up_after=s.give_up(kw))
        report = simulate(**kwr)
    converges = report.status == "completed" and bool(report.converged)
    pol = _policy_of(kw)
    out: Dict[str, Answer] = {}
    rate = None
    wl = workload
    if wl is not None and hasattr(wl, "write_rate"):
        try:
            rate = float(wl.write_rate(pages=report.pages, page_size=report.page_size))
        except (TypeError, ConfigError):
            rate = None
    # The dirty curve up to a few times the time to send memory once: the searches' first guesses.
    link0 = _link_of(kw)
    span = min(60.0, max(1.0, 4.0 * report.memory / pol.live_bandwidth(link0.bandwidth)))
    wins = _grid(min(1e-3, pol.downtime_limit / 4 or 1e-3), span, 8) + [pol.downtime_limit, pol.dirty_limit_period]
    curve = _dirty_curve(kw, report, wins)
    for i, q in enumerate(QUESTIONS):
        if q not in questions:
            continue
        s.index = i
        if q == "bandwidth":
            out[q] = _ask_bandwidth(s, report, tol, max_probes, max_bw, curve)
        elif q == "downtime_limit":
            out[q] = _ask_downtime(s, report, converges, tol, max_probes, curve)
        elif q == "auto_converge":
            if pol.auto_converge and not converges:
                out[q] = Answer(q, False, None, float(report.cpu_throttle_percentage), None, None, None,
                                f"already on: not converged at {report.cpu_throttle_percentage} % throttle", 0,
                                {"throttle": report.cpu_throttle_percentage})
            else:
                out[q] = _ask_auto_converge(s, report)
        elif q == "dirty_limit":
            out[q] = _ask_dirty_limit(s, report, tol, max_probes, rate, curve)
        elif q == "postcopy":
            out[q] = _ask_postcopy(s, report)
    if progress is not None:
        progress(len(QUESTIONS), len(QUESTIONS), "done")
    return Advice(converges=converges, memory=int(report.memory), bandwidth_given=float(_link_of(kw).bandwidth),
                  downtime_limit_given=float(pol.downtime_limit), probes=len(s.log),
                  wall_time=time.perf_counter() - t0, probe_log=list(s.log), **out)
