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
