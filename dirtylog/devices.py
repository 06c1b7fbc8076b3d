"""Device state sent during the downtime, as QEMU's VMState sections are.

The defaults are typical sizes of a QEMU/KVM x86 guest's migration sections,
rounded; measure your own with ``-d`` tracing or the migration stream's size
minus RAM. They matter only when the downtime budget is tight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from .errors import ConfigError
from .units import format_size, parse_size

__all__ = ["Device", "default_devices", "device_bytes", "ordered"]


@dataclass(frozen=True, init=False)
class Device:
    """One device's migration state: ``name``, ``state_bytes`` and ``priority``.

    Devices are sent in decreasing priority (QEMU's MigrationPriority: higher
    first), ties in registration order.
    """

    name: str
    state_bytes: int
    priority: int

    def __init__(self, name: str, state_bytes: Union[int, str], priority: int = 0) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a device needs a non-empty name, got {name!r}")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"device {name!r}: priority must be an int, got {priority!r}")
        object.__setattr__(self, "name", name)
        size = int(parse_size(state_bytes, name=f"device {name!r} state_bytes"))
        if size > MAX_STATE_BYTES:
            raise ConfigError(f"device {name!r} state_bytes must be at most {format_size(MAX_STATE_BYTES)}, "
                              f"got {state_bytes!r} ({format_size(size)})")
        object.__setattr__(self, "state_bytes", size)
        object.__setattr__(self, "priority", priority)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "state_bytes": self.state_bytes, "priority": self.priority}


#: Largest state of one device, and of all devices together (far above any real device).
MAX_STATE_BYTES = 1 << 50

#: Per-vCPU state: general and control registers, MSRs, the XSAVE area (up to ~10 KiB
#: with AVX-512), pending events: QEMU's "cpu" section.
VCPU_STATE_BYTES = 16 * 1024
#: The local APIC's 4 KiB register page and timer state.
APIC_STATE_BYTES = 4 * 1024

_FIXED = (
    # name, bytes, priority (higher first), what it stands for
    ("kvmclock", 64, 3),               # the guest's clock: must be first on the destination
    ("ioapic", 512, 2),                # 24 redirection entries
    ("pic+pit+rtc+hpet", 2 * 1024, 2),  # legacy timers and interrupt controllers
    ("pci-bus", 16 * 1024, 1),          # config space of ~32 functions x 256 B + bridges
    ("virtio-net", 64 * 1024, 0),       # queues' indices, MAC filter table, offload state
    ("virtio-blk", 8 * 1024, 0),        # queues and in-flight request descriptors
    ("virtio-balloon", 1024, 0),
    ("serial+usb", 4 * 1024, 0),
)


def default_devices(vcpus: int = 1) -> List[Device]:
    """The default device list of a small x86 KVM guest with ``vcpus`` vCPUs."""
    devs = [Device(n, b, p) for n, b, p in _FIXED]
    for i in range(vcpus):
        devs.append(Device(f"cpu{i}", VCPU_STATE_BYTES, 4))
        devs.append(Device(f"apic{i}", APIC_STATE_BYTES, 4))
    return ordered(devs)


def ordered(devices: Iterable[Device]) -> List[Device]:
    """Devices in the order they are sent (stable sort by decreasing priority)."""
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Iterable):
        raise TypeError(f"devices must be a sequence of Device objects (or None for the defaults), "
                        f"got {type(devices).__name__} {devices!r}")
    devs = list(devices)
    for d in devs:
        if not isinstance(d, Device):
            raise TypeError(f"devices must be Device objects, got {type(d).__name__}")
    total = device_bytes(devs)
    if total > MAX_STATE_BYTES:
        raise ConfigError(f"devices: the state of all devices together must be at most "
                          f"{format_size(MAX_STATE_BYTES)}, got {format_size(total)}")
    return sorted(devs, key=lambda d: -d.priority)


def device_bytes(devices: Optional[Sequence[Device]]) -> int:
    return sum(d.state_bytes for d in devices or ())
