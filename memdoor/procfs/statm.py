"""Parse /proc/PID/statm: the one read a below-threshold poll needs.

statm is 28 bytes and costs about 10 µs regardless of how many mappings the
process has, whereas smaps_rollup walks every mapping (see proc-costs.md).
"""

from __future__ import annotations

from memdoor.procfs.errors import ParseError
from memdoor.vocabulary import decimal


def parse_statm_resident_pages(text: str) -> int:
    """Return the resident field (second column), in pages.

    The third field must follow, so that a read cut inside resident is refused
    rather than taken for a smaller number.
    """
    fields = text.split()
    resident = decimal(fields[1]) if len(fields) >= 3 else None
    if resident is None:
        raise ParseError(f"statm: expected at least 3 integer fields, got {text[:80]!r}")
    return resident
