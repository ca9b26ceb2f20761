"""Templates in json_exporter's Kubernetes JSONPath dialect (`planet-{.location}`), compiled for jsonpath-ng.

A template is literal text with `{expr}` parts. `expr` is k8s JSONPath (`.a.b`, `[*]`, `[?(@.state == "ACTIVE")]`,
`..x`, `['k']`) or jsonpath-ng's own `$…`, plus extensions json_exporter lacks: `{@key}` (the element's key in
its parent object or array), `{@}`/`{@value}` (the element itself), `{^.name}` (`^` climbs one JSON level from the
element per caret), `.length()` (array/object length), `.sum()` and `.count()` (over all matches), and
`{{ .param | first }}` (a query parameter of the probe, as json_exporter's body templates write it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonpath_ng import DatumInContext, Fields, Index
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as jsonpath_parse


class PathError(ValueError):
    """A template that cannot be compiled; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Expr:
    """One `{…}` part: a compiled path, how many levels to climb first, or the element's key."""

    source: str
    path: Any | None  # a jsonpath-ng expression, or None for `@key`
    up: int = 0
    iterates: bool = False  # wildcard, filter, slice or recursive descent: an empty result is no error
    aggregate: str | None = None  # "sum" or "count" over all matches
    param: str | None = None  # a probe query parameter instead of a path
    fields: tuple[str, ...] | None = None  # a plain `.a.b` chain: read with dict lookups, not jsonpath-ng

    def values(self, datum: DatumInContext, params: Mapping[str, str] | None = None) -> list[Any]:
        """The matched JSON values (the hot path of labels and values: no match objects for plain fields)."""
        if self.fields is not None and not self.up:
            value = datum.value
            for name in self.fields:
                if not isinstance(value, dict) or name not in value:
                    return []
                value = value[name]
            return [value]
        return [m.value for m in self.find(datum, params)]

    def find(self, datum: DatumInContext, params: Mapping[str, str] | None = None) -> list[DatumInContext]:
        """Matches of this expression against `datum` (an element or the document root)."""
        if self.param is not None:
            return [DatumInContext((params or {}).get(self.param, ""))]
        if self.aggregate is not None:
            matches = self._find(datum)
            if self.aggregate == "count":
                return [DatumInContext(len(matches))]
            return [DatumInContext(sum(to_number(m.value) for m in matches))]
        return self._find(datum)

    def _find(self, datum: DatumInContext) -> list[DatumInContext]:
        for _ in range(self.up):
            if datum.context is None:
                return []
            datum = datum.context
        if self.path is None:
            key = _key_of(datum)
            return [] if key is None else [DatumInContext(key)]
        return self.path.find(datum.value)


def _key_of(datum: DatumInContext) -> str | None:
    path = datum.path
    if isinstance(path, Fields) and len(path.fields) == 1:
        return str(path.fields[0])
    if isinstance(path, Index):
        return str(path.index)
    return None


@dataclass(frozen=True, slots=True)
class Template:
    """Literal text and expressions; `static` templates have no expression at all."""

    source: str
    parts: tuple[str | Expr, ...]
    static: bool = False
    single: Expr | None = None  # the expression when the template is exactly one `{…}`


def _template(source: str, parts: tuple[str | Expr, ...]) -> Template:
    # Computed once here: labels and values read these for every element of every probe.
    single = parts[0] if len(parts) == 1 and isinstance(parts[0], Expr) else None
    return Template(source, parts, all(isinstance(p, str) for p in parts), single)


_LENGTH = re.compile(r"\.length\(\)$")
_AGGREGATE = re.compile(r"\.(sum|count)\(\)$")
_PLAIN = re.compile(r"^\$((\.[A-Za-z_][A-Za-z0-9_-]*)|(\['[^'\]]*'\]))+$")
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^'\]]*)'\]")
_PARAM = re.compile(r"^\{\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\|\s*first\s*\}$")
_ITERATES = re.compile(r"\*|\?\(|\[\?|\.\.|\[[^\]'\"]*:[^\]'\"]*\]|,")


