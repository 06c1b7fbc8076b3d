#!/usr/bin/env python3
"""Record real QEMU live migrations of the validation guest (Python standard library only).

    python3 validation/run.py --list
    python3 validation/run.py idle uniform-converge --repeats 3
    python3 validation/run.py all --accel kvm          # re-record on a host with KVM

Each run starts a destination QEMU (``-incoming tcp:127.0.0.1:PORT``) and a source QEMU
booting ``validation/guest/guest.elf`` (built with ``make`` if missing), waits for the
guest to fill its memory, measures its dirty rate with ``calc-dirty-rate``, sets the
scenario's migration parameters and capabilities, migrates, polls ``query-migrate``
every 100 ms, records the ``MIGRATION``/``MIGRATION_PASS`` events and the guest's write
reports, cancels a migration still running at the scenario's bound, and writes one
JSON file to ``validation/results/SCENARIO-N.json``. It stops only the QEMU processes
it started (always, also on errors and Ctrl-C).

Run it at raised priority on a shared machine (``sudo nice -n -10 python3 ...``): the
rate limiter, not the CPU, must set the pace; each result records the host's load and
the median ``mbps`` so that a reader can check.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST_DIR = os.path.join(HERE, "guest")
GUEST = os.path.join(GUEST_DIR, "guest.elf")
RESULTS = os.path.join(HERE, "results")
FORMAT = "dirtylog-qemu-run/1"
MIB = 1 << 20

# query-migrate fields kept per sample (as columns, to keep the files small)
RAM_FIELDS = ["transferred", "remaining", "total", "duplicate", "normal", "normal-bytes",
              "dirty-pages-rate", "mbps", "dirty-sync-count", "postcopy-requests", "pages-per-second",
              "precopy-bytes", "downtime-bytes", "postcopy-bytes"]
TOP_FIELDS = ["total-time", "expected-downtime", "downtime", "setup-time", "cpu-throttle-percentage"]
XBZRLE_FIELDS = ["cache-size", "bytes", "pages", "cache-miss", "cache-miss-rate", "encoding-rate", "overflow"]
COLUMNS = ["t", "status"] + RAM_FIELDS + TOP_FIELDS + ["xbzrle-" + f for f in XBZRLE_FIELDS]

BASE: Dict[str, Any] = {
    "memory_mib": 256,
    "max_bandwidth": 32 * MIB,        # bytes/s: well under what loopback + TCG carries
    "downtime_limit_ms": 300,         # QEMU's default
    "capabilities": [],
    "bound_s": 45.0,                  # cancel a migration still running after this long
    "postcopy_after_sync": None,      # migrate-start-postcopy once dirty-sync-count reaches this
    "parameters": {},                 # further migrate-set-parameters
}

# The scenarios of issue 9. The guest's command line is its workload (see guest/guest.c).
SCENARIOS: Dict[str, Dict[str, Any]] = {
    "idle": dict(guest="mode=idle", doc="memory filled, no writes"),
    "uniform-converge": dict(guest="mode=uniform rate=1000", doc="uniform random writes, converges in a few rounds"),
    "uniform-threshold": dict(guest="mode=uniform rate=6000",
                              doc="uniform writes near the bandwidth: many shrinking rounds"),
    "noconverge": dict(guest="mode=cpu work=2000", memory_mib=128, bound_s=30.0,
                       doc="a CPU-bound writer dirtying faster than max-bandwidth: never converges, cancelled"),
    "autoconverge": dict(guest="mode=cpu work=2000", memory_mib=128, bound_s=50.0, capabilities=["auto-converge"],
                         doc="the same writer with auto-converge: throttled until it converges"),
    "hot-under": dict(guest="mode=hot hot=1024 rate=20000", doc="a 4 MiB hot set, well under the threshold"),
    "hot-above": dict(guest="mode=hot hot=3072 rate=20000", bound_s=30.0,
                      doc="a 12 MiB hot set, just above the 9.6 MiB threshold"),
    "hot-above-fast": dict(guest="mode=hot hot=3072 rate=40000", bound_s=30.0,
                           doc="the 12 MiB hot set swept faster than QEMU syncs near the threshold: never converges"),
    "zero-half": dict(guest="mode=uniform rate=1000 fill=50", doc="half of memory left zero, uniform writes in the rest"),
    "postcopy": dict(guest="mode=uniform rate=12000", capabilities=["postcopy-ram"], postcopy_after_sync=2,
                     doc="post-copy after the first pass of a migration that would not converge"),
    "xbzrle": dict(guest="mode=uniform rate=6000", capabilities=["xbzrle"],
                   doc="XBZRLE (64 MiB cache) on the near-threshold workload"),
}


def scenario(name: str) -> Dict[str, Any]:
    s = dict(BASE)
    s.update(SCENARIOS[name])
    s["name"] = name
    return s


class QMPError(RuntimeError):
    pass


class QMP:
    """A minimal QMP client over a unix socket: commands in order, events collected."""

    def __init__(self, path: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        self.sock: Optional[socket.socket] = None
        while True:
            if proc.poll() is not None:
                raise QMPError(f"QEMU exited with status {proc.returncode} before its QMP socket opened")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self.sock = s
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP socket at {path} after {timeout} s") from None
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events: List[Dict[str, Any]] = []
        self.next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting {greeting!r}")
        self.version = greeting["QMP"]["version"]
        self.cmd("qmp_capabilities")

    def _read(self) -> Dict[str, Any]:
        assert self.sock is not None
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QMPError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name: str, **args: Any) -> Any:
        assert self.sock is not None
        self.next_id += 1
        msg: Dict[str, Any] = {"execute": name, "id": self.next_id}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") != self.next_id:
                continue
            if "error" in r:
                raise QMPError(f"{name}: {r['error'].get('desc', r['error'])}")
            return r.get("return")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Debugcon:
    """Follows the guest's debug-console file: header, fill and write-count reports."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""
        self.header: Dict[str, str] = {}
        self.fill: Optional[Tuple[float, int]] = None
        self.fill_seen_at: Optional[float] = None
        self.reports: List[Tuple[float, int, int]] = []  # (host time, guest ms, writes)

    def poll(self, now: float) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            parts = raw.decode("ascii", "replace").split()
            if not parts:
                continue
            if parts[0] == "H":
                self.header = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            elif parts[0] == "F" and len(parts) == 3:
                self.fill = (int(parts[1]) / 1000.0, int(parts[2]))
                self.fill_seen_at = now
            elif parts[0] == "R" and len(parts) == 3:
                self.reports.append((round(now, 3), int(parts[1]), int(parts[2])))


