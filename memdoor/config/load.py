"""Read, decode, parse and validate the config file, or raise ConfigError.

Whatever the file holds, the outcome is a Config or a ConfigError: the file is
written by an operator, and a traceback would tell them nothing about their file.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Union

from pydantic import ValidationError

from memdoor.collect.reading import Unreadable, read_bytes
from memdoor.config.problems import ConfigError, validation_problems, whole_file_problem
from memdoor.config.schema import Config
from memdoor.config.toml_text import shorten

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# sysexits.h: the exit status that tells systemd (RestartPreventExitStatus=) and
# scripts that restarting will not help until someone fixes the file.
EX_CONFIG = 78

# The parser and the validator recurse once per level of nesting, so a file nested a
# few hundred levels deep exhausts Python's stack in either.
_TOO_DEEP = "arrays or tables nested too deeply"
# How much of an unforeseen exception's message a problem quotes.
_MESSAGE_LIMIT = 200


def load_config(path: Union[str, os.PathLike[str]]) -> Config:
    name = os.fspath(path)
    data = read_bytes(name)
    if isinstance(data, Unreadable):
        raise whole_file_problem(name, f"cannot read the file: {data.detail}")
    return parse_config(data, name)


def parse_config(data: bytes, path: str) -> Config:
    """Decode, parse and validate; `path` only labels the problems."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        reason = f"not valid UTF-8: byte 0x{data[exc.start]:02x} at line {line}, column {column}"
        raise whole_file_problem(path, reason) from None
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        raise whole_file_problem(path, f"not valid TOML: {_TOO_DEEP}") from None
    except ValueError as exc:
        # TOMLDecodeError, and int()'s refusal of an integer longer than
        # sys.get_int_max_str_digits() digits (Python 3.11, and security releases
        # of older versions).
        message = shorten(str(exc), _MESSAGE_LIMIT)
        raise whole_file_problem(path, f"not valid TOML: {message}") from None
    try:
        return _validate(raw, path)
    except RecursionError:
        raise whole_file_problem(path, _TOO_DEEP) from None
    except ValueError as exc:
        # Nothing known raises it once the file parsed; should a value still defeat
        # the checks, the operator gets a line about the file instead of a traceback.
        raise whole_file_problem(path, shorten(str(exc), _MESSAGE_LIMIT)) from None


def _validate(raw: dict[str, Any], path: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, validation_problems(exc, raw)) from None
