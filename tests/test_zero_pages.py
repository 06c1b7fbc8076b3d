"""Zero-page placement (dirtylog.zeropages): scattered, at the top of memory, or in page ranges."""
from __future__ import annotations

import subprocess
import sys
from typing import Any, Dict

import numpy as np
import pytest

from dirtylog import Link, simulate
from dirtylog.errors import ConfigError
from dirtylog.specs import parse_zero_pages
from dirtylog.workloads import Sequential, Uniform
from dirtylog.zeropages import ZeroPages

# 1024 pages; the guest rewrites the top half far faster than the scan reaches it
TOP_WRITER: Dict[str, Any] = dict(
    memory="4MiB", workload=Sequential("400MiB/s", start=512, length=512), link=Link("10MiB/s"), seed=3)


@pytest.mark.parametrize("spec,expect", [
    ("30%", ZeroPages.scattered(0.3)), ("0.3", ZeroPages.scattered(0.3)),
    ("scattered:30%", ZeroPages.scattered(0.3)), ("top:25%", ZeroPages.top(0.25)),
    ("top:512MiB", ZeroPages("top", size=512 << 20)), ("top:4096", ZeroPages("top", count=4096)),
    ("ranges:0-1023,2048,4096-8191", ZeroPages("ranges", spans=((0, 1024), (2048, 2049), (4096, 8192)))),
    ("ranges:10-20,0-15", ZeroPages("ranges", spans=((0, 21),))),
])
def test_specs(spec, expect):
    z = parse_zero_pages(spec)
    assert z == expect
    assert parse_zero_pages(str(z)) == z  # the spec string reads back


@pytest.mark.parametrize("spec", ["140%", "top:-1", "ranges:5-3", "ranges:a-b", "middle:10%", "x"])
def test_bad_specs_are_config_errors(spec):
    with pytest.raises(ConfigError):
        parse_zero_pages(spec)


def test_bitmap_and_share():
    z = ZeroPages.top(0.25)
    words = z.bitmap(100, 4096)
    assert words is not None
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:100]
    assert np.flatnonzero(bits).tolist() == list(range(75, 100)) and z.share(100, 4096) == 0.25
    r = ZeroPages.ranges([range(3, 5), (10, 12)])
    words = r.bitmap(64, 4096)
    assert words is not None
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")
    assert np.flatnonzero(bits).tolist() == [3, 4, 10, 11]
    assert ZeroPages.scattered(0.5).bitmap(64, 4096) is None
    with pytest.raises(ConfigError, match="past the guest's last page"):
        ZeroPages.ranges([(0, 65)]).check(64, 4096)
    with pytest.raises(ConfigError):
        simulate(memory="256KiB", workload=None, zero_pages="top:1MiB")


def test_placement_decides_whether_the_writes_hit_them():
    at_top = simulate(zero_pages="top:50%", **TOP_WRITER)  # where the guest writes: all destroyed
    below = simulate(zero_pages="ranges:0-511", **TOP_WRITER)  # where it never writes: all stay zero
    scattered = simulate(zero_pages=0.5, **TOP_WRITER)  # today's behaviour: about half of them hit
    for r in (at_top, below, scattered):
        assert r.status == "completed" and r.verified
    assert at_top.duplicate == 0
    assert below.duplicate == 512
    assert 150 < scattered.duplicate < 400
    assert below.transferred < at_top.transferred


def test_zero_pages_never_written_are_sent_as_headers_in_every_pass():
    # an idle guest at the top, zero pages at the bottom: every pass sends them as headers only
    r = simulate(memory="4MiB", workload=Sequential("40MiB/s", start=768, length=256), link=Link("10MiB/s"),
                 zero_pages=ZeroPages.ranges([range(0, 256)]), seed=1)
    assert r.status == "completed" and r.verified and r.duplicate == 256


def test_command_line_takes_a_placement(tmp_path):
    def run(*args):
        # from outside the source tree: `python -m dirtylog` must import the installed package
        return subprocess.run([sys.executable, "-m", "dirtylog", "simulate", "-m", "4MiB", "-w", "idle",
                               "-b", "10MiB/s", "--json", *args], capture_output=True, text=True, cwd=tmp_path)

    import json

    out = run("--zero-pages", "top:25%")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["duplicate"] == 256
    bad = run("--zero-pages", "middle:3")
    assert bad.returncode == 2 and "zero-page placement" in bad.stderr


