"""Hot reload of `modules:` on SIGHUP and when the config file changes, without dropping a scrape.

The module set is immutable and swapped whole: a probe that started with the old set finishes with it. A reload
that fails validation keeps the old set, logs the error and shows it in
`horizon_exporter_config_last_reload_successful`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config import load_config
from ..yamlreader import ConfigError
from .modules import Module
from .probe import ModuleClient

log = logging.getLogger("horizon_keda.modules")


class ModuleSet:
    """The modules in force and a client per module (TLS contexts, credential files)."""

    def __init__(self, modules: Mapping[str, Module]) -> None:
        self.modules = dict(modules)
        self.clients = {name: ModuleClient(m) for name, m in modules.items()}


class ModuleReloader(Collector):
    """Holds the current `ModuleSet`; reloads it from `path` on demand or when the file changes."""

    def __init__(self, path: str | None, modules: Mapping[str, Module], env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.current = ModuleSet(modules)
        self.generation = 0
        self.last_ok = True
        self.last_success_at = time.time()
        self._env = env
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
        """Re-read the file; swap the module set if it is valid, else keep the old one."""
        if self.path is None:
            return False
        self._stamp = self._file_stamp()
        self.generation += 1
        try:
            config = load_config(self.path, self._env)
        except ConfigError as exc:
            self.last_ok = False
            log.error("config reload failed, keeping the previous modules: %s", exc)
            return False
        for warning in config.warnings:
            log.warning("%s", warning)
        self.current = ModuleSet(config.modules)
        self.last_ok = True
        self.last_success_at = time.time()
        log.info("config reloaded: %d modules (%s)", len(config.modules), ", ".join(config.modules) or "none")
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever the file's inode, mtime or size changes (ConfigMap updates swap a symlink)."""
        while True:
            await asyncio.sleep(interval)
            if self._file_stamp() != self._stamp:
                self.reload()

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "horizon_exporter_config_last_reload_successful", "1 when the latest config (modules) reload succeeded."
        )
        ok.add_metric([], 1.0 if self.last_ok else 0.0)
        ts = GaugeMetricFamily(
            "horizon_exporter_config_last_reload_success_timestamp_seconds", "Unix time of the latest good load."
        )
        ts.add_metric([], self.last_success_at)
        yield ok
        yield ts
