"""Building C programs against dirtylog's C core.

The wheel ships, inside the ``dirtylog`` package:

* ``include/dirtylog.h`` and ``include/dirtylog/*.h``: the public C API;
* ``lib/libdirtylog_core.a``: the static core library (tracker, workloads, engine);
* ``lib/cmake/dirtylog/``: a CMake package config with the imported target
  ``dirtylog::core``; scikit-build-core projects find it through dirtylog's
  ``cmake.root`` entry point, others pass ``-Ddirtylog_DIR=$(python -m dirtylog --cmake-dir)``;
* ``lib/pkgconfig/dirtylog.pc``: a relocatable pkg-config file (paths relative to
  the file itself): ``PKG_CONFIG_PATH=$(python -m dirtylog --pkgconfig-dir)``.

From a shell::

    cc my_sim.c $(python -m dirtylog --cflags --libs) -o my_sim

From Python (a setuptools or cffi build script)::

    import dirtylog
    include_dirs = [dirtylog.get_include()]
    library_dirs = [dirtylog.get_library_dir()]
    libraries = ["dirtylog_core", "m"]
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Dict, List

from .errors import DirtylogError

__all__ = [
    "get_include",
    "get_library_dir",
    "get_cmake_dir",
    "get_pkgconfig_dir",
    "cflags",
    "libs",
]

_HEADER = "dirtylog.h"
_LIBRARY = "libdirtylog_core.a"


def _package_dirs() -> List[Path]:
    """The package's folders (an editable install has two: the build's install tree and the sources)."""
    import dirtylog

    return [Path(p) for p in getattr(dirtylog, "__path__", [os.path.dirname(dirtylog.__file__)])]


def _find(relative: str, what: str) -> Path:
    for d in _package_dirs():
        if (d / relative).exists():
            return d
    where = ", ".join(str(d) for d in _package_dirs())
    raise DirtylogError(
        f"dirtylog's {what} ({relative}) is not installed in {where}; reinstall dirtylog from a wheel or "
        "with 'pip install .' (an editable install has it after its first rebuild)"
    )


def get_include() -> str:
    """The folder to add to the compiler's include path (it holds ``dirtylog.h``)."""
    return str(_find(f"include/{_HEADER}", "C header") / "include")


def get_library_dir() -> str:
    """The folder that holds the static library ``libdirtylog_core.a`` (link with ``-ldirtylog_core -lm``)."""
    return str(_find(f"lib/{_LIBRARY}", "static C library") / "lib")


def get_cmake_dir() -> str:
    """The folder of the CMake package config (``dirtylogConfig.cmake``), for ``-Ddirtylog_DIR=...``."""
    return str(_find("lib/cmake/dirtylog/dirtylogConfig.cmake", "CMake package config") / "lib" / "cmake" / "dirtylog")


def get_pkgconfig_dir() -> str:
    """The folder of ``dirtylog.pc``, for ``PKG_CONFIG_PATH``."""
    return str(_find("lib/pkgconfig/dirtylog.pc", "pkg-config file") / "lib" / "pkgconfig")


def _pc_fields() -> Dict[str, str]:
    """The installed dirtylog.pc, its variables expanded (as ``pkg-config`` would)."""
    pcdir = get_pkgconfig_dir()
    variables = {"pcfiledir": pcdir}
    fields: Dict[str, str] = {}

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), ""), value)

    for line in (Path(pcdir) / "dirtylog.pc").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\w[\w.]*)\s*([=:])\s*(.*)$", line)
        if not m:
            continue
        key, sep, value = m.groups()
        if sep == "=":
            variables[key] = expand(value)
        else:
            fields[key] = expand(value)
    return fields


def _normalize(flags: str) -> str:
    out = []
    for tok in shlex.split(flags):
        for prefix in ("-I", "-L"):
            if tok.startswith(prefix) and len(tok) > 2:
                tok = prefix + os.path.normpath(tok[2:])
        out.append(shlex.quote(tok))
    return " ".join(out)


def cflags() -> str:
    """Compiler flags, as ``pkg-config --cflags dirtylog`` prints them."""
    return _normalize(_pc_fields().get("Cflags", f"-I{get_include()}"))


def libs() -> str:
    """Linker flags, as ``pkg-config --libs dirtylog`` prints them (with the system libraries the
    static core needs, and the sanitizer runtime when dirtylog was built with sanitizers)."""
    return _normalize(_pc_fields().get("Libs", f"-L{get_library_dir()} -ldirtylog_core -lm"))
