__version__ = "0.1.0"

# The OpenTelemetry instrumentation scope of every span and metric this package makes.
INSTRUMENTATION_NAME = "otel_llm_usage"
