"""`/probe?module=M&target=URL`: fetch the target on scrape, read it with the module, answer in the text format.

json_exporter's semantics (module `default`, 400 for an unknown module or a missing target, the scrape timeout from
`X-Prometheus-Scrape-Timeout-Seconds`) with its holes closed: targets outside a module's `allowed_targets` get 403,
and a broken upstream is a 200 carrying blackbox_exporter's `probe_success 0` and a reason, not an empty 200.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import Any, NoReturn

import aiohttp
from aiohttp import web
from yarl import URL

from ..http import AuthHeader, FetchError, client_error, read_capped
from ..tls import TLSFileError, load_tls
from .extract import Extraction, extract, format_value
from .modules import Module
from .targets import TargetError, normalise

log = logging.getLogger("horizon_keda.probe")

DEFAULT_TIMEOUT = 10.0
TIMEOUT_OFFSET = 0.25  # answer a little before Prometheus gives up, so the failure is still reported
MAX_REDIRECTS = 10  # as Go's http.Client, which json_exporter uses
_REDIRECTS = (301, 302, 303, 307, 308)


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
        self._auth = AuthHeader(module.http.basic_auth, module.http.authorization)
        self._ssl: ssl.SSLContext | None = None

    def ssl_for(self, url: URL) -> Any:
        """The TLS context for https (custom CA, client certificate, minimum version); `True` for http.

        Built at the first https probe; a file that stopped loading since the config was read is `FetchError(tls)`.
        """
        if url.scheme != "https":
            return True
        if self._ssl is None:
            try:
                self._ssl = load_tls(self.module.http.tls)
            except TLSFileError as exc:
                raise FetchError("tls", f"tls_config.{exc.key}: {exc}") from None
        return self._ssl

    def server_hostname(self, url: URL) -> str | None:
        """`tls_config.server_name`: the name sent in SNI and verified in the certificate, for https only."""
        return self.module.http.tls.server_name if url.scheme == "https" else None

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"} | dict(self.module.headers)
        authorization = self._auth.value()
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    def body(self, query: Mapping[str, str]) -> bytes | None:
        m = self.module
        if m.body is None:
            return None
        text = m.body
        for placeholder, param in m.body_params:
            text = text.replace(placeholder, query.get(param, ""))
        return text.encode()


def scrape_timeout(header: str | None, cap: float = 300.0) -> float:
    """Upstream timeout from Prometheus' header, a little under it and at most `cap`; 10 s without the header."""
    try:
        value = float(header) if header else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    if value != value:  # NaN
        value = DEFAULT_TIMEOUT
    return max(0.1, min(value - TIMEOUT_OFFSET, cap))


