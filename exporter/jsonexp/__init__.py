"""A general JSON exporter in json_exporter's format: modules of JSONPath metrics served through `/probe`."""
