"""`/probe?module=M&target=URL`: fetch the target on scrape, read it with the module, answer in the text format.

json_exporter's semantics (module `default`, 400 for an unknown module or a missing target, the scrape timeout from
`X-Prometheus-Scrape-Timeout-Seconds`) with its holes closed: targets outside a module's `allowed_targets` get 403,
and a broken upstream is a 200 carrying blackbox_exporter's `probe_success 0` and a reason, not an empty 200.
"""

from __future__ import annotations

import json
import ssl
import time
from base64 import b64encode
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..client import FetchError, FileSecret, client_error, read_capped, ssl_context
from .extract import Extraction, extract, format_value
from .modules import Module

DEFAULT_TIMEOUT = 10.0
TIMEOUT_OFFSET = 0.25  # answer a little before Prometheus gives up, so the failure is still reported


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def exposition(ex: Extraction) -> list[str]:
    """Text-format lines for the extracted families: names exactly as configured (a counter keeps its name)."""
    lines: list[str] = []
    for name in sorted(ex.families):
        family = ex.families[name]
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.type}")
        for s in sorted(family.samples, key=lambda s: s.labels):
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(s.labels))
            ts = f" {s.timestamp_ms}" if s.timestamp_ms is not None else ""
            lines.append(
                f"{name}{{{labels}}} {format_value(s.value)}{ts}" if labels else f"{name} {format_value(s.value)}{ts}"
            )
    return lines


def probe_lines(success: bool, duration: float, status: int, errors: Mapping[str, int], duplicates: int) -> list[str]:
    """blackbox_exporter-style lines about the probe itself."""
    lines = [
        "# HELP probe_success 1 when the target answered JSON and every configured path was read.",
        "# TYPE probe_success gauge",
        f"probe_success {int(success)}",
        "# HELP probe_duration_seconds How long the probe took.",
        "# TYPE probe_duration_seconds gauge",
        f"probe_duration_seconds {duration:.6f}",
        "# HELP probe_http_status_code The target's HTTP status (0 when it did not answer).",
        "# TYPE probe_http_status_code gauge",
        f"probe_http_status_code {status}",
        "# HELP probe_json_errors Problems in this probe by reason (fetch failures and unreadable paths).",
        "# TYPE probe_json_errors gauge",
    ]
    lines += [f'probe_json_errors{{reason="{r}"}} {n}' for r, n in sorted(errors.items())]
    lines += [
        "# HELP probe_json_duplicate_samples Samples dropped because an earlier one had the same name and labels.",
        "# TYPE probe_json_duplicate_samples gauge",
        f"probe_json_duplicate_samples {duplicates}",
    ]
    return lines


class ModuleClient:
    """Per-module request settings built once: TLS context and credential files."""

    def __init__(self, module: Module) -> None:
        self.module = module
        h = module.http
        self._password = FileSecret(h.password_file, "password") if h.password_file else None
        self._credentials = FileSecret(h.credentials_file, "credentials") if h.credentials_file else None
        self._ssl: dict[bool, ssl.SSLContext | bool] = {}

    def ssl_for(self, url: str) -> Any:
        https = url.startswith("https://")
        if https not in self._ssl:
            h = self.module.http
            self._ssl[https] = ssl_context(url, h.ca_file, h.cert_file, h.key_file, h.insecure_skip_verify)
        return self._ssl[https]

    def headers(self) -> dict[str, str]:
        m, h = self.module, self.module.http
        headers = {"Accept": "application/json"} | dict(m.headers)
        if h.username is not None:
            password = self._password.read() if self._password else (h.password or "")
            headers["Authorization"] = "Basic " + b64encode(f"{h.username}:{password}".encode()).decode()
        elif h.credentials is not None or self._credentials is not None:
            token = self._credentials.read() if self._credentials else h.credentials
            headers["Authorization"] = f"{h.auth_type} {token}"
        return headers

    def body(self, query: Mapping[str, str]) -> bytes | None:
        m = self.module
        if m.body is None:
            return None
        text = m.body
        for placeholder, param in m.body_params:
            text = text.replace(placeholder, query.get(param, ""))
        return text.encode()


def scrape_timeout(header: str | None) -> float:
    """Upstream timeout from Prometheus' header, a little under it; 10 s without the header."""
    try:
        value = float(header) if header else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return max(0.1, min(value, 300.0) - TIMEOUT_OFFSET)


async def fetch_document(
    session: aiohttp.ClientSession, mc: ModuleClient, target: str, query: Mapping[str, str], timeout: float,
    max_body: int,
) -> tuple[int, Any]:  # fmt: skip
    """Fetch and decode the target once. Returns (status, document) or raises FetchError."""
    module = mc.module
    body = mc.body(query)
    where = f"{'POST' if body is not None else 'GET'} target"
    status = 0
    try:
        async with session.request(
            "POST" if body is not None else "GET", target, data=body, headers=mc.headers(),
            timeout=aiohttp.ClientTimeout(total=timeout), ssl=mc.ssl_for(target),
            allow_redirects=module.http.follow_redirects,
        ) as resp:  # fmt: skip
            status = resp.status
            ok = status in module.valid_status_codes if module.valid_status_codes else 200 <= status < 300
            if not ok:
                raise FetchError(f"http_{status}", f"{where}: HTTP {status}")
            raw = await read_capped(resp, max_body, where)
            ctype = resp.headers.get("Content-Type", "")
    except FetchError as exc:
        exc.status = status  # type: ignore[attr-defined]
        raise
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise client_error(exc, where, timeout) from None
    try:
        return status, json.loads(raw)
    except ValueError as exc:
        reason = "not_json" if "json" not in ctype.lower() and raw.lstrip()[:1] == b"<" else "invalid_json"
        err = FetchError(reason, f"{where}: {reason.replace('_', ' ')} ({ctype or 'no type'}): {exc}")
        err.status = status  # type: ignore[attr-defined]
        raise err from None


def check_target(target: str | None) -> str:
    """The target URL, or a 400 naming what is wrong."""
    if not target:
        raise web.HTTPBadRequest(text="Target parameter is missing\n")
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise web.HTTPBadRequest(text=f"target: not a valid URL: {target!r}\n") from None
    if parts.username is not None or parts.password is not None:
        raise web.HTTPBadRequest(text="target: credentials in the URL are not accepted\n")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise web.HTTPBadRequest(text=f"target: expected an http(s) URL, got {target!r}\n")
    return target


async def run_probe(
    session: aiohttp.ClientSession, mc: ModuleClient, target: str, query: Mapping[str, str], timeout: float,
    max_body: int,
) -> str:  # fmt: skip
    """One whole probe: fetch once, extract, and render the body (samples plus probe_* lines)."""
    t0 = time.perf_counter()
    errors: dict[str, int] = {}
    status = 0
    ex = Extraction()
    try:
        status, document = await fetch_document(session, mc, target, query, timeout, max_body)
    except FetchError as exc:
        status = getattr(exc, "status", 0)
        errors[exc.reason] = 1
    else:
        ex = extract(mc.module, document, query)
        for e in ex.errors:
            errors[e.reason] = errors.get(e.reason, 0) + 1
    lines = exposition(ex)
    lines += probe_lines(not errors, time.perf_counter() - t0, status, errors, ex.duplicates)
    return "\n".join(lines) + "\n"
