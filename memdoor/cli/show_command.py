"""What `memdoor show` does once parsed: read records, pick what was asked, write it.

Records come from journalctl (run as a child, its JSON read as it comes) or
from JSON-lines files; the views (memdoor.views) turn them into text or a page.
Record lines are written as they are read, so a long journal starts showing at
once; the kill views need every record first.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Optional, TextIO

from memdoor.cli.output import EX_IOERR, discard_unwritten
from memdoor.cli.usage import EX_USAGE
from memdoor.views.console import ConsoleView, wants_colour
from memdoor.views.html_page import html_page
from memdoor.views.kills import KillStory, find_kills
from memdoor.views.postmortem import kill_list, postmortem
from memdoor.views.sources import RecordFilter, RecordReader, journalctl_command
from memdoor.views.when import parse_moment

# sysexits.h
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
PROG = "memdoor show"


class ShowFailed(Exception):
    """Said on stderr as `memdoor show: MESSAGE`, and the command exits with code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _moment(option: str, text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    moment = parse_moment(text, time.time())
    if moment is None:
        raise ShowFailed(
            f"{option} {text!r}: not a time (ISO 8601, HH:MM, now, today, yesterday, or "
            "relative: -90s, -30min, -1h, -2d)",
            EX_USAGE,
        )
    return moment


def _wants_every_event(args: argparse.Namespace) -> bool:
    return bool(args.kills or args.kill is not None or args.html)


class Source:
    """The records the command line asks for, read once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.reader = RecordReader()
        events = [] if _wants_every_event(args) else args.event
        from_files = bool(args.files)
        self.filter = RecordFilter(
            frozenset(args.target),
            frozenset(events),
            _moment("--since", args.since) if from_files else None,
            _moment("--until", args.until) if from_files else None,
        )
        self.events = events

    def records(self) -> Iterator[dict[str, Any]]:
        read = self._files() if self.args.files else self._journal()
        return (record for record in read if self.filter.matches(record))

    def _files(self) -> Iterator[dict[str, Any]]:
        for name in self.args.files:
            if name == "-":
                yield from self.reader.from_json_lines(sys.stdin)
                continue
            try:
                with open(name, encoding="utf-8", errors="replace") as stream:
                    yield from self.reader.from_json_lines(stream)
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    raise
                raise ShowFailed(f"cannot read {name}: {exc.strerror}", EX_NOINPUT) from exc

    def _journal(self) -> Iterator[dict[str, Any]]:
        args = self.args
        argv = journalctl_command(args.target, self.events, args.since, args.until, args.directory)
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise ShowFailed(f"cannot run journalctl: {exc.strerror}", EX_UNAVAILABLE) from exc
        with child:
            assert child.stdout is not None and child.stderr is not None
            try:
                yield from self.reader.from_journal_json(child.stdout)
            finally:
                if child.poll() is None:
                    child.terminate()
            error = child.stderr.read().strip()
        if child.returncode not in (0, -15):
            raise ShowFailed(f"journalctl failed ({child.returncode}): {error}", 1)


def _is_utf8(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    return codecs.lookup(encoding).name == "utf-8"


def _chosen(stories: list[KillStory], number: Optional[int]) -> KillStory:
    if not stories:
        raise ShowFailed("no oom_killed record among the records read", 1)
    if number is None or number == 0:
        return stories[-1]
    if number > len(stories):
        raise ShowFailed(f"there is no kill {number}: the records hold {len(stories)}", 1)
    return stories[number - 1]


def _write_page(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as page:
            page.write(text)
    except OSError as exc:
        raise ShowFailed(f"cannot write {path}: {exc.strerror}", EX_IOERR) from exc


def _kill_views(args: argparse.Namespace, source: Source, out: TextIO) -> None:
    stories = find_kills(source.records())
    if args.kills:
        out.write(kill_list(stories) if stories else "no OOM kills among the records read\n")
    if args.kill is not None or args.html:
        story = _chosen(stories, args.kill)
        if args.html:
            _write_page(args.html, html_page(story, stories))
        if args.kill is not None:
            ascii_only = args.ascii or not _is_utf8(out)
            out.write(("\n" if args.kills else "") + postmortem(story, len(stories), ascii_only))


def _record_lines(args: argparse.Namespace, source: Source, out: TextIO) -> None:
    colour = args.color == "always" or (
        args.color == "auto" and wants_colour(out.isatty(), os.environ)
    )
    view = ConsoleView(colour)
    for record in source.records():
        out.write(view.line(record) + "\n")
        if out.isatty():
            out.flush()


def show_command(args: argparse.Namespace) -> int:
    out = sys.stdout
    # Records hold any text: on a terminal that cannot show a character, an escape.
    if isinstance(out, io.TextIOWrapper):
        out.reconfigure(errors="backslashreplace")
    try:
        source = Source(args)
        if _wants_every_event(args):
            _kill_views(args, source, out)
        else:
            _record_lines(args, source, out)
        out.flush()
    except ShowFailed as failed:
        print(f"{PROG}: {failed}", file=sys.stderr)
        return failed.code
    except OSError as exc:
        discard_unwritten(out)
        if exc.errno == errno.EPIPE:
            return 0
        print(f"{PROG}: cannot write standard output: {exc.strerror}", file=sys.stderr)
        return EX_IOERR
    if source.reader.skipped:
        print(
            f"{PROG}: skipped {source.reader.skipped} lines that are not memdoor records "
            "(damaged, or journal entries in the ECS format)",
            file=sys.stderr,
        )
    return 0
