"""The installed package type-checks cleanly (dirtylog ships py.typed), and so do the tests.

mypy runs on the *installed* dirtylog (``-p dirtylog`` from an empty directory, so
that the source tree does not shadow it) with the repository's configuration, then
on the tests, which import that installed package.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _package_root() -> Path:
    """The directory that holds the dirtylog package this interpreter imports."""
    spec = importlib.util.find_spec("dirtylog")
    assert spec is not None and spec.origin is not None, "dirtylog is not importable"
    return Path(spec.origin).resolve().parent.parent


def _mypy(tmp_path: Path, *args: str) -> None:
    """Run mypy with the repository's configuration from an empty directory (so that the source tree
    does not shadow the installed package) and fail with its report unless it found nothing."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install 'dirtylog[test]')")
    if not PYPROJECT.is_file():
        pytest.skip("the repository's pyproject.toml (mypy's configuration) is not here")
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    root = _package_root()
    site_dirs = {Path(p).resolve() for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}}
    if root not in site_dirs:
        # An editable install (its import hook is invisible to mypy) or a source checkout
        # on sys.path: show mypy where the package is.
        env["MYPYPATH"] = str(root)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), "--cache-dir", str(tmp_path / "cache"),
         *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"mypy found problems in {' '.join(args)} (package at {root / 'dirtylog'}):\n{report}"
    assert proc.stdout.startswith("Success: no issues found"), report
    assert proc.stderr == "", report  # e.g. a setting of pyproject.toml that this mypy rejects


@pytest.mark.slow
def test_mypy_reports_no_errors(tmp_path):
    _mypy(tmp_path, "-p", "dirtylog")


@pytest.mark.slow
def test_mypy_reports_no_errors_in_the_tests(tmp_path):
    """The tests type-check against the installed package too: their bodies are checked
    (check_untyped_defs) though, as pytest tests, they need not annotate their fixtures and
    returns (the two flags below; a per-module override cannot name the tests, which are
    top-level modules, not a package)."""
    _mypy(tmp_path, "--allow-untyped-defs", "--allow-incomplete-defs", str(Path(__file__).resolve().parent))
