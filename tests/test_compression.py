"""Zero pages, XBZRLE and multifd as models."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import pytest

from dirtylog import Link, PreCopy, simulate
from dirtylog.errors import ConfigError
from dirtylog.workloads import Hotspot

KW: Dict[str, Any] = dict(memory="512MiB", link=Link("100MiB/s"), tracker="pml")


def _hot():
    return Hotspot("60MiB/s", hot_fraction=0.02, hot_share=0.95, seed=1)


def _pre(**kw):
    return PreCopy(downtime_limit="20ms", max_iterations=8, on_limit="force", **kw)


def test_xbzrle_sends_deltas_of_re_dirtied_pages():
    plain = simulate(workload=_hot(), policy=_pre(), **KW)
    big = simulate(workload=_hot(), policy=_pre(xbzrle=True, xbzrle_cache_size="512MiB"), **KW)
    assert plain.verified and big.verified and len(plain.rounds) >= 5
    xb = big.compression["xbzrle"]
    assert xb["pages"] > 1000 and xb["cache_miss"] > 0
    # every page looked up is a hit (overflows included, as QEMU counts them) or a miss; the first
    # pass is not looked up (QEMU enables XBZRLE once the scan has wrapped, during round 1)
    looked = xb["pages"] + xb["cache_miss"]
    assert sum(r.pages_sent for r in big.rounds[2:]) <= looked <= sum(r.pages_sent for r in big.rounds[1:])
    # deltas average about xbzrle_ratio of a page; overflows are the exponential's tail
    assert 3.0 < xb["encoding_rate"] < 5.0
    assert 0 < xb["overflow"] < 0.05 * looked
    # QEMU's bytes: the deltas (flag, length and data) and a whole page per overflow
    assert xb["bytes"] > xb["overflow"] * 4096
    assert big.transferred < plain.transferred
    assert big.total_time < plain.total_time


def test_a_small_xbzrle_cache_misses_more():
    small = simulate(workload=_hot(), policy=_pre(xbzrle=True, xbzrle_cache_size="1MiB"), **KW)
    big = simulate(workload=_hot(), policy=_pre(xbzrle=True, xbzrle_cache_size="512MiB"), **KW)
    assert small.verified
    assert small.compression["xbzrle"]["cache_miss_rate"] > big.compression["xbzrle"]["cache_miss_rate"]


def test_zero_pages_cost_a_header_in_round_0():
    r = simulate(workload=None, zero_pages=0.5, devices=[], **KW)
    pages = 512 * 256
    assert r.duplicate == pytest.approx(pages / 2, rel=0.02)
    assert r.transferred == r.normal * (4096 + 8) + r.duplicate * 9
    assert r.verified


def test_multifd_channels_lift_a_per_thread_cap():
    kw: Dict[str, Any] = dict(memory="1GiB", workload=None, link=Link("10Gbit/s"), devices=[])
    one = simulate(policy=PreCopy(channel_bandwidth="2Gbit/s"), **kw)
    four = simulate(policy=PreCopy(multifd_channels=4, channel_bandwidth="2Gbit/s"), **kw)
    eight = simulate(policy=PreCopy(multifd_channels=8, channel_bandwidth="2Gbit/s"), **kw)
    def send(r):
        return r.total_time - r.setup_time

    assert send(one) == pytest.approx(4 * send(four), rel=1e-6)
    assert send(eight) == pytest.approx(send(one) / 5, rel=1e-6)  # the 10 Gbit/s link caps it
    assert four.compression["multifd"]["effective_bandwidth"] == 1e9


@pytest.mark.parametrize("kw", [dict(xbzrle_ratio=0), dict(xbzrle_ratio=1.5), dict(xbzrle_cache_size=0),
                                dict(multifd_channels=-1), dict(channel_bandwidth=0)])
def test_bad_compression_parameters(kw):
    with pytest.raises(ConfigError):
        PreCopy(**kw)


def _one_slot_xbzrle_engine(mode: str) -> Tuple[Any, Any]:
    """A tracker of 4 pages in ``mode`` and an engine with a one-slot XBZRLE cache (pages 0 and 1 share
    it), past its first pass (sync 1, which sends every page without XBZRLE)."""
    import dirtylog._lib as L
    from dirtylog import Tracker
    from dirtylog.engine import Engine, SendResult

    t = Tracker(4, mode=mode)
    t.start()
    cfg = L.ffi.new("dl_engine_config *")
    L.lib.dl_engine_config_init(cfg)
    cfg.bandwidth = 4104 * 1000.0
    cfg.xbzrle_slots = 1
    cfg.xbzrle_ratio = 0.01
    e = Engine(cfg, t, None, None)
    e.dirty_fill()
    assert e.send_dirty(1.0) == SendResult.EMPTY
    return t, e


def test_xbzrle_keeps_a_fresh_cached_page_as_qemus_page_cache():
    """QEMU's cache_insert does not evict a page filled or hit within the last 2 syncs
    (CACHED_PAGE_LIFETIME): pages 0 and 1 share the one slot here."""
    import numpy as np

    from dirtylog.engine import SendResult

    _, e = _one_slot_xbzrle_engine("wp")
    clock = 1.0

    def resend(page: int) -> tuple:
        nonlocal clock
        e.dirty_add(np.array([page], dtype=np.uint64))  # one sync
        clock += 1.0
        assert e.send_dirty(clock) == SendResult.EMPTY
        st = e.state()
        return int(st.xbzrle_pages), int(st.xbzrle_misses)

    assert resend(0) == (0, 1)  # sync 2: a miss, cached
    assert resend(1) == (0, 2)  # sync 3: a miss; page 0 is fresh (cached at sync 2), so it stays
    assert resend(0) == (1, 2)  # sync 4: a hit (always-replace would have evicted it), refreshed
    assert resend(1) == (1, 3)  # sync 5: page 0 still fresh
    assert resend(1) == (1, 4)  # sync 6: page 0 is 2 syncs old: page 1 takes the slot
    assert resend(1) == (2, 4)  # sync 7: a hit


@pytest.mark.parametrize("mode", ["wp", "pml", "ring"])
def test_every_harvest_ages_the_xbzrle_cache_as_qemus_dirty_sync_count(mode):
    """QEMU's migration_bitmap_sync adds 1 to dirty_sync_count on every sync, whether it finds pages or
    not, and XBZRLE's cache ages by it (cache_insert, cache_is_cached): two syncs that find nothing age
    a cached page past CACHED_PAGE_LIFETIME as any two syncs do. Pages 0 and 1 share the one slot."""
    import numpy as np

    from dirtylog.engine import SendResult

    t, e = _one_slot_xbzrle_engine(mode)
    clock = 1.0

    def sync_and_send(*pages: int) -> tuple:
        nonlocal clock
        if pages:
            t.write(np.array(pages, dtype=np.uint64), vcpu=0)
        assert e.dirty_harvest() == len(pages)
        clock += 1.0
        assert e.send_dirty(clock) == SendResult.EMPTY
        st = e.state()
        return int(st.xbzrle_pages), int(st.xbzrle_misses)

    assert sync_and_send(0) == (0, 1)  # a miss: page 0 cached
    assert sync_and_send() == (0, 1)  # a sync that finds nothing: page 0 one sync old
    assert sync_and_send() == (0, 1)  # and two
    assert sync_and_send(1) == (0, 2)  # a miss; page 0 is stale now, so page 1 takes the slot
    assert sync_and_send(1) == (1, 2)  # a hit (with page 0 kept fresh, page 1 would miss again)


def _same_report(a, b, rel=1e-12):
    """Equal, floats to ``rel`` (time sums cut at other points may round differently; NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_report(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_report(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != b:
        return (a != a and b != b) or abs(a - b) <= rel * max(abs(a), abs(b))
    return a == b


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("extra, pol", [({}, {}), (dict(zero_pages=0.3, tracker="wp"), {}),
                                        ({}, dict(chunk_size="4KiB", max_bandwidth="10MiB/s"))],
                         ids=["plain", "zero-pages", "small-chunks-rate-limited"])
def test_xbzrle_step_api_equals_simulate_at_any_slicing(seed, extra, pol):
    """A migration with XBZRLE gives simulate()'s report however the caller's deadlines cut it: a
    delta's size is drawn from the page's place in the whole send order, not from where the C
    call or its chunk started (it was: 20 s steps and 0.013 s steps sent different bytes)."""
    import json

    from dirtylog import Migration

    kw: Dict[str, Any] = dict(memory="64MiB", link=Link("200Mbit/s"), seed=seed, **extra)
    cache = ["64MiB", "1MiB"][seed % 2]

    def make(cls):
        return cls(workload=Hotspot("200MiB/s", seed=seed), policy=PreCopy(xbzrle=True, xbzrle_cache_size=cache, **pol),
                   **kw)

    want = json.loads(make(lambda **k: simulate(**k)).to_json())
    assert want["compression"]["xbzrle"]["pages"] > 0  # the deltas really are exercised
    for steps in ([20.0], [0.37], [0.013], [0.05, 0.0071, 0.3, 0.011]):
        m = make(Migration)
        i = 0
        while not m.done:
            m.advance(steps[i % len(steps)])
            i += 1
        got = json.loads(m.report().to_json())
        assert _same_report(got, want), f"steps {steps}: {got['transferred']} bytes, simulate() {want['transferred']}"
