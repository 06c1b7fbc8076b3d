"""Three live migrations sharing one link inside a SimPy simulation, scheduled on their own events.

A host simulator drives each :class:`~dirtylog.Migration` with its own clock. Here SimPy owns time and:

* each VM's process sleeps until its migration's next decision point (``next_event_time()``: the end
  of QEMU's 100 ms window in pre-copy, the end of the transfer in the stop-and-copy, ...), or until the
  host changes its share of the link, then advances it there (``run_until``): no polling tick;
* the link's capacity is split evenly between the migrations still running; the split changes when the
  capacity changes (a maintenance event halves it) and when a migration ends, and each migration gets
  its new share at the host's time (``set_bandwidth(share, at=...)``), whatever its own clock;
* an operator cancels one migration (``cancel()``, after advancing it to the host's time: actions take
  effect at the migration's clock), which rolls it back and frees its share for the others;
* a monitor reads each migration's progress (``current_round``, ``memory_remaining``) like
  ``virsh domjobinfo``.

Run it::

    python examples/simpy_shared_link.py --link 10Gbit/s --drop-to 4Gbit/s --drop-at 3s --cancel vm1@2s

Needs ``pip install simpy``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import simpy

import dirtylog
from dirtylog.specs import parse_workload
from dirtylog.units import format_rate, format_size, format_time, parse_rate, parse_time


class SharedLink:
    """One link whose capacity the running migrations split evenly, at the host's time."""

    def __init__(self, env: simpy.Environment, capacity: float) -> None:
        self.env = env
        self.capacity = capacity
        self.vms: Dict[str, Tuple[dirtylog.Migration, float]] = {}  # name: (migration, SimPy time it started)
        self.changed = env.event()  # fires when the shares change: every VM re-reads its next event

    def share(self) -> None:
        live = [(m, start) for m, start in self.vms.values() if not m.done]
        for m, start in live:
            # the host's time in the migration's seconds: the change applies there, even if the migration
            # has not been advanced to it yet (its clock is never ahead of SimPy's)
            m.set_bandwidth(self.capacity / len(live), at=self.env.now - start)
        self.changed.succeed()
        self.changed = self.env.event()

    def set_capacity(self, capacity: float) -> None:
        self.capacity = capacity
        self.share()


def vm(env: simpy.Environment, name: str, m: dirtylog.Migration, link: SharedLink, start: float):
    """Drive one migration on its own events; when it ends, its share goes to the others."""
    yield env.timeout(start)
    link.vms[name] = (m, start)
    link.share()
    while not m.done:
        nxt = m.next_event_time()  # in the migration's seconds
        changed = link.changed
        yield env.timeout(max(start + nxt - env.now, 0.0)) | changed
        # woken by its own event: advance to that very time (SimPy's `now - start` can fall an ulp short of it
        # and stop before the decision); woken by a new share: to SimPy's time
        m.run_until(env.now - start if changed.triggered else nxt)
    link.share()


def capacity_change(env: simpy.Environment, link: SharedLink, at: float, capacity: float):
    yield env.timeout(at)
    link.set_capacity(capacity)


def operator(env: simpy.Environment, link: SharedLink, name: str, at: float, notes: List[str]):
    """Cancel `name` at `at` if it is still running and may be cancelled."""
    yield env.timeout(at)
    m, start = link.vms[name]
    m.run_until(env.now - start)  # actions take effect at the migration's clock: bring it to SimPy's first
    if m.done or m.phase not in ("setup", "precopy"):  # QEMU refuses a cancel once post-copy or completion began
        notes.append(f"{name}: not cancelled at {format_time(env.now)} ({m.phase})")
        return
    m.cancel(f"cancelled by the operator at {format_time(env.now)}")
    link.share()


def monitor(env: simpy.Environment, link: SharedLink, period: float, log: List[Dict[str, Any]]):
    while True:
        yield env.timeout(period)
        for name, (m, _) in link.vms.items():
            cr = m.current_round
            log.append({"time": env.now, "vm": name, "phase": cr["phase"], "round": cr["index"],
                        "remaining": m.memory_remaining})
        if link.vms and all(m.done for m, _ in link.vms.values()):
            return


def run(vms: Sequence[Tuple[str, str, str, Any]] = (("vm0", "4GiB", "hotspot:100MiB/s", "0s"),
                                                     ("vm1", "4GiB", "hotspot:300MiB/s", "0s"),
                                                     ("vm2", "2GiB", "uniform:20MiB/s", "1s")),
        link: Any = "10Gbit/s", drop_to: Any = "4Gbit/s", drop_at: Any = "3s",
        cancel: Optional[Tuple[str, Any]] = ("vm1", "2s"), seed: int = 1) -> Dict[str, Any]:
    """Run the scenario: ``vms`` is (name, memory, workload spec, start time); returns the reports, the
    monitor's log and the operator's notes."""
    env = simpy.Environment()
    shared = SharedLink(env, parse_rate(link, name="link"))
    migrations = {name: dirtylog.Migration(memory=memory, workload=parse_workload(spec, seed=seed + i))
                  for i, (name, memory, spec, _) in enumerate(vms)}
    for name, _, _, start in vms:
        env.process(vm(env, name, migrations[name], shared, parse_time(start, name="start")))
    env.process(capacity_change(env, shared, parse_time(drop_at, name="drop_at"), parse_rate(drop_to, name="drop_to")))
    notes: List[str] = []
    if cancel is not None:
        env.process(operator(env, shared, cancel[0], parse_time(cancel[1], name="cancel time"), notes))
    log: List[Dict[str, Any]] = []
    env.process(monitor(env, shared, 1.0, log))
    env.run()
    return {"reports": {name: m.report() for name, m in migrations.items()},
            "starts": {name: parse_time(start) for name, _, _, start in vms}, "log": log, "notes": notes,
            "ended_at": env.now}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--link", default="10Gbit/s", help="the shared link's capacity")
    p.add_argument("--drop-to", default="4Gbit/s", help="its capacity after the drop")
    p.add_argument("--drop-at", default="3s", help="when it drops (SimPy time)")
    p.add_argument("--cancel", default="vm1@2s", help="NAME@TIME: the operator cancels NAME at TIME ('' for none)")
    args = p.parse_args(argv)
    cancel = tuple(args.cancel.split("@", 1)) if args.cancel else None
    out = run(link=args.link, drop_to=args.drop_to, drop_at=args.drop_at, cancel=cancel)
    print("monitor (like virsh domjobinfo), every second:")
    for row in out["log"]:
        rnd = f"round {row['round']:>3}" if row["round"] >= 0 else " " * 9  # -1: the paused phase and after
        print(f"  t={format_time(row['time']):>7}  {row['vm']}  {row['phase']:<9} {rnd}  "
              f"{format_size(row['remaining']):>10} remaining")
    for note in out["notes"]:
        print(note)
    for name, r in out["reports"].items():
        start = out["starts"][name]
        print(f"{name}: {r.status}, started at {format_time(start)}, ended at {format_time(start + r.total_time)}, "
              f"downtime {format_time(r.downtime) if r.downtime == r.downtime else '-'}, sent "
              f"{format_size(r.transferred)} at {format_rate(r.transferred / r.total_time, bits=True)} on average")
    return 0 if all(r.verified is not False for r in out["reports"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
