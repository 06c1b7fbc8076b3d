"""Stateful property test: the C tracker against the numpy reference model.

A Hypothesis ``RuleBasedStateMachine`` builds a :class:`dirtylog.Tracker` (the C
core) and a :class:`dirtylog.reference.ReferenceTracker` with the same random
configuration and drives both with the same random operations: start, stop,
batches of writes on several vCPUs (with repeats, in several dtypes), flushes of the
logs into the bitmap, harvests (as page arrays and as bitmaps), clears (aligned ranges, with and without masks)
and bad operations, which must raise the same exception type in both and leave
both unchanged. After every step the two must agree on everything observable:
``stats`` (every counter, per vCPU too), ``pending``, ``logging``, the PML logs
and the dirty rings.

A third, independent oracle keeps the set of pages that must be reported, from
the semantics alone (background.md section 2): outside clear mode a harvest
returns exactly the pages written while logging since the previous harvest (or
the start): nothing lost, nothing reported twice. In clear mode it returns the
pages written since they were last cleared (all pages with initially_set).

The C tracker also keeps stale bits (verification's) at times, started and stopped at
any step: they share cache lines with its own bits (a different layout of them), which
must change nothing the reference sees; the stale bits themselves follow a fourth
oracle, every page written since they were started (or every page, started all set).

One machine class per mode, so that every mode gets its share of examples.
``DIRTYLOG_SANITIZER_RUN=1`` (CI's ASan/UBSan run) cuts the examples by 4x.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import numpy as np
from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from dirtylog import Tracker
from dirtylog.reference import ReferenceTracker

SANITIZER_RUN = os.environ.get("DIRTYLOG_SANITIZER_RUN") == "1"
# Examples per mode. With 4 modes this is about a minute in all on a 2-core machine.
EXAMPLES_PER_MODE = 100 if SANITIZER_RUN else 400
STEPS = 40

BLOCK = 512
DTYPES = ("uint64", "int64", "uint32", "int32", "list", ">u8", "strided")


# --------------------------------------------------------------------------- strategies


@st.composite
def tracker_configs(draw: Any, mode: str) -> dict:
    huge = draw(st.sampled_from([None, None, "lazy", "eager"]))
    if huge:
        # several blocks, usually with a partial last one; sometimes a single (partial) block
        pages = draw(
            st.one_of(
                st.integers(2 * BLOCK + 1, 6 * BLOCK - 1),
                st.integers(2, 6).map(lambda k: k * BLOCK),
                st.integers(1, 2 * BLOCK),
            )
        )
    else:
        pages = draw(
            st.one_of(
                st.integers(1, 130),
                st.integers(1, 3000),
                st.integers(1, 40).map(lambda k: 64 * k),
            )
        )
    cfg: Dict[str, Any] = dict(
                        pages=pages,
                        mode=mode,
                        vcpus=draw(st.integers(1, 4)),
                        huge_pages=huge,
                        pml_entries=draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 64])),
                        ring_entries=draw(st.sampled_from([1024, 1024, 1024, 2048])),
                        initially_set=draw(st.booleans()) if mode == "clear" else False,
                    )
    return cfg


def make_batch(draw: Any, pages: int) -> np.ndarray:
    """A batch of valid page indices (int64), drawn with repeats."""
    kind = draw(st.sampled_from(["list", "list", "random", "window", "range", "hot"]))
    if kind == "list":
        return np.array(draw(st.lists(st.integers(0, pages - 1), max_size=24)), dtype=np.int64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = draw(st.sampled_from([1, 7, 64, 200, 600, 1500]))
    if kind == "random":  # uniform over the whole guest
        return rng.integers(0, pages, size=size)
    if kind == "window":  # a few blocks' worth of pages around one spot
        lo = int(rng.integers(0, pages))
        hi = min(pages, lo + int(rng.integers(1, 1200)))
        return rng.integers(lo, hi, size=size)
    if kind == "range":  # sequential runs, repeated: fills rings and re-writes re-armed pages
        lo = int(rng.integers(0, pages))
        run = np.arange(lo, min(pages, lo + int(rng.integers(1, 700))))
        reps = int(rng.integers(1, 4))
        return np.tile(run, reps)
    hot = rng.integers(0, pages, size=int(rng.integers(1, 6)))  # few pages, many repeats
    return hot[rng.integers(0, hot.size, size=size)]


def convert(batch: np.ndarray, dtype: str) -> Any:
    if dtype == "list":
        return batch.tolist()
    if dtype == "strided":  # a non-contiguous view
        wide = np.empty(2 * batch.size, dtype=np.int64)
        wide[::2] = batch
        wide[1::2] = -7
        return wide[::2]
    return batch.astype(dtype)


# --------------------------------------------------------------------------- the machine


Outcome = Tuple[Optional[BaseException], Any]


def _call(fn: Callable[[], Any]) -> Outcome:
    try:
        return None, fn()
    except Exception as e:  # noqa: BLE001 - compared below
        return e, None


class TrackerVsReference(RuleBasedStateMachine):
    MODE = "wp"

    def __init__(self) -> None:
        super().__init__()
        self.c: Optional[Tracker] = None
        self.r: Optional[ReferenceTracker] = None

    # ----------------------------------------------------------------- helpers

    def observe(self, t: Any) -> list:
        obs: List[Any] = [t.stats, t.pending, t.logging]
        if t.mode == "pml":
            obs += [t.pml_log(v).tolist() for v in range(t.vcpus)]
        if t.mode == "ring":
            obs += [t.ring_entries(v).tolist() for v in range(t.vcpus)]
        if isinstance(t, Tracker) and t.stale_kept:  # the C tracker's own (the reference keeps none)
            obs.append(t.stale_words().tolist())
        return obs

    def both(self, op: Callable[[Any], Any], *, what: str) -> Tuple[Any, Any]:
        """Apply ``op`` to both trackers: both succeed, or both raise the same type."""
        ec, rc = _call(lambda: op(self.c))
        er, rr = _call(lambda: op(self.r))
        assert type(ec) is type(er), f"{what}: C raised {ec!r}, reference raised {er!r}"
        if ec is not None:
            raise ec
        return rc, rr

    def both_fail(self, op: Callable[[Any], Any], *, what: str, same_message: bool = False) -> None:
        """``op`` must raise the same exception type in both and change nothing."""
        before_c, before_r = self.observe(self.c), self.observe(self.r)
        ec, _ = _call(lambda: op(self.c))
        er, _ = _call(lambda: op(self.r))
        note(f"{what}: C {ec!r} / reference {er!r}")
        assert ec is not None and er is not None, f"{what} must fail: C {ec!r}, reference {er!r}"
        assert type(ec) is type(er), f"{what}: C raised {ec!r}, reference raised {er!r}"
        if same_message:
            assert str(ec) == str(er)
        assert self.observe(self.c) == before_c, f"{what} changed the C tracker"
        assert self.observe(self.r) == before_r, f"{what} changed the reference"

    # ----------------------------------------------------------------- set-up

    def _create(self, cfg: dict) -> None:
        note(f"config: {cfg}")
        self.c = Tracker(**cfg)
        self.r = ReferenceTracker(**cfg)
        self.pages = cfg["pages"]
        self.vcpus = cfg["vcpus"]
        self.nwords = (self.pages + 63) // 64
        # oracle: the set the next harvest must return
        self.expect = np.zeros(self.pages, dtype=bool)
        # oracle of the C tracker's stale bits (None: none kept)
        self.stale: Optional[np.ndarray] = None

    # ----------------------------------------------------------------- good operations

    @rule()
    def start(self) -> None:
        assert self.c is not None  # the initialize rule ran
        if self.c.logging:
            self.both_fail(lambda t: t.start(), what="start twice")
            return
        self.both(lambda t: t.start(), what="start")
        self.expect[:] = self.c.initially_set

    @rule()
    def stop(self) -> None:
        assert self.c is not None  # the initialize rule ran
        if not self.c.logging:
            self.both_fail(lambda t: t.stop(), what="stop when not logging")
            return
        self.both(lambda t: t.stop(), what="stop")
        self.expect[:] = False

    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        assert self.c is not None  # the initialize rule ran
        batches = data.draw(st.integers(1, 3), label="batches")
        for _ in range(batches):
            batch = make_batch(data.draw, self.pages)
            dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
            vcpu = data.draw(st.integers(0, self.vcpus - 1), label="vcpu")
            arg = convert(batch, dtype)
            note(f"write {batch.size} pages as {dtype} on vCPU {vcpu}: {batch[:16].tolist()}...")
            self.both(lambda t: t.write(arg, vcpu=vcpu), what="write")
            if self.c.logging:
                self.expect[batch] = True
            if self.stale is not None:
                self.stale[batch] = True  # logging or not

    @rule(data=st.data())
    def write_more(self, data: st.DataObject) -> None:
        """Writes are the point: a second rule doubles their share of the steps."""
        self.write(data)

    @rule(on=st.booleans(), initial=st.booleans())
    def stale_bits(self, on: bool, initial: bool) -> None:
        """Start (or restart) or stop the C tracker's stale bits: its own bits change layout."""
        assert self.c is not None  # the initialize rule ran
        note(f"stale bits: {'start, initial ' + str(initial) if on else 'stop'}")
        if on:
            self.c.stale_start(initial=initial)
            self.stale = np.full(self.pages, initial, dtype=bool)
        else:
            self.c.stale_stop()
            self.stale = None

    @rule(own=st.booleans())
    def reap_own(self, own: bool) -> None:
        """Which rings a ring-full exit reaps: every vCPU's (QEMU's default) or the exiting one's
        (dirty-limit's); ring mode only, anywhere else both refuse."""
        assert self.c is not None and self.r is not None  # the initialize rule ran
        if self.MODE != "ring":
            self.both_fail(lambda t: setattr(t, "reap_own", own), what="reap_own outside ring mode")
            return
        self.both(lambda t: setattr(t, "reap_own", own), what="reap_own")
        assert self.c.reap_own is self.r.reap_own is own

    @rule()
    def flush(self) -> None:
        """A global dirty-log sync that is not a harvest (dirty-limit's): the logs go into the bitmap,
        the pages the next harvest returns stay the same (the oracle does not move)."""
        assert self.c is not None  # the initialize rule ran
        if not self.c.logging:
            self.both_fail(lambda t: t.flush(), what="flush when not logging")
            return
        self.both(lambda t: t.flush(), what="flush")

    @rule(bitmap=st.booleans())
    def harvest(self, bitmap: bool) -> None:
        assert self.c is not None  # the initialize rule ran
        if not self.c.logging:
            self.both_fail(lambda t: t.harvest_bitmap() if bitmap else t.harvest(), what="harvest when not logging")
            return
        if bitmap:
            hc, hr = self.both(lambda t: t.harvest_bitmap(), what="harvest_bitmap")
            assert hc.dtype == hr.dtype == np.uint64
            assert hc.shape == hr.shape == (self.nwords,)
            assert np.array_equal(hc, hr)
            bits = np.unpackbits(hc.astype("<u8").view(np.uint8), bitorder="little").astype(bool)
            assert not bits[self.pages :].any(), "bits set past the last page"
            got = bits[: self.pages]
        else:
            hc, hr = self.both(lambda t: t.harvest(), what="harvest")
            assert hc.dtype == hr.dtype == np.uint64
            assert hc.tolist() == hr.tolist()
            assert np.all(np.diff(hc.astype(np.int64)) > 0), "harvest must be sorted and distinct"
            got = np.zeros(self.pages, dtype=bool)
            got[hc.astype(np.int64)] = True
        missing = np.flatnonzero(self.expect & ~got)
        extra = np.flatnonzero(got & ~self.expect)
        assert missing.size == 0, f"harvest lost pages {missing[:10].tolist()}"
        assert extra.size == 0, f"harvest reported pages never dirtied {extra[:10].tolist()}"
        if self.c.mode != "clear":
            self.expect[:] = False

    @rule(data=st.data())
    def clear(self, data: st.DataObject) -> None:
        assert self.c is not None  # the initialize rule ran
        first = 64 * data.draw(st.integers(0, self.nwords), label="first word")
        first = min(first, self.pages - self.pages % 64 if self.pages % 64 else self.pages)
        rest = self.pages - first
        if data.draw(st.booleans(), label="to the end"):
            count = rest
        else:
            count = 64 * data.draw(st.integers(0, rest // 64), label="count words")
        mask = None
        if data.draw(st.booleans(), label="with mask"):
            need = (count + 63) // 64 + data.draw(st.integers(0, 2), label="extra mask words")
            seed = data.draw(st.integers(0, 2**32 - 1), label="mask seed")
            rng = np.random.default_rng(seed)
            kind = data.draw(st.sampled_from(["random", "sparse", "ones", "zeros"]), label="mask kind")
            if kind == "random":
                mask = rng.integers(0, 2**64, size=need, dtype=np.uint64)
            elif kind == "sparse":
                mask = rng.integers(0, 2**64, size=need, dtype=np.uint64) & rng.integers(
                    0, 2**64, size=need, dtype=np.uint64
                ) & rng.integers(0, 2**64, size=need, dtype=np.uint64)
            elif kind == "ones":
                mask = np.full(need, 2**64 - 1, dtype=np.uint64)
            else:
                mask = np.zeros(need, dtype=np.uint64)
            if data.draw(st.booleans(), label="mask as int64"):
                mask = mask.view(np.int64)
        note(f"clear({first}, {count}, mask={None if mask is None else mask.tolist()})")
        if self.MODE != "clear":
            self.both_fail(lambda t: t.clear(first, count, mask), what="clear outside clear mode")
            return
        if not self.c.logging:
            self.both_fail(lambda t: t.clear(first, count, mask), what="clear when not logging")
            return
        nc, nr = self.both(lambda t: t.clear(first, count, mask), what="clear")
        assert nc == nr
        sel = np.zeros(self.pages, dtype=bool)
        sel[first : first + count] = True
        if mask is not None:
            mbits = np.unpackbits(mask.astype("<u8").view(np.uint8), bitorder="little").astype(bool)
            sel[first : first + count] &= mbits[:count]
        assert nc == int(np.count_nonzero(sel & self.expect))
        self.expect &= ~sel

    # ----------------------------------------------------------------- bad operations

    @rule(data=st.data())
    def bad_operation(self, data: st.DataObject) -> None:
        """One bad operation; each must raise the same exception type in both and change nothing.

        (One rule for all of them, so that good operations, writes above all, make up
        most of each run.) start twice, stop / harvest / clear when not logging and
        clear outside clear mode are reached through the good rules.
        """
        kind = data.draw(st.sampled_from(["write", "clear", "inspection"]), label="bad operation")
        if kind == "write":
            self._bad_write(data)
        elif kind == "clear":
            self._bad_clear(data)
        else:
            self._bad_inspection()

    def _bad_write(self, data: st.DataObject) -> None:
        """A batch with one bad element (after good ones), a bad vCPU or a bad dtype."""
        kind = data.draw(st.sampled_from(["page", "negative", "vcpu", "float", "object"]), label="bad kind")
        good = make_batch(data.draw, self.pages)
        vcpu = data.draw(st.integers(0, self.vcpus - 1), label="vcpu")
        arg: Any  # a list or an array, as a caller may pass
        if kind == "page":
            bad = data.draw(st.sampled_from([self.pages, self.pages + 1, 2**31 - 1, 2**63, 2**64 - 1]), label="bad page")
            dtype = data.draw(st.sampled_from(["uint64", "list", ">u8"] + (["uint32"] if bad < 2**32 else [])
                                              + (["int64"] if bad < 2**63 else [])), label="dtype")
        elif kind == "negative":
            bad = data.draw(st.sampled_from([-1, -2, -(2**31)]), label="bad page")
            dtype = data.draw(st.sampled_from(["int64", "int32", "list", "strided"]), label="dtype")
        if kind in ("page", "negative"):
            pos = data.draw(st.integers(0, good.size), label="position")
            full = np.concatenate([good[:pos].astype(object), [bad], good[pos:].astype(object)])
            if dtype == "list":
                arg = [int(x) for x in full]
            elif dtype == "strided":
                wide = np.zeros(2 * full.size, dtype=np.int64)
                wide[::2] = full.astype(np.int64)
                arg = wide[::2]
            else:
                arg = np.array([int(x) for x in full], dtype=dtype)
            self.both_fail(lambda t: t.write(arg, vcpu=vcpu), what=f"write bad page {bad} as {dtype}",
                           same_message=True)
            return
        if kind == "vcpu":
            badv = data.draw(st.sampled_from([self.vcpus, self.vcpus + 5, -1, 1.5, True]), label="bad vcpu")
            self.both_fail(lambda t: t.write(good, vcpu=badv), what=f"write on vCPU {badv}")
            return
        if kind == "float":
            arg = good.astype(np.float64) if good.size else np.array([1.0])
        else:
            arg = ["a"] + good.tolist()
        self.both_fail(lambda t: t.write(arg, vcpu=vcpu), what=f"write {kind} batch")

    def _bad_clear(self, data: st.DataObject) -> None:
        """Clear outside clear mode, when not logging, misaligned, past the end, or with a short mask."""
        kind = data.draw(st.sampled_from(["misaligned", "count", "past", "negative", "short mask"]), label="kind")
        args: tuple
        if kind == "misaligned":
            first = 64 * data.draw(st.integers(0, self.nwords - 1), label="word") + data.draw(st.integers(1, 63))
            args = (first, data.draw(st.sampled_from([0, 64, max(0, self.pages - first)])))
        elif kind == "count":
            first = 64 * data.draw(st.integers(0, (self.pages - 1) // 64), label="first word")
            rest = self.pages - first
            bad = [c for c in (1, 63, 65, rest - 1) if 0 < c < rest and c % 64]
            args = (first, data.draw(st.sampled_from(bad)) if bad else rest + 1)
        elif kind == "past":
            args = (64 * data.draw(st.integers(0, self.nwords), label="first word"), self.pages + 1)
        elif kind == "negative":
            args = data.draw(st.sampled_from([(-64, 64), (0, -64), (64, -1)]))
        elif self.pages > 64:
            args = (0, self.pages, np.zeros((self.pages + 63) // 64 - 1, dtype=np.uint64))
        else:
            args = (0, self.pages, np.zeros((1, 1), dtype=np.uint64))  # a 2-D mask
        self.both_fail(lambda t: t.clear(*args), what=f"clear{args[:2]} ({kind})")

    def _bad_inspection(self) -> None:
        if self.MODE == "pml":
            self.both_fail(lambda t: t.pml_log(self.vcpus), what="pml_log of a bad vCPU")
        else:
            self.both_fail(lambda t: t.pml_log(0), what="pml_log outside PML mode")
        if self.MODE == "ring":
            self.both_fail(lambda t: t.ring_entries(self.vcpus), what="ring_entries of a bad vCPU")
        else:
            self.both_fail(lambda t: t.ring_entries(0), what="ring_entries outside ring mode")

    def teardown(self) -> None:
        if self.c is None:
            return
        s = self.c.stats
        for name in ("faults", "pml_full_exits", "ring_full_exits", "splits", "kicks", "harvested_pages",
                     "cleared_pages", "ring_reaped"):
            if getattr(s, name):
                event(f"{name} > 0")
        if s.vcpus and sum(1 for v in s.vcpus if v.dirtied) > 1:
            event("several vCPUs dirtied pages")

    # ----------------------------------------------------------------- the comparison after every step

    @invariant()
    def agree(self) -> None:
        if self.c is None or self.r is None:
            return
        sc, sr = self.c.stats, self.r.stats
        assert sc == sr, f"stats differ:\n  C   {sc}\n  ref {sr}"
        assert self.c.pending == self.r.pending
        assert self.c.logging == self.r.logging
        if self.MODE == "pml":
            for v in range(self.vcpus):
                assert self.c.pml_log(v).tolist() == self.r.pml_log(v).tolist(), f"PML log of vCPU {v}"
        if self.MODE == "ring":
            for v in range(self.vcpus):
                assert self.c.ring_entries(v).tolist() == self.r.ring_entries(v).tolist(), f"ring of vCPU {v}"
        # the oracle's size: exact outside ring mode (ring mode's pending may count repeats)
        if self.c.logging and self.MODE != "ring":
            assert sc.dirty_pages == int(np.count_nonzero(self.expect))
        elif self.c.logging:
            assert self.c.pending >= int(np.count_nonzero(self.expect))
        assert self.c.stale_kept == (self.stale is not None)
        if self.stale is not None:
            words = self.c.stale_words()
            got = np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little").astype(bool)
            assert np.array_equal(got[: self.pages], self.stale), "stale bits"


def _machine_for(mode: str) -> Type[TrackerVsReference]:
    class Machine(TrackerVsReference):
        MODE = mode

        @initialize(cfg=tracker_configs(mode), start=st.integers(0, 4))
        def create(self, cfg: dict, start: int) -> None:
            self._create(cfg)
            if start:  # most runs start logging at once
                self.start()

    Machine.__name__ = Machine.__qualname__ = f"TrackerVsReference_{mode}"
    return Machine


_SETTINGS = settings(
    max_examples=EXAMPLES_PER_MODE,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

TestWP = _machine_for("wp").TestCase
TestPML = _machine_for("pml").TestCase
TestRing = _machine_for("ring").TestCase
TestClear = _machine_for("clear").TestCase
for _case in (TestWP, TestPML, TestRing, TestClear):
    _case.settings = _SETTINGS
del _case
