"""The scikit-learn estimator: the contract, agreement with GaussianMixture, iris, robustness."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import check_estimator

from bayesmix import Priors, SpecError, fit_map
from bayesmix.estimator import BayesianMixture
from bayesmix.select import criteria


# The one check scikit-learn skips itself: check_array_api_input needs SCIPY_ARRAY_API set;
# bayesmix takes NumPy-convertible input (JAX arrays included), not other array-API namespaces.
# Diagonal covariances: the checks are of the estimator's contract, which is the same for every
# structure, and compile half as long as full ones (each check's shapes compile anew).
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_passes_sklearn_estimator_checks():
    estimator = BayesianMixture(covariance_type="diag", n_init=2, max_iter=50)
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])) for r in results if r["status"] == "failed"]
    assert not failed
    assert len(results) > 30


def _blobs(seed=0, n=1500):
    rng = np.random.default_rng(seed)
    covs = [[[1, 0.8], [0.8, 1]], [[0.3, 0], [0, 2]], [[1, -0.5], [-0.5, 0.6]]]
    means = [[0, 0], [5, 5], [-4, 6]]
    return np.concatenate(
        [rng.multivariate_normal(m, c, n // 3) for m, c in zip(means, covs, strict=True)]
    )


@pytest.mark.parametrize("covariance", ["spherical", "diag", "full", "tied"])
def test_map_with_weak_priors_matches_sklearn_mle(covariance):
    x = _blobs()
    ours = BayesianMixture(3, covariance_type=covariance, max_iter=800, random_state=0).fit(x)
    ref = GaussianMixture(3, covariance_type=covariance, n_init=3, tol=1e-10, max_iter=2000)
    ref.fit(x)
    assert ours.score(x) == pytest.approx(ref.score(x), abs=1e-3)


def test_large_data_is_fitted_by_em_by_default(monkeypatch):
    from bayesmix.infer import method

    monkeypatch.setattr(method, "EM_MIN_ROWS", 1000)  # _blobs() has 1500 rows
    x = _blobs()
    ours = BayesianMixture(3, covariance_type="full", random_state=0).fit(x)
    assert ours.n_iter_ < 100  # EM iterations (Adam would run all 500 steps)
    ref = GaussianMixture(3, covariance_type="full", n_init=3, tol=1e-10, max_iter=2000).fit(x)
    assert ours.score(x) == pytest.approx(ref.score(x), abs=1e-3)
    assert method.resolve_method("auto", 999) == "adam"
    with pytest.raises(SpecError, match="method must be one of auto, em, adam, lbfgs"):
        BayesianMixture(3, method="newton").fit(x)


def test_fit_predict_equals_fit_then_predict():
    x = _blobs(1, 300)
    a = BayesianMixture(3, random_state=0).fit(x).predict(x)
    b = BayesianMixture(3, random_state=0).fit_predict(x)
    np.testing.assert_array_equal(a, b)


def test_iris_species_recovered_and_bic_prefers_a_plausible_k():
    x, y = load_iris(return_X_y=True)
    model = BayesianMixture(3, random_state=0).fit(x)
    assert adjusted_rand_score(y, model.labels_) >= 0.85
    bics = {k: BayesianMixture(k, random_state=0).fit(x).bic(x) for k in (1, 2, 3, 4, 5)}
    assert min(bics, key=bics.get) in (2, 3)


def test_student_t_is_robust_to_gross_outliers():
    rng = np.random.default_rng(0)
    clean = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
    outliers = rng.uniform(-60, 60, (21, 2))  # 5% gross outliers
    dirty = np.concatenate([clean, outliers])

    def locs(x, family):
        m = BayesianMixture(2, covariance_type="diag", family=family, random_state=0).fit(x)
        return m.means_[np.argsort(m.means_[:, 0])]

    shift_t = np.abs(locs(dirty, "student-t") - locs(clean, "student-t")).max()
    shift_normal = np.abs(locs(dirty, "normal") - locs(clean, "normal")).max()
    assert shift_t < 0.25 * shift_normal
    assert shift_t < 0.3


@pytest.mark.parametrize("covariance", ["shared", "spherical", "diag", "full", "tied"])
def test_parameter_recovery(covariance):
    rng = np.random.default_rng(3)
    n = 2000
    truth_locs = np.array([[-3.0, 0.0], [3.0, 1.0]])
    if covariance in ("shared", "spherical"):
        scales = [0.7, 0.7] if covariance == "shared" else [0.5, 1.0]
        covs = [np.eye(2) * s**2 for s in scales]
    elif covariance == "diag":
        covs = [np.diag([0.25, 1.0]), np.diag([1.0, 0.36])]
    elif covariance == "full":
        covs = [np.array([[1.0, 0.6], [0.6, 1.0]]), np.array([[0.5, -0.2], [-0.2, 0.4]])]
    else:
        covs = [np.array([[1.0, 0.5], [0.5, 0.8]])] * 2
    x = np.concatenate(
        [rng.multivariate_normal(m, c, n // 2) for m, c in zip(truth_locs, covs, strict=True)]
    )
    m = BayesianMixture(2, covariance_type=covariance, random_state=0).fit(x)
    order = np.argsort(m.means_[:, 0])
    # Tolerances: a few standard errors at n/2 = 1000 points per component.
    np.testing.assert_allclose(m.means_[order], truth_locs, atol=0.15)
    np.testing.assert_allclose(m.covariances_[order], np.array(covs), atol=0.15)
    np.testing.assert_allclose(m.weights_, [0.5, 0.5], atol=0.05)


def test_criteria_are_label_permutation_invariant():
    x = _blobs(2, 300)
    fit = fit_map(x, 3, covariance="full", priors=Priors.from_data(x), init="kmeans++", n_init=5)
    perm = np.array([2, 0, 1])
    p = fit.params
    permuted = fit.__class__(
        **{
            **fit.__dict__,
            "params": p._replace(
                weights=p.weights[perm],
                locs=p.locs[perm],
                scale=p.scale[perm],
                corr_chol=p.corr_chol[perm],
            ),
        }
    )
    a, b = criteria(fit, x), criteria(permuted, x)
    for key in ("bic", "aic", "icl", "log_likelihood"):
        assert a[key] == pytest.approx(b[key], rel=1e-12)
    assert a["icl"] >= a["bic"]


def test_sample_draws_from_the_fitted_mixture():
    x = _blobs(4, 600)
    m = BayesianMixture(3, random_state=0).fit(x)
    xs, labels = m.sample(30000)
    assert xs.shape == (30000, 2) and labels.shape == (30000,)
    np.testing.assert_allclose(np.bincount(labels) / 30000, m.weights_, atol=0.015)
    for k in range(3):
        # Sample means within 5 standard errors of each component's mean.
        sel = xs[labels == k]
        se = np.sqrt(np.diag(m.covariances_[k]) / len(sel))
        np.testing.assert_array_less(np.abs(sel.mean(0) - m.means_[k]), 5 * se)


def test_the_default_fit_does_not_depend_on_the_data_units():
    """EM by default: the same means in any units (the tutorial's Adam, `method="auto"` below
    10,000 rows, moved ~learning_rate per step in the data's units: at sd 1e-6 one mean came
    out 6e4 sds away)."""
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.normal(-3, 1, 60), rng.normal(3, 1, 40)])[:, None]
    means = [
        np.sort(BayesianMixture(2, random_state=0).fit(u * base).means_[:, 0]) / u
        for u in (1e-6, 1.0, 1e6)
    ]
    np.testing.assert_allclose(means[0], means[1], rtol=1e-6)
    np.testing.assert_allclose(means[2], means[1], rtol=1e-6)
