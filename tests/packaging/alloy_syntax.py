"""A strict reader for the part of Grafana Alloy's configuration syntax the recipe uses.

There is no Alloy parser for Python, and Alloy itself cannot be installed here.
This one follows the syntax reference (grafana/alloy docs/sources/get-started/
syntax.md and expressions/types_and_values.md): blocks `name.name "label" { }`,
attributes `name = value`, one statement per line, `//` and `/* */` comments,
strings, numbers, booleans, null, arrays and objects with commas (a trailing
comma when the closing bracket is on its own line), and references to other
components' exports such as `loki.relabel.memdoor.rules`. Anything else is an
error, so a typo in the recipe fails its test instead of Alloy's startup.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r]+)
  | (?P<newline>\n)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]=,.])
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = {"true": True, "false": False, "null": None}


class AlloySyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Reference:
    """A dotted reference to another component's export, e.g. loki.write.default.receiver."""

    path: str


Value = Union[str, float, bool, None, list[Any], dict[str, Any], Reference]


@dataclass
class Block:
    name: str
    label: Optional[str]
    attributes: dict[str, Value] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)

    def block(self, name: str, label: Optional[str] = None) -> Block:
        found = [b for b in self.blocks if b.name == name and (label is None or b.label == label)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} blocks {name} {label or ''} in {self.name}")
        return found[0]


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int


def _tokens(text: str) -> list[_Token]:
    found, line, position = [], 1, 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise AlloySyntaxError(f"line {line}: unexpected {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        if kind in ("string", "number", "name", "punct"):
            found.append(_Token(kind, match.group(), line))
        line += match.group().count("\n")
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self, offset: int = 0) -> Optional[_Token]:
        index = self.at + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, kind: str, text: Optional[str] = None) -> _Token:
        token = self.peek()
        if token is None or token.kind != kind or (text is not None and token.text != text):
            where = f"line {token.line}: {token.text!r}" if token else "end of file"
            raise AlloySyntaxError(f"{where}: expected {text or kind}")
        self.at += 1
        return token

    def at_text(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.text == text

    def at_kind(self, kind: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == kind

    def dotted_name(self) -> str:
        parts = [self.take("name").text]
        while self.at_text("."):
            self.take("punct", ".")
            parts.append(self.take("name").text)
        return ".".join(parts)

    def body(self, block: Block, closing: Optional[str]) -> None:
        last_line = 0
        while True:
            token = self.peek()
            if token is None or token.text == closing:
                if closing is not None:
                    self.take("punct", closing)
                return
            if token.line == last_line:
                raise AlloySyntaxError(f"line {token.line}: one statement per line")
            start = token.line
            name = self.dotted_name()
            if self.at_text("="):
                if "." in name:
                    raise AlloySyntaxError(f"line {start}: attribute name {name!r} has a dot")
                self.take("punct", "=")
                if name in block.attributes:
                    raise AlloySyntaxError(f"line {start}: {name} set twice")
                block.attributes[name] = self.value()
            else:
                label = json.loads(self.take("string").text) if self.at_kind("string") else None
                self.take("punct", "{")
                child = Block(name, label)
                self.body(child, "}")
                block.blocks.append(child)
            last_line = self.tokens[self.at - 1].line

    def sequence(self, closing: str, item: Any) -> None:
        """Comma-separated items; a trailing comma is required before a closing bracket
        on a later line, and allowed otherwise."""
        while True:
            if self.at_text(closing):
                self.take("punct", closing)
                return
            item()
            if self.at_text(","):
                self.take("punct", ",")
                continue
            end = self.take("punct", closing)
            if end.line != self.tokens[self.at - 2].line:
                raise AlloySyntaxError(f"line {end.line}: comma needed before {closing}")
            return

    def value(self) -> Value:
        token = self.peek()
        if token is None:
            raise AlloySyntaxError("end of file: expected a value")
        if token.kind == "string":
            text: str = json.loads(self.take("string").text)
            return text
        if token.kind == "number":
            return float(self.take("number").text)
        if token.text == "[":
            self.take("punct", "[")
            items: list[Any] = []
            self.sequence("]", lambda: items.append(self.value()))
            return items
        if token.text == "{":
            self.take("punct", "{")
            entries: dict[str, Any] = {}

            def entry() -> None:
                if self.at_kind("string"):
                    name = json.loads(self.take("string").text)
                else:
                    name = self.take("name").text
                self.take("punct", "=")
                entries[name] = self.value()

            self.sequence("}", entry)
            return entries
        if token.kind == "name" and token.text in _KEYWORDS:
            self.take("name")
            return _KEYWORDS[token.text]
        if token.kind == "name":
            return Reference(self.dotted_name())
        raise AlloySyntaxError(f"line {token.line}: unexpected {token.text!r}")


def parse_alloy(text: str) -> Block:
    """The file as a root block whose blocks are its components."""
    root = Block("", None)
    _Parser(text).body(root, None)
    return root
