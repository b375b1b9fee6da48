"""The comparator's HTTP server: a JSON API over the experiments under the given paths, and the single page.

Routes (JSON unless said; errors are ``{"error": "one line"}`` with 400 for bad input, 401 for a missing or wrong
token, 404 for an unknown experiment, view, job or file and for a refused path, 500 with the error's type for a
failure of the server):

- ``GET /``: the page; ``GET /static/<file>``: its files; ``GET /static/plotly.min.js``: the chart library from the
  installed ``plotly`` wheel (nothing is loaded from the internet).
- ``GET /api/experiments``: every experiment row and the table's columns; ``GET /api/experiments/{id}``: one row.
- ``GET /api/experiments/{id}/{view}``: a view's numbers (``classwise``, ``matrix?split=``, ``cka``,
  ``projection?method=&n=`` (n: 500, 1000 or 2000), ``attack``, ``facts``, ``samples``; whichever the row lists in
  ``views``), computed by :mod:`expunge.ui.analysis`; ``GET /api/experiments/{id}/thumb/{index}.png``: a training image.
- ``GET /api/methods``: the registered methods (name, tasks, argument defaults) and whether Build is on.
- ``POST /api/build``, ``GET /api/build``, ``GET /api/build/{job}``, ``GET /api/build/{job}/events`` (server-sent
  events): unlearning runs started from the page (:mod:`expunge.ui.build`).

Security: without a token only requests whose ``Host`` is a loopback name are answered (a web page elsewhere cannot
reach the server through DNS rebinding); with a token every request, the page and its files included, needs
``Authorization: Bearer <token>`` or ``?token=<token>`` (compared in constant time). A request the browser marks
``Sec-Fetch-Site: cross-site`` or ``same-site`` (an image, form or script on another site) is refused before any
work. ``POST`` needs a JSON body of at most :data:`MAX_BODY_BYTES` (its length checked before and while it is read)
and, when the browser sends an ``Origin``, the server's own origin. Files are served only
from the package's ``static`` folder; experiment files only through the data layer's ``resolve``, which refuses
paths outside the given roots; model files are read with :func:`expunge.load_model`, never unpickled.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import mimetypes
import re
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import ConfigError
from . import check_token, default_store, is_loopback
from .sources import Refused, Workspace

STATIC = Path(__file__).parent / "static"
SPLITS = ("forget", "retain", "test")
PROJECTIONS = ("pca", "tsne", "umap")
MAX_POINTS = 2000
MAX_BODY_BYTES = 1_000_000


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# -- views --------------------------------------------------------------------------------------------------------

def _choice(name: str, allowed: Sequence[str], default: str) -> Callable[[str | None], str]:
    def parse(value: str | None) -> str:
        if value is None:
            return default
        if value not in allowed:
            raise ApiError(400, f"{name}={value!r} is not allowed; expected one of {', '.join(allowed)}")
        return value
    return parse


POINTS = ("500", "1000", "2000")      # the projection sizes the page asks for (each computed one is cached on disk)


def _points(value: str | None) -> int:
    if value is None:
        return MAX_POINTS
    if value not in POINTS:
        raise ApiError(400, f"n={value!r} is not allowed; expected one of {', '.join(POINTS)}")
    return int(value)


def _projection_method(value: str | None) -> str:
    method = _choice("method", PROJECTIONS, "pca")(value)
    if method == "umap":
        import importlib.util

        if importlib.util.find_spec("umap") is None:
            raise ApiError(400, "method='umap' needs the umap-learn package; use pca or tsne, or pip install "
                                "umap-learn")
    return method


# the query parameters of the views that take any (a view not named here takes none); a new view is a function
# of expunge.ui.analysis named as the view, listed by the rows that support it
VIEW_PARAMS: dict[str, dict[str, Callable[[str | None], Any]]] = {
    "matrix": {"split": _choice("split", SPLITS, "forget")},
    "projection": {"method": _projection_method, "n": _points},
}
NOT_VIEWS = ("thumb",)      # names in a row's views that are not JSON views (thumbnails are images)


def view_params(view: str, query: dict[str, str]) -> dict[str, Any]:
    """The checked keyword arguments of ``view`` from a request's query (``token`` is not a parameter)."""
    spec = VIEW_PARAMS.get(view, {})
    unknown = sorted(set(query) - set(spec) - {"token"})
    if unknown:
        allowed = ", ".join(spec) or "none"
        raise ApiError(400, f"unknown parameter {unknown[0]!r} for view {view!r}; allowed: {allowed}")
    return {k: parse(query.get(k)) for k, parse in spec.items()}


