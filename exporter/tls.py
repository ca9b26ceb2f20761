"""TLS client contexts: a target's `tls:` or a module's `tls_config:` settings made into an `ssl.SSLContext`.

Config loading (to reject files that do not load), the Horizon client and `/probe` all build contexts here.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """How to verify a server's certificate and which client certificate to present.

    `server_name` (the name sent in SNI and verified) is applied by the caller on each request; `min_version`
    (a key of TLS_VERSIONS) by `load_tls`.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    server_name: str | None = None
    min_version: str | None = None


class TLSFileError(ValueError):
    """A TLS file that exists but does not load; `key` is the key naming it (ca_file, cert_file, key_file)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def _ssl_reason(exc: OSError) -> str:
    # "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found (_ssl.c:4154)" without the C source line.
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))


def load_tls(tls: TLSConfig) -> ssl.SSLContext:
    """The TLS context `tls` describes, or `TLSFileError` naming the file that does not load.

    Used at config load (so a garbage CA file or a mismatched key pair is a ConfigError) and by the clients.
    """
    if tls.insecure_skip_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        try:
            ctx = ssl.create_default_context(cafile=tls.ca_file)
        except OSError as exc:
            message = f"cannot load CA certificates from {tls.ca_file}: {_ssl_reason(exc)}"
            raise TLSFileError("ca_file", message) from None
    if tls.cert_file and tls.key_file:

        def no_passphrase() -> bytes:
            # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
            raise TLSFileError("key_file", f"{tls.key_file} is passphrase-protected; give an unencrypted key")

        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file, password=no_passphrase)
        except OSError as exc:
            raise TLSFileError(
                "cert_file",
                f"cannot load the client certificate {tls.cert_file} with the key {tls.key_file}: {_ssl_reason(exc)}",
            ) from None
    if tls.min_version is not None:
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    return ctx
