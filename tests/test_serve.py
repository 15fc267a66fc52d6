"""The HTTP service with FastAPI's TestClient: exact JSON, status codes, bad input, schema."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import tracemalloc

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.transport.serialization import Binary

import bayesmix as bm
import bayesmix.io as bio
from bayesmix.serve import create_app
from bayesmix.serve.batch import jsonable
from bayesmix.serve.npy import NpyError, read_rows

X = [0.5, 5.75, 11.0, -3.0, 5.7, 5.8]


@pytest.fixture(scope="module")
def model(seed_fit):
    post = bm.sample_nuts(bm.SEED_DATA, 2, chains=2, warmup=30, draws=10)
    return bio.loads(bio.dumps(seed_fit, post, ["x"], settings={"steps": 200}))


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model, max_rows=50, max_body_bytes=4096)) as c:
        yield c


@pytest.fixture(scope="module")
def model2():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (20, 2)), rng.normal(5, 1, (20, 2))])
    return bio.loads(bio.dumps(bm.fit_map(x, 2, n_init=5, steps=50), columns=["a", "b c"]))


@pytest.fixture(scope="module")
def client2(model2):
    with TestClient(create_app(model2)) as c:
        yield c


def test_predict_returns_exactly_the_python_api(client, model):
    r = client.post("/predict", json={"rows": [[v] for v in X]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "labels": bm.predict(model.fit, X).tolist(),
        "probabilities": bm.predict_proba(model.fit, X).tolist(),
        "temperature": 0,
        "seed": None,
    }


def test_temperature_one_is_reproducible_for_a_seed(client, model):
    x = np.repeat([5.75], 40)
    body = {"rows": [[v] for v in x], "temperature": 1, "seed": 11, "proba": False}
    first = client.post("/predict", json=body).json()
    assert first == {
        "labels": bm.predict(model.fit, x, temperature=1, seed=11).tolist(),
        "probabilities": None,
        "temperature": 1,
        "seed": 11,
    }
    assert client.post("/predict", json=body).json() == first
    assert 0 < sum(first["labels"]) < 40  # a real draw, not the MAP component


def test_without_a_seed_the_server_picks_one_and_says_which(client, model):
    x = np.repeat([5.75], 40)
    r = client.post("/predict", json={"rows": [[v] for v in x], "temperature": 1}).json()
    assert isinstance(r["seed"], int) and 0 <= r["seed"] < 2**32
    assert r["labels"] == bm.predict(model.fit, x, temperature=1, seed=r["seed"]).tolist()


def test_records_and_rows_agree(client2, model2):
    rows = [[0.0, 0.5], [5.0, 4.0], [2.5, 2.5]]
    a = client2.post("/predict", json={"rows": rows}).json()
    b = client2.post("/predict", json={"records": [{"a": u, "b c": v} for u, v in rows]}).json()
    assert a == b
    assert a["probabilities"] == bm.predict_proba(model2.fit, rows).tolist()


def test_plain_rows_answer_as_the_schema_checked_path(client2, model2):
    """Rows of plain numbers skip the schema's per-value checks; a body with a boolean takes
    the checked path. Both answer the same, ints as floats; a boolean among the values is
    refused (NumPy alone would read it as 1)."""
    rows = [[0, 0.5], [5, 4.0], [2.5, 2]]
    plain = client2.post("/predict", json={"rows": rows})
    checked = client2.post("/predict", json={"rows": rows, "proba": True})
    assert plain.status_code == checked.status_code == 200
    assert plain.content == checked.content
    assert plain.json()["probabilities"] == bm.predict_proba(model2.fit, rows).tolist()
    r = client2.post("/predict", json={"rows": [[True, 1.0]]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["rows", 0, 0]


def test_model_metadata(client, model):
    r = client.get("/model")
    assert r.status_code == 200
    info = r.json()
    fit, post = model.fit, model.posterior
    assert info["k"] == 2 and info["d"] == 1 and info["columns"] == ["x"]
    assert info["fit_method"] == "map+nuts"
    assert info["priors"] == jsonable(fit.priors)
    assert info["params"]["weights"] == fit.params.weights.tolist()
    assert info["params"]["locs"] == fit.params.locs.tolist()
    assert info["map"]["neg_log_joint"] == fit.neg_log_joint
    assert info["map"]["converged"] is True
    assert info["posterior"] == {"chains": 2, "draws": 10}
    assert info["diagnostics"] == json.loads(json.dumps(jsonable(post.diagnostics)))
    assert info["settings"] == {"steps": 200}
    assert info["limits"] == {"max_rows": 50, "max_body_bytes": 4096}
    assert info["format_version"] == 1 and info["bayesmix_version"] == bm.__version__


def test_healthz(client):
    r = client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_model_page(client, client2):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert '<form id="classify"' in page and 'id="values"' in page
    assert page.count("data:image/png;base64,") == 2  # density and membership figures
    assert "http://" not in page.replace("http://HOST:PORT", "")  # nothing from other hosts
    page2 = client2.get("/").text
    assert "data:image/png;base64," not in page2 and "<th>locs</th>" in page2
    assert "b c" in page2


def test_column_names_are_escaped_in_the_page(seed_fit):
    model = bio.loads(bio.dumps(seed_fit, columns=["<script>alert(1)</script>"]))
    with TestClient(create_app(model)) as c:
        page = c.get("/").text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_openapi_states_the_models_shape(client2):
    doc = client2.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/predict", "/model", "/healthz", "/"}
    req = doc["components"]["schemas"]["PredictRequest"]
    rows = req["properties"]["rows"]
    assert (rows["items"]["minItems"], rows["items"]["maxItems"]) == (2, 2)
    assert rows["maxItems"] == 100_000
    assert set(doc["components"]["schemas"]["Record"]["properties"]) == {"a", "b c"}
    assert req["properties"]["temperature"]["enum"] == [0, 1]
    docs = client2.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text  # served from the package


def _error(detail, loc=(), row=None, field=None):
    """An error response with one item (loc (): the whole request)."""
    return {"detail": detail, "errors": [{"loc": list(loc), "row": row, "field": field,
                                          "message": detail}]}  # fmt: skip


BAD = [
    (
        {"rows": [[1.0, 2.0]]},
        _error(
            "rows[0] has 2 values but the model has 1 column(s) ['x']; send one number per column",
            ["rows", 0],
            0,
        ),
    ),
    (
        {"rows": [[1.0], ["abc"]]},
        _error(
            "rows[1], column 'x': Input should be a valid number, got 'abc'", ["rows", 1, 0], 1, "x"
        ),
    ),
    (
        {"rows": [[1.0], ["1.5"]]},
        _error(
            "rows[1], column 'x': Input should be a valid number, got '1.5'", ["rows", 1, 0], 1, "x"
        ),
    ),
    (
        {"rows": [[True]]},
        _error(
            "rows[0], column 'x': Input should be a valid number, got True", ["rows", 0, 0], 0, "x"
        ),
    ),
    (
        {"rows": [[None]]},
        _error(
            "rows[0], column 'x': Input should be a valid number, got None", ["rows", 0, 0], 0, "x"
        ),
    ),
    ({"rows": []}, _error("rows is empty; send at least one row", ["rows"])),
    (
        {"rows": [{"x": 1.0}]},
        _error(
            "rows[0] must be an array of 1 number(s), got {'x': 1.0}; rows by column name go "
            'in "records": {"records": [{...}, ...]}',
            ["rows", 0],
            0,
        ),
    ),
    (
        {"records": [[1.0]]},
        _error(
            "records[0] must be an object with the keys ['x'], got [1.0]; rows as arrays go in "
            '"rows": {"rows": [[...], ...]}',
            ["records", 0],
            0,
        ),
    ),
    (
        {"rows": [[1.0]] * 51},
        _error("rows: 51 rows exceed the limit of 50 per request; split the batch", ["rows"]),
    ),
    (
        {"rows": [[1.0]], "temperature": 0.5},
        _error(
            "temperature must be 0 (MAP component) or 1 (a posterior draw), got 0.5",
            ["temperature"],
            field="temperature",
        ),
    ),
    (
        {"rows": [[1.0]], "temperature": "hot"},
        _error(
            "temperature must be 0 (MAP component) or 1 (a posterior draw), got 'hot'",
            ["temperature"],
            field="temperature",
        ),
    ),
    (
        {"rows": [[1.0]], "temperature": 1, "seed": 2**32},
        _error(
            "seed must be a whole number from 0 to 4294967295, or null, got 4294967296",
            ["seed"],
            field="seed",
        ),
    ),
    (
        {"rows": [[1e200]]},
        _error(
            "rows[0], column 'x': 1e+200 is too large in magnitude (the limit is 1e+150); "
            "rescale the data",
            ["rows", 0, 0],
            0,
            "x",
        ),
    ),
    (
        {"records": [{"y": 1.0}]},
        {
            "detail": "records[0] lacks column 'x'; the columns are ['x'] (and 1 more error(s))",
            "errors": [
                {
                    "loc": ["records", 0, "x"],
                    "row": 0,
                    "field": "x",
                    "message": "records[0] lacks column 'x'; the columns are ['x']",
                },
                {
                    "loc": ["records", 0, "y"],
                    "row": 0,
                    "field": "y",
                    "message": "records[0] has unknown column 'y'; the columns are ['x']",
                },
            ],
        },
    ),
    (
        {},
        _error(
            "give the data as exactly one of 'rows' (arrays of D numbers) or 'records' (objects "
            "keyed by column name); got neither",
            [],
        ),
    ),
    (
        {"rows": [[1.0]], "extra": 1},
        _error(
            "unknown field 'extra'; the fields are rows or records, temperature, seed, proba",
            ["extra"],
            field="extra",
        ),
    ),
    ([1.0, 2.0], _error('the request body must be a JSON object, e.g. {"rows": [[0.5]]}', [])),
]


@pytest.mark.parametrize(("body", "expected"), BAD)
def test_bad_requests_get_422_naming_the_row_and_field(client, body, expected):
    r = client.post("/predict", json=body)
    assert (r.status_code, r.json()) == (422, expected)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (
            b'{"rows": [[NaN]]}',
            r"the request body is not valid JSON \(.*\); NaN and Infinity are not JSON numbers: "
            r"send finite numbers only",
        ),
        (b'{"rows": [[1.0]', r"the request body is not valid JSON \(.*line 1 column 1\d.*\)"),
        (b"", r'the request body is empty; send a JSON object: \{"rows": \[\[0.5\]\]\}'),
    ],
)
def test_bodies_that_are_not_json(client, content, detail):
    """(The parser's own words, inside the parentheses, depend on its version.)"""
    r = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422 and re.fullmatch(detail, r.json()["detail"])
    assert r.json() == _error(r.json()["detail"])


def test_oversize_bodies_get_413_with_or_without_a_length(client):
    expected = _error(
        "the request body exceeds the limit of 4096 bytes; split the batch into smaller requests"
    )
    big = json.dumps({"rows": [[1.0]] * 1000}).encode()
    r = client.post("/predict", content=big)
    assert (r.status_code, r.json()) == (413, expected)
    chunks = (big[i : i + 1000] for i in range(0, len(big), 1000))  # chunked: no length
    r = client.post("/predict", content=chunks)
    assert (r.status_code, r.json()) == (413, expected)


def test_bad_input_never_breaks_the_service(client, client2, caplog):
    caplog.set_level(logging.DEBUG)
    for body, _ in BAD:
        assert client.post("/predict", json=body).status_code == 422
    odd = [
        b"\xff\xfe",  # not UTF-8
        b"[" * 100_000,  # nested past the parser's depth limit
        b'{"rows": [[' + b"9" * 5000 + b"]]}",  # an integer beyond 64 bits
        b'{"rows": [[1e999]]}',  # a number beyond float64
        b'{"rows": [[0.5, 1]], "rows": [[1]]}',  # a repeated key: the last one counts
        b'{"records": [{"a": 1, "b c": 2, "a": "x"}]}',
        b"\x00" * 1000,
    ]
    for content in odd:
        r = client2.post("/predict", content=content)
        assert r.status_code == 422 and r.json()["detail"], content[:40]
    assert client.post("/predict", content=b"[" * 5000).status_code == 413
    assert client.get("/healthz").status_code == 200
    assert client.post("/predict", json={"rows": [[0.5]]}).json()["labels"] == [0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_create_app_checks_its_arguments(model):
    with pytest.raises(bm.SpecError, match="SavedModel"):
        create_app(model.fit)
    with pytest.raises(bm.SpecError, match="limits"):
        create_app(model, max_rows=0)


def test_app_factory_for_uvicorn(model, tmp_path, monkeypatch):
    from bayesmix.serve.app import from_env

    monkeypatch.delenv("BAYESMIX_MODEL", raising=False)
    with pytest.raises(bm.SpecError, match="set BAYESMIX_MODEL"):
        from_env()
    path = tmp_path / "m.bmx"
    bm.save(path, model.fit, columns=model.columns)
    monkeypatch.setenv("BAYESMIX_MODEL", str(path))
    monkeypatch.setenv("BAYESMIX_MAX_ROWS", "7")
    monkeypatch.setenv("BAYESMIX_WARMUP", "0")
    with TestClient(from_env()) as c:
        assert c.get("/model").json()["limits"]["max_rows"] == 7


def test_warm_up_compiles_every_batch_size(seed_fit):
    from bayesmix.serve.batch import warm_up

    assert warm_up(seed_fit, 100) == 5  # 8, 16, 32, 64, 128 rows


# Fuzz NPY bodies too (schemathesis sends no body of a media type it has no serializer for).
schemathesis.serializer.alias("application/x-npy", "application/octet-stream")


@pytest.fixture(scope="module")
def api_schema(model):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(model, max_rows=50))


@pytest.mark.parametrize(
    ("path", "mode"),
    [("/predict", "positive"), ("/predict", "negative")]
    + [(path, "positive") for path in ("/model", "/healthz", "/")],  # no input to make invalid
)
def test_schemathesis_finds_no_server_error(api_schema, path, mode):
    """Requests generated from the OpenAPI schema, valid (positive) and invalid (negative), 40
    per operation and mode: never a 5xx, each response matches its documented status code,
    content type and schema, invalid requests are rejected and valid ones accepted."""
    operation = next(op.ok() for op in api_schema.get_all_operations() if op.ok().path == path)

    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(
        max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        if mode == "positive" and case.media_type == NPY["content-type"]:
            # The schema cannot say which bytes make an NPY file: the generated bytes become a
            # valid (rows, 1) uint8 array, sent with the generated query options. (schemathesis
            # then deems the body invalid, as it deems any binary body: the test checks the 200.)
            data = getattr(case.body, "data", case.body) or b"\0"
            case.body = Binary(_npy(np.frombuffer(data, np.uint8)[:50, None]))
            response = case.call_and_validate(
                excluded_checks=[schemathesis.checks.negative_data_rejection]
            )
            assert response.status_code == 200, response.text
        else:
            case.call_and_validate()

    check()


# NPY bodies (Content-Type: application/x-npy), options in the query string.

NPY = {"content-type": "application/x-npy"}
ROWS2 = [[0.0, 0.5], [5.0, 4.0], [2.5, 2.5], [-1.25, 7.0], [3.0, 3.0]]


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _header(shape: tuple, descr: str = "<f8", data: bytes = b"") -> bytes:
    """An NPY header (format 1.0) with these fields, then `data`."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"seed": None},  # null as in a JSON body (`seed=null`): the schema says so for both
        {"temperature": 1, "seed": 11},
        {"temperature": 1, "seed": 11, "proba": False},
    ],
)
def test_npy_body_answers_exactly_as_the_json_body(client2, options):
    x = np.array(ROWS2 * 8)
    r = client2.post("/predict", json={"rows": x.tolist(), **options})
    query = "&".join(f"{k}={json.dumps(v)}" for k, v in options.items())
    n = client2.post(f"/predict?{query}", content=_npy(x), headers=NPY)
    assert (n.status_code, n.headers["content-type"]) == (200, "application/json")
    assert n.content == r.content  # the same bytes: labels, probabilities, temperature, seed
    assert 0 < sum(n.json()["labels"]) < len(x)


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.astype(np.float32),
        lambda x: x.astype(np.float16),
        lambda x: x.astype(">f8"),  # big-endian
        lambda x: np.round(x).astype(np.int16),
        lambda x: np.round(x + 2).astype(np.uint8),
        lambda x: np.round(x).astype(np.int64),
        np.asfortranarray,
    ],
    ids=["float32", "float16", "big-endian", "int16", "uint8", "int64", "fortran"],
)
def test_npy_dtypes_and_fortran_order_are_read_as_float64(client2, convert):
    a = convert(np.array(ROWS2) * 1.1)
    body = _npy(a)
    assert (b"'fortran_order': True" in body) == a.flags.f_contiguous  # what the case says
    r = client2.post("/predict", json={"rows": a.astype(np.float64).tolist()})
    n = client2.post("/predict", content=body, headers=NPY)
    assert n.status_code == 200 and n.content == r.content


def test_read_rows_gives_float64_rows_in_c_order():
    a = np.asfortranarray(np.arange(12, dtype=">i4").reshape(6, 2))
    x = read_rows(_npy(a), ["a", "b"], 6)
    assert x.dtype == np.float64 and x.flags.c_contiguous and (x == a).all()
    assert read_rows(_npy(np.arange(3, dtype=np.uint64)), ["a"], 6).shape == (3, 1)


def test_npy_body_of_shape_n_for_a_one_column_model(client, model):
    x = np.array(X)
    for a in (x, x[:, None]):
        r = client.post("/predict?proba=false", content=_npy(a), headers=NPY)
        assert r.json()["labels"] == bm.predict(model.fit, x).tolist()
        assert r.json()["probabilities"] is None


def _npy_error(r, pattern: str) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    assert re.fullmatch(pattern, r.json()["detail"]), r.json()["detail"]
    assert r.json()["errors"][0]["message"] == r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (b"", r"the request body is empty; send the bytes np.save writes .*"),
        (b'{"rows": [[1.0, 2.0]]}', r"the request body is not an NPY file \(the magic string is "
         r"not correct.*\); send the bytes np.save writes"),
        (b"\x93NUMPY\x03\x00" + b"\0" * 20, r"NPY format version 3.0 is not supported; .*"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',}", r"the NPY header is not valid \(.*\); "
         r"send the bytes np.save writes"),
        (_header((2, 2), data=b"\0" * 33), r"the NPY body holds 33 bytes of data but its header "
         r"\(shape \(2, 2\), dtype float64\) needs 32 bytes: the body is truncated or damaged; "
         r"send the bytes np.save writes, whole"),
        (_header((2, 2, 1), data=b"\0" * 32), r"the NPY body has shape \(2, 2, 1\); send an "
         r"array of shape \(rows, 2\)"),
        (_header((-1, -2), data=b"\0" * 16), r"the NPY body has shape \(-1, -2\); .*"),
        (_npy(np.zeros((4, 3))), r"the NPY body has 3 columns but the model has 2 \(columns "
         r"\['a', 'b c'\]\); send an array of shape \(rows, 2\)"),
        (_npy(np.zeros(4)), r"the NPY body has shape \(4,\) but the model has 2 .*"),
        (_npy(np.zeros((0, 2))), r"the NPY body has no rows \(shape \(0, 2\)\); send at least "
         r"one row"),
        (_npy(np.zeros((2, 2), bool)), r"the NPY body's dtype 'bool' is not supported; send "
         r"float16/32/64 or \(unsigned\) integers, e.g. np.save\(f, x.astype\(np.float64\)\)"),
        (_npy(np.zeros((2, 2), object)), r"the NPY body's dtype 'object' is not supported; .*"),
        (_npy(np.zeros((2, 2), complex)), r"the NPY body's dtype 'complex128' is not .*"),
        (_npy(np.zeros((2, 2), "U3")), r"the NPY body's dtype '<U3' is not supported; .*"),
        (_npy(np.zeros((2, 2), "M8[s]")), r"the NPY body's dtype 'datetime64\[s\]' is not .*"),
        (_npy(np.zeros(2, [("a", "<f8"), ("b c", "<f8")])), r"the NPY body's dtype .* is not .*"),
        (_npy(np.zeros((2, 2), np.longdouble)), r"the NPY body's dtype .* is not supported; .*"),
        (_npy(np.array([[0.0, 1.0], [2.0, np.nan]])), r"rows\[1\], column 'b c': Input should be "
         r"a finite number, got nan"),
        (_npy(np.array([[0.0, 1.0], [-np.inf, 1.0]])), r"rows\[1\], column 'a': Input should be "
         r"a finite number, got -inf"),
        (_npy(np.array([[0.0, -1e200]])), r"rows\[0\], column 'b c': -1e\+200 is too large in "
         r"magnitude \(the limit is 1e\+150\); rescale the data"),
    ],
)  # fmt: skip
def test_bad_npy_bodies_get_422_saying_what_is_wrong(client2, body, pattern):
    _npy_error(client2.post("/predict", content=body, headers=NPY), pattern)


def test_nan_in_an_npy_body_is_reported_as_in_json(client2):
    r = client2.post("/predict", content=_npy(np.array([[0.0, 1.0], [2.0, np.nan]])), headers=NPY)
    assert r.json()["errors"] == [
        {
            "loc": ["rows", 1, 1],
            "row": 1,
            "field": "b c",
            "message": "rows[1], column 'b c': Input should be a finite number, got nan",
        }
    ]


def test_npy_rows_limit_and_body_size_limit(client):
    r = client.post("/predict", content=_npy(np.zeros(51)), headers=NPY)
    _npy_error(r, r"the NPY body has 51 rows, over the limit of 50 per request; split the batch")
    assert client.post("/predict", content=_npy(np.zeros(50)), headers=NPY).status_code == 200
    r = client.post("/predict", content=_npy(np.zeros(600)), headers=NPY)
    assert r.status_code == 413 and "exceeds the limit of 4096 bytes" in r.json()["detail"]


def test_truncated_npy_bodies_all_get_422(client2, caplog):
    caplog.set_level(logging.DEBUG)
    body = _npy(np.array(ROWS2))
    for cut in range(len(body)):
        r = client2.post("/predict", content=body[:cut], headers=NPY)
        assert r.status_code == 422 and r.json()["detail"], cut
    _npy_error(client2.post("/predict", content=body + b"\0", headers=NPY), r".*truncated or dam.*")
    assert client2.post("/predict", content=body, headers=NPY).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_header_claiming_a_huge_array_is_refused_without_allocating_it(client2):
    body = _header((10**6, 10**6), data=b"\0" * 16)  # 8 TB claimed, 16 bytes sent
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(NpyError, match="holds 16 bytes of data .* needs 8,000,000,000,000 bytes"):
        read_rows(body, ["a", "b"], 100)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20 and seconds < 0.1
    _npy_error(client2.post("/predict", content=body, headers=NPY), r".*truncated or damaged.*")
    huge = _header((10**4000, 2), data=b"\0" * 16)  # a number too long to print
    _npy_error(
        client2.post("/predict", content=huge, headers=NPY),
        r".*\(shape \(1000+\.\.\.0+, 2\), .*needs about 10\^4001 b.*",
    )


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, 10**6), value=st.integers(0, 255), cut=st.integers(0, 300))
def test_damaged_npy_bodies_raise_only_npy_error(at, value, cut):
    """A byte changed, then the body cut: read_rows returns rows or raises NpyError."""
    body = bytearray(_npy(np.array(ROWS2)))
    body[at % len(body)] = value
    try:
        x = read_rows(bytes(body[: len(body) - cut % 40]), ["a", "b c"], 100)
    except NpyError as exc:
        assert str(exc)
    else:
        assert x.dtype == np.float64 and x.ndim == 2 and x.shape[1] == 2 and x.flags.c_contiguous


@pytest.mark.parametrize(
    ("query", "options"),
    [
        ("temperature=2", {"temperature": 2}),
        ("temperature=hot", {"temperature": "hot"}),
        ("seed=-1", {"temperature": 1, "seed": -1}),
        ("seed=1.5", {"seed": 1.5}),
        ("seed=4294967296", {"seed": 2**32}),
        ("proba=maybe", {"proba": "maybe"}),
        ("proba=1", {"proba": 1}),
    ],
)
def test_bad_query_options_get_the_json_bodys_messages(client, query, options):
    n = client.post(f"/predict?{query}", content=_npy(np.array(X)), headers=NPY)
    r = client.post("/predict", json={"rows": [[0.5]], **options})
    assert n.status_code == r.status_code == 422 and n.json() == r.json()


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("foo=1", "unknown query parameter 'foo'; the parameters are temperature, seed, proba"),
        ("rows=1", "unknown query parameter 'rows'; the parameters are temperature, seed, proba"),
        ("seed=1&seed=2", "the query parameter 'seed' is given twice; give it once"),
    ],
)
def test_unknown_and_repeated_query_parameters(client, query, detail):
    for kwargs in ({"content": _npy(np.array(X)), "headers": NPY}, {"json": {"rows": [[0.5]]}}):
        r = client.post(f"/predict?{query}", **kwargs)
        assert (r.status_code, r.json()) == (422, _error(detail))


def test_query_options_are_defaults_for_a_json_body(client):
    body = {"rows": [[5.75]] * 40, "seed": 3}
    r = client.post("/predict?temperature=1&proba=false", json=body).json()
    assert r == client.post("/predict", json=body | {"temperature": 1, "proba": False}).json()
    r = client.post("/predict?proba=false", json={"rows": [[0.5]], "proba": True}).json()
    assert r["probabilities"] is not None  # the body's own field wins
    r = client.post("/predict?seed=-1", json={"rows": [[0.5]], "seed": 1})  # still checked
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        (None, 200),
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("APPLICATION/X-NPY", 200),
        ("text/csv", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/octet-stream", 415),
    ],
)
def test_content_types(client, content_type, status):
    npy = "npy" in (content_type or "").lower()
    content = _npy(np.array(X)) if npy else json.dumps({"rows": [[v] for v in X]}).encode()
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/predict", content=content, headers=headers)
    assert r.status_code == status
    if status == 415:
        detail = r.json()["detail"]
        assert detail.startswith(f"the Content-Type {content_type!r} is not supported")
        assert detail.endswith(
            "send application/json (a JSON object, also when no Content-Type is given) or "
            "application/x-npy (the bytes np.save writes, options in the query string)"
        )
        assert ("add -H 'Content-Type: application/json'" in detail) == ("form" in content_type)
        assert r.json() == _error(detail)


def test_openapi_documents_the_npy_body_and_the_query_options(client2):
    op = client2.get("/openapi.json").json()["paths"]["/predict"]["post"]
    content = op["requestBody"]["content"]
    assert content["application/x-npy"] == {"schema": {"type": "string", "format": "binary"}}
    assert "PredictRequest" in content["application/json"]["schema"]["$ref"]
    params = {p["name"]: p for p in op["parameters"]}
    assert list(params) == ["temperature", "seed", "proba"]
    assert all(
        p["in"] == "query" and not p["required"] and p["description"] for p in op["parameters"]
    )
    assert params["temperature"]["schema"]["enum"] == [0, 1]
    seed = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
    assert params["seed"]["schema"] == {"anyOf": [seed, {"type": "null"}]}
    assert params["proba"]["schema"]["type"] == "boolean"
    assert {"413", "415", "422"} <= set(op["responses"])
