"""Argument checks shared by the C-backed classes and the numpy reference models."""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._lib import lib
from .errors import ConfigError

#: Tracker modes by name, read from the C header's dl_mode (DL_MODE_WP -> "wp"), in value order.
MODE_VALUES = dict(sorted(((n[len("DL_MODE_"):].lower(), int(getattr(lib, n))) for n in dir(lib)
                           if n.startswith("DL_MODE_")), key=lambda kv: kv[1]))
MODES = tuple(MODE_VALUES)
HUGE_MODES = (None, "lazy", "eager")
# Limits checked by dl_tracker_create (csrc/include/dirtylog/tracker.h)
BLOCK_PAGES = int(lib.DL_BLOCK_PAGES)
MAX_PAGES = 1 << 40
MAX_VCPUS = int(lib.DL_MAX_VCPUS)
PML_MIN, PML_MAX = int(lib.DL_PML_MIN_ENTRIES), int(lib.DL_PML_MAX_ENTRIES)
RING_MIN, RING_MAX = int(lib.DL_RING_MIN_ENTRIES), int(lib.DL_RING_MAX_ENTRIES)
RING_RESERVED = int(lib.DL_RING_RESERVED)
PAGE_SIZE_MIN, PAGE_SIZE_MAX = int(lib.DL_PAGE_SIZE_MIN), int(lib.DL_PAGE_SIZE_MAX)


def tracker_mode(mode: Any, name: str = "tracker mode") -> str:
    """The canonical (lower-case) name of a tracker mode given in any case; ConfigError naming the allowed ones."""
    if not isinstance(mode, str) or mode.lower() not in MODE_VALUES:
        raise ConfigError(f"unknown {name} {mode!r}; allowed: {', '.join(MODES)}")
    return mode.lower()


