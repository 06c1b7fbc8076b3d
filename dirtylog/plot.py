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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

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


def _fmt_time(x: float) -> str:
    from .units import format_time

    return format_time(x) if math.isfinite(x) else "-"


def plot_report(report: Any, path: Optional[PathLike] = None, *, title: Optional[str] = None) -> Any:
    """Dirty pages and expected downtime per round (and the throttle, when there is one)."""
    from .units import format_rate, format_size, format_time

    rounds = [r for r in report.rounds if not r.final]
    throttled = any(r.throttle > 0 for r in rounds)
    fig = _figure(8.0, 6.5 if throttled else 4.8)
    axes = fig.subplots(2 if throttled else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    xs = [r.index for r in rounds]
    if len(xs) <= 200:
        ax.bar(xs, [r.dirty_pages for r in rounds], color="#4C72B0", label="dirty pages at the round's end")
    else:  # thousands of rounds of a migration that does not converge: bars would be a blur
        ax.fill_between(xs, [r.dirty_pages for r in rounds], step="mid", color="#4C72B0",
                        label="dirty pages at the round's end")
    ax.set_ylabel("dirty pages")
    ax.set_xlabel("round")
    ax.grid(axis="y", alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(xs, [r.expected_downtime * 1e3 for r in rounds], color="#DD8452", marker="o", label="expected downtime")
    ax2.axhline(report.downtime_limit * 1e3, color="#C44E52", linestyle="--", label="downtime limit")
    if report.status == "completed":
        ax2.axhline(report.downtime * 1e3, color="#55A868", linestyle=":", label=f"downtime {format_time(report.downtime)}")
    ax2.set_ylabel("expected downtime (ms)")
    ax2.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    h2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + h2[0], handles[1] + h2[1], loc="upper right", fontsize="small")
    if throttled:
        ax3 = axes[1]
        ax3.step(xs, [r.throttle for r in rounds], where="mid", color="#8172B3")
        ax3.set_ylabel("vCPU throttle (%)")
        ax3.set_ylim(0, 100)
        ax3.set_xlabel("round")
        ax3.grid(alpha=0.3)
    if len(xs) <= 30:
        ax.set_xticks(xs)
    verdict = report.status + ("" if report.converged or report.status != "completed" else " (forced)")
    fig.suptitle(title or (
        f"{format_size(report.memory)}, {report.tracker}, {format_rate(report.bandwidth, bits=True)}: {verdict}, "
        f"total {format_time(report.total_time)}, downtime {format_time(report.downtime)}"), fontsize="medium")
    return _save(fig, path)


def plot_curve(curve: Any, path: Optional[PathLike] = None, *, title: Optional[str] = None,
               expected: Optional[Sequence[float]] = None) -> Any:
    """A dirty curve (a :class:`~dirtylog.measure.DirtyCurveResult`): dirty pages and rate per window.

    ``expected``: another curve over the same windows to draw beside it (a model's, a fit's).
    """
    import numpy as np

    w = np.asarray(curve.windows, dtype=float)
    d = np.asarray(curve.dirty_pages, dtype=float)
    order = np.argsort(w)
    w, d = w[order], d[order]
    fig = _figure(7.5, 4.5)
    ax = fig.subplots()
    ax.plot(w, d, marker="o", color="#4C72B0", label=f"dirty pages ({curve.mode})")
    if expected is not None:
        ax.plot(w, np.asarray(expected, dtype=float)[order], linestyle="--", color="#55A868", label="expected")
    ax.axhline(curve.total_pages, color="grey", linestyle=":", label="all pages")
    ax.set_xscale("log")
    ax.set_xlabel("window (s)")
    ax.set_ylabel("distinct dirty pages")
    ax.grid(alpha=0.3, which="both")
    ax2 = ax.twinx()
    rate = d * curve.page_size / w / 2**20
    ax2.plot(w, rate, marker="s", color="#DD8452", label="dirty rate (MiB/s)")
    ax2.set_ylabel("dirty rate (MiB/s)")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center right", fontsize="small")
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
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v) if value != "rounds" else f"{v:g}"))
        cb.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    fig.suptitle(title or f"Sweep: {_VALUES[value]} by bandwidth and downtime limit", fontsize="medium")
    return _save(fig, path)


def _hatch(x: float, y: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="#dddddd", edgecolor="#999999", hatch="//", linewidth=0)
