"""Closed-form predictions of pre-copy live migration.

These are the textbook models that dirtylog's simulations are compared with
(see the background notes, section 5):

* :func:`geometric`: Liu et al. (HPDC 2011).  The guest dirties memory at a
  constant rate ``D`` while the network sends at ``R``, so each round sends
  ``lambda = D / R`` times the previous one.
* :func:`saturating`: uniform random page writes; a page written twice in a
  round is sent once, so the pages dirtied during a round of length ``T``
  saturate at ``N * (1 - exp(-w * T / N))`` (:func:`distinct_pages`), ``N`` the
  pages the writes fall among (all of memory, or the region a workload writes:
  :meth:`dirtylog.workloads.Workload.written_pages`).  Real dirty curves grow even
  more slowly, so this model predicts fewer rounds than :func:`geometric`.
* :func:`cloudsim` and :func:`naive`: the round-free estimates used by
  datacenter simulators.

Every size, rate and duration accepts the numbers and strings of
:mod:`dirtylog.units` (``"8GiB"``, ``"10Gbit/s"``, ``"300ms"``).  The
migration stops (like QEMU) as soon as what remains can be sent within the
downtime limit, i.e. when the bytes of the current round are at most
``threshold = bandwidth * downtime_limit``; that last round is sent with the VM
paused.  QEMU has no iteration cap: ``max_rounds`` only bounds the prediction,
and a prediction that hits it reports ``converged=False`` with the figures of a
migration forced to stop after ``max_rounds`` rounds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

from ._validate import as_int
from .units import RateLike, SizeLike, TimeLike, parse_count_rate, parse_rate, parse_size, parse_time

__all__ = [
    "GeometricPrediction",
    "SaturatingPrediction",
    "geometric",
    "saturating",
    "distinct_pages",
    "cloudsim",
    "naive",
    "MAX_ROUNDS_LIMIT",
]

#: Largest ``max_rounds`` a model accepts (the predictions list every round).
MAX_ROUNDS_LIMIT = 100_000


@dataclass(frozen=True)
class GeometricPrediction:
    """Result of :func:`geometric`.

    Attributes:
        rounds: ``n``, the index of the last round (the one sent while the VM
            is paused); there are ``n + 1`` transfers, round 0 being the full
            copy of memory.  0 means stop-and-copy.
        round_bytes: bytes sent in round ``i``, ``V * lambda**i``, for
            ``i = 0..n``.
        total_bytes: ``V * (1 - lambda**(n+1)) / (1 - lambda)`` (``V * (n+1)``
            when ``lambda == 1``), the sum of ``round_bytes``.
        total_time: ``total_bytes / R + resume_time`` seconds.
        downtime: ``V * lambda**n / R + resume_time`` seconds.
        converged: False when the rule would need more than ``max_rounds``
            rounds (always when ``lambda >= 1`` and memory exceeds the threshold).
        ratio: ``lambda = D / R``.
        threshold_bytes: ``R * downtime_limit``.
    """

    rounds: int
    round_bytes: List[float]
    total_bytes: float
    total_time: float
    downtime: float
    converged: bool
    ratio: float
    threshold_bytes: float

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict (lists copied), e.g. for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class SaturatingPrediction:
    """Result of :func:`saturating`.

    Attributes:
        rounds: ``n``, the index of the last round (sent while the VM is paused).
        round_pages: expected pages sent in round ``i`` (``V(i)``, not
            necessarily whole), ``i = 0..n``; ``round_pages[0]`` is every page.
        round_bytes: ``V(i) * (page_size + header_bytes)``.
        round_times: ``T(i) = round_bytes[i] / bandwidth`` seconds.
        total_bytes: the sum of ``round_bytes``.
        total_time: the sum of ``round_times`` plus ``resume_time``.
        downtime: ``round_times[n] + resume_time``.
        converged: False when the stop rule was not met within ``max_rounds``.
        threshold_bytes: ``bandwidth * downtime_limit``.
    """

    rounds: int
    round_pages: List[float]
    round_bytes: List[float]
    round_times: List[float]
    total_bytes: float
    total_time: float
    downtime: float
    converged: bool
    threshold_bytes: float

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict (lists copied), e.g. for JSON."""
        return asdict(self)


