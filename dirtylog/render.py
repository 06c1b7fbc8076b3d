"""Text rendering shared by ``str(report)``, sweeps and the command line.

Each renderer builds its lines once, as segments of text with a style name
("" for none); :func:`plain` joins them into the text of ``str()``, and the
command line only colours the same segments (see :func:`dirtylog.cli`).
Tables fit a width by dropping their least important columns first.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["Segment", "Line", "Column", "plural", "slowdown_text", "table", "plain", "output_width", "curve_lines", "ROUNDS_MEANING"]

#: What every "rounds" figure counts (MigrationReport.precopy_rounds), as the tables' notes say it.
ROUNDS_MEANING = "pre-copy rounds sent while the guest ran, round 0 included, and a round the migration stopped in"

#: A piece of text and its style ("" none, "bold", "dim", "good", "warn", "bad").
Segment = Tuple[str, str]
#: A line of segments.
Line = List[Segment]


def output_width() -> Optional[int]:
    """The width to fit text to: the terminal's when stdout is one ($COLUMNS first, else 100 if
    it cannot be read), $COLUMNS in a pipe or a file, else None (no limit). ``str(report)`` and
    the command line both use it, so that they give the same text."""
    if hasattr(sys.stdout, "isatty") and sys.stdout.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() and int(cols) > 0 else None


def slowdown_text(percent: float) -> str:
    """A guest slowdown (the share, in %, of vCPU time lost to tracking exits) as every table and
    summary shows it: ``"0.13 %"``."""
    return f"{percent:.2f} %"


def plural(n: int, noun: str, nouns: Optional[str] = None) -> str:
    """``"1 round"``, ``"3 rounds"`` (``n`` with thousands separators)."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


@dataclass(frozen=True)
class Column:
    """A table column: its header, alignment ("right" or "left") and priority (0 is kept longest)."""

    header: str
    justify: str = "right"
    priority: int = 0
    short: str = ""  # a shorter header for a narrow terminal
    #: what the column holds, said in the table's caption ("header: note") only while the column is shown
    note: str = ""


#: The markups :func:`table` writes besides its text: what documentation pages take.
MARKUPS = ("rst", "markdown")


def table(columns: Sequence[Column], rows: Sequence[Tuple[Sequence[str], Union[str, Sequence[str]]]],
          width: Optional[int] = None, title: str = "", caption: str = "", markup: str = "") -> List[Line]:
    """A table as lines: a title (wrapped to ``width``), the header, a rule, the rows and a caption.

    Each row is its cells and a style: one for the row, or one per cell.
    With ``width``, columns of the highest priority number are dropped until the
    table fits (the columns of priority 0 always stay); the caption says which.
    The caption goes first, then the notes of the columns shown (``Column.note``),
    so that the caption never explains a column the table dropped.

    ``markup`` (one of :data:`MARKUPS`) writes the table alone, every column, for a
    documentation page: ``"rst"`` a reStructuredText simple table (``=`` rules),
    ``"markdown"`` a pipe table (right-aligned columns marked ``---:``).
    """
    if markup in MARKUPS:
        # a page wraps cells where they have spaces: a number keeps its unit (no-break spaces, as wrap() keeps
        # them), and in reST a cell that would read as a list item ("-") is escaped
        body = [[_marked(t, markup) for t in r[0]] for r in rows]
        heads = [c.header for c in columns]
        if markup == "markdown":
            def row(cells: Sequence[str]) -> Line:
                return [("| " + " | ".join(cells) + " |", "")]

            return [row(heads), row(["---:" if c.justify == "right" else "---" for c in columns])] + [
                row(r) for r in body]
        widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(heads)]
        rule: Line = [(" ".join("=" * w for w in widths), "")]

        def cells_line(cells: Sequence[str]) -> Line:
            return [(" ".join(t.rjust(w) if c.justify == "right" else t.ljust(w)
                              for t, w, c in zip(cells, widths, columns)).rstrip(), "")]

        return [rule, cells_line(heads), rule] + [cells_line(r) for r in body] + [rule]
    if markup:
        raise ValueError(f"unknown table markup {markup!r}; allowed: {', '.join(MARKUPS)}")
    def fit(headers: List[str]) -> Tuple[List[int], List[int], List[str]]:
        widths = [max([len(headers[i])] + [len(r[0][i]) for r in rows]) for i in range(len(columns))]
        keep = list(range(len(columns)))
        dropped: List[str] = []
        while width is not None and sum(widths[i] for i in keep) + 2 * (len(keep) - 1) > width:
            cands = [i for i in keep if columns[i].priority > 0]
            if not cands:
                break
            worst = max(cands, key=lambda i: (columns[i].priority, i))
            keep.remove(worst)
            dropped.append(columns[worst].header)
        return keep, widths, dropped

    headers = [c.header for c in columns]
    keep, widths, dropped = fit(headers)
    if width is not None and sum(widths[i] for i in keep) + 2 * (len(keep) - 1) > width:
        headers = [c.short or c.header for c in columns]  # still too wide: the short headers
        keep, widths, dropped = fit(headers)

    def cell(text: str, i: int) -> str:
        return text.rjust(widths[i]) if columns[i].justify == "right" else text.ljust(widths[i])

    def line(cells: Sequence[str], style: Union[str, Sequence[str]]) -> Line:
        if isinstance(style, str):
            return [("  ".join(cell(cells[i], i) for i in keep).rstrip(), style)]
        segs: Line = []
        for n, i in enumerate(keep):
            if n:
                segs.append(("  ", ""))
            segs.append((cell(cells[i], i), style[i]))
        return segs

    out: List[Line] = []
    if title:
        out += wrap("", [(title, "bold")], -1, width)
    out.append(line(headers, "bold"))
    out.append([("  ".join("-" * widths[i] for i in keep), "dim")])
    for cells, style in rows:
        out.append(line(cells, style))
    notes = [caption] if caption else []
    meanings = [f"{headers[i]}: {columns[i].note}" for i in keep if columns[i].note]
    if meanings:
        notes.append("; ".join(meanings) + ".")
    if dropped:
        notes.append(f"(narrow terminal: {', '.join(reversed(dropped))} not shown)")
    for n in notes:
        out += wrap("", [(n, "dim")], -1, width)
    return out


