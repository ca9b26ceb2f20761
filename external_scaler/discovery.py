"""Which exporters an `--exporter` value names: one URL, or (`dns+http(s)://HOST:PORT`) every address HOST resolves to.

The `dns+` prefix is Thanos' and Grafana Mimir's spelling of "look the name up as A/AAAA and use every address"
(thanos.io/tip/thanos/service-discovery.md; Mimir's "About DNS service discovery"): a Kubernetes headless Service
answers with one A/AAAA record per ready pod. SRV (their `dnssrv+`) is not offered: it needs a named port and a DNS
client library, and adds nothing here, where every shard listens on the same port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DNS_PREFIX = "dns+"
DEFAULT_PORTS = {"http": 80, "https": 443}

# (host, port) -> the addresses, as IP strings; `NoAddresses` when the name has none (a headless Service with no
# ready pod is NXDOMAIN), any other OSError when the lookup itself failed (then the last answer is kept).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class NoAddresses(OSError):
    """The name exists nowhere or has no A/AAAA records: there are no exporters behind it right now."""


@dataclass(frozen=True, slots=True)
class ExporterSpec:
    """One `--exporter` value: a base URL, or with `dns` a URL whose host is resolved to every address."""

    value: str  # as given, for logs
    scheme: str  # http or https
    host: str
    port: int
    path: str  # the base path, without a trailing slash
    dns: bool

    @property
    def url(self) -> str:
        """The base URL (what a static spec follows)."""
        return self.value.removeprefix(DNS_PREFIX).rstrip("/")

    def address_url(self, address: str) -> str:
        """The base URL of one of the host's addresses (IPv6 in brackets)."""
        host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def server_hostname(self) -> str | None:
        """The name an https exporter's certificate must carry when it is reached by address."""
        return self.host if self.dns and self.scheme == "https" else None


def parse_exporter(value: str) -> ExporterSpec:
    """An `--exporter` value; ValueError (the caller names the flag) when it is neither form."""
    dns = value.startswith(DNS_PREFIX)
    parts = urlsplit(value.removeprefix(DNS_PREFIX))
    try:
        port = parts.port
    except ValueError:
        port = -1
    if "@" in value:  # not echoed: it would put the password in the error (a password may hold "/", "?", "#")
        raise ValueError("credentials inside the URL are refused; use --exporter-username and --exporter-password-file")
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port == -1:
        raise ValueError(f"expected an http(s) URL, got {value!r} (or dns+http(s)://HOST:PORT to follow every "
                         "address HOST resolves to)")  # fmt: skip
    return ExporterSpec(
        value=value,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port if port is not None else DEFAULT_PORTS[parts.scheme],
        path=parts.path.rstrip("/"),
        dns=dns,
    )


async def resolve(host: str, port: int) -> list[str]:
    """Every A and AAAA address of `host`, sorted, through the system resolver (as KEDA's grpc-go resolves)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_NAME:
            raise NoAddresses(exc.errno, exc.strerror) from None
        raise
    # A scoped (link-local) address cannot be put in a URL; a Service name never resolves to one.
    addresses = {str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)}
    return sorted(a for a in addresses if "%" not in a)


# "Name or service not known" and "No address associated with hostname" mean no exporters; EAI_AGAIN, EAI_FAIL ...
# mean the lookup failed and says nothing about them.
_NO_NAME = {socket.EAI_NONAME} | ({socket.EAI_NODATA} if hasattr(socket, "EAI_NODATA") else set())
