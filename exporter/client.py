"""Fetch one Horizon's `/api/stats`, `/api/workload` and `/api/masters` concurrently over a shared session.

A body identical to the endpoint's previous one (same digest) is not decoded again: its parsed value is reused,
and when all three are, so is the whole `HorizonReading` object (the poller then skips mapping). `/api/stats`
feeds no scaling decision and is fetched only every `stats_interval` seconds. Every failure becomes a
`FetchError` with a short `reason` (the `reason` label of the errors metric) and a message naming the endpoint;
secrets (headers, tokens, passwords) never appear in either.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from yarl import URL

from .config import TargetConfig, redact_url
from .gcpause import gc_paused, release_memory
from .horizon import HorizonReading, SchemaError, parse_masters, parse_stats, parse_workload
from .http import AuthHeader, Authorization, FetchError, client_error, read_capped
from .tls import TLSFileError, load_tls

ENDPOINTS = ("stats", "workload", "masters")
_LARGE_BODY = 1 << 20  # decoding this much leaves megabytes of freed heap worth returning to the system
_PARSERS = {"stats": parse_stats, "workload": parse_workload, "masters": parse_masters}


class TargetClient:
    """Polls one target; holds its TLS context and credential files for the life of the process.

    The TLS context is built at the first fetch and, while its files do not load, retried at every fetch as a
    `FetchError("tls")`: the target shows the problem on its metrics instead of never polling.
    """

    def __init__(
        self,
        target: TargetConfig,
        session: aiohttp.ClientSession,
        max_body_bytes: int,
        *,
        stats_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.stats_interval = stats_interval
        self._clock = clock
        self._stats_at: float | None = None
        # Per endpoint: digest of the last body and what it parsed to (bounded: three entries).
        self._parsed: dict[str, tuple[bytes, Any]] = {}
        self._last: HorizonReading | None = None
        self.decoded = 0  # bodies decoded (not reused); read by tests
        self._session = session
        self._max_body = max_body_bytes
        # Parsed once: building a URL from a string on every GET is a measurable share of a poll.
        self._urls = {e: URL(f"{target.url}/api/{e}") for e in ENDPOINTS}
        self._ssl: ssl.SSLContext | bool | None = True if target.url.startswith("http://") else None
        self._timeout = aiohttp.ClientTimeout(total=target.timeout)
        bearer = Authorization(credentials_file=target.bearer_token_file) if target.bearer_token_file else None
        self._auth = AuthHeader(target.basic_auth, bearer)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "horizon-keda-exporter"}
        headers.update(self.target.headers)
        authorization = self._auth.value()
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    def _tls(self) -> ssl.SSLContext | bool:
        if self._ssl is None:
            try:
                self._ssl = load_tls(self.target.tls)
            except TLSFileError as exc:
                raise FetchError("tls", f"tls.{exc.key}: {exc}") from None
        return self._ssl

    def forget(self) -> None:
        """Drop what the last polls parsed (after a failure): the next poll fetches and decodes everything."""
        self._parsed.clear()
        self._last = None
        self._stats_at = None

    async def fetch(self) -> HorizonReading:
        """Fetch and parse the endpoints due; raise `FetchError` on the first failure in endpoint order."""
        self._tls()
        headers = self._headers()
        now = self._clock()
        stats_due = self._stats_at is None or "stats" not in self._parsed or now - self._stats_at >= self.stats_interval
        endpoints = ENDPOINTS if stats_due else ENDPOINTS[1:]
        results = await asyncio.gather(
            *(self._get_parsed(endpoint, headers) for endpoint in endpoints), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            del results
            if not isinstance(failure, FetchError | asyncio.CancelledError):
                failure = FetchError("internal", f"unexpected {type(failure).__name__}: {failure}")
            try:
                raise failure
            finally:
                # The traceback holds this frame: no local may hold the exception, or every failed poll leaves a
                # reference cycle (frames, responses) for the rarely running collector instead of freeing it now.
                del failure
        if stats_due:
            self._stats_at = now
        stats, workload, masters = (self._parsed[e][1] for e in ENDPOINTS)
        last = self._last
        if last is not None and last.stats is stats and last.workload is workload and last.masters is masters:
            return last
        self._last = HorizonReading(stats=stats, workload=workload, masters=masters)
        return self._last

    async def _get_parsed(self, endpoint: str, headers: dict[str, str]) -> None:
        body = await self._get_body(endpoint, headers)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        cached = self._parsed.get(endpoint)
        if cached is not None and cached[0] == digest:
            return
        where = f"GET /api/{endpoint}"
        large = len(body) >= _LARGE_BODY
        with gc_paused():
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise FetchError("invalid_json", f"{where}: invalid JSON: {exc}") from None
            except RecursionError:
                raise FetchError("invalid_json", f"{where}: invalid JSON: nested too deeply to decode") from None
            del body
            try:
                parsed = _PARSERS[endpoint](decoded)
            except SchemaError as exc:
                raise FetchError("schema", str(exc)) from None
            del decoded
        if large:
            release_memory()
        self.decoded += 1
        self._parsed[endpoint] = (digest, parsed)

    async def _get_body(self, endpoint: str, headers: dict[str, str]) -> bytes:
        url = self._urls[endpoint]
        where = f"GET /api/{endpoint}"
        try:
            async with self._session.get(
                url, headers=headers, timeout=self._timeout, ssl=self._tls(), allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    hint = ""
                    if 300 <= resp.status < 400:
                        location = redact_url(resp.headers.get("Location", "?"))
                        hint = f" (redirect to {location:.120}: a login page?)"
                    elif resp.status in (401, 403):
                        hint = " (Horizon's dashboard authorization refused the exporter)"
                    raise FetchError(f"http_{resp.status}", f"{where}: HTTP {resp.status}{hint}")
                ctype = resp.headers.get("Content-Type", "")
                if "json" not in ctype.lower():
                    # Horizon's catch-all route answers unknown paths and login pages with HTML and 200.
                    raise FetchError("not_json", f"{where}: expected application/json, got {ctype or 'no type'!r}")
                return await read_capped(resp, self._max_body, where)
        except FetchError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            error = client_error(exc, where, self.target.timeout)
        # Raised outside the except, so aiohttp's exception and its frames are not kept as the context; and, as in
        # fetch, no local of this frame holds it once it is on its way.
        try:
            raise error
        finally:
            del error
