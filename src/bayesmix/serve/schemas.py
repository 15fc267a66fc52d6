"""The service's request and response schemas (pydantic), and validation errors in words.

The request schema is built for one model: rows must have exactly D numbers, records exactly
the model's column names, so the OpenAPI document states the model's own shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    create_model,
    model_validator,
)

from ..data import MAX_ABS
from ..infer.problem import MAX_SEED

__all__ = [
    "MAX_SEED",
    "OPTIONS",
    "ErrorResponse",
    "PredictResponse",
    "error_messages",
    "query_options",
    "query_parameters",
    "request_model",
    "value_errors",
]

_FIELDS = "rows or records, temperature, seed, proba"
#: The options a query string may give: those of an NPY body, defaults for a JSON body's.
OPTIONS = ("temperature", "seed", "proba")

#: One value of a row: a JSON number (not a string or a boolean), finite, |value| <= 1e150.
Value = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-MAX_ABS, le=MAX_ABS)]


def _number(value: object) -> object:
    """Numbers only (JSON's true is not 1), before the Literal check."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    return value


def _whole(value: object) -> object:
    """A whole number, as JSON Schema's integer: 7 or 7.0, not 7.5, "7" or true."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not a whole number")
    return value


class _PredictBase(BaseModel):
    """Shared fields of the request; `rows` / `records` are added per model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["rows"]}, {"required": ["records"]}]},
    )

    temperature: Annotated[Literal[0, 1], BeforeValidator(_number)] = Field(
        0,
        description="0: the MAP component of each row; 1: a draw from p(component | row), "
        "reproducible for a given seed.",
    )
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(_whole)] | None = Field(
        None,
        description="Seed of the temperature-1 draws. Omitted: the server picks one and "
        "returns it, so the draws can be reproduced.",
    )
    proba: Annotated[bool, Strict()] = Field(
        True, description="Also return the membership probabilities (N, K)."
    )

    @model_validator(mode="after")
    def _rows_or_records(self):
        given = [name for name in ("rows", "records") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give the data as exactly one of 'rows' (arrays of D numbers) or 'records' "
                f"(objects keyed by column name); got {given or 'neither'}"
            )
        return self


def request_model(columns: Sequence[str], max_rows: int) -> type[_PredictBase]:
    """The PredictRequest schema of a model with these columns (D = len(columns))."""
    d = len(columns)
    row = Annotated[list[Value], Field(min_length=d, max_length=d)]
    record = create_model(
        "Record",
        __config__=ConfigDict(extra="forbid"),
        **{f"c{j}": (Value, Field(alias=name)) for j, name in enumerate(columns)},
    )
    limits = {"min_length": 1, "max_length": max_rows}
    return create_model(
        "PredictRequest",
        __base__=_PredictBase,
        rows=(
            list[row],
            Field(
                None,
                description=f"The batch: arrays of {d} numbers, in the column order {columns}.",
                examples=[[[0.0] * d]],
                **limits,
            ),
        ),
        records=(
            list[record],
            Field(None, description=f"The batch as objects keyed by {columns}.", **limits),
        ),
    )


def query_options(items: Iterable[tuple[str, str]]) -> dict[str, object]:
    """The options in a query string's (name, value) pairs, each value read as a JSON scalar
    (`1` -> 1, `true` -> True, `null` -> None) or else kept as text, so that the request schema
    judges them as it judges a JSON body's. ValueError for an unknown or repeated name."""
    out: dict[str, object] = {}
    for name, text in items:
        if name not in OPTIONS:
            raise ValueError(
                f"unknown query parameter {name!r:.60}; the parameters are {', '.join(OPTIONS)}"
            )
        if name in out:
            raise ValueError(f"the query parameter {name!r} is given twice; give it once")
        out[name] = _scalar(text)
    return out


def _scalar(text: str) -> object:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    return value if value is None or isinstance(value, bool | int | float) else text


def query_parameters() -> list[dict]:
    """The options as OpenAPI query parameters: the request body's fields (for NPY bodies),
    with the body's JSON schema (`query_options` reads the values as the body's)."""
    properties = _PredictBase.model_json_schema()["properties"]
    out = []
    for name in OPTIONS:
        schema = {k: v for k, v in properties[name].items() if k not in ("title", "description")}
        out.append(
            {"name": name, "in": "query", "required": False, "schema": schema}
            | {"description": properties[name]["description"]}
        )
    return out


def value_errors(x: np.ndarray) -> list[dict]:
    """The error pydantic gives for the first value of the rows x (N, D) that `Value` rejects
    (not finite, or over MAX_ABS in magnitude), for `error_messages`; [] when all pass."""
    magnitude = np.abs(x)
    if magnitude.max() <= MAX_ABS:  # False for NaN
        return []
    i, j = (int(k) for k in np.argwhere(~(magnitude <= MAX_ABS))[0])
    value = float(x[i, j])
    if not math.isfinite(value):
        kind, msg = "finite_number", "Input should be a finite number"
    elif value > 0:
        kind, msg = "less_than_equal", f"Input should be less than or equal to {MAX_ABS}"
    else:
        kind, msg = "greater_than_equal", f"Input should be greater than or equal to {-MAX_ABS}"
    return [{"type": kind, "loc": ("rows", i, j), "msg": msg, "input": value}]


