"""The Dockerfile: hadolint-clean, the agreed shape, and its pip steps replayed in a clean venv so they cannot rot.

No Docker engine here: the test copies the build context exactly as .dockerignore admits it, runs each stage's
RUN lines with the image's paths mapped into a temporary directory, then runs the installed entry points — the
exporter also under a read-only root filesystem, as the Deployment runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.conftest import require_binary

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


# --- reading the Dockerfile and .dockerignore --------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == instruction]

    def env(self) -> dict[str, str]:
        pairs = [p for args in self.all("ENV") for p in shlex.split(args)]
        return dict(p.split("=", 1) for p in pairs)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        instr, _, args = (buf + stripped).partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, FROM's image with those ARGs substituted."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instr, rest in instructions(DOCKERFILE.read_text()):
        if instr == "FROM":
            image, _, name = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], rest).partition(" AS ")
            stages.append(Stage(image.strip(), name.strip() or None))
        elif not stages:
            assert instr == "ARG", f"only ARG may precede FROM, got {instr}"
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append((instr, rest))
    return args, stages


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def context_files() -> list[Path]:
    """The files `docker build .` sends, by Docker's .dockerignore rules: the last matching pattern wins, and a
    pattern matches a path when it matches the path or one of its parent directories."""
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _glob_regex(line.lstrip("!").strip("/"))))
    files = []
    for path in sorted(REPO.rglob("*")):
        rel = path.relative_to(REPO)
        if not path.is_file() or rel.parts[0] in {".git", ".venv"}:
            continue
        prefixes = ["/".join(rel.parts[: i + 1]) for i in range(len(rel.parts))]
        excluded = False
        for negate, regex in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                excluded = not negate
        if not excluded:
            files.append(rel)
    return files


# --- static checks -----------------------------------------------------------------------------------------


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or require_binary("hadolint")
    out = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(out.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    # Every ignore pragma carries its reason on the same line.
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore=" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S", line), f"unjustified ignore: {line}"


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python():
    _, stages = parse_dockerfile()
    assert len(stages) == 2
    build, final = stages
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.base), stage.base
    assert build.base == final.base and build.name
    assert [r for r in build.all("RUN") if "pip wheel" in r], "wheels are built in the first stage"
    assert final.all("COPY") == [], "the runtime stage takes nothing but the wheels (bind-mounted)"
    (install,) = final.all("RUN")
    assert f"from={build.name}" in install and "--no-index" in install


def test_runtime_stage_runs_unprivileged_on_a_read_only_filesystem():
    _, (_, final) = parse_dockerfile()
    assert re.fullmatch(r"\d+:\d+", final.all("USER")[-1]), "numeric, so runAsNonRoot can be verified"
    assert final.all("USER")[-1] == "10001:10001"
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert sorted(int(p) for args in final.all("EXPOSE") for p in args.split()) == [6000, 9108]
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["horizon-exporter"]
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_dockerignore_sends_only_what_the_build_needs():
    files = {str(p) for p in context_files()}
    assert {"pyproject.toml", "README.md", "exporter/cli.py", "external_scaler/__init__.py"} <= files
    assert not {f for f in files if f.startswith(("tests/", "deploy/", "bench/", ".ci/", "docs/"))}
    assert not {f for f in files if "__pycache__" in f or f.endswith(".pyc")}
    readme = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("readme")
    assert readme is None or readme in files, "pyproject's readme must be in the context"


# --- the image's install steps, replayed -------------------------------------------------------------------


def localize(command: str, paths: dict[str, Path]) -> str:
    """An image-side command with the image's paths mapped to local ones; pip's cache allowed (speed)."""
    command = re.sub(r"--mount=\S+\s*", "", command).replace("--no-cache-dir", "")
    for image_path, local in paths.items():
        command = re.sub(rf"(?<![\w/.]){re.escape(image_path)}(?=[/\s:]|$)", str(local), command)
    return command


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Path:
    """Run the Dockerfile's RUN steps, stage by stage, in a temporary tree; returns the runtime venv."""
    root = tmp_path_factory.mktemp("image")
    ctx = root / "src"
    for rel in context_files():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, ctx / rel)
    paths = {"/src": ctx, "/wheels": root / "wheels", "/opt/venv": root / "venv"}
    _, stages = parse_dockerfile()
    for stage in stages:
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
        for key, value in stage.env().items():
            env[key] = localize(value, paths).replace("$PATH", env["PATH"])
        workdir = Path(localize(stage.all("WORKDIR")[-1], paths)) if stage.all("WORKDIR") else root
        for run in stage.all("RUN"):
            command = localize(run, paths)
            out = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command], cwd=workdir, env=env,
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert out.returncode == 0, f"RUN {run}\n-> {command}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return paths["/opt/venv"]


