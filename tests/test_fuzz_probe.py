"""Fuzzing `/probe` and the snapshot API's query strings against the running `horizon-exporter` console script.

Property: every answer is 200, 400, 403 or 503 with a short text body — never a 500, never a dead process — and
nothing is fetched outside the module's allowed targets.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import free_port

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class _Target(http.server.BaseHTTPRequestHandler):
    """A JSON target that records every path it was asked for."""

    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = json.dumps({"count": 3, "items": [{"name": "a", "value": 1}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def exporter(tmp_path_factory) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    target_port = target.server_address[1]
    tmp: Path = tmp_path_factory.mktemp("fuzzprobe")
    (tmp / "config.yml").write_text(f"""modules:
  default:
    allowed_targets: ["http://127.0.0.1:{target_port}/ok*"]
    metrics:
      - {{name: count, path: "{{.count}}"}}
      - name: item
        type: object
        path: "{{.items[*]}}"
        labels: {{name: "{{.name}}"}}
        values: {{value: "{{.value}}"}}
""")
    port = free_port()
    log = (tmp / "exporter.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "horizon-exporter"), "--config", str(tmp / "config.yml"),
         "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "exporter.log").read_text()
            time.sleep(0.1)
    yield f"http://127.0.0.1:{target_port}", port, proc
    proc.terminate()
    proc.wait(timeout=10)
    target.shutdown()
    target.server_close()
    log.close()


def fetch(port: int, path: str, query: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}?{query}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


KEYS = ["module", "target", "after", "since", "instance", "timeout", "x", ""]
pieces = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["default", "nope", "%00", "%ZZ", "%C3%A9", "&", "=", "..", "/ok", "/other", "@", "#", "%2F"]),
)


def query_strings(target_base: str) -> st.SearchStrategy[str]:
    targets = st.one_of(
        pieces,
        st.builds(lambda tail: target_base + tail, pieces),
        st.sampled_from([target_base + "/ok", target_base + "/okay?x=1", "http://127.0.0.1:1/ok", "file:///etc"]),
    )
    pair = st.tuples(st.sampled_from(KEYS), st.one_of(targets, pieces))
    return st.lists(pair, max_size=5).map(
        lambda pairs: "&".join(f"{k}={urllib.parse.quote(v, safe='%&=/:?@#')}" for k, v in pairs)
    )


@pytest.mark.parametrize("path", ["/probe", "/api/v1/snapshot"])
def test_query_strings_get_an_answer_never_a_crash(exporter, path):
    target_base, port, proc = exporter
    _Target.seen.clear()
    statuses: set[int] = set()

    @FUZZ
    @given(query_strings(target_base))
    def check(query: str) -> None:
        if path == "/api/v1/snapshot":
            query += "&timeout=0"  # a valid `after` must not make every example wait for a change
        status, body = fetch(port, path, query)
        statuses.add(status)
        assert status in (200, 400, 403, 503), (query, status, body[:300])
        if status != 200:
            assert body.endswith(b"\n") and body.count(b"\n") <= 2 and len(body) < 1000, (query, body)
        assert proc.poll() is None

    check()
    # Only the allowed prefix was ever fetched, and the run reached more than one kind of answer.
    assert all(p.startswith("/ok") for p in _Target.seen), _Target.seen
    assert len(statuses) > 1, statuses
