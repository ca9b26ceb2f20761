"""No secret ever leaves (issue 12, item 5).

The real console scripts — `horizon-exporter` twice (text and JSON logs) and `horizon-scaler`, as users run them,
at `--log-level debug` — run with canaries (unique random strings) in every place a secret can be: a Horizon bearer
token file, a basic-auth password file, an inline `password: ${VAR}`, `${VAR}` header values (X-Api-Key and a whole
Authorization header) of targets and of a /probe module, a module's `authorization.credentials_file` and basic-auth
password, the private keys of TLS client certificates, the web config's bcrypt hashes and the passwords behind
them, the exporter's and the scaler's TLS server keys, the scaler's `--exporter-password-file` and `--exporter-key`.

Then every failure path is driven: 401 and 403 from Horizon with the request headers echoed in the body and a
header, Horizons reflecting the credentials into JSON values, HTML and a malformed HTTP header line, a redirect to
another host, invalid JSON, a timeout, a wrong CA and an untrusted client certificate, token files rotated and
deleted, a header value no HTTP request can carry; /probe with allowed and disallowed targets, credentials in the
target URL, and the same hostile upstreams; wrong passwords at the exporter (a password as the user name too) and
TLS clients it refuses; configuration and web-configuration errors at start and at reload (SIGHUP and file change);
the scaler with a wrong and then a vanished password file; gRPC calls with odd metadata and call metadata.

Everything the programs write or answer is searched — both exporters' logs, the scaler's log and audit log,
/metrics, /api/v1/snapshot, /probe and every other HTTP answer (headers included), every gRPC status, every
`--check-config` and start-up error — for each canary, for any base64 text holding one (a `Basic` header value),
and for any PEM private key at all. Nothing may reach the host a redirect or a disallowed probe target points at.

The search is checked, so that a pass means something: the fakes must have received every credential canary (the
processes really loaded and sent them), every failure path must have shown its reason, every start-up run must
have failed the way it was meant to, and a planted non-secret marker (a microservice name) must be found by the
same search in every channel searched.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import grpc
import pytest
import yaml
from aiohttp import web

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from tests.certs import CA, Pem
from tests.conftest import free_port
from tests.payloads import topology_a

BIN = Path(sys.executable).parent
TRAP_HOST = "127.0.0.2"  # another host, on loopback: where a redirect and a disallowed probe target point

pytestmark = pytest.mark.timeout(120)


# -- the search ----------------------------------------------------------------------------------------------------


def base64_forms(raw: bytes) -> list[str]:
    """Substrings that any standard base64 text containing `raw` holds, whichever of the three alignments `raw` has
    in it (`Basic dXNlcjpD…` holds one of them for the password)."""
    forms = []
    for pad in range(3):
        encoded = base64.b64encode(bytes(pad) + raw).decode()
        # The first group mixes the padding with `raw` (when padded), the last one `raw` with what follows it.
        inner = encoded[4 if pad else 0 : len(encoded) - 4]
        if len(inner) >= 16:
            forms.append(inner)
    return forms


def pem_needle(key_pem: bytes) -> str:
    """A line of a PEM private key's body that no other key shares (the first line is a common ASN.1 header)."""
    body = [line for line in key_pem.decode().splitlines() if line and not line.startswith("-----")]
    return max(body[1:], key=len)


@dataclass
class Needles:
    """Texts to look for, each with what it stands for."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, text: str, what: str, *, encoded: bool = True) -> str:
        """Look for `text` (and, with `encoded`, for any base64 text holding it); returns `text`."""
        self.texts[text] = what
        if encoded:
            for form in base64_forms(text.encode()):
                self.texts[form] = f"{what}, base64-encoded"
        return text

    def found(self, haystack: str) -> list[str]:
        """What the needles found in `haystack` stand for."""
        return sorted({what for text, what in self.texts.items() if text in haystack})


class Canaries(Needles):
    """Every secret the processes are given."""

    def new(self, purpose: str) -> str:
        """A fresh canary for `purpose`, watched."""
        return self.add(f"CANARY-{purpose}-{secrets.token_hex(8)}", purpose)

    def key(self, pem: Pem, purpose: str) -> Pem:
        """Watch `pem`'s private key (a line of its body: base64 already)."""
        self.add(pem_needle(pem.key), purpose, encoded=False)
        return pem


def scan(sources: Mapping[str, str], needles: Needles) -> list[str]:
    """`source: what: …context…` for every needle in every source, and for every PEM private key."""
    out = []
    for source, text in sources.items():
        for needle, what in needles.texts.items():
            at = text.find(needle)
            if at >= 0:
                context = text[max(0, at - 120) : at + len(needle) + 40].replace("\n", "⏎")
                out.append(f"{source}: {what}: …{context}…")
        if "PRIVATE KEY" in text:
            out.append(f"{source}: a PEM private key")
    return out


