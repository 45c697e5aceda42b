"""The training loop, input-scaling folding, the estimators and the demo/train/evaluate/predict commands."""
import argparse
import inspect
import io
import pathlib
import re

import numpy as np
import pytest

import fffcpu
from fffcpu.training import FFFClassifier, FFFRegressor, evaluate, fit
from fffcpu.training import commands
from fffcpu.training.estimators import make_layer
from fffcpu.training.loop import fold_input_scaling, input_scaling, make_generators
from fffcpu.training.optim import SGD


class LinearLayer:
    """A tiny layer with the FFF protocol: y = x @ W + b (records train_hardened per forward)."""

    def __init__(self, d, o, seed=0):
        rng = np.random.default_rng(seed)
        self.input_width, self.output_width, self.dtype = d, o, np.float64
        self.params = {"W": rng.standard_normal((d, o)) * 0.1, "b": np.zeros(o)}
        self.train_hardened = False
        self.seen_hardened = []

    def train_forward(self, x, rng=None):
        self.seen_hardened.append(self.train_hardened)
        return x @ self.params["W"] + self.params["b"], {"x": x}

    def backward(self, cache, dL_dy, hardening=0.0, balance=0.0):
        x = cache["x"]
        return {"W": x.T @ dL_dy, "b": dL_dy.sum(axis=0)}, dL_dy @ self.params["W"].T

    def hardening_loss(self, cache):
        return 0.0

    def balance_loss(self, cache):
        return 0.0

    def __call__(self, x):
        return np.asarray(x, dtype=np.float64) @ self.params["W"] + self.params["b"]


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    return centers[y] + 0.5 * rng.standard_normal((n, 2)), y


def test_fit_learns_with_a_fake_layer_and_reports_history():
    X, y = blobs()
    layer = LinearLayer(2, 3)
    hist = fit(layer, X, y, optimizer="adam", lr=0.05, epochs=15, batch_size=16, seed=0, validation=blobs(60, 1))
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] > 0.9 and hist["val_accuracy"][-1] > 0.9
    assert hist["epoch"] == list(range(15)) and len(hist["time"]) == 15
    assert hist["val_accuracy_soft"][-1] is None  # the fake layer has no soft forward


def test_fit_refuses_a_run_that_cannot_fit_in_memory_before_it_starts(monkeypatch):
    """`fffcpu train --depth 25` on 4 inputs built its 9 GiB of weights (within the machine's memory)
    and was then killed at 24 GiB: soft training holds every leaf's hidden units for each sample."""
    from fffcpu import _validate
    layer = fffcpu.FFF(4, 8, 3, depth=6, seed=0)  # 4,603 parameters; 512 hidden units in the mixture
    X, y = np.random.default_rng(0).standard_normal((100, 4)), np.arange(100) % 3
    monkeypatch.setattr(_validate, "physical_memory_bytes", lambda: 100_000)
    before = {k: v.copy() for k, v in layer.params.items()}
    with pytest.raises(MemoryError, match=r"at least 0\.0 GiB .* 4603 parameters and, for a batch of 64, "
                                          r"twice the 512 hidden units .* smaller batch_size"):
        fit(layer, X, y, epochs=1, batch_size=64)
    assert all(np.array_equal(before[k], layer.params[k]) for k in before)  # refused before any step
    fit(layer, X, y, epochs=1, batch_size=8)  # 18 KB of gradients and 2 x 8 x 512 values fit
    layer.train_hardened = True  # hard routing: one leaf per sample, no mixture to hold
    fit(layer, X, y, epochs=1, batch_size=64)
    monkeypatch.setattr(_validate, "physical_memory_bytes", lambda: 10_000)
    with pytest.raises(MemoryError, match=r"a gradient for each of its 4603 parameters\) but"):
        fit(layer, X, y, epochs=1, batch_size=64)


def test_fit_is_bit_identical_under_one_seed():
    X, y = fffcpu.data.digits_split()[0::2]
    X, y = X[:200], y[:200]
    runs = []
    for seed in (7, 7, 8):
        layer = fffcpu.FFF(64, 4, 10, 2, region_leak=0.1, dropout=0.1, seed=1, backend="numpy")
        hist = fit(layer, X, y, optimizer="adam", lr=1e-2, epochs=2, batch_size=32, hardening=0.5, seed=seed)
        runs.append((layer.state_dict(), hist["loss"]))
    for name in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][name], runs[1][0][name])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0]["w1s"], runs[2][0]["w1s"])


def test_shuffling_uses_the_documented_generator():
    shuffle_rng, _ = make_generators(3)
    first = shuffle_rng.permutation(10)
    again, _ = make_generators(3)
    np.testing.assert_array_equal(first, again.permutation(10))


def test_early_stopping_and_restore():
    X, y = blobs()
    layer = LinearLayer(2, 3)
    opt = SGD(layer.params, lr=0.0)  # nothing changes, so the validation loss never improves
    hist = fit(layer, X, y, optimizer=opt, epochs=10, validation_split=0.25, patience=2, seed=0)
    assert hist.stopped_early and hist.best_epoch == 0 and len(hist["epoch"]) == 3
    with pytest.raises(ValueError, match="patience needs validation data"):
        fit(layer, X, y, epochs=2, patience=1)


def test_hardened_epochs_switch_and_restore():
    X, y = blobs(32)
    layer = LinearLayer(2, 3)
    fit(layer, X, y, epochs=4, batch_size=32, hardened_epochs=1, seed=0)
    assert layer.seen_hardened == [False, False, False, True]
    assert layer.train_hardened is False
    with pytest.raises(ValueError, match="hardened_epochs must be <= epochs"):
        fit(layer, X, y, epochs=2, hardened_epochs=3)


def test_hardened_epochs_are_refused_for_a_neuron_tree_with_or_without_the_attribute():
    # the check was hasattr(layer, "train_hardened"): a tree given that attribute, which it ignores,
    # ran its "hardened" epochs without effect instead of being refused
    from fffcpu.neuron_tree import NeuronTreeFFF

    X, y = blobs(32)
    for given in (False, True, None):
        tree = NeuronTreeFFF(2, 3, 2, seed=0)
        if given is not None:
            tree.train_hardened = given
        before = tree.state_dict()
        with pytest.raises(ValueError, match="hardened_epochs needs a layer with train_hardened .*NeuronTreeFFF"):
            fit(tree, X, y, epochs=2, hardened_epochs=1)
        for name, a in tree.state_dict().items():
            np.testing.assert_array_equal(a, before[name])


def test_schedules_reach_the_layer():
    calls = []

    class Spy(LinearLayer):
        def backward(self, cache, dL_dy, hardening=0.0, balance=0.0):
            calls.append((hardening, balance))
            return super().backward(cache, dL_dy)

    X, y = blobs(32)
    fit(Spy(2, 3), X, y, epochs=3, batch_size=32, hardening=lambda e: float(e), balance=0.5, seed=0)
    assert calls == [(0.0, 0.5), (1.0, 0.5), (2.0, 0.5)]


def test_progress_plain_lines_and_terminal_bar():
    X, y = blobs(64)
    plain = io.StringIO()
    fit(LinearLayer(2, 3), X, y, epochs=3, batch_size=8, verbose=True, stream=plain, seed=0)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3") and "\r" not in plain.getvalue()

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    fit(LinearLayer(2, 3), X, y, epochs=1, batch_size=8, verbose=True, stream=tty, seed=0)
    assert "\repoch 1/1 [" in tty.getvalue() and "ETA" in tty.getvalue()


@pytest.mark.parametrize("kw, match", [
    (dict(y=np.array([0, 1, 5] * 40)), r"class indices in \[0, 2\]"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(hardening=-1.0), "hardening must be a finite number >= 0"),
    (dict(loss="hinge"), "loss must be one of"),
    (dict(validation_split=0.001), "validation_split"),
    (dict(validation=blobs(30, 1), validation_split=0.2), "validation or validation_split, not both"),
    (dict(validation=blobs(30, 1)[:1]), r"validation must be a pair \(X_val, y_val\), got tuple of length 1"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(optimizer="adam", local_batch_size=8), "local_batch_size applies to the local optimizers"),
    (dict(balance=lambda e: -1.0), r"balance \(at epoch 0\) must be a finite number >= 0, got -1.0"),
])
def test_fit_errors(kw, match):
    X, y = blobs()
    args = dict(y=y, epochs=1)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        fit(LinearLayer(2, 3), X, **args)


@pytest.mark.parametrize("kw, match", [
    (dict(shuffle="no"), "shuffle must be a bool, got 'no'"),
    (dict(restore_best="no"), "restore_best must be a bool, got 'no'"),
    (dict(seed=1.5), "seed must be an integer, got 1.5"),
    (dict(hardening=lambda e: "x"), r"hardening \(at epoch 0\) must be a real number, got 'x'"),
])
def test_fit_type_errors(kw, match):
    X, y = blobs()
    with pytest.raises(TypeError, match=match):
        fit(LinearLayer(2, 3), X, y, epochs=1, **kw)


def test_fit_refuses_settings_an_optimizer_instance_would_ignore():
    X, y = blobs()
    layer = LinearLayer(2, 3)
    opt = SGD(layer.params, lr=0.1)
    for kw in (dict(lr=5.0), dict(weight_decay=0.5), dict(local_batch_size=4)):
        with pytest.raises(ValueError, match=f"{next(iter(kw))} applies to an optimizer given by name"):
            fit(layer, X, y, epochs=1, optimizer=opt, **kw)


def test_non_finite_regression_targets_are_named():
    X, _ = blobs()
    t = X[:, :1].copy()
    t[5] = np.nan
    with pytest.raises(ValueError, match="^y must be finite, got 1 NaN"):
        fit(LinearLayer(2, 1), X, t, loss="mse", epochs=1)
    with pytest.raises(ValueError, match="^y must be finite, got 1 NaN"):
        fffcpu.training.evaluate(LinearLayer(2, 1), X, t, loss="mse")
    # a NaN validation loss never counted as an improvement: early stopping ran blind
    with pytest.raises(ValueError, match="^validation y must be finite, got 1 NaN"):
        fit(LinearLayer(2, 1), X, X[:, :1], loss="mse", epochs=3, validation=(X, t), patience=1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        fffcpu.training.evaluate(LinearLayer(2, 1), X, X[:, :1], loss="mse", batch_size=0)


def test_mse_training_and_local_optimizer_on_fff():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((128, 3))
    t = np.sin(X[:, :1]) + 0.5 * X[:, 1:2]
    layer = fffcpu.FFF(3, 4, 1, 2, seed=0, dtype="float64", backend="numpy")
    hist = fit(layer, X, t, loss="mse", optimizer="local-adam", lr=1e-2, local_batch_size=16,
               epochs=10, batch_size=16, hardening=0.1, seed=0, validation=(X, t))
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] is None and hist["val_loss"][-1] < np.var(t)


@pytest.mark.parametrize("make", [
    lambda: fffcpu.FFF(5, 3, 2, 2, seed=0, dtype="float64", backend="numpy"),
    lambda: fffcpu.NeuronTreeFFF(5, 2, 2, parallel_size=2, seed=0, dtype="float64", backend="numpy"),
])
def test_fold_input_scaling_is_exact(make):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5)) * [1, 2, 3, 4, 5] + [0, 1, -2, 3, 10]
    mean, scale = input_scaling(X)
    layer = make()
    expect = layer((X - mean) / scale)
    fold_input_scaling(layer, mean, scale)
    np.testing.assert_allclose(layer(X), expect, rtol=1e-10, atol=1e-12)
    if hasattr(layer, "soft_forward"):
        fresh = make()
        np.testing.assert_allclose(layer.soft_forward(X), fresh.soft_forward((X - mean) / scale), rtol=1e-10)


def test_input_scaling_and_folding_refuse_non_finite_values():
    layer = fffcpu.FFF(3, 2, 2, 1, seed=0, backend="numpy")
    before = layer.state_dict()
    with pytest.raises(ValueError, match="mean must be finite, got 1 NaN"):
        fold_input_scaling(layer, np.array([np.nan, 0.0, 0.0]), np.ones(3))
    with pytest.raises(ValueError, match="scale must be finite and > 0 everywhere, got inf"):
        fold_input_scaling(layer, np.zeros(3), np.array([np.inf, 1.0, 1.0]))
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(ValueError, match=r"X must have shape \(n, n_features\) with n >= 1, got shape \(0, 3\)"):
        input_scaling(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="X must be finite, got 1 NaN"):
        input_scaling(np.array([[0.0, np.nan], [1.0, 2.0]]))


# -- estimators -----------------------------------------------------------------------------
def test_classifier_sklearn_protocol():
    X, y = blobs()
    labels = np.array(["cat", "dog", "eel"])[y]
    clf = FFFClassifier(depth=1, leaf_width=4, epochs=20, lr=0.02, random_state=0, backend="numpy")
    params = clf.get_params()
    assert params["depth"] == 1 and "random_state" in params
    assert type(clf)(**params).get_params() == params
    with pytest.raises(AttributeError, match="not fitted"):
        clf.predict(X)
    with pytest.raises(fffcpu.training.NotFittedError):  # exported where the estimators are
        clf.predict(X)
    assert clf.fit(X, labels) is clf
    assert list(clf.classes_) == ["cat", "dog", "eel"] and clf.n_features_in_ == 2
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    logits = np.asarray(clf.layer_(X), dtype=np.float64)  # the softmax of the hard-inference logits
    np.testing.assert_allclose(proba, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), rtol=1e-12)
    assert clf.score(X, labels) > 0.9
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert len(clf.history_["loss"]) == 20
    assert clf.set_params(depth=2) is clf and clf.depth == 2
    with pytest.raises(ValueError, match="'depht' is not a parameter"):
        clf.set_params(depht=2)
    with pytest.raises(ValueError, match="X has 3 features, but FFFClassifier is expecting 2 features as input"):
        clf.predict(np.zeros((2, 3)))
    assert "depth=2" in repr(clf)


def test_regressor_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (256, 1))
    y = np.sin(X[:, 0])
    reg = FFFRegressor(depth=1, leaf_width=8, epochs=40, lr=0.01, hardening=0.0, random_state=0,
                       backend="numpy", activation="tanh").fit(X, y)
    assert reg.predict(X).shape == (256,)
    assert reg.score(X, y) > 0.8


def test_failed_refit_leaves_the_fitted_estimator_unchanged():
    X, y = blobs()
    labels = np.array(["cat", "dog", "eel"])[y]
    clf = FFFClassifier(depth=1, leaf_width=4, epochs=5, lr=0.02, random_state=0, backend="numpy").fit(X, labels)
    before = clf.predict_proba(X)
    layer, classes = clf.layer_, clf.classes_
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        clf.set_params(epochs=0).fit(np.hstack([X, X]), y)  # other features, other classes: fails in fit
    assert clf.layer_ is layer and clf.classes_ is classes and clf.n_features_in_ == 2
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    reg = FFFRegressor(depth=1, epochs=2, random_state=0, backend="numpy").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        reg.set_params(epochs=0).fit(X, X)
    assert reg.n_outputs_ == 1 and reg.predict(X).shape == (len(X),)


