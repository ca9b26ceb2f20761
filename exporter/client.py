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

from .config import TargetConfig
from .horizon import HorizonReading, SchemaError, parse_reading

ENDPOINTS = ("stats", "workload", "masters")


class FetchError(Exception):
    """A failed poll: `reason` is a metric label value, the message says what happened."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class _FileSecret:
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


def _ssl_context(target: TargetConfig) -> ssl.SSLContext | bool:
    tls = target.tls
    if target.url.startswith("http://"):
        return True
    if tls.insecure_skip_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


class TargetClient:
    """Polls one target; holds its TLS context and credential files for the life of the process."""

    def __init__(self, target: TargetConfig, session: aiohttp.ClientSession, max_body_bytes: int) -> None:
        self.target = target
        self._session = session
        self._max_body = max_body_bytes
        self._ssl = _ssl_context(target)
        self._timeout = aiohttp.ClientTimeout(total=target.timeout)
        self._bearer = _FileSecret(target.bearer_token_file, "bearer token") if target.bearer_token_file else None
        basic = target.basic_auth
        self._basic_file = _FileSecret(basic.password_file, "password") if basic and basic.password_file else None

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

    async def fetch(self) -> HorizonReading:
        """Fetch and parse the three endpoints; raise `FetchError` on the first failure in endpoint order."""
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
                url, headers=headers, timeout=self._timeout, ssl=self._ssl, allow_redirects=False
            ) as resp:
                if resp.status != 200:
                    hint = ""
                    if 300 <= resp.status < 400:
                        hint = f" (redirect to {resp.headers.get('Location', '?')!s:.120}: a login page?)"
                    elif resp.status in (401, 403):
                        hint = " (Horizon's dashboard authorization refused the exporter)"
                    raise FetchError(f"http_{resp.status}", f"{where}: HTTP {resp.status}{hint}")
                ctype = resp.headers.get("Content-Type", "")
                if "json" not in ctype.lower():
                    # Horizon's catch-all route answers unknown paths and login pages with HTML and 200.
                    raise FetchError("not_json", f"{where}: expected application/json, got {ctype or 'no type'!r}")
                if resp.content_length is not None and resp.content_length > self._max_body:
                    raise FetchError("too_large", f"{where}: body of {resp.content_length} bytes over the limit")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > self._max_body:
                        raise FetchError("too_large", f"{where}: body over the limit of {self._max_body} bytes")
        except FetchError:
            raise
        except TimeoutError:
            raise FetchError("timeout", f"{where}: no complete answer within {self.target.timeout:g}s") from None
        except aiohttp.ClientSSLError as exc:
            raise FetchError("tls", f"{where}: TLS failed: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise FetchError("connection", f"{where}: cannot connect: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise FetchError("connection", f"{where}: {type(exc).__name__}: {exc}") from None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise FetchError("invalid_json", f"{where}: invalid JSON: {exc}") from None
