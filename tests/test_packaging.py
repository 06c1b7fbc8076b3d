"""What the installed package carries: licence and project metadata, the abi3 extension,
and the benchmark suite that `dirtylog bench` runs from any folder."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
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
    assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier")
    files = [f for f in importlib.metadata.files("dirtylog") or [] if f.name == "LICENSE"]
    assert files, "the wheel carries no LICENSE file"
    text = files[0].read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def test_project_urls():
    urls = dict(u.split(", ", 1) for u in importlib.metadata.metadata("dirtylog").get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())


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


def test_benchmark_output_names_no_issue_numbers():
    from dirtylog.cli import _benchmarks_dir

    bdir = _benchmarks_dir(None)
    if bdir is None:
        pytest.skip("the benchmark suite is not installed")
    for f in bdir.glob("*.py"):
        text = f.read_text().lower()
        assert "issue" not in text, f"{f} mentions an issue"
    assert dirtylog.__version__
