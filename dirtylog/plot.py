"""Pictures of migrations, dirty curves and sweeps (matplotlib, the optional extra ``plot``).

``pip install 'dirtylog[plot]'`` brings matplotlib; without it every function
here raises :class:`PlotUnavailable` (an ImportError) saying so. Nothing is
imported until a function is called, and only matplotlib's object-oriented API
is used (no pyplot, no global state): the functions are safe in scripts,
servers and threads, and return the :class:`matplotlib.figure.Figure`, which
is also written to ``path`` when one is given (the format follows its suffix:
.png, .svg, .pdf).

* :func:`plot_report`: per round, the dirty pages found at its end and the
  expected downtime (with the downtime limit), and the vCPU throttle when a
  convergence aid throttled the guest.
* :func:`plot_curve`: distinct dirty pages against the window length, and the
  dirty rate each window would report.
* :func:`plot_heatmap`: a sweep's total time (or downtime) over bandwidth x
  downtime limit, one panel per workload; configurations that do not converge
  are hatched.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PlotUnavailable", "plot_report", "plot_curve", "plot_heatmap", "check_path"]

PathLike = Union[str, "os.PathLike[str]"]


class PlotUnavailable(ImportError):
    """matplotlib is not installed."""


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            "plotting needs matplotlib, which is not installed: pip install 'dirtylog[plot]' (or pip install matplotlib)"
        ) from None
    return Figure(figsize=(width, height), layout="constrained")


def check_path(path: PathLike) -> str:
    """The format of ``path`` (its suffix), or ConfigError if matplotlib cannot write it."""
    from .errors import ConfigError

    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise PlotUnavailable(
            "plotting needs matplotlib, which is not installed: pip install 'dirtylog[plot]' (or pip install matplotlib)"
        ) from None
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext not in formats:
        said = f"'.{ext}' is not a picture format matplotlib writes" if ext else "the file name has no suffix"
        raise ConfigError(f"{said}; name the file .png, .svg or .pdf (or {', '.join('.' + f for f in sorted(formats) if f not in ('png', 'svg', 'pdf'))})")
    return ext


def _save(fig: Any, path: Optional[PathLike]) -> Any:
    if path is not None:
        check_path(path)
        fig.savefig(os.fspath(path), dpi=110)
    return fig


_TIME_UNITS = ((3600.0, "h"), (60.0, "min"), (1.0, "s"), (1e-3, "ms"), (1e-6, "us"))
_SIZE_UNITS = ((2.0**40, "TiB"), (2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1.0, "B"))


def _unit(value: float, units: Sequence[Tuple[float, str]], at_least: float = 1.0) -> Tuple[float, str]:
    """The largest unit in which ``value`` is at least ``at_least``."""
    for scale, name in units:
        if value >= scale * at_least:
            return scale, name
    return units[-1]


def _plain_ticks(axis: Any) -> None:
    """Tick labels as plain numbers (the data are in the axis' unit): no 1e6 offset, no scientific notation."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.4g}"))


def _log_if_wide(ax: Any, values: Sequence[float], axis: str = "y") -> bool:
    """A log scale when the positive values span more than a decade and a quarter (20x; else the small ones
    vanish beside the big ones, as the last rounds and the threshold of a 64 GiB run do)."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if len(pos) >= 2 and max(pos) / min(pos) >= 20:
        from matplotlib.ticker import LogLocator, NullFormatter

        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        which = ax.yaxis if axis == "y" else ax.xaxis
        which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, ... labelled
        which.set_minor_formatter(NullFormatter())
        return True
    return False


def _time_ticks(axis: Any) -> None:
    """Tick labels of a time axis (in seconds) as times: 100 ms, 1 s, 10 s."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from .units import format_time

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: format_time(v).replace(".00 ", " ").replace(".0 ", " ")
                                           if v > 0 else "0"))
    axis.set_minor_formatter(NullFormatter())


