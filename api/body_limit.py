"""Request body limits: an ASGI middleware that counts the bytes a request streams in and
answers 413 as soon as they pass the route's limit, whatever ``Content-Length`` claims."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
UPLOAD_PATHS = ("/v1/datasets",)  # raw uploads; every other body is a JSON or YAML document


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the 413 is sent, so the route stops reading."""


@dataclass(frozen=True)
class BodyLimits:
    json_bytes: int
    upload_bytes: int

    def for_path(self, path: str) -> tuple[int, str]:
        """The limit of a request to ``path`` and the setting that sets it."""
        if path.rstrip("/") in UPLOAD_PATHS:
            return self.upload_bytes, "PLOT_MAX_UPLOAD_BYTES"
        return self.json_bytes, "PLOT_MAX_JSON_BYTES"


def refusal(limit: int, setting: str, declared: int | None) -> bytes:
    """The service's ``{type, message, where}`` record for a body over ``limit``."""
    said = f"Content-Length {declared} is" if declared is not None else "the body is"
    return json.dumps({"type": "TooLargeError", "where": "body",
                       "message": f"{said} over the {limit}-byte limit ({setting})"}).encode()


def declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() else None


class BodyLimitMiddleware:
    """Wraps the app; POST/PUT/PATCH bodies are counted chunk by chunk as the route reads.

    Over the limit, the 413 goes out at once (before the app runs when ``Content-Length``
    already says too much), the route's next ``receive`` raises ``BodyTooLarge`` and
    anything the route still sends is dropped.
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit, setting = self.limits.for_path(scope["path"])
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await send_refusal(send, refusal(limit, setting, declared))
            return
        await LimitedRequest(self.app, limit, setting)(scope, receive, send)


class LimitedRequest:
    """One request's byte count and whether its response has started."""

    def __init__(self, app: ASGIApp, limit: int, setting: str) -> None:
        self.app, self.limit, self.setting = app, limit, setting
        self.received = 0
        self.started = False
        self.refused = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted_receive() -> Message:
            if self.refused:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    await self.refuse(send)
            return message

        async def guarded_send(message: Message) -> None:
            if self.refused:
                return  # the 413 already went out; the route's own answer is dropped
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not self.refused:
                raise
            log.debug("route failed after its body was refused", exc_info=True)

    async def refuse(self, send: Send) -> None:
        if not self.started:
            await send_refusal(send, refusal(self.limit, self.setting, None))
        self.refused = True
        raise BodyTooLarge


async def send_refusal(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
