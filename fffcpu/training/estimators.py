"""Scikit-learn style estimators around an FFF layer, by duck typing (scikit-learn is not imported).

``__init__`` only stores the hyperparameters; ``fit`` validates, builds the layer, trains it and
returns ``self``; learned state ends in ``_`` (``layer_``, ``classes_``, ``history_``,
``n_features_in_``); randomness comes from ``random_state``. ``get_params``/``set_params`` and
``__sklearn_tags__`` (which imports scikit-learn, and only scikit-learn calls) make them usable with
scikit-learn's pipelines and model selection tools when scikit-learn is installed.

    clf = FFFClassifier(depth=3, leaf_width=8, hardening=1.0, epochs=30, random_state=0).fit(X, y)
    clf.score(X_test, y_test)
"""
import inspect
import sys

import numpy as np

from .._validate import as_input, check_int
from .loop import fit as _fit
from .losses import _as_real, softmax

VARIANTS = ("leaf", "neuron-tree")


def make_layer(variant, input_width, output_width, depth, leaf_width=8, activation=None,
               region_leak=0.0, dropout=0.0, parallel_size=1, seed=None, dtype="float32", backend="auto",
               master_leaf=0):
    """Build an untrained layer: ``variant`` "leaf" (:class:`fffcpu.FFF`) or "neuron-tree".

    ``activation=None`` keeps the variant's default (relu for leaf, gelu for neuron-tree);
    ``leaf_width``, ``region_leak``, ``dropout`` and ``master_leaf`` (eFFF) apply to leaf FFFs,
    ``parallel_size`` to trees.
    """
    if variant == "leaf":
        from ..fff import FFF
        if parallel_size != 1:  # FFFClassifier(parallel_size=-3) fitted a leaf FFF without a word
            raise ValueError(f"parallel_size applies to the neuron-tree variant only, got parallel_size="
                             f"{parallel_size!r} for variant 'leaf' (leave it at 1)")
        kw = {} if activation is None else {"activation": activation}
        return FFF(input_width, leaf_width, output_width, depth, region_leak=region_leak,
                   dropout=dropout, seed=seed, dtype=dtype, backend=backend, master_leaf=master_leaf, **kw)
    if variant == "neuron-tree":
        from ..neuron_tree import NeuronTreeFFF
        for name, value in (("master_leaf", master_leaf), ("region_leak", region_leak), ("dropout", dropout)):
            if value:  # a neuron tree has none of these: the value was dropped without a word
                raise ValueError(f"{name} applies to the leaf variant only, got {name}={value} "
                                 "for variant 'neuron-tree'")
        if leaf_width != 8:  # its leaves are single neurons; leaf_width=-5 was dropped without a word
            raise ValueError(f"leaf_width applies to the leaf variant only, got leaf_width={leaf_width!r} for "
                             "variant 'neuron-tree' (leave it at its default, 8)")
        kw = {} if activation is None else {"activation": activation}
        return NeuronTreeFFF(input_width, output_width, depth, parallel_size=parallel_size,
                             seed=seed, dtype=dtype, backend=backend, **kw)
    raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")


def _check_X(X, fitted=None):
    """X as a 2-d real array; with ``fitted`` (an estimator), its width must be ``fitted.n_features_in_``."""
    sparse = sys.modules.get("scipy.sparse")  # not loaded: X cannot be one of its matrices
    if sparse is not None and sparse.issparse(X):
        # np.asarray wraps a sparse matrix into a 0-d object array: "got dtype object" misled
        raise TypeError(f"X must be a dense array, got a sparse {type(X).__name__} of shape {X.shape}: "
                        "sparse input is not supported (X.toarray() densifies it)")
    X = _object_numbers("X", X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    if X.dtype.kind == "b":  # numbers 0 and 1, as scikit-learn takes them; the layers take no bool
        X = X.astype(np.float64)
    if X.ndim != 2:
        hint = (". Reshape your data: X.reshape(-1, 1) for one feature, X.reshape(1, -1) for one sample"
                if X.ndim == 1 else "")
        raise ValueError(f"X must have shape (n_samples, n_features), got shape {X.shape}{hint}")
    if X.shape[1] == 0:  # was refused later as "input_width must be >= 1", a name the caller never used
        raise ValueError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if fitted is not None and X.shape[1] != fitted.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(fitted).__name__} is expecting "
                         f"{fitted.n_features_in_} features as input (n_features_in_, set by fit)")
    return X


