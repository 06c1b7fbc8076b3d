"""Generate the cffi (API mode, out-of-line) C source for ``dirtylog._core``.

Usage: build_ffi.py OUTPUT.c HEADER.h [HEADER.h ...]

The declarations fed to cffi are the parts of each public header between the
markers ``DL_CDEF_BEGIN`` and ``DL_CDEF_END``, with preprocessor lines removed,
so the headers stay the single source of truth for the binding. A constant
defined there as a macro (``#define DL_NAME value``) is declared to cffi as
``#define DL_NAME ...``: cffi takes its value from the compiled header.
"""
from __future__ import annotations

import pathlib
import re
import sys

import cffi

BEGIN = "DL_CDEF_BEGIN"
END = "DL_CDEF_END"
_DEFINE = re.compile(r"\s*#\s*define\s+(DL_[A-Z0-9_]+)\s+\S")


def extract_cdef(text: str, name: str) -> str:
    start = text.find(BEGIN)
    stop = text.find(END)
    if start < 0 or stop < 0 or stop < start:
        raise SystemExit(f"{name}: missing {BEGIN}/{END} markers")
    body = text[text.index("\n", start) + 1 : stop]
    body = body[: body.rfind("\n") + 1] if "\n" in body else ""
    lines = []
    for ln in body.splitlines():
        m = _DEFINE.match(ln)
        if m:
            lines.append(f"#define {m.group(1)} ...")
        elif not ln.lstrip().startswith("#"):
            lines.append(ln)
    # cffi does not understand these qualifiers in declarations.
    out = "\n".join(lines)
    out = re.sub(r"\bDL_API\b", "", out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    output = pathlib.Path(argv[1])
    headers = [pathlib.Path(p) for p in argv[2:]]
    cdef = "\n".join(extract_cdef(h.read_text(), h.name) for h in headers)
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source("dirtylog._core", '#include "dirtylog.h"\n')
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp.c")
    ffi.emit_c_code(str(tmp))
    tmp.replace(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
