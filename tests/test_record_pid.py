"""`dirtylog record --pid`: recording a process that is already running.

The userfaultfd method (injected with ptrace) runs here on the real kernel: the schedule
program of test_record.py, started on its own, recorded from outside; it must run on
unharmed after the recording (its own check of its memory, its exit status) and hold no
userfaultfd any more. The soft-dirty method cannot run on this kernel
(no CONFIG_MEM_SOFT_DIRTY): it is tested against a synthetic procfs whose files
(maps, pagemap, clear_refs, stat) emulate the kernel's.
"""
from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import numpy as np
import pytest

import dirtylog
from dirtylog.errors import UnsupportedError
from dirtylog.record import Progress, RecordError, load_recording
from dirtylog.record_pid import choose_method, eligible_regions, record_pid
from dirtylog.softdirty import soft_dirty_available

from test_record import CC, HERE, SUPPORT, check_schedule, needs_cc, schedule_prog  # noqa: F401 (fixture)

X86 = os.uname().machine == "x86_64"
needs_uffd = pytest.mark.skipif(not (SUPPORT.ok and X86 and not soft_dirty_available()),
                                reason="needs userfaultfd WP async + PAGEMAP_SCAN on x86-64 (and a kernel without "
                                       "soft-dirty, where auto picks uffd)")
PAGE = 4096


def _env() -> Dict[str, str]:
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)  # the sanitizer run's runtimes: the recorded program is a plain one
    return e


def _start(prog: str) -> Tuple[subprocess.Popen, int]:
    p = subprocess.Popen([prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout is not None
    line = p.stdout.readline().split()
    assert line[0] == "A", line
    return p, int(line[1])


# ----------------------------------------------------------------------------- the real kernel (uffd)


@needs_uffd
@needs_cc
def test_uffd_records_a_running_program_which_runs_on_unharmed(schedule_prog, tmp_path):
    proc, a = _start(schedule_prog)
    try:
        ivl = 100_000_000

        def go(t0: int) -> None:  # the program blocks in read(2) until the recording has started
            assert proc.stdin is not None
            proc.stdin.write(f"{t0} {ivl}\n")
            proc.stdin.flush()

        rec = record_pid(proc.pid, tmp_path / "p.npz", interval="100ms", duration="800ms", on_start=go)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"the recorded program failed its own memory check (status {proc.returncode})"
    lines = dict(ln.split() for ln in out.splitlines())
    assert lines["UFFD"] == "0"  # the injected userfaultfd was closed when the recording ended
    assert rec.method == "uffd" and rec.complete and rec.intervals == 8 and rec.exit_status is None
    check_schedule(rec, a, int(lines["B"]))
    back = load_recording(tmp_path / "p.npz")
    assert back.method == "uffd" and np.array_equal(back.page, rec.page) and back.pid == proc.pid
    assert dirtylog.simulate(workload=dirtylog.Trace(tmp_path / "p.npz")).verified


@needs_uffd
def test_uffd_ends_the_trace_cleanly_when_the_process_exits(tmp_path):
    job = "import time\nb = bytearray(1 << 20)\nfor i in range(8):\n    b[i * 4096] = 1\n    time.sleep(0.05)\n"
    proc = subprocess.Popen([sys.executable, "-c", job], env=_env())
    try:
        time.sleep(0.1)
        rec = record_pid(proc.pid, interval="50ms")
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not rec.complete and rec.intervals >= 1 and rec.method == "uffd"


@needs_uffd
def test_uffd_cli_at_80_columns(tmp_path):
    job = ("import numpy as np, time, sys\nprint('ready', flush=True)\na = np.zeros(4 << 20, np.uint8)\n"
           "i = 0\nwhile True:  # until killed\n    a[(i % 4) << 20: ((i % 4) + 1) << 20] += 1\n    i += 1\n    time.sleep(0.02)\n")
    (tmp_path / "job.py").write_text(job)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "job.py")], stdout=subprocess.PIPE, text=True,
                            env=_env())
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        r = subprocess.run([sys.executable, "-m", "dirtylog", "record", "--pid", str(proc.pid), "--duration", "1s",
                            "-o", str(tmp_path / "j.npz")], capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "COLUMNS": "80"})  # the recorder as the suite runs (sanitizers)
    finally:
        proc.kill()
        proc.wait()
    assert r.returncode == 0, r.stderr
    words = " ".join(r.stdout.split())  # the text is folded at 80 columns
    assert "uffd, ran on" in words and "dirty pages / interval" in words
    assert max(len(ln) for ln in r.stdout.splitlines()) <= 80
    rec = load_recording(tmp_path / "j.npz")
    assert rec.dirty_per_interval().max() >= 256  # 1 MiB of the array per 20 ms


