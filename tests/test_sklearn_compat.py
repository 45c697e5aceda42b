"""The estimators inside scikit-learn's own tools: clone, pipelines, cross-validation, searches.

Skipped where scikit-learn is not installed (CI: fffcpu does not depend on it); the duck-typed
protocol itself is tested without it in test_training.py.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.base import clone, is_classifier, is_regressor  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fffcpu.training import FFFClassifier, FFFRegressor  # noqa: E402
from tests.test_training import blobs  # noqa: E402

# the shapes and dtypes of test_training.py's estimator tests: the NumPy backend compiles nothing
SMALL = dict(depth=1, leaf_width=4, epochs=2, lr=0.02, random_state=0, backend="numpy")


def test_scikit_learn_knows_what_kind_of_estimator_each_is():
    # scikit-learn >= 1.6 asks __sklearn_tags__; without it every cross-validation fit failed
    # (scored NaN with a warning, or raised with error_score="raise")
    assert is_classifier(FFFClassifier()) and not is_regressor(FFFClassifier())
    assert is_regressor(FFFRegressor()) and not is_classifier(FFFRegressor())
    X, y = blobs(60)
    labels = np.array(["cat", "dog", "eel"])[y]
    scores = cross_val_score(FFFClassifier(**SMALL), X, labels, cv=3, error_score="raise")
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    result = cross_validate(FFFClassifier(**SMALL), X, labels, cv=3, error_score="raise",
                            scoring=["accuracy", "neg_log_loss", "roc_auc_ovr", "f1_macro"])
    assert all(np.all(np.isfinite(result[f"test_{name}"]))
               for name in ("accuracy", "neg_log_loss", "roc_auc_ovr", "f1_macro"))
    r2 = cross_val_score(FFFRegressor(**SMALL), X, X[:, 0] - X[:, 1], cv=3, error_score="raise")
    assert np.all(np.isfinite(r2))


def test_grid_search_over_a_pipeline_refits_the_best():
    X, y = blobs(60)
    pipe = make_pipeline(StandardScaler(), FFFClassifier(**SMALL))
    search = GridSearchCV(pipe, {"fffclassifier__depth": [1, 2], "fffclassifier__hardening": [0.0, 1.0]},
                          cv=3, error_score="raise").fit(X, y)
    assert set(search.best_params_) == {"fffclassifier__depth", "fffclassifier__hardening"}
    best = search.best_estimator_[-1]
    assert best.depth == search.best_params_["fffclassifier__depth"] and best.n_features_in_ == 2
    assert search.predict_proba(X).shape == (len(X), 3)
    refit = clone(pipe).set_params(**search.best_params_).fit(X, y)  # random_state: the same model
    np.testing.assert_array_equal(refit.predict_proba(X), search.predict_proba(X))


# scikit-learn's estimator checks that fail on purpose, with why; every other check passes
DELIBERATELY_FAILED = {
    # fffcpu's NotFittedError is a ValueError and an AttributeError, but not scikit-learn's class
    # (fffcpu does not import scikit-learn)
    "check_estimators_unfitted": "raises fffcpu's NotFittedError",
    # complex X is a TypeError naming X and its dtype (scikit-learn wants a ValueError)
    "check_complex_data": "TypeError, not ValueError",
    # y of shape (n, 1) is refused naming the shape; scikit-learn ravels it with its own warning class
    "check_supervised_y_2d": "(n, 1) labels refused",
}


@pytest.mark.parametrize("estimator", [FFFClassifier, FFFRegressor])
def test_estimator_checks(estimator):
    from sklearn.utils.estimator_checks import check_estimator
    # its toy sets are small: the default budget (20 epochs at lr 1e-3) underfits them
    est = estimator(depth=1, leaf_width=4, epochs=30, lr=0.02, random_state=0, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped checks (no pandas, say) warn
        results = check_estimator(est, on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    expected = set(DELIBERATELY_FAILED) - ({"check_supervised_y_2d"} if estimator is FFFRegressor else set())
    assert failed == expected
