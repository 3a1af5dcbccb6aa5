"""The recorder's web pieces that are not JSON: the token check and the security headers (one ASGI middleware), the
clip files and their spectrograms, and the live stream of one device (server-sent events fed by the ingest)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
import queue
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote_to_bytes, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from ...core.errors import EdgeAudioError

SECURITY_HEADERS = [
    (b"content-security-policy", (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"media-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                                 b"form-action 'self'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
CLIP_TYPES = {".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/ogg", ".oga": "audio/ogg",
              ".wav": "audio/wav"}
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies and the browser's EventSource from timing out
POLL_S = 0.1  # how often the stream looks at its queue (the ingest's queue.Queue is a thread's, not asyncio's)
COOKIE = "token"


class Guard:
    """ASGI middleware: every response gets the security headers; with a token, every request must carry it (an
    Authorization: Bearer header, HTTP basic auth with the token as password, or the `token` cookie). A request
    with `?token=<the token>` gets the cookie set and is sent on to the same address without it (so the browser's
    own requests, the audio element's included, carry it from then on)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if self.token is not None:
            response = self.refuse_or_redirect(scope)
            if response is not None:
                return await response(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)

    def refuse_or_redirect(self, scope) -> Response | None:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and self.matches(given[-1].encode()):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            response = RedirectResponse(scope["path"] + ("?" + rest if rest else ""), status_code=303)
            response.set_cookie(COOKIE, quote(given[-1], safe=""), httponly=True, samesite="strict", path="/")
            return response
        if self.authorised(scope):
            return None
        return PlainTextResponse("a token is needed (Authorization: Bearer, basic auth or ?token=)\n",
                                 status_code=401, headers={"WWW-Authenticate": 'Basic realm="edge-audio recorder"'})

    def authorised(self, scope) -> bool:
        headers = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), []).append(value)
        for value in headers.get("authorization", []):
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and self.matches(credentials.strip()):
                return True
            if scheme.lower() == b"basic":
                try:
                    _, _, password = base64.b64decode(credentials.strip(), validate=True).partition(b":")
                except ValueError:
                    continue
                if self.matches(password):
                    return True
        for value in headers.get("cookie", []):
            for pair in value.split(b";"):
                name, _, given = pair.strip().partition(b"=")
                if name == COOKIE.encode() and self.matches(unquote_to_bytes(given.strip(b'"'))):
                    return True
        return False

    def matches(self, candidate: bytes) -> bool:
        return hmac.compare_digest(candidate, self.token)


def clip_file(store, clips_folder: Path | None, event_id: str) -> Path | None:
    """The clip file the store knows for this event (relative paths are under the clips folder), or None. The
    path comes from the store only: nothing from the request's address ever becomes a path."""
    clip = store.clip(event_id)
    if not clip or not clip.get("path"):
        return None
    path = Path(clip["path"])
    if not path.is_absolute():
        if clips_folder is None:
            return None
        path = clips_folder / path
    return path if path.is_file() else None


async def serve_clip(request: Request) -> Response:
    """/clip/{id}: the clip's bytes with their content type (Range requests answered by FileResponse), and
    /clip/{id}.png: its spectrogram, drawn once and kept next to the clip."""
    state = request.app.state
    name = request.path_params["name"]
    path = await run_in_threadpool(clip_file, state.store, state.clips, name)
    if path is not None:
        return FileResponse(path, media_type=CLIP_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                            headers={"Cache-Control": "private, max-age=3600"})
    if name.endswith(".png"):
        event_id = name[:-4]
        path = await run_in_threadpool(clip_file, state.store, state.clips, event_id)
        if path is not None:
            try:
                png = await run_in_threadpool(spectrogram, state.store, event_id, path)
            except EdgeAudioError as exc:
                return PlainTextResponse(f"no spectrogram: {exc}\n", status_code=415)
            return FileResponse(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
    return PlainTextResponse("no clip for that event\n", status_code=404)


def spectrogram(store, event_id: str, clip: Path) -> Path:
    """The clip's log-mel spectrogram with the event's span (edge/app/clipplot.py) as a PNG next to the clip, drawn
    the first time it is asked for (into a temporary file, then renamed: two requests never see half a file).
    Where the clips folder cannot be written, the PNG goes to the system's temporary folder."""
    target = clip.with_name(clip.name + ".png")
    if target.is_file() and target.stat().st_mtime >= clip.stat().st_mtime:
        return target
    import numpy as np
    import soundfile

    from ..clipplot import png
    event = store.event(event_id) or {}
    end = event.get("end") or {}
    record = dict(end.get("clip") or {})
    record.setdefault("event_start_ts", event.get("start_ts"))
    record.setdefault("event_end_ts", event.get("end_ts"))
    try:
        samples, rate = soundfile.read(str(clip), dtype="int16", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise EdgeAudioError(f"{clip.name}: cannot read it ({exc})") from None
    title = f"{event.get('label', '')} - {event.get('device_id', '')} {event.get('source', '')}".strip()
    folder = target.parent if os.access(target.parent, os.W_OK) else Path(tempfile.gettempdir())
    target = folder / target.name
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(fd)
    try:
        png(record, np.ascontiguousarray(samples[:, 0]), rate, Path(tmp), title)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


async def live(request: Request) -> Response:
    """/api/live/{device_id}: server-sent events. First the device's latest metrics per source (kind "latest"),
    then every message the ingest hands this device's live queue, as JSON, and a comment line every
    HEARTBEAT_S. The queue is given back to the ingest when the client goes away."""
    state = request.app.state
    device_id = request.path_params["device_id"]
    latest = await run_in_threadpool(state.store.latest, device_id)
    subscription = state.ingest.subscribe_live(device_id) if state.ingest is not None else queue.Queue()

    async def stream():
        try:
            yield sse({"kind": "latest", "device_id": device_id, "payload": latest})
            beat = time.monotonic()
            while True:
                sent = False
                for _ in range(100):  # a burst goes out in one go, bounded so the heartbeat still comes
                    try:
                        item = subscription.get_nowait()
                    except queue.Empty:
                        break
                    yield sse(item)
                    sent = True
                if time.monotonic() - beat >= HEARTBEAT_S:
                    yield ": heartbeat\n\n"
                    beat = time.monotonic()
                if not sent:
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(POLL_S)
        finally:
            if state.ingest is not None:
                state.ingest.unsubscribe_live(subscription)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def sse(item) -> str:
    """One server-sent event holding `item` as JSON (one data line: JSON has no raw newlines)."""
    return f"data: {json.dumps(item, default=str, separators=(',', ':'))}\n\n"