def run(venv: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip


def console_scripts() -> set[str]:
    dist = importlib.metadata.distribution("horizon-keda")
    return {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}


def test_installed_image_has_no_pip_and_precompiled_bytecode(image_venv):
    assert not list((image_venv / "bin").glob("pip*")), "nothing to install with at run time"
    site = next((image_venv / "lib").glob("python3.*/site-packages"))
    assert list((site / "exporter" / "__pycache__").glob("*.pyc")), "compiled at install: no writes at start"


def test_exporter_entry_point_runs_from_the_image_install(image_venv):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    out = run(image_venv, "horizon-exporter", "--version")
    assert out.returncode == 0 and version in out.stdout, out.stderr
    out = run(image_venv, "horizon-exporter", "--help")
    assert out.returncode == 0 and "--config" in out.stdout, out.stderr


def test_default_command_accepts_the_deployed_config(image_venv):
    """ENTRYPOINT + CMD, with the config path pointing at the file the ConfigMap mounts there."""
    _, (_, final) = parse_dockerfile()
    argv = json.loads(final.all("ENTRYPOINT")[-1]) + json.loads(final.all("CMD")[-1])
    argv = [str(REPO / "deploy/base/config.yml") if a == "/etc/horizon-keda/config.yml" else a for a in argv]
    out = run(image_venv, *argv, "--check-config")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "config OK" in out.stdout


def test_image_carries_none_of_the_simulators_dependencies(image_venv):
    """horizon-whatif's engine needs only the core dependencies; its plotting extra (matplotlib) is not installed,
    and the exporter and scaler import nothing of the simulator."""
    site = next((image_venv / "lib").glob("python3.*/site-packages"))
    assert not (site / "matplotlib").exists() and not list(site.glob("numpy*"))
    out = run(image_venv, "horizon-whatif", "--help")
    assert out.returncode == 0 and "--out DIR" in out.stdout, out.stderr
    probe = "import sys, exporter.cli, external_scaler.cli; print(sorted(m for m in sys.modules if 'simulator' in m))"
    out = run(image_venv, "python", "-c", probe)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_scaler_entry_point_runs_from_the_image_install(image_venv):
    if "horizon-scaler" not in console_scripts():
        pytest.skip("pyproject declares no horizon-scaler console script yet (issue 3)")
    out = run(image_venv, "horizon-scaler", "--help")
    assert out.returncode == 0 and "--listen" in out.stdout, out.stderr


def read_only_root_available() -> bool:
    probe = "mount -o remount,bind,ro / && ! touch /.horizon-keda-rw-probe 2>/dev/null"
    try:
        out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", probe],
                             capture_output=True, timeout=30)  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_read_only(argv: list[str]) -> subprocess.Popen[bytes]:
    """Run argv with / remounted read-only in a private mount namespace (readOnlyRootFilesystem: true)."""
    script = 'mount -o remount,bind,ro / && exec "$@"'
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]


async def wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    async with aiohttp.ClientSession() as session:
        status = 0
        async with asyncio.timeout(30):
            while status != 200:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                await asyncio.sleep(0.2)
                try:
                    async with session.get(url) as resp:
                        status = resp.status
                except aiohttp.ClientConnectionError:
                    pass


@pytest.fixture
async def read_only_exporter(image_venv, horizon, tmp_path):
    """The installed exporter, read-only, polling the fake Horizon; yields its port."""
    if not read_only_root_available():
        pytest.skip("needs root and mount namespaces (unshare --mount) to remount / read-only")
    _, url = horizon
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{port}", "targets": [{"microservice": "orders",
                                                                                    "url": url}]}))  # fmt: skip
    proc = start_read_only([str(image_venv / "bin" / "horizon-exporter"), "--config", str(config)])
    try:
        await wait_ready(proc, f"http://127.0.0.1:{port}/readyz")
        yield port
    finally:
        stop(proc)


async def test_exporter_serves_with_a_read_only_root_filesystem(read_only_exporter):
    url = f"http://127.0.0.1:{read_only_exporter}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert 'horizon_microservice_processes{microservice="orders"} 9.0' in await resp.text()


async def test_scaler_serves_with_a_read_only_root_filesystem(image_venv, read_only_exporter):
    """The sidecar as the Deployment starts it, reporting SERVING through the health service the probes use."""
    if "horizon-scaler" not in console_scripts():
        pytest.skip("pyproject declares no horizon-scaler console script yet (issue 3)")
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port, metrics_port = free_port(), free_port()
    proc = start_read_only([str(image_venv / "bin" / "horizon-scaler"), f"--listen=127.0.0.1:{port}",
                            f"--exporter=http://127.0.0.1:{read_only_exporter}", "--max-staleness=10",
                            f"--metrics-listen=127.0.0.1:{metrics_port}"])  # fmt: skip
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            status = None
            async with asyncio.timeout(30):
                while status != health_pb2.HealthCheckResponse.SERVING:
                    assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                    await asyncio.sleep(0.2)
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        status = (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)).status
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        async with aiohttp.ClientSession() as session:
            async with session.get(metrics_url) as resp:
                text = await resp.text()
            async with session.get(f"http://127.0.0.1:{metrics_port}/") as page:  # the status page ships in the wheel
                assert page.status == 200 and "script-src 'sha256-" in page.headers["Content-Security-Policy"]
        assert 'grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health"' in text
    finally:
        stop(proc)
