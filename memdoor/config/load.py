"""Read, decode, parse and validate the config file, or raise ConfigError."""

from __future__ import annotations

import os
import sys
from typing import Any, Union

from pydantic import ValidationError

from memdoor.collect.reading import Unreadable, read_bytes
from memdoor.config.problems import ConfigError, validation_problems, whole_file_problem
from memdoor.config.schema import Config

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# sysexits.h: the exit status that tells systemd (RestartPreventExitStatus=) and
# scripts that restarting will not help until someone fixes the file.
EX_CONFIG = 78


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
    except tomllib.TOMLDecodeError as exc:
        raise whole_file_problem(path, f"not valid TOML: {exc}") from None
    return _validate(raw, path)


def _validate(raw: dict[str, Any], path: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, validation_problems(exc, raw)) from None
