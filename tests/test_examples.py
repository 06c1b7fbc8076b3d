"""The examples in examples/ run (SimPy, from the test extra)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    path = EXAMPLES / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"{path} is not here (examples are in the source tree)")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_simpy_drives_a_migration_next_to_other_events():
    pytest.importorskip("simpy")
    ex = _load("simpy_migration")
    out = ex.run(memory="64MiB", workload="hotspot:100MiB/s", bandwidth="1Gbit/s", downtime_limit="100ms",
                 start="1s", tick="5ms", request_rate=500.0)
    r = out["report"]
    assert r.status == "completed" and r.verified is True
    assert out["ended_at"] >= 1.0 + r.total_time  # SimPy's clock carried the migration, started at t = 1 s
    assert out["log"] and out["log"][0]["time"] == pytest.approx(1.0)
    lat = out["latencies"]
    assert len(lat) > 100
    # requests caught by the switch-over waited for the resume: the worst latency reflects the downtime
    assert max(lat) > 0.5 * r.downtime
    assert min(lat) == pytest.approx(0.002)


def test_simpy_maintenance_window_cancels_and_nothing_is_lost():
    pytest.importorskip("simpy")
    ex = _load("simpy_migration")
    # a migration that would converge, but only after the window closes (round 0 alone takes 10.7 s); a
    # hopeless one no longer reaches the window: the early verdict ends it within its first pass
    out = ex.run(memory="256MiB", workload="hotspot:20MiB/s", bandwidth="200Mbit/s", window_closes="5s",
                 request_rate=50.0)
    r = out["report"]
    assert r.status == "cancelled" and r.verified is True and r.guest_running == "source"  # a user's cancel
    assert any("maintenance window" in n for n in out["notes"])


def test_simpy_example_main(capsys):
    pytest.importorskip("simpy")
    ex = _load("simpy_migration")
    assert ex.main(["--memory", "32MiB", "--workload", "hotspot:50MiB/s", "--bandwidth", "1Gbit/s"]) == 0
    out = capsys.readouterr().out
    assert "migration completed" in out and "requests" in out


def test_simpy_shared_link_splits_one_link_between_migrations_at_the_hosts_time():
    """Three migrations share a link: each gets capacity / running at SimPy's time, through
    set_bandwidth(at=...), scheduled on next_event_time() alone. One migration's report equals
    simulate() with its shares as BandwidthChange faults: the host's scheduling adds nothing."""
    pytest.importorskip("simpy")
    from dirtylog import Link, simulate
    from dirtylog.faults import BandwidthChange
    from dirtylog.specs import parse_workload

    ex = _load("simpy_shared_link")
    vms = (("a", "256MiB", "hotspot:20MiB/s", "0s"), ("b", "256MiB", "hotspot:60MiB/s", "0s"),
           ("c", "128MiB", "uniform:5MiB/s", "0.25s"))
    out = ex.run(vms=vms, link="2Gbit/s", drop_to="1Gbit/s", drop_at="0.6s", cancel=("b", "0.4s"), seed=3)
    r = out["reports"]
    assert r["b"].status == "cancelled" and r["b"].total_time == pytest.approx(0.4)
    assert r["a"].status == r["c"].status == "completed" and r["a"].verified and r["c"].verified
    # the shares: at every change, the running migrations' bandwidths add up to the capacity
    changes = sorted({out["starts"][n] + e["time"] for n in r for e in r[n].events if e["event"] == "bandwidth"})
    assert changes[:4] == pytest.approx([0.0, 0.25, 0.4, 0.6])
    for t in changes:
        capacity = 2e9 / 8 if t < 0.6 else 1e9 / 8
        running = [n for n in r if out["starts"][n] <= t < out["starts"][n] + r[n].total_time]
        share = {n: [e["bandwidth"] for e in r[n].events if e["event"] == "bandwidth"
                     and out["starts"][n] + e["time"] <= t + 1e-12][-1] for n in running}
        assert sum(share.values()) == pytest.approx(capacity), (t, share)
    # a's migration, as simulate() runs it with its shares as scheduled bandwidth changes
    shares = [e for e in r["a"].events if e["event"] == "bandwidth"]
    want = simulate(memory="256MiB", workload=parse_workload("hotspot:20MiB/s", seed=3),
                    link=Link(shares[0]["bandwidth"]),
                    faults=[BandwidthChange(e["time"], e["bandwidth"]) for e in shares[1:]])
    assert (r["a"].total_time, r["a"].downtime, r["a"].transferred) == (want.total_time, want.downtime,
                                                                        want.transferred)


def test_simpy_shared_link_main(capsys):
    pytest.importorskip("simpy")
    ex = _load("simpy_shared_link")
    assert ex.main(["--link", "2Gbit/s", "--drop-to", "1Gbit/s", "--drop-at", "1s", "--cancel", ""]) == 0
    out = capsys.readouterr().out
    assert all(f"vm{i}: " in out for i in range(3)) and "vm2: completed" in out


def test_every_dirtylog_name_in_the_docs_exists():
    """The guide told hosts to compare phases with ``dirtylog.Phase``, which did not exist (it was only
    ``dirtylog.migration.Phase``): every dotted ``dirtylog.`` name the docs and the README write resolves."""
    import importlib
    import re

    root = EXAMPLES.parent
    if not (root / "docs").is_dir():
        pytest.skip(f"{root / 'docs'} is not here (the docs are in the source tree)")
    pages = sorted((root / "docs").glob("*.rst")) + [root / "README.md"]
    missing = []
    for page in pages:
        for name in sorted(set(re.findall(r"\bdirtylog(?:\.[A-Za-z_]\w*)+", page.read_text()))):
            parts = name.split(".")
            if parts[-1] in ("h", "pc", "py", "rst", "md"):  # a file named dirtylog.h, not a Python name
                continue
            for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                try:
                    for attr in parts[i:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    missing.append(f"{page.name}: {name}")
                break
    assert not missing, missing
