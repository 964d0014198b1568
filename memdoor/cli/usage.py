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
               [--sort address|rss]
       memdoor run --config <file.toml>
       memdoor check-config <file.toml>
       memdoor demo [--seconds <n>]
       memdoor show [<file>...] [--kills | --kill <n>|latest] [--html <out.html>]
       memdoor --version | --help"""

EX_USAGE = 2


def version_line() -> str:
    return f"memdoor version {__version__}"


def version_and_usage() -> str:
    """What `memdoor` alone (exit 2) and `memdoor --help` (exit 0) print, as the seed did."""
    return f"{version_line()}\n{USAGE}\n"
