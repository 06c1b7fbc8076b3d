"""``python -m dirtylog``: the command line (see :mod:`dirtylog.cli`)."""
from __future__ import annotations

import sys
from typing import Optional, Sequence

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one ``dirtylog`` command line and return its exit status (the console script's entry point)."""
    from .cli import main as _main

    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
