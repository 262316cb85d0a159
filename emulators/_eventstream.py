"""The AWS event-stream encoding (``application/vnd.amazon.eventstream``) Amazon Bedrock streams in.

A message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), the headers,
the payload, and a CRC32 of all that precedes it. Bedrock sends string headers only: ``:event-type``,
``:content-type`` and ``:message-type`` on events; ``:exception-type`` instead of ``:event-type`` on
an error raised mid-stream.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

__all__ = ["CONTENT_TYPE", "event_frame", "event_stream_frame", "exception_frame"]

CONTENT_TYPE = "application/vnd.amazon.eventstream"

_STRING = b"\x07"  # the header value type "string"


def event_stream_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message of the AWS event-stream encoding (string headers only), with both CRCs."""
    parts = []
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        parts.append(
            struct.pack("!B", len(raw_name))
            + raw_name
            + _STRING
            + struct.pack("!H", len(raw_value))
            + raw_value
        )
    encoded = b"".join(parts)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_frame(event_type: str, payload: bytes) -> bytes:
    """An event message with a JSON payload, e.g. a ``chunk`` or a ``contentBlockDelta``."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return event_stream_frame(headers, payload)


def exception_frame(exception_type: str, payload: bytes) -> bytes:
    """An exception message: the stream's modelled error (``modelStreamErrorException``, ...)."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return event_stream_frame(headers, payload)
