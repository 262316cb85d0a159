"""Captured messages in the GenAI semantic conventions' JSON shape (v1.41), and the details event.

`gen_ai.input.messages` is `[{"role", "parts": [...]}]` and `gen_ai.output.messages` adds
`finish_reason`; a part is `{"type": "text", "content"}`, `{"type": "tool_call", "id", "name",
"arguments"}`, `{"type": "tool_call_response", "id", "response"}`, `{"type": "reasoning",
"content"}`, `{"type": "blob" | "uri", "modality", ...}`. Providers hand over their own request
shapes (OpenAI chat and responses, Anthropic, Gemini, Bedrock Converse, Cohere, Mistral) as plain
JSON values; the pure functions below recognise each shape by its keys, so one entry point serves
them all and anything unrecognised still becomes a text part rather than nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ._guard import report
from .semconv import SCHEMA_URL

Part = dict[str, Any]
Message = dict[str, Any]

EVENT_NAME = "gen_ai.client.inference.operation.details"
_SCOPE = "otel_llm_usage"
_ROLES = {"model": "assistant", "developer": "system", "chatbot": "assistant", "function": "tool"}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def _arguments(value: Any) -> Any:
    """Tool arguments as an object when they are JSON (OpenAI sends a string), else as given."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _modality(mime: object) -> str:
    kind = mime.split("/", 1)[0] if isinstance(mime, str) else ""
    return kind if kind in ("image", "audio", "video") else "file"


def part_of(block: Any) -> Part | None:
    """One content block of any supported provider as a semconv part (None for an empty one)."""
    if isinstance(block, str):
        return {"type": "text", "content": block}
    if not isinstance(block, Mapping):
        return None if block is None else {"type": "text", "content": _text(block)}
    kind = block.get("type")
    # OpenAI chat / responses, Anthropic, Cohere, Mistral text blocks; Gemini and Bedrock `{"text"}`.
    if kind in ("text", "input_text", "output_text") or (kind is None and isinstance(block.get("text"), str)):
        return {"type": "text", "content": block.get("text", "")}
    if kind in ("thinking", "reasoning") or block.get("thought") is True:
        content = block.get("thinking") or block.get("text") or block.get("summary") or ""
        if isinstance(content, list):  # OpenAI responses: a summary of text parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        return {"type": "reasoning", "content": _text(content)}
    if kind in ("tool_use", "server_tool_use"):  # Anthropic
        return {
            "type": "tool_call",
            "id": block.get("id"),
            "name": block.get("name"),
            "arguments": block.get("input"),
        }
    if kind == "function_call":  # OpenAI responses
        return {
            "type": "tool_call",
            "id": block.get("call_id") or block.get("id"),
            "name": block.get("name"),
            "arguments": _arguments(block.get("arguments")),
        }
    if kind == "tool_result":  # Anthropic
        return {
            "type": "tool_call_response",
            "id": block.get("tool_use_id"),
            "response": _flat(block.get("content")),
        }
    if kind == "function_call_output":  # OpenAI responses
        return {"type": "tool_call_response", "id": block.get("call_id"), "response": block.get("output")}
    call = block.get("function_call") or block.get("functionCall")  # Gemini
    if isinstance(call, Mapping):
        return {
            "type": "tool_call",
            "id": call.get("id"),
            "name": call.get("name"),
            "arguments": call.get("args"),
        }
    answer = block.get("function_response") or block.get("functionResponse")  # Gemini
    if isinstance(answer, Mapping):
        return {"type": "tool_call_response", "id": answer.get("id"), "response": answer.get("response")}
    use = block.get("toolUse")  # Bedrock Converse
    if isinstance(use, Mapping):
        return {
            "type": "tool_call",
            "id": use.get("toolUseId"),
            "name": use.get("name"),
            "arguments": use.get("input"),
        }
    result = block.get("toolResult")  # Bedrock Converse
    if isinstance(result, Mapping):
        return {
            "type": "tool_call_response",
            "id": result.get("toolUseId"),
            "response": _flat(result.get("content")),
        }
    return _media(block, kind)


