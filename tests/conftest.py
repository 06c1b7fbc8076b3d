"""Fixtures shared by the test modules (pytest finds this file beside them, also when the suite runs
from outside the source tree, as CI's wheel and sanitizer steps run it)."""
from __future__ import annotations

from typing import Tuple

import pytest

from dirtylog import Link, Migration, PreCopy
from dirtylog.errors import Interrupted
from dirtylog.report import MigrationReport
from dirtylog.workloads import Hotspot


@pytest.fixture
def interrupted_in_round_0() -> Tuple[Migration, MigrationReport]:
    """A migration stopped as Ctrl-C stops it, 3 s into its round 0, and the partial report it raised.

    1 GiB, Hotspot 50 MiB/s, capped at 128 MiB/s (round 0 takes about 8 s): its progress callback
    raises KeyboardInterrupt, and ``Migration.run`` raises :class:`Interrupted` with the report.
    The migration can go on (``m.run()``)."""
    m = Migration(memory="1GiB", workload=Hotspot("50MiB/s", seed=3), link=Link("1Gbit/s"),
                  policy=PreCopy(max_bandwidth="128MiB/s"))

    def stop_at_3s(mig: Migration) -> None:
        if mig.clock >= 3.0:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        m.run(progress=stop_at_3s)
    return m, info.value.report