def view_data(ws: Any, exp_id: str, view: str, params: dict[str, Any]) -> Any:
    """The JSON-ready numbers of ``view`` for experiment ``exp_id`` (ApiError 404 when the row lacks the view)."""
    from . import analysis

    row = experiment_row(ws, exp_id)
    supported = [v for v in row.get("views") or [] if v not in NOT_VIEWS]
    if view not in supported:
        raise ApiError(404, f"experiment {exp_id!r} has no view {view!r}; it has: {', '.join(supported) or 'none'}")
    fn = getattr(analysis, view, None)
    if not callable(fn):
        raise ApiError(404, f"no view named {view!r}")
    return jsonable(fn(ws, exp_id, **params))


def experiment_row(ws: Any, exp_id: str) -> dict[str, Any]:
    try:
        return ws.experiment(exp_id)
    except KeyError:
        raise ApiError(404, f"unknown experiment {exp_id!r}") from None


def experiments_payload(ws: Any) -> dict[str, Any]:
    """``/api/experiments``: the rows and the table's columns (the data layer's, then any other score the rows
    carry, such as a language model's truth ratio)."""
    from ..report import GENERATION_COLUMNS, IAM_COLUMNS, LANGUAGE_COLUMNS, REGRESSION_COLUMNS
    from .sources import COLUMNS

    rows = ws.experiments()
    known = {c["key"] for c in COLUMNS}
    reported = REGRESSION_COLUMNS + LANGUAGE_COLUMNS + GENERATION_COLUMNS + IAM_COLUMNS
    labels = {key: label for label, key in reported}
    order = {key: i for i, (_, key) in reversed(list(enumerate(reported)))}     # the reports' order, then by name
    extra = sorted({k for r in rows for k in (r.get("scores") or {}) if k not in known},
                   key=lambda k: (order.get(k, len(order)), k))
    columns = [dict(c) for c in COLUMNS] + [{"key": k, "label": labels.get(k, k.replace("_", " "))} for k in extra]
    return {"experiments": rows, "columns": columns}


def methods_payload() -> list[dict[str, Any]]:
    """The registered methods: name, summary, tasks and argument defaults (what the Build form offers: no
    ``retrain``, which every run has as its oracle, and no method that forgets nothing, such as ``identity``)."""
    from ..methods.base import defaults, registered

    out = []
    for name, cls in registered().items():
        if name == "retrain" or cls.needs_special_original or not cls.forgets:
            continue
        out.append({"name": name, "summary": cls.summary, "tasks": list(cls.tasks),
                    "args": jsonable(defaults(cls.Args)), "grid": jsonable(dict(cls.grid)),
                    "kinds": list(getattr(cls, "kinds", ()) or ())})
    return out


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None, tuples as lists, numpy scalars and arrays as Python values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):          # numpy arrays and scalars, torch tensors
        return jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return repr(value) if callable(value) else str(value)


def json_response(value: Any, status: int = 200) -> Response:
    """``value`` as JSON; serialised directly when it is JSON-ready already (the usual case: one pass over a large
    experiment list), through :func:`jsonable` otherwise."""
    try:
        body = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError):
        body = json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json")