def _media(block: Mapping[str, Any], kind: Any) -> Part:
    """Images, audio and files: a `uri` part for a link, a `blob` part for inline data."""
    if kind == "image_url":  # OpenAI chat
        url = block.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if isinstance(url, str) and url.startswith("data:"):
            data_type = url[5:].split(";", 1)[0]
            return {
                "type": "blob",
                "modality": "image",
                "mime_type": data_type,
                "content": url.split(",", 1)[-1],
            }
        return {"type": "uri", "modality": "image", "uri": url}
    if kind == "input_image" and isinstance(block.get("image_url"), str):  # OpenAI responses
        return {"type": "uri", "modality": "image", "uri": block["image_url"]}
    source = block.get("source")  # Anthropic image / document
    if kind in ("image", "document") and isinstance(source, Mapping):
        if source.get("type") == "url":
            modality = "image" if kind == "image" else _modality(source.get("media_type"))
            return {"type": "uri", "modality": modality, "uri": source.get("url")}
        mime = source.get("media_type")
        return {"type": "blob", "modality": _modality(mime), "mime_type": mime, "content": source.get("data")}
    inline = block.get("inline_data") or block.get("inlineData")  # Gemini
    if isinstance(inline, Mapping):
        mime = inline.get("mime_type") or inline.get("mimeType")
        return {"type": "blob", "modality": _modality(mime), "mime_type": mime, "content": inline.get("data")}
    link = block.get("file_data") or block.get("fileData")  # Gemini
    if isinstance(link, Mapping):
        mime = link.get("mime_type") or link.get("mimeType")
        return {"type": "uri", "modality": _modality(mime), "mime_type": mime,
                "uri": link.get("file_uri") or link.get("fileUri")}  # fmt: skip
    return {"type": "text", "content": _text(dict(block))}


def _flat(content: Any) -> Any:
    """A tool result's content: its text when it is a list of text blocks, else as given."""
    if isinstance(content, list):
        texts = [part_of(item) for item in content]
        if texts and all(p is not None and p.get("type") == "text" for p in texts):
            return "".join(str(p["content"]) for p in texts if p is not None)
    return content


def parts_of(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, list | tuple):
        return [p for p in (part_of(block) for block in content) if p is not None]
    part = part_of(content)
    return [part] if part is not None else []


def _role(message: Mapping[str, Any], default: str) -> str:
    role = message.get("role")
    return _ROLES.get(role, role) if isinstance(role, str) else default


