"""A running daemon does not load what only other commands or rare paths need.

Every module imported stays in the daemon's memory for its whole life (its code
objects alone are megabytes), so what `memdoor run` never uses at run time is
imported where it is used. This test runs the real `memdoor run` path, through
memdoor.cli.main, until its target is found, and lists what it had loaded: an
import added at a module's top that brings one of these back fails here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from memdoor.events import Event
from memdoor.lab.python_child import IMPORT_ROOT

# Each module kept out of the daemon, with what it is for instead.
NOT_IN_THE_DAEMON = {
    "memdoor.cli.demo_command": "memdoor demo",
    "memdoor.lab": "the demo's processes and cgroups, tests and benchmarks",
    "memdoor.cli.show_command": "memdoor show",
    "memdoor.views.postmortem": "memdoor show and the console view's kill line",
    "memdoor.views.html_page": "memdoor show --html",
    "memdoor.views.console": "stdout on a terminal or --format console",
    "html": "memdoor show --html",
    "mmap": "the lab's workload",
    "memdoor.cli.seed": "the seed command",
    "memdoor.render.seed_text": "the seed command's text",
    "difflib": "the 'did you mean' of an unknown key in a configuration",
}

# Run as `memdoor run` is, and write what was loaded when the daemon stops.
LISTING_DAEMON = """
import atexit, sys
listing = sys.argv[1]
atexit.register(lambda: open(listing, "w").write("\\n".join(sorted(sys.modules))))
from memdoor.cli.main import main
sys.exit(main(["run", "--format", "json", "--config", sys.argv[2]]))
"""


def loaded_by_running_daemon(tmp_path: Path) -> set[str]:
    """The modules a daemon watching this test's process had loaded once it found it."""
    config = tmp_path / "one.toml"
    config.write_text(f'[[target]]\nname = "me"\npid = {os.getpid()}\nthreshold = 99\n')
    listing = tmp_path / "modules.txt"
    daemon = subprocess.Popen(
        [sys.executable, "-c", LISTING_DAEMON, str(listing), str(config)],
        stdout=subprocess.PIPE,
        cwd=IMPORT_ROOT,
        text=True,
    )
    # A daemon that never finds its target is killed, and the test fails, in a minute.
    deadline = threading.Timer(60, daemon.kill)
    deadline.start()
    try:
        assert daemon.stdout is not None
        for line in daemon.stdout:
            if json.loads(line)["event"] == Event.TARGET_FOUND:
                break
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        deadline.cancel()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    return set(listing.read_text().split())


def test_running_daemon_leaves_rare_paths_unloaded(tmp_path: Path) -> None:
    loaded = loaded_by_running_daemon(tmp_path)
    assert "memdoor.daemon" in loaded
    unwanted = {
        name: why
        for name, why in NOT_IN_THE_DAEMON.items()
        if name in loaded or any(module.startswith(f"{name}.") for module in loaded)
    }
    assert unwanted == {}