def test_estimators_refuse_bad_targets_and_bad_score_shapes():
    X, y = blobs()
    with pytest.raises(ValueError, match="must not hold NaN or inf labels, got 1"):
        FFFClassifier(depth=1, epochs=1).fit(X, np.where(np.arange(len(y)) == 4, np.nan, y))
    with pytest.raises(TypeError, match="y must hold real numbers, got dtype <U"):
        FFFRegressor(depth=1, epochs=1).fit(X, np.array(["a", "b", "c"])[y])
    clf = FFFClassifier(depth=1, epochs=1, random_state=0, backend="numpy").fit(X, y)
    with pytest.raises(ValueError, match=r"y must have shape \(120,\) .*got \(10,\)"):
        clf.score(X, y[:10])
    reg = FFFRegressor(depth=1, epochs=1, random_state=0, backend="numpy").fit(X, np.stack([X[:, 0], X[:, 1]], 1))
    with pytest.raises(ValueError, match=r"y must have shape \(120, 2\) .*got \(120,\)"):
        reg.score(X, X[:, 0])  # broadcast against both outputs into a wrong R^2 before
    bad = X.copy()
    bad[3, 1] = np.nan
    # the layer's own check said "x must be finite", a name the caller never used
    for call in (lambda: clf.predict(bad), lambda: clf.predict_proba(bad), lambda: clf.score(bad, y),
                 lambda: reg.predict(bad)):
        with pytest.raises(ValueError, match=r"^X must be finite, got 1 NaN or inf value\(s\), the first at "
                                             r"index \(3, 1\)"):
            call()


def test_estimators_name_X_for_sparse_featureless_1d_and_object_inputs():
    import scipy.sparse
    X, y = blobs()
    clf = FFFClassifier(depth=1, epochs=1, random_state=0, backend="numpy")
    with pytest.raises(TypeError, match="X must be a dense array, got a sparse csr_matrix of shape"):
        clf.fit(scipy.sparse.csr_matrix(X), y)  # "X must hold real numbers, got dtype object" before
    with pytest.raises(TypeError, match="X must be a dense array, got a sparse"):
        FFFRegressor(depth=1, epochs=1).fit(scipy.sparse.csc_matrix(X), X[:, 0])
    with pytest.raises(ValueError, match=r"got shape \(120,\). Reshape your data: X.reshape\(-1, 1\)"):
        clf.fit(X[:, 0], y)
    with pytest.raises(ValueError, match=r"X has 0 feature\(s\) \(shape=\(120, 0\)\)"):
        clf.fit(X[:, :0], y)  # was "input_width must be an integer >= 1"
    expected = clf.fit(X, y).predict(X)
    np.testing.assert_array_equal(clf.fit(X.astype(object), y).predict(X.astype(object)), expected)
    bad = X.astype(object)
    bad[3, 1] = {"a": 1}
    with pytest.raises(TypeError, match="X must hold real numbers, got dtype object holding something else"):
        clf.fit(bad, y)
    reg = FFFRegressor(depth=1, epochs=1, random_state=0, backend="numpy")
    expected = reg.fit(X, X[:, 0]).predict(X)
    np.testing.assert_array_equal(reg.fit(X, X[:, 0].astype(object)).predict(X), expected)  # y alike
    with pytest.raises(TypeError, match="y must hold real numbers, got dtype object holding something else"):
        reg.fit(X, np.array([{"a": 1}] * len(X)))


def test_classifier_refuses_continuous_labels_and_both_a_missing_y():
    X, y = blobs()
    clf = FFFClassifier(depth=1, epochs=1, random_state=0, backend="numpy")
    with pytest.raises(ValueError, match=r"continuous\): 0.25 at index 4; FFFRegressor"):
        clf.fit(X, np.where(np.arange(len(y)) == 4, 0.25, y))  # trained 4 classes, one of them "0.25"
    with pytest.raises(ValueError, match="continuous"):
        clf.fit(X, X[:, 0])  # a regression target made 120 one-sample classes
    assert list(clf.fit(X, y.astype(np.float64)).classes_) == [0.0, 1.0, 2.0]  # whole floats are labels
    with pytest.raises(ValueError, match=r"at least 2 classes, got 1 class: \['a'\]"):
        clf.fit(X, np.full(len(y), "a"))
    for est in (clf, FFFRegressor(depth=1, epochs=1)):
        with pytest.raises(ValueError, match=f"{type(est).__name__} requires y to be passed, but the target y is None"):
            est.fit(X, None)


@pytest.mark.parametrize("value, error, match", [
    (np.random.RandomState(0), TypeError, "random_state must be an integer >= 0 or None, got a RandomState"),
    (np.random.default_rng(0), TypeError, "random_state must be an integer >= 0 or None, got a Generator"),
    (1.5, TypeError, r"random_state must be an integer, got 1.5 \(float\)"),
    (-1, ValueError, "random_state must be an integer >= 0, got -1"),
])
def test_estimators_name_random_state_in_its_errors(value, error, match):
    X, y = blobs(12)
    with pytest.raises(error, match=match):  # said "seed must be an integer", a name fit never showed
        FFFClassifier(depth=1, epochs=1, random_state=value).fit(X, y)


def test_unfitted_estimators_raise_a_value_error_that_is_an_attribute_error_too():
    X, y = blobs(12)
    for est, calls in ((FFFClassifier(), ("predict", "predict_proba")), (FFFRegressor(), ("predict",))):
        for name in calls:
            with pytest.raises(ValueError, match=f"this {type(est).__name__} is not fitted yet") as info:
                getattr(est, name)(X)  # an AttributeError only before: 'except ValueError' missed it
            assert isinstance(info.value, AttributeError)
        with pytest.raises(ValueError, match="not fitted yet"):
            est.score(X, y)


# -- commands -------------------------------------------------------------------------------
def parse(argv):
    from fffcpu.cli import parse_args
    args = parse_args(argv)
    args.stream = io.StringIO()
    return args


def run(argv):
    args = parse(argv)
    assert args.func(args) == 0
    return args.stream.getvalue()