def loadavg() -> List[float]:
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_guest() -> None:
    if os.path.exists(GUEST) and os.path.getmtime(GUEST) >= max(
            os.path.getmtime(os.path.join(GUEST_DIR, f)) for f in ("guest.c", "boot.S", "link.ld")):
        return
    subprocess.run(["make", "-C", GUEST_DIR], check=True)


def qemu_cmd(qemu: str, accel: str, sc: Dict[str, Any], work: str, side: str, port: int) -> List[str]:
    cmd = [qemu, "-accel", accel, "-machine", "pc", "-m", f"{sc['memory_mib']}M", "-smp", "1",
           "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
           "-serial", "none", "-parallel", "none", "-monitor", "none",
           "-kernel", GUEST, "-append", sc["guest"],
           "-debugcon", f"file:{os.path.join(work, side + '.con')}",
           "-qmp", f"unix:{os.path.join(work, side + '.qmp')},server=on,wait=off"]
    if side == "dst":
        cmd += ["-incoming", f"tcp:127.0.0.1:{port}"]
    return cmd


def sample_row(t: float, q: Dict[str, Any]) -> List[Any]:
    ram = q.get("ram", {})
    xb = q.get("xbzrle-cache", {})
    return ([round(t, 3), q.get("status")] + [ram.get(f) for f in RAM_FIELDS] + [q.get(f) for f in TOP_FIELDS]
            + [xb.get(f) for f in XBZRLE_FIELDS])


