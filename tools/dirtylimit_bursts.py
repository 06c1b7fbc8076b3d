"""Does the shape of a dirty-limited vCPU's running change what users see?

QEMU's dirty-limit (system/dirtylimit.c) makes a vCPU sleep ``throttle_us_per_full`` after each
KVM_EXIT_DIRTY_RING_FULL (``dirtylimit_vcpu_execute``): the vCPU runs at its full rate until its ring
holds the soft limit of entries, then sleeps. dirtylog's engine runs it smoothly instead, at the share
``T / (T + fill)`` of its time (dirtylog.throttle.DirtyLimit.adjust). This script runs both shapes on
dirtylog's own tracker, workload and controller (DirtyLimit's QEMU rule steps the sleep in both) and
prints, for each configuration, what a user would see:

* ``read``: the per-vCPU dirty rate the controller reads per period (MiB/s: mean, and min-max);
* ``rate``: the dirty rate the vCPUs really kept (pages each pushed to its ring, per second);
* ``round``: the distinct pages a migration sync finds every ``sync`` seconds (MiB: mean, p95, max);
* ``sleep``: the sleep per ring fill the controller settled on (QEMU's throttle_us_per_full).

The burst shape is QEMU's: a vCPU asleep at a step's start sleeps through it; a vCPU whose ring filled
(a ring-full exit) sleeps its ``throttle_us_per_full`` from the end of that step (the step, ``--dt``,
bounds the writes it makes past the exit). Every sync (a migration's, every ``sync`` seconds, and the
dirty-limit thread's own at each period's end) reaps every ring, and, as QEMU's
``kvm_cpu_synchronize_kick_all`` (a ``run_on_cpu`` per vCPU) does, waits until every sleeping vCPU has
woken; the smooth shape waits the expected time (dirtylog.throttle.kick_wait), as dirtylog's Migration
does. Tracking costs are zero: only the shape differs.

Usage: ``python tools/dirtylimit_bursts.py`` (the grid of docs/model.rst), or with ``--vcpus``,
``--raw``, ``--quota``, ``--sync`` to pick one row.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

import dirtylog._lib as L
from dirtylog import PreCopy, Tracker
from dirtylog.engine import Engine
from dirtylog.throttle import DirtyLimit, kick_wait
from dirtylog.workloads import Uniform

MiB = 1 << 20
PAGE = 4096


class _NoThrottle:
    """The burst shape's controller sets no smooth throttle: the vCPUs sleep at their ring-full exits."""

    def set_vcpu_throttle(self, vcpu: int, throttle: float) -> None:
        pass


@dataclass
class Result:
    reads: List[float]      # MiB/s, every vCPU's reading of every period measured
    rate: float             # MiB/s per vCPU, kept over the measured span
    rounds: List[float]     # MiB found by each sync in the measured span
    sleep: float            # s, the longest sleep per ring fill at the end