def _nice_ticks(vmin: float, vmax: float) -> List[float]:
    """Round values from vmin to vmax for a log colour bar: 1, 2, 5 of each decade (only 1 over many decades);
    over a range too narrow for three of them, 1 to 9 of each decade (a sweep's total times of 1.43-4.76 s:
    2, 3, 4 s, where it had labelled only the two ends); or the two ends when no round value lies between."""
    if not (vmin > 0 and vmax > vmin):
        return [vmin]

    def values(subs: Sequence[float]) -> List[float]:
        return [round(m * 10.0 ** e, 12) for e in range(math.floor(math.log10(vmin)), math.ceil(math.log10(vmax)) + 1)
                for m in subs if vmin <= m * 10.0 ** e <= vmax]

    for subs in ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        out = values(subs)
        if len(out) <= 7:
            break
    if len(out) < 3:
        finer = values([float(m) for m in range(1, 10)])
        if len(finer) <= 7:
            out = finer
    return out if len(out) >= 2 else [vmin, vmax]


def _status(report: Any) -> str:
    from .render import status_text

    return status_text(report)[0]


def plot_report(report: Any, path: Optional[PathLike] = None, *, title: Optional[str] = None) -> Any:
    """A migration over simulated time: each pre-copy round as a bar (its span, and the memory it left dirty),
    what was left to send after each sync (QEMU's remaining: the pending size the switch-over test compares),
    the switch-over threshold each sync compared it with (QEMU's threshold_size, as the rounds report it:
    the bandwidth measured in the last 100 ms window x the downtime limit), the stop-and-copy and the
    post-copy phase; and the vCPU throttle, when a convergence aid throttled the guest. A round cut short
    (the migration failed or was cancelled in it, or the report was taken while it ran: ``RoundReport.partial``)
    is a hatched span: no sync ended it, so it has no dirty memory to draw, only what was left to send,
    from its start (the last sync's, or all of memory in round 0) to where it stopped."""
    from .report import CUT_SHORT
    from .units import format_rate, format_size, format_time

    live = [r for r in report.rounds if not r.final and not r.postcopy]
    rounds = [r for r in live if not r.partial]
    # the rounds a sync ended: the points left to send after each sync, and the threshold each compared them with
    # (a round ended by a pause, a forced switch-over between syncs, has neither)
    synced = [r for r in rounds if r.synced]
    cut = [r for r in live if r.partial]
    final = [r for r in report.rounds if r.final]
    throttled = any(r.throttle > 0 for r in live)
    fig = _figure(8.0, 7.2 if throttled else 5.6)  # first: it says so when matplotlib is missing
    from matplotlib.patches import Patch

    axes = fig.subplots(2 if throttled else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    end = max(report.total_time, 1e-9)
    tscale, tunit = _unit(end, _TIME_UNITS)
    psize = report.page_size
    pending_bytes = [r.remaining_pages * psize for r in synced]
    thresholds_bytes = [r.threshold for r in synced]
    # a migration that did not complete: what was left when it stopped (a round cut short, or no round at all)
    left_bytes = [report.memory_remaining] if report.status != "completed" else []
    # a round cut short: what was left to send when it began (the bitmap holds every page in round 0)
    cut_from = [(synced[-1].remaining_pages if synced else report.pages) * psize for _ in cut]
    sscale, sunit = _unit(max([r.dirty_pages * psize for r in rounds] + pending_bytes + thresholds_bytes + left_bytes
                              + cut_from + [1.0]), _SIZE_UNITS)
    # the data in the axes' units (seconds or minutes, MiB or GiB): ticks at round numbers of them
    dirty = [r.dirty_pages * psize / sscale for r in synced]
    pending = [b / sscale for b in pending_bytes]
    thresholds = [b / sscale for b in thresholds_bytes]
    left_end = [b / sscale for b in left_bytes]
    top = max(dirty + pending + thresholds + left_end + [b / sscale for b in cut_from] + [0.0]) or 1.0
    end /= tscale
    handles: List[Any] = []
    if synced:
        # a short round still gets a visible bar (0.4 % of the time axis)
        ax.bar([r.start / tscale for r in synced], dirty, width=[max(r.duration / tscale, end * 4e-3) for r in synced],
               align="edge",
               color="#4C72B0", edgecolor="white" if len(synced) <= 60 else "none", linewidth=0.5)
        handles.append(Patch(color="#4C72B0", label=f"pre-copy rounds ({len(synced)}): memory dirtied "
                                                    "during each, sent by the next"))
    for r in rounds:
        if r.synced:
            continue
        # a round the pause ended (a forced switch-over between syncs): it sent, but no sync measured it
        x0 = r.start / tscale
        span = ax.axvspan(x0, x0 + max(r.duration / tscale, end * 2e-3), facecolor="#4C72B0", alpha=0.15,
                          linewidth=0, label=f"round {r.index} ended by the pause, before its sync: "
                                             f"{format_size(r.bytes)} sent in {format_time(r.duration)}")
        handles.append(span)
    if not rounds:
        ax.text(0.5, 0.5, f"no pre-copy round completed\n({report.status} at {format_time(report.total_time)})",
                transform=ax.transAxes, ha="center", va="center", color="#444444",
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.85), zorder=5)
    for r, y0 in zip(cut, cut_from):
        state, how = CUT_SHORT[r.ended]
        x0, x1 = r.start / tscale, r.start / tscale + max(r.duration / tscale, end * 2e-3)
        span = ax.axvspan(x0, x1, facecolor="none", edgecolor="#C8C8C8", hatch="//", linewidth=0,
                          label=f"round {r.index} {state} ({how}): {format_size(r.bytes)} sent in "
                                f"{format_time(r.duration)}, no sync")
        # QEMU's remaining falls as the round sends (only its two ends are known here)
        (fall,) = ax.plot([x0, x1], [y0 / sscale, r.remaining_pages * psize / sscale], color="#222222",
                          linestyle=":", linewidth=1.2, label=f"left to send during round {r.index}: "
                                                              f"{format_size(y0)} at its start")
        handles += [span, fall]
    if synced:
        ends = [(r.start + r.duration) / tscale for r in synced]
        # each sync's threshold over the round it ended: it moves with the measured bandwidth, or stays at the
        # one the policy set (QEMU's avail-switchover-bandwidth)
        assumed = report.switchover_bandwidth
        which = "measured bandwidth" if assumed is None else "switch-over bandwidth set"
        (thr,) = ax.step([synced[0].start / tscale] + ends, [thresholds[0]] + thresholds, where="pre",
                         color="#C44E52", linestyle="--", linewidth=1.2,
                         label=f"switch-over threshold: {which} x {format_time(report.downtime_limit)} "
                               f"(last sync: {format_size(thresholds_bytes[-1])}, "
                               f"{format_rate(thresholds_bytes[-1] / report.downtime_limit, bits=True)})"
                         if report.downtime_limit > 0 else "switch-over threshold")
        (left,) = ax.plot(ends, pending, linestyle="none", marker="o", markersize=4 if len(synced) <= 60 else 2,
                          color="#222222", label="left to send after each sync (QEMU's remaining): the guest "
                                                 "pauses once it is below the threshold")
        handles += [left, thr]
    if left_bytes:
        (stopped,) = ax.plot([end], left_end, linestyle="none", marker="o", markersize=6, markerfacecolor="white",
                             color="#222222", clip_on=False,
                             label=f"left to send when it stopped: {format_size(left_bytes[0])} "
                                   f"of {format_size(report.memory)}")
        handles.append(stopped)
    stop = [r for r in final if not r.postcopy]
    if stop:
        r = stop[0]
        paused = (f"switch-over (post-copy downtime {format_time(report.downtime)})"
                  if report.postcopy_bytes or report.degraded_window > 0
                  else f"stop-and-copy (downtime {format_time(report.downtime)})")
        if r.partial:
            paused = (f"the guest paused, {CUT_SHORT[r.ended][0]} ({CUT_SHORT[r.ended][1]}): "
                      f"{format_size(r.bytes)} sent in {format_time(r.duration)}")
        span = ax.axvspan(r.start / tscale, r.start / tscale + max(r.duration / tscale, end * 2e-3), color="#DD8452",
                          alpha=0.35, linewidth=0, hatch="///" if r.partial else None, label=paused)
        handles.append(span)
    post = [r for r in final if r.postcopy]
    if post or report.degraded_window > 0:
        p0 = (post[0].start if post else report.total_time - report.degraded_window) / tscale
        lost = post and post[0].ended == "lost"
        span = ax.axvspan(p0, end, color="#55A868", alpha=0.25, linewidth=0,
                          label=(f"post-copy: the guest runs on the destination, degraded for "
                                 f"{format_time(report.degraded_window)}")
                                + (f"; the link failed and the VM was lost at {format_time(report.total_time)}"
                                   if lost else ""))
        handles.append(span)
    if not _log_if_wide(ax, dirty + pending + thresholds + left_end):
        ax.set_ylim(0, top * 1.15)
    _plain_ticks(ax.yaxis)
    ax.set_ylabel(f"dirty memory ({sunit})")
    ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="small",
                    frameon=False)
    ax.set_xlim(0, end)
    if throttled:
        ax3 = axes[1]
        xs = [r.start / tscale for r in live] + [(live[-1].start + live[-1].duration) / tscale]
        ax3.step(xs, [r.throttle for r in live] + [live[-1].throttle], where="post", color="#8172B3")
        ax3.set_ylabel("vCPU throttle (%)")
        ax3.set_ylim(0, 100)
        ax3.grid(alpha=0.3)
    axes[-1].set_xlabel(f"simulated time ({tunit})")
    _plain_ticks(axes[-1].xaxis)
    downtime = format_time(report.downtime) if report.downtime == report.downtime else "-"
    fig.suptitle(title or (
        f"{format_size(report.memory)}, {report.tracker}, {format_rate(report.bandwidth, bits=True)}: "
        f"{_status(report)}\ntotal {format_time(report.total_time)}, downtime {downtime}, "
        f"{len(rounds)} pre-copy round{'s' if len(rounds) != 1 else ''}"
        f"{' + 1 ' + CUT_SHORT[cut[-1].ended][0] if cut else ''}"),
        fontsize="medium")
    return _save(fig, path)