def test_train_evaluate_predict_round_trip(tmp_path):
    model = str(tmp_path / "m.fff")
    out = run(["train", "--depth", "2", "--leaf-width", "4", "--epochs", "3", "--batch-size", "64",
               "--output", model, "--seed", "1", "--quiet"])
    assert "held-out 359 samples" in out and "saved to" in out
    layer = fffcpu.load(model)
    assert layer.depth == 2 and layer.leaf_width == 4
    X, y = fffcpu.data.load_digits()
    data_file = tmp_path / "d.npz"
    np.savez(data_file, X=X[:50], y=y[:50])
    out = run(["evaluate", model, "--data", str(data_file)])
    acc = float(out.split("accuracy (hard inference) ")[1].split()[0])
    assert acc == pytest.approx(np.mean(np.asarray(layer(X[:50])).argmax(1) == y[:50]))
    run(["predict", model, "--data", str(data_file), "--output", str(tmp_path / "p.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), np.asarray(layer(X[:50])).argmax(1))
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([X[:5], y[:5]]), delimiter=",", fmt="%.6g")
    printed = run(["predict", model, "--data", str(csv)]).split()
    assert [int(v) for v in printed] == list(np.asarray(layer(X[:5])).argmax(1))


def test_train_other_options(tmp_path):
    model = str(tmp_path / "t.fff")
    out = run(["train", "--variant", "neuron-tree", "--depth", "2", "--epochs", "1", "--optimizer", "local-sgd",
               "--local-batch-size", "8", "--output", model, "--test-fraction", "0", "--no-standardize"])
    assert "NeuronTreeFFF" in out and "epoch 1/1" in out
    csv = tmp_path / "r.csv"
    rng = np.random.default_rng(0)
    Xr = rng.standard_normal((60, 3))
    np.savetxt(csv, np.column_stack([Xr, Xr.sum(1)]), delimiter=",")
    run(["train", "--data", str(csv), "--loss", "mse", "--epochs", "2", "--depth", "1", "--output", model,
         "--no-recipe", "--validation-split", "0.2", "--patience", "5", "--quiet"])
    assert "loss" in run(["evaluate", model, "--data", str(csv), "--loss", "mse"])
    args = parse(["train", "--data", str(csv), "--output", model])
    with pytest.raises(ValueError, match="must be integer class indices"):
        args.func(args)


def test_train_takes_whole_float_and_bool_labels_and_names_a_fractional_one(tmp_path):
    """Labels stored as 0., 1., 2. (NumPy's and pandas' habit) were refused as "dtype float64", while
    a CSV holding the same numbers trained; bool labels were refused too."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)  # classes 0, 1, 2
    model = str(tmp_path / "m.fff")
    argv = ["--epochs", "1", "--depth", "1", "--test-fraction", "0", "--quiet", "--output", model, "--seed", "0"]
    predictions = {}
    for name, labels in [("int", y), ("float", y.astype(np.float64)), ("float32", y.astype(np.float32))]:
        np.savez(tmp_path / f"{name}.npz", X=X, y=labels)
        run(["train", "--data", str(tmp_path / f"{name}.npz")] + argv)
        predictions[name] = fffcpu.load(model)(X.astype(np.float32))
    np.testing.assert_array_equal(predictions["float"], predictions["int"])  # the same labels, the same run
    np.testing.assert_array_equal(predictions["float32"], predictions["int"])
    np.savez(tmp_path / "bool.npz", X=X, y=X[:, 0] > 0)
    run(["train", "--data", str(tmp_path / "bool.npz")] + argv)
    assert fffcpu.load(model).output_width == 2
    for bad, match in [(0.5, r"must be integer class indices .*got 0.5 at index 7 \(dtype float64; use --loss mse"),
                       (np.nan, r"array 'y' in .*bad\.npz' holds nan at index 7 "),  # refused as it is read
                       (np.inf, r"array 'y' in .*bad\.npz' holds inf at index 7 ")]:
        labels = y.astype(np.float64)
        labels[7] = bad
        np.savez(tmp_path / "bad.npz", X=X, y=labels)
        args = parse(["train", "--data", str(tmp_path / "bad.npz")] + argv)
        with pytest.raises(ValueError, match=match):
            args.func(args)
    with pytest.raises(ValueError, match=r"must be integer class indices .*got nan at index 1 "):
        commands._class_targets(np.array([0.0, np.nan]), "y.npz")  # the check itself, for other callers


@pytest.mark.parametrize("extra, match", [
    (["--test-fraction", "0.99"], r"--test-fraction 0.99 leaves no training samples of 30"),
    (["--test-fraction", "0.99", "--loss", "mse"], r"--test-fraction 0.99 leaves no training samples of 30"),
    (["--patience", "2"], r"--patience 2 needs --validation-split > 0"),
    (["--classes", "1"], r"--classes 1 is too small for labels up to 1"),
    (["--local-batch-size", "4"], r"--local-batch-size applies to the local optimizers only, got --optimizer adam"),
    (["--variant", "neuron-tree", "--region-leak", "0.5"], r"--region-leak applies to --variant leaf only, got --region-leak 0.5 with"),
    (["--variant", "neuron-tree", "--dropout", "0.5"], r"--dropout applies to --variant leaf only, got --dropout 0.5"),
])
def test_train_refuses_options_it_would_ignore_or_fail_on_late(tmp_path, extra, match):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, X=rng.standard_normal((30, 3)), y=np.arange(30) % 2)
    args = parse(["train", "--data", str(data), "--epochs", "1", "--output", str(tmp_path / "m.fff"), "-q"] + extra)
    with pytest.raises(ValueError, match=match):
        args.func(args)
    assert not (tmp_path / "m.fff").exists()


def test_estimator_neuron_tree_refuses_leaf_only_regularisers():
    X, y = blobs()
    with pytest.raises(ValueError, match="dropout applies to the leaf variant only, got dropout=0.2"):
        FFFClassifier(variant="neuron-tree", dropout=0.2, epochs=1).fit(X, y)


def test_divergence_is_reported_as_such(tmp_path):
    # the backward pass refused the non-finite dL_dy first ("dL_dy must be finite"), so the loop's
    # "training diverged ... lower the learning rate" was never reached
    rng = np.random.default_rng(0)
    X = 100 * rng.standard_normal((64, 4))
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match="training diverged at epoch .*lower the learning rate"):
            fit(fffcpu.FFF(4, 8, 2, 1, seed=0, backend="numpy"), X, 50 * X[:, :2], loss="mse", optimizer="sgd",
                lr=1e3, epochs=20, seed=0)
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=50 * X[:, 0])
    args = parse(["train", "--data", str(data), "--loss", "mse", "--optimizer", "sgd", "--lr", "1000", "--epochs", "20",
                  "--no-standardize", "--output", str(tmp_path / "m.fff"), "-q"])
    with np.errstate(all="ignore"), pytest.raises(ValueError, match=r"training diverged .*\(--lr 1000.0\)"):
        args.func(args)


def test_divergence_in_the_last_step_is_reported():
    """The loss is checked before each step, so an overflow in the very last step of fit returned
    normally with inf weights (and a later evaluate gave a NaN loss without an error)."""
    rng = np.random.default_rng(0)
    X = 1e3 * rng.normal(size=(64, 4))
    y = rng.integers(0, 3, 64)
    layer = fffcpu.FFF(4, 4, 3, 2, seed=0)
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match="training diverged at epoch 1: its last step made parameter "
                                                     "'.*' non-finite; lower the learning rate"):
            fit(layer, X, y, optimizer="sgd", lr=1e37, epochs=1, batch_size=64, seed=0)


def test_divergence_with_restore_best_gives_back_the_best_epoch():
    """The per-epoch parameter check raised before fit's restore of the best epoch: with patience and
    restore_best, a blow-up in the last step left the layer with inf weights and the best state lost."""
    from fffcpu.training.optim import SGD
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4))
    y = rng.integers(0, 3, 64)
    layer = fffcpu.FFF(4, 4, 3, 2, seed=0)
    steps = []

    class BlowsUpLast(SGD):
        def step(self, grads):
            super().step(grads)
            steps.append(1)
            if len(steps) == 6:  # the last step of epoch 3 (two batches per epoch)
                for p in layer.params.values():
                    p[...] = np.inf

    opt = BlowsUpLast(layer.params, lr=0.05)
    with np.errstate(all="ignore"):
        with pytest.raises(FloatingPointError, match=r"training diverged at epoch 3.*; the parameters of the best "
                                                     r"epoch so far \(epoch [12]\) were restored"):
            fit(layer, X[:48], y[:48], optimizer=opt, epochs=3, batch_size=24, seed=0,
                validation=(X[48:], y[48:]), patience=5, restore_best=True)
    assert all(np.isfinite(p).all() for p in layer.params.values())


def test_estimators_take_bool_features():
    """scikit-learn takes bool X as numbers 0 and 1; the estimators' check let it through, then fit
    and predict refused it ("X must hold real numbers, got dtype bool")."""
    from fffcpu.training import FFFClassifier
    X = np.random.default_rng(0).random((60, 3)) > 0.5
    y = X[:, 0].astype(int)
    clf = FFFClassifier(depth=1, leaf_width=4, epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), clf.predict(X.astype(np.float64)))
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X.astype(np.float64)))
    same = FFFClassifier(depth=1, leaf_width=4, epochs=2, random_state=0).fit(X.astype(np.float64), y)
    np.testing.assert_array_equal(clf.layer_.params["w1s"], same.layer_.params["w1s"])


def test_train_checks_its_output_before_training(tmp_path, capsys, monkeypatch):
    """`fffcpu train -o missing/m.fff` trained in full before failing on the folder, and
    `-o` naming the --data file replaced the user's data with the model."""
    from fffcpu.cli import main
    data = tmp_path / "d.npz"
    np.savez(data, X=np.ones((8, 3)), y=np.zeros(8, dtype=np.int64))
    before = data.read_bytes()
    monkeypatch.setattr(commands, "fit", lambda *a, **k: pytest.fail("trained before checking --output"))
    for output, message in [(tmp_path / "nodir" / "m.fff", "directory .*nodir' does not exist"),
                            (tmp_path, "it is a directory"),
                            (data, r"--output .*d\.npz' is the --data file .*: the model would overwrite it")]:
        assert main(["train", "--data", str(data), "-o", str(output), "-q"]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert data.read_bytes() == before
    with pytest.raises(SystemExit):
        parse(["train", "--seed", "-1", "-o", "m.fff"])
    assert "argument --seed: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_argument_types_accept_their_range_and_name_what_they_refuse():
    """The argparse converters of fffcpu._argtypes, at the edges of what each accepts."""
    from fffcpu import _argtypes as at
    assert at.positive_int("1") == 1 and at.nonneg_int("0") == 0
    assert at.nonneg_float("0") == 0.0 and at.nonneg_float("1e3") == 1000.0
    assert at.fraction("0") == 0.0 and at.fraction("0.999") == 0.999
    assert at.probability("0") == 0.0 and at.probability("1") == 1.0  # --region-leak 1, as the layer takes
    for convert, text, message in [(at.positive_int, "0", "expected an integer >= 1, got 0"),
                                   (at.nonneg_int, "-1", "expected an integer >= 0, got -1"),
                                   (at.nonneg_int, "1.5", "expected an integer >= 0, got '1.5'"),
                                   (at.nonneg_float, "x", "expected a number, got 'x'"),
                                   (at.nonneg_float, "-0.5", "expected a finite number >= 0, got -0.5"),
                                   (at.nonneg_float, "nan", "expected a finite number >= 0, got nan"),
                                   (at.nonneg_float, "inf", "expected a finite number >= 0, got inf"),
                                   (at.fraction, "1", "expected a fraction in [0, 1), got 1"),
                                   (at.fraction, "-0.1", "expected a fraction in [0, 1), got -0.1"),  # the range
                                   (at.fraction, "nan", "expected a fraction in [0, 1), got nan"),
                                   (at.probability, "-1", "expected a probability in [0, 1], got -1"),
                                   (at.probability, "x", "expected a number, got 'x'"),
                                   (at.probability, "1.5", "expected a probability in [0, 1], got 1.5")]:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            convert(text)
        assert str(info.value) == message, (convert.__name__, text)


def test_diverging_demo_is_a_one_line_error(capsys):
    """fffcpu demo (and efff) ended in a traceback when training diverged: cli.main did not report
    the loop's FloatingPointError."""
    from fffcpu.cli import main
    with np.errstate(all="ignore"):
        assert main(["demo", "--lr", "1e38", "--epochs", "1", "--depth", "2", "--leaf-width", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fffcpu demo: error: training diverged at epoch 1") and "lower the learning rate" in err


def test_demo_runs_small():
    out = run(["demo", "--epochs", "2", "--depth", "2", "--leaf-width", "4"])
    for text in ("dense FF", "FFF soft", "FFF hard", "leaf usage", "entropy", "inference", "FLOP ratio"):
        assert text in out


def test_demo_neuron_tree_variant_runs_small():
    out = run(["demo", "--variant", "neuron-tree", "--epochs", "2", "--depth", "2", "--parallel-size", "2"])
    assert "neuron-tree FFF: depth 2, 2 tree(s) (14 neurons, 6 per inference)" in out
    assert "FFF soft" not in out  # a neuron tree has no soft mixture
    for text in ("dense FF", "FFF hard", "over 8 leaves (all trees)", "FLOP ratio"):
        assert text in out


def test_help_explains_every_option():
    parser = argparse.ArgumentParser(prog="fffcpu")
    sub = parser.add_subparsers(dest="command")
    commands.add_parsers(sub)
    for name, choice in sub.choices.items():
        text = choice.format_help()
        for action in choice._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
                assert action.option_strings[-1] in text


def test_help_states_each_default_once():
    """--label-column read "(default: the last column) (default: None)" and --x-key "(default: X)
    (default: X)": hand-written defaults plus ArgumentDefaultsHelpFormatter's; flags read
    "--no-recipe ... (default: True)"."""
    parser = argparse.ArgumentParser(prog="fffcpu")
    sub = parser.add_subparsers(dest="command")
    commands.add_parsers(sub)
    for name, choice in sub.choices.items():
        text = " ".join(choice.format_help().split())
        assert not re.search(r"\(default[^()]*\) \(default", text), (name, text)
        for noise in ("(default: None)", "(default: True)", "(default: False)"):
            assert noise not in text, (name, noise)
        if name in ("train", "evaluate", "predict"):
            assert "(default: X)" in text and "(default: y)" in text and "(default: digits)" in text
    train = " ".join(sub.choices["train"].format_help().split())
    assert "labels (default: the last column) --x-key" in train and "(default: 30)" not in train
    assert "training epochs (default: 30, or on a small data set as many as pass 128,000 samples through " \
           "training, at most 1,000)" in train
    predict = " ".join(sub.choices["predict"].format_help().split())
    assert "(default: the last column if the file has one column more than the model's input width" in predict
    # predict has no --loss, and reads no labels: its --y-key read "..., or, with --loss mse, (n, k)"
    assert "--loss" not in predict and "--y-key NAME ignored: predict reads only the features" in predict


def test_help_says_what_applies_to_one_variant_or_loss_only():
    """train's --dropout read as applying to a neuron tree too (train refuses it there), --test-fraction
    as stratified for regression targets too (they get a plain seeded permutation), and demo's
    description as training a leaf FFF whatever --variant says."""
    parser = argparse.ArgumentParser(prog="fffcpu")
    sub = parser.add_subparsers(dest="command")
    commands.add_parsers(sub)
    train = " ".join(sub.choices["train"].format_help().split())
    assert "dropout after the leaf activation, in training (leaf variant)" in train
    assert "stratified by class with --loss cross_entropy" in train
    demo = " ".join(sub.choices["demo"].format_help().split())
    assert "(or, with --variant neuron-tree, a neuron tree)" in demo


def test_cli_main_exit_statuses_and_one_line_errors(tmp_path, capsys, monkeypatch):
    from fffcpu.cli import main
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"fffcpu {fffcpu.__version__}\n"
    with pytest.raises(SystemExit) as info:
        main([])  # no command: argparse's usage error, not an AttributeError on args.func
    assert info.value.code == 2 and "the following arguments are required: COMMAND" in capsys.readouterr().err
    bad = tmp_path / "bad.fff"
    bad.write_bytes(b"not a model")
    assert main(["inspect", str(bad)]) == 2  # a handler's own status is passed on
    assert capsys.readouterr().err.startswith("fffcpu inspect: error:")
    for exc in (ImportError("needs a package"), KeyError("a key"), OSError("disk full"), TypeError("a type"),
                MemoryError("out of memory")):
        def handler(args, exc=exc):
            raise exc
        monkeypatch.setattr(commands, "run_evaluate", handler)  # add_parsers reads it when main builds the parser
        assert main(["evaluate", "m.fff"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fffcpu evaluate: error: ") and err.count("\n") == 1 and str(exc.args[0]) in err

def test_python_m_fffcpu_and_help_without_docstrings():
    """``python -m fffcpu`` runs the command line; under ``python -OO`` (no docstrings) building the
    parser failed with AttributeError on ``__doc__.split``."""
    import subprocess
    import sys
    for flags in ([], ["-OO"]):
        for sub in ([], ["inspect"], ["convert"], ["bench"]):
            out = subprocess.run([sys.executable, *flags, "-m", "fffcpu", *sub, "--help"],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0 and "usage: " in out.stdout, (flags, sub, out.stderr[-1500:])



def test_recipe_schedules_phases_as_documented():
    """docs/training.md: balance (h 1, alpha 1) over the first half, harden (h 3, alpha 0) after it,
    hard routing over the last third; the boundaries are rounded, not truncated."""
    s = commands.recipe_schedules(7)  # 3.5 -> 4 balancing epochs; 7 / 3 -> 2 hardened epochs
    assert [s["hardening"](e) for e in range(7)] == [1.0] * 4 + [3.0] * 3
    assert [s["balance"](e) for e in range(7)] == [1.0] * 4 + [0.0] * 3
    assert s["hardened_epochs"] == 2
    s = commands.recipe_schedules(6, hardening=0.5, final_hardening=2.0, balance=0.25, balance_fraction=0.34,
                                  hardened_fraction=0.5)
    assert [s["hardening"](e) for e in range(6)] == [0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
    assert [s["balance"](e) for e in range(6)] == [0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert s["hardened_epochs"] == 3
    assert commands.recipe_schedules(4, hardened_fraction=2.0)["hardened_epochs"] == 4  # never beyond the run


def test_leaf_usage_summary_of_known_counts():
    class Counted:
        def usage(self, X):
            return {"hard_leaf": np.array([3, 0, 1, 1])}

    lo, hi, entropy, unused = commands._leaf_usage_summary(Counted(), None)
    p = np.array([3, 1, 1]) / 5
    assert (lo, hi, unused) == (0, 3, 1)
    assert entropy == pytest.approx(-(p * np.log(p)).sum() / np.log(4), rel=1e-12)


def test_demo_trains_the_recipe_fff_against_a_dense_net_of_its_training_width(monkeypatch):
    calls = []
    real_fit = commands.fit
    monkeypatch.setattr(commands, "fit", lambda layer, X, y, **kw: calls.append((layer, kw)) or real_fit(layer, X, y, **kw))
    out = run(["demo", "--epochs", "3", "--depth", "2", "--leaf-width", "4"])
    (fff, kw_fff), (dense, kw_dense) = calls
    assert (fff.depth, fff.leaf_width) == (2, 4)
    assert (dense.depth, dense.leaf_width, dense.activation) == (0, 16, fff.activation)
    recipe = commands.recipe_schedules(3)
    assert [kw_fff["hardening"](e) for e in range(3)] == [recipe["hardening"](e) for e in range(3)]
    assert [kw_fff["balance"](e) for e in range(3)] == [recipe["balance"](e) for e in range(3)]
    assert kw_fff["hardened_epochs"] == recipe["hardened_epochs"]
    assert not {"hardening", "balance", "hardened_epochs"} & set(kw_dense)
    assert "training width 16" in out and "one hidden layer of 16;" in out
    assert "dominated by call overhead" in out  # a layer this small gets the note


def test_demo_and_train_defaults_are_the_documented_ones():
    """The demo runs docs/training.md's digits command; train's recipe defaults are those of
    recipe_schedules (as documented), and its other defaults those of fit and make_layer."""
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text(encoding="utf-8")
    line = re.search(r"^fffcpu train --data digits (.*) -o model.fff$", doc, re.M).group(1).split()
    demo = parse(["demo"])
    given = dict(zip(line[::2], line[1::2]))
    assert {k: float(v) for k, v in given.items()} == {
        "--depth": demo.depth, "--leaf-width": demo.leaf_width, "--epochs": demo.epochs,
        "--batch-size": demo.batch_size, "--lr": demo.lr}
    train = parse(["train", "-o", "m.fff"])
    recipe = inspect.signature(commands.recipe_schedules).parameters
    for name in ("hardening", "final_hardening", "balance", "balance_fraction", "hardened_fraction"):
        assert getattr(train, name) == recipe[name].default, name
    assert train.recipe is True and parse(["train", "-o", "m.fff", "--no-recipe"]).recipe is False
    assert train.batch_size == inspect.signature(fit).parameters["batch_size"].default
    assert train.dtype == inspect.signature(make_layer).parameters["dtype"].default
    assert train.test_fraction == 0.2  # docs/training.md


def test_train_hands_fit_standardised_inputs_and_folds_the_scaling(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[5.0, -3.0, 0.5], scale=[2.0, 0.5, 1.0], size=(40, 3))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=np.arange(40) % 3)
    model = tmp_path / "m.fff"
    seen = {}

    def fake_fit(layer, Xs, y, **kw):  # no training: the initial weights show the folding as well
        seen.update(Xs=Xs, kw=kw, out=np.asarray(layer(Xs)))
        return {"epoch": [0]}

    monkeypatch.setattr(commands, "fit", fake_fit)
    base = ["train", "--data", str(data), "--output", str(model), "--test-fraction", "0", "-q", "--dtype", "float64"]
    run(base)
    np.testing.assert_allclose(seen["Xs"].mean(axis=0), 0, atol=1e-12)
    assert seen["Xs"].std(axis=0).min() > 0.5
    np.testing.assert_allclose(fffcpu.load(model)(X), seen["out"], rtol=1e-9, atol=1e-12)
    run(base + ["--no-standardize"])
    np.testing.assert_array_equal(seen["Xs"], X)  # the rows as given: nothing held out, nothing reordered
    # the recipe with the command's settings, or constant settings without it
    run(base + ["--epochs", "6", "--hardening", "0.5", "--final-hardening", "2", "--balance", "0.25",
                "--balance-fraction", "0.34", "--hardened-fraction", "0.5", "--optimizer", "adamw",
                "--weight-decay", "0.05"])
    kw = seen["kw"]
    assert [kw["hardening"](e) for e in range(6)] == [0.5, 0.5, 2.0, 2.0, 2.0, 2.0]
    assert [kw["balance"](e) for e in range(6)] == [0.25, 0.25, 0.0, 0.0, 0.0, 0.0]
    assert kw["hardened_epochs"] == 3 and kw["weight_decay"] == 0.05 and kw["optimizer"] == "adamw"
    run(base + ["--no-recipe", "--hardening", "0.5", "--balance", "0.25"])
    assert (seen["kw"]["hardening"], seen["kw"]["balance"]) == (0.5, 0.25)
    assert "hardened_epochs" not in seen["kw"]


def test_label_column_spellings():
    assert commands._label_column(None) == -1  # the last column
    assert commands._label_column(2) == 2
    for none in ("none", "None", "NONE"):
        assert commands._label_column(none) is None
    assert commands._label_column("0") == 0 and commands._label_column("-2") == -2
    assert commands._label_column("label") == "label"


def test_class_targets_refuse_infinite_and_negative_labels():
    with pytest.raises(ValueError, match=r"must be integer class indices .*got inf at index 1 "):
        commands._class_targets(np.array([0.0, np.inf]), "y.npz")
    with pytest.raises(ValueError, match=r"labels in 'y.npz' must be >= 0, got minimum -1"):
        commands._class_targets(np.array([0, -1, 1]), "y.npz")
    assert commands._class_targets(np.array([True, False]), "y.npz").tolist() == [1, 0]


def test_evaluate_checks_class_labels_as_train_does(tmp_path):
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(3, 2, 3, 1, seed=0), model)
    X = np.random.default_rng(0).normal(size=(6, 3))
    np.savez(tmp_path / "whole.npz", X=X, y=np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0]))
    np.savez(tmp_path / "int.npz", X=X, y=np.array([0, 1, 2, 0, 1, 2]))
    assert run(["evaluate", str(model), "--data", str(tmp_path / "whole.npz")]).split("\n")[1:] == \
        run(["evaluate", str(model), "--data", str(tmp_path / "int.npz")]).split("\n")[1:]
    np.savez(tmp_path / "frac.npz", X=X, y=np.array([0.0, 1.5, 2.0, 0.0, 1.0, 2.0]))
    args = parse(["evaluate", str(model), "--data", str(tmp_path / "frac.npz")])
    with pytest.raises(ValueError, match=r"must be integer class indices .*got 1.5 at index 1"):
        args.func(args)


def test_predict_ignores_labels_as_its_help_says(tmp_path):
    """`predict --data IMAGES --labels FILE` read the labels file: a missing one, or one whose count did
    not match the images, failed the predictions that never use it."""
    import struct
    layer = fffcpu.FFF(4, 2, 3, 1, seed=0)
    model = str(tmp_path / "m.fff")
    fffcpu.save(layer, model)
    images = (np.arange(5 * 4) * 7 % 256).astype(np.uint8).reshape(5, 2, 2)
    idx = tmp_path / "images-idx3-ubyte"
    idx.write_bytes(struct.pack(">iiii", 0x803, 5, 2, 2) + images.tobytes())
    short = tmp_path / "labels-idx1-ubyte"
    short.write_bytes(struct.pack(">ii", 0x801, 2) + bytes(2))
    expected = [int(v) for v in np.asarray(layer(images.reshape(5, 4) / np.float32(255))).argmax(1)]
    for labels in (str(short), str(tmp_path / "missing-labels")):
        printed = run(["predict", model, "--data", str(idx), "--labels", labels]).split()
        assert [int(v) for v in printed] == expected


def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(f"{v:.6g}" if isinstance(v, float) else str(v)
                                                            for v in row) + "\n" for row in rows))
    return str(path)


def test_the_label_column_train_was_given_is_the_default_afterwards(tmp_path, capsys):
    """A model trained with --label-column label (the first column) was then read by predict, evaluate
    and inspect with the LAST column as labels: the label went in as a feature and a feature was
    dropped, and predictions came out wrong without a word (71 of 120 right against 105)."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 4))
    y = (X[:, 1] > 0).astype(int) + (X[:, 3] > 0.5)
    first = _csv(tmp_path / "first.csv", ["label", "a", "b", "c", "d"], [[int(t), *x] for t, x in zip(y, X)])
    features = _csv(tmp_path / "features.csv", ["a", "b", "c", "d"], [list(x) for x in X])
    model = str(tmp_path / "m.npz")
    run(["train", "--data", first, "--label-column", "label", "-o", model, "--epochs", "3", "-q"])
    layer = fffcpu.load(model)
    expected = [int(v) for v in np.asarray(layer(X.astype(np.float32))).argmax(1)]
    assert [int(v) for v in run(["predict", model, "--data", first]).split()] == expected
    assert [int(v) for v in run(["predict", model, "--data", features]).split()] == expected  # no label column
    assert [int(v) for v in run(["predict", model, "--data", first, "--label-column", "label"]).split()] == expected
    accuracy = np.mean(np.array(expected) == y)
    assert f"accuracy (hard inference) {accuracy:.4f}" in run(["evaluate", model, "--data", first])
    from fffcpu.cli import main
    capsys.readouterr()
    assert main(["inspect", model, "--data", first]) == 0  # its labels read from the first column too
    assert f"accuracy on these labels: hard {accuracy:.4f}" in capsys.readouterr().out
    # a copy made by convert keeps it (it was dropped, and the copy read the last column again)
    from fffcpu.cli import main
    assert main(["convert", model, str(tmp_path / "copy.fff")]) == 0
    assert [int(v) for v in run(["predict", str(tmp_path / "copy.fff"), "--data", first]).split()] == expected
    # inspect reads a file of features only whole, as predict does
    capsys.readouterr()
    assert main(["inspect", model, "--data", features]) == 0
    assert "leaves: " in capsys.readouterr().out
    # given explicitly, the option still wins: the last column as labels then
    with pytest.raises(ValueError):
        args = parse(["evaluate", model, "--data", first, "--label-column", "-1"])
        args.func(args)


def test_a_regression_model_predicts_values_and_evaluates_with_its_loss(tmp_path):
    """predict printed a regression model's argmax (0 for every row with one target), and evaluate
    scored it as a classifier unless told --loss mse."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 3))
    data = tmp_path / "reg.npz"
    np.savez(data, X=X, y=X[:, 0] - 2 * X[:, 2])
    model = str(tmp_path / "r.npz")
    run(["train", "--data", str(data), "--loss", "mse", "-o", model, "--epochs", "3", "-q"])
    printed = run(["predict", model, "--data", str(data)]).splitlines()
    assert printed == run(["predict", model, "--data", str(data), "--raw"]).splitlines()
    assert len(set(printed)) > 10
    assert run(["evaluate", model, "--data", str(data)]) == run(["evaluate", model, "--data", str(data), "--loss", "mse"])


def test_command_line_walkthrough_fixes(tmp_path, capsys):
    """Defects a walk through the commands found (round 14), each named by the option or file now."""
    import struct
    from fffcpu.cli import main
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=(X[:, 0] > 0).astype(int))
    model = str(tmp_path / "m.npz")
    run(["train", "--data", str(data), "-o", model, "--epochs", "1", "-q"])
    cases = [
        # train -o m.pt wrote an fffcpu .npz under a PyTorch suffix, which convert could not read
        (["train", "--data", str(data), "-o", str(tmp_path / "m.pt"), "-q"],
         "train writes fffcpu model files (.npz or .fff); write one and convert it"),
        # values beyond float32 failed in the scaling, naming nothing
        (["train", "--data", str(tmp_path / "huge.npz"), "-o", str(tmp_path / "h.npz"), "-q"],
         "holds values beyond the model's dtype float32 (largest magnitude 3.403e+38), up to 1e+301"),
        (["train", "--data", str(tmp_path / "huge.npz"), "-o", str(tmp_path / "h.npz"), "-q", "--dtype", "float64"],
         "its features cannot be standardized (their mean or standard deviation overflows)"),
        # an object y (pandas' strings) was reported as a damaged member
        (["train", "--data", str(tmp_path / "obj.npz"), "-o", str(tmp_path / "o.npz"), "-q"],
         "array 'y' holds Python objects (pickled data), which are never unpickled"),
        # a missing labels file was called a data file
        (["train", "--data", str(tmp_path / "images-idx3-ubyte"), "--labels", str(tmp_path / "nolabels"), "-o",
          str(tmp_path / "i.npz"), "-q"], "labels file '" + str(tmp_path / "nolabels") + "' does not exist"),
        # predict -o could overwrite the --labels file
        (["predict", model, "--data", str(tmp_path / "images-idx3-ubyte"), "--labels", str(tmp_path / "labels"),
          "-o", str(tmp_path / "labels")], "is the --labels file"),
    ]
    np.savez(tmp_path / "huge.npz", X=np.full((10, 3), 1e300) * np.arange(1, 11)[:, None], y=np.arange(10) % 2)
    np.savez(tmp_path / "obj.npz", X=np.zeros((50, 3)), y=np.array(["a", "b"] * 25, dtype=object))
    (tmp_path / "images-idx3-ubyte").write_bytes(struct.pack(">iiii", 0x803, 4, 1, 3) + bytes(12))
    (tmp_path / "labels").write_bytes(struct.pack(">ii", 0x801, 4) + bytes(4))
    before = (tmp_path / "labels").read_bytes()
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert (tmp_path / "labels").read_bytes() == before
    assert not (tmp_path / "m.pt").exists()
    # options of the other variant, or --classes with mse, were ignored without a word
    for argv, message in [(["train", "--data", str(data), "-o", str(tmp_path / "p.npz"), "--parallel-size", "3"],
                           "--parallel-size applies to --variant neuron-tree only, got --parallel-size 3"),
                          (["demo", "--parallel-size", "2"], "--parallel-size applies to --variant neuron-tree only"),
                          (["train", "--data", str(data), "-o", str(tmp_path / "p.npz"), "--loss", "mse",
                            "--classes", "3"], "--classes applies to --loss cross_entropy only, got --classes 3")]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "p.npz").exists()
    # a CSV file given as --labels, and a comma-separated file named .tsv, got hints that did not fit
    (tmp_path / "lab.csv").write_text("a,b\n1,2\n")
    (tmp_path / "commas.tsv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    (tmp_path / "wide-idx3-ubyte").write_bytes(struct.pack(">iiii", 0x803, 4, 2, 2) + bytes(16))
    for argv, message in [(["train", "--data", str(tmp_path / "images-idx3-ubyte"), "--labels",
                            str(tmp_path / "lab.csv"), "-o", str(tmp_path / "q.npz")],
                           "it is a text file, not an IDX file (a CSV file holds its labels as a column"),
                          (["train", "--data", str(tmp_path / "commas.tsv"), "-o", str(tmp_path / "q.npz")],
                           "a .tsv file is read with tabs between the values: for commas, name it *.csv"),
                          (["inspect", model, "--data", str(tmp_path / "wide-idx3-ubyte")],
                           "data file '" + str(tmp_path / "wide-idx3-ubyte") + "' has 4 features per sample, but the "
                           "model")]:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    # inspect of a regression model with its targets: counted nothing per leaf instead of refusing them
    np.savez(tmp_path / "reg2.npz", X=X, y=np.stack([X[:, 0], X[:, 1]], 1))
    run(["train", "--data", str(tmp_path / "reg2.npz"), "--loss", "mse", "-o", str(tmp_path / "r2.npz"), "-q",
         "--epochs", "1"])
    assert main(["inspect", str(tmp_path / "r2.npz"), "--data", str(tmp_path / "reg2.npz")]) == 0
    assert "top label" not in capsys.readouterr().out
    # --activation GELU was refused as "activation must be one of", not by the option's name
    with pytest.raises(SystemExit):
        main(["train", "--data", str(data), "-o", str(tmp_path / "g.npz"), "--activation", "GELU"])
    assert "argument --activation: invalid choice: 'GELU'" in capsys.readouterr().err
    # a model too large for its depth is not blamed on its labels
    assert main(["train", "--data", str(data), "-o", str(tmp_path / "deep.npz"), "-q", "--depth", "40"]) == 2
    err = capsys.readouterr().err
    assert "would need" in err and "labels" not in err, err
    # labels up to 10**9 asked for 10**9 + 1 outputs: the memory error now says where they come from
    np.savez(tmp_path / "big_labels.npz", X=X, y=np.where(X[:, 0] > 0, 10 ** 9, 0))
    assert main(["train", "--data", str(tmp_path / "big_labels.npz"), "-o", str(tmp_path / "b.npz"), "-q"]) == 2
    assert "go up to 1000000000, so the model would have 1000000001 outputs" in capsys.readouterr().err
    # a class name holding a comma is quoted in the lists train and inspect print
    assert commands._classes_text(["Birnen, grün", "Äpfel"]) == "2 classes: 'Birnen, grün', Äpfel"
    # a divergence is one line, without NumPy's overflow warnings before it
    capsys.readouterr()
    assert main(["train", "--data", str(data), "-o", str(tmp_path / "x.npz"), "-q", "--lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training diverged" in err, err


def test_predict_raw_outputs_keep_their_precision(tmp_path):
    model = tmp_path / "m.fff"
    layer = fffcpu.FFF(3, 2, 3, 1, seed=0)
    fffcpu.save(layer, model)
    X = np.random.default_rng(1).normal(size=(6, 3))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=np.zeros(6, dtype=int))
    expected = np.asarray(layer(X.astype(np.float32)))
    run(["predict", str(model), "--data", str(data), "--raw", "--output", str(tmp_path / "p.csv")])
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "p.csv", delimiter=",", dtype=np.float32), expected)
    printed = run(["predict", str(model), "--data", str(data), "--raw"]).splitlines()
    assert printed == [" ".join(f"{v:.6g}" for v in row) for row in expected]


def test_predict_output_is_written_atomically(tmp_path, monkeypatch):
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(64, 2, 10, 1, seed=0), model)
    for name, writer in (("p.csv", "savetxt"), ("p.npy", "save")):
        out = tmp_path / name
        args = parse(["predict", str(model), "--output", str(out)])
        args.func(args)  # earlier predictions of the same data: the only file predict may replace
        old = out.read_bytes()

        def broken(fh, *a, **k):
            fh.write(b"half")
            raise OSError("disk full")

        with monkeypatch.context() as m:
            m.setattr(np, writer, broken)
            args = parse(["predict", str(model), "--output", str(out)])
            with pytest.raises(OSError, match="disk full"):
                args.func(args)
        assert out.read_bytes() == old
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.fff", name] + (["p.csv"] if name == "p.npy" else []))

# -- what each epoch feeds the layer, and what it reports --------------------------------------
class Recorder(LinearLayer):
    """LinearLayer on one feature holding the sample's index: records the rows of every batch and
    every evaluation, and has a constant hardening loss and a soft forward that disagrees."""

    def __init__(self):
        super().__init__(1, 3)
        self.batches, self.evaluated = [], []

    def train_forward(self, x, rng=None):
        self.batches.append(x[:, 0].astype(int).tolist())
        return super().train_forward(x, rng)

    def hardening_loss(self, cache):
        return 0.25

    def __call__(self, x):
        self.evaluated.append(np.asarray(x)[:, 0].astype(int).tolist())
        return super().__call__(x)

    def soft_forward(self, x):
        return -super().__call__(x)


def test_each_epoch_feeds_every_sample_once_in_the_documented_order():
    X, y = np.arange(23.0)[:, None], np.arange(23) % 3
    for shuffle in (True, False):
        layer = Recorder()
        fit(layer, X, y, optimizer=SGD(layer.params, lr=0.0), epochs=2, batch_size=5, shuffle=shuffle, seed=4)
        assert [len(b) for b in layer.batches] == [5, 5, 5, 5, 3] * 2  # the last batch is the rest
        shuffle_rng, _ = make_generators(4)
        for epoch in range(2):
            order = shuffle_rng.permutation(23) if shuffle else np.arange(23)
            assert sum(layer.batches[5 * epoch:5 * epoch + 5], []) == order.tolist()


def test_validation_split_holds_out_a_seeded_subset_never_trained_on():
    X, y = np.arange(20.0)[:, None], np.arange(20) % 3
    layer = Recorder()
    fit(layer, X, y, optimizer=SGD(layer.params, lr=0.0), epochs=2, batch_size=4, validation_split=0.25, seed=9)
    held = make_generators(9)[0].permutation(20)[:5]
    assert sorted(layer.evaluated[0]) == sorted(held.tolist()) and len(layer.evaluated) == 2
    for epoch in range(2):
        trained = sum(layer.batches[4 * epoch:4 * epoch + 4], [])
        assert sorted(trained) == sorted(set(range(20)) - set(held.tolist()))


def test_history_losses_are_sample_means_of_the_objective():
    # lr 0: the parameters never change, so each epoch's mean equals the loss over the whole set
    X, y = np.arange(23.0)[:, None] / 10, np.arange(23) % 3
    layer = Recorder()
    yv = LinearLayer(1, 3)(X[1:8]).argmax(axis=1)  # the same weights: hard accuracy 1, soft 0
    hist = fit(layer, X, y, optimizer=SGD(layer.params, lr=0.0), epochs=1, batch_size=5, hardening=2.0,
               seed=0, validation=(X[1:8], yv))
    task = fffcpu.training.losses.cross_entropy(LinearLayer.__call__(layer, X), y)[0]
    assert hist["task_loss"][0] == pytest.approx(task, rel=1e-12)
    assert hist["hardening_loss"][0] == pytest.approx(0.25, rel=1e-12)
    assert hist["loss"][0] == pytest.approx(task + 2.0 * 0.25, rel=1e-12)
    assert hist["val_accuracy"][0] == 1.0 and hist["val_accuracy_soft"][0] == 0.0


def test_restore_best_loads_the_best_epochs_parameters():
    X, y = blobs(60)
    Xv, yv = X[:30], (y[:30] + 1) % 3  # contradicts the training labels: learning makes it worse
    finals = {}
    for restore in (True, False):
        layer = LinearLayer(2, 3)
        hist = fit(layer, X, y, optimizer="adam", lr=0.05, epochs=20, batch_size=16, seed=0,
                   validation=(Xv, yv), patience=2, restore_best=restore)
        assert hist.stopped_early and hist.best_epoch < len(hist["epoch"]) - 1
        finals[restore] = (layer.params["W"].copy(), hist)
    for restore, epochs in ((True, finals[True][1].best_epoch + 1), (False, len(finals[False][1]["epoch"]))):
        again = LinearLayer(2, 3)
        fit(again, X, y, optimizer="adam", lr=0.05, epochs=epochs, batch_size=16, seed=0)
        np.testing.assert_array_equal(finals[restore][0], again.params["W"])


def test_input_scaling_closed_form():
    X = np.array([[0.0, 5.0, 1.0], [2.0, 5.0, 3.0], [4.0, 5.0, 8.0]])
    mean, scale = input_scaling(X, floor=0.5)
    std = X.std(axis=0)
    np.testing.assert_allclose(mean, [2.0, 5.0, 4.0], rtol=1e-15)
    np.testing.assert_allclose(scale, std + 0.5 * std.mean(), rtol=1e-15)
    assert scale[1] == pytest.approx(0.5 * std.mean())  # a constant feature gets the floor, not 1


def test_fit_gives_local_optimizers_the_usage():
    # no block reaches local_batch_size 1000 in one epoch of 40 samples: nothing may move
    layer = fffcpu.FFF(3, 2, 2, 1, seed=0, dtype="float64", backend="numpy")
    before = layer.state_dict()
    X, y = np.random.default_rng(0).standard_normal((40, 3)), np.arange(40) % 2
    fit(layer, X, y, optimizer="local-sgd", lr=0.5, local_batch_size=1000, epochs=1, batch_size=8, seed=0)
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_estimators_pass_random_state_and_weight_decay_on():
    X, y = blobs(48)
    kw = dict(depth=1, leaf_width=2, epochs=2, batch_size=16, dtype="float64", backend="numpy", dropout=0.2)
    runs = {}
    for key, extra in (("a", {}), ("b", {}), ("adamw0", dict(optimizer="adamw", weight_decay=0.0)),
                       ("adamw", dict(optimizer="adamw"))):
        runs[key] = FFFClassifier(random_state=3, **kw, **extra).fit(X, y).layer_.params["w1s"].copy()
    np.testing.assert_array_equal(runs["a"], runs["b"])  # random_state seeds the shuffling and noise too
    np.testing.assert_array_equal(runs["a"], runs["adamw0"])  # adamw without decay is adam
    assert not np.array_equal(runs["adamw"], runs["adamw0"])


def test_regressor_score_is_r2_about_the_mean():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (64, 2))
    y = np.column_stack([100 + X[:, 0], -50 + X[:, 1]])  # large means: an uncentered R^2 would be ~1
    reg = FFFRegressor(depth=1, leaf_width=2, epochs=1, random_state=0, dtype="float64", backend="numpy").fit(X, y)
    p = reg.predict(X)
    r2 = 1 - ((y - p) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    assert reg.score(X, y) == pytest.approx(r2.mean(), rel=1e-12)
    # a constant output has no variance to explain: it scores 0 (as scikit-learn's r2_score), not NaN or 1
    constant = np.column_stack([y[:, 0], np.full(len(y), 7.0)])
    assert reg.score(X, constant) == pytest.approx(r2[0] / 2, rel=1e-12)
    # ... unless it is predicted exactly: then 1, as r2_score says (round 22's review: it was 0)
    reg.predict = lambda X: np.column_stack([p[:, 0], np.full(len(X), 7.0)])
    assert reg.score(X, constant) == pytest.approx((r2[0] + 1) / 2, rel=1e-12)


def test_make_layer_passes_every_setting_on_and_shares_the_estimators_defaults():
    leaf = make_layer("leaf", 3, 2, 1, leaf_width=4, activation="tanh", region_leak=0.1, dropout=0.2,
                      master_leaf=2, seed=5, dtype="float64", backend="numpy")
    assert (leaf.leaf_width, leaf.activation, leaf.region_leak, leaf.dropout, leaf.master_leaf, leaf.seed) == \
        (4, "tanh", 0.1, 0.2, 2, 5)
    tree = make_layer("neuron-tree", 3, 2, 2, parallel_size=3, activation="relu", seed=5, dtype="float64",
                      backend="numpy")
    assert (tree.depth, tree.parallel_size, tree.activation, tree.seed) == (2, 3, "relu", 5)
    assert make_layer("leaf", 3, 2, 1).activation == "relu" and make_layer("neuron-tree", 3, 2, 1).activation == "gelu"
    defaults = inspect.signature(make_layer).parameters
    est = FFFClassifier().get_params()
    for name in ("leaf_width", "activation", "region_leak", "dropout", "parallel_size", "dtype", "backend"):
        assert est[name] == defaults[name].default, name


def test_estimator_trains_as_fit_does_with_the_same_settings():
    X, y = blobs(48)
    settings = dict(hardening=0.5, balance=0.25, optimizer="local-sgd", lr=0.1, epochs=2, batch_size=16,
                    local_batch_size=4)
    clf = FFFClassifier(depth=1, leaf_width=2, activation="tanh", region_leak=0.1, dropout=0.2, dtype="float64",
                        backend="numpy", random_state=3, **settings).fit(X, y)
    layer = make_layer("leaf", 2, 3, 1, leaf_width=2, activation="tanh", region_leak=0.1, dropout=0.2, seed=3,
                       dtype="float64", backend="numpy")
    history = fit(layer, X, y, loss="cross_entropy", seed=3, **settings)
    assert clf.layer_.config() == layer.config()
    assert clf.history_["loss"] == history["loss"]
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(clf.layer_.params[name], value, err_msg=name)


def test_estimators_check_the_shapes_of_X_and_y_and_the_classes():
    X, y = blobs(30)
    with pytest.raises(ValueError, match=r"y must have shape \(30,\) \(one label per row of X\), got \(30, 1\)"):
        FFFClassifier(depth=1, epochs=1).fit(X, y[:, None])
    with pytest.raises(ValueError, match="y must hold at least 2 classes, got 1"):
        FFFClassifier(depth=1, epochs=1).fit(X, np.zeros(30, dtype=int))
    with pytest.raises(ValueError, match=r"y must have shape \(30,\) or \(30, n_outputs\), got \(30, 1, 1\)"):
        FFFRegressor(depth=1, epochs=1).fit(X, X[:, :1, None])
    with pytest.raises(TypeError, match="X must hold real numbers, got dtype <U"):
        FFFClassifier(depth=1, epochs=1).fit(X.astype(str), y)


def test_estimator_repr_shows_only_the_changed_parameters():
    assert repr(FFFClassifier()) == "FFFClassifier()"
    assert repr(FFFRegressor(depth=2, variant="neuron-tree")) == "FFFRegressor(depth=2, variant='neuron-tree')"


def test_text_labels_on_the_command_line_train_and_need_a_named_model_to_evaluate(tmp_path, capsys):
    """A CSV of names as labels (an iris file) failed with "got dtype <U10", then with a numbering to
    write. `train` now numbers the names itself and saves them with the model; `evaluate` on a model
    without names still cannot read them, and says why."""
    from fffcpu import cli
    rng = np.random.default_rng(4)
    for n_classes, listed in ((3, "3 classes: kind0, kind1, kind2"),
                              (10, "10 classes: kind0, kind1, kind2, kind3, kind4, kind5, kind6, kind7, ... and 2 more")):
        rows = [f"{a!r},{b!r},kind{i % n_classes}" for i, (a, b) in enumerate(rng.normal(size=(21, 2)).tolist())]
        data_file = tmp_path / f"names{n_classes}.csv"
        data_file.write_text("x1,x2,species\n" + "\n".join(rows) + "\n")
        argv = ["train", "--data", str(data_file), "-o", str(tmp_path / "new.fff"), "--depth", "1", "--epochs", "1",
                "--test-fraction", "0", "-q"]
        assert cli.main(argv) == 0
        assert f"text labels: {listed} (indices 0 .. {n_classes - 1}, names saved with the model)" in \
            capsys.readouterr().out
        assert fffcpu.load_classes(tmp_path / "new.fff") == tuple(sorted(f"kind{i}" for i in range(n_classes)))
        fffcpu.save(fffcpu.FFF(2, 2, n_classes, depth=1, seed=0), tmp_path / "m.fff")  # no names
        assert cli.main(["evaluate", str(tmp_path / "m.fff"), "--data", str(data_file)]) == 2
        err = capsys.readouterr().err
        assert f"labels in '{data_file}' are text ({listed}), but the model has no class names to look them up " \
               "in (a model trained on integer class indices 0 .. n_classes-1, or converted through a .pt or " \
               ".safetensors file, which holds no names), so give its labels as those indices, or train a model " \
               "on these labels with `fffcpu train`, which saves their names" in err, err


IRIS_NAMES = ("setosa", "versicolor", "virginica")


def _iris_like(tmp_path, n=21):
    """A CSV with text labels, first seen in unsorted order, and an .npz of the same data with the
    labels as their indices among the sorted names: (csv path, npz path, X, indices)."""
    X = blobs(n, seed=5)[0]
    codes = (np.arange(n) + 2) % 3  # virginica first
    rows = [f"{a!r},{b!r},{IRIS_NAMES[c]}" for (a, b), c in zip(X.tolist(), codes)]
    csv_file = tmp_path / "iris.csv"
    csv_file.write_text("x1,x2,species\n" + "\n".join(rows) + "\n")
    np.savez(tmp_path / "iris.npz", X=X, y=codes)
    return str(csv_file), str(tmp_path / "iris.npz"), X, codes


def test_text_labels_train_evaluate_and_predict_by_name(tmp_path):
    csv_file, npz_file, X, codes = _iris_like(tmp_path)
    model, plain = str(tmp_path / "m.fff"), str(tmp_path / "plain.fff")
    argv = ["--depth", "1", "--leaf-width", "2", "--epochs", "2", "--test-fraction", "0", "-q", "--seed", "0"]
    out = run(["train", "--data", csv_file, "-o", model] + argv)
    assert "text labels: 3 classes: setosa, versicolor, virginica (indices 0 .. 2, names saved with the model)" in out
    assert fffcpu.load_classes(model) == IRIS_NAMES
    run(["train", "--data", npz_file, "-o", plain] + argv)  # the sorted names' indices: the same training
    assert fffcpu.load_classes(plain) is None  # integer labels: no names, as before
    layer = fffcpu.load(model)
    for name, value in fffcpu.load(plain).state_dict().items():
        np.testing.assert_array_equal(layer.state_dict()[name], value)
    # evaluate: the names are looked up in the model's; integer labels are indices
    scored = run(["evaluate", model, "--data", csv_file]).splitlines()[1:]
    assert scored == run(["evaluate", model, "--data", npz_file]).splitlines()[1:]
    predicted = np.asarray(layer(X)).argmax(axis=1)
    accuracy = float(scored[1].split()[-1])
    assert accuracy == pytest.approx(np.mean(predicted == codes), abs=1e-4)
    # predict: names, printed, in CSV and in .npy; --raw as ever
    names = [IRIS_NAMES[i] for i in predicted]
    assert run(["predict", model, "--data", csv_file]).splitlines() == names
    run(["predict", model, "--data", csv_file, "-o", str(tmp_path / "p.csv")])
    assert (tmp_path / "p.csv").read_text().splitlines() == names
    run(["predict", model, "--data", csv_file, "-o", str(tmp_path / "p.npy")])
    saved = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert saved.dtype.kind == "U" and saved.tolist() == names
    raw = run(["predict", model, "--data", csv_file, "--raw"]).splitlines()
    assert raw == run(["predict", plain, "--data", csv_file, "--raw"]).splitlines()
    assert raw == [" ".join(f"{v:.6g}" for v in row) for row in np.asarray(layer(X))]


def test_text_labels_refuse_a_different_classes_count_and_mse(tmp_path):
    csv_file, _, _, _ = _iris_like(tmp_path)
    model = tmp_path / "m.fff"
    for extra, message in [(["--classes", "4"], f"--classes 4 does not match the labels in {csv_file!r}: they are "
                                                  "text, 3 classes: setosa, versicolor, virginica; leave --classes "
                                                  "out (text labels give one class per name)"),
                           (["--classes", "2"], "--classes 2 does not match"),
                           (["--loss", "mse"], f"labels in {csv_file!r} are text (3 classes: setosa, versicolor, "
                                               "virginica), but --loss mse needs real-valued targets; to classify "
                                               "by these labels, use --loss cross_entropy")]:
        args = parse(["train", "--data", csv_file, "-o", str(model), "--epochs", "1", "-q"] + extra)
        with pytest.raises(ValueError) as info:
            args.func(args)
        assert message in str(info.value)
        assert not model.exists()
    run(["train", "--data", csv_file, "-o", str(model), "--classes", "3", "--depth", "1", "--epochs", "1", "-q"])
    assert fffcpu.load(model).output_width == 3
    args = parse(["evaluate", str(model), "--data", csv_file, "--loss", "mse"])
    with pytest.raises(ValueError, match=r"are text \(3 classes: .*\), but --loss mse needs real-valued targets"):
        args.func(args)
    np.savez(tmp_path / "empty-name.npz", X=np.zeros((3, 2)), y=np.array(["a", "", "b"]))
    args = parse(["train", "--data", str(tmp_path / "empty-name.npz"), "-o", str(model)])
    with pytest.raises(ValueError, match=r"text labels in .*empty-name\.npz' must be non-empty names, got '' at"):
        args.func(args)


def test_evaluate_names_a_label_the_model_does_not_know(tmp_path):
    csv_file, _, X, codes = _iris_like(tmp_path, n=9)
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(2, 2, 3, 1, seed=0), model, classes=["setosa", "versicolor", "rose"])
    args = parse(["evaluate", str(model), "--data", csv_file])
    with pytest.raises(ValueError) as info:
        args.func(args)
    # the first virginica is row 0 of the data
    assert str(info.value) == (f"label 'virginica' at index 0 of {csv_file!r} is not one of the model's 3 classes: "
                               "setosa, versicolor, rose")
    np.savez(tmp_path / "int.npz", X=X, y=codes)  # integers are class indices for text names
    out = run(["evaluate", str(model), "--data", str(tmp_path / "int.npz")])
    expected = np.mean(np.asarray(fffcpu.load(model)(X)).argmax(axis=1) == codes)
    assert float(out.splitlines()[2].split()[-1]) == pytest.approx(expected, abs=1e-4)


