"""dirtylog.plot: the pictures render to files (matplotlib, the `plot` extra)."""
from __future__ import annotations

import sys

import pytest

import dirtylog
from dirtylog import Link, PreCopy, simulate
from dirtylog.__main__ import main
from dirtylog.measure import dirty_curve
from dirtylog.sweeps import grid, sweep
from dirtylog.workloads import Hotspot, Zipf

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000
    return data


def test_without_matplotlib_the_error_says_what_to_install(monkeypatch):
    from dirtylog import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    r = simulate(memory="8MiB")
    with pytest.raises(plot.PlotUnavailable, match=r"dirtylog\[plot\]"):
        plot.plot_report(r)


mpl = pytest.importorskip("matplotlib")


def test_report_plot(tmp_path):
    from dirtylog.plot import plot_report

    r = simulate(memory="32MiB", workload=Hotspot("100MiB/s", seed=1), link=Link("500Mbit/s"),
                 policy=PreCopy(downtime_limit="100ms"))
    assert r.status == "completed"
    fig = plot_report(r, tmp_path / "r.png")
    _png(tmp_path / "r.png")
    assert len(fig.axes) == 1  # no twin axis repeating the same figures in other units
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xlabel() == "simulated time (ms)" and ax.get_ylabel() == "dirty memory (MiB)"  # a 0.75 s run
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert not any("e" in x or "×" in x for x in labels)  # plain numbers in the axis' unit, no offset
    assert ax.yaxis.get_offset_text().get_text() == ""
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts()) if fig.legends else \
        " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "switch-over threshold" in legend and "stop-and-copy (downtime" in legend
    assert "completed (converged)" in fig._suptitle.get_text()


def test_report_plot_threshold_is_the_summarys(tmp_path):
    """One threshold: QEMU's (the bandwidth measured in the last window x the downtime limit), which the
    rounds carry and the switch-over decision used; the plot labelled the configured bandwidth's
    (358 MiB for the README's default run, whose summary says 356 MiB)."""
    from dirtylog.plot import plot_report
    from dirtylog.units import format_size

    r = simulate()  # the README's default run
    live = [x for x in r.rounds if not x.final]
    assert r.reason.startswith("converged:")
    assert f"< threshold {format_size(live[-1].threshold)} " in r.reason  # 356 MiB
    assert live[-1].threshold < r.bandwidth * r.downtime_limit  # measured, not configured (358 MiB)
    # the switch-over rule, round by round: pending (QEMU's remaining after the sync) vs that sync's threshold
    assert all(x.remaining_pages * r.page_size >= x.threshold for x in live[:-1])
    assert live[-1].remaining_pages * r.page_size < live[-1].threshold
    fig = plot_report(r, tmp_path / "t.png")
    _png(tmp_path / "t.png")
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts()) if fig.legends else \
        " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert f"last sync: {format_size(live[-1].threshold)}" in legend and "left to send after each sync" in legend
    assert format_size(r.bandwidth * r.downtime_limit) not in legend


def test_report_plot_threshold_says_which_bandwidth(tmp_path):
    """With switchover_bandwidth set (QEMU's avail-switchover-bandwidth) the threshold is that bandwidth x the
    downtime limit, not the measured one's, and the legend says so; the report keeps the setting."""
    from dirtylog.plot import plot_report
    from dirtylog.units import format_size

    r = simulate(memory="64MiB", workload=Hotspot("100MiB/s", seed=1), link=Link("1Gbit/s"),
                 policy=PreCopy(downtime_limit="100ms", switchover_bandwidth="400Mbit/s"))
    assert r.status == "completed" and r.switchover_bandwidth == 5e7
    synced = [x for x in r.rounds if x.synced]
    assert all(x.threshold == pytest.approx(5e7 * 0.1) for x in synced)
    fig = plot_report(r, tmp_path / "sw.png")
    _png(tmp_path / "sw.png")
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts()) if fig.legends else \
        " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "switch-over threshold: switch-over bandwidth set x 100 ms" in legend
    assert f"last sync: {format_size(5e6)}" in legend and "measured bandwidth" not in legend
    measured = simulate(memory="64MiB", workload=Hotspot("100MiB/s", seed=1), link=Link("1Gbit/s"),
                        policy=PreCopy(downtime_limit="100ms"))
    assert measured.switchover_bandwidth is None
    fig = plot_report(measured, tmp_path / "m.png")
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts()) if fig.legends else \
        " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert "switch-over threshold: measured bandwidth x 100 ms" in legend


def test_report_plot_postcopy_phase_and_titles_as_the_cli(tmp_path):
    from dirtylog.plot import plot_report
    from dirtylog.render import status_text

    r = simulate(memory="32MiB", workload="hotspot:300MiB/s", bandwidth="200Mbit/s", policy="postcopy")
    fig = plot_report(r, tmp_path / "p.png")
    ax = fig.axes[0]
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    assert "post-copy: the guest runs on the destination" in legend
    assert status_text(r)[0] == "completed (post-copy)" and "completed (post-copy)" in fig._suptitle.get_text()