def plot_curve(curve: Any, path: Optional[PathLike] = None, *, title: Optional[str] = None,
               expected: Union[Sequence[float], "np.ndarray", None] = None) -> Any:
    """A dirty curve (a :class:`~dirtylog.measure.DirtyCurveResult`): dirty pages and rate per window.

    ``expected``: another curve over the same windows to draw beside it (a model's, a fit's).
    """
    import numpy as np

    w = np.asarray(curve.windows, dtype=float)
    d = np.asarray(curve.dirty_pages, dtype=float)
    order = np.argsort(w)
    w, d = w[order], d[order]
    fig = _figure(7.5, 5.0)
    ax = fig.subplots()
    ax.plot(w, d, marker="o", color="#4C72B0", label=f"dirty pages ({curve.mode})")
    if expected is not None:
        ax.plot(w, np.asarray(expected, dtype=float)[order], linestyle="--", color="#55A868", label="expected")
    ax.axhline(curve.total_pages, color="grey", linestyle=":", label=f"all pages ({curve.total_pages:,})")
    ax.set_xscale("log")
    ax.set_xlabel("window")
    _time_ticks(ax.xaxis)
    ax.set_ylabel("distinct dirty pages")
    if not _log_if_wide(ax, list(d)):
        ax.set_ylim(bottom=0)
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.grid(alpha=0.3, which="both")
    # The rate each window would report (what calc-dirty-rate says for that window): another quantity,
    # falling with the window length as rewrites stop counting.
    ax2 = ax.twinx()
    rate = d * curve.page_size / w / 2**20
    ax2.plot(w, rate, marker="s", color="#DD8452", label="dirty rate the window reports (MiB/s)")
    ax2.set_ylabel("dirty rate (MiB/s)")
    ax2.set_ylim(bottom=0)
    _plain_ticks(ax2.yaxis)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize="small", frameon=False,
              ncol=2)
    fig.suptitle(title or "Dirty curve: distinct pages dirtied per window (from a clean state)", fontsize="medium")
    return _save(fig, path)


