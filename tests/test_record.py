"""`dirtylog record`: recording a real program with the preloaded recorder, and replaying it.

A small C program (tests/data/record_schedule.c, built here with the system cc) writes a
known schedule of pages aligned on the recorder's intervals; the recording must hold
exactly those pages, each in its interval (or the next, for a write delayed past a
harvest), and no other page of its regions.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

import dirtylog
from dirtylog.realtracker import kernel_support
from dirtylog.record import RecordError, load_recording, preload_library, record

SUPPORT = kernel_support()
CC = shutil.which("cc") or shutil.which("gcc")
HERE = Path(__file__).resolve().parent

needs_kernel = pytest.mark.skipif(not SUPPORT.ok, reason=SUPPORT.missing() or "supported")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to build the test program")
# The CI sanitizer run preloads the ASan runtime into every process it starts; a recorded program
# would then carry ASan's multi-terabyte shadow mappings (private anonymous memory the recorder
# would register and count as the program's size) and ASan's own interceptors. The launcher tests
# are skipped there; RealTracker's tests (test_realtracker.py) cover the C core under the sanitizers.
not_under_asan = pytest.mark.skipif(bool(os.environ.get("DIRTYLOG_SANITIZER_RUN")),
                                    reason="the ASan runtime is preloaded into every process in the sanitizer run")


def check_schedule(rec, a: int, b: int):
    """The recording of tests/data/record_schedule.c (A at address a, B at b) holds exactly its
    writes, each in its interval or the next, and no other page of A and B. Returns (A's pages, want)."""
    want = {}  # page index -> interval of its write
    pa = rec.page_of([a + i * 4096 for i in range(64)])
    pb = rec.page_of([b + i * 4096 for i in range(16)])
    for k in range(1, 7):
        for p in (k, 2 * k + 20, 63 - k):
            want[int(pa[p])] = k
    want[int(pa[40])] = 5
    for p in range(4):
        want[int(pb[p])] = 4  # B appears in interval 4 with its populated pages
    ours = set(pa.tolist()) | set(pb.tolist())
    got: Dict[int, int] = {}
    for page, k in zip(rec.page.tolist(), rec.interval.tolist()):
        if page in ours:
            assert page not in got, f"page {page} reported twice (intervals {got[page]} and {k})"
            got[page] = k
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing, f"pages never reported: {missing}"
    assert not extra, f"pages reported but never written: {extra}"
    late = {p: (got[p], want[p]) for p in want if got[p] not in (want[p], want[p] + 1)}
    assert not late, f"pages in the wrong interval (got, written): {late}"
    return pa, want


@pytest.fixture(scope="module")
def schedule_prog(tmp_path_factory) -> str:
    if CC is None:
        pytest.skip("no C compiler (cc) to build the test program")
    out = tmp_path_factory.mktemp("prog") / "record_schedule"
    subprocess.run([CC, "-O1", "-pthread", "-o", str(out), str(HERE / "data" / "record_schedule.c")], check=True)
    return str(out)


@needs_kernel
@not_under_asan
@needs_cc
def test_schedule_pages_in_their_intervals(schedule_prog, tmp_path):
    out = tmp_path / "app.npz"
    log = tmp_path / "stdout"
    with open(log, "w") as f:
        rec = record([schedule_prog], out, interval="100ms", stdout=f)
    assert rec.exit_status == 0 and rec.complete
    addr = dict(line.split()[:2] for line in log.read_text().splitlines())
    a, b = int(addr["A"]), int(addr["B"])
    pa, want = check_schedule(rec, a, b)
    # the map: A and B are distinct pages of the recording, within its size
    assert rec.address(pa).tolist() == [a + i * 4096 for i in range(64)]
    assert max(want) < rec.pages
    # replay: a guest of the recorded size, or a larger one with the rest idle
    tr = dirtylog.Trace(out)
    assert tr.guest_pages == rec.pages
    r1 = dirtylog.simulate(workload=tr)
    assert r1.memory == rec.pages * 4096 and r1.verified
    r2 = dirtylog.simulate(memory="1GiB", workload=dirtylog.Trace(out))
    assert r2.memory == 2**30 and r2.verified


@needs_kernel
@not_under_asan
def test_cli_records_a_numpy_job_and_the_curve_reads_it(tmp_path):
    out = tmp_path / "job.npz"
    job = ("import numpy as np, time\n"
           "a = np.zeros(8 << 20, dtype=np.uint8)\n"
           "for i in range(6):\n"
           "    a[(i % 2) * (4 << 20): (i % 2 + 1) * (4 << 20)] += 1\n"
           "    time.sleep(0.1)\n")
    res = subprocess.run([sys.executable, "-m", "dirtylog", "record", "-o", str(out), "--json", "-", "--",
                          sys.executable, "-c", job], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["exit_status"] == 0 and summary["intervals"] >= 5
    assert summary["dirty_max"] >= 1024  # each pass writes 4 MiB = 1024 pages
    assert summary["curve"]["windows"][0] == pytest.approx(0.1)
    # the curve reaches the end of the recording (the 1-2-5 ladder alone stopped at 0.5 s of a 0.6 s one)
    assert summary["curve"]["windows"][-1] == pytest.approx(summary["duration"])
    assert summary["curve"]["dirty_pages"][-1] == summary["dirty_distinct"]
    rec = load_recording(out)
    assert rec.dirty_per_interval().sum() == rec.page.size
    cv = subprocess.run([sys.executable, "-m", "dirtylog", "curve", str(out), "--windows", "100ms,1s", "--json", "-"],
                        capture_output=True, text=True, cwd=tmp_path)
    assert cv.returncode == 0, cv.stderr
    curve = json.loads(cv.stdout)
    assert curve["total_pages"] == rec.pages  # a guest of the recorded size
    for w, n in zip(curve["windows"], curve["dirty_pages"]):
        assert n == np.unique(rec.page[rec.time_ns < w * 1e9]).size
    text = subprocess.run([sys.executable, "-m", "dirtylog", "record", "-o", str(tmp_path / "t.npz"), "--",
                           "true"], capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "80"})
    assert text.returncode == 0, text.stderr
    assert "dirty pages / interval" in text.stdout and "Dirty curve" in text.stdout
    # every line fits 80 columns but a path too long to break (the replay command's)
    assert all(len(line) <= 80 or len(line.split()) == 1 for line in text.stdout.splitlines()), text.stdout
    assert "─" not in text.stdout
    assert any(line.startswith("Replay  dirtylog simulate --workload") for line in text.stdout.splitlines())
    script = subprocess.run([sys.executable, "-m", "dirtylog", "record", "-o", str(tmp_path / "m.npz"), "--",
                             sys.executable, "-c", "x = 1\ny = 2\n"], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "80"})
    assert script.returncode == 0, script.stderr
    header = script.stdout.splitlines()[0]  # a multi-line script stays on the summary's first line, escaped
    assert header.startswith("Recorded ") and "x = 1\\ny = 2" in header, script.stdout


