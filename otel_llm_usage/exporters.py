"""A ready Prometheus endpoint for users without a Collector: `instrument(prometheus_port=9464)`."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider


def prometheus_meter_provider(port: int, addr: str = "0.0.0.0") -> MeterProvider:
    """A MeterProvider whose metrics are served at http://addr:port/metrics.

    Requires the `prometheus` extra (opentelemetry-exporter-prometheus).
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    start_http_server(port=port, addr=addr)
    return MeterProvider(metric_readers=[PrometheusMetricReader()])