def basic(user: str, password: str) -> str:
    """An `Authorization: Basic …` value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_search_finds_a_canary_in_every_form_it_could_leak_in() -> None:
    canaries = Canaries()
    canary = canaries.new("self-test")
    for user in ("", "u", "us", "user"):  # every alignment of the password inside a Basic header value
        assert canaries.found(basic(user, canary)) == ["self-test, base64-encoded"]
    assert canaries.found(json.dumps({"message": f"token {canary!r}"})) == ["self-test"]
    assert canaries.found(f"…{canary[:-1]}…") == []
    key = CA().issue("x").key
    assert scan({"log": f"got {key.decode()!r}"}, Needles()) == ["log: a PEM private key"]
    canaries.key(Pem(b"", key), "a key")
    assert canaries.found(json.dumps({"exception": key.decode()[30:]})) == ["a key"]  # no BEGIN line, JSON-escaped


# -- fake upstreams ------------------------------------------------------------------------------------------------


@dataclass
class Creds:
    """The credentials the fakes expect (all canaries)."""

    tokens: set[str]  # bearer tokens the honest Horizon accepts (rotation adds one)
    horizon_password: str  # `payments`: basic_auth.password_file
    api_key: str  # ${CANARY_API_KEY}: X-Api-Key of `shipping`
    inline_password: str  # ${CANARY_INLINE_PASSWORD}: basic_auth.password of `shipping`
    authorization: str  # ${CANARY_AUTHORIZATION}: a whole `Authorization: Token …` header of `t-garbled`
    probe_key: str  # ${CANARY_PROBE_KEY}: X-Api-Key of module `authed`
    probe_credentials: str  # authorization.credentials_file of module `authed`
    probe_password: str  # ${CANARY_PROBE_PASSWORD}: basic_auth.password of module `tls`


def _echo(head: Mapping[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in head.items())


class Upstream:
    """Fake Horizons and /probe upstreams, by path: `/<scenario>/horizon/api/<endpoint>` and `/probe/<name>`.

    Honest ones check the credentials; hostile ones refuse, reflect, redirect to the trap or stall. Every request
    is recorded: the credentials arriving here prove the processes loaded and sent them."""

    def __init__(self, creds: Creds, trap: str) -> None:
        self.creds = creds
        self.trap = trap
        self.seen: list[str] = []
        self.stats, self.workload, self.masters = topology_a()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.seen.append(f"{request.method} {request.path_qs}\n{_echo(request.headers)}\n{body}")
        parts = request.path.strip("/").split("/")
        if parts[0] == "probe":
            return await self.probe(request, parts[-1])
        return await self.horizon(request, parts[0], parts[-1])

    async def garbled(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A raw answer that is not HTTP: an invalid header line holding the request's headers."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.seen.append(head)
        echo = "; ".join(line for line in head.split("\r\n")[1:] if line)
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Echo\x01: {echo}\r\n"
            "Content-Length: 2\r\n\r\n{}".encode()
        )
        await writer.drain()
        writer.close()

    def _payload(self, endpoint: str) -> web.Response:
        return web.json_response({"stats": self.stats, "workload": self.workload, "masters": self.masters}[endpoint])

    async def horizon(self, request: web.Request, scenario: str, endpoint: str) -> web.StreamResponse:
        c, auth, key = self.creds, request.headers.get("Authorization", ""), request.headers.get("X-Api-Key", "")
        honest = {
            "bearer": auth in {f"Bearer {t}" for t in c.tokens},
            "basic": auth == basic("horizon", c.horizon_password),
            "header": key == c.api_key and auth == basic("env-user", c.inline_password),
        }
        if scenario in honest:
            return self._payload(endpoint) if honest[scenario] else web.Response(status=401, text="no")
        if scenario == "unauthorized":
            return web.Response(
                status=401,
                text=f"invalid credentials:\n{_echo(request.headers)}",
                headers={"WWW-Authenticate": f'Bearer error="invalid_token" token="{auth}"'},
            )
        if scenario == "forbidden":
            return web.json_response(
                {"message": "This action is unauthorized.", "headers": dict(request.headers)}, status=403
            )
        if scenario == "reflect-auth" and endpoint == "stats":  # the credentials where a number belongs
            return web.json_response({**self.stats, "processes": auth})
        if scenario == "reflect-key" and endpoint == "workload":
            return web.json_response([{"name": "default", "length": key, "wait": 1, "processes": 1}])
        if scenario == "reflect-key" and endpoint == "masters":  # and where a master belongs
            return web.json_response({"m": auth})
        if scenario in ("reflect-auth", "reflect-key"):
            return self._payload(endpoint)
        if scenario == "redirect":
            raise web.HTTPFound(f"{self.trap}/login?token={auth}&next=/horizon")
        if scenario == "html":
            return web.Response(text=f"<html><pre>{_echo(request.headers)}</pre></html>", content_type="text/html")
        if scenario == "invalid":
            return web.Response(text=f'{{"processes": "{auth}', content_type="application/json")
        if scenario == "slow":
            await asyncio.sleep(3)
            return self._payload(endpoint)
        return web.Response(status=404, text="unknown scenario")

    async def probe(self, request: web.Request, name: str) -> web.StreamResponse:
        c, auth, key = self.creds, request.headers.get("Authorization", ""), request.headers.get("X-Api-Key", "")
        if name == "ok.json":
            if key == c.probe_key and auth == f"Bearer {c.probe_credentials}":
                return web.json_response({"value": 1})
            return web.Response(status=401, text="no")
        if name == "ok-basic.json":
            if auth == basic("probe-user", c.probe_password):
                return web.json_response({"value": 2})
            return web.Response(status=401, text="no")
        if name == "reflect.json":
            return web.json_response({"value": auth, "other": key})
        if name == "unauthorized":
            return web.Response(
                status=401,
                text=f"who are you?\n{_echo(request.headers)}",
                headers={"WWW-Authenticate": f'Basic realm="{auth}"'},
            )
        if name == "forbidden":
            return web.json_response({"headers": dict(request.headers)}, status=403)
        if name == "html":
            return web.Response(text=f"<html>{_echo(request.headers)}</html>", content_type="text/html")
        if name == "slow":
            await asyncio.sleep(3)
            return web.json_response({"value": 3})
        if name == "redirect-out":
            raise web.HTTPFound(f"{self.trap}/steal?k={key}")
        if name == "redirect-in":
            raise web.HTTPFound("/probe/ok.json")
        return web.Response(status=404, text="unknown probe")


class Trap:
    """The host no credential may reach: it records whatever comes."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.seen.append(f"{request.method} {request.path_qs}\n{_echo(request.headers)}\n{await request.text()}")
            return web.json_response({"value": 0})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


