"""horizon-keda external scaler: a KEDA ExternalScaler gRPC sidecar fed by the exporter's snapshot."""