async def limited_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (ApiError 400) as soon as its declared or read length passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise ApiError(400, f"the request body is {int(declared):,} bytes; at most {limit:,} are allowed")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(400, f"the request body is over {limit:,} bytes; at most {limit:,} are allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def one_line(message: Any) -> str:
    return " ".join(str(message).split()) or "error"


# -- static files -------------------------------------------------------------------------------------------------

def plotly_js() -> Path:
    """The Plotly.js bundle shipped in the installed plotly wheel."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ApiError(404, f"plotly.min.js is missing from the installed plotly package ({path})")
    return path


def static_file(name: str) -> Path:
    """A file of the page under ``static/``; ApiError 404 for anything else (``..``, absolute paths, symlinks out)."""
    if name == "plotly.min.js":
        return plotly_js()
    parts = name.split("/")
    if not name or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise ApiError(404, f"no static file {name!r}")
    root = STATIC.resolve()
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file():
        raise ApiError(404, f"no static file {name!r}")
    return path


def media_type(path: Path) -> str:
    if path.suffix in (".js", ".mjs"):
        return "text/javascript; charset=utf-8"
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


# -- security -----------------------------------------------------------------------------------------------------

def _host_name(header: str) -> str:
    """The host of a ``Host`` header without its port (``[::1]:8765`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: the token (when set), loopback ``Host`` names (when not), same-origin JSON posts."""

    def __init__(self, app: Any, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):       # lifespan
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        problem = self.refuse(scope, headers)
        if problem is not None:
            status, message = problem
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return await JSONResponse({"error": message}, status_code=status, headers=extra)(scope, receive, send)
        return await self.app(scope, receive, send)

    def refuse(self, scope: dict, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        site = headers.get("sec-fetch-site", "").strip().lower()
        if site in ("cross-site", "same-site"):       # another site's page (an <img>, a form, a script) asking
            return 400, f"cross-site request refused (Sec-Fetch-Site: {site}); open the comparator's own page"
        if self.token is None:
            if not is_loopback(_host_name(host)):
                return 400, (f"host {host!r} is not allowed: without --token the comparator answers only requests "
                             "to localhost or 127.0.0.1")
        else:
            given = None
            auth = headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            else:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = (query.get("token") or [None])[0]
            if given is None:
                return 401, "a token is needed: send Authorization: Bearer <token> or add ?token=<token>"
            if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8")):
                return 401, "wrong token"
        if scope.get("method") == "POST":
            origin = headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != host:
                return 400, f"cross-site request refused (origin {origin!r} is not this server's)"
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return 400, "POST bodies must be JSON (Content-Type: application/json)"
        return None


# -- the app ------------------------------------------------------------------------------------------------------

def create_app(paths: Sequence[str | Path], store: str | Path | None = None, token: str | None = None,
               allow_build: bool = True, *, workspace: Any = None, builder: Any = None) -> FastAPI:
    """The comparator over ``paths`` (bench directories, run stores, audit outputs, or folders holding them).

    ``store``: the run store that runs built from the page are recorded in (and read from; default
    :func:`default_store`). ``token``: when set, every request needs it. ``allow_build``: whether ``POST
    /api/build`` starts runs. ``workspace`` and ``builder`` replace the data layer's ``Workspace`` and the build
    queue (tests)."""
    paths = [Path(p) for p in paths] or [Path(".")]
    store = Path(store).expanduser() if store is not None else default_store(paths)
    token = check_token(token)
    if workspace is None:
        if allow_build and not store.exists():
            from ..store import RunStore

            with RunStore(store):        # created now, so that the runs built from the page are read from it
                pass
        workspace = Workspace(paths, store=store if store.exists() else None)
    ws = workspace
    if builder is None and allow_build:
        from .build import Builder

        builder = Builder(ws, store)
    state: dict[str, Any] = {}

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        ws.experiments()          # read the sources once before serving: the page's first table comes quicker
        yield
        if builder is not None:
            builder.close()

    app = FastAPI(title="expunge comparator", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.workspace, app.state.builder = ws, builder

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": one_line(e.message)}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        message = e.detail if isinstance(e.detail, str) else "not found"
        if e.status_code == 404:
            message = "not found"
        return JSONResponse({"error": one_line(message)}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = (e.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return JSONResponse({"error": one_line(f"{where}: {first.get('msg', 'invalid')}")}, status_code=400)

    @app.exception_handler(Refused)
    async def _refused(_: Request, e: Refused) -> JSONResponse:
        """A path the data layer refuses (outside the roots, a symlink out of them): 404."""
        return JSONResponse({"error": one_line(e)}, status_code=404)

    @app.exception_handler(ConfigError)
    async def _config_error(_: Request, e: ConfigError) -> JSONResponse:
        return JSONResponse({"error": one_line(e)}, status_code=400)

    @app.exception_handler(Exception)
    async def _failure(_: Request, e: Exception) -> JSONResponse:
        """Anything else is a failure of the server (500) named by its type, never passed off as bad input."""
        return JSONResponse({"error": one_line(f"{type(e).__name__}: {e}")}, status_code=500)

    # -- the page ---------------------------------------------------------------------------------------------
    @app.get("/")
    def page() -> Response:
        return Response(static_file("index.html").read_bytes(), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer"})

    @app.get("/static/{name:path}")
    def static(name: str) -> Response:
        path = static_file(name)
        return Response(path.read_bytes(), media_type=media_type(path),
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # -- experiments ------------------------------------------------------------------------------------------
    @app.get("/api/experiments")
    def experiments() -> Response:
        return json_response(experiments_payload(ws))

    @app.get("/api/experiments/{exp_id}")
    def experiment(exp_id: str) -> JSONResponse:
        return JSONResponse(jsonable(experiment_row(ws, exp_id)))

    @app.get("/api/experiments/{exp_id}/thumb/{name}")
    def thumb(exp_id: str, name: str) -> Response:
        from . import analysis

        m = re.fullmatch(r"([0-9]{1,9})\.png", name)
        if not m:
            raise ApiError(404, f"no thumbnail {name!r}; expected <index>.png")
        experiment_row(ws, exp_id)
        png = analysis.thumb(ws, exp_id, int(m.group(1)))
        if png is None:
            raise ApiError(404, f"experiment {exp_id!r} has no image for row {m.group(1)}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/experiments/{exp_id}/{view}")
    def view(exp_id: str, view: str, request: Request) -> JSONResponse:
        query = dict(request.query_params)
        return JSONResponse(view_data(ws, exp_id, view, view_params(view, query)))

    # -- methods and builds -----------------------------------------------------------------------------------
    @app.get("/api/methods")
    def methods() -> JSONResponse:
        if "methods" not in state:
            state["methods"] = methods_payload()
        return JSONResponse({"methods": state["methods"], "build": builder is not None})

    def the_builder() -> Any:
        if builder is None:
            raise ApiError(404, "building runs is turned off (expunge ui --no-build)")
        return builder

    @app.post("/api/build")
    async def build(request: Request) -> JSONResponse:
        b = the_builder()
        raw = await limited_body(request, MAX_BODY_BYTES)
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not JSON ({e})") from None
        try:     # validation reads the data and builds the model: off the event loop
            job = await asyncio.get_running_loop().run_in_executor(None, b.submit, body)
        except (ValueError, TypeError) as e:
            raise ApiError(400, one_line(e)) from None
        return JSONResponse({"job": job.id, **job.to_dict()})

    @app.get("/api/build")
    def jobs() -> JSONResponse:
        return JSONResponse({"jobs": [j.to_dict() for j in the_builder().jobs()]})

    def job_of(job_id: str) -> Any:
        try:
            return the_builder().get(job_id)
        except KeyError:
            raise ApiError(404, f"unknown build job {job_id!r}") from None

    @app.get("/api/build/{job_id}")
    def job(job_id: str) -> JSONResponse:
        return JSONResponse(job_of(job_id).to_dict())

    @app.get("/api/build/{job_id}/events")
    async def events(job_id: str) -> StreamingResponse:
        j = job_of(job_id)

        async def stream():
            seen, quiet = -1, 0.0
            while True:
                version = j.version
                if version != seen:
                    seen, quiet = version, 0.0
                    state_now = j.to_dict()
                    yield f"data: {json.dumps(state_now)}\n\n"
                    if state_now["status"] in ("finished", "failed"):
                        return
                elif quiet >= 15.0:
                    quiet = 0.0
                    yield ": still running\n\n"
                await asyncio.sleep(0.25)
                quiet += 0.25

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.add_middleware(Guard, token=token)        # in front of every route, static files and errors included
    return app
