"""Decimal numbers in text that the kernel, systemd or a pidfile wrote.

str.isdigit() accepts digits such as '²' that int() refuses, and int() accepts
what none of them writes (' 7', '+7', '7_000'), so neither alone tells a
number from damage: a check that passes '²' turns into a traceback at int().
"""

from __future__ import annotations

from typing import Optional


def decimal(text: str) -> Optional[int]:
    """text as a non-negative integer if it is ASCII digits and nothing else, else None."""
    return int(text) if text.isascii() and text.isdigit() else None