def message_of(message: Any, default_role: str = "user") -> Message:
    """One message of any supported provider's request or response as a semconv message."""
    if not isinstance(message, Mapping):
        return {"role": default_role, "parts": parts_of(message)}
    kind = message.get("type")
    if kind in ("function_call", "function_call_output", "reasoning"):  # OpenAI responses items
        role = "tool" if kind == "function_call_output" else "assistant"
        return {"role": role, "parts": parts_of(message)}
    role = _role(message, default_role)
    parts = parts_of(message.get("parts") if "parts" in message else message.get("content"))  # Gemini
    for call in message.get("tool_calls") or ():  # OpenAI chat, Mistral, Cohere
        if isinstance(call, Mapping):
            fn = call.get("function")
            fn = fn if isinstance(fn, Mapping) else {}
            parts.append(
                {"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                 "arguments": _arguments(fn.get("arguments"))}
            )  # fmt: skip
    if role == "tool" and "tool_call_id" in message:  # OpenAI chat tool result
        response = message.get("content")
        parts = [
            {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": _flat(response)}
        ]
    return {"role": role, "parts": parts}


def input_messages(value: Any) -> list[Message]:
    """A request's messages (a prompt string, a list of strings, or provider messages)."""
    if isinstance(value, Mapping) and not {"role", "parts", "content", "type"} & value.keys():
        # Not a message at all (a completion's prompt and suffix, say): its JSON as one text part.
        return [{"role": "user", "parts": [{"type": "text", "content": _text(dict(value))}]}]
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        value = [value]
    if value and all(isinstance(item, str) for item in value):  # Gemini: a list of prompts is one turn
        return [{"role": "user", "parts": [{"type": "text", "content": item} for item in value]}]
    return [message_of(item) for item in value if item is not None]


def output_messages(value: Any, finish_reasons: Sequence[str] | None = None) -> list[Message]:
    """A response's messages, each with its finish_reason (the conventions require the key).

    A streamed response's text is gathered without its reason; the call's finish reasons, one per
    choice in order, fill it in.
    """
    items = value if isinstance(value, list | tuple) else [value]
    reasons = list(finish_reasons or ())
    out = []
    for index, item in enumerate(items):
        message = message_of(item, "assistant")
        reason = item.get("finish_reason") if isinstance(item, Mapping) else None
        if not (isinstance(reason, str) and reason) and index < len(reasons):
            reason = reasons[index]
        message["finish_reason"] = reason if isinstance(reason, str) and reason else "unknown"
        out.append(message)
    return out


def to_json(messages: list[Message], limit: int) -> str:
    text = json.dumps(messages, default=str, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "…[truncated]"


def event_attributes(request: Any, end_attributes: Mapping[str, Any], outputs: Any) -> dict[str, Any]:
    """The details event's attributes: the call's GenAI attributes and its structured messages.

    `request` is the call's CallRequest; `end_attributes` what the recorder set when it ended.
    """
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": request.operation,
        "gen_ai.provider.name": request.provider,
    }
    if request.model:
        attrs["gen_ai.request.model"] = request.model
    if request.server_address:
        attrs["server.address"] = request.server_address
        if request.server_port:
            attrs["server.port"] = request.server_port
    for source in (request.attributes or {}, end_attributes):
        attrs.update((k, v) for k, v in source.items() if k.startswith(("gen_ai.", "error.")))
    attrs.pop("gen_ai.input.messages", None)
    attrs.pop("gen_ai.output.messages", None)
    if request.input_messages is not None:
        attrs["gen_ai.input.messages"] = input_messages(request.input_messages)
    if outputs is not None:
        attrs["gen_ai.output.messages"] = output_messages(
            outputs, end_attributes.get("gen_ai.response.finish_reasons")
        )
    return attrs


_event_logger: Any = None


def use_logger_provider(logger_provider: Any) -> None:
    """Send the events to this LoggerProvider (None: the global one, resolved when first used)."""
    global _event_logger
    from opentelemetry._logs import get_logger

    from .version import __version__

    _event_logger = (
        None if logger_provider is None else get_logger(_SCOPE, __version__, logger_provider, SCHEMA_URL)
    )


def emit_event(span: Any, attributes: dict[str, Any]) -> None:
    """Emit the details event through the Logs API, in the call span's context.

    The global logger provider is read through the API's proxy, so a provider set after
    `instrument()` (as `opentelemetry-instrument` and most set-ups do) still receives the events.
    """
    global _event_logger
    from opentelemetry import trace
    from opentelemetry._logs import LogRecord, SeverityNumber, get_logger

    from .version import __version__

    try:
        if _event_logger is None:
            _event_logger = get_logger(_SCOPE, __version__, schema_url=SCHEMA_URL)
        _event_logger.emit(
            LogRecord(
                event_name=EVENT_NAME,
                context=trace.set_span_in_context(span),
                severity_number=SeverityNumber.DEBUG,  # the conventions ask for DEBUG (5)
                attributes=attributes,
            )
        )
    except Exception as exc:  # a logs SDK too old for events, a failing exporter: the call goes on
        report("content.event", exc)