async def serve(app: web.Application, host: str, context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Serve `app` on `host`, a free port; returns the runner and the port."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, 0, ssl_context=context).start()
    return runner, runner.addresses[0][1]


# -- processes, HTTP, files ----------------------------------------------------------------------------------------


class Program:
    """A console script running in the background, its standard output and error going to files."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], directory: Path) -> None:
        self.name = name
        self.out, self.err = directory / f"{name}.stdout", directory / f"{name}.stderr"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], stdout=out, stderr=err, env=dict(env))

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def output(self) -> dict[str, str]:
        return {f"{self.name} stdout": self.out.read_text(errors="replace"), f"{self.name} stderr": self.log()}

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL if it does not end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class OneShot:
    """A run that must end by itself (a start-up error, or --check-config), and how."""

    what: str
    argv: list[str]
    env: dict[str, str]
    status: int  # the exit status it must end with
    says: str  # a fragment of what it must say (so the path it is meant to take is the one taken)

    async def run(self, env: Mapping[str, str]) -> str:
        done = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / self.argv[0]), *self.argv[1:]],
            env={**env, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert done.returncode == self.status and self.says in out, f"{self.what}: {out}"
        return out


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0, show: Callable[[], object] = str
) -> None:
    """Wait for `check` to hold, asking every 0.1 s; `show` says what was seen last when it never does."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {show()}")
        await asyncio.sleep(0.1)


