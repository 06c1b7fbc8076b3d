"""Progress bars and Ctrl-C: simulate keeps its rounds and exits 130; a sweep stops its pending work at once."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from dirtylog.__main__ import main
from dirtylog.errors import Interrupted
from dirtylog.sweeps import grid, sweep

# A migration that never converges (2 GiB/s of writes over 1 Gbit/s), given up only after an hour.
ENDLESS = ["-m", "256MiB", "-w", "uniform:2GiB/s", "-b", "1Gbit/s", "--give-up-after", "1h", "--no-stop-when-stalled"]


def _start(tmp_path, *argv):
    # off a terminal (pipes), as in a script or CI: SIGINT must still be honoured at once. --progress draws
    # the bar anyway: its first bytes on stderr say that the run is under way.
    return subprocess.Popen([sys.executable, "-m", "dirtylog", *argv, "--progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _interrupt(p, after=0.5, wait_for=None):
    first = p.stderr.read(1)  # the progress bar: the migration (or the sweep) is running
    if wait_for is not None:  # read the bar until it matches `wait_for` (under load that can take a while)
        while not re.search(wait_for, first):
            c = p.stderr.read(1)
            assert c, f"the progress bar never showed {wait_for!r}: {first[-300:]!r}"
            first += c
    time.sleep(after)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)  # a hang guard, not a timing requirement
    return out, first + err


def test_ctrl_c_on_simulate_prints_the_partial_report_and_exits_130(tmp_path):
    p = _start(tmp_path, "simulate", *ENDLESS)
    out, err = _interrupt(p, after=0.2, wait_for=r"round [1-9]")  # round 0 is done
    assert p.returncode == 130, err
    assert "interrupted (Ctrl-C): a partial report" in out and "stopped by Ctrl-C at" in out
    assert "Rounds" in out and "\n    0 " in out  # the rounds so far
    assert "interrupted at" in err and "Traceback" not in err


def test_ctrl_c_on_simulate_json_is_marked_interrupted(tmp_path):
    p = _start(tmp_path, "simulate", *ENDLESS, "--json")
    out, err = _interrupt(p, after=0.2, wait_for=r"round [1-9]")  # round 0 is done
    assert p.returncode == 130, err
    d = json.loads(out)
    assert d["interrupted"] is True and d["downtime"] is None and d["rounds"]


def test_ctrl_c_on_sweep_cancels_the_rest_and_shows_what_finished(tmp_path):
    quick = ["-w", "hotspot:10MiB/s", "-w", "uniform:2GiB/s"]
    p = _start(tmp_path, "sweep", "-m", "256MiB", *quick, "-b", "1Gbit/s", "-d", "100ms,300ms,1s",
               "--give-up-after", "1h", "--no-stop-when-stalled", "--jobs", "2")
    out, err = _interrupt(p, after=3)
    assert p.returncode == 130, err
    assert "interrupted:" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    if "Migration plan" in out:  # the quick ones finished first
        assert "(interrupted)" in out and "hotspot:10MiB/s" in out and "uniform:2GiB/s" not in out


def test_sweep_progress_starts_before_the_first_result():
    calls = []
    res = sweep(grid(memory="16MiB", workload="hotspot:10MiB/s", bandwidth=["1Gbit/s", "10Gbit/s"]), jobs=1,
                progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 2, None)  # the bar is drawn (and its clock started) at once
    assert [c[0] for c in calls] == [0, 1, 2] and calls[-1][2] is res[-1]


def test_a_sweep_interrupted_in_process_returns_what_finished(monkeypatch):
    import dirtylog.sweeps as sweeps

    real = sweeps.run_config

    def second_is_interrupted(config, index=0, *args, **kw):
        if index == 1:
            raise KeyboardInterrupt
        return real(config, index, *args, **kw)

    monkeypatch.setattr(sweeps, "run_config", second_is_interrupted)
    with pytest.raises(Interrupted) as info:
        sweep(grid(memory="16MiB", workload="hotspot:10MiB/s", bandwidth=["1Gbit/s", "10Gbit/s", "25Gbit/s"]),
              jobs=1)
    assert [r.index for r in info.value.report] == [0]


def test_simulate_progress_bar_shows_the_run_not_the_round(capsys):
    rc = main(["simulate", "-m", "64MiB", "-w", "hotspot:300MiB/s,hot=50%", "-b", "400Mbit/s", "--progress",
               "--give-up-after", "2min"])
    err = capsys.readouterr().err
    assert rc == 0
    for text in ("/ 2 min", "left", "downtime", "300 ms"):
        assert text in err, text