def _object_numbers(name, a):
    """``a`` as an array; an object array (pandas' mixed columns) converted to float64 where it holds
    numbers, else refused naming ``name``."""
    a = np.asarray(a)
    if a.dtype == object:
        try:
            return a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must hold real numbers, got dtype object holding something else "
                            f"({exc})") from None
    return a


class NotFittedError(ValueError, AttributeError):
    """``predict``, ``predict_proba`` or ``score`` before ``fit``. Both a ValueError and an
    AttributeError, as scikit-learn's exception of that name, so either ``except`` catches it."""


def _check_y_given(estimator, y):
    if y is None:  # np.asarray(None) made this "y must have shape (n,), got ()" or "dtype object"
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None")
    return y


def _check_random_state(value):
    """``random_state`` as the int seed of the layer and of fit; errors named "seed" before."""
    if isinstance(value, (np.random.RandomState, np.random.Generator)):
        raise TypeError(f"random_state must be an integer >= 0 or None, got a {type(value).__name__}: "
                        "fffcpu seeds its generators from an int (random_state=0, say)")
    return None if value is None else check_int("random_state", value, 0)


class _FFFEstimator:
    _loss = None
    _estimator_type = None  # "classifier" or "regressor": scikit-learn < 1.6 reads this, later ones the tags

    def __init__(self, depth=3, leaf_width=8, activation=None, hardening=1.0, balance=0.0,
                 region_leak=0.0, dropout=0.0, optimizer="adam", lr=None, weight_decay=None, epochs=20,
                 batch_size=64, local_batch_size=None, validation_split=0.0, patience=None, variant="leaf",
                 parallel_size=1, dtype="float32", backend="auto", random_state=None, verbose=False):
        self.depth = depth
        self.leaf_width = leaf_width
        self.activation = activation
        self.hardening = hardening
        self.balance = balance
        self.region_leak = region_leak
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.local_batch_size = local_batch_size
        self.validation_split = validation_split
        self.patience = patience
        self.variant = variant
        self.parallel_size = parallel_size
        self.dtype = dtype
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    # -- scikit-learn protocol ----------------------------------------------------------------
    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p for p in sig.parameters if p != "self")

    def get_params(self, deep=True):
        """The constructor arguments, ``{name: value}``."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments by name; returns ``self``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{name!r} is not a parameter of {type(self).__name__}; valid: {valid}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self):
        """What scikit-learn >= 1.6 asks every estimator: its kind (cross-validation stratifies and
        scorers call ``predict_proba`` only for classifiers) and the inputs it takes: dense 2-d X
        without NaN, a required y. Only scikit-learn calls this, so importing it here is safe."""
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags
        classifier = self._estimator_type == "classifier"
        return Tags(estimator_type=self._estimator_type,
                    target_tags=TargetTags(required=True, multi_output=not classifier),
                    classifier_tags=ClassifierTags(multi_label=False) if classifier else None,
                    regressor_tags=None if classifier else RegressorTags(),
                    input_tags=InputTags(two_d_array=True, sparse=False, allow_nan=False))

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if sig.parameters[k].default != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- shared fitting -----------------------------------------------------------------------
    def _fit_layer(self, X, targets, n_outputs, **fitted):
        """Build and train a layer; the fitted attributes (``layer_``, ``history_``,
        ``n_features_in_`` and ``fitted``) are set together, only once training has succeeded, so a
        refit that fails leaves the estimator as it was (not an untrained layer_ behind old classes_)."""
        seed = _check_random_state(self.random_state)
        layer = make_layer(self.variant, X.shape[1], n_outputs, self.depth, self.leaf_width,
                           activation=self.activation, region_leak=self.region_leak,
                           dropout=self.dropout, parallel_size=self.parallel_size,
                           seed=seed, dtype=self.dtype, backend=self.backend)
        history = _fit(layer, X, targets, loss=self._loss, optimizer=self.optimizer, lr=self.lr,
                       weight_decay=self.weight_decay, epochs=self.epochs, batch_size=self.batch_size,
                       hardening=self.hardening, balance=self.balance, validation_split=self.validation_split,
                       patience=self.patience, seed=seed, verbose=self.verbose,
                       local_batch_size=self.local_batch_size)
        for name, value in fitted.items():
            setattr(self, name, value)
        self.layer_, self.history_, self.n_features_in_ = layer, history, X.shape[1]
        return self

    def _check_fitted(self):
        if not hasattr(self, "layer_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) first")

    def _outputs(self, X):
        self._check_fitted()
        X = _check_X(X, self)
        # checked here as "X" (the layer's own check names its argument "x", which the caller never used)
        X = as_input(X, self.layer_.input_width, self.layer_.dtype, name="X")[0]
        return np.asarray(self.layer_(X), dtype=np.float64)


class FFFClassifier(_FFFEstimator):
    """Classifier: an FFF trained with softmax cross-entropy (+ hardening); hard inference to predict.

    Parameters
    ----------
    depth, leaf_width : int
        The tree: 2^depth leaves of ``leaf_width`` neurons (leaf variant); tree depth (neuron-tree).
    activation : str, optional
        Layer activation (default: the variant's).
    hardening, balance : float
        h and alpha of the training objective (SPEC §1, §3). A neuron tree's routing is hard, so both
        terms are 0 for it and these have no effect there.
    region_leak, dropout : float
        Training regularisers of the leaf FFF (refused for the neuron tree, as is a ``leaf_width``
        other than 8 and, for the leaf FFF, a ``parallel_size`` other than 1).
    optimizer : str
        "adam" (default), "adamw", "sgd", "momentum", "nesterov", "local-sgd", "local-adam", ...
    lr : float, optional
        Default 1e-3 (Adam family) or 0.1 (SGD family).
    weight_decay : float, optional
        Default 0.01 for "adamw" and "local-adamw" (decoupled), 0 for the others.
    epochs, batch_size : int
    local_batch_size : int, optional
        For the local optimizers.
    validation_split : float, patience : int, optional
        Early stopping on a held-out fraction.
    variant : {"leaf", "neuron-tree"}
    parallel_size : int
        Trees of the neuron-tree variant.
    dtype, backend : str
        The layer's.
    random_state : int, optional
        Seeds initialisation, shuffling and training noise.
    verbose : bool

    Attributes
    ----------
    layer_ : the trained layer
    classes_ : ndarray of shape (n_classes,)
        The labels, sorted; output ``i`` of ``layer_`` is class ``classes_[i]``.
    history_ : History
    n_features_in_ : int

    Notes
    -----
    ``fffcpu.save(clf.layer_, path, classes=clf.classes_)`` saves the layer with the class names (text
    or integer labels); ``fffcpu.load_classes(path)`` reads them back, and ``fffcpu predict`` and
    ``fffcpu evaluate`` use them. ``layer_`` takes ``X`` as given to ``fit`` (nothing is standardised).
    Labels given as whole floats or bools make float or bool ``classes_``, which a file does not hold as
    names: save ``classes=clf.classes_.astype(int)`` (or ``.astype(str)``) instead.
    """

    _loss = "cross_entropy"
    _estimator_type = "classifier"

    def fit(self, X, y):
        """Train on ``X`` (n, n_features) and labels ``y`` (n,); returns ``self``."""
        X = _check_X(X)
        y = np.asarray(_check_y_given(self, y))
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},) (one label per row of X), got {y.shape}")
        if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
            raise ValueError(f"y must not hold NaN or inf labels, got {np.count_nonzero(~np.isfinite(y))}")
        if y.dtype.kind == "f":  # 0., 1., 2. are labels; 0.37 is a regression target, not class 0.37 of n
            whole = y == np.round(y)
            if not whole.all():
                i = int(np.argmin(whole))
                raise ValueError(f"y must hold class labels, got continuous values (Unknown label type: "
                                 f"continuous): {y[i].item()!r} at index {i}; FFFRegressor fits real targets")
        try:
            classes, codes = np.unique(y, return_inverse=True)
        except TypeError:  # an object array of str and int: "'<' not supported between instances of ..."
            kinds = sorted({type(v).__name__ for v in y.tolist()})
            raise TypeError(f"y must hold labels of one kind (all numbers or all strings) to be sorted into "
                            f"classes, got {', '.join(kinds)}") from None
        if classes.size < 2:
            raise ValueError(f"y must hold at least 2 classes, got {classes.size} "
                             f"class{'' if classes.size == 1 else 'es'}: {classes.tolist()}")
        return self._fit_layer(X, codes.astype(np.int64), classes.size, classes_=classes)

    def predict_proba(self, X):
        """Class probabilities, softmax of the hard-inference logits: (n, n_classes)."""
        return softmax(self._outputs(X))

    def predict(self, X):
        """The most likely class of each row: (n,)."""
        index = self._outputs(X).argmax(axis=1)
        return self.classes_[index]

    def score(self, X, y):
        """Mean accuracy of :meth:`predict` on ``(X, y)``."""
        pred = self.predict(X)
        y = np.asarray(y)
        if y.shape != pred.shape:
            raise ValueError(f"y must have shape {pred.shape} (one label per row of X), got {y.shape}")
        return float(np.mean(pred == y))


class FFFRegressor(_FFFEstimator):
    """Regressor: an FFF trained with mean squared error (+ hardening); hard inference to predict.

    Parameters are those of :class:`FFFClassifier`. ``y`` may be (n,) or (n, n_outputs); predictions
    have the same layout.

    Attributes
    ----------
    layer_, history_, n_features_in_ : as :class:`FFFClassifier`
    n_outputs_ : int
    """

    _loss = "mse"
    _estimator_type = "regressor"

    def fit(self, X, y):
        """Train on ``X`` (n, n_features) and targets ``y`` (n,) or (n, n_outputs); returns ``self``."""
        X = _check_X(X)
        y = _object_numbers("y", _check_y_given(self, y))
        y = _as_real("y", y).astype(np.float64, copy=False)
        if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have shape ({X.shape[0]},) or ({X.shape[0]}, n_outputs), got {y.shape}")
        y2 = y[:, None] if y.ndim == 1 else y
        return self._fit_layer(X, y2, y2.shape[1], n_outputs_=y2.shape[1], _y_1d=y.ndim == 1)

    def predict(self, X):
        """Predicted targets: (n,) or (n, n_outputs), as ``y`` in :meth:`fit`."""
        out = self._outputs(X)
        return out[:, 0] if self._y_1d else out

    def score(self, X, y):
        """Coefficient of determination R^2 (averaged over outputs)."""
        pred = self.predict(X)
        y = _as_real("y", y).astype(np.float64, copy=False)
        if y.shape != pred.shape:
            # a (n,) y against (n, 2) predictions broadcast into a wrong R^2 without a word
            raise ValueError(f"y must have shape {pred.shape} (the layout of y in fit), got {y.shape}")
        y2 = y.reshape(len(y), -1)
        p2 = pred.reshape(len(pred), -1)
        ss_res = ((y2 - p2) ** 2).sum(axis=0)
        ss_tot = ((y2 - y2.mean(axis=0)) ** 2).sum(axis=0)
        # a constant target: 1 for an exact fit, else 0 (as scikit-learn's r2_score; it was 0 for both)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.where(ss_res == 0, 1.0, 0.0))
        return float(r2.mean())
