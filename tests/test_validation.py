"""dirtylog against recorded real QEMU migrations (validation/results/; no QEMU needed).

Each (scenario, figure) is one test: dirtylog's figure must lie within QEMU's own
run-to-run spread (see dirtylog.validation.band). Figures dirtylog cannot match yet
are listed in dirtylog.validation.KNOWN_GAPS, with the gap named; they run as expected
failures (strict=False) until the engine closes the gap and the entry is removed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest

from dirtylog import validation as V
from dirtylog.errors import ConfigError

RESULTS = Path(__file__).resolve().parent.parent / "validation" / "results"
FILES = sorted(RESULTS.glob("*.json")) if RESULTS.is_dir() else []
needs_results = pytest.mark.skipif(not FILES, reason="validation/results/ is not here (it is in the source tree)")


def _cases():
    groups: Dict[str, List[V.QemuRun]] = {}
    for f in FILES:
        run = V.load_run(f)
        groups.setdefault(run.scenario, []).append(run)
    cases = []
    for name, runs in sorted(groups.items()):
        for key, _, _ in V.FIGURES:
            if all(r.figures.get(key) is None for r in runs):
                continue  # the figure does not apply to this scenario
            gap = V.KNOWN_GAPS.get((name, key))
            marks = [pytest.mark.xfail(strict=False, reason=gap)] if gap else []
            cases.append(pytest.param(name, key, id=f"{name}-{key}", marks=marks))
    return cases


@pytest.fixture(scope="module")
def comparison():
    return V.compare([RESULTS])


@needs_results
@pytest.mark.parametrize("scenario,key", _cases())
def test_figure_within_qemus_spread(comparison, scenario, key):
    sc = next(s for s in comparison.scenarios if s.scenario == scenario)
    f = sc.figure(key)
    assert f.status in ("ok", "fixed gap"), (
        f"{scenario}: {f.label}: dirtylog {f.dirtylog!r}, QEMU {list(f.qemu)} (band {f.low}..{f.high})")


@needs_results
def test_every_scenario_of_the_issue_is_recorded_two_or_three_times():
    counts: Dict[str, int] = {}
    for f in FILES:
        counts[V.load_run(f).scenario] = counts.get(V.load_run(f).scenario, 0) + 1
    for name in ("idle", "uniform-converge", "uniform-threshold", "noconverge", "autoconverge", "hot-under",
                 "hot-above", "zero-half", "postcopy", "xbzrle"):
        assert counts.get(name, 0) >= 2, f"{name}: {counts.get(name, 0)} recorded runs"


@needs_results
@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_recordings_are_paced_by_max_bandwidth(path):
    """QEMU's rate limiter, not the host's CPU, set the pace of the live phase."""
    run = V.load_run(path)
    mbps_cap = run.max_bandwidth * 8 / 1e6
    assert run.median_mbps is not None and 0.85 * mbps_cap <= run.median_mbps <= 1.05 * mbps_cap
    if run.guest_mode != "idle":
        assert run.guest_rate > 0
    assert run.memory > 0 and run.figures["verdict"] in ("converges", "post-copy", "does not converge")


@needs_results
def test_inputs_map_a_run_to_dirtylog():
    runs = [r for r in map(V.load_run, FILES) if r.scenario == "zero-half"]
    args = V.inputs(runs)
    assert args["memory"] == runs[0].memory  # QEMU's ram.total
    assert args["workload"].write_rate() == pytest.approx(sum(r.guest_rate for r in runs) / len(runs))
    # the guest writes uniformly over what it filled, from 4 MiB, and nowhere else
    pages = runs[0].memory // runs[0].page_size
    start = V.GUEST_REGION_START // runs[0].page_size
    assert args["workload"].span(pages) == (start, runs[0].filled_pages)


@needs_results
def test_zero_pages_lie_where_the_guest_has_them():
    """The guest's zero pages are memory nobody writes: below its region (QEMU sends them in its first
    window), the region's unfilled part, and above the region (pc.ram's last pages and the ROM blocks,
    which QEMU's first pass reaches last); together as many as QEMU's duplicate."""
    runs = [r for r in map(V.load_run, FILES) if r.scenario == "zero-half"]
    r0 = runs[0]
    pages = r0.memory // r0.page_size
    start = V.GUEST_REGION_START // r0.page_size
    z = V.zero_layout(runs)
    assert z.page_count(pages, r0.page_size) == r0.figures["zero_pages"] == 33310
    low, unfilled, above = z.spans
    assert low == (0, r0.low_zero_pages) and r0.low_zero_pages == 987  # the first poll's duplicate
    assert unfilled == (start + r0.filled_pages, start + r0.region_pages)  # the top half of the region
    assert above[1] == pages and above[0] >= start + r0.region_pages
    full = [r for r in map(V.load_run, FILES) if r.scenario == "idle"]  # memory filled: no zero page in the region
    spans = V.zero_layout(full).spans
    assert len(spans) == 2 and spans[0] == (0, 987) and spans[1][1] == pages
    assert all(b <= start or a >= start + full[0].region_pages for a, b in spans)


def test_band_from_spread_and_floor():
    lo, hi = V.band("total_time", [10.0, 10.6])
    assert lo == pytest.approx(9.7) and hi == pytest.approx(10.9)  # half the range each side
    lo, hi = V.band("total_time", [10.0, 10.0])
    assert lo == pytest.approx(9.8) and hi == pytest.approx(10.2)  # the floor: 2 % (0.2 s)
    lo, hi = V.band("dirty_sync_count", [5, 5, 5])
    assert (lo, hi) == (4, 6)


def test_bad_files_are_named(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ConfigError, match="not a recorded QEMU run"):
        V.load_run(p)
    p.write_text("{")
    with pytest.raises(ConfigError, match="cannot read"):
        V.load_run(p)
    with pytest.raises(ConfigError, match="no such recorded run"):
        V.find_results([tmp_path / "missing.json"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no recorded runs"):
        V.find_results([empty])


@needs_results
def test_cli_prints_the_table(capsys):
    from dirtylog.cli import main

    files = [str(f) for f in FILES if f.stem.startswith("idle-")]
    rc = main(["validate", *files])
    out = capsys.readouterr().out
    assert "idle" in out and "syncs" in out and "QEMU 7.2" in out
    assert rc == (1 if V.compare(files).regressions else 0)  # 1 only for a figure off that is no known gap
    rc = main(["validate", "--markdown", *files])
    md = capsys.readouterr().out
    assert md.startswith("| scenario | runs |") and "| idle | 3 |" in md
    rc = main(["validate", "--rst", *files])
    rst = capsys.readouterr().out.splitlines()
    assert rst[0] == rst[2] == rst[-1] and set(rst[0]) == {"=", " "} and rst[1].split()[:2] == ["scenario", "runs"]
    assert rst[3].split()[:2] == ["idle", "3"] and len(rst) == 5
    rc = main(["validate", "--scenario", "nosuch", *files])
    assert rc == 2


@needs_results
@pytest.mark.parametrize("columns", [80, None])
def test_cli_text_is_the_api_text_and_fits_the_terminal(capsys, monkeypatch, columns):
    """`dirtylog validate` prints Comparison.lines through the one renderer: the same text as
    Comparison.table(), within the width (80 columns), every line whole in a file (no width)."""
    from dirtylog.cli import main

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    files = [str(f) for f in FILES if f.stem.startswith(("noconverge-", "postcopy-", "xbzrle-"))]
    result = V.compare(files)
    main(["validate", *files])
    out = capsys.readouterr().out
    assert out == result.table(columns) + "\n" == str(result) + "\n"  # print(result) is the command's text
    lines = out.splitlines()
    assert lines[0].startswith("dirtylog against real QEMU: 9 recorded runs of 3 scenarios")
    assert not any(c in out for c in "─━│")  # no second table style
    if columns:
        assert max(len(line) for line in lines) <= columns
    else:
        assert sum(line.startswith("- ") for line in lines) == len({f.gap for f in result.figures()
                                                                    if f.status == "known gap"})
    for sc in ("noconverge (3 runs):", "postcopy (3 runs):", "xbzrle (3 runs):"):
        assert any(line.startswith(sc) for line in lines), sc
    header = next(line for line in lines if line.startswith("figure"))
    for col in ("QEMU median (range)", "dirtylog", "error", "status"):
        assert col in header
    assert any(line.startswith("Within QEMU's spread") for line in lines)
    assert any("known gap" in line and line.startswith("downtime") for line in lines)  # the post-copy pause


@needs_results
def test_the_docs_table_is_what_validate_prints():
    """docs/validation.rst's table is ``dirtylog validate --rst`` over every recorded run: re-run it and
    paste its output there when dirtylog's figures move."""
    docs = RESULTS.parent.parent / "docs" / "validation.rst"
    if not docs.is_file():
        pytest.skip("docs/ is not here (it is in the source tree)")
    table = V.compare(FILES).markup("rst")
    assert table in docs.read_text(), f"docs/validation.rst: replace its table with:\n{table}"