@needs_uffd
def test_uffd_permission_error_names_ptrace(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the recorder as another user against a root process")
    target = subprocess.Popen(["sleep", "30"], env=_env())
    try:
        code = ("import os, sys\n"
                "import dirtylog.record_pid, dirtylog.softdirty, dirtylog.realtracker\n"
                "import ctypes\n"
                "os.setgroups([]); os.setgid(65534); os.setuid(65534)  # nobody, after the imports\n"
                "ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self is ours again\n"
                "try:\n"
                f"    dirtylog.record_pid.record_pid({target.pid}, duration='0.2s', method='uffd')\n"
                "except PermissionError as e:\n"
                "    print('PERM', e)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    finally:
        target.kill()
        target.wait()
    assert "PERM" in r.stdout and "ptrace" in r.stdout, r.stdout + r.stderr


@needs_uffd
def test_uffd_a_process_already_traced(tmp_path):
    if shutil.which("strace") is None:
        pytest.skip("no strace to trace the process with")
    st = subprocess.Popen(["strace", "-o", os.devnull, "sleep", "30"], env=_env())
    try:
        kids: List[str] = []
        for _ in range(100):  # the traced sleep: strace's child
            kids = Path(f"/proc/{st.pid}/task/{st.pid}/children").read_text().split()
            if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "sleep":
                break
            time.sleep(0.05)
        with pytest.raises(PermissionError, match=f"already traced by process {st.pid}"):
            record_pid(int(kids[0]), duration="0.2s")
    finally:
        for k in kids:  # the sleep that strace started, then strace
            try:
                os.kill(int(k), signal.SIGKILL)
            except ProcessLookupError:
                pass
        st.kill()
        st.wait()


SECCOMP_PROG = r"""
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(void)
{
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {1, allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
        return 1;
    printf("ready\n");
    fflush(stdout);
    sleep(30);
    return 0;
}
"""


@needs_uffd
@needs_cc
def test_uffd_refuses_a_process_under_seccomp(tmp_path):
    (tmp_path / "sc.c").write_text(SECCOMP_PROG)
    assert CC is not None  # needs_cc
    subprocess.run([CC, "-o", str(tmp_path / "sc"), str(tmp_path / "sc.c")], check=True)
    p = subprocess.Popen([str(tmp_path / "sc")], stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout is not None
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(UnsupportedError, match="runs under seccomp .a filter.*does not inject"):
            record_pid(p.pid, duration="0.2s")
        assert p.poll() is None  # untouched
    finally:
        p.kill()
        p.wait()


def test_methods_and_errors(tmp_path):
    with pytest.raises(RecordError, match="no process with pid 999999999"):
        record_pid(999999999)
    with pytest.raises(RecordError, match="its own process"):
        record_pid(os.getpid())
    with pytest.raises(dirtylog.ConfigError, match="choose one of auto, soft-dirty, uffd"):
        choose_method("ptrace")
    with pytest.raises(dirtylog.ConfigError, match=".npz"):
        record_pid(1, tmp_path / "x.csv")
    if not soft_dirty_available():
        with pytest.raises(UnsupportedError, match="no soft-dirty bits.*--method uffd"):
            choose_method("soft-dirty")
        if SUPPORT.ok and X86:
            assert choose_method("auto") == "uffd"


def test_eligible_regions_is_the_launchers_rule():
    maps = (b"00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/prog\n"
            b"00652000-00653000 rw-p 00052000 08:02 173521 /usr/bin/prog\n"
            b"00653000-00674000 rw-p 00000000 00:00 0 [heap]\n"
            b"7f0000000000-7f0000010000 rw-p 00000000 00:00 0 \n"
            b"7f0000010000-7f0000020000 rw-s 00000000 00:01 1234 /dev/zero (deleted)\n"
            b"7f0000020000-7f0000030000 ---p 00000000 00:00 0\n"
            b"7f0000030000-7f0000031000 rwxp 00000000 00:00 0\n"
            b"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"
            b"7ffd00100000-7ffd00102000 r--p 00000000 00:00 0 [vvar]\n"
            b"7ffd00200000-7ffd00201000 rw-p 00000000 00:00 0 [vsyscall]\n"
            b"garbage line\n")
    assert eligible_regions(maps) == [(0x653000, 0x674000), (0x7f0000000000, 0x7f0000010000),
                                      (0x7f0000030000, 0x7f0000031000), (0x7ffd00000000, 0x7ffd00021000)]


# ----------------------------------------------------------------------------- soft-dirty, synthetic procfs

PRESENT, SWAPPED, SOFT_DIRTY = 1 << 63, 1 << 62, 1 << 55


class FakeKernel:
    """A process in a synthetic procfs: maps, pagemap (8 bytes per page at offset page * 8),
    clear_refs and stat, written as the kernel would show them. Writing '4' to clear_refs
    (by the recorder) clears the soft-dirty bits before the process runs on (tick)."""

    def __init__(self, root: Path, pid: int) -> None:
        self.dir = root / str(pid)
        self.dir.mkdir(parents=True)
        self.vmas: List[Tuple[int, int, str]] = []  # (start, end, the rest of the maps line)
        self.entries: Dict[int, int] = {}  # page number -> pagemap entry
        (self.dir / "clear_refs").write_text("")
        (self.dir / "stat").write_text(f"{pid} (fake prog) S 1 1 1 0")
        (self.dir / "cmdline").write_bytes(b"fake\0--prog\0")
        self.ticks = 0
        self.schedule: Dict[int, List] = {}

    def map(self, start: int, pages: int, rest: str = "rw-p 00000000 00:00 0", populated=()) -> None:
        self.vmas.append((start, start + pages * PAGE, rest))
        self.vmas.sort()
        for p in populated:  # a new mapping's pages are soft-dirty (VM_SOFTDIRTY)
            self.entries[start // PAGE + p] = PRESENT | SOFT_DIRTY

    def unmap(self, start: int) -> None:
        s, e, _ = next(v for v in self.vmas if v[0] == start)
        self.vmas.remove((s, e, _))
        for p in range(s // PAGE, e // PAGE):
            self.entries.pop(p, None)

    def write(self, addr: int, flags: int = PRESENT) -> None:
        self.entries[addr // PAGE] = flags | SOFT_DIRTY

    def flush(self) -> None:
        (self.dir / "maps").write_text("".join(f"{s:x}-{e:x} {rest}\n" for s, e, rest in self.vmas))
        with open(self.dir / "pagemap", "wb") as f:
            for p, v in sorted(self.entries.items()):
                f.seek(p * 8)
                f.write(struct.pack("<Q", v))
            f.truncate(max(self.entries, default=0) * 8 + 8)

    def tick(self) -> None:
        """The process runs for one interval: the pending clear, then this interval's events."""
        if (self.dir / "clear_refs").read_text().strip() == "4":
            self.entries = {p: v & ~SOFT_DIRTY for p, v in self.entries.items()}
            (self.dir / "clear_refs").write_text("")
        for ev in self.schedule.get(self.ticks, []):
            ev()
        self.ticks += 1
        if self.dir.exists():
            self.flush()


def _fake_clock(kernel: FakeKernel):
    now = [10**12]

    def clock() -> int:
        return now[0]

    def sleep(sec: float) -> None:
        now[0] += int(round(sec * 1e9))
        kernel.tick()

    return clock, sleep


def test_soft_dirty_recorder_on_a_synthetic_procfs(tmp_path):
    root = tmp_path / "proc"
    k = FakeKernel(root, 4242)
    R1, R2, R3, FILE = 0x10000000, 0x20000000, 0x30000000, 0x40000000
    k.map(0x400000, 4, "r-xp 00000000 08:02 17 /usr/bin/fake")
    k.map(FILE, 4, "rw-p 00001000 08:02 17 /usr/bin/fake")  # file-backed: not tracked
    k.map(R1, 16, populated=(0, 1))  # written before the recording: not reported
    k.map(R3, 4)
    k.write(FILE)
    k.flush()
    k.schedule = {
        0: [lambda: k.write(R1 + 2 * PAGE), lambda: k.write(R1 + 3 * PAGE), lambda: k.write(R3),
            lambda: k.write(FILE + PAGE)],
        1: [lambda: k.write(R1 + 2 * PAGE), lambda: k.map(R2, 8, populated=(0, 1, 2))],  # R2 appears
        2: [lambda: k.write(R1 + 5 * PAGE), lambda: k.write(R2 + 6 * PAGE), lambda: k.unmap(R3),  # R3 vanishes
            lambda: k.write(R1 + 11 * PAGE, SWAPPED),  # written, then swapped out: reported
            lambda: k.entries.__setitem__(R1 // PAGE + 12, SOFT_DIRTY)],  # a soft-dirty hole: not a write
        3: [lambda: k.write(R2 + 7 * PAGE)],
        4: [lambda: k.write(R1 + 9 * PAGE), lambda: shutil.rmtree(k.dir)],  # exits mid-interval
    }
    clock, sleep = _fake_clock(k)
    starts: List[int] = []
    rec = record_pid(4242, tmp_path / "sd.npz", interval="100ms", procfs=str(root), clock=clock, sleep=sleep,
                     on_start=starts.append, method="auto")
    assert rec.method == "soft-dirty" and not rec.complete and rec.command == "fake --prog" and rec.pid == 4242
    assert starts == [10**12]
    assert rec.intervals == 4 and rec.interval_end_ns.tolist() == [1e8, 2e8, 3e8, 4e8]
    got: Dict[int, Set[int]] = {}
    for page, iv in zip(rec.page.tolist(), rec.interval.tolist()):
        got.setdefault(iv, set()).add(int(rec.address([page])[0]))
    assert got == {
        0: {R1 + 2 * PAGE, R1 + 3 * PAGE, R3},
        1: {R1 + 2 * PAGE, R2, R2 + PAGE, R2 + 2 * PAGE},
        2: {R1 + 5 * PAGE, R2 + 6 * PAGE, R1 + 11 * PAGE},
        3: {R2 + 7 * PAGE},
    }
    assert rec.pages == 16 + 4 + 8  # R1 and R3 from the start, R2 when it appeared; the file mapping never
    assert load_recording(tmp_path / "sd.npz").method == "soft-dirty"


def test_soft_dirty_duration_and_progress_on_a_synthetic_procfs(tmp_path):
    root = tmp_path / "proc"
    k = FakeKernel(root, 7)
    k.map(0x10000000, 64)
    k.flush()
    k.schedule = {t: [lambda t=t: k.write(0x10000000 + (t % 64) * PAGE)] for t in range(100)}
    clock, sleep = _fake_clock(k)
    seen: List[Progress] = []
    rec = record_pid(7, interval="10ms", duration="95ms", procfs=str(root), clock=clock, sleep=sleep,
                     progress=seen.append, method="soft-dirty")
    assert rec.complete and rec.intervals == 10 and rec.duration == pytest.approx(0.095)
    assert rec.dirty_per_interval().tolist() == [1] * 10
    assert seen and seen[0].pages == 64 and seen[0].last_dirty == 1
    with pytest.raises(dirtylog.ConfigError, match="real /proc"):
        record_pid(7, procfs=str(root), method="uffd")
    with pytest.raises(RecordError, match="no process with pid 8"):
        record_pid(8, procfs=str(root))
