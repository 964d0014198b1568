"""MemTotal, read rarely: the denominator of every system threshold check.

MemTotal only changes with memory hotplug or a balloon driver, so reading
/proc/meminfo on every tick of every target would be waste; a refresh each
minute follows those changes closely enough.
"""

from __future__ import annotations

import time
from typing import Optional, Union

from memdoor.collect.memory import read_meminfo
from memdoor.collect.reading import Unreadable

REFRESH_SECONDS = 60.0


class MemTotal:
    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._value: Optional[int] = None
        self._read_at = 0.0

    def kb(self) -> Union[int, Unreadable]:
        now = time.monotonic()
        if self._value is None or now - self._read_at > REFRESH_SECONDS:
            meminfo = read_meminfo(self._proc)
            if isinstance(meminfo, Unreadable):
                return meminfo
            self._value, self._read_at = meminfo.total_kb, now
        return self._value