class PredictResponse(BaseModel):
    """Labels (and probabilities) of each row, in the order sent."""

    labels: list[int] = Field(description="Component of each row, 0..K-1.")
    probabilities: list[list[float]] | None = Field(
        description="p(component k | row), (N, K), rows sum to one; null when proba is false."
    )
    temperature: Literal[0, 1]
    seed: int | None = Field(description="Seed of the draws (temperature 1), else null.")


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(
        description="Where in the request, e.g. [rows, 3, 0]; [] for the whole request."
    )
    row: int | None = Field(description="Index of the row (from 0), if the error is in a row.")
    field: str | None = Field(description="Column or field name, if known.")
    message: str


class ErrorResponse(BaseModel):
    """A rejected request: `detail` says what is wrong and how to fix it; `errors` has one
    item per problem (at least one)."""

    detail: str
    errors: list[ErrorItem] = []


def error_messages(
    errors: Sequence[dict[str, Any]], columns: Sequence[str], max_rows: int
) -> list[dict]:
    """pydantic's errors -> [{loc, row, field, message}], in words naming the row and field."""
    out = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        item = {"loc": loc, "row": None, "field": None}
        if loc and loc[0] in ("rows", "records") and len(loc) >= 2:
            item.update(_row_error(e, loc, columns))
        elif loc and loc[0] in ("rows", "records"):
            item["message"] = _batch_error(e, loc[0], max_rows)
        else:
            item.update(_field_error(e, loc))
        out.append(item)
    return out


def _batch_error(e: dict, where: str, max_rows: int) -> str:
    kind, ctx = e.get("type"), e.get("ctx") or {}
    if kind == "too_long":
        n = ctx.get("actual_length")
        return f"{where}: {n} rows exceed the limit of {max_rows} per request; split the batch"
    if kind == "too_short":
        return f"{where} is empty; send at least one row"
    return f"{where} must be an array of rows: {e.get('msg')}"


def _row_error(e: dict, loc: list, columns: Sequence[str]) -> dict:
    kind, ctx, got = e.get("type"), e.get("ctx") or {}, _shown(e.get("input"))
    row, at, names = loc[1], f"{loc[0]}[{loc[1]}]", list(columns)
    row = row if isinstance(row, int) else None
    if len(loc) == 2:
        if kind in ("too_short", "too_long"):
            n = ctx.get("actual_length")
            message = (
                f"{at} has {n} values but the model has {len(names)} column(s) {names}; "
                "send one number per column"
            )
        elif loc[0] == "rows":
            message = f"{at} must be an array of {len(names)} number(s), got {got}"
            if isinstance(e.get("input"), dict):
                message += '; rows by column name go in "records": {"records": [{...}, ...]}'
        else:
            message = f"{at} must be an object with the keys {names}, got {got}"
            if isinstance(e.get("input"), list):
                message += '; rows as arrays go in "rows": {"rows": [[...], ...]}'
        return {"row": row, "message": message}
    key = loc[2]
    field = names[key] if isinstance(key, int) and 0 <= key < len(names) else str(key)
    if kind == "missing":
        message = f"{at} lacks column {field!r}; the columns are {names}"
    elif kind == "extra_forbidden":
        message = f"{at} has unknown column {field!r}; the columns are {names}"
    elif kind in ("less_than_equal", "greater_than_equal"):
        message = (
            f"{at}, column {field!r}: {got} is too large in magnitude (the limit is "
            f"{MAX_ABS:.0e}); rescale the data"
        )
    else:
        message = f"{at}, column {field!r}: {e.get('msg')}, got {got}"
    return {"row": row, "field": field, "message": message}


def _field_error(e: dict, loc: list) -> dict:
    kind, got = e.get("type"), _shown(e.get("input"))
    if loc == ["temperature"]:
        message = f"temperature must be 0 (MAP component) or 1 (a posterior draw), got {got}"
    elif loc == ["seed"]:
        message = f"seed must be a whole number from 0 to {MAX_SEED}, or null, got {got}"
    elif loc and kind == "extra_forbidden":
        message = f"unknown field {loc[0]!r}; the fields are {_FIELDS}"
    elif loc:
        message = f"{'.'.join(map(str, loc))}: {e.get('msg')}, got {got}"
    elif kind == "model_type":
        message = 'the request body must be a JSON object, e.g. {"rows": [[0.5]]}'
    else:
        message = str(e.get("msg", "invalid request")).removeprefix("Value error, ")
    return {"field": str(loc[0]) if loc else None, "message": message}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
