"""The one error that means "not on this host", as opposed to "broken"."""

from __future__ import annotations


class LabUnavailable(Exception):
    """This host cannot run a lab rig: not root, no memory controller, a missing tool.

    The message is the reason. The tests skip on it (tests/conftest.py) and the
    benchmarks print it and stop; anything else a rig raises is a real failure.
    """