class Client:
    """HTTP to the exporters; every answer (status, headers, body) or failure is kept for the search."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.answers: list[str] = []

    async def get(self, url: str, **kw: Any) -> tuple[int, str]:
        """Status and body; 0 and "" when there is no HTTP answer (refused handshake, plain HTTP to TLS)."""
        try:
            async with self.session.get(url, **kw) as resp:
                text = await resp.text(errors="replace")
                self.answers.append(f"GET {url} -> {resp.status}\n{_echo(resp.headers)}\n{text}")
                return resp.status, text
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.answers.append(f"GET {url} -> {type(exc).__name__}: {exc}")
            return 0, ""


@dataclass
class Files:
    """What the test writes: certificates, keys, credential files, configs."""

    root: Path

    def write(self, name: str, data: str | bytes) -> str:
        path = self.root / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    def replace(self, name: str, data: str | bytes) -> None:
        """Write `name` anew: a new inode, as a rotated Kubernetes Secret or ConfigMap."""
        os.replace(self.write(f".{name}.new", data), self.root / name)


# -- the run -------------------------------------------------------------------------------------------------------

# What each target's poll must end with (a tuple: any of these); MARKED is the planted marker, added by `Run`.
MARKED, MARKED_FAILING = "marked", "marked-unauthorized"
EXPECTED_REASONS: dict[str, str | tuple[str, ...] | None] = {
    MARKED: None,
    MARKED_FAILING: "http_401",
    "payments": None,
    "shipping": None,
    "billing": None,
    "t-forbidden": "http_403",
    "t-reflect-auth": "schema",
    "t-reflect-key": "schema",
    "t-redirect": "http_302",
    "t-html": "not_json",
    "t-invalid": "invalid_json",
    "t-slow": "timeout",
    "t-garbled": "connection",
    "t-wrong-ca": "tls",
    "t-untrusted-client": ("tls", "connection"),
    "t-token-gone": None,
    "t-newline": "internal",
}


def reasons(doc: Mapping[str, Any]) -> dict[str, str | None]:
    """Target name → the reason of its latest failure (None: up), from a snapshot document."""
    return {name: (t["error"] or {}).get("reason") for name, t in doc.get("targets", {}).items()}


def as_expected(got: Mapping[str, str | None], expected: Mapping[str, str | tuple[str, ...] | None]) -> bool:
    """Whether every target in `expected` ended as it says (a missing target never does)."""
    return all(got.get(n, "?") in (w if isinstance(w, tuple) else (w,)) for n, w in expected.items())


class Run:
    """One run of both exporters and the scaler with canaries everywhere, phase by phase."""

    def __init__(self, root: Path) -> None:
        self.root, self.files, self.canaries = root, Files(root), Canaries()
        self.marker = Needles()  # a non-secret that must be found everywhere: the search reads what it claims to
        self.microservice = self.marker.add(f"marker-{secrets.token_hex(4)}", "the planted marker", encoded=False)
        self.statuses: list[str] = []  # every gRPC status a call ended with
        self.programs: list[Program] = []
        self._pki()
        self._secrets()

    # -- what the processes are given ------------------------------------------------------------------------

    def _pki(self) -> None:
        c, f = self.canaries, self.files
        self.horizon_ca, horizon_clients_ca, self.other_ca = CA("horizon CA"), CA("horizon clients CA"), CA("rogue CA")
        exporter_ca, exporter_clients_ca, self.scaler_ca = CA("exporter CA"), CA("exporter clients CA"), CA("scaler CA")
        self.ca = {
            name: f.write(f"{name}-ca.crt", ca.pem)
            for name, ca in (
                ("horizon", self.horizon_ca),
                ("horizon-clients", horizon_clients_ca),
                ("other", self.other_ca),
                ("exporter", exporter_ca),
                ("exporter-clients", exporter_clients_ca),
                ("scaler", self.scaler_ca),
            )
        }
        self.horizon_server = self.horizon_ca.issue("horizon").write(self.root, "horizon-server")
        pems = {
            "target-client": c.key(horizon_clients_ca.issue("exporter", server=False), "a target's TLS client key"),
            "untrusted-client": c.key(self.other_ca.issue("exporter", server=False), "an untrusted TLS client key"),
            "probe-client": c.key(horizon_clients_ca.issue("probe", server=False), "a module's TLS client key"),
            "exporter": c.key(exporter_ca.issue("horizon-exporter"), "the exporter's TLS server key"),
            "scaler-client": c.key(exporter_clients_ca.issue("keda", server=False), "the scaler's --exporter-key"),
            "scaler": c.key(self.scaler_ca.issue("horizon-scaler"), "the scaler's TLS server key"),
        }
        self.exporter_pem = pems["exporter"]
        self.pem = {name: pem.write(self.root, name) for name, pem in pems.items()}  # name → (cert, key)

    def _secrets(self) -> None:
        c, f = self.canaries, self.files
        self.creds = Creds(
            tokens={c.new("bearer-token")},
            horizon_password=c.new("horizon-password-file"),
            api_key=c.new("target-header"),
            inline_password=c.new("inline-password"),
            authorization=c.new("target-authorization-header"),
            probe_key=c.new("module-header"),
            probe_credentials=c.new("module-credentials-file"),
            probe_password=c.new("module-password"),
        )
        self.creds.tokens.add(doomed := c.new("deleted-token"))
        self.token_file = f.write("token", next(iter(self.creds.tokens - {doomed})) + "\n")
        self.doomed_token_file = f.write("doomed-token", doomed + "\n")
        self.password_file = f.write("horizon-password", self.creds.horizon_password + "\n")
        self.probe_credentials_file = f.write("probe-credentials", self.creds.probe_credentials)
        self.web_password, self.scaler_password = c.new("web-password"), c.new("scaler-password")
        self.hashes = {}
        for user, password in (("prometheus", self.web_password), ("keda", self.scaler_password)):
            self.hashes[user] = hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
            c.add(hashed, f"the bcrypt hash of {user}", encoded=False)
            c.add(hashed[-31:], f"the bcrypt digest of {user}", encoded=False)
        self.scaler_password_file = f.write("scaler-password", self.scaler_password + "\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("HORIZON_EXPORTER_", "HORIZON_SCALER_"))}
        self.env |= {
            "CANARY_API_KEY": self.creds.api_key,
            "CANARY_INLINE_PASSWORD": self.creds.inline_password,
            "CANARY_AUTHORIZATION": f"Token {self.creds.authorization}",
            "CANARY_PROBE_KEY": self.creds.probe_key,
            "CANARY_PROBE_PASSWORD": self.creds.probe_password,
            "CANARY_NEWLINE_KEY": c.new("header-with-newline") + "\n",  # a Secret's trailing newline, kept
        }

    def config(self) -> dict[str, Any]:
        """The exporter's config: a target for every credential and every failure, modules for /probe."""
        http, https, raw = self.http_base, self.https_base, self.raw_base

        def target(name: str, scenario: str, auth: str, base: str = http, **extra: Any) -> dict[str, Any]:
            out: dict[str, Any] = {"microservice": name, "url": f"{base}/{scenario}/horizon", **extra}
            if auth == "bearer":
                out["bearer_token_file"] = self.token_file
            elif auth == "basic":
                out["basic_auth"] = {"username": "horizon", "password_file": self.password_file}
            elif auth == "header":
                out["headers"] = {"X-Api-Key": "${CANARY_API_KEY}"}
                out["basic_auth"] = {"username": "env-user", "password": "${CANARY_INLINE_PASSWORD}"}
            return out

        target_client, untrusted = self.pem["target-client"], self.pem["untrusted-client"]
        good_tls = {"ca_file": self.ca["horizon"], "cert_file": target_client[0], "key_file": target_client[1]}
        targets = [
            target(self.microservice, "bearer", "bearer"),
            target("payments", "basic", "basic"),
            target("shipping", "header", "header"),
            target("billing", "bearer", "bearer", https, tls=good_tls),
            target(self.microservice + "-unauthorized", "unauthorized", "bearer"),
            target("t-forbidden", "forbidden", "header"),
            target("t-reflect-auth", "reflect-auth", "bearer"),
            target("t-reflect-key", "reflect-key", "header"),
            target("t-redirect", "redirect", "bearer"),
            target("t-html", "html", "basic"),
            target("t-invalid", "invalid", "bearer"),
            target("t-slow", "slow", "bearer", timeout=0.3),
            target("t-garbled", "garbled", "none", raw, headers={"Authorization": "${CANARY_AUTHORIZATION}"}),
            target("t-wrong-ca", "bearer", "bearer", https, tls={"ca_file": self.ca["other"]}),
            target(
                "t-untrusted-client",
                "bearer",
                "bearer",
                https,
                tls={"ca_file": self.ca["horizon"], "cert_file": untrusted[0], "key_file": untrusted[1]},
            ),
            target("t-token-gone", "bearer", "none", bearer_token_file=self.doomed_token_file),
            target("t-newline", "header", "none", headers={"X-Api-Key": "${CANARY_NEWLINE_KEY}"}),
        ]
        probe_client = self.pem["probe-client"]
        probe_tls = {"ca_file": self.ca["horizon"], "cert_file": probe_client[0], "key_file": probe_client[1]}
        basic_auth = {"username": "probe-user", "password": "${CANARY_PROBE_PASSWORD}"}
        metrics = [{"name": "probe_value", "path": "{.value}"}]
        modules = {
            "authed": {
                "headers": {"X-Api-Key": "${CANARY_PROBE_KEY}"},
                "http_client_config": {
                    "authorization": {"credentials_file": self.probe_credentials_file},
                    "follow_redirects": True,
                },
                "allowed_targets": [f"{http}/probe/*", f"{raw}/*"],
                "metrics": metrics,
            },
            "tls": {
                "http_client_config": {"basic_auth": basic_auth, "tls_config": probe_tls},
                "allowed_targets": [f"{https}/probe/*"],
                "metrics": metrics,
            },
            "tls-wrong-ca": {
                "http_client_config": {
                    "basic_auth": basic_auth,
                    "tls_config": probe_tls | {"ca_file": self.ca["other"]},
                },
                "allowed_targets": [f"{https}/probe/*"],
                "metrics": metrics,
            },
        }
        return {
            "poll_interval": 0.5,
            "stats_interval": 0,
            "timeout": 2,
            "backoff_max": 1,
            "targets": targets,
            "modules": modules,
        }

    def web_config(self) -> str:
        cert, key = self.pem["exporter"]
        return yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": cert,
                    "key_file": key,
                    "client_auth_type": "VerifyClientCertIfGiven",
                    "client_ca_file": self.ca["exporter-clients"],
                },
                "basic_auth_users": self.hashes,
            }
        )

    # -- the phases ------------------------------------------------------------------------------------------

    async def start_upstreams(self) -> None:
        """The trap on its own host; honest and hostile Horizons over HTTP and over mTLS; the garbling server."""
        self.trap = Trap()
        self.runners = [await serve(self.trap.app(), TRAP_HOST)]
        self.upstream = Upstream(self.creds, f"http://{TRAP_HOST}:{self.runners[0][1]}")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca["horizon-clients"])
        tls.load_cert_chain(*self.horizon_server)
        tls.verify_mode = ssl.CERT_REQUIRED
        self.runners += [
            await serve(self.upstream.app(), "127.0.0.1"),
            await serve(self.upstream.app(), "127.0.0.1", tls),
        ]
        self.garbler = await asyncio.start_server(self.upstream.garbled, "127.0.0.1", 0)
        self.http_base = f"http://127.0.0.1:{self.runners[1][1]}"
        self.https_base = f"https://127.0.0.1:{self.runners[2][1]}"
        self.raw_base = f"http://127.0.0.1:{self.garbler.sockets[0].getsockname()[1]}"

    async def stop_upstreams(self) -> None:
        self.garbler.close()
        for runner, _port in self.runners:
            await runner.cleanup()

    def start_exporters(self) -> None:
        """Two exporters on the same files: text logs and JSON logs."""
        self.config_data = self.config()
        self.config_text = yaml.safe_dump(self.config_data, sort_keys=False)
        self.config_file = self.files.write("config.yml", self.config_text)
        self.web_config_text = self.web_config()
        self.web_config_file = self.files.write("web.yml", self.web_config_text)
        self.ports = {"text": free_port(), "json": free_port()}
        self.exporters = {}
        for fmt, port in self.ports.items():
            argv = ["horizon-exporter", "--config", self.config_file, "--web-config-file", self.web_config_file,
                    "--listen", f"127.0.0.1:{port}", "--log-level", "debug", "--log-format", fmt]  # fmt: skip
            self.exporters[fmt] = Program(f"exporter-{fmt}", argv, self.env, self.root)
        self.programs += self.exporters.values()

    def url(self, fmt: str, path: str) -> str:
        """`path` on the exporter logging in format `fmt`."""
        return f"https://127.0.0.1:{self.ports[fmt]}{path}"

    async def wait_for_every_failure(self, http: Client, good: dict[str, str]) -> None:
        """Until each exporter's snapshot shows every target up or failing with its reason."""
        last: dict[str, Any] = {}

        async def snapshot_as_expected(fmt: str) -> bool:
            status, text = await http.get(self.url(fmt, "/api/v1/snapshot"), headers=good)
            last["doc"] = json.loads(text) if status == 200 else {}
            named = {n.replace(MARKED, self.microservice): reason for n, reason in EXPECTED_REASONS.items()}
            return as_expected(reasons(last["doc"]), named)

        def errors() -> object:
            return {name: t["error"] for name, t in last.get("doc", {}).get("targets", {}).items()}

        for fmt in self.exporters:
            await until(lambda fmt=fmt: snapshot_as_expected(fmt), f"exporter-{fmt}'s targets", show=errors)

    async def drive_exporter_auth(self, http: Client, good: dict[str, str]) -> None:
        """The exporter's basic auth, wrong every way (a password as the user name too); TLS clients it refuses."""
        untrusted = ssl.create_default_context(cafile=self.ca["exporter"])
        untrusted.load_cert_chain(*self.pem["untrusted-client"])
        pw = self.web_password
        wrong = (
            {},
            {"Authorization": basic("prometheus", "wrong")},
            {"Authorization": basic(pw, pw)},
            {"Authorization": basic("nobody", pw)},
            {"Authorization": basic("keda", pw)},
            {"Authorization": f"Bearer {pw}"},
            {"Authorization": "Basic !!!"},
        )
        for fmt in self.exporters:
            for headers in wrong:
                assert (await http.get(self.url(fmt, "/metrics"), headers=headers))[0] == 401
            assert (await http.get(self.url(fmt, "/healthz"), ssl=untrusted))[0] == 0
            assert (await http.get(f"http://127.0.0.1:{self.ports[fmt]}/metrics", headers=good))[0] == 0
            for path in ("/", "/healthz", "/readyz", "/metrics"):
                assert (await http.get(self.url(fmt, path), headers=good))[0] == 200

    async def drive_probes(self, http: Client, good: dict[str, str]) -> None:
        """/probe: honest, refused, reflecting, garbled, redirecting, slow, over TLS; targets allowed and not."""
        http_, https, raw, trap = self.http_base, self.https_base, self.raw_base, self.upstream.trap
        probes = {
            "ok": ("authed", f"{http_}/probe/ok.json", "probe_success 1"),
            "followed redirect": ("authed", f"{http_}/probe/redirect-in", "probe_success 1"),
            "reflected": ("authed", f"{http_}/probe/reflect.json", 'reason="not_a_number"'),
            "401": ("authed", f"{http_}/probe/unauthorized", 'reason="http_401"'),
            "403": ("authed", f"{http_}/probe/forbidden", 'reason="http_403"'),
            "html": ("authed", f"{http_}/probe/html", 'reason="not_json"'),
            "garbled": ("authed", f"{raw}/garbled", 'reason="connection"'),
            "slow": ("authed", f"{http_}/probe/slow", 'reason="timeout"'),
            "redirect out": ("authed", f"{http_}/probe/redirect-out", 'reason="redirect_not_allowed"'),
            "tls": ("tls", f"{https}/probe/ok-basic.json", "probe_success 1"),
            "tls, wrong CA": ("tls-wrong-ca", f"{https}/probe/ok-basic.json", 'reason="tls"'),
        }
        refused = {  # target → status: not in allowed_targets, credentials in the URL, a token in the query
            f"{trap}/steal": 403,
            f"http://probe-user:{self.canaries.new('probe-url-password')}@{http_[7:]}/probe/ok.json": 400,
            f"{http_}/probe/ok.json?token={self.canaries.new('probe-url-query')}": 200,
        }
        for fmt in self.exporters:
            for what, (module, target, wanted) in probes.items():
                status, text = await http.get(
                    self.url(fmt, "/probe"),
                    params={"module": module, "target": target},
                    headers=good | {"X-Prometheus-Scrape-Timeout-Seconds": "1"},
                )
                assert status == 200 and wanted in text, (fmt, what, text)
            for target, status in refused.items():
                params = {"module": "authed", "target": target}
                assert (await http.get(self.url(fmt, "/probe"), params=params, headers=good))[0] == status

    async def rotate_and_delete_token_files(self, http: Client, good: dict[str, str]) -> None:
        """A rotated token is read and sent; a deleted token file is a `credentials` error."""
        self.creds.tokens.add(rotated := self.canaries.new("rotated-token"))
        self.files.replace("token", rotated)
        os.remove(self.doomed_token_file)

        async def sent() -> bool:
            return any(f"Bearer {rotated}" in request for request in self.upstream.seen)

        async def missed(fmt: str) -> bool:
            status, text = await http.get(self.url(fmt, "/api/v1/snapshot"), headers=good)
            return status == 200 and reasons(json.loads(text)).get("t-token-gone") == "credentials"

        await until(sent, "the rotated token to be sent")
        for fmt in self.exporters:
            await until(lambda fmt=fmt: missed(fmt), f"exporter-{fmt} to miss the deleted token file")

    async def drive_scaler(self) -> None:
        """The scaler follows the protected exporter over TLS with its password file and client certificate and
        serves TLS itself; then odd calls, a wrong password, a vanished password file."""
        port, audit = free_port(), self.root / "audit.jsonl"
        self.audit_log = audit
        cert, key = self.pem["scaler"]
        client_cert, client_key = self.pem["scaler-client"]
        argv = ["horizon-scaler", "--listen", f"127.0.0.1:{port}", "--exporter", f"https://127.0.0.1:{self.ports['text']}",
                "--exporter-ca", self.ca["exporter"], "--exporter-cert", client_cert, "--exporter-key", client_key,
                "--exporter-username", "keda", "--exporter-password-file", self.scaler_password_file,
                "--tls-cert", cert, "--tls-key", key, "--audit-log", str(audit), "--log-level", "debug",
                "--max-staleness", "3", "--heartbeat", "1"]  # fmt: skip
        self.programs.append(Program("scaler", argv, self.env | {"GRPC_VERBOSITY": "debug"}, self.root))
        call_metadata = (("authorization", f"Bearer {self.canaries.new('grpc-call-metadata')}"),)
        mine = {"scalerAddress": "horizon-scaler:6000", "microservice": self.microservice}
        ref = pb.ScaledObjectRef(name="so", namespace="shop", scalerMetadata=mine)
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(self.scaler_ca.pem))
        stub = pb_grpc.ExternalScalerStub(channel)

        async def is_active(metadata: Mapping[str, str] = mine) -> grpc.StatusCode:
            request = pb.ScaledObjectRef(name="so", namespace="shop", scalerMetadata=metadata)
            try:
                await stub.IsActive(request, timeout=5, metadata=call_metadata)
            except grpc.aio.AioRpcError as exc:
                self.statuses.append(f"{exc.code().name}: {exc.details()}\n{exc.debug_error_string()}")
                return exc.code()
            return grpc.StatusCode.OK

        async def status(code: grpc.StatusCode, says: str = "") -> bool:
            return await is_active() == code and says in (self.statuses[-1] if says else "")

        try:
            await until(lambda: status(grpc.StatusCode.OK), "the scaler to serve", timeout=20)
            spec = await stub.GetMetricSpec(ref, timeout=5, metadata=call_metadata)
            request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricSpecs[0].metricName)
            await stub.GetMetrics(request, timeout=5, metadata=call_metadata)
            stream = stub.StreamIsActive(ref, timeout=5, metadata=call_metadata)
            assert (await stream.read()).result is True
            stream.cancel()
            odd = {  # KEDA resolves `*FromEnv` keys from the workload's environment: a copied trigger's
                # passwordFromEnv arrives holding a password.
                "passwordFromEnv": (mine | {"passwordFromEnv": self.canaries.new("keda-resolved-env")}, "INVALID"),
                "unknown key": (mine | {"apiKey": self.canaries.new("unknown-metadata-key")}, "INVALID"),
                "unknown microservice": (mine | {"microservice": "no-such"}, "NOT_FOUND"),
                "bad threshold": (mine | {"threshold": "-1", "queue": "a\nb\x00c"}, "INVALID"),
                "header injection": (mine | {"microservice": "orders\r\nX-Injected: 1"}, "NOT_FOUND"),
            }
            for what, (metadata, code) in odd.items():
                assert (await is_active(metadata)).name.startswith(code), what
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName="not-mine"), timeout=5)
            self.statuses.append(f"{info.value.code().name}: {info.value.details()}")
            async with grpc.aio.secure_channel(
                f"127.0.0.1:{port}", grpc.ssl_channel_credentials(self.other_ca.pem)
            ) as rogue:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await pb_grpc.ExternalScalerStub(rogue).IsActive(ref, timeout=3)
            self.statuses.append(f"{info.value.code().name}: {info.value.details()}")
            # The scaler's password goes wrong (401 from the exporter), then its file vanishes, then it is back.
            self.files.replace("scaler-password", self.canaries.new("wrong-scaler-password"))
            await until(lambda: status(grpc.StatusCode.UNAVAILABLE, "HTTP 401"), "the scaler to get a 401")
            os.remove(self.scaler_password_file)
            await until(lambda: status(grpc.StatusCode.UNAVAILABLE, "cannot read"), "the scaler to miss its file")
            self.files.replace("scaler-password", self.scaler_password)
            await until(lambda: status(grpc.StatusCode.OK), "the scaler to recover")
        finally:
            await channel.close()

    async def drive_reloads(self, http: Client, good: dict[str, str]) -> None:
        """Configs and web configs that do not validate, with secrets in them; then the good ones back."""

        async def logged(text: str, times: int) -> bool:
            return all(exporter.log().count(text) >= times for exporter in self.exporters.values())

        async def metric(fmt: str, line: str) -> bool:
            return line in (await http.get(self.url(fmt, "/metrics"), headers=good))[1]

        for i, broken in enumerate(self.broken_configs(), 1):
            self.files.replace("config.yml", broken)
            self.exporters["text"].proc.send_signal(signal.SIGHUP)  # the JSON one sees the file change
            await until(lambda i=i: logged("config reload failed", i), f"broken config {i} to be refused")
        self.files.replace("config.yml", self.config_text)
        ok = "horizon_exporter_config_last_reload_successful 1.0"
        for fmt in self.exporters:
            await until(lambda fmt=fmt: metric(fmt, ok), f"exporter-{fmt} to reload the good config")

        for i, (name, broken) in enumerate(self.broken_web_configs(), 1):
            self.files.replace(name, broken)

            async def refused(i: int = i) -> bool:
                for fmt in self.exporters:  # the files are looked at on requests, at most once a second
                    await http.get(self.url(fmt, "/metrics"), headers=good)
                return await logged("web config reload failed", i)

            await until(refused, f"broken web config {i} to be refused")
            self.files.replace("exporter.key", self.exporter_pem.key)
            self.files.replace("web.yml", self.web_config_text)
        ok = "horizon_exporter_web_config_last_reload_successful 1.0"
        for fmt in self.exporters:
            await until(lambda fmt=fmt: metric(fmt, ok), f"exporter-{fmt} to reload the good web config")
            for path in ("/metrics", "/api/v1/snapshot", "/readyz"):
                await http.get(self.url(fmt, path), headers=good)

    def broken_configs(self) -> list[str]:
        """Config files a reload must refuse: two auths for a target (one an inline password), invalid YAML."""
        first = self.config_data["targets"][0]
        two = {**first, "basic_auth": {"username": "u", "password": self.canaries.new("reload-inline-password")}}
        return [
            yaml.safe_dump({**self.config_data, "targets": [two, *self.config_data["targets"][1:]]}),
            f"targets:\n  - microservice: a\n    url: http://127.0.0.1:1/horizon\n"
            f"    headers: {{X-Api-Key: {self.canaries.new('reload-header')}\n    basic_auth: [\n",
        ]

    def broken_web_configs(self) -> list[tuple[str, str]]:
        """Web configs (and a server key) a reload must refuse: a plaintext password for a hash, a hash in an
        unclosed quote, a key that does not match the certificate."""
        good, hashes = self.web_config_text, self.hashes
        other = self.canaries.key(CA().issue("other"), "a server key that does not match the certificate")
        return [
            ("web.yml", good.replace(hashes["prometheus"], self.canaries.new("plaintext-at-reload"))),
            ("web.yml", good.replace(hashes["keda"], f'"{hashes["keda"]}')),
            ("exporter.key", other.key.decode()),
        ]

    def one_shots(self) -> list[OneShot]:
        """Runs that must end at start, naming what is wrong and never a secret; --check-config of the good files."""
        c, f = self.canaries, self.files
        check = ["horizon-exporter", "--config", self.config_file, "--web-config-file", self.web_config_file,
                 "--check-config"]  # fmt: skip
        shots = [OneShot("--check-config", check, {}, 0, f"target {self.microservice}")]

        def exporter(what: str, says: str, data: dict[str, Any] | str, web: str | None = None, **env: str) -> None:
            argv = [
                "horizon-exporter",
                "--config",
                f.write(f"{what}.yml", data if isinstance(data, str) else yaml.safe_dump(data)),
                "--check-config",
            ]
            if web is not None:
                argv += ["--web-config-file", f.write(f"{what}.web.yml", web)]
            shots.append(OneShot(what, argv, env, 2, says))

        plain = {"microservice": "a", "url": "http://127.0.0.1:1/horizon"}
        inline = {"username": "u", "password": "${CANARY_START}"}
        exporter(
            "yaml-error",
            "invalid YAML",
            f"targets:\n  - microservice: a\n    url: http://127.0.0.1:1/horizon\n"
            f"    basic_auth: {{username: u, password: {c.new('inline-password-at-start')}\n      password_file: /x\n",
        )
        exporter(
            "two-auths",
            "give only one of bearer_token_file or basic_auth",
            {"targets": [plain | {"bearer_token_file": "/x", "basic_auth": inline}]},
            CANARY_START=c.new("env-two-auths"),
        )
        exporter(
            "both-passwords",
            "give at most one of password or password_file",
            {"targets": [plain | {"basic_auth": inline | {"password_file": "/x"}}]},
            CANARY_START=c.new("env-both-passwords"),
        )
        exporter(
            "unknown-key",
            "targets[0].bearer_token: unknown key",
            {"targets": [plain | {"bearer_token": "${CANARY_START}"}]},
            CANARY_START=c.new("env-unknown-key"),
        )
        exporter(
            "authorization-header",
            "or an Authorization header",
            {"targets": [plain | {"bearer_token_file": "/x", "headers": {"Authorization": "Bearer ${CANARY_START}"}}]},
            CANARY_START=c.new("env-authorization-header"),
        )
        module = {"allowed_targets": ["http://127.0.0.1:1/*"], "metrics": [{"name": "x", "path": "{.x}"}]}
        exporter(
            "open-module",
            "'*' is not accepted for a module that carries credentials",
            {"modules": {"m": module | {"headers": {"X-Api-Key": "${CANARY_START}"}, "allowed_targets": ["*"]}}},
            CANARY_START=c.new("env-module-header"),
        )
        exporter(
            "basic-type",
            "expected a type other than Basic",
            {
                "modules": {
                    "m": module
                    | {"http_client_config": {"authorization": {"type": "Basic", "credentials": "${CANARY_START}"}}}
                }
            },
            CANARY_START=c.new("env-basic-type"),
        )
        garbage = f.write(
            "garbage.key", f"-----BEGIN PRIVATE KEY-----\n{c.new('garbage-key')}\n-----END PRIVATE KEY-----\n"
        )
        cert = self.pem["target-client"][0]
        tls = {"ca_file": self.ca["horizon"], "cert_file": cert}
        exporter("garbage-key", "PEM lib", {"targets": [plain | {"tls": tls | {"key_file": garbage}}]})
        exporter(
            "mismatched-key",
            "KEY_VALUES_MISMATCH",
            {"targets": [plain | {"tls": tls | {"key_file": self.pem["untrusted-client"][1]}}]},
        )
        good = Path(self.config_file).read_text()
        exporter(
            "web-plaintext", "the value is not shown", good, f"basic_auth_users:\n  prometheus: {c.new('plaintext')}\n"
        )
        exporter(
            "web-yaml-error",
            "not valid YAML",
            good,
            self.web_config_text.replace(self.hashes["keda"], f'"{self.hashes["keda"]}'),
        )
        inline_key = c.key(CA().issue("other"), "an inline web config key").key.decode()
        exporter(
            "web-inline-key",
            "KEY_VALUES_MISMATCH",
            good,
            yaml.safe_dump({"tls_server_config": {"cert_file": self.pem["exporter"][0], "key": inline_key}}),
        )
        for what, flag, says in (
            ("userinfo", f"orders=http://u:{c.new('url-password')}@127.0.0.1:1/horizon", "credentials in the URL"),
            ("query", f"http://127.0.0.1:1/horizon?token={c.new('url-query')}", "expected MICROSERVICE=URL"),
            ("named query", f"orders=http://127.0.0.1:1/horizon?token={c.new('url-query-2')}", "no query or fragment"),
        ):
            shots.append(
                OneShot(f"--target with {what}", ["horizon-exporter", "--target", flag, "--check-config"], {}, 2, says)
            )
        scaler = ["horizon-scaler", "--listen", "127.0.0.1:0", "--exporter-username", "keda"]
        no_file = [*scaler, "--exporter-password-file", str(self.root / "none")]
        shots.append(OneShot("scaler, no password file", no_file, {}, 2, "--exporter-password-file: cannot read"))
        mismatched = [*scaler, "--exporter", "https://127.0.0.1:1", "--exporter-cert", self.pem["exporter"][0],
                      "--exporter-key", self.pem["untrusted-client"][1]]  # fmt: skip
        shots.append(OneShot("scaler, mismatched key", mismatched, {}, 2, "KEY_VALUES_MISMATCH"))
        return shots

    def stop(self) -> None:
        """The scaler first, then the exporters it follows."""
        for program in reversed(self.programs):
            program.stop()


