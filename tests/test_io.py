"""Saved models: round trip, truncated and corrupted files, versions, atomic saves."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import os
import zipfile

import numpy as np
import pytest

import bayesmix as bm
import bayesmix.io as bio
from bayesmix.model import COVARIANCES, FAMILIES

X = np.linspace(-3, 15, 181)


@pytest.fixture(scope="module")
def posterior():
    return bm.sample_nuts(bm.SEED_DATA, 2, chains=2, warmup=30, draws=10)


@pytest.fixture(scope="module")
def small(seed_fit):
    """A small MAP-only model file (a few KB), for byte-by-byte tests."""
    fit = bm.fit_map(bm.SEED_DATA, 2, n_init=3, steps=5)
    return fit, bio.dumps(fit, columns=["x"])


def assert_same(a, b, where="model"):
    """Every field equal: same types, arrays equal in dtype, shape and bits (NaN == NaN)."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), where
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    elif dataclasses.is_dataclass(a) or hasattr(a, "_fields"):
        names = a._fields if hasattr(a, "_fields") else [f.name for f in dataclasses.fields(a)]
        for name in names:
            assert_same(getattr(a, name), getattr(b, name), f"{where}.{name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for j, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same(u, v, f"{where}[{j}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _rewrite(data: bytes, manifest=None, arrays=None) -> bytes:
    """The model file with its manifest and / or arrays.npz replaced by edited versions."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        m = json.loads(zf.read("manifest.json"))
        npz = zf.read("arrays.npz")
    if manifest is not None:
        manifest(m)
    if arrays is not None:
        npz = arrays(npz)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps(m))
        zf.writestr("arrays.npz", npz)
    return out.getvalue()


def test_round_trip_gives_identical_predictions(tmp_path, seed_fit, posterior):
    path = bm.save(tmp_path / "m.bmx", seed_fit, posterior, columns=["value"])
    model = bm.load(path)
    assert isinstance(model, bm.SavedModel)
    assert_same(seed_fit, model.fit, "fit")
    assert_same(posterior, model.posterior, "posterior")
    assert model.columns == ["value"]
    for t, seed in [(0, 0), (1, 0), (1, 123)]:
        a = bm.predict(seed_fit, X, temperature=t, seed=seed)
        np.testing.assert_array_equal(a, bm.predict(model.fit, X, temperature=t, seed=seed))
    np.testing.assert_array_equal(bm.predict_proba(seed_fit, X), bm.predict_proba(model.fit, X))
    # The loaded model itself classifies and is scored as its fit; a Posterior is refused.
    np.testing.assert_array_equal(bm.predict_proba(model, X), bm.predict_proba(seed_fit, X))
    assert bm.criteria(model, X) == bm.criteria(seed_fit, X)
    with pytest.raises(bm.SpecError, match="got Posterior; a Posterior's draws classify with"):
        bm.predict(model.posterior, X)
    # ... and its posterior is read where draws are wanted.
    np.testing.assert_array_equal(bm.membership(model, X).mean, bm.membership(posterior, X).mean)


def test_metadata(tmp_path, seed_fit, posterior):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    model = bm.load(bm.save(tmp_path / "m.bmx", seed_fit, posterior, settings={"steps": 200}))
    meta = model.meta
    assert meta["format_version"] == bio.FORMAT_VERSION == 1
    assert meta["bayesmix_version"] == bm.__version__
    assert meta["fit_method"] == "map+nuts"
    assert (meta["k"], meta["d"], model.k, model.d) == (2, 1, 2, 1)
    assert meta["settings"] == {"steps": 200}
    assert datetime.datetime.fromisoformat(meta["created"]) >= before
    assert model.columns == ["x0"]


def test_map_only_model(tmp_path, seed_fit):
    model = bm.load(bm.save(tmp_path / "m.bmx", seed_fit))
    assert model.posterior is None and model.meta["fit_method"] == "map"
    assert_same(seed_fit, model.fit)
    with pytest.raises(bm.SpecError, match="saved without posterior draws; save it with"):
        bm.membership(model, X)


def test_two_dimensional_model_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 2)), rng.normal(6, 1, (30, 2))])
    fit = bm.fit_map(x, 2, n_init=5, steps=50)
    model = bm.load(bm.save(tmp_path / "m.bmx", fit, columns=["a", "b"]))
    assert_same(fit, model.fit)
    np.testing.assert_array_equal(bm.predict_proba(fit, x), bm.predict_proba(model.fit, x))


@pytest.mark.parametrize(("covariance", "family"), [("full", "student-t"), ("tied", "normal")])
def test_other_model_structures_round_trip(tmp_path, covariance, family):
    """Fields are saved by name: scales of other shapes, correlation factors (K, D, D) and
    (D, D), degrees of freedom (the two cases hold every optional field)."""
    assert covariance in COVARIANCES and family in FAMILIES
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, (25, 2)), rng.normal(5, 1, (25, 2))])
    fit = bm.fit_map(x, 2, covariance=covariance, family=family, n_init=3, steps=10)
    model = bm.load(bm.save(tmp_path / "m.bmx", fit, columns=["a", "b"]))
    assert_same(fit, model.fit)
    np.testing.assert_array_equal(bm.predict_proba(fit, x), bm.predict_proba(model.fit, x))


def test_the_file_is_a_zip_of_a_json_manifest_and_arrays(seed_fit):
    data = bio.dumps(seed_fit, columns=["x"])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["manifest.json", "arrays.npz"]
        manifest = json.loads(zf.read("manifest.json"))
        with np.load(io.BytesIO(zf.read("arrays.npz")), allow_pickle=False) as z:
            np.testing.assert_array_equal(z["fit.params.locs"], seed_fit.params.locs)
    assert manifest["format"] == "bayesmix.model" and manifest["format_version"] == 1
    assert manifest["fit"]["fields"]["params"]["fields"]["locs"] == {"array": "fit.params.locs"}
    assert len(manifest["arrays_sha256"]) == 64


def test_truncated_at_every_byte_fails_clearly(small):
    fit, data = small
    bio.loads(data)  # the whole file loads
    with pytest.raises(bm.DataError, match="m.bmx is not a bayesmix model file .it is empty."):
        bio.loads(b"", source="m.bmx")
    for n in range(1, len(data)):  # every proper prefix, from one byte to one byte short
        with pytest.raises(bm.DataError, match="^m.bmx is truncated or corrupted"):
            bio.loads(data[:n], source="m.bmx")


def test_a_changed_byte_is_detected_or_harmless(small):
    """Flipping any byte either fails with a clear DataError or (in the ZIP's metadata, such as
    a timestamp) leaves the model exactly as saved: never a silently different model."""
    fit, data = small
    loaded = 0
    for n in range(len(data)):
        damaged = bytearray(data)
        damaged[n] ^= 0xFF
        try:
            model = bio.loads(bytes(damaged))
        except bm.DataError as exc:
            assert str(exc).startswith("the model file ")
        else:
            assert_same(fit, model.fit)
            loaded += 1
    assert loaded < 0.05 * len(data)


def test_checksum_mismatch_is_refused(small):
    fit, data = small

    def change_one_value(npz):
        with np.load(io.BytesIO(npz)) as z:
            arrays = dict(z)
        arrays["fit.params.locs"] = arrays["fit.params.locs"] + 1e-12
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    with pytest.raises(bm.DataError, match=r"corrupted: the checksum \(SHA-256\)"):
        bio.loads(_rewrite(data, arrays=change_one_value))
    bio.loads(_rewrite(data))  # rewriting alone keeps it valid


def test_pickled_arrays_are_refused(small):
    fit, data = small

    def pickled(npz):
        buf = io.BytesIO()
        np.savez(buf, **{"fit.losses": np.array([object()], dtype=object)})
        return buf.getvalue()

    def checksum(m):
        with zipfile.ZipFile(io.BytesIO(_rewrite(data, arrays=pickled))) as zf:
            m["arrays_sha256"] = __import__("hashlib").sha256(zf.read("arrays.npz")).hexdigest()

    with pytest.raises(bm.DataError, match="corrupted"):
        bio.loads(_rewrite(data, manifest=checksum, arrays=pickled))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format_version=2), r"format version 2, newer than this bayesmix"),
        (lambda m: m.update(format_version=0), "unknown format version 0"),
        (lambda m: m.update(format_version="1"), "unknown format version '1'"),
        (lambda m: m.update(format="other"), "not a bayesmix model file"),
        (
            lambda m: m["fit"]["fields"]["params"]["fields"].update(extra={"value": 1}),
            r"field\(s\) \['extra'\] that this bayesmix does not know .* upgrade bayesmix",
        ),
        (
            lambda m: m["fit"]["fields"].pop("neg_log_joint"),
            r"lacks field\(s\) \['neg_log_joint'\] .* fit and save the model again",
        ),
        (lambda m: m["fit"].update(type="Unknown"), "'Unknown', a type this bayesmix does not"),
        (lambda m: m.update(k=3), "corrupted"),
        (lambda m: m.update(columns=["a", "b"]), "corrupted"),
    ],
)
def test_incompatible_manifests_are_refused(small, edit, message):
    with pytest.raises(bm.DataError, match=message):
        bio.loads(_rewrite(small[1], manifest=edit))


def test_upgrade_message_names_the_version(small):
    data = _rewrite(small[1], manifest=lambda m: m.update(format_version=7))
    with pytest.raises(bm.DataError) as err:
        bio.loads(data, source="m.bmx")
    assert str(err.value) == (
        "m.bmx uses model format version 7, newer than this bayesmix reads (up to 1; it was "
        f"written by bayesmix {bm.__version__}): upgrade bayesmix (pip install -U bayesmix)"
    )


def test_files_that_are_not_models(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("x\n1\n2\n")
    with pytest.raises(bm.DataError, match=r"d.csv is not a bayesmix model file .*bm.save"):
        bm.load(csv)
    other = tmp_path / "o.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("a.txt", "hello")
    with pytest.raises(bm.DataError, match=r"holds \['a.txt'\]"):
        bm.load(other)
    with pytest.raises(bm.DataError, match="model file not found"):
        bm.load(tmp_path / "missing.bmx")
    with pytest.raises(bm.DataError, match="is a folder"):
        bm.load(tmp_path)


def test_interrupted_save_leaves_the_earlier_file_intact(tmp_path, monkeypatch, seed_fit):
    path = tmp_path / "m.bmx"
    bm.save(path, seed_fit, columns=["old"])
    before = path.read_bytes()
    other = bm.fit_map(bm.SEED_DATA, 2, n_init=3, steps=5)

    class Crash(BaseException):
        """Like a KeyboardInterrupt or a kill in the middle of writing."""

    real_fdopen = os.fdopen

    def half_then_crash(fd, mode):
        fh = real_fdopen(fd, mode)

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def write(self, data):
                fh.write(data[: len(data) // 2])
                fh.flush()
                raise Crash

        return Half()

    monkeypatch.setattr(bio.os, "fdopen", half_then_crash)
    with pytest.raises(Crash):
        bm.save(path, other, columns=["new"])
    monkeypatch.undo()
    monkeypatch.setattr(bio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "EIO")))
    with pytest.raises(bm.DataError, match="cannot write the model"):
        bm.save(path, other, columns=["new"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.bmx"]  # no temporary file left
    assert bm.load(path).columns == ["old"]


def test_permissions_of_a_new_file_and_a_replaced_one(tmp_path, seed_fit):
    path = bm.save(tmp_path / "m.bmx", seed_fit)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    bm.save(path, seed_fit)
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("missing/m.bmx",), {}, bm.DataError, "folder missing does not exist"),
        ((".",), {}, bm.DataError, "is a folder"),
        (("m.bmx", "fit"), {}, bm.SpecError, "expected a MAP fit .* got str"),
        (("m.bmx",), {"columns": ["a", "b"]}, bm.SpecError, "1 non-empty strings"),
        (("m.bmx",), {"posterior": 1}, bm.SpecError, "must be a Posterior"),
        (("m.bmx",), {"settings": {"x": object()}}, bm.SpecError, "JSON-ready"),
    ],
)
def test_bad_save_arguments(tmp_path, monkeypatch, seed_fit, args, kwargs, error, message):
    monkeypatch.chdir(tmp_path)
    args = (*args, seed_fit) if len(args) == 1 else args
    with pytest.raises(error, match=message):
        bm.save(*args, **kwargs)
    assert not (tmp_path / "m.bmx").exists()


def test_a_posterior_of_another_model_is_refused(tmp_path, posterior):
    fit3 = bm.fit_map(bm.SEED_DATA, 3, n_init=3, steps=5)
    with pytest.raises(bm.SpecError, match="same model"):
        bm.save(tmp_path / "m.bmx", fit3, posterior)


def test_save_takes_a_fitted_estimator_and_says_when_the_path_is_not_first(tmp_path, seed_fit):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    frame = pd.DataFrame({"value": bm.SEED_DATA[:, 0]})
    est = bm.BayesianMixture(n_components=2, random_state=0).fit(frame)
    saved = bm.load(bm.save(tmp_path / "e.bmx", est))
    assert saved.columns == ["value"]  # the DataFrame's column names
    np.testing.assert_array_equal(saved.fit.params.locs, est.result_.params.locs)
    with pytest.raises(bm.SpecError, match="takes the path first"):
        bm.save(seed_fit, tmp_path / "f.bmx")
    with pytest.raises(bm.SpecError, match="not fitted yet; call .fit"):
        bm.save(tmp_path / "g.bmx", bm.BayesianMixture(n_components=2))
