"""HTTP adapter: the only place that knows inbound HTTP and JSON."""