@needs_kernel
@not_under_asan
def test_duration_stops_a_program_that_runs_on(tmp_path):
    rec = record(["sleep", "30"], tmp_path / "s.npz", interval="50ms", duration="0.6s")
    assert rec.exit_status is not None and rec.exit_status < 0  # SIGTERM
    assert 0.4 < rec.duration < 5


def test_programs_that_cannot_be_recorded(tmp_path):
    with pytest.raises(RecordError, match="not found"):
        dirtylog.record.check_program(["no-such-program-dirtylog"])
    with pytest.raises(RecordError, match="after '--'"):
        dirtylog.record.check_program([])
    if CC is not None:
        src = tmp_path / "s.c"
        src.write_text("int main(void){return 0;}\n")
        static = tmp_path / "static"
        if subprocess.run([CC, "-static", "-o", str(static), str(src)], capture_output=True).returncode == 0:
            with pytest.raises(RecordError, match="statically linked"):
                dirtylog.record.check_program([str(static)])
        setuid = tmp_path / "setuid"
        shutil.copy(shutil.which("true") or "/bin/true", setuid)
        os.chmod(setuid, 0o4755)
        with pytest.raises(RecordError, match="setuid"):
            dirtylog.record.check_program([str(setuid)])
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    assert dirtylog.record.check_program([str(script)]) == str(script.resolve())
    with pytest.raises(dirtylog.ConfigError, match=".npz"):
        record(["true"], tmp_path / "x.csv")