def _marked(text: str, markup: str) -> str:
    """A table cell for a page in ``markup``: no-break spaces between numbers and their units, and in
    reST a leading list marker ("-", "*", "+") escaped."""
    text = " ".join(w.replace(" ", "\u00a0") for w in _words(text))
    if markup == "rst" and re.match(r"[-*+](?: |$)", text):
        text = "\\" + text
    return text


def plain(lines: Sequence[Line]) -> str:
    """The lines as plain text."""
    return "\n".join("".join(text for text, _ in line).rstrip() for line in lines)


_UNIT_WORD = re.compile(r"^(?:[KMGTPE]i?B|B|[kMGT]?bit/s|[kMGT]?B/s|ns|us|ms|s|min|h|%)[),;:.]*$")


def _words(text: str) -> List[str]:
    """The words of ``text``, a number kept with its unit ("9.93 MiB" is not split across lines)."""
    out: List[str] = []
    for w in text.split(" "):
        if out and _UNIT_WORD.match(w) and out[-1][-1:].isdigit():
            out[-1] += " " + w
        else:
            out.append(w)
    return out


def wrap(label: str, value: Line, label_width: int, width: Optional[int], hang: int = 0) -> List[Line]:
    """``label  value`` lines, the value's words wrapped under itself to ``width``; ``hang`` indents the
    value's later lines by that many more spaces (a message's continuation)."""
    pad = label_width + 2 if label_width >= 0 else 0
    head: Line = [(label.ljust(label_width) + "  ", "bold")] if pad else []
    if width is None or pad + sum(len(t) for t, _ in value) <= width:
        return [head + value]
    room = max(20, width - pad)
    # the words, each its pieces: a segment that does not start with a space continues the word
    # before it ("Plan" then ": 3 ..." is "Plan:"), so lines break only where the text has a space
    words: List[Line] = []
    glue = False
    for text, style in value:
        for k, word in enumerate(_words(text)):
            if not word:  # a leading, trailing or repeated space
                continue
            if k == 0 and glue and words:
                words[-1].append((word, style))
            else:
                words.append([(word, style)])
        if text:
            glue = not text.endswith(" ")
    lines: List[Line] = []
    cur: Line = []
    used = 0
    for pieces in words:
        n = sum(len(t) for t, _ in pieces)
        if used and used + 1 + n > (room - hang if lines else room):
            lines.append(cur)
            cur, used = [], 0
        if used:
            pieces = [(" " + pieces[0][0], pieces[0][1])] + pieces[1:]
            n += 1
        cur += pieces
        used += n
    if cur:
        lines.append(cur)
    indent: Line = [(" " * (pad + hang), "")] if pad + hang else []
    return [head + lines[0]] + [indent + ln for ln in lines[1:]]


