"""The HTTP service: `create_app(model)` returns a FastAPI app for one saved model.

Routes: `POST /predict` (labels, probabilities, reproducible temperature-1 draws), `GET /model`
(metadata), `GET /healthz`, `GET /` (the model page), `/docs` and `/openapi.json`.

`/predict` takes a JSON body (`application/json`, also when no Content-Type is given) or, for
bulk scoring, an NPY array (`application/x-npy`, see `npy`) with the options in the query string.

Bad input never reaches the numeric core unchecked: a body over `max_body_bytes` gets 413, one
of another Content-Type 415, any other invalid request 422, each with `{"detail": message,
"errors": [{loc, row, field, message}]}` (at least one item; `loc` [] for the whole request).
The service computes in float64, like the CLI, so its answers equal `bayesmix predict`'s and
`bm.predict`'s exactly.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import secrets
import threading
from collections.abc import AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ValidationError

from ..errors import BayesmixError, SpecError
from ..io import SavedModel, load
from ..predict import classify
from .batch import describe, jsonable, warm_up
from .npy import DTYPES, NpyError, read_rows
from .npy import MEDIA_TYPE as NPY
from .page import CONTENT_SECURITY_POLICY, render_page
from .schemas import (
    ErrorResponse,
    PredictResponse,
    error_messages,
    query_options,
    query_parameters,
    request_model,
    value_errors,
)

try:  # fast JSON for large batches (the `serve` extra installs it)
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_ROWS", "create_app", "from_env"]

#: Rows per request and bytes per request body, unless configured otherwise.
DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
#: An oversize body is read and dropped up to this many times the limit before the 413.
DRAIN_FACTOR = 4
#: Bodies up to this size are answered on the event loop, larger ones in a worker thread.
INLINE_BYTES = 8192
#: Errors listed in a 422 response (the first one is also its `detail`).
MAX_ERRORS = 20


def create_app(
    model: SavedModel,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    warmup: bool = False,
) -> FastAPI:
    """The service for `model` (from `bm.load`).

    max_rows: rows per request; max_body_bytes: size of a request body; warmup: compile the
    classifier for every batch size up to max_rows at startup (a few seconds, once), so no
    request waits for a compilation. Enables JAX's float64 when the model is in float64.
    """
    if not isinstance(model, SavedModel):
        raise SpecError(f"create_app needs a SavedModel (from bm.load), got {type(model)}")
    if max_rows < 1 or max_body_bytes < 1:
        raise SpecError(f"limits must be >= 1, got max_rows={max_rows}, {max_body_bytes=}")
    if np.asarray(model.fit.params.locs).dtype == np.float64:
        import jax

        jax.config.update("jax_enable_x64", True)

    fit, columns = model.fit, list(model.columns)
    d = len(columns)
    schema = request_model(columns, max_rows)
    one_row = {"rows": [[0.0] * d]}  # to check the query's options with the JSON schema
    no_options = schema.model_validate(one_row)
    info = describe(model) | {"limits": {"max_rows": max_rows, "max_body_bytes": max_body_bytes}}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if warmup:
            await run_in_threadpool(warm_up, fit, max_rows)
            # What exists now lives as long as the service: keep the garbage collector off it,
            # so collections during large requests stay short (p99 latency).
            gc.collect()
            gc.freeze()
        yield

    app = _fastapi(
        title="bayesmix model",
        version=info["bayesmix_version"],
        description=(
            f"A Bayesian mixture of {info['k']} components over the columns {columns}. "
            "POST rows to /predict for each row's component and membership probabilities. "
            f"Limits: {max_rows} rows and {max_body_bytes} bytes per request."
        ),
        lifespan=lifespan,
    )

    def error(status: int, detail: str, errors: list[dict] | None = None) -> JSONResponse:
        """The error response; without `errors`, one item for the whole request (loc [])."""
        items = errors or [{"loc": [], "row": None, "field": None, "message": detail}]
        return JSONResponse({"detail": detail, "errors": items}, status_code=status)

    def invalid(errors: list[dict]) -> JSONResponse:
        items = error_messages(errors[:MAX_ERRORS], columns, max_rows)
        more = len(errors) - 1
        detail = items[0]["message"] + (f" (and {more} more error(s))" if more > 0 else "")
        return error(422, detail, items)

    def from_json(body: bytes, options: dict) -> tuple[np.ndarray, BaseModel] | Response:
        """(rows, request) of a JSON body (the query's options are defaults), or the 422."""
        if not body.strip():
            return error(422, 'the request body is empty; send a JSON object: {"rows": [[0.5]]}')
        try:
            payload = orjson.loads(body) if orjson else _json_loads(body)
        except (ValueError, RecursionError) as exc:
            hint = ""
            if any(t in body for t in (b"NaN", b"Infinity")):
                hint = "; NaN and Infinity are not JSON numbers: send finite numbers only"
            return error(422, f"the request body is not valid JSON ({exc}){hint}")
        if options and isinstance(payload, dict):
            payload = options | payload
        x = plain_rows(body, payload.get("rows") if isinstance(payload, dict) else None)
        try:  # rows that are plainly valid skip the schema's per-value checks (equal answers)
            req = schema.model_validate(payload if x is None else payload | one_row)
        except ValidationError as exc:
            return invalid(exc.errors(include_url=False))
        if x is not None:
            return x, req
        rows = req.rows
        if rows is None:
            rows = [[getattr(r, f"c{j}") for j in range(d)] for r in req.records]
        x = np.fromiter(itertools.chain.from_iterable(rows), np.float64, len(rows) * d)
        return x.reshape(len(rows), d), req

    def plain_rows(body: bytes, rows: object) -> np.ndarray | None:
        """`rows` as an (N, D) float64 array when they are plainly valid (1 to max_rows rows of
        D JSON numbers that `value_errors` passes), else None: the schema then checks them and
        words the error. A body with true or false is left to the schema (NumPy reads
        booleans among numbers as 1 and 0; the schema refuses them)."""
        if not isinstance(rows, list) or not 0 < len(rows) <= max_rows:
            return None
        if b"true" in body or b"false" in body:
            return None
        try:
            x = np.array(rows)
        except (ValueError, TypeError, OverflowError):  # ragged, or not numbers
            return None
        if x.dtype.kind not in "fi" or x.shape != (len(rows), d):
            return None
        x = x.astype(np.float64, copy=False)
        return None if value_errors(x) else x

    def from_npy(body: bytes, req: BaseModel) -> tuple[np.ndarray, BaseModel] | Response:
        """(rows, request) of an NPY body with the query's options (`req`), or the 422."""
        try:
            x = read_rows(body, columns, max_rows)
        except NpyError as exc:
            return error(422, str(exc))
        bad = value_errors(x)
        return invalid(bad) if bad else (x, req)

    def answer(body: bytes, media: str, query: list[tuple[str, str]]) -> Response:
        """The response to a /predict body (small ones on the event loop, else in a thread)."""
        if media not in ("", "application/json", NPY):
            return error(415, _unsupported(media))
        try:  # the query's options, checked by the JSON body's rules and in its words
            options = query_options(query)
            defaults = schema.model_validate(one_row | options) if options else no_options
        except ValidationError as exc:
            return invalid(exc.errors(include_url=False))
        except ValueError as exc:
            return error(422, str(exc))
        parsed = from_npy(body, defaults) if media == NPY else from_json(body, options)
        if isinstance(parsed, Response):
            return parsed
        x, req = parsed
        seed = None
        if req.temperature == 1:
            seed = req.seed if req.seed is not None else secrets.randbelow(2**32)
        try:
            labels, probs, _ = classify(fit, x, req.temperature, seed or 0)
        except BayesmixError as exc:  # validated above; kept as a safety net
            return error(422, str(exc))
        probs = probs if req.proba else None
        out = {"labels": labels, "probabilities": probs, "temperature": req.temperature}
        return Response(_json_dumps(out | {"seed": seed}), media_type="application/json")

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses={
            413: {"model": ErrorResponse, "description": "The request body is too large."},
            415: {"model": ErrorResponse, "description": "The Content-Type is not supported."},
            422: {"model": ErrorResponse, "description": "The request is invalid."},
        },
        openapi_extra={
            "parameters": query_parameters(),
            "requestBody": {
                "required": True,
                "description": (
                    "The rows, as JSON (the default) or, for bulk scoring, as an NPY array "
                    f"({NPY}: the bytes np.save writes, shape (rows, {d}), dtype {DTYPES}) "
                    "with the options in the query string. Query options also serve as "
                    "defaults for a JSON body's."
                ),
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                    NPY: {"schema": {"type": "string", "format": "binary"}},
                },
            },
        },
        summary="Classify rows",
    )
    async def predict(request: Request) -> Response:
        """Each row's component (temperature 0: the MAP component; 1: a draw, reproducible
        with `seed`) and, unless `proba` is false, its membership probabilities."""
        stream = request.stream()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_body_bytes:
            if "100-continue" not in request.headers.get("expect", "").lower():
                await _drain(stream, DRAIN_FACTOR * max_body_bytes)
            return _too_large(error, max_body_bytes)  # (a client that waits sends nothing)
        chunks, size = [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > max_body_bytes:
                await _drain(stream, DRAIN_FACTOR * max_body_bytes - size)
                return _too_large(error, max_body_bytes)
            chunks.append(chunk)
        body = b"".join(chunks)
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        query = request.query_params.multi_items()
        if size <= INLINE_BYTES:  # quicker than a thread hop; blocks the loop < 1 ms
            return answer(body, media, query)
        return await run_in_threadpool(answer, body, media, query)

    @app.get("/model", summary="Model metadata")
    def model_info() -> dict:
        """K, D, columns, the model spec, priors, MAP parameters, fit method, diagnostics."""
        return info

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict:
        return {"status": "ok"}

    page_lock = threading.Lock()

    @functools.cache
    def page() -> str:
        return render_page(model, info)

    @app.get("/", response_class=HTMLResponse, summary="The model page")
    def index() -> HTMLResponse:
        """Summary, figure and a form to classify values."""
        with page_lock:
            content = page()
        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
        }
        return HTMLResponse(content, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(list(exc.errors()))

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            req = schema.model_json_schema(ref_template="#/components/schemas/{model}")
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components.update(req.pop("$defs", {}))
            for name in ("rows", "records"):  # optional, but not nullable: no default
                req["properties"][name].pop("default", None)
            components["PredictRequest"] = req
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
    app.state.model = model
    return app


async def _drain(stream: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop the rest of a body too large to serve, up to `budget` bytes, so that the
    client, still sending, can read the 413 (past the budget the connection is closed)."""
    async for chunk in stream:
        budget -= len(chunk)
        if budget < 0:
            return


def _too_large(error, limit: int) -> Response:
    return error(
        413,
        f"the request body exceeds the limit of {limit} bytes; split the batch into "
        "smaller requests",
    )


def _unsupported(media: str) -> str:
    """The 415 message for a request body of this media type."""
    hint = ""
    if media == "application/x-www-form-urlencoded":
        hint = " (curl -d sends this unless told: add -H 'Content-Type: application/json')"
    return (
        f"the Content-Type {media!r:.80} is not supported{hint}; send application/json (a JSON "
        f"object, also when no Content-Type is given) or {NPY} (the bytes np.save writes, "
        "options in the query string)"
    )


def _fastapi(**kwargs) -> FastAPI:
    """FastAPI whose /docs page uses local copies of Swagger UI when fastapi-offline is
    installed (the `serve` extra), else the CDN's."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:  # pragma: no cover
        return FastAPI(**kwargs)
    return FastAPIOffline(**kwargs)


def _json_loads(body: bytes) -> object:
    import json

    def reject(token: str) -> float:
        raise ValueError(f"{token} is not a JSON number")

    return json.loads(body, parse_constant=reject)


def _json_dumps(obj: dict) -> bytes:
    if orjson is not None:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    import json

    return json.dumps(jsonable(obj), allow_nan=False).encode()  # pragma: no cover


def from_env() -> FastAPI:
    """App factory for `uvicorn --factory bayesmix.serve.app:from_env` (and several workers):
    the model from $BAYESMIX_MODEL, limits from $BAYESMIX_MAX_ROWS, $BAYESMIX_MAX_BODY_BYTES,
    warm-up unless $BAYESMIX_WARMUP is 0."""
    path = os.environ.get("BAYESMIX_MODEL")
    if not path:
        raise SpecError("set BAYESMIX_MODEL to the path of a saved model (.bmx)")
    return create_app(
        load(path),
        max_rows=int(os.environ.get("BAYESMIX_MAX_ROWS", DEFAULT_MAX_ROWS)),
        max_body_bytes=int(os.environ.get("BAYESMIX_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        warmup=os.environ.get("BAYESMIX_WARMUP", "1") != "0",
    )
