"""What `memdoor check-config` warns about: a valid file that likely does not do what was meant.

None of it is an error: a process may start after memdoor, a pidfile's directory
may be made by the service's RuntimeDirectory= when it starts, and a file with no
target is how a daemon is kept ready. But at the moment someone checks a file, a
pid that runs nothing or an exe that is not there is usually a typo, and saying so
then saves a night of waiting for records that never come.
"""

from __future__ import annotations

import os

from memdoor.config.problems import ConfigProblem
from memdoor.config.schema import Config
from memdoor.config.toml_text import toml_string


def config_warnings(config: Config, proc: str = "/proc") -> list[ConfigProblem]:
    """One problem per doubtful key, by key path as errors are; empty when none."""
    if not config.targets:
        return [ConfigProblem("", "no [[target]]: the daemon will start and watch nothing")]
    warnings = []
    for index, target in enumerate(config.targets):
        where = f"target[{index}] (name={toml_string(target.name)})"
        if target.pid is not None and not os.path.exists(f"{proc}/{target.pid}"):
            warnings.append(
                ConfigProblem(
                    f"{where}.pid",
                    f"no process {target.pid} is running now; a pid target watches that "
                    "process only, and is not found again under a new pid",
                )
            )
        if target.exe is not None and not os.path.exists(target.exe):
            warnings.append(
                ConfigProblem(f"{where}.exe", "no such file: no process can be running it")
            )
        if target.pidfile is not None:
            directory = os.path.dirname(target.pidfile)
            if not os.path.isdir(directory):
                warnings.append(
                    ConfigProblem(
                        f"{where}.pidfile",
                        f"its directory {directory} does not exist (yet): nothing can be "
                        "found until the service creates it",
                    )
                )
    return warnings
