"""The throttles QEMU puts on a guest that dirties memory faster than it can be sent.

Three small controllers, each owning its own state, driven by
:class:`~dirtylog.migration.Migration` at QEMU's points:

- :class:`DirtyRatePeriod`: the dirty-rate period of ``migration_bitmap_sync``
  (QEMU's migration/ram.c). Every sync adds the pages it newly set in the migration
  bitmap; at a sync more than 1000 ms (QEMU's millisecond clock) after the period
  began, the period closes: if the bytes dirtied in it exceed
  ``throttle_trigger_threshold`` % of the bytes sent in it, a counter goes up, and
  when it reaches 2 the throttle steps (``migration_trigger_throttle``) and the
  counter restarts. More frequent syncs therefore change when the throttle steps,
  as in QEMU.
- :class:`AutoConverge`: QEMU's ``mig_throttle_guest_down``: the first step sets
  ``cpu_throttle_initial`` %, each later one adds ``cpu_throttle_increment`` %
  (or, with ``cpu_throttle_tailslow``, a step sized by how far the dirty rate is
  from the threshold), at most ``max_cpu_throttle`` %. A throttled guest runs
  (100 - throttle) % of the time (QEMU's cpu-throttle sleeps the vCPUs).
- :class:`DirtyLimit`: QEMU's dirty-limit (system/dirtylimit.c, 8.1+): once the
  trigger fires it is engaged for good; every ``dirty_limit_period`` it reads each
  vCPU's dirty rate from its dirty ring and, unless the rate is within 25 MiB/s of
  ``vcpu_dirty_limit`` (``dirtylimit_done``), steps that vCPU's sleep per ring-full
  exit as QEMU's ``dirtylimit_set_throttle`` does. It also keeps what QEMU reports as
  ``dirty-limit-ring-full-time`` (how long a vCPU takes to fill its dirty ring at
  the highest per-vCPU dirty rate seen) and ``dirty-limit-throttle-time-per-round``
  (the longest sleep a vCPU takes each time its ring fills).

Both throttles make a vCPU sleep outside ``KVM_RUN``: auto-converge's
``cpu_throttle_thread`` (system/cpu-throttle.c) sleeps on the vCPU thread for
``p / (1 - p)`` x 10 ms after each 10 ms of running, every vCPU at the same time (one
timer queues the sleep on them all); dirty-limit's ``dirtylimit_vcpu_execute`` sleeps
``throttle_us_per_full`` after each dirty-ring-full exit, each vCPU on its own. Their
:meth:`~AutoConverge.sleeps` feed two things (:func:`kick_wait`): a kick finds a
sleeping vCPU outside guest mode, where it costs the guest nothing; and in ring mode,
where QEMU's ``kvm_cpu_synchronize_kick_all`` is a ``run_on_cpu`` that waits until each
vCPU has been back in its run loop, the sync waits for the sleeps to end.

Simplifications: a vCPU throttle is a share of the vCPU's time (the C engine
scales that vCPU's writes): a vCPU that sleeps ``throttle_us_per_full`` after each
ring fill, which takes it ``fill`` seconds of running (the ring's soft limit at the
rate it dirtied pages while running in the last period), sleeps ``T / (T + fill)`` of
its time. QEMU's integer MiB/s and microseconds are kept as real numbers. A kick's cost
and wait are their expected values over where in its run-and-sleep cycle a vCPU is. What the
smooth shape changes (measured with tools/dirtylimit_bursts.py): the sleep and the dirty rate
kept agree with QEMU's burst shape, the pages a sync finds do not, and QEMU never puts to sleep
a vCPU that cannot fill its ring between two reaps (docs/model.rst, "Assumptions and
simplifications").
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["DirtyRatePeriod", "AutoConverge", "DirtyLimit", "PERIOD_MS", "TOLERANCE_MIB_S", "LINEAR_ADJUSTMENT_PCT",
           "MAX_SLEEP_RING_FULLS", "THROTTLE_TIMESLICE", "Sleeps", "kick_wait"]

#: QEMU evaluates the period at a sync more than this many milliseconds after it began.
PERIOD_MS = 1000
#: Dirty-limit leaves a vCPU's sleep as it is while its dirty rate is within this many MiB/s of the quota
#: (QEMU's DIRTYLIMIT_TOLERANCE_RANGE, "25 MB/s", in the MiB its dirty rates are counted in).
TOLERANCE_MIB_S = 25
#: Beyond this percentage of the larger of rate and quota, dirty-limit steps a vCPU's sleep by the ratio
#: of the two; within it, by a tenth of a ring-full time (QEMU's DIRTYLIMIT_LINEAR_ADJUSTMENT_PCT).
LINEAR_ADJUSTMENT_PCT = 50
#: The longest sleep per ring fill, in ring-full times (QEMU's DIRTYLIMIT_THROTTLE_PCT_MAX, 99, as a factor).
MAX_SLEEP_RING_FULLS = 99
#: Auto-converge runs a vCPU this long between two sleeps (QEMU: CPU_THROTTLE_TIMESLICE_NS, 10 ms).
THROTTLE_TIMESLICE = 0.010
#: Per vCPU: (the share of its time it sleeps outside guest mode, the length of one sleep in seconds).
Sleeps = List[Tuple[float, float]]
#: Points of the midpoint rule in kick_wait's integral (vCPUs sleeping apart).
_WAIT_POINTS = 256


def kick_wait(sleeps: Sleeps, together: bool) -> float:
    """The expected time a kick of every vCPU at a random moment waits until each one is back in its
    run loop (ring mode's ``kvm_cpu_synchronize_kick_all``: a ``run_on_cpu`` per vCPU, which a vCPU
    serves only when its sleep ends; QEMU's ``cpu_throttle_thread`` sleeps on through the kick, and
    ``g_usleep`` resumes after the signal).

    A vCPU asleep (probability: its share) has a remaining sleep uniform over its sleep's length.
    ``together``: the vCPUs sleep at the same moments (auto-converge's one timer), so the wait is
    the longest expected remaining sleep; otherwise (dirty-limit, each vCPU at its own ring-full
    exits) the sleeps are independent and the wait is the expected longest of them."""
    live = [(min(max(p, 0.0), 1.0), length) for p, length in sleeps if p > 0 and length > 0]
    if not live:
        return 0.0
    if together:
        return max(p * length / 2 for p, length in live)
    top = max(length for _, length in live)
    x = (np.arange(_WAIT_POINTS) + 0.5) * (top / _WAIT_POINTS)
    below = np.ones_like(x)  # P(every remaining sleep <= x)
    for p, length in live:
        below *= 1.0 - p + p * np.minimum(x / length, 1.0)
    return float(np.sum(1.0 - below) * (top / _WAIT_POINTS))


def _ms(t: float) -> int:
    """QEMU's millisecond clock at simulated time ``t`` (floor; exact on dirtylog's 50 ms grid)."""
    return math.floor(round(t * 1e6) / 1000)


class DirtyRatePeriod:
    """QEMU's dirty-rate period (``time_last_bitmap_sync``, ``num_dirty_pages_period``,
    ``bytes_xfer_prev``, ``dirty_rate_high_cnt``)."""

    def __init__(self, trigger_threshold: int, start: float = 0.0, xfer: int = 0) -> None:
        self.trigger_threshold = int(trigger_threshold)
        self.start = float(start)
        self.dirty_pages = 0
        self.xfer0 = int(xfer)
        self.high = 0  # QEMU's dirty_rate_high_cnt: high periods since the last step

    def add(self, pages: int) -> None:
        """A sync newly set ``pages`` in the migration bitmap."""
        self.dirty_pages += int(pages)

    def due(self, now: float) -> bool:
        """Whether a sync at ``now`` closes the period (QEMU: end_time > time_last_bitmap_sync + 1000 ms)."""
        return _ms(now) > _ms(self.start) + PERIOD_MS

    def close(self, now: float, xfer: int, page_size: int) -> Optional[Tuple[float, float]]:
        """At a sync: None while the period is not due. Otherwise the period closes (a new one
        begins at ``now``) and, when the dirty rate was high for the second time, returns
        ``(bytes dirtied in the period, the trigger threshold in bytes)``: the throttle steps."""
        if not self.due(now):
            return None
        bytes_xfer = int(xfer) - self.xfer0
        bytes_dirty = self.dirty_pages * page_size
        threshold = bytes_xfer * self.trigger_threshold / 100
        fire: Optional[Tuple[float, float]] = None
        if bytes_dirty > threshold:
            self.high += 1
            if self.high >= 2:
                self.high = 0
                fire = (float(bytes_dirty), float(threshold))
        self.start = float(now)
        self.dirty_pages = 0
        self.xfer0 = int(xfer)
        return fire


class AutoConverge:
    """QEMU's auto-converge throttle (a percentage of every vCPU's time)."""

    def __init__(self, policy: Any, engine: Any) -> None:
        self.policy = policy
        self.engine = engine
        self.percent = 0
        self.history: List[int] = []

    def step(self, bytes_dirty: float, threshold: float) -> Optional[int]:
        """QEMU's mig_throttle_guest_down; returns the new percentage, or None when it did not move."""
        p = self.policy
        if self.percent == 0:
            new = p.cpu_throttle_initial  # QEMU sets the initial throttle as given
        else:
            if not p.cpu_throttle_tailslow:
                inc = p.cpu_throttle_increment
            else:  # size the step by how far the dirty rate is from the threshold
                cpu_now = 100 - self.percent
                cpu_ideal = int(cpu_now * (threshold / bytes_dirty))  # QEMU: uint64_t, truncated
                inc = min(cpu_now - cpu_ideal, p.cpu_throttle_increment)
            new = min(self.percent + inc, p.max_cpu_throttle)
        if new == self.percent:
            return None
        self.percent = new
        self.history.append(new)
        self.engine.set_throttle(new / 100.0)
        return new

    def can_step(self) -> bool:
        """Whether a later step could still throttle more (for the early verdict)."""
        return self.percent < self.policy.max_cpu_throttle

    def sleeps(self, vcpus: int) -> Sleeps:
        """Every vCPU's sleep (QEMU's cpu_throttle_thread: at p %, p / (1 - p) x 10 ms after each
        10 ms of running, all vCPUs at once: :func:`kick_wait` with ``together``)."""
        p = self.percent / 100.0
        length = p / (1.0 - p) * THROTTLE_TIMESLICE if 0 < p < 1 else 0.0
        return [(p, length)] * int(vcpus)