def curve_lines(curve: Any, width: Optional[int] = None, title: str = "", of: str = "memory") -> List[Line]:
    """A dirty curve's table (``dirtylog curve`` and ``dirtylog record``): per window, from the shortest,
    the page writes made in it (when counted), the distinct pages dirtied, their size, their share
    of ``of`` (the guest's memory, or the recording's tracked memory) and the dirty rate."""
    from .units import format_dirty_rate, format_size, format_time

    c = curve
    writes = getattr(c, "writes", None)
    cols = [Column("window")] + ([Column("page writes", priority=2)] if writes is not None else []) + [
        Column("dirty pages"), Column("dirty memory", priority=1), Column(f"of {of}", priority=3),
        Column("dirty rate")]
    rates = c.rates_mib_s()
    rows: List[Tuple[Sequence[str], Union[str, Sequence[str]]]] = []
    for i in sorted(range(len(c.windows)), key=lambda k: c.windows[k]):
        n = float(c.dirty_pages[i])
        rows.append(([format_time(float(c.windows[i]))] + ([f"{int(writes[i]):,}"] if writes is not None else [])
                     + [f"{n:,.0f}", format_size(n * c.page_size), f"{100 * n / c.total_pages:.1f} %",
                        format_dirty_rate(rates[i] * 2**20)], ""))
    return table(cols, rows, width, title=title)


# ----------------------------------------------------------------------------- a migration's report


def status_text(report: Any) -> Tuple[str, str]:
    """The status as the tables show it, and its style."""
    if getattr(report, "interrupted", False) or report.status == "active":
        return "interrupted (Ctrl-C): a partial report", "warn"
    if report.status == "completed" and (report.postcopy_bytes or report.degraded_window > 0):
        return "completed (post-copy)", "good"
    if report.status == "completed" and report.converged:
        return "completed (converged)", "good"
    if report.status == "completed":
        return "completed (forced stop-and-copy, not converged)", "warn"
    if report.status == "failed":
        return "failed (rolled back, the guest runs on the source)", "bad"
    return report.status, "bad"


def _t(x: float) -> str:
    from .units import format_time

    return format_time(x) if x == x and x not in (float("inf"), float("-inf")) else "-"


def _starts(values: Sequence[float]) -> List[str]:
    """Times for a column of start times: as :func:`_t` writes them, unless that makes different times
    look the same (short rounds an hour in: "5 min 40 s" for a dozen rounds), then with the fewest
    decimals of a second (up to 3) that tell them apart."""
    texts = [_t(v) for v in values]
    distinct = len(set(values))
    if len(set(texts)) < distinct:
        from .units import format_time

        for decimals in (1, 2, 3):
            texts = [format_time(v, decimals) for v in values]
            if len(set(texts)) == distinct:
                break
    return texts


def rounds_lines(report: Any, width: Optional[int] = None, max_rows: int = 40,
                 more: str = "report.rounds has them all") -> List[Line]:
    """The round-by-round table (like successive ``virsh domjobinfo`` snapshots), after the setup's row
    (``report.setup``: dirty logging starting, up to the setup's sync) when the report has one."""
    from .units import format_rate, format_size

    rounds = list(report.rounds)
    setup = getattr(report, "setup", None)
    throttled = any(r.throttle > 0 for r in rounds if not r.final)
    # what each measured column holds (RoundReport's fields), said under the table while the column is shown
    cols = [Column("round", priority=0), Column("start", priority=5), Column("duration", priority=3),
            Column("sent", priority=2),
            Column("dirty pages", priority=1, note="found by the sync that ended the round"),
            Column("dirty/s", priority=6, note="those pages per second of the round (QEMU's dirty-pages-rate)"),
            Column("exp. downtime", priority=1, note="what the sync left / bandwidth (QEMU's expected-downtime)"),
            Column("throughput", priority=8),
            Column("exits", priority=4, note="VM exits caused by dirty tracking"),
            Column("slowdown", priority=7, note="share of vCPU time lost to them")]
    if throttled:
        cols.append(Column("throttle", priority=4))
    shown: List[Any] = rounds
    skipped = 0
    if max_rows and len(rounds) > max_rows:
        head = max_rows // 2
        shown = rounds[:head] + [None] + rounds[head - max_rows:]
        skipped = len(rounds) - max_rows
    if setup is not None:
        shown = [setup] + shown
    rows: List[Tuple[Sequence[str], Union[str, Sequence[str]]]] = []
    starts = iter(_starts([r.start for r in shown if r is not None]))
    for r in shown:
        if r is None:
            rows.append((["..."] * len(cols), "dim"))
            continue
        end = r.final
        cut = r.partial
        measured = r.synced  # no sync ended it (cut short, paused, the final rounds): nothing measured
        cells = [
            ("post" if r.postcopy else ("final" if end else ("setup" if r is setup else str(r.index))))
            + ("*" if cut else ""),
            next(starts),
            _t(r.duration),
            format_size(r.bytes),
            f"{r.dirty_pages:,}" if measured else "-",
            f"{r.dirty_rate:,.0f}" if measured else "-",
            _t(r.expected_downtime) if measured else "-",
            # the setup sends nothing (the dirty log starts; QEMU's few bytes of RAM block list are not modelled)
            format_rate(r.bandwidth, bits=True) if r.duration > 0 and r is not setup else "-",
            f"{r.exits:,}",
            slowdown_text(r.guest_slowdown),
        ]
        if throttled:
            cells.append("-" if end else f"{r.throttle:.0f} %")
        rows.append((cells, "warn" if cut else ("bold" if end else "")))
    notes = [f"{plural(skipped, 'round')} not shown ({more})"] if skipped else []
    last = rounds[-1] if rounds else None
    if last is not None and last.partial:
        notes.append(cut_short_text(report, last))
    if not rounds:
        mark = "* " if setup is not None and setup.partial else ""  # the setup's row is marked
        notes.append(f"{mark}no round began: the migration {report.status} in its setup"
                     if report.status in ("failed", "cancelled") else f"{mark}no round began yet (setup)")
    return table(cols, rows, width, title="Rounds", caption="; ".join(notes))


