"""The web app: one HTML page, a settings endpoint and four job endpoints (Starlette, served by uvicorn).

``POST /api/fractalize``, ``POST /api/codec`` and ``POST /api/ifs`` take a multipart form (an
``image`` file — for the IFS tab also a point file — or ``sample=1``, plus the settings);
``POST /api/vae`` takes only settings (digits, scale, temperature, seed). All answer JSON: the
results as data URLs, so nothing is stored on the server. A refusal (any :class:`CollageError`) is ``400 {"error": "..."}``; anything
unexpected is logged and answered ``500`` with a generic message, and the server keeps serving.
The work runs in a worker thread, one job at a time, so two users do not fight over the cores.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...errors import CollageError, ConfigurationError, ImageError
from . import jobs

STATIC = Path(__file__).resolve().parent / "static"
#: Room for the form's other fields and the multipart boundaries beyond the image itself.
FORM_OVERHEAD = 64 * 1024
#: The page loads nothing from elsewhere; images arrive as data URLs.
CSP = "default-src 'self'; img-src 'self' data:; media-src 'self' data:; object-src 'none'; base-uri 'none'"
INTERNAL_ERROR = "internal error: the job failed unexpectedly (it is logged); the server is still running, try again"

log = logging.getLogger("neural_collages.web")


def create_app() -> Starlette:
    """The ASGI application."""
    lock = threading.Lock()

    def exclusive(fn, *args):
        with lock:  # one job at a time; later requests wait their turn in their own worker thread
            return fn(*args)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP})

    async def settings(request: Request):
        return JSONResponse(jobs.settings())

    async def fractal(request: Request):
        async def work():
            form = await _read_form(request)
            range_size = _int_field(form, "range", jobs.RANGE_SIZES, 8)
            zoom = _int_field(form, "zoom", jobs.ZOOMS, 4)
            steps = _int_field(form, "steps", range(jobs.MAX_STEPS + 1), jobs.DEFAULT_STEPS)
            isometries = _choice_field(form, "isometries", tuple(jobs.ISOMETRY_SETS), "all")

            def job():
                upload = jobs.read_upload(*form["upload"], max_side=jobs.ART_MAX_SIDE)
                return jobs.fractal_job(upload, range_size, zoom, isometries, steps)

            return await run_in_threadpool(exclusive, job)

        return await _answer(work)

    async def codec(request: Request):
        async def work():
            form = await _read_form(request)
            name = _choice_field(form, "codec", jobs.CODECS, "pifs")
            levels = jobs.quality_levels(name, jobs.MODEL if name == "neural" else None)
            quality = _int_field(form, "quality", levels, levels[len(levels) // 2])
            scale = _int_field(form, "scale", jobs.ZOOMS, 4)

            def job():
                upload = jobs.read_upload(*form["upload"], max_side=jobs.CODEC_MAX_SIDE)
                return jobs.codec_job(upload, name, quality, scale)

            return await run_in_threadpool(exclusive, job)

        return await _answer(work)

    async def ifs(request: Request):
        async def work():
            form = await _read_form(request)
            maps = _int_field(form, "maps", jobs.IFS_MAPS, 4)
            method = _choice_field(form, "method", jobs.IFS_METHODS, "fit")

            def job():
                return jobs.ifs_job(*form["upload"], maps, method)

            return await run_in_threadpool(exclusive, job)

        return await _answer(work)

    async def vae(request: Request):
        async def work():
            form = await _read_form(request)
            count = _int_field(form, "count", jobs.VAE_COUNTS, 16)
            scale = _int_field(form, "scale", jobs.VAE_SCALES, 10)
            temperature = _choice_field(form, "temperature", jobs.VAE_TEMPERATURES, "1.0")
            seed = _int_field(form, "seed", jobs.VAE_SEEDS, 0)
            return await run_in_threadpool(exclusive, jobs.vae_job, count, scale, temperature, seed)

        return await _answer(work)

    routes = [
        Route("/", index),
        Route("/api/settings", settings),
        Route("/api/fractalize", fractal, methods=["POST"]),
        Route("/api/codec", codec, methods=["POST"]),
        Route("/api/ifs", ifs, methods=["POST"]),
        Route("/api/vae", vae, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


async def _answer(work) -> JSONResponse:
    """Run ``work`` and turn its result or its error into JSON."""
    try:
        return JSONResponse(await work())
    except CollageError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except Exception:
        log.exception("web job failed")
        return JSONResponse({"error": INTERNAL_ERROR}, status_code=500)


async def _read_form(request: Request) -> dict:
    """The form's text fields, and ``"upload"``: (file bytes or None, file name, use the sample?).

    The body is read with a cap first (Content-Length can be absent or false), so an oversized
    upload is refused without being parsed or stored.
    """
    limit = jobs.MAX_UPLOAD_BYTES + FORM_OVERHEAD
    too_big = ImageError(f"the upload is larger than the {jobs.MAX_UPLOAD_BYTES // 2**20} MB limit")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big

    async def replay():
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=20) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            upload = form.get("image")
            data = None if isinstance(upload, str) or upload is None else await upload.read()
            filename = None if data is None else upload.filename
    except (MultiPartException, HTTPException) as exc:
        raise ImageError(f"the form could not be read ({getattr(exc, 'detail', None) or exc})") from None
    use_sample = fields.get("sample", "") in ("1", "true", "on")
    fields["upload"] = (None if use_sample else data, filename, use_sample)
    return fields


def _int_field(form: dict, name: str, allowed, default: int) -> int:
    text = form.get(name, "").strip()
    if not text:
        return default
    allowed = tuple(allowed)
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in allowed:
        span = f"{allowed[0]}..{allowed[-1]}" if len(allowed) > 4 else ", ".join(map(str, allowed))
        raise ConfigurationError(f"{name} must be one of {span}, got {text[:20]!r}")
    return value


def _choice_field(form: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = form.get(name, "").strip() or default
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, got {value[:20]!r}")
    return value