def as_int(name: str, value: Any, *, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """Return ``value`` as an int, or raise ConfigError/TypeError naming ``name`` and the allowed range."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not a bool")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        value = int(value)
    try:
        ivalue = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if minimum is not None and ivalue < minimum or maximum is not None and ivalue > maximum:
        lo = "" if minimum is None else f"{minimum} <= "
        hi = "" if maximum is None else f" <= {maximum}"
        raise ConfigError(f"{name} must be {lo}{name}{hi}, got {ivalue}")
    return ivalue


def check_page_size(value: Any, name: str = "page_size") -> int:
    """A page size in bytes (a number, or a string such as ``"4KiB"``): the one check of it, a power of
    two from :data:`PAGE_SIZE_MIN` to :data:`PAGE_SIZE_MAX` (dl_tracker_create's limits)."""
    if isinstance(value, str):
        from .units import parse_size

        psize = parse_size(value, name=name)
    else:
        psize = as_int(name, value)
    if psize < PAGE_SIZE_MIN or psize > PAGE_SIZE_MAX or psize & (psize - 1):
        got = f"{value!r} ({psize:,} bytes)" if isinstance(value, str) else f"{psize}"
        raise ConfigError(f"{name} must be a power of two from {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX} bytes, got {got}")
    return int(psize)


def guest_pages(memory: Any, page_size: int, *, whole: bool = False, name: str = "memory") -> int:
    """The pages of a guest of ``memory`` (bytes, or a string such as ``"4GiB"``) in pages of ``page_size``
    bytes: the one place a guest's size is checked. It must hold at least one page (a bare number is bytes,
    so ``memory=4`` is 4 bytes, not 4 GiB) and at most :data:`MAX_PAGES`; it is rounded up to whole pages,
    or with ``whole`` must be a whole number of them. ConfigError says what was given and what is allowed."""
    from .units import format_size, parse_size

    nbytes = int(parse_size(memory, name=name, allow_zero=False))
    if nbytes < page_size:
        hint = ""
        if isinstance(memory, (int, float, np.integer)) and not isinstance(memory, bool) or (
                isinstance(memory, str) and memory.strip().replace(".", "", 1).isdigit()):
            hint = f"; a number is bytes: for {memory} GiB write '{str(memory).strip()}GiB'"
        raise ConfigError(f"{name} must be at least one page ({page_size:,} bytes), got {memory!r} "
                          f"({nbytes:,} byte{'s' if nbytes != 1 else ''}){hint}")
    if whole and nbytes % page_size:
        raise ConfigError(f"{name} must be a whole number of {page_size}-byte pages, got {memory!r} "
                          f"({nbytes:,} bytes)")
    pages = -(-nbytes // page_size)
    if pages > MAX_PAGES:
        raise ConfigError(f"{name} must be at most {format_size(MAX_PAGES * page_size)} with "
                          f"{format_size(page_size)} pages ({MAX_PAGES:,} pages), got {memory!r}")
    return pages


@dataclass(frozen=True)
class TrackerConfig:
    """A checked tracker configuration (see :class:`dirtylog.Tracker`)."""

    pages: int
    mode: str = "wp"
    vcpus: int = 1
    page_size: int = 4096
    huge_pages: Optional[str] = None
    pml_entries: int = 512
    ring_entries: int = 4096
    initially_set: bool = False

    @property
    def ring_soft_limit(self) -> int:
        return self.ring_entries - RING_RESERVED

    @property
    def blocks(self) -> int:
        return (self.pages + BLOCK_PAGES - 1) // BLOCK_PAGES

    @property
    def bitmap_words(self) -> int:
        return (self.pages + 63) // 64


def tracker_config(
    pages: Any,
    mode: str = "wp",
    vcpus: Any = 1,
    page_size: Any = 4096,
    huge_pages: Optional[str] = None,
    pml_entries: Any = 512,
    ring_entries: Any = 4096,
    initially_set: bool = False,
) -> TrackerConfig:
    """Check and normalize the Tracker constructor's arguments."""
    npages = as_int("pages", pages, minimum=1, maximum=MAX_PAGES)
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ConfigError(f"unknown tracker mode {mode!r}; allowed: {', '.join(MODES)}")
    mode = mode.lower()
    nvcpus = as_int("vcpus", vcpus, minimum=1, maximum=MAX_VCPUS)
    psize = check_page_size(page_size)
    if isinstance(huge_pages, str):
        huge_pages = huge_pages.lower()
        if huge_pages == "none":
            huge_pages = None
    if huge_pages is False:
        huge_pages = None
    if huge_pages not in HUGE_MODES:
        raise ConfigError(f"huge_pages must be None, 'lazy' or 'eager', got {huge_pages!r}")
    pml = as_int("pml_entries", pml_entries, minimum=PML_MIN, maximum=PML_MAX)
    ring = as_int("ring_entries", ring_entries)
    if not RING_MIN <= ring <= RING_MAX or ring & (ring - 1):
        allowed = ", ".join(str(1 << b) for b in range(RING_MIN.bit_length() - 1, RING_MAX.bit_length()))
        raise ConfigError(
            f"ring_entries must be one of {allowed} (a power of two: KVM's kvm_vm_ioctl_enable_dirty_log_ring "
            f"on x86 with PML needs room for its {RING_RESERVED} reserved entries "
            f"({int(lib.DL_RING_RSVD_ENTRIES)} and a full {int(lib.DL_PML_LOG_ENTRIES)}-entry PML log), "
            f"and takes at most {RING_MAX}; QEMU's dirty-ring-size must be a power of two), got {ring}")
    if not isinstance(initially_set, (bool, np.bool_)):
        raise TypeError(f"initially_set must be a bool, got {type(initially_set).__name__}")
    if initially_set and mode != "clear":
        raise ConfigError("initially_set=True needs mode='clear' (KVM allows it only with manual protect)")
    return TrackerConfig(npages, mode, nvcpus, psize, huge_pages, pml, ring, bool(initially_set))


_INT_KINDS = "iu"


def write_batch(pages: Any, npages: int) -> np.ndarray:
    """Return the batch as a 1-D integer array without copying when possible.

    Raises TypeError for a non-integer dtype and ValueError naming the first page
    index that is negative or >= npages.
    """
    arr = pages if isinstance(pages, np.ndarray) else np.asarray(pages)
    if arr.dtype == object and arr.size == 0:
        arr = np.empty(0, dtype=np.uint64)
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.uint64)
    if arr.dtype == object:  # Python ints too large for 64 bits, or mixed types
        for i, x in enumerate(arr.reshape(-1)):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
                raise TypeError(f"pages must be integers; element {i} is {type(x).__name__} {x!r}")
            if not 0 <= int(x) < npages:
                why = "is negative" if int(x) < 0 else f"is out of range (the guest has pages 0..{npages - 1})"
                raise ConfigError(f"page {int(x)} at position {i} of the batch {why}; the batch was rejected")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in _INT_KINDS:
        raise TypeError(
            f"pages must be integers (a numpy integer array or a sequence of ints), got dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    return arr


def describe_bad_page(arr: np.ndarray, index: int, npages: int) -> str:
    value = int(arr[index])
    why = "is negative" if value < 0 else f"is out of range (the guest has pages 0..{npages - 1})"
    return f"page {value} at position {index} of the batch {why}; the batch was rejected"


def first_bad_page(arr: np.ndarray, npages: int) -> Optional[int]:
    """Position of the first page index outside [0, npages), or None."""
    if arr.size == 0:
        return None
    if arr.dtype.kind == "i":
        bad = (arr < 0) | (arr >= npages)
    else:
        bad = arr >= np.uint64(npages) if arr.dtype == np.uint64 else arr >= npages
    if not bad.any():
        return None
    return int(np.argmax(bad))


def check_vcpu(vcpu: Any, vcpus: int) -> int:
    v = as_int("vcpu", vcpu)
    if v < 0 or v >= vcpus:
        raise ConfigError(f"vcpu must be 0 <= vcpu < {vcpus} (the tracker has {vcpus} vCPUs), got {v}")
    return v


def check_clear_range(first: Any, count: Any, npages: int) -> tuple[int, int]:
    f = as_int("first", first)
    c = as_int("count", count)
    if f < 0 or c < 0:
        raise ConfigError(f"first and count must be >= 0, got first={f}, count={c}")
    if f % 64:
        raise ConfigError(f"first must be a multiple of 64 (KVM_CLEAR_DIRTY_LOG granularity), got {f}")
    if f + c > npages:
        raise ConfigError(f"range [{f}, {f + c}) goes past the last page ({npages - 1})")
    if c % 64 and f + c != npages:
        raise ConfigError(
            f"count must be a multiple of 64 unless the range reaches the last page, got count={c} at first={f}"
        )
    return f, c


def clear_mask(mask: Any, count: int) -> np.ndarray:
    """KVM_CLEAR_DIRTY_LOG's mask as contiguous uint64 words covering ``count`` pages.

    Any 1-D integer array or sequence is accepted (values are taken as 64-bit words).
    """
    words = np.asarray(mask)
    need = (count + 63) // 64
    if words.ndim != 1 or (words.size and words.dtype.kind not in _INT_KINDS):
        raise ConfigError(
            "mask must be a 1-D array of integer words (bit j of word i covers page first + 64*i + j), "
            f"got a {words.ndim}-D array of {words.dtype}"
        )
    if words.size < need:
        raise ConfigError(f"mask must have at least {need} 64-bit words to cover {count} pages, got {words.size}")
    return np.ascontiguousarray(words.astype(np.uint64, copy=False))