def cut_short_text(report: Any, r: Any) -> str:
    """What the table's mark (*) says of a round cut short (``RoundReport.partial``), in the words of
    :data:`dirtylog.report.CUT_SHORT`."""
    from .report import CUT_SHORT
    from .units import format_size

    if r.postcopy:
        where = "post-copy"
    elif r.final:  # paused: the stop-and-copy, or post-copy's switch-over before the destination resumed
        sw = [e for e in getattr(report, "events", ()) if e.get("event") == "switchover"]
        where = "the post-copy switch-over" if sw and sw[-1].get("postcopy") else "the stop-and-copy"
    else:
        where = f"round {r.index}"
    state, how = CUT_SHORT[r.ended]
    sent = f"{plural(r.pages_sent, 'page')} ({format_size(r.bytes)}) sent"
    if r.ended == "running":
        return f"* {state}: {how} {_t(r.duration)} into {where}, {sent} so far"
    tail = "" if r.final else "; no sync ended it"
    return f"* {state}: {how} {_t(r.duration)} into {where}, after {sent}{tail}"


def _throttle_value(report: Any) -> Optional[Line]:
    from .units import format_dirty_rate, format_time

    steps = [e for e in report.events if e.get("event") == "throttle"]
    if steps:
        path = " -> ".join(f"{e['percent']} %" for e in steps[:6]) + (" -> ..." if len(steps) > 6 else "")
        return [(f"auto-converge {path} ({plural(len(steps), 'step')}, the first at {format_time(steps[0]['time'])}"
                 f"; {report.cpu_throttle_percentage} % at the end); {format_time(report.guest_throttled)} of "
                 f"vCPU time throttled away", "")]
    dl = [e for e in report.events if e.get("event") == "dirty-limit"]
    if dl:
        periods = [e for e in report.events if e.get("event") == "dirty-limit-period"]
        text = f"dirty-limit {format_dirty_rate(dl[0]['limit'])} per vCPU, engaged at {format_time(dl[0]['time'])}"
        if periods:
            last = periods[-1]
            rates, thr = last.get("rates") or [0.0], last.get("throttles") or [0.0]
            text += (f"; last of {plural(len(periods), 'period')}: vCPU dirty rates up to "
                     f"{format_dirty_rate(max(rates))}, "
                     f"vCPU throttles up to {100 * max(thr):.0f} %")
        else:
            text += "; no period completed"
        full = getattr(report, "dirty_limit_ring_full_time", None)
        per = getattr(report, "dirty_limit_throttle_time_per_round", None)
        if full is not None and per is not None:  # QEMU's dirty-limit-ring-full-time and -throttle-time-per-round
            text += f"; ring-full time {format_time(full)}, throttle time per round {format_time(per)}"
        return [(text, "")]
    return None


