"""The recorder's fleet view: a read-only Starlette app. Five pages (static HTML, one script, one style sheet, all
shipped in the package: no CDN), the JSON they read under /api/, the live stream of a device, the clips and their
spectrograms, and /metrics for Prometheus. Every value from a device reaches the page as JSON and is put into it as
text by the script; no page is ever built from data on the server."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .options import Options
from .pages import Guard, live, serve_clip
from .promexport import metrics_endpoint, registry_for

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "fleet.html", "/device/{device_id:path}": "device.html", "/events": "events.html",
         "/event/{event_id:path}": "event.html", "/charts": "charts.html"}
MAX_LIMIT = 1000
HOUR_S, DAY_S = 3600.0, 86400.0
DEFAULT_SPAN = {"hour": 2 * DAY_S, "day": 30 * DAY_S}  # counts since this long ago when `since` is not given


class BadQuery(ValueError):
    """A query parameter that cannot be used: the API answers 400 with its one line."""


def make_app(store, ingest, options: Options = Options()) -> Starlette:
    """The fleet view over `store` (the Store API of store.py), live updates from `ingest` (subscribe_live /
    unsubscribe_live; None: the live stream only sends the latest metrics). From `options`: the token (None: no
    auth; the command refuses to listen beyond loopback without one) and the clips folder (relative clip paths
    are under it)."""
    token, clips = options.token, options.clips_dir
    routes = [Route(path, _page(name), methods=["GET"]) for path, name in PAGES.items()]
    routes += [
        Route("/api/devices", api_devices, methods=["GET"]),
        Route("/api/events", api_events, methods=["GET"]),
        Route("/api/event/{event_id:path}", api_event, methods=["GET"]),
        Route("/api/counts", api_counts, methods=["GET"]),
        Route("/api/labels", api_labels, methods=["GET"]),
        Route("/api/device_ids", api_device_ids, methods=["GET"]),
        Route("/api/live/{device_id:path}", live, methods=["GET"]),
        Route("/clip/{name:path}", serve_clip, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard, token=token or None)])
    app.state.store, app.state.ingest = store, ingest
    app.state.clips = Path(clips) if clips else None
    app.state.registry = registry_for(store, ingest)
    return app


def _page(name: str):
    async def page(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})
    return page


def _json(data, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _number(request: Request, name: str) -> float | None:
    """A time parameter: unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise); None when absent."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadQuery(f"{name}={text[:40]!r} is neither unix seconds nor an ISO 8601 time") from None
        value = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(value):
        raise BadQuery(f"{name} must be a finite number")
    return value


def _count(request: Request, name: str, default: int, most: int) -> int:
    text = request.query_params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name}={text[:40]!r} is not a whole number") from None
    if not 0 <= value <= most:
        raise BadQuery(f"{name} must be 0 to {most}")
    return value


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value else None


async def api_devices(request: Request) -> Response:
    return _json(await run_in_threadpool(request.app.state.store.devices, time.time()))


async def api_events(request: Request) -> Response:
    try:
        filters = {"device_id": _text(request, "device"), "source": request.query_params.get("source"),
                   "label": _text(request, "label"), "since": _number(request, "since"),
                   "until": _number(request, "until"), "limit": _count(request, "limit", 100, MAX_LIMIT),
                   "offset": _count(request, "offset", 0, 10 ** 9)}
    except BadQuery as exc:
        return _json({"error": str(exc)}, 400)
    if filters["source"] is None:
        del filters["source"]  # absent: every source ("" is the source of a one-source device)
    return _json(await run_in_threadpool(lambda: request.app.state.store.events(**filters)))


async def api_event(request: Request) -> Response:
    event = await run_in_threadpool(request.app.state.store.event, request.path_params["event_id"])
    if event is None:
        return _json({"error": "no such event"}, 404)
    return _json(event)


async def api_counts(request: Request) -> Response:
    bucket = request.query_params.get("bucket", "hour")
    if bucket not in DEFAULT_SPAN:
        return _json({"error": "bucket must be hour or day"}, 400)
    try:
        since = _number(request, "since")
    except BadQuery as exc:
        return _json({"error": str(exc)}, 400)
    if since is None:
        size = HOUR_S if bucket == "hour" else DAY_S
        since = (time.time() - DEFAULT_SPAN[bucket]) // size * size
    label, device = _text(request, "label"), _text(request, "device")
    rows = await run_in_threadpool(lambda: request.app.state.store.counts(bucket, since, label=label,
                                                                          device_id=device))
    return _json({"bucket": bucket, "since": since, "rows": rows})


async def api_labels(request: Request) -> Response:
    return _json(await run_in_threadpool(request.app.state.store.labels))


async def api_device_ids(request: Request) -> Response:
    return _json(await run_in_threadpool(request.app.state.store.device_ids))
