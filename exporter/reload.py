"""Hot reload of the config file (`targets:`, `modules:` and `sharding:`) on SIGHUP and when the file changes.

The module set is immutable and swapped whole: a probe that started with the old set finishes with it. New
targets go to the listeners (the poller), which start, stop and keep target loops, and hand targets over when the
number of shards changed (poller.py). A reload that fails validation keeps everything as it runs, logs the error
and shows it in `horizon_exporter_config_last_reload_successful`. Other settings (listen, intervals, limits) are
read at start only; a reload that changes them says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import Config, load_config
from .jsonexp.modules import Module
from .jsonexp.probe import ModuleClient
from .yamlreader import ConfigError

log = logging.getLogger("horizon_keda.config")

# Settings a reload does not apply (the loops, listener and limits are built from them at start).
_FIXED_AT_START = ("listen", "poll_interval", "stats_interval", "stale_after", "backoff_max", "max_concurrency",
                   "max_body_bytes", "probe_concurrency", "probe_timeout_max")  # fmt: skip


class ModuleSet:
    """The modules in force and a client per module (TLS contexts, credential files)."""

    def __init__(self, modules: Mapping[str, Module]) -> None:
        self.modules = dict(modules)
        self.clients = {name: ModuleClient(m) for name, m in modules.items()}


class ConfigReloader(Collector):
    """Holds the current `ModuleSet` and config; reloads from `path` on demand or when the file changes.

    `load` re-reads the configuration as the process was started (file, environment and flags together; default:
    the file alone). Each listener gets every good new config.
    """

    def __init__(
        self,
        path: str | None,
        config: Config,
        env: Mapping[str, str] | None = None,
        load: Callable[[], Config] | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.current = ModuleSet(config.modules)
        self.generation = 0
        self.last_ok = True
        self.last_success_at = time.time()
        self.listeners: list[Callable[[Config], None]] = []
        self._env = env
        self._load = load
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def reload(self) -> bool:
        """Re-read the file; apply it if it is valid, else keep everything as it runs."""
        if self.path is None:
            return False
        self._stamp = self._file_stamp()
        self.generation += 1
        try:
            config = self._load() if self._load is not None else load_config(self.path, self._env)
        except ConfigError as exc:
            self.last_ok = False
            log.error("config reload failed, keeping the running targets and modules: %s", exc)
            return False
        for warning in config.warnings:
            log.warning("%s", warning)
        fixed = [k for k in _FIXED_AT_START if getattr(config, k) != getattr(self.config, k)]
        if fixed:
            log.warning("config reload: %s changed; they apply at the next restart", ", ".join(fixed))
        modules = ModuleSet(config.modules)
        for listener in self.listeners:  # the targets first: if they cannot be applied, nothing is
            try:
                listener(config)
            except Exception:  # a bug must not take the signal handler or the file watcher down
                log.exception("config reload: applying the new targets failed; keeping the running modules")
                self.last_ok = False
                return False
        self.config, self.current = config, modules
        self.last_ok = True
        self.last_success_at = time.time()
        log.info("config reloaded: %d targets, %d modules (%s)", len(config.targets), len(config.modules),
                 ", ".join(config.modules) or "none")  # fmt: skip
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever the file's inode, mtime or size changes (ConfigMap updates swap a symlink)."""
        while True:
            await asyncio.sleep(interval)
            if self._file_stamp() != self._stamp:
                try:
                    self.reload()
                except Exception:  # keep watching: the next change may be a good one
                    log.exception("config reload failed unexpectedly")
                    self.last_ok = False

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "horizon_exporter_config_last_reload_successful",
            "1 when the latest config reload (targets and modules) succeeded; 0 keeps the running ones.",
        )
        ok.add_metric([], 1.0 if self.last_ok else 0.0)
        ts = GaugeMetricFamily(
            "horizon_exporter_config_last_reload_success_timestamp_seconds", "Unix time of the latest good load."
        )
        ts.add_metric([], self.last_success_at)
        yield ok
        yield ts
