"""How the lab runs a module of this very memdoor in a child interpreter.

``python -m`` puts the child's working directory first on its sys.path, so the
child starts in the directory that holds the package this process imported: it
runs the same memdoor whether that is a checkout anywhere on disk (CI clones to
arbitrary paths) or an installed copy, and a ``memdoor`` directory wherever the
caller happens to stand cannot take its place.
"""

from __future__ import annotations

import sys
from pathlib import Path

# memdoor/lab/python_child.py -> the directory holding memdoor/.
IMPORT_ROOT = Path(__file__).resolve().parents[2]


def module_command(module: str, *args: str) -> list[str]:
    """``python -m module args`` with this interpreter; run it with ``cwd=IMPORT_ROOT``."""
    return [sys.executable, "-m", module, *args]
