"""Several emulators behind one port, each under a path prefix of its own.

The providers' paths collide (OpenAI and Mistral both serve ``/v1/chat/completions``, Groq's
``/openai/v1/...`` is an Azure OpenAI path, Bedrock and Anthropic-on-Bedrock share
``/model/{id}/invoke``), so one port serves them apart by prefix: ``/openai/v1/chat/completions`` is
the OpenAI emulator's ``/v1/chat/completions``. A single emulator may be mounted at the root.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ._server import EmulatorServer, Exchange

__all__ = ["MountedEmulators"]


class MountedEmulators(EmulatorServer):
    """One loopback server handing each request to the emulator mounted at its path's prefix.

    ``mounts`` maps a prefix (``""`` for the root, else ``"/name"``) to an emulator, which need not
    be started: it records and answers the request with the prefix taken off the path.
    """

    def __init__(self, mounts: Mapping[str, EmulatorServer], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        for prefix in mounts:
            if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
                raise ValueError(f"mounts: prefix {prefix!r} must be '' or '/name'")
        # Longest first, so a more specific prefix wins over the root.
        self._mounts = sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)

    def mount_url(self, prefix: str) -> str:
        """Where the emulator mounted at ``prefix`` is served: its own ``url`` for SDK base URLs."""
        return f"{self.url}{prefix}"

    def _serve(self, exchange: Exchange) -> None:
        path = exchange.request.path
        for prefix, emulator in self._mounts:
            if not prefix or path == prefix or path.startswith(f"{prefix}/"):
                exchange.request = dataclasses.replace(exchange.request, path=path[len(prefix) :] or "/")
                emulator._serve(exchange)
                return
        super()._serve(exchange)

    def handle(self, exchange: Exchange) -> None:
        prefixes = ", ".join(f"{prefix}/" for prefix, _ in reversed(self._mounts))
        message = f"no emulator at {exchange.request.path}; emulators are mounted at {prefixes}"
        exchange.send_json(404, {"error": {"message": message, "type": "not_found"}})
