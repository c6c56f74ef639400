"""The FastAPI app: Open Inference Protocol v2 REST paths over models loaded once at start.

    GET  /v2/health/live, /v2/health/ready                 probes (public)
    GET  /v2                                               server metadata
    POST /v2/repository/index                              the models and their state
    GET  /v2/models/{name}[/versions/1]                    model metadata
    GET  /v2/models/{name}[/versions/1]/ready
    POST /v2/models/{name}[/versions/1]/infer
    POST /v2/embeddings/sign, /v2/embeddings/verify        signed embeddings (with --signing-key /
                                                           --verify-key; token required)
    GET  /metrics                                          Prometheus text format (public)
    GET  /, /static/...                                    the inspection page (public)

Every error is `{"error": "..."}` with a 4xx or 5xx status. Work per request (JSON parsing,
decoding, scoring, encoding) runs in a thread pool of `workers` threads, so the event loop
only moves bytes; torch, numpy and faiss release the GIL, so the threads use every core.
Inference speaks JSON and the protocol's binary tensor data extension (`codec.split_body`).

Without a token, a request must name this server in its `Host` header (its address, a
loopback name on a loopback address, or a name given in `allow_hosts`): a web page whose name
an attacker points at 127.0.0.1 (DNS rebinding) would otherwise reach the models from a
browser on this machine.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from normalcy import __version__
from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.modelfile import load
from normalcy.core.threads import hold
from normalcy.serve.codec import (Codec, Limits, RequestError, codec_for, encode_response, parse_inputs,
                                  requested_outputs, split_body)

if TYPE_CHECKING:
    from normalcy.embeddings.service import SigningService  # imports the signing library

STATIC = Path(__file__).parent / "static"
VERSION = "1"  # a model folder is one version of a model
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PROTECTED = ("/v2/models", "/v2/repository", "/v2/embeddings")
SUFFIX = ".model"  # `normalcy serve tx.model` serves "tx"
EXTENSIONS = ["model_repository", "binary_tensor_data"]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DISCONNECTED = 499  # nginx's status for a client that closed the connection before the reply
MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?(/ready|/infer)?/?$")
access_log = logging.getLogger("normalcy.serve.access")
log = logging.getLogger("normalcy.serve")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Scores have each detector's own scale: log-spaced buckets cover them all.
SCORE_BUCKETS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000)


@dataclass
class Model:
    name: str
    path: Path
    detector: Detector
    codec: Codec
    lock: threading.Lock | None  # for codecs that must not score concurrently


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def model_name(folder: Path | str) -> str:
    """The name a model is served under: its folder's name without a `.model` suffix (an
    exported file's without `.onnx`)."""
    name = Path(folder).resolve().name
    for suffix in (SUFFIX, ".onnx"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def load_models(model_dirs: Sequence[Path | str | tuple[str, Path | str]], limits: Limits,
                threads: int | None = None) -> dict[str, Model]:
    """Load every model folder once; a name is `model_name(folder)` unless given as (name, dir).
    `threads`: what exported models' runtime sessions use (their own setting, not torch's)."""
    models: dict[str, Model] = {}
    for item in model_dirs:
        name, path = (item[0], Path(item[1])) if isinstance(item, tuple) else (model_name(item), Path(item))
        if not NAME.match(name):
            raise DataError(f"model name {name!r} ({path}): use letters, digits, '.', '_' and '-' (at most 128), "
                            "or give one with --name NAME=DIR")
        if name in models:
            raise DataError(f"two models are named {name!r} ({models[name].path} and {path}); "
                            "give one another name with --name NAME=DIR")
        detector = _load(path, threads)
        try:
            codec = codec_for(detector, limits)
        except DataError as exc:
            raise ModelFileError(f"{path}: cannot be served: {exc}") from None
        models[name] = Model(name, path, detector, codec, None if codec.concurrent else threading.Lock())
    return models


def _load(path: Path, threads: int | None = None):
    """A model folder, or an exported image model (`normalcy.runtime`: scored without torch)."""
    from normalcy.runtime import is_exported
    from normalcy.runtime import load as load_exported

    return load_exported(path, threads) if is_exported(path) else load(path)


def set_threads(n: int) -> None:
    """Threads per scoring call (torch, faiss, BLAS), for the rest of the process: the core's
    limiter, entered and never left. A limit per call would change torch's process-wide setting
    under concurrent requests."""
    hold(n)


def create_app(model_dirs: Sequence[Path | str | tuple[str, Path | str]], token: str | None = None,
               limits: Limits = Limits(), workers: int = 2, threads: int | None = None,
               allow_hosts: Sequence[str] = (), signing: SigningService | None = None) -> FastAPI:
    """The app serving `model_dirs` (each a folder, or (name, folder)). `token`: when set,
    model and repository paths need `Authorization: Bearer <token>`. `workers`: scorings run
    at once; `threads`: threads each scoring may use (None leaves the libraries' defaults).
    `allow_hosts`: names (NAME or NAME:PORT) besides its own address that requests may give as
    `Host` when there is no token. `signing`: the keys of the embedding signing endpoints,
    which a server offers only with a token (anyone who could call them could sign vectors)."""
    allowed = parse_allowed_hosts(allow_hosts)
    if signing is not None and token is None:
        raise DataError("the embedding signing and verification endpoints need a bearer token: give --token-file "
                        "FILE (anyone who could reach them could sign vectors with this server's key)")
    models = load_models(model_dirs, limits, threads)
    if not models and signing is None:
        raise DataError("no models to serve: give at least one model folder (or --signing-key / --verify-key)")
    if threads is not None:
        set_threads(threads)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="normalcy-score")
    slots = asyncio.Semaphore(workers)
    waiting = 0

    disable_created_metrics()  # the *_created series only clutter a scrape
    registry = CollectorRegistry()
    requests = Counter("normalcy_requests", "HTTP requests by model, route and status code",
                       ["model", "route", "status"], registry=registry)
    latency = Histogram("normalcy_request_duration_seconds", "Request latency, first byte in to last byte out",
                        ["model", "route"], buckets=LATENCY_BUCKETS, registry=registry)
    scores = Histogram("normalcy_score", "Anomaly scores served, per model", ["model"], buckets=SCORE_BUCKETS,
                       registry=registry)
    flagged = Counter("normalcy_flagged", "Items labelled anomalous, per model", ["model"], registry=registry)
    inflight = Gauge("normalcy_inflight_requests", "Requests being served", registry=registry)
    for name in models:
        scores.labels(name)
        flagged.labels(name)

    @asynccontextmanager
    async def lifespan(app):
        yield
        # uvicorn has let in-flight requests finish before this runs (graceful shutdown).
        pool.shutdown(wait=True)

    app = FastAPI(title="normalcy", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.models = models
    app.state.limits = limits
    app.state.signing = signing

    def model(name: str, version: str | None = None) -> Model:
        if name not in models:
            raise HTTPError(404, f"unknown model {name!r}; this server has {', '.join(map(repr, models))}")
        if version is not None and version != VERSION:
            raise HTTPError(404, f"model {name!r} has no version {version!r}; it has version {VERSION!r}")
        return models[name]

    @app.exception_handler(HTTPError)
    async def _http_error(request, exc: HTTPError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    # --- health and metadata -----------------------------------------------------------
    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return {"ready": True}  # models are loaded before the server starts listening

    @app.get("/v2")
    async def server_metadata():
        return {"name": "normalcy", "version": __version__,
                "extensions": EXTENSIONS + (["embedding_signing"] if signing is not None else [])}

    @app.post("/v2/repository/index")
    async def repository_index():
        return [{"name": m.name, "version": VERSION, "state": "READY", "reason": ""} for m in models.values()]

    def metadata(m: Model) -> dict:
        return {"name": m.name, "versions": [VERSION], "platform": "normalcy",
                "inputs": [s.metadata() for s in m.codec.inputs],
                "outputs": [s.metadata() for s in m.codec.outputs],
                "parameters": m.codec.parameters()}

    @app.get("/v2/models/{name}")
    async def model_metadata(name: str):
        return metadata(model(name))

    @app.get("/v2/models/{name}/versions/{version}")
    async def model_version_metadata(name: str, version: str):
        return metadata(model(name, version))

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str):
        return {"name": model(name).name, "ready": True}

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: str):
        return {"name": model(name, version).name, "ready": True}

    # --- inference -----------------------------------------------------------------------
    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        return await run_infer(model(name), request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(name: str, version: str, request: Request):
        return await run_infer(model(name, version), request)

    async def run_infer(m: Model, request: Request) -> Response:
        body = await read_request(request)
        header_length = request.headers.get("inference-header-content-length")
        status, payload, json_length = await run_work(work, m, body, header_length)
        if json_length is None:
            return Response(payload, status_code=status, media_type="application/json")
        return Response(payload, status_code=status, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(json_length)})

    async def read_request(request: Request) -> bytes:
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise HTTPError(415, f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
        return await read_body(request, limits.max_body_bytes)

    async def run_work(fn, *args):
        """`fn(*args)` in the scoring pool, waiting at most the timeout for a worker and for the work."""
        nonlocal waiting
        deadline = time.monotonic() + limits.timeout_s
        if waiting >= limits.max_pending:
            raise HTTPError(503, f"server busy: {waiting} requests are waiting; try again later")
        waiting += 1
        try:
            await asyncio.wait_for(slots.acquire(), timeout=limits.timeout_s)
        except TimeoutError:
            raise HTTPError(503, f"server busy: no worker free within {limits.timeout_s:g} s") from None
        finally:
            waiting -= 1
        loop = asyncio.get_running_loop()
        future = pool.submit(fn, *args)
        # The slot is freed when the work ends, not when a request gives up on it: a scoring
        # that outlives its timeout still holds a thread.
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(slots.release))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise HTTPError(504, f"scoring took longer than {limits.timeout_s:g} s") from None

    def work(m: Model, body: bytes, header_length: str | None) -> tuple[int, bytes, int | None]:
        """Parse, decode, score and encode one request (in a worker thread): the status, the
        body and, when outputs go as binary data, the length of the body's JSON part."""
        try:
            request, binary = split_body(body, header_length)
            tensors = parse_inputs(request, m.codec.inputs, limits, binary)
            parameters = request.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise RequestError("'parameters' must be an object")
            chosen = requested_outputs(request, m.codec.outputs)
            if request.get("outputs") is not None and "overlay" in chosen:
                parameters = {**parameters, "overlay": True}
            batch = m.codec.decode(tensors, parameters)
            if m.lock is None:
                outputs = m.codec.predict(batch, parameters)
            else:
                with m.lock:
                    outputs = m.codec.predict(batch, parameters)
        except DataError as exc:
            return 400, json.dumps({"error": str(exc)}).encode(), None
        for o in outputs:
            if o.name == "score":
                observe = scores.labels(m.name).observe
                for v in np.asarray(o.data, dtype=np.float64).reshape(-1):
                    if np.isfinite(v):
                        observe(v)
            elif o.name == "label":
                flagged.labels(m.name).inc(int(np.count_nonzero(o.data)))
        header = {"model_name": m.name, "model_version": VERSION}
        if isinstance(request.get("id"), str):
            header["id"] = request["id"]
        payload, json_length = encode_response(header, outputs, chosen)
        return 200, payload, json_length

    # --- signed embeddings (normalcy.embeddings.service) -----------------------------------
    @app.post("/v2/embeddings/sign")
    async def sign_embeddings(request: Request):
        return await run_signing("sign", request)

    @app.post("/v2/embeddings/verify")
    async def verify_embeddings(request: Request):
        return await run_signing("verify", request)

    async def run_signing(action: str, request: Request) -> Response:
        if signing is None:
            raise HTTPError(404, "this server does not sign or verify embeddings (start it with --signing-key KEY "
                                 "or --verify-key KEY.pub)")
        if action == "sign" and signing.private_key is None:
            raise HTTPError(404, "this server only verifies embeddings: it was started without --signing-key")
        body = await read_request(request)
        status, payload = await run_work(sign_work, getattr(signing, action), body)
        return Response(payload, status_code=status, media_type="application/json")

    def sign_work(action, body: bytes) -> tuple[int, bytes]:
        try:
            request = split_body(body, None)[0]
            return 200, json.dumps(action(request)).encode()
        except DataError as exc:
            return 400, json.dumps({"error": str(exc)}).encode()

    # --- operations and the page --------------------------------------------------------
    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def page():
        index = STATIC / "index.html"
        if not index.is_file():
            raise HTTPError(404, "the inspection page is not installed")
        return FileResponse(index)

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    # Outermost first: access log and metrics around everything (errors included), then the
    # Host check (without a token), then auth.
    app.add_middleware(AuthMiddleware, token=token)
    if token is None:
        app.add_middleware(HostMiddleware, allowed=allowed)
    app.add_middleware(ObserveMiddleware, models=models, requests=requests, latency=latency, inflight=inflight)
    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes: by its declared length before reading,
    and while reading (a chunked body declares none)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise HTTPError(413, f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class AuthMiddleware:
    """Bearer token on model and repository paths; probes, metrics and the page stay public."""

    def __init__(self, app, token: str | None):
        self.app = app
        self.expected = None if token is None else f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if (self.expected is not None and scope["type"] == "http" and scope["path"].startswith(PROTECTED)):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                message = "missing bearer token" if not given else "wrong bearer token"
                response = JSONResponse({"error": f"{message}: send 'Authorization: Bearer <token>'"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def parse_allowed_hosts(names: Sequence[str]) -> set[tuple[str, int | None]]:
    """`--allow-host` values (NAME, NAME:PORT, [IPv6]:PORT) as (name, port or None for any)."""
    allowed = set()
    for text in names:
        parsed = split_host(text)
        if parsed is None or not parsed[0] or "/" in text or any(c.isspace() for c in text):
            raise DataError(f"--allow-host takes a host name, NAME:PORT or [IPv6]:PORT, got {text!r}")
        allowed.add(parsed)
    return allowed


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header as (lower-case name, port or None); None when it is malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""  # a bare IPv6 address has colons but no port
    if port and not (port.isascii() and port.isdigit()):
        return None
    return name.rstrip("."), int(port) if port else None


class HostMiddleware:
    """Refuses (400) requests whose Host header is neither this server's address with its port,
    a loopback name with its port (on a loopback address), nor an allowed name."""

    def __init__(self, app, allowed: set[tuple[str, int | None]]):
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not self.accepts(given, scope):
                response = JSONResponse({"error": f"Host {given!r} is not this server's address: requests must "
                                         "name it (a page on another site may point its name here); list the "
                                         "names clients use with --allow-host NAME"}, status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def accepts(self, given: str, scope) -> bool:
        parsed = split_host(given)
        if parsed is None:
            return False
        name, port = parsed
        if port is None:
            port = 443 if scope.get("scheme") == "https" else 80
        if (name, None) in self.allowed or (name, port) in self.allowed:
            return True
        server = scope.get("server")
        if not server or server[1] != port:
            return False
        address = server[0].lower()
        try:
            loopback = ipaddress.ip_address(address).is_loopback
        except ValueError:
            loopback = False
        return name == address or (loopback and name in LOOPBACK_NAMES)


class ObserveMiddleware:
    """One JSON access-log line and the request metrics per HTTP request."""

    def __init__(self, app, models, requests, latency, inflight):
        self.app, self.models = app, models
        self.requests, self.latency, self.inflight = requests, latency, inflight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.inflight.inc()
        try:
            await self.app(scope, receive, send_status)
        except ClientDisconnect:
            # The client went away before its body was read: no reply to send, nothing broken.
            status = DISCONNECTED
        finally:
            self.inflight.dec()
            elapsed = time.perf_counter() - start
            path = scope["path"]
            name, route = route_of(path)
            model = name if name in self.models else ""  # unknown names would grow the label set
            self.requests.labels(model, route, str(status)).inc()
            self.latency.labels(model, route).observe(elapsed)
            access_log.info(json.dumps({
                "time": round(time.time(), 3), "method": scope["method"], "path": path, "model": name,
                "status": status, "latency_ms": round(elapsed * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0]}))


def route_of(path: str) -> tuple[str | None, str]:
    """(model name or None, a route label with a bounded set of values)."""
    match = MODEL_PATH.match(path)
    if match:
        return match.group(1), {"/ready": "ready", "/infer": "infer"}.get(match.group(2) or "", "metadata")
    if path.startswith("/v2/health"):
        return None, "health"
    if path.startswith("/v2/repository"):
        return None, "repository"
    if path in ("/v2/embeddings/sign", "/v2/embeddings/verify"):
        return None, path.rsplit("/", 1)[1]
    if path in ("/metrics",):
        return None, "metrics"
    if path == "/" or path.startswith("/static/"):
        return None, "page"
    return None, "other"