def run(shape: str, vcpus: int, raw: float, quota: float, sync: float, *, ring: int = 4096,
        memory: int = 8 << 30, duration: float = 30.0, measure_from: float = 15.0, dt: float = 2.5e-4,
        seed: int = 1) -> Result:
    """One run: ``vcpus`` vCPUs of a Uniform guest each writing ``raw`` bytes/s while it runs, a
    ``quota`` bytes/s per-vCPU dirty limit (1 s periods) in service from t = 0, and a migration sync
    every ``sync`` seconds; ``shape`` "smooth" (dirtylog's engine) or "burst" (QEMU's)."""
    pages = memory // PAGE
    t = Tracker(pages, mode="ring", vcpus=vcpus, ring_entries=ring)
    t.start()
    w = Uniform(raw * vcpus / PAGE, seed=seed).bind(pages, vcpus=vcpus, page_size=PAGE)
    cfg = L.ffi.new("dl_engine_config *")
    L.lib.dl_engine_config_init(cfg)
    cfg.cost_fault = cfg.cost_pml_full = cfg.cost_ring_full = cfg.cost_split = cfg.cost_kick = 0.0
    e = Engine(cfg, t, w._handle, None)
    for j in range(vcpus):
        e.set_vcpu_throttle(j, 0.0)
    policy = PreCopy(dirty_limit=True, vcpu_dirty_limit=quota, dirty_limit_period="1s")
    burst = shape == "burst"
    dl = DirtyLimit(policy, _NoThrottle() if burst else e, vcpus, PAGE, ring, t.config.ring_soft_limit)
    dl.engage(0.0, [0] * vcpus)

    asleep = [-math.inf] * vcpus  # burst: when each vCPU wakes
    running = [True] * vcpus
    exits = [0] * vcpus
    clock = 0.0
    next_sync = sync
    reads: List[float] = []
    rounds: List[float] = []
    d0: Optional[List[int]] = None  # pages each vCPU had pushed when the measured span began, at t0
    t0 = 0.0

    def advance(to: float) -> None:
        """The guest runs up to ``to``: smoothly in one go, or in steps of dt (burst)."""
        nonlocal clock
        if not burst:
            e.idle(to)
            e.catch_up()
            clock = to
            return
        while clock < to - 1e-12:
            step = min(dt, to - clock)
            for j in range(vcpus):
                run_j = asleep[j] <= clock
                if run_j != running[j]:
                    e.set_vcpu_throttle(j, 0.0 if run_j else 1.0)
                    running[j] = run_j
            e.idle(clock + step)
            e.catch_up()
            clock += step
            now = [v.ring_full_exits for v in t.stats.vcpus]
            for j in range(vcpus):
                if now[j] != exits[j] and dl.sleep[j] > 0:
                    asleep[j] = clock + dl.sleep[j]
            exits[:] = now

    def wait_for_sleepers() -> None:
        """A ring-mode sync's kick waits until every sleeping vCPU is back in its run loop."""
        if burst:
            advance(max([clock] + [a for a in asleep if a > clock]))
        else:
            advance(clock + kick_wait(dl.sleeps(), False))

    while clock < duration:
        if next_sync <= dl.next_at:
            advance(next_sync)
            wait_for_sleepers()
            found = len(t.harvest())  # reaps every ring, then the bitmap
            if clock >= measure_from:
                rounds.append(found * PAGE / MiB)
            next_sync = clock + sync
        else:
            advance(dl.next_at)
            wait_for_sleepers()
            t.flush()  # the dirty-limit thread's own sync: every ring reaped
            rates, _, _ = dl.adjust([v.dirtied for v in t.stats.vcpus], clock)
            if burst:  # the smooth shares are not applied: the vCPUs ran at full rate between their sleeps
                dl.throttles = [0.0] * vcpus
            if clock >= measure_from:
                reads.extend(r / MiB for r in rates)
        if d0 is None and clock >= measure_from:
            d0, t0 = [v.dirtied for v in t.stats.vcpus], clock
    assert d0 is not None
    kept = sum(v.dirtied for v in t.stats.vcpus) - sum(d0)
    span = clock - t0  # 0 when one wait for the sleepers jumped past the end: measure longer (--duration)
    rate = kept * PAGE / MiB / vcpus / span if span > 0 else math.nan
    return Result(reads, rate, rounds, dl.throttle_time_per_round())


def _row(shape: str, r: Result) -> str:
    rd = np.asarray(r.reads) if r.reads else np.zeros(1)
    ro = np.asarray(r.rounds) if r.rounds else np.zeros(1)
    return (f"{shape:6} read {rd.mean():6.1f} ({rd.min():5.1f}-{rd.max():6.1f})  rate {r.rate:6.1f}  "
            f"round {ro.mean():6.2f} p95 {np.percentile(ro, 95):6.2f} max {ro.max():6.2f}  sleep {r.sleep:7.3f} s")


def main(argv: Any = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vcpus", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--raw", type=float, nargs="*", default=[32, 256], help="MiB/s per vCPU while it runs")
    ap.add_argument("--quota", type=float, nargs="*", default=[1, 10, 25, 50, 100], help="MiB/s per vCPU")
    ap.add_argument("--sync", type=float, nargs="*", default=[0.1, 0.3, 1.0], help="seconds between syncs")
    ap.add_argument("--ring", type=int, default=4096)
    ap.add_argument("--duration", type=float, default=30.0, help="simulated seconds; the second half is measured")
    ap.add_argument("--dt", type=float, default=2.5e-4)
    a = ap.parse_args(argv)
    for v in a.vcpus:
        for raw in a.raw:
            for q in a.quota:
                for s in a.sync:
                    print(f"vcpus {v} raw {raw:g} MiB/s quota {q:g} MiB/s sync {s:g} s", flush=True)
                    for shape in ("smooth", "burst"):
                        r = run(shape, v, raw * MiB, q * MiB, s, ring=a.ring, duration=a.duration, dt=a.dt,
                                measure_from=a.duration / 2)
                        print("  " + _row(shape, r), flush=True)


if __name__ == "__main__":
    main()
