"""What the installed package carries: licence and project metadata, the abi3 extension,
and the benchmark suite that `dirtylog bench` runs from any folder."""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dirtylog

REPO = Path(__file__).resolve().parents[1]


def test_license_file_matches_the_metadata():
    meta = importlib.metadata.metadata("dirtylog")
    assert meta["License"] == "MIT"
    assert "License :: OSI Approved :: MIT License" in (meta.get_all("Classifier") or [])
    files = [f for f in importlib.metadata.files("dirtylog") or [] if f.name == "LICENSE"]
    assert files, "the wheel carries no LICENSE file"
    text = files[0].read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the suffix checked is Linux's")
def test_extension_uses_the_stable_abi():
    spec = importlib.util.find_spec("dirtylog._core")
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith(".abi3.so"), spec.origin


def _bench_collect(cwd: Path, exe: list) -> subprocess.CompletedProcess:
    return subprocess.run([*exe, "bench", "--", "--collect-only", "-q"], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pytest_benchmark") is None, reason="needs pytest-benchmark")
def test_bench_finds_the_installed_suite_from_any_folder(tmp_path):
    r = _bench_collect(tmp_path, [sys.executable, "-m", "dirtylog"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bench_engine.py::test_engine_vs_numpy" in r.stdout
    assert "bench_tracker.py::" in r.stdout and "bench_workloads.py::" in r.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("pytest_benchmark") is None, reason="needs pytest-benchmark")
def test_bench_from_the_source_checkout(tmp_path):
    # The issue's case: run in the checkout, whose dirtylog/ (without the compiled core)
    # must not shadow the installed package in the benchmarks' pytest process.
    script = shutil.which("dirtylog", path=os.path.dirname(sys.executable))
    if script is None or not (REPO / "pyproject.toml").is_file():
        pytest.skip("needs the dirtylog script and a source checkout")
    r = _bench_collect(REPO, [script])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "bench_engine.py::test_engine_vs_numpy" in r.stdout


def _output_strings(path: Path) -> list:
    """The string constants of a module except its docstrings (what it may print)."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_benchmark_output_names_no_issue_numbers():
    """The suite ships to users: what it prints must not refer to the project's issue tracker."""
    from dirtylog.cli import _benchmarks_dir

    bdir = _benchmarks_dir(None)
    if bdir is None:
        pytest.skip("the benchmark suite is not installed")
    files = sorted(bdir.glob("*.py"))
    assert files
    for f in files:
        bad = [t for t in _output_strings(f) if re.search(r"\bissues?\b", t, re.I)]
        assert not bad, f"{f} prints {bad}"


def test_api_reference_covers_every_public_module():
    """docs/*.rst names every public module (the command line, documented by --help, aside)."""
    docs = REPO / "docs"
    if not docs.is_dir():
        pytest.skip("the docs/ folder of a source checkout is not here")
    text = "".join(f.read_text() for f in docs.glob("*.rst"))
    modules = sorted(f.stem for f in (REPO / "dirtylog").glob("*.py") if not f.stem.startswith("_"))
    missing = [m for m in modules if m != "cli" and f".. automodule:: dirtylog.{m}\n" not in text]
    assert not missing, f"add these modules to the API reference in docs/*.rst: {missing}"


@pytest.mark.skipif(importlib.util.find_spec("pytest_benchmark") is None, reason="needs pytest-benchmark")
def test_benchmark_ratio_tables_fit_the_terminal(monkeypatch):
    """`dirtylog bench` ends with its ratio tables, drawn by dirtylog's table renderer: at 80 columns
    the absolute times go first (the caption says which), at 200 every column is there."""
    from types import SimpleNamespace

    from dirtylog.cli import _benchmarks_dir

    bdir = _benchmarks_dir(None)
    if bdir is None:
        pytest.skip("the benchmark suite is not installed")
    spec = importlib.util.spec_from_file_location("dirtylog_bench_conftest", bdir / "conftest.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    res = bench.Results()
    for mode in ("wp", "pml", "ring"):
        for guest in ("4GiB", "128GiB"):
            res.record("write", f"{mode}/{guest}/uniform", "tracker", 2.5)
            res.record("write", f"{mode}/{guest}/uniform", "reference", 1234.0)
            for key, x in (("paired_median", 1.4), ("paired_q1", 1.25), ("paired_q3", 1.55)):
                res.record("write", f"{mode}/{guest}/uniform", key, x)
            for marks in ("-", "stale"):
                case = f"{mode}/{guest}/{marks}"
                for key, x in (("tracker", 1.2), ("bare_ns_per_write", 0.9), ("best_ratio", 1.3),
                               ("paired_median", 1.33), ("paired_q1", 1.2), ("paired_q3", 1.5)):
                    res.record("first-write", case, key, x)
        res.record("write-bare", f"{guest}/uniform", "bare", 1.1)
    res.record("call", "64 pages", "locked", 3000.0)
    res.record("call", "64 pages", "unlocked", 2900.0)
    for density in ("0.1%", "10%", "100%"):
        for impl, ms in (("tracker", 7.9), ("tracker-api", 7.3), ("bare", 6.9), ("reference", 116.9)):
            res.record("harvest", f"128GiB/{density}", impl, ms * 1e6)
        res.extra[("harvest", f"128GiB/{density}", "pages")] = "3354831"

    def summary(width: int) -> list:
        lines: list = []
        config = SimpleNamespace(stash={bench._RESULTS_KEY: res},
                                 get_terminal_writer=lambda: SimpleNamespace(fullwidth=width))
        tr = SimpleNamespace(config=config, section=lambda title: lines.append(f"= {title} ="),
                             write_line=lambda text: lines.extend(str(text).splitlines()))
        bench.pytest_terminal_summary(tr, 0, config)
        return lines

    narrow, wide = summary(80), summary(200)
    assert max(len(line) for line in narrow) <= 80, "\n".join(narrow)
    assert max(len(line) for line in wide) > 80  # each table whole
    text = "\n".join(narrow)
    # the figures held to the targets stay: the write rows' and the first writes' paired medians
    assert sum(line.startswith("mode") and "paired median" in line for line in narrow) == 2 and "tracker/bare" in text
    assert "(narrow terminal: best/best, tracker ns, bare ns, ref ns not shown)" in text
    assert all(h in "\n".join(wide) for h in ("bare ns", "ref ns", "API ms", "ref ms", "IQR", "best/best"))
    assert "narrow terminal" not in "\n".join(wide)
    assert sum(line.lstrip().startswith("64 pages") for line in narrow) == 1  # each call case once


def test_engine_is_exported_as_the_type_of_migration_engine():
    """The API reference documents Engine (dirtylog.engine), and a migration hands one out as
    Migration.engine: it is importable from dirtylog, for annotations and isinstance."""
    import dirtylog

    assert "Engine" in dirtylog.__all__ and dirtylog.Engine is dirtylog.engine.Engine
    m = dirtylog.Migration(memory="64MiB", workload=dirtylog.Hotspot("10MiB/s"), link=dirtylog.Link("1Gbit/s"))
    assert isinstance(m.engine, dirtylog.Engine)
    m.run()
    assert m.engine.counters().passes >= 1 and m.engine.remaining == m.engine.counters().remaining


def test_each_benchmark_name_selects_itself_alone():
    """``-k NAME`` selects by substring: no benchmark's name may sit inside another's (``-k write_tracker``
    had also selected the first-write rows of ``test_first_write_tracker``)."""
    from dirtylog.cli import _benchmarks_dir

    bdir = _benchmarks_dir(None)
    if bdir is None:
        pytest.skip("the benchmark suite is not installed")
    trees = [ast.parse(f.read_text()) for f in bdir.glob("bench_*.py")]
    names = sorted({node.name[len("test_"):] for tree in trees for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")})
    assert len(names) > 10
    clashes = [(a, b) for a in names for b in names if a != b and a in b]
    assert not clashes, f"-k {clashes[0][0]} would also select test_{clashes[0][1]}: {clashes}"
