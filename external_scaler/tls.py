"""Server TLS/mTLS credentials that re-read the certificate files when they change (cert-manager rotation)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import grpc

log = logging.getLogger("horizon_keda.scaler.tls")


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Paths given by --tls-cert, --tls-key and (for mTLS) --tls-client-ca."""

    cert: str
    key: str
    client_ca: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    # inode too: Kubernetes swaps a Secret volume's ..data symlink, which can keep mtime and size.
    stats = [os.stat(p) for p in paths]
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


class ReloadingCredentials:
    """Builds `grpc.dynamic_ssl_server_credentials`; grpc calls `fetch` before every handshake."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.reloads = 0
        self._stamp = _stamp(files.paths)
        self._initial = self._load()

    def _load(self) -> grpc.ServerCertificateConfiguration:
        def read(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        root = read(self.files.client_ca) if self.files.client_ca else None
        return grpc.ssl_server_certificate_configuration([(read(self.files.key), read(self.files.cert))], root)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when a file changed since the last look, else None (keep the current one)."""
        try:
            stamp = _stamp(self.files.paths)
            if stamp == self._stamp:
                return None
            config = self._load()
        except (OSError, ValueError) as exc:
            # Half-written rotation: keep serving the previous certificate and look again next handshake.
            log.warning("TLS files not reloadable yet, keeping the current certificate: %s", exc)
            return None
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate files changed; reloaded (%s)", ", ".join(self.files.paths))
        return config

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._initial, self.fetch, require_client_authentication=self.files.client_ca is not None
        )