def compile_expr(text: str) -> Expr:
    """Compile one expression (without braces)."""
    expr = text.strip()
    if expr.startswith("range") or expr == "end":
        raise PathError(f"{{{expr}}}: range/end blocks are not supported; use [*] and type: object")
    up = len(expr) - len(expr.lstrip("^"))
    expr = expr[up:]
    if expr in ("@key",):
        return Expr(text, None, up)
    param = _PARAM.match(expr)
    if param is not None:
        return Expr(text, None, param=param.group(1))
    aggregate = _AGGREGATE.search(expr)
    if aggregate is not None:
        inner = compile_expr("^" * up + expr[: aggregate.start()])
        return Expr(text, inner.path, up, iterates=False, aggregate=aggregate.group(1))
    if expr in ("@", "@value", "", "$"):
        expr = "$"
    expr = _LENGTH.sub(".`len`", expr)
    if expr.startswith("@"):
        expr = "$" + expr[1:]
    elif expr.startswith((".", "[")):
        expr = "$" + expr
    elif not expr.startswith("$"):
        expr = "$." + expr
    try:
        compiled = jsonpath_parse(expr)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # jsonpath-ng raises plain Exception too
        raise PathError(f"{{{text.strip()}}}: not a JSONPath expression ({exc})") from None
    fields = None
    if _PLAIN.match(expr):
        fields = tuple(a or b for a, b in _FIELD.findall(expr))
    return Expr(text, compiled, up, bool(_ITERATES.search(expr)), fields=fields)


def compile_template(text: str) -> Template:
    """Split `text` into literal parts and compiled `{…}` expressions."""
    parts: list[str | Expr] = []
    i = 0
    while i < len(text):
        start = text.find("{", i)
        if start < 0:
            parts.append(text[i:])
            break
        if start > i:
            parts.append(text[i:start])
        end = _closing_brace(text, start)
        parts.append(compile_expr(text[start + 1 : end]))
        i = end + 1
    return _template(text, tuple(p for p in parts if p != ""))


def _closing_brace(text: str, start: int) -> int:
    depth, quote = 0, ""
    for j in range(start, len(text)):
        ch = text[j]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j
    raise PathError(f"{text!r}: unbalanced braces")


def to_text(value: Any) -> str:
    """Print a JSON value as json_exporter does for labels: strings bare, booleans lowercase, null as <nil>."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


class Missing(LookupError):
    """A path that matched nothing where something was required."""


def render(template: Template, datum: DatumInContext, params: Mapping[str, str] | None = None) -> str:
    """Evaluate a template to text; several matches are joined by spaces, as k8s JSONPath prints them."""
    single = template.single
    if single is not None:
        matches = single.values(datum, params)
        if len(matches) == 1:
            return to_text(matches[0])
    out = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        matches = part.values(datum, params)
        if not matches and not part.iterates:
            raise Missing(f"{part.source.strip()} is not found")
        out.append(to_text(matches[0]) if len(matches) == 1 else " ".join(to_text(m) for m in matches))
    return "".join(out)


_BOOLS = {"1": 1.0, "t": 1.0, "T": 1.0, "TRUE": 1.0, "true": 1.0, "True": 1.0,
          "0": 0.0, "f": 0.0, "F": 0.0, "FALSE": 0.0, "false": 0.0, "False": 0.0}  # fmt: skip


def to_number(value: Any, value_map: Mapping[str, float] | None = None) -> float:
    """json_exporter's SanitizeValue: float, else bool, else null → NaN; a `value_map` is tried first."""
    if value_map is not None:
        key = to_text(value)
        if key in value_map:
            return value_map[key]
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer literal beyond a float's range
            raise ValueError(f"{to_text(value)[:30]}… is too large for a number") from None
    if value is None:
        return math.nan
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            if value in _BOOLS:
                return _BOOLS[value]
            if value == "<nil>":
                return math.nan
    # Never the text itself: the upstream may echo the module's credentials back where a number belongs.
    if isinstance(value, str):
        shown = f"a string of {len(value)} character{'' if len(value) == 1 else 's'}"
    else:
        shown = "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else "a value"
    raise ValueError(f"cannot convert {shown} to a number")


def value_of(template: Template, datum: DatumInContext, params: Mapping[str, str] | None = None) -> Any:
    """The raw JSON value of a single-expression template, or the rendered text of a mixed one."""
    expr = template.single
    if expr is None:
        return render(template, datum, params)
    matches = expr.values(datum, params)
    if not matches:
        raise Missing(f"{expr.source.strip()} is not found")
    if len(matches) > 1:
        return " ".join(to_text(m) for m in matches)
    return matches[0]
