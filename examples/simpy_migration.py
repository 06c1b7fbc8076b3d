"""A live migration inside a SimPy simulation, next to other simulated events.

dirtylog's :class:`~dirtylog.Migration` does not own a clock: its caller advances
it (``run_until(t)``), so a discrete-event simulator can drive it. Here SimPy owns
time, and four processes share it:

* ``migrate``: starts the migration at ``start`` and advances it to SimPy's clock
  every ``tick``; when it ends, it fires the ``migrated`` event with the report;
* ``monitor``: polls the migration every second, like a management tool polling
  ``query-migrate`` / ``virsh domjobinfo`` (phase, round, expected downtime);
* ``clients``: requests reach the guest at random; one that arrives while the
  guest is paused for the switch-over waits until it resumes on the destination,
  so the downtime shows up as request latency;
* ``window``: a maintenance window; if the migration has not ended when it
  closes, the migration is cancelled (rolled back: the guest keeps running on
  the source, nothing is lost).

Run it::

    python examples/simpy_migration.py --memory 8GiB --workload hotspot:200MiB/s --bandwidth 10Gbit/s

Needs ``pip install simpy``.
"""
from __future__ import annotations

import argparse
import random
import sys
from typing import Any, Dict, List, Optional, Sequence

import simpy

import dirtylog
from dirtylog.specs import parse_workload
from dirtylog.units import format_time, parse_time


def migrate(env: simpy.Environment, m: dirtylog.Migration, start: float, tick: float, migrated: simpy.Event):
    """Drive the migration with SimPy's clock (migration time 0 is SimPy time ``start``)."""
    yield env.timeout(start)
    while not m.done:
        yield env.timeout(tick)
        m.run_until(env.now - start)
    migrated.succeed(m.report())


def monitor(env: simpy.Environment, m: dirtylog.Migration, start: float, period: float, log: List[Dict[str, Any]],
            migrated: simpy.Event):
    """Poll the migration like `virsh domjobinfo` until it ends."""
    yield env.timeout(start)
    while not migrated.triggered:
        cr = m.current_round
        log.append({"time": env.now, "phase": cr["phase"], "round": cr["index"],
                    "pages_left_in_round": cr["pages_total"] - cr["pages_sent"],
                    "expected_downtime": m.expected_downtime})
        yield env.timeout(period) | migrated


def clients(env: simpy.Environment, m: dirtylog.Migration, rate: float, service: float, latencies: List[float],
            migrated: simpy.Event, until: float, rng: random.Random):
    """Requests arrive at `rate` per second; one that arrives while the guest is paused waits for the resume."""

    def request(arrival: float):
        if m.phase == "downtime":  # paused for the stop-and-copy: wait for the destination to resume
            yield migrated
        yield env.timeout(service)
        latencies.append(env.now - arrival)

    while env.now < until:
        yield env.timeout(rng.expovariate(rate))
        env.process(request(env.now))


def window(env: simpy.Environment, m: dirtylog.Migration, closes_at: float, migrated: simpy.Event,
           notes: List[str]):
    """Cancel the migration if the maintenance window closes first."""
    result = yield migrated | env.timeout(closes_at)
    if migrated not in result and not m.done:
        if m.phase == "downtime":
            notes.append("the window closed during the switch-over: too late to cancel, letting it finish")
            return
        m.cancel("the maintenance window closed")
        notes.append(f"cancelled at t = {format_time(env.now)}: the maintenance window closed")


def run(memory: str = "8GiB", workload: str = "hotspot:200MiB/s", bandwidth: str = "10Gbit/s",
        downtime_limit: str = "300ms", tracker: str = "pml", vcpus: int = 2, start: Any = "2s",
        tick: Any = "10ms", window_closes: Any = "10min", request_rate: float = 200.0,
        service: Any = "2ms", seed: int = 1) -> Dict[str, Any]:
    """Run the scenario; returns the report, the monitor's log and the request latencies."""
    env = simpy.Environment()
    m = dirtylog.Migration(memory=memory, workload=parse_workload(workload, seed=seed),
                           link=dirtylog.Link(bandwidth), policy=dirtylog.PreCopy(downtime_limit=downtime_limit),
                           tracker=tracker, vcpus=vcpus)
    t_start, t_tick = parse_time(start), parse_time(tick, allow_zero=False)
    closes = parse_time(window_closes, allow_inf=True)
    migrated = env.event()
    log: List[Dict[str, Any]] = []
    latencies: List[float] = []
    notes: List[str] = []
    env.process(migrate(env, m, t_start, t_tick, migrated))
    env.process(monitor(env, m, t_start, 1.0, log, migrated))
    env.process(window(env, m, closes, migrated, notes))
    env.process(clients(env, m, request_rate, parse_time(service), latencies, migrated, float("inf"),
                        random.Random(seed)))
    env.run(until=migrated)
    env.run(until=env.now + 1.0)  # let the requests held during the switch-over finish
    report = migrated.value
    return {"report": report, "log": log, "latencies": latencies, "notes": notes, "ended_at": env.now}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memory", default="8GiB")
    p.add_argument("--workload", default="hotspot:200MiB/s")
    p.add_argument("--bandwidth", default="10Gbit/s")
    p.add_argument("--downtime-limit", default="300ms")
    p.add_argument("--tracker", default="pml")
    p.add_argument("--window", default="10min", help="maintenance window, from SimPy time 0")
    p.add_argument("--request-rate", type=float, default=200.0, help="client requests per second")
    args = p.parse_args(argv)
    out = run(memory=args.memory, workload=args.workload, bandwidth=args.bandwidth,
              downtime_limit=args.downtime_limit, tracker=args.tracker, window_closes=args.window,
              request_rate=args.request_rate)
    r = out["report"]
    print("monitor (like virsh domjobinfo):")
    for row in out["log"]:
        print(f"  t={format_time(row['time']):>8}  {row['phase']:<9} round {row['round']:>3}  "
              f"{row['pages_left_in_round']:>9,} pages left in round")
    for note in out["notes"]:
        print(note)
    lat = sorted(out["latencies"])
    print(f"migration {r.status}: total {format_time(r.total_time)}, downtime {format_time(r.downtime)}, "
          f"verified {r.verified}")
    if lat:
        print(f"{len(lat)} requests: median latency {format_time(lat[len(lat) // 2])}, "
              f"worst {format_time(lat[-1])} (a request caught by the switch-over waits for the resume)")
    return 0 if r.verified is not False else 1


if __name__ == "__main__":
    sys.exit(main())