def _pow(base: float, exponent: int) -> float:
    """``base ** exponent`` that gives inf instead of raising OverflowError."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


def _max_rounds(value: Any) -> int:
    return as_int("max_rounds", value, minimum=0, maximum=MAX_ROUNDS_LIMIT)


def _rounds_needed(memory: float, ratio: float, threshold: float) -> float:
    """Smallest ``n >= 0`` with ``memory * ratio**n <= threshold`` (``math.inf`` if none)."""
    if memory <= threshold:
        return 0
    if ratio == 0:
        return 1  # everything after round 0 is clean
    if ratio >= 1 or threshold <= 0:
        return math.inf
    estimate = math.ceil(math.log(threshold / memory) / math.log(ratio))
    if estimate > MAX_ROUNDS_LIMIT + 1:
        return math.inf
    # Correct the float logarithm so that the rule holds exactly for the figures reported.
    n = max(int(estimate), 1)
    while n > 1 and memory * _pow(ratio, n - 1) <= threshold:
        n -= 1
    while memory * _pow(ratio, n) > threshold:
        n += 1
    return n


def geometric(
    memory: SizeLike,
    bandwidth: RateLike,
    dirty_rate: RateLike,
    downtime_limit: TimeLike = "300ms",
    resume_time: TimeLike = 0.0,
    max_rounds: int = 30,
) -> GeometricPrediction:
    """Predict a pre-copy migration with the geometric model of Liu et al. (HPDC 2011).

    With memory ``V``, bandwidth ``R`` and dirty rate ``D``: ``lambda = D/R``,
    round ``i`` sends ``V * lambda**i``, the last round is
    ``n = ceil(log_lambda(V_th / V))`` with ``V_th = R * downtime_limit``
    (``n = 0`` when ``V <= V_th``; ``n = 1`` when ``lambda == 0``), and

    * ``total_bytes = V * (1 - lambda**(n+1)) / (1 - lambda)``,
    * ``downtime = V * lambda**n / R + resume_time``,
    * ``total_time = total_bytes / R + resume_time``.

    If ``lambda >= 1`` (the guest dirties memory at least as fast as it is
    sent) the migration never converges: the result has ``converged=False``
    and the figures of a migration stopped after ``max_rounds`` rounds.  The
    same happens when ``n`` would exceed ``max_rounds``.  As in the paper, the
    model does not cap a round at the size of memory, so with ``lambda > 1``
    its rounds grow past ``V`` (a real round never sends more than all of
    memory): read such a result only as "does not converge".

    Args:
        memory: guest memory ``V`` (bytes or a string like ``"8GiB"``), > 0.
        bandwidth: ``R`` (bytes/s or a string like ``"10Gbit/s"``), > 0.
        dirty_rate: ``D`` (bytes/s or a string like ``"100MiB/s"``), >= 0.
        downtime_limit: the largest pause allowed (seconds or ``"300ms"``;
            QEMU's default is 300 ms), >= 0; ``math.inf`` means stop-and-copy.
        resume_time: time to resume on the destination, added to the
            downtime and the total time, >= 0.
        max_rounds: the last round index the prediction may reach, 0..100000.
        written_pages: the pages the writes fall among, ``1..pages`` (None: ``pages``;
            :meth:`dirtylog.workloads.Workload.written_pages` gives a workload's).

    Raises:
        ConfigError: a value out of range or unreadable (the message names it).
        TypeError: a value of the wrong type.
    """
    v = float(parse_size(memory, name="memory", allow_zero=False))
    r = parse_rate(bandwidth, name="bandwidth", allow_zero=False)
    d = parse_rate(dirty_rate, name="dirty_rate")
    limit = parse_time(downtime_limit, name="downtime_limit", allow_inf=True)
    resume = parse_time(resume_time, name="resume_time")
    cap = _max_rounds(max_rounds)

    ratio = d / r
    threshold = r * limit
    needed = _rounds_needed(v, ratio, threshold)
    converged = needed <= cap
    n = int(needed) if converged else cap

    round_bytes = [v * _pow(ratio, i) for i in range(n + 1)]
    if ratio == 1:
        total = v * (n + 1)
    else:
        power = _pow(ratio, n + 1)
        total = math.inf if math.isinf(power) else v * (1 - power) / (1 - ratio)
    return GeometricPrediction(
        rounds=n,
        round_bytes=round_bytes,
        total_bytes=total,
        total_time=total / r + resume,
        downtime=round_bytes[n] / r + resume,
        converged=converged,
        ratio=ratio,
        threshold_bytes=threshold,
    )


def distinct_pages(writes: float, pages: float) -> float:
    """The expected distinct pages hit by ``writes`` writes, each to a page chosen uniformly among
    ``pages``: ``pages * (1 - exp(-writes / pages))`` (the continuous form of
    ``pages * (1 - (1 - 1/pages)**writes)``); the saturating model's dirty set."""
    return pages * -math.expm1(-writes / pages)


def saturating(
    pages: int,
    page_size: SizeLike,
    bandwidth: RateLike,
    write_rate: RateLike,
    downtime_limit: TimeLike = "300ms",
    header_bytes: SizeLike = 8,
    resume_time: TimeLike = 0.0,
    max_rounds: int = 30,
    written_pages: Optional[int] = None,
) -> SaturatingPrediction:
    """Predict a pre-copy migration under uniform random page writes.

    The guest makes ``write_rate`` page writes per second, each to a page
    chosen uniformly among ``N = written_pages`` (all ``pages`` by default; fewer
    for a guest that writes a region only).  Round 0 sends every page; a round
    sending ``V(i)`` pages takes ``T(i) = V(i) * (page_size + header_bytes) /
    bandwidth``, during which ``V(i+1) = N * (1 - exp(-write_rate * T(i) / N))``
    distinct pages are dirtied (:func:`distinct_pages`).  The migration stops at the first round with
    ``V(i) * (page_size + header_bytes) <= bandwidth * downtime_limit``, which
    is then sent while the VM is paused; if that does not happen by round
    ``max_rounds`` the result has ``converged=False`` and round ``max_rounds``
    is the paused one.

    Args:
        pages: guest pages ``N``, >= 1.
        page_size: bytes per page (``4096`` or ``"4KiB"``), > 0.
        bandwidth: bytes/s or a string like ``"10Gbit/s"``, > 0.
        write_rate: page writes per second: a number, ``"5000/s"``,
            ``"5000 pages/s"``, or a byte rate such as ``"1GiB/s"`` (divided by
            ``page_size``), >= 0.
        downtime_limit: the largest pause allowed (default 300 ms), >= 0.
        header_bytes: bytes sent with each page (QEMU sends an 8-byte
            header), >= 0.
        resume_time: added to the downtime and the total time, >= 0.
        max_rounds: the last round index the prediction may reach, 0..100000.
        written_pages: the pages the writes fall among, ``1..pages`` (None: ``pages``;
            :meth:`dirtylog.workloads.Workload.written_pages` gives a workload's).

    Raises:
        ConfigError: a value out of range or unreadable (the message names it).
        TypeError: a value of the wrong type.
    """
    n_pages = as_int("pages", pages, minimum=1)
    n_written = n_pages if written_pages is None else as_int("written_pages", written_pages, minimum=1,
                                                             maximum=n_pages)
    psize = parse_size(page_size, name="page_size", allow_zero=False)
    r = parse_rate(bandwidth, name="bandwidth", allow_zero=False)
    w = parse_count_rate(write_rate, psize, name="write_rate")
    limit = parse_time(downtime_limit, name="downtime_limit", allow_inf=True)
    header = parse_size(header_bytes, name="header_bytes")
    resume = parse_time(resume_time, name="resume_time")
    cap = _max_rounds(max_rounds)

    unit = float(psize + header)
    threshold = r * limit
    round_pages: List[float] = []
    round_times: List[float] = []
    converged = False
    remaining = float(n_pages)
    for i in range(cap + 1):
        round_pages.append(remaining)
        duration = remaining * unit / r
        round_times.append(duration)
        if remaining * unit <= threshold:
            converged = True
            break
        if i == cap:
            break
        remaining = distinct_pages(w * duration, n_written)
    round_bytes = [p * unit for p in round_pages]
    return SaturatingPrediction(
        rounds=len(round_pages) - 1,
        round_pages=round_pages,
        round_bytes=round_bytes,
        round_times=round_times,
        total_bytes=math.fsum(round_bytes),
        total_time=math.fsum(round_times) + resume,
        downtime=round_times[-1] + resume,
        converged=converged,
        threshold_bytes=threshold,
    )


def cloudsim(memory: SizeLike, bandwidth: RateLike) -> float:
    """CloudSim's migration time in seconds: ``memory / (bandwidth / 2)``.

    CloudSim charges a migration the time to send the RAM once over half the
    host's bandwidth (the other half is left for the VMs' own traffic), with
    no pre-copy rounds and no dirty pages.  Here ``memory`` is in bytes and
    ``bandwidth`` in bytes/s (unit strings accepted), both > 0.
    """
    v = parse_size(memory, name="memory", allow_zero=False)
    r = parse_rate(bandwidth, name="bandwidth", allow_zero=False)
    return v / (r / 2)


def naive(memory: SizeLike, bandwidth: RateLike) -> float:
    """The time in seconds to send memory once at full bandwidth: ``memory / bandwidth``.

    This is the duration of a cold (stop-and-copy) migration, and a lower bound
    on any pre-copy migration.  Both values must be > 0.
    """
    v = parse_size(memory, name="memory", allow_zero=False)
    r = parse_rate(bandwidth, name="bandwidth", allow_zero=False)
    return v / r
