"""One configuration model: simulate(), grid()/SweepConfig and the command line share names and defaults."""
from __future__ import annotations

import inspect
import json
from typing import Any, Dict

import pytest

import dirtylog
from dirtylog import Link, PostCopy, PreCopy
from dirtylog.__main__ import main
from dirtylog.cli import build_parser
from dirtylog.config import DEFAULTS, FIELDS, KNOB, KNOBS, MigrationConfig
from dirtylog.errors import ConfigError
from dirtylog.sweeps import SweepConfig, grid, run_config

SMALL: Dict[str, Any] = dict(memory="16MiB", bandwidth="1Gbit/s", workload="hotspot:50MiB/s")


def test_simulate_takes_spec_strings_and_flat_settings():
    r = dirtylog.simulate(**SMALL, downtime_limit="100ms", seed=3)
    same = dirtylog.simulate(memory="16MiB", workload=dirtylog.Hotspot("50MiB/s", seed=3),
                             link=Link("1Gbit/s"), policy=PreCopy(downtime_limit="100ms"), seed=3)
    assert r.bandwidth == same.bandwidth == 1.25e8 and r.downtime_limit == 0.1
    assert r.total_time == same.total_time and r.transferred == same.transferred


def test_simulate_postcopy_and_knobs_by_name():
    r = dirtylog.simulate(memory="32MiB", workload="hotspot:300MiB/s", bandwidth="200Mbit/s", policy="postcopy",
                          postcopy_after_rounds=1, prepage=2)
    assert r.status == "completed" and r.postcopy_bytes > 0
    r = dirtylog.simulate(**SMALL, xbzrle=True, xbzrle_cache_size="4MiB")
    assert "xbzrle" in r.compression


@pytest.mark.parametrize("kw, words", [
    (dict(bandwith="1Gbit/s"), "did you mean 'bandwidth'"),
    (dict(link=Link("1Gbit/s"), bandwidth="1Gbit/s"), "not both"),
    (dict(policy=PreCopy(), auto_converge=True), "not both"),
    (dict(prepage=4), "post-copy only"),
    (dict(policy="postcopie"), "did you mean 'postcopy'"),
])
def test_simulate_rejects_mixed_or_unknown_settings(kw, words):
    with pytest.raises(ConfigError, match=words):
        dirtylog.simulate(memory="4MiB", **kw)


def test_simulate_given_a_rate_as_link_says_what_a_link_is():
    # it raised AttributeError ('str' object has no attribute 'bandwidth') before Migration could check it
    with pytest.raises(TypeError, match=r"link must be a dirtylog\.Link such as Link\('10Gbit/s'.*got str "
                                        r"'10Gbit/s'; or give bandwidth= .*in its place"):
        dirtylog.simulate(memory="4MiB", link="10Gbit/s")  # type: ignore[arg-type]  # the mistake tested
    with pytest.raises(TypeError, match=r"link must be a dirtylog\.Link .*got str '10Gbit/s'$"):
        dirtylog.Migration(memory="4MiB", link="10Gbit/s")  # type: ignore[arg-type]  # the mistake tested


def test_a_bad_seed_is_the_calls_not_the_workload_specs():
    # it read "workload 'hotspot:1GiB/s': seed must be ...": the spec was built with the call's seed first
    for seed in (-1, 2**64):
        with pytest.raises(ConfigError, match=r"^seed must be 0 <= seed <= 18446744073709551615, got"):
            dirtylog.simulate(memory="4MiB", seed=seed)
        with pytest.raises(ConfigError, match=r"^seed must be"):
            dirtylog.Migration(memory="4MiB", workload=dirtylog.workloads.Hotspot("1GiB/s"), seed=seed)