def test_predict_writes_names_a_csv_file_can_hold(tmp_path):
    """A name holding a comma, a quote or a line break is quoted in the CSV output and when printed."""
    import csv
    layer = fffcpu.FFF(2, 2, 3, 1, seed=0)
    names = ["a,b", 'say "hi"', "two\nlines"]
    fffcpu.save(layer, tmp_path / "m.fff", classes=names)
    X = blobs(12)[0]
    np.savez(tmp_path / "d.npz", X=X, y=np.zeros(12, dtype=int))
    run(["predict", str(tmp_path / "m.fff"), "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "p.csv")])
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [[names[i]] for i in np.asarray(layer(X)).argmax(axis=1)]
    printed = run(["predict", str(tmp_path / "m.fff"), "--data", str(tmp_path / "d.npz")])
    assert list(csv.reader(printed.splitlines(keepends=True))) == rows  # printed alike: one record each


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([3, 5, 7], dtype=np.int64)])
def test_a_fitted_classifier_saved_with_its_classes_predicts_them_on_the_command_line(tmp_path, labels):
    X, y = blobs(60)
    clf = FFFClassifier(depth=1, leaf_width=4, epochs=2, random_state=0).fit(X, labels[y])
    model = tmp_path / "clf.fff"
    fffcpu.save(clf.layer_, model, classes=clf.classes_)
    assert fffcpu.load_classes(model) == tuple(labels.tolist())
    np.savez(tmp_path / "d.npz", X=X, y=y)
    printed = run(["predict", str(model), "--data", str(tmp_path / "d.npz")]).splitlines()
    assert printed == [str(v) for v in clf.predict(X)]
    run(["predict", str(model), "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "p.npy")])
    saved = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert saved.dtype == clf.classes_.dtype and np.array_equal(saved, clf.predict(X))
    run(["predict", str(model), "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "p.csv")])
    assert (tmp_path / "p.csv").read_text().splitlines() == printed


def test_evaluate_reads_labels_by_integer_class_names(tmp_path):
    """A model saved with integer names (-1 and 1, or 3, 5 and 7) is evaluated on the labels predict prints."""
    X, y = blobs(60)
    layer = fffcpu.FFF(X.shape[1], 4, 3, 1, seed=0)
    fffcpu.save(layer, tmp_path / "m.fff", classes=[-1, 5, 7])
    names = np.array([-1, 5, 7])
    np.savez(tmp_path / "named.npz", X=X, y=names[y])
    np.savez(tmp_path / "whole.npz", X=X, y=names[y].astype(np.float64))  # 5.0 is the name 5
    np.savez(tmp_path / "index.npz", X=X, y=y)
    named = run(["evaluate", str(tmp_path / "m.fff"), "--data", str(tmp_path / "named.npz")]).splitlines()
    expected = np.mean(np.asarray(layer(X)).argmax(axis=1) == y)
    assert float(named[2].split()[-1]) == pytest.approx(expected, abs=1e-4)
    whole = run(["evaluate", str(tmp_path / "m.fff"), "--data", str(tmp_path / "whole.npz")]).splitlines()
    assert whole[1:] == named[1:]
    args = parse(["evaluate", str(tmp_path / "m.fff"), "--data", str(tmp_path / "index.npz")])
    first = int(np.argmax(~np.isin(y, names)))
    with pytest.raises(ValueError, match=rf"label {y[first]} at index {first} of .*index\.npz' is not one of the "
                                         r"model's 3 classes: -1, 5, 7"):
        args.func(args)


def test_a_classifier_of_whole_float_labels_saves_its_classes_as_integers(tmp_path):
    """As its docstring says: float classes_ are no names a file holds; their integers are."""
    X, y = blobs(60)
    clf = FFFClassifier(depth=1, leaf_width=4, epochs=1, random_state=0).fit(X, y.astype(np.float64))
    with pytest.raises(TypeError, match=r"classes must be all str or all integers, got 0.0 \(float\) at index 0"):
        fffcpu.save(clf.layer_, tmp_path / "clf.fff", classes=clf.classes_)
    fffcpu.save(clf.layer_, tmp_path / "clf.fff", classes=clf.classes_.astype(int))
    assert fffcpu.load_classes(tmp_path / "clf.fff") == (0, 1, 2)


def test_help_texts_are_plain_text():
    """inspect's and convert's --help (their module docstrings) printed reST markup: ":func:`fffcpu.data.
    load_dataset`", "``.npz``", "``--activation``"."""
    from fffcpu.cli import build_parser
    sub = build_parser()._subparsers._group_actions[0]
    for name, choice in sub.choices.items():
        text = choice.format_help()
        for markup in ("``", ":func:", ":class:", ":meth:"):
            assert markup not in text, (name, markup)


def test_a_missing_model_file_is_named_as_the_model(tmp_path, capsys):
    """evaluate, predict and convert said only "[Errno 2] No such file or directory: 'm.npz'"."""
    from fffcpu.cli import main
    missing = str(tmp_path / "m.npz")
    for argv, message in [(["evaluate", missing], f"model file {missing!r} does not exist"),
                          (["predict", missing], f"model file {missing!r} does not exist"),
                          (["evaluate", str(tmp_path)], f"model file {str(tmp_path)!r} is a directory"),
                          (["convert", missing, str(tmp_path / "m.pt")], f"input file IN {missing!r} does not exist")]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fffcpu {argv[0]}: error: {message}") and "Errno" not in err, err


def test_data_of_another_width_than_the_model_is_named_with_both_files(tmp_path, capsys):
    """A data file for another model failed as "x must have shape (..., 4) (last axis = input_width 4), got
    shape (5, 64)" (predict), as a label error (evaluate: "y must hold class indices in [0, 2]"), or, for a
    CSV with a text label column and a wider model, as "'virginica', not a number"; a features-only CSV in
    evaluate as "got 1.9 at index 0". Each now names the data file, its width, the model and its width."""
    from fffcpu.cli import main
    rng = np.random.default_rng(0)
    model = str(tmp_path / "m.npz")
    fffcpu.save(fffcpu.FFF(4, 2, 3, 1, seed=0), model)
    wide = str(tmp_path / "wide.npz")
    np.savez(wide, X=rng.normal(size=(6, 9)), y=np.arange(6) % 5)
    named = tmp_path / "named.csv"  # 3 features and a text label: one column short of the model
    named.write_text("a,b,c,species\n" + "".join(f"{i},1.5,2,{'cat' if i % 2 else 'dog'}\n" for i in range(6)))
    features = tmp_path / "features.csv"  # the model's 4 inputs, no label column
    np.savetxt(features, rng.normal(size=(6, 4)), delimiter=",")
    six = tmp_path / "six.csv"  # numbers only, two columns more than the model's inputs
    np.savetxt(six, rng.normal(size=(6, 6)), delimiter=",")
    gap = tmp_path / "gap.csv"  # an empty cell in the last column: refused as labels, then named as a feature
    gap.write_text("1,2,3,4\n5,6,7,\n")
    for argv, message in [
        (["predict", model, "--data", wide], f"data file {wide!r} has 9 features per sample, but the model "
                                             f"{model!r} takes 4 inputs"),
        (["evaluate", model, "--data", wide], f"data file {wide!r} has 9 features per sample, but the model "
                                              f"{model!r} takes 4 inputs"),
        (["predict", model, "--data", str(named)], f"data file {str(named)!r} has 4 columns (a CSV file may have "
                                                   "one more than the inputs: its labels), but the model"),
        (["predict", model, "--data", str(six)], f"data file {str(six)!r} has 6 columns (a CSV file may have "
                                                 "one more than the inputs: its labels), but the model"),
        (["predict", model, "--data", str(gap)], f"CSV file {str(gap)!r} is malformed: line 2, column 4 holds '', "
                                                 "not a number"),
        (["evaluate", model, "--data", str(features)], f"data file {str(features)!r} has 3 features per sample "
                                                       "(its columns less the label column, by default the last column), "
                                                       "but the model"),
    ]:
        assert main(argv) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert err.startswith(f"fffcpu {argv[0]}: error: {message}"), err
    assert "has no labels to evaluate: `fffcpu predict` reads it" in err
    assert main(["predict", model, "--data", str(features)]) == 0  # the right width still predicts
    assert len(capsys.readouterr().out.split()) == 6


def test_train_names_its_options_and_says_when_nothing_is_held_out(tmp_path):
    X, y = blobs(60)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    base = ["train", "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "m.fff"), "--depth", "1", "-q"]
    for option, value, shown in (("--dropout", "0.1", "0.1"), ("--region-leak", ".2", "0.2"),
                                 ("--master-leaf", "2", "2")):
        args = parse(base + ["--variant", "neuron-tree", option, value])
        with pytest.raises(ValueError) as info:
            args.func(args)
        assert str(info.value) == f"{option} applies to --variant leaf only, got {option} {shown} with --variant " \
                                  "neuron-tree"
    out = run(base + ["--epochs", "1", "--test-fraction", "0.001"])
    assert "held-out: no samples (--test-fraction 0.001 of each class rounds to 0 of these 60), so no held-out " \
           "accuracy" in out
    assert out.endswith(f"saved to {tmp_path / 'm.fff'} (1 epoch)\n")
    out = run(base + ["--epochs", "2", "--test-fraction", "0.001", "--loss", "mse"])
    assert "held-out: no samples (--test-fraction 0.001 rounds to 0 of these 60)" in out
    assert out.endswith("(2 epochs)\n")
    assert "held-out: no" not in run(base + ["--epochs", "1"])


def test_options_without_effect_are_refused_even_at_their_default_values(tmp_path, capsys):
    """--leaf-width 8 with --variant neuron-tree, --hardened-fraction with --no-recipe and --x-key with a
    CSV file were ignored without a word whenever their value was the default (only other values were
    refused): cli.parse_args records the options given, and those are refused at any value."""
    from fffcpu.cli import main
    X, y = blobs(40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",")
    out = str(tmp_path / "m.npz")
    train = ["train", "--data", str(tmp_path / "d.npz"), "-o", out, "--depth", "1", "--epochs", "1", "-q"]
    tree = train + ["--variant", "neuron-tree"]
    for argv, message in [
            (tree + ["--leaf-width", "8"], "--leaf-width applies to --variant leaf only, got --leaf-width 8 with "
                                           "--variant neuron-tree"),
            (tree + ["--final-hardening", "3"], "--final-hardening applies to --variant leaf only"),
            (tree + ["--hardening", "1"], "--hardening applies to --variant leaf only, got --hardening 1.0"),
            (train + ["--no-recipe", "--hardened-fraction", "0.3333"],
             "--hardened-fraction applies to the training recipe only, got --hardened-fraction 0.3333 with "
             "--no-recipe"),
            (["demo", "--variant", "neuron-tree", "--leaf-width", "8"], "--leaf-width applies to --variant leaf only"),
            (train[:2] + [str(tmp_path / "d.csv")] + train[3:] + ["--x-key", "X"],
             f"--x-key applies to .npz files only, got --x-key X with --data {str(tmp_path / 'd.csv')!r}"),
            (train + ["--label-column", "-1"], "--label-column applies to CSV files (.csv, .tsv, .txt) only, got "
                                               "--label-column -1 with --data"),
            (train[:2] + ["digits"] + train[3:] + ["--y-key", "labels"], "--y-key applies to .npz files only")]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "m.npz").exists()
    # values that state the configuration as it is, and options a command documents as ignored, still run
    assert main(tree + ["--master-leaf", "0", "--hardening", "0", "--balance", "0"]) == 0
    assert main(train + ["--parallel-size", "1", "--no-recipe", "--hardening", "2"]) == 0
    assert main(["predict", out, "--data", str(tmp_path / "d.csv"), "--y-key", "y"]) == 0
    # without a record of the options given (args built by hand), only other values are refused
    args = parse(tree)
    del args.given
    assert args.func(args) == 0


def test_command_line_errors_name_the_options_not_the_python_arguments(tmp_path, capsys):
    """"label_column 'foo' is not a column" and "validation_split 0.99 of 16 samples leaves 0 for
    training" named arguments a command-line user never typed."""
    from fffcpu.cli import main
    X, y = blobs(20)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,label", comments="")
    base = ["train", "--data", str(tmp_path / "d.csv"), "-o", str(tmp_path / "m.npz"), "--epochs", "1", "-q"]
    for argv, message in [(base + ["--label-column", "foo"], "error: --label-column 'foo' is not a column of"),
                          (base + ["--label-column", "7"], "error: --label-column must be in [-3, 2] for"),
                          (base + ["--validation-split", "0.99"], "error: --validation-split 0.99 of 17 samples leaves 0")]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(ValueError, match="^label_column 'foo' is not a column"):  # the library keeps its names
        fffcpu.data.load_csv(tmp_path / "d.csv", label_column="foo")


def test_data_options_without_effect_are_refused_in_every_command(tmp_path, capsys):
    """A review of the first version: predict ignored --x-key with a CSV file (its fallback reads
    swallowed the refusal), inspect ignored --y-key with a CSV file, --labels with an .npz file and
    --x-key without --data, and a --y-key naming no array dropped inspect's accuracy without a word;
    a label column saved with the model was reported as an --label-column the user never gave;
    --no-recipe was refused with a neuron tree, which trains in one phase anyway."""
    from fffcpu.cli import main
    X, y = blobs(40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,label", comments="")
    np.savetxt(tmp_path / "other.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c", comments="")
    m, mc = str(tmp_path / "m.npz"), str(tmp_path / "mc.npz")
    common = ["--depth", "1", "--epochs", "1", "-q"]
    assert main(["train", "--data", str(tmp_path / "d.npz"), "-o", m] + common) == 0
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--label-column", "label", "-o", mc] + common) == 0
    csv, npz = str(tmp_path / "d.csv"), str(tmp_path / "d.npz")
    for argv, message in [
            (["predict", m, "--data", csv, "--x-key", "X"], f"--x-key applies to .npz files only, got --x-key X "
                                                           f"with --data {csv!r}"),
            (["predict", mc, "--data", csv, "--x-key", "X"], "--x-key applies to .npz files only"),
            (["inspect", m, "--data", csv, "--y-key", "y"], "--y-key applies to .npz files only"),
            (["inspect", m, "--data", npz, "--labels", "lab"], "--labels applies to IDX images only, got --labels "
                                                              "lab with --data"),
            (["inspect", m, "--x-key", "X"], "--x-key needs --data (it applies to the data file), got --x-key X "
                                             "without --data"),
            (["inspect", m, "--limit", "3"], "--limit needs --data"),
            (["inspect", m, "--data", npz, "--y-key", "nope"], "has no array 'nope'"),
            (["evaluate", mc, "--data", str(tmp_path / "other.csv")],
             "error: the model's saved label column (from `fffcpu train --label-column`) 'label' is not a column "
             "of"),
            (["evaluate", mc, "--data", str(tmp_path / "other.csv"), "--label-column", "label"],
             "error: --label-column 'label' is not a column of")]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert main(["evaluate", mc, "--data", str(tmp_path / "other.csv")]) == 2
    assert capsys.readouterr().err.rstrip().endswith("; give --label-column to read another column (a file of features "
                                                     "only has no labels to evaluate: `fffcpu predict` reads it)")
    assert main(["predict", m, "--data", csv, "--y-key", "y", "--labels", "ignored"]) == 0  # as its help says
    assert main(["inspect", m, "--data", npz, "--y-key", "y"]) == 0
    assert main(["train", "--data", npz, "-o", str(tmp_path / "t.npz"), "--variant", "neuron-tree", "--no-recipe"]
                + common) == 0


def test_a_saved_label_column_is_named_as_the_models_and_file_faults_are_not_hidden(tmp_path, capsys):
    """Second review: evaluate's width and label messages named "--label-column 0" that came from the
    model; predict and inspect reported an empty cell as a label-column mix-up (their fallback for a
    file without the saved column swallowed every error); inspect could not read a file whose last
    column is the label when the saved column was missing (predict could); --label-column none with
    train or evaluate failed only after reading the file; and a data option refused with the default
    --data named "--data 'digits'" as if the user had typed it."""
    from fffcpu.cli import main
    rng = np.random.default_rng(0)
    X, y = blobs(40)
    feats = np.column_stack([X, rng.standard_normal((40, 2))])  # 4 features
    names = np.array(["cat", "dog", "eel"])[y]
    rows = [",".join(f"{v:.6g}" for v in r) for r in feats]

    def write(name, header, lines):
        (tmp_path / name).write_text("\n".join([header] + lines) + "\n")
        return str(tmp_path / name)

    named = write("named.csv", "a,b,c,d,species", [f"{r},{n}" for r, n in zip(rows, names)])
    bad = write("bad.csv", "a,b,c,d,species", [f"{r},{n}" for r, n in zip(rows, names)][:3]
                + ["," + rows[3].split(",", 1)[1] + "," + names[3]] + [f"{r},{n}" for r, n in zip(rows, names)][4:])
    other = write("other.csv", "a,b,c,d,label", [f"{r},{n}" for r, n in zip(rows, names)])
    first = write("first.csv", "y,a,b,c,d", [f"{c},{r}" for r, c in zip(rows, y)])
    mn, m0 = str(tmp_path / "mn.npz"), str(tmp_path / "m0.npz")
    for data, column, model in ((named, "species", mn), (first, "0", m0)):
        assert main(["train", "--data", data, "--label-column", column, "-o", model, "--depth", "1", "--epochs", "1",
                     "-q"]) == 0
    feat3 = write("feat3.csv", "a,b,c", [r.rsplit(",", 1)[0] for r in rows])  # one feature short
    last = write("last.csv", "a,b,c,d,y", [f"{r},{c + 5}" for r, c in zip(rows, y)])  # labels last, not first
    saved = "column 0, the model's saved label column (from `fffcpu train --label-column`)"
    for argv, message in [
            (["evaluate", m0, "--data", feat3], f"(its columns less the label column, {saved})"),
            (["evaluate", m0, "--data", last], f"(the labels were read from {saved})"),
            (["predict", mn, "--data", bad], "is malformed: line 5, column 1 holds '', not a number"),
            (["inspect", mn, "--data", bad], "is malformed: line 5, column 1 holds '', not a number"),
            (["evaluate", mn, "--data", other], "'species' is not a column of"),
            (["train", "--data", named, "--label-column", "none", "-o", str(tmp_path / "t.npz")],
             "--label-column none reads no labels, but train needs them; name the label column of --data"),
            (["evaluate", mn, "--data", named, "--label-column", "NONE"],
             "--label-column none reads no labels, but evaluate needs them"),
            (["train", "--label-column", "none", "-o", str(tmp_path / "t.npz")],
             "--label-column applies to CSV files (.csv, .tsv, .txt) only, got --label-column none with the default "
             "--data digits"),
            (["evaluate", m0, "--y-key", "y"], "--y-key applies to .npz files only, got --y-key y with the default "
                                               "--data digits")]:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "--label-column 0" not in err and "Traceback" not in err, (argv, err)
    # the saved column missing and the last column a label: read as predict reads it
    assert main(["inspect", mn, "--data", other]) == 0
    assert "accuracy on these labels" in capsys.readouterr().out
    assert main(["predict", mn, "--data", other]) == 0


def test_train_and_predict_refuse_to_replace_a_file_of_another_kind(tmp_path, capsys):
    """A fresh user's review: `train -o data.csv` turned a data file into a model, and `predict ... -o
    model.fff` a trained model into CSV text. A model replaces a model, predictions replace earlier
    predictions of the same shape (round 22: any text file before, a data file included), and an
    empty file is free."""
    from fffcpu import cli
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "".join(f"{i % 3},{i % 5},{i % 2}\n" for i in range(40)))
    other = tmp_path / "other.csv"
    other.write_text("keep me\n")
    train = ["train", "--data", str(data), "--depth", "1", "--epochs", "1", "-q", "-o"]
    assert cli.main(train + [str(other)]) == 2
    assert f"--output '{other}' exists and holds no model (a data or text file, or an .npz archive of data, " \
           "say): the model would replace it" in capsys.readouterr().err
    assert other.read_text() == "keep me\n"
    arrays = tmp_path / "arrays.npz"  # a data archive is a zip too, but no model (the diff review)
    np.savez(arrays, X=np.ones((3, 2)), y=np.arange(3))
    kept_arrays = arrays.read_bytes()
    assert cli.main(train + [str(arrays)]) == 2
    assert "holds no model" in capsys.readouterr().err and arrays.read_bytes() == kept_arrays
    model = tmp_path / "m.fff"
    assert cli.main(train + [str(model)]) == 0 and cli.main(train + [str(model)]) == 0  # retraining replaces it
    kept = model.read_bytes()
    assert cli.main(["predict", str(model), "--data", str(data), "-o", str(model.with_name("copy.fff"))]) == 0
    model.with_name("copy.fff").write_bytes(kept)
    assert cli.main(["predict", str(model), "--data", str(data), "-o", str(model.with_name("copy.fff"))]) == 2
    assert "exists and holds a model: the predictions would replace it" in capsys.readouterr().err
    assert model.with_name("copy.fff").read_bytes() == kept
    for _ in range(2):  # earlier predictions are replaced
        assert cli.main(["predict", str(model), "--data", str(data), "-o", str(tmp_path / "p.csv")]) == 0


def test_which_files_hold_a_model(tmp_path):
    """fffcpu's archive, torch's zip and legacy .pt, .safetensors: models; an np.savez archive of data,
    text, or a pickle not named .pt: not; an unreadable file: unknown (None), refused with its own reason."""
    from fffcpu.io import looks_like_model_file as model
    fffcpu.save(fffcpu.FFF(2, 1, 1, depth=0), tmp_path / "m.fff")
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)))
    (tmp_path / "t.csv").write_text("1,2\n")
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02\x8a\x0alegacy")
    (tmp_path / "legacy.pkl").write_bytes(b"\x80\x02\x8a\x0alegacy")
    (tmp_path / "zip.pt").write_bytes(b"PK\x03\x04broken")
    header = b'{"__metadata__":{}}'
    (tmp_path / "s.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    import zipfile
    with zipfile.ZipFile(tmp_path / "torch.pt", "w") as zf:
        zf.writestr("archive/data.pkl", b"")
    assert [model(tmp_path / n) for n in ("m.fff", "torch.pt", "legacy.pt", "s.safetensors")] == [True] * 4
    assert [model(tmp_path / n) for n in ("d.npz", "t.csv", "legacy.pkl", "zip.pt")] == [False] * 4
    assert model(tmp_path) is None  # a folder cannot be read as a file


def test_epoch_lines_tell_the_objective_from_the_task_loss():
    """A fresh user's review: the epochs printed "loss 2.81" (hardening included) and the held-out
    line "loss 0.82" (the task alone), which read as a model that got worse."""
    X, y = np.random.default_rng(0).standard_normal((64, 4)), np.arange(64) % 3
    for hardening, shown in ((0.0, False), (1.0, True)):
        out = io.StringIO()
        hist = fit(fffcpu.FFF(4, 2, 3, depth=2, seed=0), X, y, epochs=1, hardening=hardening, verbose=True,
                   stream=out, seed=0)
        line = out.getvalue().splitlines()[0]
        assert line.startswith(f"epoch 1/1  loss {hist['loss'][0]:.4f}")
        assert (f" (task {hist['task_loss'][0]:.4f})" in line) is shown, line


def test_evaluate_on_the_builtin_digits_says_they_include_the_training_samples(tmp_path, capsys):
    """A fresh user's review: `fffcpu evaluate model.fff` (default --data digits) printed 0.99, read as
    held-out accuracy, where train had reported 0.96 on the samples it held out."""
    from fffcpu import cli
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(64, 2, 10, depth=1, seed=0), model)
    assert cli.main(["evaluate", str(model)]) == 0
    assert "1797 samples from digits (all of them: a model trained on digits has seen most of them" in \
        capsys.readouterr().out
    data = tmp_path / "d.csv"
    data.write_text("".join(",".join(["0"] * 64) + f",{i % 10}\n" for i in range(10)))
    assert cli.main(["evaluate", str(model), "--data", str(data)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{model}: 10 samples from {data}"


def test_a_csv_header_naming_other_input_columns_than_the_models_is_refused(tmp_path, capsys):
    """Column names were not saved: a CSV file with the model's columns in another order, or another
    column in place of one, was predicted, evaluated and inspected without a word, each value read as
    another input. train saves the header's input names; the other commands compare a header with them."""
    from fffcpu.cli import main
    X, y = blobs(40)
    X = np.column_stack([X, X[:, :1] * 0.5])  # inputs a, b, c

    def write(name, header, order, label=True):
        lines = [] if header is None else [",".join(header)]
        lines += [",".join([f"{r[i]:.6g}" for i in order] + ([str(c)] if label else [])) for r, c in zip(X, y)]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        return str(tmp_path / name)

    train = write("train.csv", ["a", "b", "c", "label"], [0, 1, 2])
    model = str(tmp_path / "m.fff")
    assert main(["train", "--data", train, "-o", model, "--depth", "1", "--epochs", "1", "-q"]) == 0
    assert fffcpu.io._read(model, with_training=True)[2]["feature_columns"] == ["a", "b", "c"]
    capsys.readouterr()
    good = [write("same.csv", ["a", "b", "c", "label"], [0, 1, 2]),
            write("features.csv", ["a", "b", "c"], [0, 1, 2], label=False),
            write("no_header.csv", None, [1, 0, 2])]  # nothing to check against
    for path in good:
        assert main(["predict", model, "--data", path]) == 0, capsys.readouterr().err
        if path != good[1]:
            assert main(["evaluate", model, "--data", path]) == 0, capsys.readouterr().err
            assert main(["inspect", model, "--data", path]) == 0, capsys.readouterr().err
    order = "has the model's input columns in another order (input 1 is 'b', where the model was trained on 'a')"
    other = ("lacks the model's input column 'c' and has column 'd', which the model was not trained on (the "
             "model's input columns: 'a', 'b', 'c'; read as inputs here: 'a', 'b', 'd')")
    for path, message in ((write("swapped.csv", ["b", "a", "c", "label"], [1, 0, 2]), order),
                          (write("swapped_features.csv", ["b", "a", "c"], [1, 0, 2], label=False), order),
                          (write("other.csv", ["a", "b", "d", "label"], [0, 1, 2]), other)):
        commands = ["predict"] if "features" in path else ["predict", "evaluate", "inspect"]
        for command in commands:
            capsys.readouterr()
            assert main([command, model, "--data", path]) == 2, (command, path)
            err = capsys.readouterr().err
            assert f"data file {path!r} {message}" in err, (command, err)
    # names that repeat ('a', 'a', 'b' against 'a', 'b', 'b') are told by the first input that differs
    dup = str(tmp_path / "dup.fff")
    assert main(["train", "--data", write("dup.csv", ["a", "a", "b", "label"], [0, 1, 2]), "-o", dup, "--depth",
                 "1", "--epochs", "1", "-q"]) == 0
    capsys.readouterr()
    assert main(["predict", dup, "--data", write("dup2.csv", ["a", "b", "b", "label"], [0, 1, 2])]) == 2
    assert ("has other input columns than the model's: input 2 is 'b', where the model was trained on 'a' (the "
            "model's input columns: 'a', 'a', 'b'; read as inputs here: 'a', 'b', 'b')") in capsys.readouterr().err
    # a model trained on a file without a header, or on .npz data, checks nothing
    bare = str(tmp_path / "bare.fff")
    assert main(["train", "--data", write("t2.csv", None, [0, 1, 2]), "-o", bare, "--depth", "1", "--epochs", "1",
                 "-q"]) == 0
    assert "feature_columns" not in fffcpu.io._read(bare, with_training=True)[2]
    assert main(["predict", bare, "--data", str(tmp_path / "swapped.csv")]) == 0


def test_train_defaults_fit_a_small_csv_file(tmp_path, capsys):
    """30 epochs of 120 training rows were 60 Adam steps at lr 1e-3: iris came out at 0.67-0.83 held-out
    (a Left item of round 17). Without --epochs, a small data set gets as many epochs as pass 128,000
    samples through training (2,000 steps of 64; at most 1,000 epochs); a large one keeps 30."""
    from fffcpu.cli import main
    assert commands.default_epochs(120) == 1000 and commands.default_epochs(10) == 1000
    assert commands.default_epochs(1437) == 90 and commands.default_epochs(48000) == 30
    assert commands.default_epochs(1437, 0.5) == 179  # 719 rows left to train on
    assert commands._names_text([f"x{i}" for i in range(8)]) == "'x0', 'x1', 'x2', 'x3', 'x4', 'x5', ... and 2 more"
    # counted in samples, not steps: a full batch of MNIST's 48,000 rows ran 1,000 epochs (diff review)
    parse = argparse.ArgumentParser()
    commands.add_parsers(parse.add_subparsers(dest="command"))
    assert parse.parse_args(["train", "-o", "m.fff", "--batch-size", "48000"]).epochs is None
    rng = np.random.default_rng(0)
    y = np.arange(150) % 3
    X = np.array([[2.0, 0, 1, 0], [-2.0, 1, 0, 1], [0, -2.5, 1, 1]])[y] + 0.7 * rng.standard_normal((150, 4))
    data = tmp_path / "blobs.csv"
    data.write_text("a,b,c,d,label\n" + "".join(",".join(f"{v:.6g}" for v in r) + f",{c}\n" for r, c in zip(X, y)))
    for seed in "012":  # 30 epochs: 0.83, 0.63, 0.57
        capsys.readouterr()
        assert main(["train", "--data", str(data), "-o", str(tmp_path / "m.fff"), "-q", "--seed", seed]) == 0
        out = capsys.readouterr().out
        assert "on 120 samples from " + str(data) + " for 1000 epochs" in out
        accuracy = float(re.search(r"accuracy \(hard inference\) ([0-9.]+)", out).group(1))
        assert accuracy >= 0.9, (seed, out)


def test_fit_checks_all_its_data_before_the_first_step():
    """A bad-input review: a NaN in the last mini-batch was reported ("x must be finite") after the
    earlier batches had changed the parameters; validation data of dtype object after a whole epoch; a
    float64 value beyond float32 as "must be finite"; fit(None, ...), evaluate(layer, None, y), ragged
    lists and a stream without write() as AttributeError, IndexError or NumPy's own words."""
    rng = np.random.default_rng(0)
    layer = fffcpu.FFF(4, 2, 3, 1, seed=0)
    X, y = rng.normal(size=(40, 4)), np.arange(40) % 3
    before = {k: v.copy() for k, v in layer.params.items()}
    nan, big = X.copy(), X.copy()
    nan[35, 0], big[35, 0] = np.nan, 1e300
    for kw, error, message in [
            (dict(X=nan), ValueError, "X must be finite, got 1 NaN or inf value(s), the first at index (35, 0)"),
            (dict(X=big), ValueError, "X must fit the layer's dtype float32 (largest magnitude 3.403e+38), got 1 "
                                      "value(s) beyond it (largest magnitude 1e+300), the first at index (35, 0)"),
            (dict(validation=(X.astype(object), y)), TypeError, "validation X must hold real numbers (float or int), got dtype object"),
            (dict(validation=(nan, y)), ValueError, "validation X must be finite, got 1 NaN or inf value(s), the first "
                                                    "at index (35, 0)"),
            (dict(validation=(X[:0], y[:0])), ValueError,
             "cannot validate on an empty data set (validation X has 0 rows)"),  # before training (round 20)
            (dict(X=[[1.0, 2, 3, 4], [1.0, 2]], y=[0, 1]), ValueError,
             "X must be an array of shape (n, 4); NumPy cannot make one array of the list given"),
            (dict(y=[[0]] * 39 + [[0, 1]]), ValueError, "y must be an array with 40 rows (one per sample of X); NumPy "
                                                        "cannot make one array of the list given"),
            (dict(verbose=True, stream="log.txt"), TypeError, "stream must be a text stream with a write method (or "
                                                              "None for stdout), got str"),
            (dict(verbose="yes"), TypeError, "verbose must be a bool (or an integer level), got 'yes' (str)")]:
        args = dict(X=X, y=y, epochs=1, batch_size=8, shuffle=False) | kw
        with pytest.raises(error, match=re.escape(message)):
            fit(layer, args.pop("X"), args.pop("y"), **args)
        assert all(np.array_equal(before[k], layer.params[k]) for k in before), kw
    with pytest.raises(ValueError, match=re.escape("y must fit the layer's dtype float32 (largest magnitude 3.403e+38), "
                                                   "got 120 value(s) beyond it (largest magnitude 1e+300)")):
        fit(layer, X, np.full((40, 3), 1e300), loss="mse", epochs=1)  # it "diverged": "lower the learning rate"
    assert all(np.array_equal(before[k], layer.params[k]) for k in before)
    for level in (0, 1, np.int64(1)):  # scikit-learn's verbose levels, as before (diff review)
        fit(fffcpu.FFF(4, 2, 3, 1, seed=0), X, y, epochs=1, verbose=level, stream=io.StringIO())
    with pytest.raises(TypeError, match=re.escape("layer must be an fffcpu layer (FFF, NeuronTreeFFF) or an object "
                                                  "with the layer protocol, got NoneType (no input_width")):
        fit(None, X, y)
    with pytest.raises(ValueError, match=re.escape("X must have shape (n, 4) (input_width), got a scalar (NoneType)")):
        evaluate(layer, None, y)
    with pytest.raises(ValueError, match=re.escape("X must have shape (n, 4) (input_width), got (2, 1, 4)")):
        evaluate(layer, np.ones((2, 1, 4)), [0, 1])


def test_estimators_refuse_options_of_the_other_variant_and_data_helpers_check_theirs():
    """A bad-input review: FFFClassifier(parallel_size=-3) fitted a leaf FFF and FFFClassifier(
    variant="neuron-tree", leaf_width=-5) a neuron tree, each value dropped without a word;
    train_test_split returned an empty training part for test_fraction 0.999999 and took seed -1 to
    NumPy's "expected non-negative integer"; load_digits(dtype="int32") failed in its division and
    dtype=None gave float64."""
    from fffcpu import data
    X, y = blobs(30)
    with pytest.raises(ValueError, match=re.escape("parallel_size applies to the neuron-tree variant only, got "
                                                   "parallel_size=-3 for variant 'leaf' (leave it at 1)")):
        FFFClassifier(epochs=1, parallel_size=-3).fit(X, y)
    with pytest.raises(ValueError, match=re.escape("leaf_width applies to the leaf variant only, got leaf_width=-5 "
                                                   "for variant 'neuron-tree' (leave it at its default, 8)")):
        FFFClassifier(epochs=1, variant="neuron-tree", leaf_width=-5).fit(X, y)
    FFFClassifier(epochs=1, variant="neuron-tree", parallel_size=2).fit(X, y)  # the defaults pass
    with pytest.raises(ValueError, match=re.escape("test_fraction 0.999999 leaves no training samples of 30; use a "
                                                   "smaller fraction")):
        data.train_test_split(X, y, test_fraction=0.999999)
    with pytest.raises(ValueError, match="seed must be"):
        data.train_test_split(X, y, seed=-1)
    for seed in (None, np.random.default_rng(0)):  # a fresh random split, or a generator's, as before
        assert len(data.train_test_split(X, y, seed=seed)[0]) == len(data.train_test_split(X, y)[0])
    for dtype in ("int32", None):
        with pytest.raises(ValueError, match=re.escape(f"dtype must be 'float32' or 'float64', got {dtype!r}")):
            data.load_digits(dtype=dtype)
    with pytest.raises(ValueError, match=re.escape("dtype must be 'float32' or 'float64', got None")):
        fffcpu.FFF(4, 2, 3, 1, dtype=None)
    with pytest.raises(TypeError, match="scale must be a bool"):
        data.load_digits(scale="yes")
    assert data.load_digits(dtype="float64")[0].dtype == np.float64


def test_classifier_names_labels_of_mixed_kinds():
    """An object y of str and int labels failed in np.unique as "'<' not supported between instances"."""
    X, y = blobs(30)
    mixed = np.array(["a", 1, 2.0], dtype=object)[y]
    with pytest.raises(TypeError, match=re.escape("y must hold labels of one kind (all numbers or all strings) to be "
                                                  "sorted into classes, got float, int, str")):
        FFFClassifier(epochs=1).fit(X, mixed)


def test_the_reported_loss_is_the_whole_objective_of_a_real_layer():
    """SPEC §1, §3: L = L_task + h L_harden + alpha L_balance, which fit reports as "loss". The fit
    tests used fake layers whose balance term is 0, so dropping alpha L_balance from the report passed
    (a SPEC audit). One batch, lr 0: the parameters stay, and each term can be computed beside."""
    from fffcpu.training import losses
    from fffcpu.training.optim import SGD
    X, y = blobs(48)
    layer = fffcpu.FFF(2, 3, 3, depth=2, seed=0, dtype="float64", backend="numpy")
    out, cache = layer.train_forward(X)
    task = losses.get("cross_entropy")(out, y)[0]
    harden, balance = layer.hardening_loss(cache), layer.balance_loss(cache)
    assert harden > 0.1 and balance > 0.1
    hist = fit(layer, X, y, optimizer=SGD(layer.params, lr=0.0), epochs=1, batch_size=48, hardening=0.5,
               balance=2.0, shuffle=False)
    assert hist["task_loss"][0] == pytest.approx(task, rel=1e-12)
    assert hist["hardening_loss"][0] == pytest.approx(harden, rel=1e-12)
    assert hist["loss"][0] == pytest.approx(task + 0.5 * harden + 2.0 * balance, rel=1e-12)


def test_fit_checks_its_validation_data_once(monkeypatch):
    """Round 20: fit checked and converted the validation set again at every epoch (through
    evaluate); now once, before training, and each epoch's val_loss is still evaluate's."""
    from fffcpu.training import loop
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    Xv, yv = rng.normal(size=(20, 5)), np.arange(20) % 3
    calls = []
    real = loop._prepare_features

    def counting(X, layer, name="X"):
        calls.append(name)
        return real(X, layer, name=name)

    monkeypatch.setattr(loop, "_prepare_features", counting)
    layer = fffcpu.FFF(5, 2, 3, 2, seed=0)
    history = fit(layer, X, y, epochs=3, batch_size=16, validation=(Xv, yv), seed=0)
    assert calls == ["X", "validation X"]
    assert len(history["val_loss"]) == 3
    assert history["val_loss"][-1] == evaluate(layer, Xv, yv)["loss"]


def test_predict_replaces_only_predictions_of_the_same_shape(tmp_path, capsys):
    """Round 22's review: `predict -o train_set.csv` replaced a labelled data file with predictions, and
    `-o features.npy` a user's array. An existing file is replaced only where it reads as predictions
    of the same shape (a rerun on the same data)."""
    from fffcpu import cli
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n" + "".join(f"{i % 3},{i % 5},{i % 2}\n" for i in range(40)))
    model = tmp_path / "m.fff"
    assert cli.main(["train", "--data", str(data), "--depth", "1", "--epochs", "1", "-q", "-o", str(model)]) == 0
    predict = ["predict", str(model), "--data", str(data), "-o"]
    table = tmp_path / "table.csv"
    table.write_text("p,q\n" + "1,2\n" * 40)
    features = tmp_path / "features.npy"
    np.save(features, np.ones((40, 2)))
    short = tmp_path / "short.csv"
    short.write_text("1\n" * 39)
    long = tmp_path / "long.csv"
    long.write_text("1\n" * 100)
    capsys.readouterr()
    for path, problem in ((table, "has 2 field(s) on line 1, where predictions have 1 (a data file?)"),
                          (features, "holds an array of shape (40, 2), not predictions of shape (40,)"),
                          (short, "holds 39 line(s), not 40 predictions"),
                          (long, "holds more than 40 line(s), not 40 predictions")):
        kept = path.read_bytes()
        assert cli.main(predict + [str(path)]) == 2
        assert f"--output '{path}' exists and {problem}: the predictions would replace it" in capsys.readouterr().err
        assert path.read_bytes() == kept
    for name in ("p.csv", "p.npy"):  # a rerun replaces its own predictions, raw outputs too
        for raw in ([], [], ["--raw"], ["--raw"]):
            out = tmp_path / (name if not raw else "raw_" + name)
            assert cli.main(predict + [str(out)] + raw) == 0, (name, raw)
    assert cli.main(predict + [str(tmp_path / "p.npy"), "--raw"]) == 2  # labels, then raw outputs: refused
    assert "holds an array of shape (40,), not predictions of shape (40, 2)" in capsys.readouterr().err


def test_cli_review_round_22_messages(tmp_path, capsys, monkeypatch):
    """Ctrl-C is one line and status 130; a model saved as ./digits is replaced on the next run (it was
    refused as "the --data file 'digits'", though --data digits is the built-in data), and an explicit
    --data digits beside such a file is refused rather than the file ignored; a huge --classes is named
    as the cause, not the depth; evaluate names the labels' file and their shape as given."""
    from fffcpu import cli
    monkeypatch.chdir(tmp_path)
    train = ["train", "--depth", "1", "--epochs", "1", "-q"]
    assert cli.main(train + ["-o", "digits"]) == 0 and cli.main(train + ["-o", "digits"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "digits", "--data", "digits"]) == 2
    assert "--data digits names the built-in digits, but a file 'digits' exists here: give --data ./digits" \
        in capsys.readouterr().err
    assert cli.main(["evaluate", "digits"]) == 0  # the default --data: no question which is meant
    assert cli.main(train + ["-o", "x.npz", "--classes", "100000000000"]) == 2
    err = capsys.readouterr().err
    assert "--classes 100000000000 makes 100000000000 outputs, too many for this machine's memory" in err
    assert "choose a smaller depth" not in err

    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(commands, "_read_model", interrupted)
    capsys.readouterr()
    assert cli.main(["evaluate", "digits"]) == 130
    err = capsys.readouterr().err
    assert err == "fffcpu evaluate: interrupted; no file was left half-written\n"
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    X = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    np.savez("reg.npz", X=X, y=X[:, :2])
    np.savez("reg1.npz", X=X, y=X[:, 0])
    np.savez("c7.npz", X=X, y=np.arange(30) % 7)
    np.savez("c3.npz", X=X, y=np.arange(30) % 3)
    assert cli.main(["train", "--data", "reg.npz", "--loss", "mse", "--depth", "1", "--epochs", "1", "-q",
                     "-o", "r.npz"]) == 0
    assert cli.main(["train", "--data", "c3.npz", "--depth", "1", "--epochs", "1", "-q", "-o", "c.npz"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "r.npz", "--data", "reg1.npz"]) == 2
    assert ("the labels in 'reg1.npz' (--y-key y) must have shape (30, 2) for loss='mse' (one target per "
            "output), got (30,)") in capsys.readouterr().err
    assert cli.main(["evaluate", "c.npz", "--data", "c7.npz"]) == 2
    assert "the labels in 'c7.npz' (--y-key y) must hold class indices in [0, 2]" in capsys.readouterr().err
