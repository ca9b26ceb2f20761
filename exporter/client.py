"""Fetch one Horizon's `/api/stats`, `/api/workload` and `/api/masters` concurrently over a shared session.

Every failure becomes a `FetchError` with a short `reason` (the `reason` label of the errors metric) and a message
naming the endpoint; secrets (headers, tokens, passwords) never appear in either.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp

from .config import TargetConfig, redact_url
from .horizon import HorizonReading, SchemaError, parse_reading
from .http import AuthHeader, Authorization, FetchError, client_error, read_capped
from .tls import TLSFileError, load_tls

ENDPOINTS = ("stats", "workload", "masters")


class TargetClient:
    """Polls one target; holds its TLS context and credential files for the life of the process.

    The TLS context is built at the first fetch and, while its files do not load, retried at every fetch as a
    `FetchError("tls")`: the target shows the problem on its metrics instead of never polling.
    """

    def __init__(self, target: TargetConfig, session: aiohttp.ClientSession, max_body_bytes: int) -> None:
        self.target = target
        self._session = session
        self._max_body = max_body_bytes
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

    async def fetch(self) -> HorizonReading:
        """Fetch and parse the three endpoints; raise `FetchError` on the first failure in endpoint order."""
        self._tls()
        headers = self._headers()
        results = await asyncio.gather(
            *(self._get_json(endpoint, headers) for endpoint in ENDPOINTS), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, FetchError | asyncio.CancelledError):
                    raise result
                raise FetchError("internal", f"unexpected {type(result).__name__}: {result}")
        try:
            return parse_reading(*results)
        except SchemaError as exc:
            raise FetchError("schema", str(exc)) from None

    async def _get_json(self, endpoint: str, headers: dict[str, str]) -> Any:
        url = f"{self.target.url}/api/{endpoint}"
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
                body = await read_capped(resp, self._max_body, where)
        except FetchError:
            raise
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise client_error(exc, where, self.target.timeout) from None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FetchError("invalid_json", f"{where}: invalid JSON: {exc}") from None
        except RecursionError:
            raise FetchError("invalid_json", f"{where}: invalid JSON: nested too deeply to decode") from None
