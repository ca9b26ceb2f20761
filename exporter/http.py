"""HTTP pieces the Horizon client and `/probe` share: failures with a reason, capped reads, credentials.

A `FetchError`'s `reason` is a metric label value; its message names what was fetched, never a secret.
"""

from __future__ import annotations

import os
from base64 import b64encode
from dataclasses import dataclass

import aiohttp


class FetchError(Exception):
    """A failed fetch: `reason` is a metric label value, the message says what happened."""

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
    if resp.content_length is not None and resp.headers.get("Content-Encoding", "identity") == "identity":
        return await resp.read()  # exactly Content-Length bytes, at most `limit`: one read, one copy
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise FetchError("too_large", f"{where}: body over the limit of {limit} bytes")
    return b"".join(chunks)


def client_error(exc: BaseException, where: str, timeout: float) -> FetchError:
    """Map an aiohttp/asyncio exception to a `FetchError` with a reason."""
    if isinstance(exc, TimeoutError):
        return FetchError("timeout", f"{where}: no complete answer within {timeout:g}s")
    if isinstance(exc, aiohttp.ClientSSLError):
        return FetchError("tls", f"{where}: TLS failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return FetchError("connection", f"{where}: cannot connect: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientResponseError):
        # A response that does not parse as HTTP; aiohttp's message quotes the offending line, which may echo our
        # own request headers (credentials) back, so it is not shown.
        return FetchError("connection", f"{where}: the answer is not valid HTTP")
    return FetchError("connection", f"{where}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """HTTP basic credentials; the password may come from a file (re-read when it changes)."""

    username: str
    password: str | None = None
    password_file: str | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    """`Authorization: <type> <credentials>` (a bearer token by default); the credentials may come from a file."""

    type: str = "Bearer"
    credentials: str | None = None
    credentials_file: str | None = None


class AuthHeader:
    """The `Authorization` header value for basic auth or a type and credentials; secret files are re-read as they
    change, and one that cannot be read is `FetchError(credentials)`."""

    def __init__(self, basic: BasicAuth | None = None, authorization: Authorization | None = None) -> None:
        self._basic, self._authorization = basic, authorization
        self._password = FileSecret(basic.password_file, "password") if basic and basic.password_file else None
        self._credentials: FileSecret | None = None
        if authorization is not None and authorization.credentials_file:
            what = "bearer token" if authorization.type.lower() == "bearer" else f"{authorization.type} credentials"
            self._credentials = FileSecret(authorization.credentials_file, what)

    def value(self) -> str | None:
        """The header's value now, or None when there are no credentials."""
        if self._basic is not None:
            password = self._password.read() if self._password else (self._basic.password or "")
            return "Basic " + b64encode(f"{self._basic.username}:{password}".encode()).decode()
        if self._authorization is not None:
            token = self._credentials.read() if self._credentials else (self._authorization.credentials or "")
            return f"{self._authorization.type} {token}"
        return None