def stop(proc: Optional[subprocess.Popen], qmp: Optional[QMP]) -> None:
    """Stop one QEMU this runner started: QMP quit, then SIGTERM, then SIGKILL."""
    if proc is None:
        return
    if proc.poll() is None and qmp is not None:
        try:
            qmp.sock.settimeout(2.0)  # type: ignore[union-attr]
            qmp.cmd("quit")
        except (OSError, QMPError, ValueError):
            pass
    if qmp is not None:
        qmp.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def record(sc: Dict[str, Any], repeat: int, qemu: str, accel: str, calc_dirty_rate: bool,
           verbose: bool = True) -> Dict[str, Any]:
    work = tempfile.mkdtemp(prefix="dirtylog-qemu-")
    port = free_port()
    src = dst = None
    qs = qd = None
    load_before = loadavg()
    errs = {side: open(os.path.join(work, side + ".err"), "wb") for side in ("dst", "src")}
    try:
        dst = subprocess.Popen(qemu_cmd(qemu, accel, sc, work, "dst", port), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errs["dst"])
        src = subprocess.Popen(qemu_cmd(qemu, accel, sc, work, "src", port), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=errs["src"])
        qd = QMP(os.path.join(work, "dst.qmp"), dst)
        qs = QMP(os.path.join(work, "src.qmp"), src)
        con = Debugcon(os.path.join(work, "src.con"))
        dcon = Debugcon(os.path.join(work, "dst.con"))
        t_boot = time.monotonic()
        while con.fill is None:  # the guest fills its memory first
            if time.monotonic() - t_boot > 60:
                raise RuntimeError("the guest did not report the end of its fill within 60 s")
            time.sleep(0.05)
            con.poll(time.monotonic() - t_boot)
        def settle(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.05)
                con.poll(time.monotonic() - t_boot)

        settle(1.0)  # let the write pattern settle
        dirty_rate = None
        if calc_dirty_rate:
            qs.cmd("calc-dirty-rate", **{"calc-time": 1})
            for _ in range(100):
                settle(0.1)
                r = qs.cmd("query-dirty-rate")
                if r.get("status") == "measured":
                    dirty_rate = r
                    break
        caps = ["events"] + list(sc["capabilities"])
        for q, side_caps in ((qs, caps), (qd, [c for c in caps if c in ("postcopy-ram", "events")])):
            q.cmd("migrate-set-capabilities", capabilities=[{"capability": c, "state": True} for c in side_caps])
        params = {"max-bandwidth": int(sc["max_bandwidth"]), "downtime-limit": int(sc["downtime_limit_ms"])}
        params.update(sc["parameters"])
        qs.cmd("migrate-set-parameters", **params)
        parameters = qs.cmd("query-migrate-parameters")
        capabilities = {c["capability"]: c["state"] for c in qs.cmd("query-migrate-capabilities")}
        ram_blocks = None
        try:
            ram_blocks = qs.cmd("human-monitor-command", **{"command-line": "info ramblock"})
        except QMPError:
            pass
        settle(0.3)
        qs.events.clear()
        t0 = time.monotonic()
        wall0 = time.time()
        con.reports = [(round(h - (t0 - t_boot), 3), g, w) for h, g, w in con.reports]  # host time from migrate
        qs.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        rows: List[List[Any]] = []
        cancelled_by_runner = False
        postcopy_started_at = None
        status = "setup"
        final: Dict[str, Any] = {}
        while True:
            time.sleep(0.1)
            t = time.monotonic() - t0
            q = qs.cmd("query-migrate")
            con.poll(t)
            dcon.poll(t)
            rows.append(sample_row(t, q))
            status = q.get("status", "")
            if verbose:
                ram = q.get("ram", {})
                print(f"\r  {t:6.1f}s {status:16s} sync {ram.get('dirty-sync-count', 0):4d} "
                      f"sent {ram.get('transferred', 0) / MIB:8.1f} MiB left {ram.get('remaining', 0) / MIB:7.1f} MiB "
                      f"{ram.get('mbps', 0):7.1f} Mbit/s", end="", flush=True)
            if status in ("completed", "failed", "cancelled"):
                # QEMU 7.2 sets "completed" a moment before it fills total-time and downtime
                # (migration_calculate_complete runs after the state change): ask again
                for _ in range(50):
                    if status != "completed" or q.get("total-time"):
                        break
                    time.sleep(0.02)
                    q = qs.cmd("query-migrate")
                    rows[-1] = sample_row(t, q)
                final = q
                break
            if (sc["postcopy_after_sync"] is not None and postcopy_started_at is None and status == "active"
                    and q.get("ram", {}).get("dirty-sync-count", 0) >= sc["postcopy_after_sync"]):
                qs.cmd("migrate-start-postcopy")
                postcopy_started_at = t
            if t > sc["bound_s"] and status in ("active", "setup") and not cancelled_by_runner:
                qs.cmd("migrate_cancel")
                cancelled_by_runner = True
            if t > sc["bound_s"] + 60:
                raise RuntimeError(f"migration still {status} after {t:.0f} s")
        if verbose:
            print()
        t_end = time.monotonic() - t0
        dest: Dict[str, Any] = {}
        if status == "completed":
            time.sleep(2.0)  # the guest runs on the destination: check that it writes on
            dcon.poll(time.monotonic() - t0)
            dest["status"] = qd.cmd("query-status").get("status")
        else:
            time.sleep(1.0)
            con.poll(time.monotonic() - t0)
        dest["reports"] = dcon.reports
        qs.cmd("query-status")  # collect late events
        events = []
        for e in qs.events:
            ts = e.get("timestamp", {})
            et = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6 - wall0
            events.append({"t": round(et, 4), "event": e["event"], "data": e.get("data", {})})
        active = [r for r in rows if r[1] in ("active",)]
        mbps_col = COLUMNS.index("mbps")
        mbps = [r[mbps_col] for r in active if r[mbps_col]]
        result = {
            "format": FORMAT,
            "scenario": sc["name"],
            "doc": sc["doc"],
            "repeat": repeat,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall0)),
            "qemu": {"version": qs.version, "binary": qemu, "accel": accel},
            "host": {"loadavg_before": load_before, "loadavg_after": loadavg(), "nproc": os.cpu_count(),
                     "nice": os.nice(0)},
            "config": {"memory_mib": sc["memory_mib"], "max_bandwidth": sc["max_bandwidth"],
                       "downtime_limit_ms": sc["downtime_limit_ms"], "capabilities": sc["capabilities"],
                       "bound_s": sc["bound_s"], "postcopy_after_sync": sc["postcopy_after_sync"],
                       "parameters": parameters, "enabled_capabilities": [k for k, v in capabilities.items() if v]},
            "ram_blocks": ram_blocks,
            "guest": {"cmdline": sc["guest"], "header": con.header,
                      "fill_s": con.fill[0] if con.fill else None,
                      "filled_pages": con.fill[1] if con.fill else None,
                      "reports": con.reports},
            "calc_dirty_rate": dirty_rate,
            "columns": COLUMNS,
            "series": rows,
            "events": events,
            "final": final,
            "cancelled_by_runner": cancelled_by_runner,
            "postcopy_started_at": postcopy_started_at,
            "end_t": round(t_end, 3),
            "destination": dest,
            "check": {"median_mbps_active": statistics.median(mbps) if mbps else None,
                      "max_bandwidth_mbps": sc["max_bandwidth"] * 8 / 1e6},
        }
        return result
    except (QMPError, RuntimeError, OSError) as exc:
        said = []
        for side in ("src", "dst"):
            errs[side].flush()
            with open(os.path.join(work, side + ".err"), "rb") as f:
                text = f.read().decode("utf-8", "replace").strip()
            if text:
                said.append(f"{side} QEMU said: {text[-500:]}")
        raise RuntimeError(f"{sc['name']} #{repeat}: {exc}" + ("; " + "; ".join(said) if said else "")) from exc
    finally:
        stop(src, qs)
        stop(dst, qd)
        for f in errs.values():
            f.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", help="scenario names, or 'all' (see --list)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--repeats", type=int, default=3, help="runs per scenario (default 3)")
    ap.add_argument("--first", type=int, default=1, help="number of the first repeat (default 1)")
    ap.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    ap.add_argument("--accel", default="tcg", help="tcg (default) or kvm")
    ap.add_argument("--out", default=RESULTS, help="folder for the JSON results")
    ap.add_argument("--no-calc-dirty-rate", action="store_true", help="skip the calc-dirty-rate measurement")
    args = ap.parse_args(argv)
    if args.list or not args.scenarios:
        for name in SCENARIOS:
            sc = scenario(name)
            print(f"{name:18s} {sc['memory_mib']:4d} MiB  {sc['guest']:32s} {sc['doc']}")
        return 0
    names = list(SCENARIOS) if args.scenarios == ["all"] else args.scenarios
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}; known: {', '.join(SCENARIOS)}")
    if shutil.which(args.qemu) is None:
        ap.error(f"{args.qemu} not found (Debian: apt-get install qemu-system-x86)")
    build_guest()
    os.makedirs(args.out, exist_ok=True)
    # SIGTERM ends a run like Ctrl-C: the finally blocks stop the QEMUs this runner started
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    for n in names:
        for i in range(args.first, args.first + args.repeats):
            print(f"{n} #{i} (load {' '.join(map(str, loadavg()))})", flush=True)
            res = record(scenario(n), i, args.qemu, args.accel, not args.no_calc_dirty_rate)
            path = os.path.join(args.out, f"{n}-{i}.json")
            with open(path, "w") as f:
                json.dump(res, f, separators=(",", ":"))
                f.write("\n")
            fin = res["final"]
            print(f"  -> {fin.get('status')}: total {fin.get('total-time')} ms, downtime {fin.get('downtime')} ms, "
                  f"syncs {fin.get('ram', {}).get('dirty-sync-count')}, median {res['check']['median_mbps_active']} "
                  f"Mbit/s (cap {res['check']['max_bandwidth_mbps']:.0f}); {path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
