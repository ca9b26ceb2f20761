"""Which URLs a module may probe: `allowed_targets` rules compared on normalised URLs, never on raw text (pure).

A target is normalised once (scheme and host lower-cased, default port dropped, `..`/`%2e%2e` segments resolved,
fragment removed) and that same URL is both checked and fetched, so `https://api/ok/../admin` cannot pass a
`https://api/ok/*` rule and then reach `/admin`. Prefix rules must name an origin (`scheme://host[:port]/`), and
host and port are compared exactly, so `https://api.internal*` cannot admit `https://api.internal.evil.example`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yarl import URL

_ENCODED_SEPARATOR = re.compile(r"%2f|%5c", re.I)


class TargetError(ValueError):
    """A target or rule that is not an acceptable http(s) URL; the message says why."""


def normalise(text: str) -> URL:
    """The URL that will be checked and fetched, or `TargetError` saying what is wrong with `text`."""
    try:
        url = URL(text)
        url.port  # noqa: B018 - raises ValueError on a malformed port
        host = url.host  # raises UnicodeError (a ValueError) on a malformed IDNA label
    except (ValueError, TypeError) as exc:
        raise TargetError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not host:
        raise TargetError("expected an http(s) URL with a host")
    if url.user is not None or url.password is not None:
        raise TargetError("credentials in the URL are not accepted")
    # Java servers read `..;x` as `..`: such a segment would walk out of a prefix after the check.
    if any(seg.split(";", 1)[0] in ("..", ".") for seg in url.raw_path.split("/") if ";" in seg):
        raise TargetError("a path segment '..;' or '.;' is not accepted")
    return url.with_fragment(None)


@dataclass(frozen=True, slots=True)
class Rule:
    """One `allowed_targets` entry: `exact` URL, `prefix` (origin plus path prefix), `regex`, or `any` (`*`)."""

    kind: str
    text: str
    scheme: str = ""
    host: str = ""
    port: int | None = None
    path_prefix: str = ""
    pattern: re.Pattern[str] | None = None

    def admits(self, url: URL) -> bool:
        """Whether the normalised `url` is allowed by this rule."""
        if self.kind == "any":
            return True
        if self.kind == "regex":
            assert self.pattern is not None
            # An encoded / or \ could be decoded by the upstream into a path the regex did not mean to allow.
            return self.pattern.fullmatch(str(url)) is not None and not _ENCODED_SEPARATOR.search(url.raw_path)
        if self.kind == "exact":
            return str(url) == self.text
        if (url.scheme, url.host, url.port) != (self.scheme, self.host, self.port):
            return False
        rest = url.raw_path_qs
        # An encoded / or \ after the prefix could be decoded by the upstream into a path outside it.
        return rest.startswith(self.path_prefix) and not _ENCODED_SEPARATOR.search(rest[len(self.path_prefix) :])


def parse_rule(text: str) -> Rule:
    """Compile one entry; `TargetError` for a regex that does not compile or a prefix without an origin."""
    if text == "*":  # any http(s) URL: json_exporter's behaviour, asked for explicitly
        return Rule("any", text)
    if text.startswith("~"):
        try:
            return Rule("regex", text, pattern=re.compile(text[1:]))
        except re.error as exc:
            raise TargetError(f"invalid regular expression: {exc}") from None
    if text.endswith("*"):
        head = text[:-1]
        if not re.match(r"^https?://[^/?#]+/", head, re.I):
            raise TargetError(
                f"a prefix must start with scheme://host[:port]/ so the host is compared whole, got {text!r}"
            )
        url = normalise(head)
        if url.query_string:
            raise TargetError(f"a prefix ends in the path, got a query in {text!r}")
        path = url.raw_path + ("/" if head.endswith("/") and not url.raw_path.endswith("/") else "")
        return Rule("prefix", text, scheme=url.scheme, host=url.host or "", port=url.port, path_prefix=path)
    return Rule("exact", str(normalise(text)))


def allowed(rules: tuple[Rule, ...], url: URL) -> bool:
    """Whether a rule admits `url`; no rules admit nothing (closed by default)."""
    return any(rule.admits(url) for rule in rules)
