"""The dirtylog command line, run in-process (main(argv)) and once as `python -m dirtylog`."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from dirtylog.__main__ import main
from dirtylog.errors import ConfigError
from dirtylog.specs import parse_terms, parse_workload, with_rate
from dirtylog.workloads import Hotspot, Idle, Mix, Sequential, Uniform, WorkingSet, Zipf, save_trace

SMALL = ["-m", "32MiB", "-w", "hotspot:50MiB/s", "-b", "1Gbit/s", "--vcpus", "2"]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------------------- simulate


def test_simulate_prints_rounds_summary_and_models(capsys):
    rc, out, err = run(capsys, "simulate", *SMALL)
    assert rc == 0, err
    for text in ("Live migration", "Rounds", "dirty pages", "exp. downtime", "final", "Status",
                 "completed (converged)", "Total time", "Downtime", "Transferred", "Verified", "geometric"):
        assert text in out
    assert err == ""
    assert all(line == line.rstrip() for line in out.splitlines())  # no padding in files and pipes


def test_simulate_json_is_the_full_report(capsys):
    rc, out, _ = run(capsys, "simulate", *SMALL, "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["status"] == "completed" and d["verified"] is True
    assert d["memory"] == 32 * 2**20 and d["vcpus"] == 2 and d["tracker"] == "pml"
    assert d["bandwidth"] == pytest.approx(1.25e8)
    assert d["rounds"][-1]["final"] is True
    assert "geometric" in d["models"]


def test_simulate_json_to_a_file_keeps_the_tables(capsys, tmp_path):
    path = tmp_path / "r.json"
    rc, out, err = run(capsys, "simulate", *SMALL, "--json", str(path), "--no-models")
    assert rc == 0
    assert "Rounds" in out and "geometric" not in out
    assert json.loads(path.read_text())["status"] == "completed"
    assert "written to" in err


def test_simulate_options_reach_the_engine(capsys):
    rc, out, _ = run(capsys, "simulate", "-m", "16MiB", "-w", "uniform:20MiB/s,seed=3", "-b", "100MiB/s",
                     "-d", "50ms", "-t", "ring", "--vcpus", "3", "--huge-pages", "lazy", "--zero-pages", "25%",
                     "--latency", "2ms", "--resume-time", "5ms", "--seed", "4", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["tracker"] == "ring" and d["vcpus"] == 3 and d["downtime_limit"] == pytest.approx(0.05)
    assert d["duplicate"] > 0
    assert d["downtime"] >= 0.007
    assert d["tracker_stats"]["splits"] > 0


def test_stop_rule_and_limits(capsys):
    # 1 GiB/s of writes over a slow link: never converges; a limit forces or aborts.
    base = ["simulate", "-m", "32MiB", "-w", "uniform:200MiB/s", "-b", "100MiB/s", "-d", "10ms", "--json"]
    rc, out, _ = run(capsys, *base, "--max-iterations", "3")
    d = json.loads(out)
    assert d["status"] == "completed" and d["converged"] is False and "iteration limit" in d["reason"]
    rc, out, _ = run(capsys, *base, "--max-iterations", "3", "--on-limit", "abort")
    d = json.loads(out)
    assert d["status"] == "failed" and d["verified"] is True
    rc, out, _ = run(capsys, *base, "--stop", "xen")
    assert json.loads(out)["dirty_sync_count"] <= 32
    rc, out, _ = run(capsys, *base, "--give-up-after", "1s")  # before the early verdict (6 syncs)
    d = json.loads(out)
    assert d["status"] == "failed" and "not converged after 1.00 s" in d["reason"]
    rc, out, _ = run(capsys, *base, "--timeout", "2s")
    assert "timeout" in json.loads(out)["reason"]


def test_auto_converge_throttles_and_shows_the_throttle(capsys):
    rc, out, _ = run(capsys, "simulate", "-m", "64MiB", "-w", "hotspot:300MiB/s,hot=50%", "-b", "400Mbit/s",
                     "--auto-converge", "--cpu-throttle-initial", "30", "--give-up-after", "2min")
    assert rc == 0
    assert "throttle" in out
    assert "30 %" in out


def test_dirty_limit_needs_the_ring_and_excludes_auto_converge(capsys):
    small = ["simulate", "-m", "64MiB", "-w", "hotspot:300MiB/s,hot=50%", "-b", "400Mbit/s", "--give-up-after", "1min"]
    # 500 ms: a ring-mode sync waits for the limited vCPU's sleep while it dirties (dirtylog.throttle.kick_wait)
    rc, out, _ = run(capsys, *small, "-t", "ring", "--dirty-limit", "--vcpu-dirty-limit", "5MB/s",
                     "--downtime-limit", "500ms", "--json")
    assert rc == 0 and json.loads(out)["status"] == "completed"
    rc, _, err = run(capsys, *small, "--dirty-limit")
    assert rc == 2 and "ring" in err
    rc, _, err = run(capsys, *small, "-t", "ring", "--dirty-limit", "--auto-converge")
    assert rc == 2 and "exclude" in err


def test_postcopy_policy_and_on_limit(capsys):
    small = ["simulate", "-m", "32MiB", "-w", "hotspot:300MiB/s", "-b", "200Mbit/s"]
    rc, out, _ = run(capsys, *small, "--policy", "postcopy", "--prepage", "4")
    assert rc == 0
    assert "completed (post-copy)" in out and "Post-copy" in out and "page requests" in out
    rc, out, _ = run(capsys, *small, "--max-iterations", "2", "--on-limit", "postcopy", "--json")
    d = json.loads(out)
    assert d["status"] == "completed" and d["postcopy_bytes"] > 0 and d["verified"] is True


def test_long_runs_show_the_first_and_last_rounds(capsys):
    rc, out, _ = run(capsys, "simulate", "-m", "16MiB", "-w", "uniform:100MiB/s", "-b", "200Mbit/s",
                     "--give-up-after", "20s", "--rounds", "4")
    assert rc == 0
    assert "rounds not shown (--rounds 0 shows all)" in out
    assert "failed" in out and "does not converge: pending holds steady" in out  # the early verdict


def test_progress_bar_only_when_forced(capsys):
    rc, out, err = run(capsys, "simulate", *SMALL)
    assert err == ""
    rc, out, err = run(capsys, "simulate", *SMALL, "--progress")
    assert rc == 0 and err != ""  # drawn on stderr, tables still on stdout
    assert "Rounds" in out


def test_trace_and_mix_workloads(capsys, tmp_path):
    path = tmp_path / "w.npz"
    t = np.arange(1, 2001, dtype=np.uint64) * 1_000_000  # a write per ms for 2 s
    save_trace(path, t, np.arange(2000, dtype=np.uint64) % 4096)
    rc, out, _ = run(capsys, "simulate", "-m", "16MiB", "-w", f"trace:{path}", "-b", "100MiB/s", "--json")
    assert rc == 0 and json.loads(out)["verified"] is True
    rc, out, _ = run(capsys, "simulate", "-m", "16MiB", "-w", "idle+sequential:10MiB/s,start=1MiB", "-b",
                     "100MiB/s", "--json")
    assert rc == 0 and json.loads(out)["guest_writes"] > 0


# --------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("argv, words", [
    (["simulate", "--memory", "4Gb"], "in bits"),
    (["simulate", "--memory", "lots"], "cannot read"),
    (["simulate", "--bandwidth", "10G"], "ambiguous"),
    (["simulate", "--downtime-limit=-1s"], "negative"),
    (["simulate", "--vcpus", "0"], ">= 1"),
    (["simulate", "--tracker", "dirty"], "'dirty' is not allowed (allowed: wp, pml, ring, clear)"),
    (["simulate", "--zero-pages", "150%"], "from 0 to 1 (0% to 100%), got '150%'"),
    (["simulate", "-w", "hotpot:1GiB/s"], "unknown kind"),
    (["simulate", "-w", "hotspot"], "missing rate"),
    (["simulate", "-w", "hotspot:1GiB/s,hot=3"], "hot= must be from 0 to 1 (0% to 100%), got '3'; for 3 % write '3%'"),
    (["simulate", "-w", "zipf:1GiB/s,q=1"], "unknown argument"),
    (["simulate", "-m", "16MiB", "-w", "trace:/no/such/file.npz"], "no such trace file"),
    (["simulate", "-m", "16MiB", "-w", "sequential:1GiB/s,start=1GiB"], "start"),
    (["simulate", "-m", "16MiB", "--page-size", "3000B"], "power of two"),
    (["simulate", "--json", "/no/such/folder/r.json"], "does not exist"),
    (["simulate", "--policy", "postcopy", "--postcopy-after-rounds", "0"], ">= 1"),
    (["simulate", "--frobnicate"], "unknown option --frobnicate"),
    (["sweep", "-b", "1Gbit/s,,2Gbit/s"], "comma-separated"),
    (["sweep", "--dirty-rate", "1G/s"], "ambiguous"),
    (["sweep", "-w", "workingset:1s:10%:1MiB/s", "--dirty-rate", "1MiB/s"], "no single rate"),
    (["dirty-rate", "--window", "0"], "> 0"),
    (["curve", "--windows", "1s,-2s"], "negative"),
    (["trackers", "--trackers", "wp,xx"], "unknown tracker"),
    (["bench", "--benchmarks", "/no/such/benchmarks"], "not available"),
])
def test_bad_values_give_one_line_and_status_2(capsys, argv, words):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dirtylog")
    assert "error:" in lines[0] and words in lines[0]
    assert "%%" not in lines[0]


@pytest.mark.parametrize("argv, words", [
    # a size, rate or time needs a unit on the command line, and the error shows how to write it
    (["simulate", "-b", "10"], ["argument -b/--bandwidth", "'10' has no unit", "'10Gbit/s'", "'10MiB/s'"]),
    (["simulate", "-d", "300"], ["argument -d/--downtime-limit", "'300ms'"]),
    (["simulate", "-m", "4"], ["argument -m/--memory", "'4GiB'"]),
    (["simulate", "--page-size", "4096"], ["--page-size", "has no unit", "'4096B'"]),
    (["sweep", "-b", "1Gbit/s,10"], ["argument -b/--bandwidth", "'10' has no unit"]),
    (["simulate", "--xbzrle-cache-size", "64"], ["--xbzrle-cache-size", "'64MiB'"]),
    # negative values reach the option's own parser
    (["simulate", "-d", "-1s"], ["argument -d/--downtime-limit", "negative"]),
    (["simulate", "-m", "-4GiB"], ["argument -m/--memory", "negative"]),
    (["simulate", "--latency", "-.5ms"], ["argument --latency", "negative"]),
    # errors found after parsing name the option, in command-line syntax
    (["simulate", "-m", "1EiB"], ["--memory must be at most"]),
    (["simulate", "-m", "64MiB", "--dirty-limit"], ["--dirty-limit needs", "--tracker ring"]),
    # typos: the nearest option or command
    (["simulate", "--bandwith", "1Gbit/s"], ["dirtylog simulate: error: unknown option --bandwith; did you mean "
                                             "--bandwidth?", "(see 'dirtylog simulate --help')"]),
    (["sweep", "-m", "4GiB", "extra"], ["dirtylog sweep: error: unexpected argument 'extra'",
                                        "(see 'dirtylog sweep --help')"]),
    (["simulat"], ["unknown command 'simulat'; did you mean simulate?"]),
    (["simulate", "--stop", "qmu"], ["'qmu'", "did you mean qemu?"]),
    (["sweep", "--trackers", "pml"], ["did you mean --tracker?"]),
    # no doubled percent signs
    (["simulate", "--cpu-throttle-initial", "120"], ["whole number of percent from 1 to 99, got '120'"]),
    (["simulate", "--cpu-throttle-initial", "0.2"], ["a number here is percent", "for 20 % write 20"]),
    (["simulate", "--zero-pages", "2"], ["(0% to 100%)"]),
    # the plot's format is checked before the run
    (["simulate", "--plot", "out.jpg2"], ["--plot out.jpg2", "'.jpg2' is not a picture format", ".png"]),
    (["sweep", "--heatmap", "out"], ["--heatmap out", "no suffix"]),
    # the allowed range, in the option's name; a choice typed in capitals
    (["dirty-rate", "--sample-pages", "5"], ["argument --sample-pages", "from 128 to 16384, got 5"]),
    (["curve", "--sample-pages", "99999"], ["argument --sample-pages", "from 128 to 16384"]),
    (["simulate", "-t", "PML"], ["'PML' is not allowed; did you mean pml?"]),
    # a spec's errors name its own arguments (hot=, not the Python API's hot_fraction)
    (["simulate", "-w", "hotspot:1GiB/s,hot=120%"], ["'hotspot:1GiB/s,hot=120%': hot= must be from 0 to 1 (0% to 100%), got '120%'"]),
    # record's errors name the subcommand (its program is not the subcommand's name)
    (["record"], ["dirtylog record: error: give the program to record after '--'"]),
    (["record", "-o", "x.txt", "--", "true"], ["dirtylog record: error:", "got 'x.txt'"]),
])
def test_cli_errors_say_how_to_write_it(capsys, argv, words):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0]
    assert "%%" not in lines[0] and "tracker='" not in lines[0] and "expected one argument" not in lines[0]


def test_bare_zero_needs_no_unit(capsys):
    rc, out, err = run(capsys, "simulate", *SMALL, "--latency", "0", "--resume-time", "0", "--json")
    assert rc == 0, err
    assert "Traceback" not in err


def test_help_version_and_bare_command(capsys):
    rc, out, _ = run(capsys)
    assert rc == 0 and "simulate" in out and "sweep" in out
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.startswith("dirtylog ")
    rc, out, _ = run(capsys, "simulate", "--help")
    assert rc == 0
    for text in ("--memory", "--workload", "--bandwidth", "--downtime-limit", "--tracker", "--vcpus", "--policy",
                 "--stop", "--max-iterations", "--timeout", "--on-limit", "--seed", "--huge-pages", "--zero-pages",
                 "--latency", "--json", "--plot", "hotspot:RATE", "workingset:"):
        assert text in out


# --------------------------------------------------------------------------------------- other commands


def test_trackers_side_by_side(capsys):
    rc, out, _ = run(capsys, "trackers", *SMALL, "--jobs", "1")
    assert rc == 0
    for mode in ("wp", "pml", "ring", "clear"):
        assert f"\n {mode} " in out or f"\n{mode} " in out
    assert "sim harvest" in out and "no dirty write lost" in out
    # a 10 ms downtime limit: the guest is sent live (with 300 ms its 32 MiB fit in the first pause)
    rc, out, _ = run(capsys, "trackers", *SMALL, "-d", "10ms", "--trackers", "wp,pml", "--jobs", "1", "--json")
    rows = json.loads(out)
    assert [r["tracker"] for r in rows] == ["wp", "pml"]
    wp, pml = rows
    assert wp["faults"] > 0 and wp["pml_full_exits"] == 0
    assert pml["pml_full_exits"] > 0 and pml["exits"] < wp["exits"]  # one exit per 512 pages, not per page
    assert pml["guest_slowdown"] < wp["guest_slowdown"]
    assert wp["sim_harvest_seconds"] > 0


def test_dirty_rate_three_modes(capsys):
    rc, out, _ = run(capsys, "dirty-rate", "-m", "64MiB", "-w", "uniform:40MiB/s", "--vcpus", "2", "--json")
    assert rc == 0
    rows = json.loads(out)
    assert [r["mode"] for r in rows] == ["page-sampling", "dirty-bitmap", "dirty-ring"]
    bitmap = rows[1]["dirty_rate_mib_s"]
    assert 0 < bitmap <= 40
    assert abs(rows[0]["dirty_rate_mib_s"] - bitmap) < 5 * rows[0]["stderr_mib_s"] + 1
    assert len(rows[2]["vcpu_rates"]) == 2
    rc, out, _ = run(capsys, "dirty-rate", "-m", "64MiB", "-w", "uniform:40MiB/s", "--mode", "dirty-bitmap",
                     "--window", "500ms")
    assert rc == 0 and "dirty-bitmap" in out and "page-sampling" not in out
    # rates as units.format_dirty_rate writes them (the header had "1,024.0 MiB/s" for 1 GiB/s)
    rc, out, _ = run(capsys, "dirty-rate", "-m", "64MiB", "-w", "uniform:1GiB/s", "--mode", "dirty-ring",
                     "--window", "100ms", "--vcpus", "2")
    assert rc == 0 and "the workload writes 1.00 GiB/s (262,144 pages/s)" in " ".join(out.split())
    assert re.search(r"per-vCPU dirty rates \(dirty-ring\): \d+ MiB/s, \d+ MiB/s", " ".join(out.split())), out


def test_dirty_rate_says_why_dirty_ring_reads_higher(capsys):
    # a hot set rewritten faster than the rings fill: dirty-ring counts a page again after each reap
    rc, out, _ = run(capsys, "dirty-rate", "-m", "256MiB", "-w", "hotspot:1GiB/s", "--mode", "dirty-bitmap",
                     "--json")
    exact = json.loads(out)[0]["dirty_pages"]
    rc2, out, _ = run(capsys, "dirty-rate", "-m", "256MiB", "-w", "hotspot:1GiB/s", "--mode", "dirty-ring", "--json")
    ring = json.loads(out)[0]["dirty_pages"]
    assert rc == rc2 == 0 and ring > 1.5 * exact
    rc, out, _ = run(capsys, "dirty-rate", "-m", "256MiB", "-w", "hotspot:1GiB/s")
    text = " ".join(out.split())
    assert rc == 0 and (f"dirty-ring counts ring entries: a page written again after a full ring was reaped (its pages "
                        f"protected again) counts again, so a guest that rewrites a hot set reads higher than "
                        f"dirty-bitmap (here {ring / exact:.2f}x)") in text, text
    rc, out, _ = run(capsys, "dirty-rate", "-m", "256MiB", "-w", "hotspot:1GiB/s", "--mode", "dirty-bitmap")
    assert rc == 0 and "ring entries" not in out


def test_curve_then_replay_it(capsys, tmp_path):
    path = tmp_path / "curve.json"
    rc, out, _ = run(capsys, "curve", "-m", "64MiB", "-w", "zipf:20MiB/s,s=1.1", "--windows", "0.1s,0.5s,1s,2s,5s",
                     "--json", str(path))
    assert rc == 0 and "dirty rate" in out
    d = json.loads(path.read_text())
    assert d["windows"] == [0.1, 0.5, 1.0, 2.0, 5.0]
    assert d["dirty_pages"] == sorted(d["dirty_pages"])
    rc, out, _ = run(capsys, "simulate", "-m", "64MiB", "-w", f"curve:{path}", "-b", "1Gbit/s", "--json")
    assert rc == 0 and json.loads(out)["verified"] is True


def test_curve_of_a_recording_shows_the_writes_it_made(capsys, tmp_path):
    # 10,000 pages written in the first 10 ms, then 100 pages/s: the 100 ms window's writes are the burst's,
    # not the trace's mean rate x 100 ms (110), which the column used to show beside 10,000 dirty pages
    path = tmp_path / "burst.npz"
    np.savez(path, time_ns=np.concatenate([np.linspace(0, 9e6, 10_000), np.arange(1000) * 1e7 + 2e7]).astype(np.int64),
             page=np.concatenate([np.arange(10_000), np.arange(1000) % 20]).astype(np.int64))
    rc, out, _ = run(capsys, "curve", str(path), "-m", "64MiB", "--windows", "100ms,5s")
    assert rc == 0
    rows = [line.split() for line in out.splitlines() if line.startswith(("100 ms", "5.00 s"))]
    assert [r[2] for r in rows] == ["10,008", "10,498"], out  # page writes: counted in each window
    assert [r[3] for r in rows] == ["10,000", "10,000"], out  # dirty pages (the later writes rewrite 20 of them)


def test_curve_of_a_trace_ends_with_the_whole_trace(capsys, tmp_path):
    # 2,500 distinct pages written over 2.5 s, then nothing: windows past the last record would only add
    # idle time (the default ladder goes to 10 s), so the curve ends with one window of the whole trace
    path = tmp_path / "short.npz"
    save_trace(path, np.arange(2500) * 1_000_000, np.arange(2500))
    rc, out, err = run(capsys, "curve", str(path), "-m", "64MiB", "--json", "-")
    assert rc == 0
    d = json.loads(out)
    assert d["windows"][:-1] == [0.1, 0.2, 0.5, 1.0, 2.0] and d["windows"][-1] == pytest.approx(2.499, abs=1e-6)
    assert d["dirty_pages"] == [100, 200, 500, 1000, 2000, 2500]  # the last window holds every record
    assert "the trace ends 2.50 s after the start (its last record)" in err and "in place of 5.00 s, 10.0 s" in err
    # windows given on the command line alike; those within the trace stay as given
    rc, out, err = run(capsys, "curve", "-m", "64MiB", "-w", f"trace:{path}", "--windows", "1s,3s,10s", "--json", "-")
    assert rc == 0 and json.loads(out)["dirty_pages"] == [1000, 2500] and "in place of 3.00 s, 10.0 s" in err
    # from --start on the windows are counted from there
    rc, out, err = run(capsys, "curve", str(path), "--start", "2s", "--windows", "100ms,1s", "--json", "-")
    assert rc == 0 and json.loads(out)["dirty_pages"] == [100, 500] and "499 ms after the start" in err
    # a trace replayed over and over writes on: nothing to clip
    rc, out, err = run(capsys, "curve", "-m", "64MiB", "-w", f"trace:{path},repeat=yes", "--windows", "1s,10s",
                       "--json", "-")
    assert rc == 0 and json.loads(out)["windows"] == [1.0, 10.0] and err == ""
    rc, out, err = run(capsys, "curve", str(path), "--start", "3s")
    assert rc == 2 and "last record is at 2.50 s: from --start 3.00 s on it writes nothing" in err


def test_sweep_table_csv_and_json(capsys, tmp_path):
    csv_path = tmp_path / "plan.csv"
    rc, out, _ = run(capsys, "sweep", "-m", "32MiB", "-w", "hotspot", "--dirty-rate", "20MiB/s,200MiB/s",
                     "-b", "200Mbit/s,1Gbit/s", "-d", "30ms,300ms", "--vcpus", "1", "--jobs", "1",
                     "--give-up-after", "20s", "--csv", str(csv_path))
    assert rc == 0
    assert "Migration plan" in out and "verdict" in out
    assert "converges" in out and "does not converge" in out
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 8
    assert {r["workload"] for r in rows} == {"hotspot:20MiB/s", "hotspot:200MiB/s"}
    rc, out, _ = run(capsys, "sweep", "-m", "32MiB", "-w", "uniform:10MiB/s", "-b", "1Gbit/s", "-d", "300ms",
                     "--jobs", "1", "--json")
    (row,) = json.loads(out)
    assert row["verdict"] == "converges" and row["status"] == "completed"


def test_bench_without_a_suite_says_so(capsys, tmp_path):
    rc, out, err = run(capsys, "bench", "--benchmarks", str(tmp_path / "none"))
    assert rc == 2 and "not a folder" in err and "--benchmarks DIR" in err
    (tmp_path / "test_other.py").write_text("def test_x(): pass\n")  # a folder, but not the suite: no pytest run
    rc, out, err = run(capsys, "bench", "--benchmarks", str(tmp_path))
    assert rc == 2 and "no benchmark (bench_*.py)" in err and "running:" not in err


def test_python_m_dirtylog_simulate(tmp_path):
    # run away from the source tree: `python -m` puts the working directory first on sys.path
    r = subprocess.run([sys.executable, "-m", "dirtylog", "simulate", "--memory", "256MiB", "--workload",
                        "hotspot:200MiB/s", "--bandwidth", "10Gbit/s"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "completed (converged)" in r.stdout and "Verified" in r.stdout
    r = subprocess.run([sys.executable, "-m", "dirtylog", "simulate", "--memory", "256XB"], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


# --------------------------------------------------------------------------------------- workload specs


@pytest.mark.parametrize("spec, cls, attrs", [
    ("uniform:500MiB/s", Uniform, {"rate": "500MiB/s"}),
    ("hotspot:2GiB/s", Hotspot, {"rate": "2GiB/s", "hot_fraction": 0.1, "hot_share": 0.9}),
    ("hotspot:1GiB/s,hot=5%,share=0.95,seed=3", Hotspot, {"hot_fraction": 0.05, "hot_share": 0.95, "seed": 3}),
    ("hotspot:1GiB/s,0.2,80%", Hotspot, {"hot_fraction": 0.2, "hot_share": 0.8}),
    ("zipf:1GiB/s,s=1.2", Zipf, {"s": 1.2}),
    ("sequential:100MiB/s,start=1MiB,length=50%,stride=3", Sequential,
     {"start": "1MiB", "length": 0.5, "stride": 3}),
    ("idle", Idle, {"rate": 50}),
    ("idle:74", Idle, {"rate": "74"}),
    ("workingset:2s:10%:800MiB/s,1s:512MiB:200MiB/s,repeat=no", WorkingSet, {"repeat": False}),
])
def test_specs_build_workloads(spec, cls, attrs):
    w = parse_workload(spec)
    assert type(w) is cls
    for k, v in attrs.items():
        assert getattr(w, k) == v


def test_spec_sums_seeds_and_none():
    w = parse_workload("uniform:10MiB/s+hotspot:1GiB/s", seed=9)
    assert isinstance(w, Mix) and [type(c).__name__ for c in w.components] == ["Uniform", "Hotspot"]
    assert all(c.seed == 9 for c in w.components)
    assert parse_workload("hotspot:1GiB/s,seed=2", seed=9).seed == 2
    assert parse_workload("none") is None
    ws = parse_workload("workingset:2s:10%:800MiB/s,1s:512MiB:200MiB/s")
    assert ws.phases == ((2.0, 0.1, "800MiB/s"), (1.0, "512MiB", "200MiB/s"))
    assert [t.kind for t in parse_terms("mix:idle+seq:5")] == ["idle", "sequential"]


@pytest.mark.parametrize("spec", ["", "+", "uniform:1GiB/s+", "nope:1", "uniform", "uniform:1GiB/s,2",
                                  "hotspot:1GiB/s,hot=x", "hotspot:1GiB/s,hot=1%,hot=2%", "zipf:1GiB/s,s=-1",
                                  "workingset:1s:10%", "workingset", "trace:", "curve:/no/file.json"])
def test_bad_specs_raise_config_errors(spec):
    with pytest.raises(ConfigError):
        parse_workload(spec)


def test_with_rate():
    assert with_rate("hotspot", "1GiB/s") == "hotspot:1GiB/s"
    assert with_rate("hotspot:2GiB/s,hot=5%", "100MiB/s") == "hotspot:100MiB/s,hot=5%"
    assert with_rate("zipf:rate=1,s=2", "5") == "zipf:5,s=2"
    with pytest.raises(ConfigError):
        with_rate("uniform:1+idle", "5")


def test_warnings_are_one_line_each(capsys, tmp_path):
    # a convex "curve" cannot be fitted by a Poisson mixture: the fit warns
    path = tmp_path / "convex.json"
    path.write_text(json.dumps({"windows": [1, 2, 3], "dirty_pages": [10, 20, 1000], "total_pages": 10000}))
    rc, out, err = run(capsys, "curve", "--memory", "64MiB", "--workload", f"curve:{path}", "--windows", "1s")
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 0 and lines and all(x.startswith("dirtylog curve: warning: ") for x in lines)


@pytest.mark.parametrize("argv", [
    ("curve", "--memory", "64MiB", "--workload", "curve:{path}", "--windows", "1s"),  # the fit warns
    ("simulate", "--auto-converge", "--cpu-throttle-initial", "0.2"),
    ("simulate", "-w", "hotspot:1GiB/s,hot=200%"),
    ("simulate", "-m", "4096"),
    ("simulate", "--trackr", "pml"),
])
def test_messages_wrap_at_words_on_a_terminal_and_stay_one_line_in_a_pipe(capsys, monkeypatch, tmp_path, argv):
    """Errors and warnings fit a terminal of 40-80 columns, broken only at spaces, their later lines
    indented; into a pipe or a file (capsys) each stays one line, as the other tests read them."""
    import dirtylog.cli as cli

    path = tmp_path / "convex.json"
    path.write_text(json.dumps({"windows": [1, 2, 3], "dirty_pages": [10, 20, 1000], "total_pages": 10000}))
    argv = tuple(a.format(path=path) for a in argv)
    rc, _, piped = run(capsys, *argv)
    flat = [x for x in piped.splitlines() if x.strip()]
    assert flat and all(x.startswith("dirtylog ") for x in flat)
    for columns in (80, 40):
        monkeypatch.setattr(cli, "_stderr_columns", lambda c=columns: c)
        rc2, _, err = run(capsys, *argv)
        lines = err.rstrip("\n").split("\n")
        assert rc2 == rc
        assert all(len(x) <= columns or " " not in x.strip() for x in lines), err
        messages = [m for m in re.split(r"\n(?! )", err.rstrip("\n"))]
        assert [" ".join(m.split()) for m in messages] == [" ".join(x.split()) for x in flat]
        assert any(len(x) > columns for x in flat) == (len(lines) > len(flat))


def test_notices_wrap_on_a_terminal_as_errors_do(capsys, monkeypatch, tmp_path):
    """"... written to PATH" notices go through the one message printer (cli._tell): wrapped at spaces
    on a terminal, one line into a pipe."""
    import dirtylog.cli as cli

    path = tmp_path / ("a-folder-name-long-enough-to-wrap " * 2).strip() / "r.json"
    path.parent.mkdir()
    rc, _, piped = run(capsys, "simulate", *SMALL, "--json", str(path), "--no-models")
    assert rc == 0 and piped.strip() == f"report written to {path}"
    monkeypatch.setattr(cli, "_stderr_columns", lambda: 40)
    rc, _, err = run(capsys, "simulate", *SMALL, "--json", str(path), "--no-models")
    lines = err.rstrip("\n").split("\n")
    assert rc == 0 and len(lines) > 1 and all(x.startswith("  ") for x in lines[1:])
    assert " ".join(" ".join(x.split()) for x in lines) == " ".join(piped.split())


@pytest.mark.parametrize("name, content, words", [
    ("t.npy", b"garbage", "not a valid .npy array file"),
    ("t.npy", b"\x93NUMPY\x01\x00garbage", "not a valid .npy array file"),
    ("t.npz", b"PK\x03\x04garbage", "not a valid .npz archive"),
    ("c.json", b'{"windows": [1, 2], "dirty', "is not valid JSON (line 1, column"),
    ("c.json", b'{"windows": [1, 2]}', "has no 'dirty_pages' field"),
    ("c.json", b"[1, 2]", "does not hold a dirty curve"),
])
def test_corrupt_workload_files_are_described_in_dirtylogs_words(capsys, tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    kind = "curve" if name.endswith(".json") else "trace"
    rc, out, err = run(capsys, "simulate", "-m", "16MiB", "-w", f"{kind}:{path}")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert words in err and str(path) in err
    for foreign in ("allow_pickle", "pickled", "Unterminated", "Expecting", "KeyError", "Traceback"):
        assert foreign not in err


def test_only_dirtylogs_own_warnings_are_dirtylog_warnings(capsys, monkeypatch, tmp_path):
    import warnings

    import dirtylog.cli as cli

    real = cli.cmd_simulate

    def noisy(args):
        warnings.warn("a library's deprecation notice", DeprecationWarning)
        warnings.warn("some other package's warning", UserWarning)  # attributed to this test file
        return real(args)

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), noisy))
    curve = tmp_path / "c.csv"  # not concave: DirtyCurve's fit warns
    curve.write_text("window,dirty_pages\n0.1,10\n1,100\n2,6000\n4,6050\n")
    with warnings.catch_warnings(record=True) as seen:  # the other package's warning goes to Python's own
        warnings.simplefilter("default")
        rc, out, err = run(capsys, "simulate", *SMALL, "-w", f"curve:{curve},total=8192")
    assert rc == 0
    assert any("some other package" in str(w.message) for w in seen)
    assert "deprecation notice" not in err
    assert "dirtylog simulate: warning: some other package" not in err
    assert "dirtylog simulate: warning: DirtyCurve: the best fit misses" in err


def _with_func(p, fn):
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    sub.choices["simulate"].set_defaults(func=fn)
    return p


@pytest.mark.parametrize("command", ["simulate", "sweep", "trackers", "dirty-rate", "curve", "advise", "record",
                                     "validate", "bench"])
def test_help_fits_80_columns(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "80")
    rc, out, _ = run(capsys, command, "--help")
    assert rc == 0
    wide = [line for line in out.splitlines() if len(line) > 80]
    assert not wide, f"{command} --help has lines over 80 columns: {wide}"


def test_every_command_shows_examples_that_parse(capsys, monkeypatch):
    import shlex

    from dirtylog.cli import EXAMPLES, build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    assert isinstance(sub.choices, dict)  # the subcommands' parsers by name
    assert set(EXAMPLES) == set(sub.choices)  # a new command gets its examples too
    monkeypatch.setenv("COLUMNS", "80")
    for command, lines in EXAMPLES.items():
        _, out, _ = run(capsys, command, "--help")
        assert "examples:\n" + "".join(f"  {line}\n" for line in lines) in out, command
        for line in lines:
            argv = shlex.split(line.split("  #")[0])
            assert argv[:2] == ["dirtylog", command]
            args = p.parse_args(argv[1:])  # a bad option or value would exit with status 2
            assert args.func.__name__ == "cmd_" + command.replace("-", "_")


def test_every_valued_policy_option_says_its_default(capsys, monkeypatch):
    # --max-iterations, --timeout, --max-bandwidth... said nothing when their policy default is None (unset)
    from dirtylog.config import KNOBS

    monkeypatch.setenv("COLUMNS", "80")
    rc, out, _ = run(capsys, "simulate", "--help")
    assert rc == 0
    # each option's entry: its line and the indented lines of its help after it, joined
    entries = {m.group(1): " ".join(m.group(0).split())
               for m in re.finditer(r"^  (?:-\w [A-Z]+, )?(--[\w-]+).*\n(?: {8,}.*\n)*", out, re.M)}
    for k in KNOBS:
        if k.kind != "flag":
            assert "(default" in entries[k.option], entries[k.option]
    assert "at most N pre-copy rounds after round 0 (default: no cap; 28 with --stop xen)" in entries["--max-iterations"]
    assert entries["--max-bandwidth"].endswith("(default: no cap)")


def test_hints_name_the_negated_option_as_written():
    from dirtylog.cli import cli_words

    assert cli_words("PreCopy(stop_when_stalled=False) simulates that") == "--no-stop-when-stalled simulates that"
    assert cli_words("verify=False") == "--no-verify"
    assert cli_words("auto_converge=False") == "without --auto-converge"
