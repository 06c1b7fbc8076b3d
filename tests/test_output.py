"""What users read: one text renderer for str(report) and the command line, fitted to 80 and 120 columns."""
from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest

import dirtylog
from dirtylog.__main__ import main
from dirtylog.render import plural

SMALL = ["-m", "32MiB", "-w", "hotspot:50MiB/s", "-b", "1Gbit/s"]


def run(capsys, monkeypatch, columns, *argv):
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("columns", [80, 120])
def test_simulate_fits_the_terminal_and_keeps_round_and_exits(capsys, monkeypatch, columns):
    argv = ["simulate", "-m", "64MiB", "-w", "hotspot:300MiB/s,hot=50%", "-b", "400Mbit/s", "--auto-converge",
            "--rounds", "6"]
    rc, out, _ = run(capsys, monkeypatch, columns, *argv)
    assert rc == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    header = next(line for line in lines if line.startswith("round"))
    for col in ("round", "duration", "sent", "dirty pages", "exp. downtime", "exits", "throttle"):
        assert col in header, (columns, header)
    if columns >= 120:
        assert "slowdown" in header and "throughput" in header and "narrow terminal" not in out
        setup = next(line for line in lines if line.startswith("setup"))
        # the setup sends nothing: no throughput (it read "0 bit/s"), then its exits and its slowdown (2 decimals)
        assert "bit/s" not in setup and re.search(r"\s-\s+[\d,]+\s+\d+\.\d\d %", setup), setup
    else:
        assert "narrow terminal:" in out
    assert any(line.startswith("final") for line in lines)
    assert "rounds not shown (--rounds 0 shows all)" in out
    # the measured columns say what they hold (dirty/s is pages per second, as QEMU's dirty-pages-rate), and
    # only the columns shown: at 80 columns the slowdown is dropped, and so is its note
    text = " ".join(out.split())
    assert "dirty pages: found by the sync that ended the round;" in text
    assert "exp. downtime: what the sync left / bandwidth (QEMU's expected-downtime)" in text
    assert "exits: VM exits caused by dirty tracking" in text
    assert ("slowdown: share of vCPU time lost to them" in text) == ("slowdown" in header)
    assert ("dirty/s: those pages per second of the round (QEMU's dirty-pages-rate)" in text) == ("dirty/s" in header)


@pytest.mark.parametrize("columns", [80, 120])
def test_sweep_and_trackers_fit_the_terminal(capsys, monkeypatch, columns):
    rc, out, _ = run(capsys, monkeypatch, columns, "sweep", "-m", "64MiB", "-w", "hotspot:1GiB/s", "-b",
                     "1Gbit/s,10Gbit/s", "-d", "100ms", "--give-up-after", "5s", "--jobs", "1")
    assert rc == 0 and max(len(line) for line in out.splitlines()) <= columns
    assert "does not converge" in out and "converges" in out
    # the note explains only the columns shown ("rounds" goes first at 80 columns)
    header = out.splitlines()[1]
    assert ("rounds:" in out) == (" rounds " in f" {header} "), out
    rc, out, _ = run(capsys, monkeypatch, columns, "trackers", "-m", "16MiB", "-w", "hotspot:50MiB/s", "-b",
                     "1Gbit/s", "--jobs", "1", "--harvest-window", "100ms")
    assert rc == 0 and max(len(line) for line in out.splitlines()) <= columns
    for t in ("wp", "pml", "ring", "clear"):
        assert f"\n{t} " in out
    header = next(line for line in out.splitlines() if line.startswith("tracker"))
    for col in ("sim harvest", "rounds"):
        assert (f"{col}:" in out) == (col in header), out
    # slowdown as simulate shows it (one formatter): two decimals
    assert all(re.search(r"\s\d+\.\d\d %\s", line) for line in out.splitlines() if line.startswith(("wp ", "pml ")))


def test_str_report_is_the_command_lines_text(capsys, monkeypatch):
    rc, out, _ = run(capsys, monkeypatch, 100, "simulate", *SMALL)
    r = dirtylog.simulate(memory="32MiB", workload="hotspot:50MiB/s", bandwidth="1Gbit/s")
    body = r.render(100)
    assert rc == 0
    assert body in out  # the command line adds only its title (and colour, on a terminal)
    from dirtylog.render import output_width

    w = output_width()  # what str() fits to; the tables' notes wrap to it
    assert r.rounds_table(w) in str(r) and r.summary(w) in str(r)


