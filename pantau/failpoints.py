"""Named crash points for recovery tests.

A process configured with `debug.failpoints: [sink.after_db_commit]` exits abruptly (no
clean-up, no offset commit) the first time it reaches that point, which is exactly what a
power cut there would do. With no failpoints configured, `hit` costs one set lookup.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

EXIT_CODE = 97


class Failpoints:
    def __init__(self, names: Iterable[str] = ()) -> None:
        self._armed = frozenset(names)

    def armed(self, name: str) -> bool:
        """For points that misbehave other than by exiting (a stall, say)."""
        return name in self._armed

    def hit(self, name: str) -> None:
        if name in self._armed:
            log.critical("failpoint %s reached: exiting abruptly", name)
            logging.shutdown()
            os._exit(EXIT_CODE)