class DirtyLimit:
    """QEMU's dirty-limit: per-vCPU sleeps at ring-full exits, stepped toward the quota each period."""

    def __init__(self, policy: Any, engine: Any, vcpus: int, page_size: int, ring_entries: int,
                 ring_soft_limit: int) -> None:
        self.policy = policy
        self.engine = engine
        self.page_size = int(page_size)
        self.ring_bytes = int(ring_entries) * self.page_size
        self.soft_limit = int(ring_soft_limit)  # pages a vCPU dirties between two ring-full exits
        self.active = False
        self.next_at = math.inf
        self.throttles = [0.0] * int(vcpus)
        #: QEMU's throttle_us_per_full (in seconds): each vCPU's sleep after each ring-full exit
        self.sleep = [0.0] * int(vcpus)
        self._snap: List[int] = []
        self._start = 0.0  # when the period in progress began
        self._max_rate = 0.0  # QEMU's static max_dirtyrate of dirtylimit_dirty_ring_full_time
        #: (ring-full time, throttle time per round) as of the last period the limit was in service
        self._figures: Optional[Tuple[float, float]] = None

    def engage(self, now: float, dirtied: Sequence[int]) -> None:
        """The trigger fired: the limit is in service from now on (``dirtied``: pages each vCPU
        has dirtied so far)."""
        self.active = True
        self._snap = list(dirtied)
        self._start = float(now)
        self.next_at = now + self.policy.dirty_limit_period

    def _step(self, sleep: float, quota: float, current: float) -> float:
        """QEMU's dirtylimit_set_throttle: a vCPU's next sleep per ring fill, from its sleep now, the quota
        and its dirty rate in the period (MiB/s). Far from the quota (more than LINEAR_ADJUSTMENT_PCT % of
        the larger of the two) the step is a ring-full time x p / (100 - p), p the whole percentage the
        rate is off; nearer, a tenth of a ring-full time; at most MAX_SLEEP_RING_FULLS ring-full times."""
        if current == 0:
            return 0.0
        full = self._ring_full_time(current * 2**20)
        lo, hi = min(quota, current), max(quota, current)
        pct = math.floor((hi - lo) * 100 / hi)  # QEMU's integer percentage, for the test as for the step
        if pct > LINEAR_ADJUSTMENT_PCT:
            step = full * pct / (100 - pct)
        else:
            step = full / 10
        sleep = sleep + step if quota < current else sleep - step
        return min(max(sleep, 0.0), full * MAX_SLEEP_RING_FULLS)

    def adjust(self, dirtied: Sequence[int], now: float) -> Tuple[List[float], List[float], bool]:
        """A period ended: each vCPU's dirty rate over it; a vCPU further than TOLERANCE_MIB_S from the
        quota has its sleep stepped (QEMU's dirtylimit_adjust_throttle, dirtylimit_done), and each vCPU
        then sleeps that long at each ring fill. The period ends, and the next begins, ``now``: the rates
        are the pages counted since it began over its nominal length, as QEMU's, where the time a ring
        fill takes counts the time that really passed.

        Returns (rates in bytes/s, the new throttles, whether any throttle still moves)."""
        p = self.policy
        pages = [b - a for a, b in zip(self._snap, dirtied)]
        rates = [n * self.page_size / p.dirty_limit_period for n in pages]
        quota = p.vcpu_dirty_limit / 2**20
        moving = False
        for j, (n, rate) in enumerate(zip(pages, rates)):
            current = rate / 2**20
            if abs(current - quota) > TOLERANCE_MIB_S:
                self.sleep[j] = self._step(self.sleep[j], quota, current)
            cur = self.throttles[j]
            # a ring fill takes the soft limit's pages at the rate the vCPU dirtied them while it ran
            running = n / ((now - self._start) * (1.0 - cur)) if now > self._start else 0.0
            fill = self.soft_limit / running if running > 0 else math.inf
            new = self.sleep[j] / (self.sleep[j] + fill) if self.sleep[j] > 0 and fill < math.inf else 0.0
            if abs(new - cur) > 1e-3:
                moving = True
            if new != cur:
                self.engine.set_vcpu_throttle(j, new)
                self.throttles[j] = new
        self._snap = list(dirtied)
        self._start = float(now)
        self.next_at = now + p.dirty_limit_period
        # QEMU's dirty-limit-ring-full-time (dirtylimit_ring_full_time, read by query-migrate): at the
        # vCPUs' mean rate, which raises the highest rate seen when it is above it
        self._figures = (self._ring_full_time(sum(rates) / len(rates) if rates else 0.0),
                         self.throttle_time_per_round())
        return rates, list(self.throttles), moving

    def _ring_full_time(self, rate: float) -> float:
        """QEMU's dirtylimit_dirty_ring_full_time(rate): the highest rate seen (a static in QEMU) takes in
        ``rate`` (bytes/s), then the ring-full time at it. dirtylimit_set_throttle calls it with the rate of
        the vCPU it steps, vCPU by vCPU in order, so a vCPU stepped before a faster one is stepped by the
        ring-full time at the highest rate seen so far, and a vCPU within the tolerance band raises nothing."""
        self._max_rate = max(self._max_rate, rate)
        return self.ring_full_time()

    def ring_full_time(self) -> float:
        """QEMU's dirty-limit-ring-full-time (seconds): how long a vCPU dirtying at the highest rate
        seen takes to fill its dirty ring (0 before any rate was seen). As in QEMU, the rates seen are
        those of the vCPUs stepped (:meth:`_ring_full_time`) and each period's mean."""
        return self.ring_bytes / self._max_rate if self._max_rate > 0 else 0.0

    def throttle_time_per_round(self) -> float:
        """QEMU's dirty-limit-throttle-time-per-round (seconds): the longest a vCPU sleeps each
        time its ring fills (QEMU's largest throttle_us_per_full)."""
        return max(self.sleep, default=0.0)

    def sleeps(self) -> Sleeps:
        """Each vCPU's sleep while the limit is in service: its share of time asleep, and the sleep
        it takes at each ring-full exit (QEMU's throttle_us_per_full, the sleep of
        dirtylimit_vcpu_execute), at its own moments (:func:`kick_wait` apart)."""
        if not self.active:
            return [(0.0, 0.0)] * len(self.throttles)
        return [(s, t if s > 0 else 0.0) for s, t in zip(self.throttles, self.sleep)]

    def figures(self) -> Tuple[Optional[float], Optional[float]]:
        """(ring-full time, throttle time per round) as of the last period in service; (None, None)
        when the limit never completed a period (QEMU reports neither then)."""
        if self._figures is None:
            return None, None
        return self._figures

    def lift(self) -> None:
        """Take every vCPU throttle off (the pause, a rollback): the limit is out of service."""
        if not self.active:
            return
        for j, s in enumerate(self.throttles):
            if s:
                self.engine.set_vcpu_throttle(j, 0.0)
                self.throttles[j] = 0.0
        self.active = False
        self.next_at = math.inf