def test_report_plot_without_a_completed_round_and_with_a_wide_range(tmp_path):
    from dirtylog.plot import plot_report

    r = simulate(memory="64MiB", workload="uniform:300MiB/s", bandwidth="1Gbit/s", give_up_after="10ms")
    assert [x.ended for x in r.rounds] == ["failed"]  # round 0, cut short by the give-up
    fig = plot_report(r, tmp_path / "none.png")
    _png(tmp_path / "none.png")
    assert any("no pre-copy round completed" in t.get_text() for t in fig.axes[0].texts)
    # what was left when it stopped (QEMU's remaining), and a y axis that holds it (it had none: -0.04..0.04 B)
    from dirtylog.units import format_size, format_time

    legend = " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert f"left to send when it stopped: {format_size(r.memory_remaining)} of 64.0 MiB" in legend
    # the round it stopped in, with what it sent
    cut = r.rounds[0]
    assert (f"round 0 cut short (the migration failed and rolled back): {format_size(cut.bytes)} sent in "
            f"{format_time(cut.duration)}, no sync" in legend)
    assert "0 pre-copy rounds + 1 cut short" in fig._suptitle.get_text()
    assert fig.axes[0].get_ylabel() == "dirty memory (MiB)" and fig.axes[0].get_ylim()[0] == 0
    assert fig.axes[0].get_ylim()[1] >= r.memory_remaining / 2**20 > 0
    # dirty memory from a full round down to a few pages: a log scale keeps the small rounds visible
    r = simulate(memory="1GiB", workload="uniform:50MiB/s", bandwidth="10Gbit/s", downtime_limit="1ms")
    fig = plot_report(r)
    assert fig.axes[0].get_yscale() == "log"


def test_report_plot_with_throttle(tmp_path):
    from dirtylog.plot import plot_report

    r = simulate(memory="64MiB", workload=Hotspot("300MiB/s", hot_fraction=0.5, seed=1), link=Link("400Mbit/s"),
                 policy=PreCopy(auto_converge=True), give_up_after="2min")
    assert any(x.throttle > 0 for x in r.rounds)
    fig = plot_report(r, tmp_path / "t.svg")
    assert (tmp_path / "t.svg").read_text().lstrip().startswith("<?xml")
    assert len(fig.axes) == 2  # + the throttle panel


def test_curve_plot(tmp_path):
    from dirtylog.plot import plot_curve

    c = dirty_curve(Zipf("20MiB/s", s=1.1, seed=2), "64MiB", [0.1, 0.5, 1, 2])
    fig = plot_curve(c, tmp_path / "c.png", expected=c.dirty_pages)
    _png(tmp_path / "c.png")
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert "1 s" in ticks and "100 ms" in ticks


def test_heatmap(tmp_path):
    from dirtylog.plot import plot_heatmap

    res = sweep(grid(memory="16MiB", workload=["hotspot:10MiB/s", "hotspot:200MiB/s"],
                     bandwidth=["200Mbit/s", "1Gbit/s"], downtime_limit=["30ms", "300ms"], give_up_after="5s"),
                jobs=2)
    fig = plot_heatmap(res, tmp_path / "h.png")
    _png(tmp_path / "h.png")
    assert len([a for a in fig.axes if a.get_visible()]) == 3  # two panels and the colour bar
    fig.canvas.draw()
    bar = fig.axes[-1]
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert len(labels) >= 3 and all(x.endswith(("s", "ms", "min")) for x in labels)
    plot_heatmap(res, tmp_path / "d.png", value="downtime")
    _png(tmp_path / "d.png")
    with pytest.raises(dirtylog.ConfigError):
        plot_heatmap(res, value="speed")


def test_colour_bar_ticks_label_the_inside_of_a_narrow_range():
    from dirtylog.plot import _nice_ticks

    # the default sweep's total times (1.43-4.76 s) got labels at its two ends only
    assert _nice_ticks(1.43, 4.76) == [2.0, 3.0, 4.0]
    assert _nice_ticks(0.09, 0.6) == [0.1, 0.2, 0.5]  # three of 1, 2, 5: as before
    assert _nice_ticks(0.05, 30.0) == [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    assert _nice_ticks(1.1, 1.9) == [1.1, 1.9]  # no round value inside: the ends


def test_cli_writes_pictures(tmp_path, capsys):
    small = ["-m", "16MiB", "-w", "hotspot:50MiB/s", "-b", "500Mbit/s"]
    assert main(["simulate", *small, "--plot", str(tmp_path / "s.png")]) == 0
    assert main(["curve", *small[:4], "--windows", "0.1s,1s", "--plot", str(tmp_path / "c.png")]) == 0
    assert main(["sweep", "-m", "16MiB", "-w", "hotspot:50MiB/s", "-b", "500Mbit/s,1Gbit/s", "-d", "30ms,300ms",
                 "--jobs", "1", "--heatmap", str(tmp_path / "h.png")]) == 0
    for name in ("s.png", "c.png", "h.png"):
        _png(tmp_path / name)
    err = capsys.readouterr().err
    assert "written to" in err