def check_target(target: str | None) -> URL:
    """The normalised target URL (the one checked and fetched), or a 400 naming what is wrong."""
    if not target:
        raise web.HTTPBadRequest(text="Target parameter is missing\n")
    try:
        return normalise(target)
    except TargetError as exc:
        raise web.HTTPBadRequest(text=f"target: {exc}\n") from None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def decode(raw: bytes, ctype: str, where: str) -> Any:
    """The JSON document, or FetchError: not_json (HTML), invalid_json (also NaN/Infinity literals and nesting too
    deep for the decoder)."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = "not_json" if "json" not in ctype.lower() and raw.lstrip()[:1] == b"<" else "invalid_json"
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise FetchError(reason, f"{where}: {reason.replace('_', ' ')} ({ctype or 'no type'}): {detail}") from None


def read_document(mc: ModuleClient, raw: bytes, ctype: str, where: str, query: Mapping[str, str]) -> tuple[
    list[str], Extraction, dict[str, int], list[str]
]:  # fmt: skip
    """The CPU half of a probe, run off the event loop: decode once, extract, render the samples.

    Returns (sample lines, extraction, error counts by reason, messages). Never raises for a hostile document: a
    failure the extractor did not foresee is reason `internal`, logged, not a 500.
    """
    try:
        document = decode(raw, ctype, where)
    except FetchError as exc:
        return [], Extraction(), {exc.reason: 1}, [str(exc)]
    try:
        ex = extract(mc.module, document, query)
        lines = exposition(ex)
    except RecursionError:
        return [], Extraction(), {"too_deep": 1}, [f"{where}: the document is nested too deeply for the paths"]
    except Exception as exc:  # last line of defence: the probe reports it, the server stays up
        log.exception("module %s: extraction failed", mc.module.name)
        return [], Extraction(), {"internal": 1}, [f"{where}: {type(exc).__name__}: {exc}"]
    return lines, ex, dict(ex.errors.counts), [e.message for e in ex.errors]


class Prober:
    """Runs probes: its own HTTP session, at most `concurrency` at once, CPU work on `executor`."""

    def __init__(
        self, session: aiohttp.ClientSession, executor: Executor, *, concurrency: int, max_body: int,
        max_timeout: float,
    ) -> None:  # fmt: skip
        self.session = session
        self.executor = executor
        self.max_body = max_body
        self.max_timeout = max_timeout
        self._slots = asyncio.Semaphore(concurrency)

    async def probe(self, mc: ModuleClient, target: URL, query: Mapping[str, str], timeout: float) -> bytes:
        """One whole probe: fetch once, read it off the loop, and render the body (samples plus probe_* lines)."""
        t0 = time.perf_counter()
        status, lines, ex = 0, [], Extraction()
        errors: dict[str, int] = {}
        messages: list[str] = []
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            errors["busy"] = 1
            messages.append(f"no probe slot free within {timeout:g}s: too many probes in flight")
        else:
            try:
                status, raw, ctype, where = await self._fetch(mc, target, query, t0 + timeout - time.perf_counter())
                loop = asyncio.get_running_loop()
                work = loop.run_in_executor(self.executor, read_document, mc, raw, ctype, where, query)
                try:
                    async with asyncio.timeout(max(0.0, t0 + timeout - time.perf_counter())):
                        lines, ex, errors, messages = await work
                except TimeoutError:
                    # The worker finishes on its own; the answer (and the slot) does not wait for it.
                    raise FetchError("timeout", f"{where}: reading the body took longer than {timeout:g}s") from None
            except FetchError as exc:
                status = getattr(exc, "status", 0)
                errors[exc.reason] = 1
                messages.append(str(exc))
            finally:
                self._slots.release()
        if messages:
            log.info("probe module=%s target=%s: %s", mc.module.name, target.origin(), "; ".join(messages[:5]))
        lines += probe_lines(not errors, time.perf_counter() - t0, status, errors, ex.duplicates)
        # A lone surrogate from the upstream's JSON cannot be UTF-8: replaced, never a 500.
        return ("\n".join(lines) + "\n").encode("utf-8", "replace")

    async def _fetch(
        self, mc: ModuleClient, url: URL, query: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes, str, str]:
        """Fetch the target once, following redirects by hand so every hop is checked against allowed_targets.

        Returns (status, body, content type, what was fetched) or raises FetchError.
        """
        module = mc.module
        body = mc.body(query)
        method = "POST" if body is not None else "GET"
        headers = mc.headers()
        status = 0
        where = f"{method} target"
        try:
            async with asyncio.timeout(timeout):
                for _hop in range(MAX_REDIRECTS + 1):
                    async with self.session.request(
                        method, url, data=body, headers=headers, ssl=mc.ssl_for(url),
                        server_hostname=mc.server_hostname(url), allow_redirects=False,
                    ) as resp:  # fmt: skip
                        status = resp.status
                        if status in _REDIRECTS and module.http.follow_redirects:
                            url = _next_hop(module, url, resp.headers.get("Location"), where)
                            if status in (301, 302, 303) and method == "POST":
                                method, body = "GET", None  # as Go's client does
                            where = f"{method} target (after redirect)"
                            continue
                        ok = status in module.valid_status_codes if module.valid_status_codes else 200 <= status < 300
                        if not ok:
                            raise FetchError(f"http_{status}", f"{where}: HTTP {status}")
                        raw = await read_capped(resp, self.max_body, where)
                        return status, raw, resp.headers.get("Content-Type", ""), where
                raise FetchError("too_many_redirects", f"{where}: more than {MAX_REDIRECTS} redirects")
        except FetchError as exc:
            exc.status = status  # type: ignore[attr-defined]
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            err = client_error(exc, where, timeout)
            err.status = status  # type: ignore[attr-defined]
            raise err from None


def _next_hop(module: Module, url: URL, location: str | None, where: str) -> URL:
    """The redirect's target, if it is a URL this module may fetch (its allowed_targets apply to every hop)."""
    if not location:
        raise FetchError("bad_redirect", f"{where}: redirect without a Location")
    try:
        hop = normalise(str(url.join(URL(location))))
    except (TargetError, ValueError) as exc:
        raise FetchError("bad_redirect", f"{where}: redirect to an unusable Location: {exc}") from None
    if not module.target_allowed(hop):
        raise FetchError("redirect_not_allowed", f"{where}: redirect to {hop.origin()}{hop.path} is outside "
                         "the module's allowed_targets")  # fmt: skip
    return hop
