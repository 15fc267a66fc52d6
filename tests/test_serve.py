"""The HTTP service with FastAPI's TestClient: exact JSON, status codes, bad input, schema."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

import bayesmix as bm
import bayesmix.io as bio
from bayesmix.serve import create_app
from bayesmix.serve.batch import jsonable

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


def _error(detail, loc=None, row=None, field=None):
    errors = [] if loc is None else [{"loc": loc, "row": row, "field": field, "message": detail}]
    return {"detail": detail, "errors": errors}


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
    assert r.status_code == 422 and r.json()["errors"] == []
    assert re.fullmatch(detail, r.json()["detail"])


def test_oversize_bodies_get_413_with_or_without_a_length(client):
    expected = {
        "detail": "the request body exceeds the limit of 4096 bytes; split the batch into "
        "smaller requests",
        "errors": [],
    }
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
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case):
        case.call_and_validate()

    check()
