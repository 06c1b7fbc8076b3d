"""Regressions of issue 15 (reliability): parsing bounds, bad inputs, memory checks, models beside multifd."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest

import dirtylog
from dirtylog import Link, Migration, PostCopy, PreCopy, simulate
from dirtylog import resources
from dirtylog.devices import Device
from dirtylog.errors import ConfigError
from dirtylog.faults import BandwidthChange
from dirtylog.trace import load_trace, save_trace
from dirtylog.units import MAX_TEXT, parse_count_rate, parse_rate, parse_size, parse_time
from dirtylog.workloads import Hotspot, Uniform, WorkingSet

# ---------------------------------------------------------------------------- item 8: parsing


@pytest.mark.parametrize("text", ["1e9999999", "1e9999999 KiB", "123.5e400", "1E401"])
def test_huge_exponents_are_refused_without_building_the_number(text):
    # Fraction("1e9999999") built a 10-million-digit integer (seconds of work), then accepted it
    rate = text + "/s" if text.endswith("B") else text  # a byte unit without /s is a size, not a rate
    for parse, t in ((parse_size, text), (parse_rate, rate)):
        with pytest.raises(ConfigError, match="too large"):
            parse(t, name="memory")


def test_huge_exponent_durations_are_infinite_where_infinity_is_allowed():
    assert parse_time("1e9999999s", allow_inf=True) == float("inf")
    with pytest.raises(ConfigError, match="too large"):
        parse_time("1e9999999s", name="timeout")


@pytest.mark.parametrize("text", ["0e999999999", "-0.000e999999999 GiB", "00.0E-999999999"])
def test_a_zero_with_a_huge_exponent_is_zero_without_building_the_power(text):
    # the bound skipped zero mantissas: Fraction("0e999999999") built 10**999999999 to multiply 0 by
    # (minutes of CPU; found by the fuzz test of the unit parsers)
    assert parse_size(text, name="memory", allow_zero=True) == 0
    assert parse_rate(text.replace("GiB", "GiB/s"), allow_zero=True) == 0.0
    assert parse_time(text.replace("GiB", "s")) == 0.0


def test_tiny_exponents_read_as_tiny_numbers():
    assert parse_rate("1e-9999999B/s") == 0.0
    assert parse_time("1e-9999999 s") == 0.0
    with pytest.raises(ConfigError, match="whole number of bytes"):
        parse_size("1e-9999999B")
    with pytest.raises(ConfigError, match="> 0"):
        parse_size("1e-9999999 GiB", allow_zero=False)


def test_exponents_in_range_still_read_exactly():
    assert parse_size("1.5e3KiB") == 1_536_000
    assert parse_size("1e20B") == 10**20
    assert parse_size("0.001e3B") == 1
    assert parse_rate("1e308B/s") == 1e308


@pytest.mark.parametrize("parse", [parse_size, parse_rate, parse_time,
                                   lambda x, name="v": parse_count_rate(x, 4096, name)])
def test_long_strings_are_refused_before_any_pattern_runs(parse):
    # "1" + 30000 spaces + "GiB" + 30000 spaces + "x" backtracked for seconds
    text = "1" + " " * 30000 + "GiB" + " " * 30000 + "x"
    with pytest.raises(ConfigError, match=f"at most {MAX_TEXT} characters"):
        parse(text, name="v")


def test_whitespace_around_and_inside_values_still_reads():
    assert parse_size("  8 GiB \n") == 8 << 30
    assert parse_rate("\t10 Gbit / s ") == 1.25e9
    assert parse_time(" 2 min 5 s ") == 125.0


def test_a_npy_trace_with_a_damaged_header_is_a_config_error(tmp_path):
    save_trace(tmp_path / "t.npy", [1, 2, 3], [4, 5, 6])
    raw = (tmp_path / "t.npy").read_bytes()
    # drop the header's opening brace: numpy's header parser raised tokenize.TokenError
    (tmp_path / "bad.npy").write_bytes(raw[:10] + raw[11:])
    with pytest.raises(ConfigError, match="bad.npy"):
        load_trace(tmp_path / "bad.npy")


def test_the_cli_reports_a_damaged_trace_in_one_line(tmp_path, capsys):
    from dirtylog.cli import main

    save_trace(tmp_path / "t.npy", [1, 2, 3], [4, 5, 6])
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "bad.npy").write_bytes(raw[:10] + raw[11:])
    assert main(["simulate", "-m", "64MiB", "-w", f"trace:{tmp_path / 'bad.npy'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bad.npy" in err and len(err.strip().splitlines()) == 1


def test_save_trace_keeps_page_numbers_past_2_63_given_as_python_ints(tmp_path):
    # found by the fuzz test: numpy turned [0, 2**63] into floats and save_trace refused it
    save_trace(tmp_path / "t.npy", [0, 1], [0, 2**63])
    assert load_trace(tmp_path / "t.npy").page.tolist() == [0, 2**63]
    with pytest.raises(ConfigError, match="record 1: page 18446744073709551616 is too large"):
        save_trace(tmp_path / "t.npy", [0, 1], [0, 2**64])
    with pytest.raises(ConfigError, match="record 0: time_ns is negative"):
        save_trace(tmp_path / "t.npy", [-1, 1], [0, 2])


# ---------------------------------------------------------------------------- item 9: bad inputs


@pytest.mark.parametrize("make, exc, names", [
    (lambda: PreCopy(chunk_size="1PiB"), ConfigError, "chunk_size"),
    (lambda: PreCopy(clear_chunk="1PiB"), ConfigError, "clear_chunk"),
    (lambda: Device("huge", 2**64), ConfigError, "state_bytes"),
    (lambda: Link(1e-300), ConfigError, "bandwidth"),
    (lambda: PreCopy(channel_bandwidth=1e-300), ConfigError, "channel_bandwidth"),
    (lambda: BandwidthChange("1s", 1e-300), ConfigError, "BandwidthChange.bandwidth"),
    (lambda: Migration(memory="1EiB"), ConfigError, "memory"),
    # the wrong types are the point
    (lambda: Migration(memory=1e300), ConfigError, "memory"),  # type: ignore[arg-type]
    (lambda: Migration(memory="64MiB", faults="12s"), TypeError, "faults"),  # type: ignore[arg-type]
    (lambda: Migration(memory="64MiB", faults=5), TypeError, "faults"),  # type: ignore[arg-type]
    (lambda: Migration(memory="64MiB", on_round=5), TypeError, "on_round"),  # type: ignore[arg-type]
    (lambda: Migration(memory="64MiB", verify="no"), TypeError, "verify"),  # type: ignore[arg-type]
    (lambda: Migration(memory="64MiB", devices=5), TypeError, "devices"),  # type: ignore[arg-type]
    (lambda: Migration(memory="64MiB", devices=[Device("a", "1PiB"), Device("b", "1PiB")]), ConfigError, "devices"),
    (lambda: Migration(memory="64MiB").set_bandwidth(1e-300), ConfigError, "bandwidth"),
])
def test_bad_inputs_raise_the_right_error_naming_the_parameter(make, exc, names):
    with pytest.raises(exc, match=names):
        make()


def test_faults_none_means_no_faults():
    r = Migration(memory="16MiB", faults=None).run()
    assert r.status == "completed" and r.verified


def test_an_xbzrle_cache_larger_than_memory_holds_every_page():
    kw: Dict[str, Any] = dict(memory="32MiB", workload=Hotspot("100MiB/s", seed=3), link=Link("1Gbit/s"))
    huge = simulate(policy=PreCopy(xbzrle=True, xbzrle_cache_size="1PiB", downtime_limit="20ms"), **kw)
    exact = simulate(policy=PreCopy(xbzrle=True, xbzrle_cache_size="32MiB", downtime_limit="20ms"), **kw)
    a, b = huge.compression["xbzrle"], exact.compression["xbzrle"]
    assert a.pop("cache_size") == 1 << 50 and b.pop("cache_size") == 32 << 20
    assert huge.verified and a == b and a["pages"] > 0
    assert huge.total_time == exact.total_time


def test_a_chunk_larger_than_memory_is_memory():
    kw: Dict[str, Any] = dict(memory="32MiB", workload=Uniform("100MiB/s", seed=3), link=Link("1Gbit/s"))
    a = simulate(policy=PreCopy(chunk_size="1TiB"), **kw)
    b = simulate(policy=PreCopy(chunk_size="32MiB"), **kw)
    assert a.verified and a.total_time == b.total_time and a.transferred == b.transferred


def test_a_working_set_cycle_too_large_names_the_cause():
    with pytest.raises(ConfigError, match="duration x rate"):
        simulate(memory="64MiB", workload=WorkingSet([(1e300, 0.1, "1GiB/s")]))


# ---------------------------------------------------------------------------- item 7: memory


def test_a_guest_too_large_for_the_machine_is_refused_before_allocating(monkeypatch):
    monkeypatch.delenv("DIRTYLOG_NO_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(resources, "available_memory", lambda: 64 << 20)
    with pytest.raises(ConfigError) as exc:
        Migration(memory="64GiB", workload=Hotspot("1GiB/s"))
    msg = str(exc.value)
    assert "needs about" in msg and "available" in msg and "stale bits" in msg
    # without verification the same guest fits
    Migration(memory="1GiB", workload=Hotspot("1GiB/s"), verify=False)
    monkeypatch.setenv("DIRTYLOG_NO_MEMORY_CHECK", "1")
    Migration(memory="4GiB", workload=Hotspot("1GiB/s"))


def test_a_petabyte_guest_is_refused_with_what_it_needs(monkeypatch):
    monkeypatch.delenv("DIRTYLOG_NO_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(resources, "available_memory", lambda: 16 << 30)  # whatever this machine has
    with pytest.raises(ConfigError, match=r"needs about 64.0 GiB .*tracker 32.0 GiB, stale bits 32.0 GiB"):
        Migration(memory="1PiB")


def test_the_memory_estimate_counts_what_the_configuration_holds():
    from dirtylog._validate import tracker_config

    cfg = tracker_config(1 << 20, mode="ring", vcpus=2, huge_pages="lazy")
    need = resources.migration_memory(cfg, verify=True, source_versions=True, write_rate=0.0, bandwidth=1.25e9,
                                      page_bytes=4104, postcopy=True, xbzrle_slots=1000)
    assert need["source page versions"] == 4 << 20 and need["stale bits"] == (1 << 20) // 8
    assert need["tracker"] >= 2 * (1 << 20) // 8 and need["XBZRLE cache"] == 8000
    assert need["dirty page lists"] <= 2 * 8 * 2  # an idle guest dirties nothing
    idle = resources.migration_memory(cfg, verify=False, source_versions=False, write_rate=None, bandwidth=1.25e9,
                                      page_bytes=4104, postcopy=False, xbzrle_slots=0)
    assert "stale bits" not in idle and idle["dirty page lists"] == 2 * 8 * (1 << 20)


def test_available_memory_is_known_on_linux():
    have = resources.available_memory()
    assert have is None or have > 0


# ---------------------------------------------------------------------------- review: models beside multifd


def test_models_beside_a_multifd_capped_run_use_the_effective_bandwidth():
    cap = PreCopy(multifd_channels=2, channel_bandwidth="50MB/s")  # 100 MB/s of a 10 Gbit/s link
    r = simulate(memory="64MiB", workload=Uniform("10MiB/s", seed=1), link=Link("10Gbit/s"), policy=cap)
    assert r.verified
    assert r.models["cloudsim"]["total_time"] == pytest.approx(dirtylog.models.cloudsim(r.memory, 100e6))
    # the geometric model's first pass sends memory at 100 MB/s too, as the simulation did
    assert r.models["geometric"]["total_time"] == pytest.approx(r.total_time, rel=0.2)
    uncapped = simulate(memory="64MiB", workload=Uniform("10MiB/s", seed=1), link=Link("10Gbit/s"))
    assert uncapped.models["cloudsim"]["total_time"] < r.models["cloudsim"]["total_time"] / 10


# ---------------------------------------------------------------------------- item 6: bounded C calls


def test_ctrl_c_stops_a_simulation_whose_guest_writes_1e15_pages_per_second(tmp_path):
    """`dirtylog simulate -m 4GiB -w uniform:1e15` never returned from its first send and ignored SIGINT."""
    import signal
    import subprocess
    import sys
    import time

    script = ("import sys; from dirtylog.cli import main; print('ready', flush=True); "
              "sys.exit(main(['simulate', '-m', '4GiB', '-w', 'uniform:1e15', '--no-progress']))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"  # imported: SIGINT now reaches the command
        time.sleep(1.0)  # inside the first sends
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # a hang detector, not a timing threshold
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err[-2000:])


def _runs(monkeypatch, budget, kw):
    import dirtylog.migration as mig

    monkeypatch.setattr(mig, "_WORK_BUDGET", budget)
    m = Migration(**kw)
    t = 0.0
    while not m.done and t < 60:
        t += 0.05
        m.run_until(t)
    if not m.done:
        m.cancel("stopped")
    return m.report().to_dict()


@pytest.mark.parametrize("kw", [
    dict(memory="8MiB", workload=Uniform("800MiB/s", seed=1), link=Link("1Gbit/s"), vcpus=3),
    dict(memory="8MiB", workload=Hotspot("400MiB/s", seed=2) + Uniform("100MiB/s", seed=3), link=Link("1Gbit/s"),
         tracker="ring", vcpus=4, huge_pages="lazy", zero_pages=0.3),
    dict(memory="8MiB", workload=Uniform("300MiB/s", seed=4), link=Link("500Mbit/s"), tracker="ring", vcpus=2,
         policy=PreCopy(dirty_limit=True, vcpu_dirty_limit="10MB/s", dirty_limit_period="50ms", timeout="2s")),
    dict(memory="8MiB", workload=Uniform("300MiB/s", seed=5).with_read_share(0.9), link=Link("500Mbit/s"),
         vcpus=2, policy=PostCopy(after_rounds=1, prepage=8)),
    dict(memory="8MiB", workload=Uniform("100MiB/s", seed=6), link=Link("200Mbit/s"), tracker="clear",
         policy=PreCopy(auto_converge=True, xbzrle=True, timeout="3s", on_limit="postcopy")),
])
def test_a_tiny_work_budget_gives_the_same_migration(monkeypatch, kw):
    """Bounded C calls resume a slice exactly: the counter-based streams come out identical."""
    default = _runs(monkeypatch, 0, kw)
    tiny = _runs(monkeypatch, 7, kw)
    assert tiny == default
    assert default["guest_writes"] > 1000


def test_workload_run_in_bounded_pieces_equals_one_call(monkeypatch):
    import dirtylog.workloads as wl
    from dirtylog import Tracker

    w = Hotspot("1GiB/s", seed=3) + Uniform("200MiB/s", seed=4)
    results = []
    for budget in (1 << 22, 5):
        monkeypatch.setattr(wl, "RUN_BUDGET", budget)
        t = Tracker(4096, mode="ring", vcpus=3)
        t.start()
        n = w.run(t, 0.0, 0.01)
        n += w.run(t, 0.01, 0.02, vcpu=1)
        results.append((n, t.harvest().tolist(), t.stats.to_dict()))
    assert results[0] == results[1] and results[0][0] > 1000


# ---------------------------------------------------------------------------- item 4: post-copy memory


def _peak_rss_growth(fn):
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to measure the peak RSS")

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    base = status("VmRSS")
    result = fn()
    return result, status("VmHWM") - base


@pytest.mark.skipif(bool(__import__("os").environ.get("DIRTYLOG_SANITIZER_RUN")),
                    reason="a sanitizer's shadow memory and quarantine make RSS meaningless")
def test_postcopy_memory_follows_the_guest_not_the_accesses():
    """A 512 MiB guest with 999 reads per write peaked at 8.6 GiB: every access of a slice was materialized."""
    r, grew = _peak_rss_growth(lambda: simulate(
        memory="64MiB", workload=Uniform("1GiB/s", seed=1), link=Link("1Gbit/s"),
        policy=PostCopy(after_rounds=1, read_share=0.999, prepage=4096)))
    assert r.status == "completed" and r.verified
    # about 10^8 accesses in the longest slice: 800 MB if materialized; the guest's own state is ~1 MiB
    assert grew < 200 << 20, f"peak RSS grew by {grew / 2**20:.0f} MiB"


@pytest.mark.parametrize("kw", [
    dict(memory="8MiB", workload=Uniform("800MiB/s", seed=1), link=Link("1Gbit/s"), vcpus=3),
    dict(memory="8MiB", workload=Uniform("300MiB/s", seed=5).with_read_share(0.9), link=Link("500Mbit/s"),
         vcpus=2, policy=PostCopy(after_rounds=1, prepage=8)),
])
def test_a_run_interrupted_inside_a_slice_goes_on_to_the_same_result(monkeypatch, kw):
    import dirtylog.migration as mig
    from dirtylog.errors import Interrupted

    monkeypatch.setattr(mig, "_WORK_BUDGET", 7)
    whole = Migration(**kw).run(give_up_after="60s").to_dict()

    reads = {"n": 0}

    class Fires:  # Ctrl-C arrives after a few hundred bounded calls, in the middle of a slice
        def __init__(self):
            self._old = None

        @property
        def fired(self):
            reads["n"] += 1
            return reads["n"] == 300

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr(mig, "_SigintDeferred", Fires)
    m = Migration(**kw)
    with pytest.raises(Interrupted) as exc:
        m.run(give_up_after="60s")
    assert exc.value.report.interrupted and not m.done
    assert m.run(give_up_after="60s").to_dict() == whole