def test_record_cli_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "dirtylog", "record", *a], capture_output=True,
                                    text=True, cwd=tmp_path)
    r = run()
    assert r.returncode == 2 and "after '--'" in r.stderr
    r = run("--pid", "999999999")
    assert r.returncode == 2 and "no process with pid 999999999" in r.stderr
    r = run("--pid", str(os.getpid()), "--", "true")
    assert r.returncode == 2 and "not both" in r.stderr
    r = run("--method", "uffd", "--", "true")
    assert r.returncode == 2 and "--method chooses how --pid records" in r.stderr
    r = run("--pid", str(os.getpid()), "--method", "nope")
    assert r.returncode == 2 and "soft-dirty" in r.stderr


def test_preload_library_is_installed():
    if sys.platform.startswith("linux"):
        p = preload_library()
        assert p.name == "libdirtylog_record.so" and p.parent == Path(dirtylog.__file__).resolve().parent


def test_plain_trace_files_still_load(tmp_path):
    """The recording's extra arrays are optional: traces without them load as before."""
    p = tmp_path / "t.npz"
    dirtylog.save_trace(p, [0, 10, 20], [1, 2, 3])
    t = dirtylog.Trace(p)
    assert t.guest_pages is None and t.records == 3
    np.savez(tmp_path / "bad.npz", time_ns=np.array([0], np.uint64), page=np.array([5], np.uint64),
             pages=np.uint64(3))
    with pytest.raises(dirtylog.ConfigError, match="beyond the recorded size"):
        dirtylog.Trace(tmp_path / "bad.npz")
    with pytest.raises(dirtylog.ConfigError, match="guest_pages"):
        dirtylog.Trace(time_ns=[0], pages=[9], guest_pages=4)
    with pytest.warns(UserWarning, match="the trace ends at"):  # two writes: far shorter than the run
        assert dirtylog.simulate(workload=dirtylog.Trace(time_ns=[0, 1], pages=[0, 1], guest_pages=64)).memory == 64 * 4096


def _synthetic_recording(command: str = "python3 job.py", method: str = "preload", complete: bool = True,
                         exit_status=0):
    """A recording made by hand: 20 intervals of 100 ms over 4,096 pages."""
    from dirtylog.record import Recording

    rng = np.random.default_rng(1)
    ivl = np.repeat(np.arange(20), 300)
    page = rng.integers(0, 4096, ivl.size)
    return Recording(time_ns=(ivl * 100_000_000 + 50_000_000).astype(np.uint64), page=page.astype(np.uint64),
                     interval=ivl.astype(np.uint32), interval_end_ns=((np.arange(20) + 1) * 100_000_000).astype(np.uint64),
                     scan_ns=np.full(20, 1_000_000, dtype=np.uint64), region_start=np.array([0x7f0000000000], np.uint64),
                     region_pages=np.array([4096], np.uint64), region_first_page=np.array([0], np.uint64), pages=4096,
                     page_size=4096, interval_ns=100_000_000, pid=4242, command=command, exit_status=exit_status,
                     complete=complete, method=method)


@pytest.mark.parametrize("width", [60, 80, None])
def test_record_summary_through_the_one_renderer(width):
    """What `dirtylog record` prints: dirtylog.render lines (no second table style), fitted to the
    width, with a replay command that pastes as one shell word per argument."""
    from dirtylog.record import summarize, summary_lines
    from dirtylog.render import plain

    rec = _synthetic_recording(command="python3 -c 'x = 1\ny = 2'")
    text = plain(summary_lines(rec, summarize(rec), "my run.npz", width))
    lines = text.splitlines()
    if width:
        assert max(len(line) for line in lines) <= width, text
    assert lines[0].startswith("Recorded python3 -c") and "\\n" in lines[0]  # the script's newline, escaped
    assert "(pid 4242, exited with status 0)" in " ".join(lines[:3])
    for row in ("dirty pages / interval", "dirty rate (calc-dirty-rate)", "harvest time / interval"):
        assert any(line.startswith(row) for line in lines), row
    assert "Dirty curve (distinct pages per window, from the start)" in text
    assert "Replay  dirtylog simulate --workload 'trace:my run.npz' --memory 16MiB" in text.replace("\n        ", " ")
    assert "Curve   dirtylog curve 'my run.npz'" in text
    assert "partial interval" not in text
    cut = plain(summary_lines(_synthetic_recording(method="uffd", complete=False), summarize(rec), "r.npz", width))
    assert "uffd, exited" in cut and "The process exited during the recording" in " ".join(cut.split())
