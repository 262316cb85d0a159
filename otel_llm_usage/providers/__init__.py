"""One module per client library: what to patch, and pure functions that read its objects.

Provider modules never touch the OpenTelemetry API; they hand plain `CallRequest` /
`CallResult` data to the recorder.
"""