def test_one_round_count_everywhere(capsys, monkeypatch):
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *SMALL, "--json")
    d = json.loads(out)
    n = d["precopy_rounds"]
    assert n == sum(1 for x in d["rounds"] if not x["final"])
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *SMALL)
    assert f"{n} pre-copy round" in out
    sim = next(line for line in out.splitlines() if line.startswith("simulated"))
    assert sim.split()[1] == str(n)
    rows = [line.split()[0] for line in out.splitlines()[3:] if line[:5].strip().isdigit()]
    assert rows == [str(i) for i in range(n)]
    rc, out, _ = run(capsys, monkeypatch, 120, "sweep", *SMALL, "-d", "300ms", "--json")
    assert json.loads(out)[0]["rounds"] == n


def test_a_failed_runs_downtime_is_missing_not_zero(capsys, monkeypatch):
    argv = ["-m", "32MiB", "-w", "uniform:200MiB/s", "-b", "100MiB/s", "-d", "10ms", "--max-iterations", "2",
            "--on-limit", "abort"]
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *argv, "--json")
    d = json.loads(out)
    assert d["status"] == "failed" and d["downtime"] is None
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *argv)
    assert "Downtime           - (no switch-over" in out
    sim = next(line for line in out.splitlines() if line.startswith("simulated"))
    assert sim.split()[4] == "-"  # simulated, rounds, total time (2 words), downtime
    rc, out, _ = run(capsys, monkeypatch, 120, "sweep", *argv, "--csv")
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["downtime"] == "" and row["verdict"] == "does not converge"
    r = dirtylog.simulate(memory="32MiB", workload="uniform:200MiB/s", bandwidth="100MiB/s", downtime_limit="10ms",
                          max_iterations=2, on_limit="abort")
    assert math.isnan(r.downtime) and "0 s" not in r.summary().split("Downtime")[1].splitlines()[0]


def test_plurals():
    assert plural(1, "round") == "1 round" and plural(3, "round") == "3 rounds"
    assert plural(1, "cache miss", "cache misses") == "1 cache miss" and plural(1200, "sync") == "1,200 syncs"


def test_operator_fields(capsys, monkeypatch):
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *SMALL, "--xbzrle", "--xbzrle-cache-size", "4MiB",
                     "--multifd-channels", "4", "--channel-bandwidth", "200Mbit/s", "--json")
    d = json.loads(out)
    assert d["memory_remaining"] == 0 and d["mbps"] > 0 and d["pages_per_second"] > 0
    assert d["compression"]["xbzrle"]["cache_size"] == 4 * 2**20
    assert d["compression"]["multifd"]["channels"] == 4 and d["multifd_bytes"] > 0
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *SMALL, "--xbzrle", "--xbzrle-cache-size", "4MiB",
                     "--multifd-channels", "4", "--channel-bandwidth", "200Mbit/s")
    for label in ("Remaining", "Throughput", "mbps", "pages/s", "XBZRLE", "cache 4.00 MiB", "encoding rate",
                  "Multifd", "4 channels"):
        assert label in out, label


def test_throttle_summaries(capsys, monkeypatch):
    small = ["-m", "64MiB", "-w", "hotspot:300MiB/s,hot=50%", "-b", "400Mbit/s", "--give-up-after", "1min"]
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *small, "--auto-converge")
    line = next(x for x in out.splitlines() if x.startswith("Throttle"))
    assert "auto-converge 20 % -> 30 %" in line and "throttled away" in out
    rc, out, _ = run(capsys, monkeypatch, 120, "simulate", *small, "-t", "ring", "--vcpus", "2", "--dirty-limit",
                     "--vcpu-dirty-limit", "5MB/s")
    # in MiB/s, as QEMU counts a vcpu-dirty-limit (and as every dirty rate is shown)
    assert "dirty-limit 4.77 MiB/s per vCPU, engaged at" in out and "vCPU throttles up to" in out