def summary_items(report: Any, words: Optional[Callable[[str], str]] = None) -> List[Tuple[str, Line]]:
    """The overall figures: (label, value) in the order shown. ``words`` rewrites the reason (the
    command line puts the Python API's hints in its own syntax)."""
    from .units import format_rate, format_size, format_time

    items: List[Tuple[str, Line]] = []
    status, style = status_text(report)
    items.append(("Status", [(status, style)]))
    reason = (words or str)(report.reason)
    if not reason and getattr(report, "interrupted", False):
        reason = f"stopped by Ctrl-C at {format_time(report.total_time)}: the migration had not ended"
    items.append(("Reason", [(reason or "-", "")]))
    items.append(("Total time", [(format_time(report.total_time), "")]))
    switched = report.downtime == report.downtime and report.status in ("completed", "lost")
    if switched:
        ok = report.downtime <= report.downtime_limit
        items.append(("Downtime", [(format_time(report.downtime), "good" if ok else "warn"),
                                   (f" (limit {format_time(report.downtime_limit)})", "")]))
    else:
        items.append(("Downtime", [(f"- (no switch-over; limit {format_time(report.downtime_limit)})", "")]))
    items.append(("Expected downtime", [(_t(report.expected_downtime), "")]))
    items.append(("Setup time", [(format_time(report.setup_time), "")]))
    parts = f"pre-copy {format_size(report.precopy_bytes)}, downtime {format_size(report.downtime_bytes)}"
    if report.postcopy_bytes:
        parts += f", post-copy {format_size(report.postcopy_bytes)}"
    items.append(("Transferred", [(f"{format_size(report.transferred)} "
                                   f"({report.transferred / max(report.memory, 1):.2f}x memory): {parts}", "")]))
    items.append(("Remaining", [(f"{format_size(report.memory_remaining)} of {format_size(report.memory)}", "")]))
    items.append(("Throughput", [(f"{report.mbps:,.0f} mbps ({format_rate(report.mbps * 1e6 / 8, bits=True)}), "
                                  f"{report.pages_per_second:,.0f} pages/s", "")]))
    if report.postcopy_requests or report.postcopy_bytes:
        items.append(("Post-copy", [(f"{format_size(report.postcopy_bytes)} after the switch-over; "
                                     f"{plural(report.postcopy_requests, 'page request')} "
                                     f"({report.postcopy_prepaged:,} pages prepaged), "
                                     f"{format_time(report.postcopy_stall_time)} of vCPU time stalled, "
                                     f"degraded for {format_time(report.degraded_window)}", "")]))
    xb = report.compression.get("xbzrle")
    pages = f"{report.pages_sent:,} sent (normal {report.normal:,}, zero {report.duplicate:,}"
    pages += f", XBZRLE {xb['pages']:,})" if xb else ")"
    items.append(("Pages", [(pages, "")]))
    live = [r for r in report.rounds if not r.final and not r.postcopy]
    notes = ["round 0 sends all memory"] if live else []
    if live and live[-1].partial:
        how = "still running" if live[-1].ended == "running" else "cut short"
        who = "it" if live[-1].index == 0 else f"round {live[-1].index}"
        notes.append(f"{who} {'is' if live[-1].ended == 'running' else 'was'} {how}")
    items.append(("Rounds", [(f"{plural(report.precopy_rounds, 'pre-copy round')}"
                              f"{' (' + '; '.join(notes) + ')' if notes else ''}, "
                              f"{plural(report.dirty_sync_count, 'dirty sync')}", "")]))
    thr = _throttle_value(report)
    if thr is not None:
        items.append(("Throttle", thr))
    if xb:
        items.append(("XBZRLE", [(f"cache {format_size(xb['cache_size'])}; {xb['pages']:,} pages as deltas "
                                  f"({format_size(xb['bytes'])}, encoding rate {xb['encoding_rate']:.1f}x), "
                                  f"{plural(xb['cache_miss'], 'cache miss', 'cache misses')} "
                                  f"({100 * xb['cache_miss_rate']:.1f} %), {plural(xb['overflow'], 'overflow')}",
                                  "")]))
    mf = report.compression.get("multifd")
    if mf:
        cap = (f", {format_rate(mf['channel_bandwidth'], bits=True)} each" if mf.get("channel_bandwidth") else "")
        items.append(("Multifd", [(f"{plural(max(1, mf['channels']), 'channel')}{cap}: effective "
                                   f"{format_rate(mf['effective_bandwidth'], bits=True)}; "
                                   f"{format_size(report.multifd_bytes)} of pages", "")]))
    denom = report.total_time * report.vcpus
    slow = 100.0 * report.guest_lost / denom if denom > 0 else 0.0
    items.append(("Guest", [(f"{report.guest_writes:,} page writes; {format_time(report.guest_lost)} of vCPU "
                             f"time lost to tracking exits ({slowdown_text(slow)})", "")]))
    ts = report.tracker_stats
    items.append(("Tracker", [(f"{report.tracker}: {plural(ts.get('faults', 0), 'fault')}, "
                               f"{plural(ts.get('pml_full_exits', 0), 'PML-full exit')}, "
                               f"{plural(ts.get('ring_full_exits', 0), 'ring-full exit')}, "
                               f"{plural(ts.get('kicks', 0), 'kick')}, {plural(ts.get('splits', 0), 'split')}",
                               "")]))
    if report.verified is True:
        text = ("yes: rolled back, the source holds every write" if report.status == "failed"
                else "yes: every page on the destination holds its newest version")
        items.append(("Verified", [(text, "good")]))
    elif report.verified is False:
        items.append(("Verified", [(f"NO: {plural(report.mismatches, 'page differs', 'pages differ')} "
                                    f"(first: {report.mismatched_pages[:8]})", "bad")]))
    else:
        items.append(("Verified", [("not checked (interrupted)" if getattr(report, "interrupted", False)
                                    else "not checked", "")]))
    return items


