"""Dirty rates measured on a real host: QEMU's ``query-dirty-rate`` and libvirt's ``domstats --dirtyrate``.

Operators measure a guest's dirty rate with QEMU's ``calc-dirty-rate`` (or libvirt's
``virsh domdirtyrate-calc``), then read the result with ``query-dirty-rate`` (``virsh
domstats --dirtyrate``). :func:`read_dirty_rate` reads any of these, as saved to a
file, into a :class:`MeasuredDirtyRate`; :meth:`MeasuredDirtyRate.workload` (or the
workload spec ``qemu-dirty-rate:FILE``) turns it into a
:class:`~dirtylog.workloads.DirtyRate` workload.

Accepted inputs:

* QEMU's QMP reply, with or without its ``{"return": ...}`` wrapper, e.g. saved from
  ``virsh qemu-monitor-command VM '{"execute":"query-dirty-rate"}'``::

      {"return": {"status": "measured", "sample-pages": 0, "dirty-rate": 108,
                  "mode": "dirty-ring", "start-time": 3665220, "calc-time": 1,
                  "calc-time-unit": "second",
                  "vcpu-dirty-rate": [{"id": 0, "dirty-rate": 60}, {"id": 1, "dirty-rate": 48}]}}

  ``dirty-rate`` is in MiB/s (QEMU counts dirty pages x page size / 2**20 per second,
  an integer); ``calc-time`` is in seconds unless ``calc-time-unit`` says
  ``millisecond`` (QEMU 8.2+); ``vcpu-dirty-rate`` is present in dirty-ring mode only.
* libvirt's ``virsh domstats --dirtyrate VM`` text (or the same ``key=value`` lines)::

      Domain: 'vm1'
        dirtyrate.calc_status=2
        dirtyrate.calc_start_time=348414
        dirtyrate.calc_period=1
        dirtyrate.megabytes_per_second=108
        dirtyrate.calc_mode=dirty-ring
        dirtyrate.vcpu.0.megabytes_per_second=60
        dirtyrate.vcpu.1.megabytes_per_second=48

  ``calc_status`` 2 means measured (0 unstarted, 1 measuring); ``calc_period`` is in
  seconds; the rates are in MiB/s.
* dirtylog's own ``dirtylog dirty-rate --json`` output (one result or a list: the
  first dirty-ring result if there is one, else the first).

A measurement that is not finished (status ``measuring``/``unstarted``, calc_status
0 or 1) is an error: there is no rate to read yet.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import ConfigError

__all__ = ["MeasuredDirtyRate", "read_dirty_rate", "parse_query_dirty_rate", "parse_domstats"]

MIB = 1 << 20
_MODES = ("page-sampling", "dirty-bitmap", "dirty-ring")
_LIBVIRT_STATUS = {0: "unstarted", 1: "measuring", 2: "measured"}


@dataclass(frozen=True)
class MeasuredDirtyRate:
    """One dirty-rate measurement of a real guest.

    rate        the dirty rate, bytes/s (QEMU's MiB/s figure x 2**20)
    window      the measurement window (calc-time), seconds
    mode        "page-sampling", "dirty-bitmap" or "dirty-ring" (None if not given)
    vcpu_rates  bytes/s of each vCPU in vCPU order (dirty-ring mode), else None
    sample_pages  sampled pages per GiB (page-sampling), else 0
    source      where it was read from (for messages)
    """

    rate: float
    window: float
    mode: Optional[str] = None
    vcpu_rates: Optional[Tuple[float, ...]] = None
    sample_pages: int = 0
    source: str = "measurement"

    @property
    def rate_mib_s(self) -> float:
        return self.rate / MIB

    def workload(self, working_set: Any = None, seed: Any = 0) -> Any:
        """The :class:`~dirtylog.workloads.DirtyRate` workload of this measurement (per-vCPU shares included)."""
        from .workloads import DirtyRate

        def b(x: float) -> str:  # bytes/s (a bare number would be pages/s)
            return f"{x:.17g}B/s"

        return DirtyRate(b(self.rate), window=self.window,
                         vcpu_rates=None if self.vcpu_rates is None else [b(x) for x in self.vcpu_rates],
                         working_set=working_set, seed=seed)


def _num(x: Any, what: str, source: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        try:
            return float(str(x).strip())
        except ValueError:
            raise ConfigError(f"{source}: {what} must be a number, got {x!r}") from None
    return float(x)


def _check(rate: float, window: float, vcpu: Optional[List[float]], source: str) -> None:
    if not (rate >= 0) or rate == float("inf"):
        raise ConfigError(f"{source}: the dirty rate must be a finite number >= 0, got {rate!r}")
    if not (window > 0) or window == float("inf"):
        raise ConfigError(f"{source}: the measurement window (calc-time) must be > 0, got {window!r} s")
    if vcpu is not None and any(not (r >= 0) for r in vcpu):
        raise ConfigError(f"{source}: per-vCPU dirty rates must be >= 0, got {vcpu}")


def parse_query_dirty_rate(obj: Any, source: str = "query-dirty-rate") -> MeasuredDirtyRate:
    """A QMP ``query-dirty-rate`` reply (a dict, with or without ``"return"``)."""
    if isinstance(obj, dict) and "return" in obj:
        obj = obj["return"]
    if not isinstance(obj, dict) or "status" not in obj:
        raise ConfigError(f"{source}: not a query-dirty-rate reply (no 'status' field)")
    status = str(obj["status"])
    if status != "measured":
        raise ConfigError(f"{source}: the measurement is not finished (status {status!r}); "
                          "query again after calc-time has passed")
    if "dirty-rate" not in obj:
        raise ConfigError(f"{source}: status 'measured' but no 'dirty-rate' field")
    rate = _num(obj["dirty-rate"], "dirty-rate", source) * MIB
    unit = str(obj.get("calc-time-unit", "second"))
    if unit not in ("second", "millisecond"):
        raise ConfigError(f"{source}: unknown calc-time-unit {unit!r}; QEMU gives 'second' or 'millisecond'")
    window = _num(obj.get("calc-time", 0), "calc-time", source) * (1e-3 if unit == "millisecond" else 1.0)
    mode = obj.get("mode")
    if mode is not None and mode not in _MODES:
        raise ConfigError(f"{source}: unknown mode {mode!r}; allowed: {', '.join(_MODES)}")
    vcpu: Optional[List[float]] = None
    if obj.get("vcpu-dirty-rate") is not None:
        entries = obj["vcpu-dirty-rate"]
        if not isinstance(entries, list):
            raise ConfigError(f"{source}: vcpu-dirty-rate must be a list of {{id, dirty-rate}}")
        by_id: Dict[int, float] = {}
        for e in entries:
            if not isinstance(e, dict) or "id" not in e or "dirty-rate" not in e:
                raise ConfigError(f"{source}: bad vcpu-dirty-rate entry {e!r}; expected {{'id': N, 'dirty-rate': R}}")
            by_id[int(e["id"])] = _num(e["dirty-rate"], "vcpu dirty-rate", source) * MIB
        vcpu = _dense(by_id, source)
    _check(rate, window, vcpu, source)
    return MeasuredDirtyRate(rate, window, mode, None if vcpu is None else tuple(vcpu),
                             int(obj.get("sample-pages", 0) or 0), source)


def _dense(by_id: Dict[int, float], source: str) -> Optional[List[float]]:
    if not by_id:
        return None
    ids = sorted(by_id)
    if ids != list(range(len(ids))):
        raise ConfigError(f"{source}: per-vCPU rates must be given for vCPUs 0..N-1, got ids {ids}")
    return [by_id[i] for i in ids]


_DOMSTATS_LINE = re.compile(r"^\s*(dirtyrate\.[A-Za-z0-9_.]+)\s*=\s*(.*?)\s*$")


def parse_domstats(text: str, source: str = "domstats") -> MeasuredDirtyRate:
    """The output of ``virsh domstats --dirtyrate VM`` (one domain)."""
    fields: Dict[str, str] = {}
    domains = 0
    for line in text.splitlines():
        if line.strip().startswith("Domain:"):
            domains += 1
            if domains > 1:
                raise ConfigError(f"{source}: holds the stats of several domains; keep one (virsh domstats VM)")
            continue
        m = _DOMSTATS_LINE.match(line)
        if m:
            fields[m.group(1)] = m.group(2)
    if "dirtyrate.megabytes_per_second" not in fields and "dirtyrate.calc_status" not in fields:
        raise ConfigError(f"{source}: no dirtyrate.* fields; save the output of 'virsh domstats --dirtyrate VM' "
                          "after 'virsh domdirtyrate-calc VM'")
    status = int(_num(fields.get("dirtyrate.calc_status", 2), "dirtyrate.calc_status", source))
    if status != 2:
        raise ConfigError(f"{source}: the measurement is not finished (calc_status {status}: "
                          f"{_LIBVIRT_STATUS.get(status, 'unknown')}); read domstats again after the period")
    if "dirtyrate.megabytes_per_second" not in fields:
        raise ConfigError(f"{source}: calc_status 2 but no dirtyrate.megabytes_per_second")
    rate = _num(fields["dirtyrate.megabytes_per_second"], "dirtyrate.megabytes_per_second", source) * MIB
    window = _num(fields.get("dirtyrate.calc_period", 1), "dirtyrate.calc_period", source)
    mode = fields.get("dirtyrate.calc_mode")
    if mode is not None and mode not in _MODES:
        raise ConfigError(f"{source}: unknown dirtyrate.calc_mode {mode!r}; allowed: {', '.join(_MODES)}")
    by_id: Dict[int, float] = {}
    for k, val in fields.items():
        m = re.fullmatch(r"dirtyrate\.vcpu\.(\d+)\.megabytes_per_second", k)
        if m:
            by_id[int(m.group(1))] = _num(val, k, source) * MIB
    vcpu = _dense(by_id, source)
    _check(rate, window, vcpu, source)
    return MeasuredDirtyRate(rate, window, mode, None if vcpu is None else tuple(vcpu), 0, source)


def _from_dirtylog(obj: Any, source: str) -> MeasuredDirtyRate:
    items = obj if isinstance(obj, list) else [obj]
    items = [d for d in items if isinstance(d, dict) and "dirty_rate_mib_s" in d]
    if not items:
        raise ConfigError(f"{source}: not a dirtylog dirty-rate result")
    ring = [d for d in items if d.get("mode") == "dirty-ring"]
    d = (ring or items)[0]
    vr = d.get("vcpu_rates")
    vcpu = [float(x) * MIB for x in vr] if vr else None
    rate = _num(d["dirty_rate_mib_s"], "dirty_rate_mib_s", source) * MIB
    window = _num(d.get("window", 0), "window", source)
    _check(rate, window, vcpu, source)
    return MeasuredDirtyRate(rate, window, d.get("mode"), None if vcpu is None else tuple(vcpu),
                             int(d.get("sample_pages", 0) or 0), source)


def read_dirty_rate(path: Union[str, "os.PathLike[str]"]) -> MeasuredDirtyRate:
    """Read a measurement from a file: QMP JSON, ``virsh domstats --dirtyrate`` text, or dirtylog's JSON."""
    source = f"dirty-rate file {os.fspath(path)!r}"
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({exc.strerror or exc})") from None
    stripped = text.strip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = _last_qmp_reply(stripped, source)
        if isinstance(obj, list) or (isinstance(obj, dict) and "dirty_rate_mib_s" in obj):
            return _from_dirtylog(obj, source)
        return parse_query_dirty_rate(obj, source)
    return parse_domstats(text, source)


def _last_qmp_reply(text: str, source: str) -> Any:
    """A QMP session log (one JSON object per line): its last query-dirty-rate reply."""
    found = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{source}: neither JSON nor 'virsh domstats --dirtyrate' output") from None
        ret = obj.get("return") if isinstance(obj, dict) else None
        if isinstance(ret, dict) and "status" in ret and "calc-time" in ret:
            found = obj
    if found is None:
        raise ConfigError(f"{source}: no query-dirty-rate reply in it")
    return found