def test_models_geometric_uses_the_measured_dirty_rate_and_cloudsim_has_no_downtime():
    r = dirtylog.simulate(memory="64MiB", workload="hotspot:300MiB/s", bandwidth="1Gbit/s")
    g = r.models["geometric"]
    assert g["dirty_rate_measured"] is True
    live = [x for x in r.rounds if not x.final]
    measured = sum(x.dirty_pages for x in live) / sum(x.duration for x in live) * (r.page_size + 8)
    assert g["dirty_rate"] == pytest.approx(measured)
    assert g["dirty_rate"] < 300 * 2**20  # a hot spot's rewrites are not new dirty pages
    cloud = next(line for line in r.models_table().splitlines() if line.startswith("cloudsim"))
    assert cloud.split()[1] == "-" and cloud.split()[4] == "-" and "0 s" not in cloud
    # a dirty rate in MiB/s, as dirty-rate, curve and record print dirty rates
    from dirtylog.units import format_size

    assert f"geometric: fed the measured dirty rate, {format_size(g['dirty_rate'])}/s" in r.render(None)
    assert "MiB/s" in format_size(g["dirty_rate"]) + "/s"


def test_hints_use_command_line_syntax(capsys, monkeypatch):
    argv = ["-m", "16MiB", "-w", "uniform:100MiB/s", "-b", "200Mbit/s", "--give-up-after", "3s"]
    rc, out, _ = run(capsys, monkeypatch, None, "simulate", *argv)
    assert "set --timeout and --on-limit" in out and "PreCopy(" not in out
    rc, out, _ = run(capsys, monkeypatch, None, "simulate", *argv[:6], "-d", "10ms", "--max-iterations", "2")
    assert "(--on-limit force)" in out and "on_limit=" not in out


@pytest.mark.parametrize("columns", [80, 120])
def test_dirty_rate_and_curve_fit_the_terminal(capsys, monkeypatch, columns):
    rc, out, _ = run(capsys, monkeypatch, columns, "dirty-rate", "-m", "64MiB", "-w", "zipf:100MiB/s", "--vcpus",
                     "4", "--window", "200ms")
    assert rc == 0 and max(len(line) for line in out.splitlines()) <= columns  # the heading too
    assert "per-vCPU dirty rates (dirty-ring):" in out and "dirty-bitmap" in out
    rc, out, _ = run(capsys, monkeypatch, columns, "curve", "-m", "64MiB", "-w", "hotspot:100MiB/s", "--windows",
                     "100ms,1s")
    table = [line for line in out.splitlines() if line[:1] in ("w", "-") or line[:1].isdigit()]
    assert rc == 0 and max(len(line) for line in table) <= columns


def test_wrap_breaks_only_where_the_text_has_a_space():
    """Styled segments join as written: a segment that does not start with a space continues the
    word before it, and a leading space is not doubled when the text wraps."""
    from dirtylog.render import plain, wrap

    value = [("Migration plan", "bold"), (": 18 configurations, 1 vCPU, tracker pml", "")]
    text = plain(wrap("", value, -1, 24))
    assert text.splitlines()[0] == "Migration plan: 18" and "  " not in text
    assert " ".join(text.split()) == "Migration plan: 18 configurations, 1 vCPU, tracker pml"
    text = plain(wrap("Downtime", [("276 ms", "good"), (" (limit 300 ms) and some more words", "")], 8, 30))
    assert text.splitlines()[0] == "Downtime  276 ms (limit" and all(ln.startswith(" " * 10)
                                                                      for ln in text.splitlines()[1:])
    assert plain(wrap("", value, -1, None)) == "Migration plan: 18 configurations, 1 vCPU, tracker pml"


def test_a_table_title_wraps_to_the_width():
    from dirtylog.render import Column, plain, table

    title = "noconverge (3 runs): a CPU-bound writer dirtying faster than max-bandwidth: never converges"
    lines = plain(table([Column("a", "left"), Column("b")], [(["x", "1"], "")], 40, title=title)).splitlines()
    assert max(len(line) for line in lines) <= 40 and " ".join(" ".join(lines[:3]).split()).startswith(title)


def test_start_times_that_print_alike_get_decimals():
    # rounds of 58 ms five minutes in all printed "5 min 40 s" (a 256 GiB guest over 10 Gbit/s)
    from dirtylog.render import _starts

    assert _starts([0.0, 0.0204, 3.17]) == ["0 s", "20.4 ms", "3.17 s"]  # distinct already: as before
    assert _starts([340.0571, 340.1148, 340.1725, 340.1725]) == ["5 min 40.06 s", "5 min 40.11 s",
                                                                 "5 min 40.17 s", "5 min 40.17 s"]
    assert _starts([23.41, 23.46, 23.51]) == ["23.41 s", "23.46 s", "23.51 s"]