def summary_lines(report: Any, width: Optional[int] = None, words: Optional[Callable[[str], str]] = None) -> List[Line]:
    items = summary_items(report, words)
    w = max(len(k) for k, _ in items)
    out: List[Line] = []
    for k, v in items:
        out += wrap(k, v, w, width)
    return out


def models_lines(report: Any, width: Optional[int] = None) -> List[Line]:
    """The closed-form predictions for the same inputs, beside the simulated figures."""
    from .units import format_dirty_rate, format_size

    models = {k: v for k, v in report.models.items() if isinstance(v, dict) and "total_time" in v}
    if not models:
        return []
    yes: Dict[Any, str] = {True: "yes", False: "no"}
    cols = [Column("model", "left"), Column("rounds"), Column("total time"), Column("downtime"), Column("sent"),
            Column("converged", "left")]
    switched = report.downtime == report.downtime and report.status in ("completed", "lost")
    rows: List[Tuple[Sequence[str], Union[str, Sequence[str]]]] = [(
        ["simulated", str(report.precopy_rounds), _t(report.total_time), _t(report.downtime) if switched else "-",
         format_size(report.transferred), yes.get(report.converged, "-")], "bold")]
    for name, m in models.items():
        gone = m.get("converged") is False  # diverges: its figures at its round cap mean nothing
        rounds = m.get("rounds")
        rows.append(([name, "-" if rounds is None or gone else str(rounds), "-" if gone else _t(m["total_time"]),
                      "-" if gone or "downtime" not in m else _t(m["downtime"]),
                      "-" if gone or "total_bytes" not in m else format_size(m["total_bytes"]),
                      yes.get(m.get("converged"), "-")], ""))
    notes = [f"rounds: {ROUNDS_MEANING} (a model's last, paused round is the stop-and-copy)"]
    g = models.get("geometric")
    if g and g.get("dirty_rate") is not None:
        fed = "the measured dirty rate" if g.get("dirty_rate_measured", True) else \
            "the workload's page-write rate (no round completed)"
        notes.append(f"geometric: fed {fed}, {format_dirty_rate(g['dirty_rate'])}")
    if "cloudsim" in models:
        notes.append("cloudsim: RAM / (bandwidth / 2), no rounds and no downtime")
    lines = table(cols, rows, width, title="Closed-form models, same inputs")
    for n in notes:
        lines += wrap("", [(n, "dim")], -1, width)
    return lines


def report_lines(report: Any, width: Optional[int] = None, max_rounds: int = 40, models: bool = True,
                 title: Sequence[str] = (), more: str = "report.rounds has them all",
                 words: Optional[Callable[[str], str]] = None) -> List[Line]:
    """The whole report: title lines, the rounds, the summary and the models."""
    out: List[Line] = []
    for i, t in enumerate(title):
        out += wrap("", [(t, "bold" if i == 0 else "")], -1, width)
    if title:
        out.append([])
    out += rounds_lines(report, width, max_rounds, more)
    out.append([])
    out += summary_lines(report, width, words)
    ml = models_lines(report, width) if models else []
    if ml:
        out.append([])
        out += ml
    return out
