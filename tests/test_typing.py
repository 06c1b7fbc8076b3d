"""The installed package type-checks cleanly (dirtylog ships py.typed).

mypy runs on the *installed* dirtylog (``-p dirtylog`` from an empty directory, so
that the source tree does not shadow it) with the repository's configuration.
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


@pytest.mark.slow
def test_mypy_reports_no_errors(tmp_path):
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
         "-p", "dirtylog"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"mypy found problems in {root / 'dirtylog'}:\n{report}"
    assert proc.stdout.startswith("Success: no issues found"), report
    assert proc.stderr == "", report  # e.g. a setting of pyproject.toml that this mypy rejects