def test_one_set_of_defaults():
    sim = inspect.signature(dirtylog.simulate).parameters
    mig = inspect.signature(dirtylog.Migration).parameters
    cfg = SweepConfig()
    for name in ("tracker", "vcpus", "page_size", "huge_pages", "zero_pages", "seed", "verify"):
        assert sim[name].default == DEFAULTS[name] == getattr(cfg, name), name
        assert mig[name].default == DEFAULTS[name], name
    assert sim["workload"].default == cfg.workload == DEFAULTS["workload"]
    assert Link().bandwidth == Link(DEFAULTS["bandwidth"]).bandwidth
    # the command line's defaults are the same
    args = build_parser().parse_args(["simulate"])
    assert args.vcpus == DEFAULTS["vcpus"] and args.memory == DEFAULTS["memory"]
    assert args.workload == DEFAULTS["workload"] and args.tracker == DEFAULTS["tracker"]
    assert args.bandwidth == DEFAULTS["bandwidth"]
    # policy knobs: unset everywhere means the policy's own default
    for k in KNOBS:
        assert getattr(cfg, k.name) == k.default
        assert getattr(args, k.name) is None


def test_the_same_configuration_gives_the_same_numbers_everywhere(capsys):
    argv = ["simulate", "-m", "16MiB", "-w", "hotspot:50MiB/s", "-b", "1Gbit/s", "--json"]
    assert main(argv) == 0
    cli = json.loads(capsys.readouterr().out)
    api = dirtylog.simulate(**SMALL)
    swept = run_config(grid(**SMALL)[0])
    assert cli["vcpus"] == api.vcpus == swept.vcpus
    assert cli["total_time"] == pytest.approx(api.total_time) == pytest.approx(swept.total_time)
    assert cli["transferred"] == api.transferred == swept.transferred


def test_knobs_are_written_once():
    # every knob is a parameter of its owner with the owner's default, and a config field
    for k in KNOBS:
        owner = {"PreCopy": PreCopy, "PostCopy": PostCopy}[k.owner]
        assert k.parameter in inspect.signature(owner).parameters
        assert k.name in FIELDS
    # and every PreCopy parameter is a knob (a new one gets its option and sweep axis for free)
    for name in inspect.signature(PreCopy).parameters:
        if name not in ("chunk_size", "clear_chunk"):
            assert name in KNOB, name
    # every knob has its option in simulate, trackers and sweep
    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    assert isinstance(sub.choices, dict)  # the subcommands' parsers by name
    for cmd in ("simulate", "trackers", "sweep"):
        opts = {s for a in sub.choices[cmd]._actions for s in a.option_strings}
        for k in KNOBS:
            assert k.option in opts, (cmd, k.option)


def test_dirty_limit_help_says_what_qemus_controller_does():
    """--dirty-limit's help said it held each vCPU's dirty rate at the quota; since e50a1e4 the controller steps
    each vCPU's sleep as QEMU's dirtylimit_process does, and leaves alone a vCPU within its tolerance band of the
    quota (with the 1 MiB/s default, every vCPU under 26 MiB/s runs free): the help says so."""
    from dirtylog.throttle import TOLERANCE_MIB_S

    text = KNOB["dirty_limit"].help
    assert f"within {TOLERANCE_MIB_S} MiB/s of --vcpu-dirty-limit" in text and "runs free" in text
    assert "hold each" not in text


def test_a_knob_given_as_a_list_is_a_sweep_axis(capsys):
    rc = main(["sweep", "-m", "16MiB", "-w", "hotspot:200MiB/s", "-b", "200Mbit/s", "-d", "30ms",
               "--max-iterations", "2,5", "--json", "--jobs", "1"])
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(rows) == 2
    assert [r["options"]["max_iterations"] for r in rows] == [2, 5]


def test_config_values_round_trip_and_pickle():
    import pickle

    c = MigrationConfig(memory="1GiB", auto_converge=True, downtime_limit="1s")
    assert c.auto_converge is True and c.downtime_limit == "1s" and c.stop == "qemu"
    assert MigrationConfig(**c.values()) == c == pickle.loads(pickle.dumps(c))
    assert c.replace(auto_converge=False).auto_converge is False
    with pytest.raises(AttributeError):
        c.no_such_thing  # noqa: B018
