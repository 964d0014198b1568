"""The usage text, shared by the no-argument call, --help and usage errors."""

from __future__ import annotations

from memdoor import __version__

USAGE = """\
usage: memdoor -p|--pid <target process id>
               -e|--exename <full path of target process>
               -m|--memory-pressure-threshold <percentage integer>
               -i|--interval <second(s)>
               [-c|--count <count(s)>]
               [--format text|json]
       memdoor run --config <file.toml>
       memdoor check-config <file.toml>
       memdoor demo [--seconds <n>]
       memdoor --version | --help"""

EX_USAGE = 2


def version_line() -> str:
    return f"memdoor version {__version__}"
