"""A ready Prometheus endpoint for users without a Collector: `instrument(prometheus_port=9464)`."""

from __future__ import annotations

import logging

from opentelemetry.sdk.metrics import MeterProvider

log = logging.getLogger("otel_llm_usage")

PROMETHEUS_INSTALL = 'pip install "otel-llm-usage[prometheus]"'


class MissingExtraError(ImportError):
    """An option needs an optional dependency that is not installed; the message says what to run."""


def prometheus_meter_provider(port: int, addr: str = "0.0.0.0") -> MeterProvider | None:
    """A MeterProvider whose metrics are served at http://addr:port/metrics, or None if the port is taken.

    Raises MissingExtraError without the `prometheus` extra (opentelemetry-exporter-prometheus).
    A port already in use is the deployment's business, not a reason to stop the application:
    one warning, and the metrics stay with the meter provider given or the global one.
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise MissingExtraError(
            f"prometheus_port needs the prometheus extra ({exc.name or exc} is missing): "
            f"run {PROMETHEUS_INSTALL}"
        ) from exc
    try:
        start_http_server(port=port, addr=addr)
    except OSError as exc:
        log.warning(
            "otel-llm-usage: cannot serve Prometheus metrics on %s:%s (%s); the metrics go to the "
            "meter provider given or the global one instead",
            addr,
            port,
            exc.strerror or exc,
        )
        return None
    return MeterProvider(metric_readers=[PrometheusMetricReader()])