async def test_no_canary_leaves_either_process(tmp_path: Path) -> None:
    run = Run(tmp_path)
    await run.start_upstreams()
    run.start_exporters()
    http = Client(
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=run.ca["exporter"]), force_close=True)
        )
    )
    good = {"Authorization": basic("prometheus", run.web_password)}
    shots = run.one_shots()
    try:
        one_shots = asyncio.gather(*(shot.run(run.env) for shot in shots))  # beside everything else
        for fmt in run.exporters:
            await until(lambda fmt=fmt: _ok(http.get(run.url(fmt, "/healthz"))), f"exporter-{fmt} to serve")
        await run.wait_for_every_failure(http, good)
        await run.drive_exporter_auth(http, good)
        await run.drive_probes(http, good)
        await run.rotate_and_delete_token_files(http, good)
        await run.drive_scaler()
        await run.drive_reloads(http, good)
        outputs = await one_shots
    finally:
        await http.session.close()
        run.stop()
        await run.stop_upstreams()

    sources = {f"run '{shot.what}'": out for shot, out in zip(shots, outputs, strict=True)}
    for program in run.programs:
        sources |= program.output()
    sources |= {
        "the scaler's audit log": run.audit_log.read_text(),
        "HTTP answers": "\n\n".join(http.answers),
        "gRPC statuses": "\n\n".join(run.statuses),
    }

    # The search reads every channel: the marker is found in each.
    channels = ("exporter-text stderr", "exporter-json stderr", "scaler stderr", "the scaler's audit log",
                "HTTP answers", "gRPC statuses", "run '--check-config'")  # fmt: skip
    for source in channels:
        assert run.marker.found(sources[source]), f"the planted marker is not found in {source}"
    # The canaries were live: each credential reached the honest upstreams, the rotated token included.
    received = {what.removesuffix(", base64-encoded") for what in run.canaries.found("\n".join(run.upstream.seen))}
    sent = {"bearer-token", "rotated-token", "deleted-token", "horizon-password-file", "target-header",
            "inline-password", "target-authorization-header", "module-header", "module-credentials-file",
            "module-password", "probe-url-query"}  # fmt: skip
    assert sent <= received, f"never sent: {sent - received}"
    # Nothing at all reached the host of the redirect and of the disallowed probe target.
    assert not run.trap.seen, run.trap.seen

    leaks = scan(sources, run.canaries)
    assert not leaks, "secrets left the processes:\n" + "\n".join(leaks)


async def _ok(answer: Awaitable[tuple[int, str]]) -> bool:
    return (await answer)[0] == 200
