"""A scikit-learn compatible estimator over the functional core.

`BayesianMixture` fits the MAP of a mixture (any covariance structure, Gaussian or Student-t
components) and exposes scikit-learn's mixture contract: fit / predict / predict_proba /
score_samples / score / sample / fit_predict / bic / aic, get_params / set_params, fitted
attributes ending in `_`. Numbers come from bayesmix.fit_em / fit_map and bayesmix.predict*;
this module only adapts arguments.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .infer.method import fit_by_method
from .model import Priors, covariance_cholesky
from .predict import log_density, predict, predict_proba
from .select import criteria

__all__ = ["BayesianMixture"]


class BayesianMixture(DensityMixin, BaseEstimator):
    """MAP mixture model with the assignments marginalized exactly.

    Parameters
    ----------
    n_components : K
    covariance_type : "full", "tied", "diag", "spherical" (as scikit-learn) or "shared" (one
        spherical scale for all components, the Pyro tutorial's model)
    family : "normal" or "student-t" (robust to outliers)
    df : Student-t degrees of freedom, or None to learn them
    priors : "auto" (`Priors.from_data(X)`: weakly informative on the data's scale) or a
        `bayesmix.Priors`
    n_init : initializations scored; the best is optimized
    init : "kmeans" (k-means++ seeding and Lloyd iterations, scikit-learn's default; with EM
        the starts are compared after a short EM except for Normal full or tied covariances:
        `fit_em`'s init_iters), "kmeans++" (seeding only) or "seed"
    method : "em" (the default: closed-form M-steps, whatever the data's units), "adam",
        "lbfgs" or "auto" (EM from 10,000 rows on, else Adam). Adam's steps are ~learning_rate
        in the data's units: on data of sd 1e-6 or 1e6 the default learning rate misses the MAP
        (measured: locs 6e4 sds off at 1e-6)
    max_iter : EM iterations at most, or optimizer steps
    learning_rate : initial Adam learning rate, decayed to learning_rate / 100
    random_state : int, RandomState or None

    Attributes
    ----------
    weights_ (K,), means_ (K, D), covariances_ (K, D, D) (the scale matrices for Student-t),
    df_ (Student-t), labels_ (MAP component of each training row), result_ (the bayesmix
    MAPResult), converged_, n_iter_, lower_bound_ (log joint per sample at the MAP),
    n_features_in_.
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        family: str = "normal",
        df: float | None = None,
        priors: str | Priors = "auto",
        n_init: int = 10,
        init: str = "kmeans",
        method: str = "em",
        max_iter: int = 500,
        learning_rate: float = 0.05,
        random_state=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.family = family
        self.df = df
        self.priors = priors
        self.n_init = n_init
        self.init = init
        self.method = method
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit the MAP of the mixture to X (N, D)."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        priors = (
            Priors.from_data(X)
            if isinstance(self.priors, str) and self.priors == "auto"
            else self.priors
        )
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.result_ = fit_by_method(
            X,
            self.n_components,
            method=self.method,
            steps=self.max_iter,
            gradient_options={
                "learning_rate": self.learning_rate,
                "final_learning_rate": self.learning_rate / 100,
            },
            covariance=self.covariance_type,
            family=self.family,
            df=self.df,
            priors=priors,
            n_init=self.n_init,
            init=self.init,
            seed=seed,
        )
        p = self.result_.params
        self.weights_ = p.weights
        self.means_ = p.locs
        chol = np.asarray(covariance_cholesky(p))
        self.covariances_ = chol @ np.swapaxes(chol, -1, -2)
        self.df_ = None if p.df is None else float(p.df)
        self.converged_ = self.result_.converged
        self.n_iter_ = len(self.result_.losses)
        self.lower_bound_ = -self.result_.neg_log_joint / X.shape[0]
        self.labels_ = predict(self.result_, X)
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit, then return the MAP component of each training row (N,)."""
        return self.fit(X).labels_

    def _check(self, X) -> tuple:
        """(the fitted MAPResult, validated X (N, D))."""
        check_is_fitted(self)
        return self.result_, validate_data(self, X, dtype=np.float64, reset=False)

    def predict(self, X) -> np.ndarray:
        """MAP component of each row (N,)."""
        return predict(*self._check(X))

    def predict_proba(self, X) -> np.ndarray:
        """Membership probabilities (N, K)."""
        return predict_proba(*self._check(X))

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n) under the fitted mixture (N,)."""
        return log_density(*self._check(X))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row."""
        return float(np.mean(self.score_samples(X)))

    def bic(self, X) -> float:
        """Bayesian information criterion at the MAP (lower is better)."""
        return criteria(*self._check(X))["bic"]

    def aic(self, X) -> float:
        """Akaike information criterion at the MAP (lower is better)."""
        return criteria(*self._check(X))["aic"]

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw n_samples rows from the fitted mixture: (X (n, D), component labels (n,))."""
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        rng = check_random_state(self.random_state)
        labels = rng.choice(
            self.n_components, size=n_samples, p=self.weights_ / self.weights_.sum()
        )
        chol = np.linalg.cholesky(self.covariances_)
        z = rng.standard_normal((n_samples, self.means_.shape[1]))
        if self.df_ is not None:
            z *= np.sqrt(self.df_ / rng.chisquare(self.df_, size=(n_samples, 1)))
        return self.means_[labels] + np.einsum("nij,nj->ni", chol[labels], z), labels