def test_sweep_configs_keep_a_placement_as_its_spec():
    from dirtylog.config import MigrationConfig

    c = MigrationConfig(memory="4MiB", zero_pages=ZeroPages.top(0.25))
    assert c.zero_pages == "top:25%" and c.build()["zero_pages"] == "top:25%"


@pytest.mark.parametrize("z", [
    ZeroPages.scattered(0.123456789), ZeroPages.scattered(1e-7), ZeroPages.top(0.3333333333),
    ZeroPages.top(1.2345e-9), ZeroPages.top("1.2345GiB"), ZeroPages("top", size=1_000_000),
])
def test_a_spec_string_reads_back_exactly(z):
    """A MigrationConfig (sweeps) keeps a placement as its spec string: it must not round it
    (top:1.2345GiB used to become top:1.23 GiB, 1,179 pages fewer on a 4 GiB guest)."""
    from dirtylog.config import MigrationConfig

    assert parse_zero_pages(str(z)) == z
    assert ZeroPages.parse(MigrationConfig(zero_pages=z).zero_pages) == z


def test_top_a_whole_number_is_a_page_count_even_one():
    """``top:1`` is one page, as ``top:2`` is two (it used to mean all of memory, a fraction of 1);
    all of memory is ``top:100%`` or ``top:1.0``."""
    assert parse_zero_pages("top:1") == ZeroPages.top(1) == ZeroPages("top", count=1)
    assert parse_zero_pages("top:0") == ZeroPages("top", count=0)
    assert parse_zero_pages("top:1.0") == parse_zero_pages("top:100%") == ZeroPages.top(1.0)
    assert ZeroPages.top(1).page_count(1000, 4096) == 1
    assert ZeroPages.top(1.0).page_count(1000, 4096) == 1000
    for z in (ZeroPages.top(1), ZeroPages.top(1.0), ZeroPages.top(0)):
        assert parse_zero_pages(str(z)) == z
    with pytest.raises(ConfigError, match="page count must be >= 0"):
        ZeroPages.top(-1)


def test_post_copy_push_sends_zero_pages_as_headers():
    """QEMU tests every page it sends, in post-copy too (ram_save_target_page tries save_zero_page first):
    zero pages the first pass had not reached when post-copy began go as headers in the push."""
    from dirtylog import Migration, PostCopy

    link = Link("10MiB/s")
    m = Migration(memory="4MiB", workload=Sequential("40MiB/s", start=0, length=256), link=link,
                  zero_pages="top:50%", policy=PostCopy(after_rounds=1 << 20), seed=1)
    m.run_until(0.1)  # round 0 has sent the low pages only
    assert m.report().duplicate == 0
    m.start_postcopy()
    r = m.run()
    assert r.status == "completed" and r.verified
    assert r.duplicate == 512  # every zero page, all of them in the push
    (push,) = [x for x in r.rounds if x.postcopy]
    assert push.zero_pages == 512
    # a header each (QEMU's be64 address and flags, and the one fill byte); every other page whole
    page_bytes = 4096 + link.header_bytes
    assert push.bytes == (push.pages_sent - 512) * page_bytes + 512 * (8 + 1)


def test_post_copy_requests_for_zero_pages_cost_a_header():
    """A page the destination requests is tested for zero as any page sent: a zero page the guest first
    touches on the destination costs a header on the wire, and counts in duplicate."""
    from dirtylog import Migration, PostCopy

    link = Link("10MiB/s", latency="1ms")
    w = Uniform("20MiB/s", start=512, length=512, seed=3)  # random writes over the zero half
    m = Migration(memory="4MiB", workload=w, link=link, zero_pages="top:50%",
                  policy=PostCopy(after_rounds=1 << 20, read_share=0.0, channel_backlog=0), seed=1)
    m.run_until(0.01)
    m.start_postcopy()  # acted on at the first window's end: round 0 has sent the low pages only
    r = m.run()
    assert r.status == "completed" and r.verified and r.postcopy_requests > 20
    pre, push = r.rounds[0], next(x for x in r.rounds if x.postcopy)
    assert pre.ended == "pause" and pre.zero_pages == 0
    # every zero page the guest had not written on the source goes as a header, requested or pushed
    on_source = np.unique(w.writes(0, 1, pages=1024)[0][:pre.writes]).size
    assert 100 < on_source < 400 and push.zero_pages == r.duplicate == 512 - on_source
    page_bytes = 4096 + link.header_bytes
    assert push.bytes == (push.pages_sent - push.zero_pages) * page_bytes + push.zero_pages * (8 + 1)
