"""How the scaler proves itself to a protected exporter: the CA it trusts, a client certificate, basic auth.

Secrets come from files only (`--exporter-password-file`, `--exporter-key`), never from a flag's value, and are
re-read when the files change (a rotated Secret applies without a restart). No message here contains a secret.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
from dataclasses import dataclass


class ExporterAuthError(ValueError):
    """A credential file that cannot be read or does not load; the message names the flag and the file."""


@dataclass(frozen=True, slots=True)
class ExporterAuth:
    """The --exporter-* credential flags (paths and the user name)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.ca_file, self.cert_file, self.key_file, self.password_file) if p)


def _reason(exc: OSError) -> str:
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def client_context(auth: ExporterAuth) -> ssl.SSLContext:
    """The TLS context for https exporter URLs: system CAs or --exporter-ca, plus the client certificate if given."""
    try:
        ctx = ssl.create_default_context(cafile=auth.ca_file)
    except OSError as exc:
        message = f"--exporter-ca: cannot load CA certificates from {auth.ca_file}: {_reason(exc)}"
        raise ExporterAuthError(message) from None
    if auth.cert_file and auth.key_file:

        def no_passphrase() -> bytes:
            raise ExporterAuthError(f"--exporter-key: {auth.key_file} is passphrase-protected; give an unencrypted key")

        try:
            ctx.load_cert_chain(auth.cert_file, auth.key_file, password=no_passphrase)
        except OSError as exc:
            raise ExporterAuthError(
                f"--exporter-cert: cannot load {auth.cert_file} with the key {auth.key_file}: {_reason(exc)}"
            ) from None
    return ctx


def read_password(path: str) -> str:
    """The password in `path` without its trailing newline (how `kubectl create secret --from-file` stores one)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except OSError as exc:
        raise ExporterAuthError(f"--exporter-password-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ExporterAuthError(f"--exporter-password-file: {path} is not UTF-8 text") from None


class ExporterCredentials:
    """The current TLS context and Authorization header, rebuilt when a credential file changes."""

    def __init__(self, auth: ExporterAuth) -> None:
        self.auth = auth
        self._stamp: tuple[tuple[int, int, int] | None, ...] | None = None
        self._ssl: ssl.SSLContext | None = None
        self._headers: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the files if they changed; True when they did. `ExporterAuthError` if one no longer loads."""
        stamp = _stamp(self.auth.files)
        if stamp == self._stamp:
            return False
        ssl_context = client_context(self.auth)
        headers: dict[str, str] = {}
        if self.auth.password_file is not None or self.auth.username is not None:
            password = read_password(self.auth.password_file) if self.auth.password_file else ""
            token = base64.b64encode(f"{self.auth.username or ''}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self._ssl, self._headers, self._stamp = ssl_context, headers, stamp
        return True

    @property
    def ssl(self) -> ssl.SSLContext:
        assert self._ssl is not None
        return self._ssl

    @property
    def headers(self) -> dict[str, str]:
        return self._headers
