"""Fetch one Horizon's `/api/stats`, `/api/workload` and `/api/masters` concurrently over a shared session.

Every failure becomes a `FetchError` with a short `reason` (the `reason` label of the errors metric) and a message
naming the endpoint; secrets (headers, tokens, passwords) never appear in either.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from base64 import b64encode
from typing import Any

import aiohttp

from .config import TargetConfig, redact_url
from .horizon import HorizonReading, SchemaError, parse_reading
from .tls import TLSFileError, load_tls

ENDPOINTS = ("stats", "workload", "masters")


class FetchError(Exception):
    """A failed poll: `reason` is a metric label value, the message says what happened."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class FileSecret:
    """A secret read from a file, re-read when the file's mtime or size changes (rotated Secrets)."""

    def __init__(self, path: str, what: str) -> None:
        self.path, self.what = path, what
        self._stamp: tuple[int, int] | None = None
        self._value = ""

    def read(self) -> str:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as fh:
                    self._value = fh.read().strip()
                self._stamp = stamp
        except OSError as exc:
            raise FetchError("credentials", f"cannot read {self.what} file {self.path}: {exc.strerror}") from None
        if not self._value:
            raise FetchError("credentials", f"{self.what} file {self.path} is empty")
        return self._value


async def read_capped(resp: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The body, or `FetchError(too_large)` as soon as it exceeds `limit` bytes (never read whole)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise FetchError("too_large", f"{where}: body of {resp.content_length} bytes over the limit of {limit}")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            raise FetchError("too_large", f"{where}: body over the limit of {limit} bytes")
    return bytes(body)


def client_error(exc: BaseException, where: str, timeout: float) -> FetchError:
    """Map an aiohttp/asyncio exception to a `FetchError` with a reason."""
    if isinstance(exc, TimeoutError):
        return FetchError("timeout", f"{where}: no complete answer within {timeout:g}s")
    if isinstance(exc, aiohttp.ClientSSLError):
        return FetchError("tls", f"{where}: TLS failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return FetchError("connection", f"{where}: cannot connect: {exc.os_error}")
    return FetchError("connection", f"{where}: {type(exc).__name__}: {exc}")


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
        self._bearer = FileSecret(target.bearer_token_file, "bearer token") if target.bearer_token_file else None
        basic = target.basic_auth
        self._basic_file = FileSecret(basic.password_file, "password") if basic and basic.password_file else None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "horizon-keda-exporter"}
        headers.update(self.target.headers)
        if self._bearer is not None:
            headers["Authorization"] = f"Bearer {self._bearer.read()}"
        basic = self.target.basic_auth
        if basic is not None:
            password = self._basic_file.read() if self._basic_file else (basic.password or "")
            token = b64encode(f"{basic.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
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
