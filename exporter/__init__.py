"""horizon-keda exporter: polls Laravel Horizon's JSON API and serves per-microservice Prometheus gauges."""

__version__ = "0.1.0"