_VALUES = {"total_time": "total time", "downtime": "downtime", "transferred": "transferred", "rounds": "rounds"}


def plot_heatmap(results: Sequence[Any], path: Optional[PathLike] = None, *, value: str = "total_time",
                 title: Optional[str] = None) -> Any:
    """A sweep's ``value`` ("total_time", "downtime", "transferred" or "rounds") over bandwidth x downtime limit.

    One panel per distinct workload (and memory, tracker and vCPU count). Cells
    show the value and the verdict: "forced" cells are marked with "!", cells that
    do not converge are hatched grey.
    """
    import numpy as np

    from .units import format_rate, format_size, format_time

    if value not in _VALUES:
        from .errors import ConfigError

        raise ConfigError(f"value must be one of {', '.join(_VALUES)}, got {value!r}")
    if not results:
        from .errors import ConfigError

        raise ConfigError("no sweep results to plot")
    panels: Dict[Tuple[Any, ...], List[Any]] = {}
    for r in results:
        panels.setdefault((r.workload, r.memory, r.tracker, r.vcpus), []).append(r)
    keys = list(panels)
    several = {i for i in range(4) if len({k[i] for k in keys}) > 1} or {0}
    ncols = min(len(keys), 3)
    nrows = -(-len(keys) // ncols)
    bws_all = sorted({r.bandwidth for r in results})
    dls_all = sorted({r.downtime_limit for r in results})
    fig = _figure(max(4.5, 1.3 * len(dls_all) + 2.5) * ncols, max(3.2, 0.75 * len(bws_all) + 2.0) * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    formats: Dict[str, Callable[[Any], str]] = {
        "total_time": format_time, "downtime": format_time, "transferred": format_size, "rounds": str
    }
    fmt = formats[value]

    finite = [float(getattr(r, value)) for r in results if r.verdict != "does not converge"
              and float(getattr(r, value)) > 0 and math.isfinite(float(getattr(r, value)))]
    vmin, vmax = (min(finite), max(finite)) if finite else (1.0, 10.0)
    if vmax <= vmin:
        vmax = vmin * 10
    from matplotlib.colors import LogNorm

    norm = LogNorm(vmin=vmin, vmax=vmax)
    image = None
    for idx, key in enumerate(keys):
        ax = axes[idx // ncols][idx % ncols]
        rs = panels[key]
        bws = sorted({r.bandwidth for r in rs})
        dls = sorted({r.downtime_limit for r in rs})
        grid = np.full((len(bws), len(dls)), np.nan)
        cells: Dict[Tuple[int, int], Any] = {}
        for r in rs:
            i, j = bws.index(r.bandwidth), dls.index(r.downtime_limit)
            cells[(i, j)] = r
            v = float(getattr(r, value))
            if r.verdict != "does not converge" and v > 0 and math.isfinite(v):
                grid[i, j] = v
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis_r", norm=norm, origin="lower", aspect="auto")
        for (i, j), r in cells.items():
            if r.verdict == "does not converge":
                ax.add_patch(_hatch(j, i))
                text = "no\nconvergence"
                color = "black"
            else:
                text = fmt(getattr(r, value)) + ("\n! forced" if r.verdict == "forced" else "")
                v = grid[i, j]
                color = "white" if math.isfinite(v) and norm(v) > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize="x-small", color=color)
        ax.set_xticks(range(len(dls)), [format_time(x) for x in dls])
        ax.set_yticks(range(len(bws)), [format_rate(x, bits=True) for x in bws])
        ax.set_xlabel("downtime limit")
        ax.set_ylabel("bandwidth")
        label = [str(key[0])] if 0 in several else []
        if 1 in several:
            label.append(format_size(key[1]))
        if 2 in several:
            label.append(str(key[2]))
        if 3 in several:
            label.append(f"{key[3]} vCPUs")
        ax.set_title(", ".join(label), fontsize="small")
    for idx in range(len(keys), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    if image is not None:
        from matplotlib.ticker import FuncFormatter

        cb = fig.colorbar(image, ax=axes.ravel().tolist(), label=_VALUES[value], shrink=0.9)
        # a handful of labelled ticks across the range (a log scale has few or no decades inside it)
        ints = list(range(math.ceil(vmin), math.floor(vmax) + 1))
        cb.set_ticks([float(i) for i in ints] if value == "rounds" and len(ints) <= 8 else _nice_ticks(vmin, vmax))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(  # round values without trailing zeros: 50 ms, 2 s
            lambda v, _pos: fmt(v).replace(".00 ", " ").replace(".0 ", " ") if value != "rounds" else f"{v:g}"))
        cb.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    fig.suptitle(title or f"Sweep: {_VALUES[value]} by bandwidth and downtime limit", fontsize="medium")
    return _save(fig, path)


def _hatch(x: float, y: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="#dddddd", edgecolor="#999999", hatch="//", linewidth=0)
