"""Command-line subcommands ``demo``, ``train``, ``evaluate`` and ``predict``.

``add_parsers(subparsers)`` registers them on the ``fffcpu`` parser (fffcpu/cli.py); each handler
takes the parsed ``argparse.Namespace`` and returns an exit status, so tests call them in-process.
"""
import argparse
import contextlib
import csv
import io
import os
import sys
import time

import numpy as np

from .. import data as fdata
from .. import io as fio
from ..activations import ACTIVATIONS
from .._argtypes import fraction, nonneg_float, nonneg_int, positive_int, probability
from ..io import _atomic_write, _check_class_names, _check_path, _read
from .estimators import VARIANTS, make_layer
from .loop import evaluate, fit, fold_input_scaling, input_scaling
from .optim import OPTIMIZERS


# -- the training recipe (shared by demo and train) -------------------------------------------
def recipe_schedules(epochs, hardening=1.0, final_hardening=3.0, balance=1.0, balance_fraction=0.5,
                     hardened_fraction=1 / 3):
    """The three phases used by ``demo`` and ``train``, as arguments for :func:`fit`.

    1. epochs ``[0, balance_fraction * epochs)``: soft routing, ``hardening`` and load balancing
       ``balance`` (eFFF's balancing phase: leaves get used evenly while the routing forms);
    2. up to the last ``hardened_fraction``: soft routing, ``final_hardening``, no balancing
       (the decisions sharpen);
    3. the last ``hardened_fraction``: hard routing in training (``train_hardened``), so every
       leaf is fine-tuned on exactly the samples that inference will send it.

    Returns
    -------
    dict with ``hardening``, ``balance`` (functions of the epoch) and ``hardened_epochs``
    """
    n_balance = int(round(balance_fraction * epochs))
    n_hardened = int(round(hardened_fraction * epochs))
    return dict(
        hardening=lambda e: hardening if e < n_balance else final_hardening,
        balance=lambda e: balance if e < n_balance else 0.0,
        hardened_epochs=min(n_hardened, epochs),
    )


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _leaf_usage_summary(layer, X):
    """Hard leaf counts on X: (min, max, normalised entropy in [0, 1], unused leaves)."""
    counts = np.asarray(layer.usage(X)["hard_leaf"], dtype=np.float64).ravel()
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(p.size)) if p.size > 1 else 1.0
    return int(counts.min()), int(counts.max()), entropy, int(np.count_nonzero(counts == 0))


# -- demo -------------------------------------------------------------------------------------
def run_demo(args):
    """Train a leaf FFF and a dense FF of equal training width on the built-in digits; compare."""
    out = args.stream if getattr(args, "stream", None) is not None else sys.stdout
    _refuse_options_of_the_other_variant(args)
    X_train, X_test, y_train, y_test = fdata.digits_split(test_fraction=0.25, seed=args.seed)
    mean, scale = input_scaling(X_train)
    X_train = ((X_train - mean) / scale).astype(np.float32)
    X_test = ((X_test - mean) / scale).astype(np.float32)
    tree = args.variant == "neuron-tree"
    if tree:
        width = args.parallel_size * ((2 << args.depth) - 1)
        touched = args.parallel_size * (args.depth + 1)
        described = (f"neuron-tree FFF: depth {args.depth}, {args.parallel_size} tree(s) ({width} neurons, "
                     f"{touched} per inference)")
        inference_macs = touched * (64 + 10)
    else:
        width = (1 << args.depth) * args.leaf_width
        described = (f"FFF: depth {args.depth}, leaf width {args.leaf_width} ({1 << args.depth} leaves, "
                     f"training width {width})")
        inference_macs = args.depth * 64 + 64 * args.leaf_width + args.leaf_width * 10
    print(f"fffcpu demo: 8x8 handwritten digits (UCI, CC BY 4.0), {len(y_train)} training and "
          f"{len(y_test)} test samples, 64 features, 10 classes", file=out)
    print(f"{described}; dense FF: one hidden layer of {width}; Adam lr {args.lr}, "
          f"{args.epochs} epochs, batch {args.batch_size}", file=out)

    t0 = time.perf_counter()
    fff = make_layer(args.variant, 64, 10, args.depth, args.leaf_width, parallel_size=args.parallel_size,
                     seed=args.seed)
    # a neuron tree routes hard from the start (SPEC §2): there is nothing to harden or balance
    schedule = {} if tree else recipe_schedules(args.epochs)
    fit(fff, X_train, y_train, optimizer="adam", lr=args.lr, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, **schedule)
    t_fff = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense = make_layer("leaf", 64, 10, 0, width, activation=fff.activation, seed=args.seed)
    fit(dense, X_train, y_train, optimizer="adam", lr=args.lr, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed)
    t_dense = time.perf_counter() - t0

    ev_fff = evaluate(fff, X_test, y_test)
    ev_dense = evaluate(dense, X_test, y_test)
    lo, hi, ent, unused = _leaf_usage_summary(fff, X_test)
    print("", file=out)
    soft = "" if ev_fff["accuracy_soft"] is None else f"    FFF soft {ev_fff['accuracy_soft']:.4f}"
    print(f"test accuracy   dense FF {ev_dense['accuracy']:.4f}{soft}"
          f"    FFF hard (inference) {ev_fff['accuracy']:.4f}", file=out)
    print(f"                FFF hard trails dense by {100 * (ev_dense['accuracy'] - ev_fff['accuracy']):.1f} "
          "points", file=out)
    n_leaves = (1 << args.depth) * (args.parallel_size if tree else 1)
    print(f"leaf usage      {len(y_test)} test samples over {n_leaves} leaves{' (all trees)' if tree else ''}: "
          f"min {lo}, max {hi}, ideal {len(y_test) / (1 << args.depth):.1f}; "
          f"entropy {ent:.3f} of 1; {unused} unused", file=out)
    print(f"training time   FFF {t_fff:.1f} s, dense {t_dense:.1f} s (NumPy reference)", file=out)

    # inference: the same call, layer(x), on the same inputs; warm-up first (kernel compilation)
    fff(X_test[:2])
    dense(X_test[:2])
    repeats = 30
    t_fff_b = _median_seconds(lambda: fff(X_test), repeats)
    t_dense_b = _median_seconds(lambda: dense(X_test), repeats)
    one = X_test[:1]
    t_fff_1 = _median_seconds(lambda: fff(one), 200)
    t_dense_1 = _median_seconds(lambda: dense(one), 200)
    flops_ratio = (64 * width + width * 10) / inference_macs
    print(f"inference       batch of {len(y_test)}: FFF {1e3 * t_fff_b:.3f} ms, dense {1e3 * t_dense_b:.3f} ms "
          f"-> {t_dense_b / t_fff_b:.2f}x; one sample: FFF {1e6 * t_fff_1:.1f} us, dense "
          f"{1e6 * t_dense_1:.1f} us -> {t_dense_1 / t_fff_1:.2f}x (FLOP ratio {flops_ratio:.1f}x; "
          f"backend {fff.backend})", file=out)
    if width < 1024:
        print("                (layers this small are dominated by call overhead; the speedup grows with "
              "the width: see `fffcpu bench`)", file=out)
    return 0


# -- train / evaluate / predict ---------------------------------------------------------------
def _load(args, require_y, use_labels=True):
    """``(X, y)`` of ``--data`` as the options say; ``args.feature_names`` is set to the names of X's
    columns in a CSV file's header (None without one), for :func:`_check_feature_columns`."""
    with _named_as_options(args, "label_column"):
        X, y, args.feature_names = fdata.load_dataset(
            args.data, labels=getattr(args, "labels", None) if use_labels else None,
            label_column=_label_column(args.label_column), x_key=args.x_key, y_key=args.y_key,
            require_y=require_y, return_names=True)
    return X, y


def _names_text(names, limit=6):
    """Column names for a message, quoted: the first ``limit``, then how many more."""
    return _shortened([repr(name) for name in names], limit)


def _shortened(texts, limit):
    """``texts`` joined by commas; after ``limit`` of them, ', ... and 12 more'."""
    return ", ".join(texts[:limit]) + (f", ... and {len(texts) - limit} more" if len(texts) > limit else "")


def _check_feature_columns(args, training):
    """A ValueError when the header of ``--data`` (a CSV file) names other input columns than the
    ones the model was trained on (``training["feature_columns"]``), or the same ones in another order:
    the model would have read each value as another input, without a word. Nothing is checked for a
    file without a header or a model saved without the names."""
    saved, names = training.get("feature_columns"), getattr(args, "feature_names", None)
    if saved is None or names is None or list(names) == list(saved):
        return
    at = next(i for i, (a, b) in enumerate(zip(names, saved)) if a != b)  # as many: the widths were checked
    if sorted(names) == sorted(saved):
        problem = (f"has the model's input columns in another order (input {at + 1} is {names[at]!r}, where the "
                   f"model was trained on {saved[at]!r}): put them in the model's order, {_names_text(saved)}")
    elif set(names) == set(saved):  # the same names, repeated another way ('a', 'a', 'b' against 'a', 'b', 'b')
        problem = (f"has other input columns than the model's: input {at + 1} is {names[at]!r}, where the model "
                   f"was trained on {saved[at]!r} (the model's input columns: {_names_text(saved)}; read as inputs "
                   f"here: {_names_text(names)}); give the data the model was trained on")
    else:
        missing = [name for name in saved if name not in names]
        extra = [name for name in names if name not in saved]
        parts = []
        if missing:
            parts.append(f"lacks the model's input column{'s' if len(missing) > 1 else ''} {_names_text(missing)}")
        if extra:
            parts.append(f"has column{'s' if len(extra) > 1 else ''} {_names_text(extra)}, which the model was "
                         "not trained on")
        problem = (" and ".join(parts) + f" (the model's input columns: {_names_text(saved)}; read as inputs "
                   f"here: {_names_text(names)}); give the data the model was trained on")
    if getattr(args, "saved_label_column", False):  # the column the user did not choose may be the cause
        problem += f" (the labels were read from {_label_column_source(args)})"
    raise ValueError(f"data file {args.data!r} {problem}")


#: how messages name a label column that came from the model (:func:`_use_training_defaults`)
_SAVED_COLUMN = "the model's saved label column (from `fffcpu train --label-column`)"


class _SavedColumnError(ValueError):
    """The label column saved with the model does not fit the data file (not one of its columns): the
    one fault of a file that :func:`_load_by_saved_column` answers by reading the file another way."""


@contextlib.contextmanager
def _named_as_options(args, *names):
    """A ValueError raised inside whose message begins with one of the Python argument ``names`` (the
    library's "label_column must be ..., got ...") is raised again naming the command-line option
    (``--label-column``) instead: a command-line user never typed ``label_column``. A label column
    that came from the model (:func:`_use_training_defaults`), not from the command line, is named
    as such."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        for name in names:
            if text.startswith(name + " "):
                option = "--" + name.replace("_", "-")
                if name == "label_column" and getattr(args, "saved_label_column", False):
                    raise _SavedColumnError(f"{_SAVED_COLUMN}{text[len(name):]}; give {option} to read another "
                                            "column (a file of features only has no labels to evaluate: "
                                            "`fffcpu predict` reads it)") from None
                raise ValueError(option + text[len(name):]) from None
        raise


def _labels_named(args):
    """Where a command read its labels, for messages: "the labels in 'reg.npz' (--y-key y)"."""
    if args.data == "digits":
        return "the built-in digits' labels"
    if str(args.data).lower().endswith(".npz"):
        return f"the labels in {args.data!r} (--y-key {args.y_key})"
    if _is_text_table(args.data):
        return f"the labels in {args.data!r} ({_label_column_source(args)})"
    return f"the labels in --labels {args.labels!r}"


def _label_column_source(args):
    """Where the label column came from, for messages: the user's option, or the model's saved column."""
    if getattr(args, "saved_label_column", False):
        return f"column {args.label_column}, {_SAVED_COLUMN}"
    if args.label_column is None:
        return "by default the last column"
    return f"--label-column {args.label_column}"


def _label_column(value):
    if value is None:
        return -1
    if isinstance(value, int):
        return value
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def _classes_text(names, limit=8):
    """'3 classes: setosa, versicolor, virginica'; after ``limit`` names, ', ... and 12 more'. A name
    holding a comma or a quote is quoted ('Birnen, grün' read as two names)."""
    names = [repr(str(name)) if any(c in str(name) for c in ",'\"") else str(name) for name in names]
    return f"{len(names)} class{'' if len(names) == 1 else 'es'}: {_shortened(names, limit)}"


def _class_targets(y, path, classes=None, mse_hint="use --loss mse for"):
    """Labels ``y`` as class indices (int64, shape (n,)). ``mse_hint`` begins the messages' pointer to
    regression ("use --loss mse for real-valued targets"; inspect, which has no --loss, says how the
    model must have been trained).

    Labels are looked up by name in ``classes`` (the class names of a model, or those ``train`` found)
    when they are names of the same kind: text labels in text names (which they need), integer labels
    (also whole floats and bools) in integer names, so that ``evaluate`` reads the labels ``predict``
    prints. Otherwise integer labels are the class indices themselves.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels in {path!r} must be one class index per sample, shape (n,), got shape "
                         f"{y.shape} ({mse_hint} several real-valued targets)")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":  # 0., 1., 2. as NumPy and pandas often store labels; a CSV reads them alike
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.argmin(whole))
            raise ValueError(
                f"labels in {path!r} must be integer class indices 0 .. n_classes-1 for classification, "
                f"got {y[i].item()!r} at index {i} (dtype {y.dtype}; {mse_hint} real-valued targets)"
            )
    elif y.dtype.kind == "U":  # a CSV label column of names
        if classes is None:
            raise ValueError(
                f"labels in {path!r} are text ({_classes_text(np.unique(y))}), but the model has no class "
                "names to look them up in (a model trained on integer class indices 0 .. n_classes-1, or "
                "converted through a .pt or .safetensors file, which holds no names), so give its labels as "
                "those indices, or train a model on these labels with `fffcpu train`, which saves their "
                "names with it"
            )
        return _by_name(y, classes, path)
    elif y.dtype.kind not in "iu":
        raise ValueError(
            f"labels in {path!r} must be integer class indices 0 .. n_classes-1 for classification, "
            f"got dtype {y.dtype} ({mse_hint} real-valued targets)"
        )
    if classes is not None and isinstance(classes[0], int):  # -1 and 1, or 3, 5 and 7: names, not indices
        return _by_name(y, classes, path)
    if y.size and y.min() < 0:
        raise ValueError(f"labels in {path!r} must be >= 0, got minimum {y.min()}")
    return y.astype(np.int64)


def _by_name(y, classes, path):
    """The index of each label of ``y`` in ``classes``; ValueError for a label that is not among them."""
    index = {name: i for i, name in enumerate(classes)}  # 3.0 finds the name 3: equal numbers hash alike
    codes = np.fromiter((index.get(label, -1) for label in y.tolist()), dtype=np.int64, count=y.size)
    if y.size and codes.min() < 0:
        i = int(np.argmin(codes))
        raise ValueError(f"label {y[i].item()!r} at index {i} of {path!r} is not one of the model's "
                         f"{_classes_text(classes)}")
    return codes


def _refuse_text_targets(y, path):
    """--loss mse needs numbers: text labels were refused as "could not convert string to float"."""
    y = np.asarray(y)
    if y.dtype.kind == "U":
        raise ValueError(f"labels in {path!r} are text ({_classes_text(np.unique(y))}), but --loss mse needs "
                         "real-valued targets; to classify by these labels, use --loss cross_entropy")


#: fffcpu train's default epochs: DEFAULT_EPOCHS, or on a small data set enough to pass
#: MIN_DEFAULT_SAMPLES samples through training (at most MAX_DEFAULT_EPOCHS): 2,000 mini-batch steps
#: at the default batch of 64. 30 epochs of iris (120 training rows, 2 mini-batches an epoch) were 60
#: Adam steps at lr 1e-3: held-out accuracy 0.67-0.83, against 0.93-1.0 after 2,000 steps
#: (docs/training.md, "Default epochs"). Counted in samples, not steps, so that a larger
#: --batch-size does not multiply the epochs of a large data set.
DEFAULT_EPOCHS, MIN_DEFAULT_SAMPLES, MAX_DEFAULT_EPOCHS = 30, 128_000, 1000


def default_epochs(n_samples, validation_split=0.0):
    """The epochs ``fffcpu train`` runs without ``--epochs`` on ``n_samples`` training rows (before
    ``validation_split`` is held out of them)."""
    n_fit = max(n_samples - int(round(validation_split * n_samples)), 1)
    return min(max(DEFAULT_EPOCHS, -(-MIN_DEFAULT_SAMPLES // n_fit)), MAX_DEFAULT_EPOCHS)


def run_train(args):
    """Train a layer on a data file (or the built-in digits) and save it with :func:`fffcpu.save`."""
    import fffcpu

    out = args.stream if getattr(args, "stream", None) is not None else sys.stdout
    _check_path(args.output)  # before training: a missing folder or a directory failed only at the end
    if args.output.lower().endswith((".pt", ".pth", ".safetensors")):  # it wrote an fffcpu .npz under that name
        raise ValueError(f"--output {args.output!r}: train writes fffcpu model files (.npz or .fff); write one "
                         f"and convert it: fffcpu convert MODEL.npz {args.output}")
    _refuse_overwriting_inputs(args.output, "model", ("--data", args.data), ("--labels", args.labels))
    if args.patience is not None and not args.validation_split > 0:
        raise ValueError(f"--patience {args.patience} needs --validation-split > 0 (the held-out data early "
                         f"stopping watches), got --validation-split {args.validation_split}")
    if args.local_batch_size is not None and not args.optimizer.startswith("local"):
        raise ValueError(f"--local-batch-size applies to the local optimizers only, got --optimizer {args.optimizer}")
    _refuse_options_of_other_formats(args, "read")
    X, y = _load(args, require_y=True)
    feature_names = args.feature_names
    X = np.asarray(X, dtype=np.float64)
    limit = float(np.finfo(args.dtype).max)
    if X.size and np.abs(X).max() > limit:  # it failed in the scaling as "scale must be finite ... got inf"
        raise ValueError(f"data file {args.data!r} holds values beyond the model's dtype {args.dtype} (largest "
                         f"magnitude {limit:.4g}), up to {np.abs(X).max():.4g}: scale the data, or train with "
                         "--dtype float64")
    names = None  # the class names of text labels, saved with the model
    if args.loss == "cross_entropy":
        y = np.asarray(y)
        if y.dtype.kind == "U" and y.ndim == 1:
            names = np.unique(y).tolist()  # sorted: the class indices do not depend on the rows' order
            _check_class_names(names, f"text labels in {args.data!r}")  # before training: an empty name
            if args.classes is not None and args.classes != len(names):
                raise ValueError(f"--classes {args.classes} does not match the labels in {args.data!r}: they are "
                                 f"text, {_classes_text(names)}; leave --classes out (text labels give one "
                                 "class per name)")
        y = _class_targets(y, args.data, names)
        if names is not None:
            n_out = len(names)
        else:
            n_out = int(y.max()) + 1 if args.classes is None else args.classes
        if y.max() >= n_out:
            raise ValueError(f"--classes {n_out} is too small for labels up to {y.max()}")
    else:
        _refuse_text_targets(y, args.data)
        y = np.asarray(y, dtype=np.float64)
        n_out = 1 if y.ndim == 1 else y.shape[1]
    X_test = y_test = None
    if args.test_fraction > 0:
        if args.loss == "cross_entropy":
            with _named_as_options(args, "test_fraction"):
                X, X_test, y, y_test = fdata.train_test_split(X, y, test_fraction=args.test_fraction, seed=args.seed)
        else:
            perm = np.random.default_rng(args.seed).permutation(len(X))
            k = int(round(args.test_fraction * len(X)))
            X_test, y_test, X, y = X[perm[:k]], y[perm[:k]], X[perm[k:]], y[perm[k:]]
        if len(X) == 0:
            raise ValueError(f"--test-fraction {args.test_fraction} leaves no training samples of "
                             f"{len(X) + len(X_test)}; use a smaller fraction")
    _refuse_options_of_the_other_variant(args)
    if args.epochs is None:
        args.epochs = default_epochs(len(X), args.validation_split)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, scale = (input_scaling(X) if args.standardize
                       else (np.zeros(X.shape[1]), np.ones(X.shape[1])))
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):  # values near the float64 limit overflow
        # the mean or standard deviation: it failed after training, "scale must be finite and > 0 ..."
        raise ValueError(f"data file {args.data!r}: its features cannot be standardized (their mean or "
                         "standard deviation overflows); scale the data, or give --no-standardize")
    Xs = (X - mean) / scale
    try:
        layer = make_layer(args.variant, X.shape[1], n_out, args.depth, args.leaf_width,
                           activation=args.activation, region_leak=args.region_leak, dropout=args.dropout,
                           parallel_size=args.parallel_size, seed=args.seed, dtype=args.dtype,
                           master_leaf=args.master_leaf)
    except MemoryError as exc:  # "would need 268.2 GiB" named neither the labels nor the outputs
        if (args.loss == "cross_entropy" and names is None and args.classes is None
                and n_out > 2 * len(np.unique(y)) + 100):  # the outputs, not the depth or the widths
            raise MemoryError(f"the labels in {args.data!r} go up to {n_out - 1}, so the model would have "
                              f"{n_out} outputs (one per class index 0 .. {n_out - 1}): {exc}; class labels "
                              "are indices 0 .. n_classes - 1 or text names") from None
        if args.classes is not None and args.classes > 2 * len(np.unique(y)) + 100:  # it blamed the depth
            need = str(exc).split("; choose")[0]  # not its advice: the depth and widths are not the cause
            raise MemoryError(f"--classes {args.classes} makes {args.classes} outputs, too many for this "
                              f"machine's memory ({need}); the labels in {args.data!r} hold "
                              f"{len(np.unique(y))} classes: give --classes near that, or leave it out") from None
        raise
    if args.variant == "leaf" and args.recipe:
        schedule = recipe_schedules(args.epochs, hardening=args.hardening, final_hardening=args.final_hardening,
                                    balance=args.balance, balance_fraction=args.balance_fraction,
                                    hardened_fraction=args.hardened_fraction)
    else:
        schedule = dict(hardening=args.hardening, balance=args.balance)
    if names is not None:
        print(f"text labels: {_classes_text(names)} (indices 0 .. {len(names) - 1}, names saved with the model)",
              file=out)
    print(f"training {type(layer).__name__} {layer.config()} on {len(X)} samples from {args.data} for "
          f"{args.epochs} epoch{'' if args.epochs == 1 else 's'}", file=out)
    try:
        with np.errstate(over="ignore", invalid="ignore"), _named_as_options(args, "validation_split"):
            # a divergence is reported below, in one line
            history = fit(layer, Xs, y, loss=args.loss, optimizer=args.optimizer, lr=args.lr,
                          weight_decay=args.weight_decay, epochs=args.epochs,
                          batch_size=args.batch_size, validation_split=args.validation_split,
                          patience=args.patience, seed=args.seed, verbose=not args.quiet, stream=out,
                          local_batch_size=args.local_batch_size, **schedule)
    except FloatingPointError as exc:  # name the option to change; no model is saved
        problem = str(exc).split("; the parameters of the best epoch")[0]
        raise ValueError(f"{problem} (--lr {args.lr}); no model was saved") from None
    fold_input_scaling(layer, mean, scale)
    if X_test is not None and not len(X_test):  # say so rather than print nothing
        per = " of each class" if args.loss == "cross_entropy" else ""
        print(f"held-out: no samples (--test-fraction {args.test_fraction}{per} rounds to 0 of these "
              f"{len(X)}), so no held-out accuracy", file=out)
    if X_test is not None and len(X_test):
        ev = evaluate(layer, X_test, y_test, loss=args.loss)
        msg = f"held-out {len(X_test)} samples: loss {ev['loss']:.4f}"
        if ev["accuracy"] is not None:
            msg += f", accuracy (hard inference) {ev['accuracy']:.4f}"
        if ev["accuracy_soft"] is not None:
            msg += f", soft {ev['accuracy_soft']:.4f}"
        print(msg, file=out)
    training = {"loss": args.loss}  # read back by evaluate, predict and inspect (fffcpu.io, "training")
    column = _label_column(args.label_column) if args.label_column is not None else None
    if column is not None and _is_text_table(args.data):
        training["label_column"] = column
    if feature_names is not None:  # checked against the header of the files the model reads later
        training["feature_columns"] = feature_names
    fffcpu.io.save(layer, args.output, classes=names, _training=training)
    n_epochs = len(history["epoch"])
    print(f"saved to {args.output} ({n_epochs} epoch{'' if n_epochs == 1 else 's'})", file=out)
    return 0


#: (dest, option, the value that states the neuron tree as it is, or None): training options without
#: effect on a neuron tree (SPEC §2: its routing is hard from the start and its leaves are single
#: neurons, so there is no leaf width, nothing to harden or balance and no recipe: --no-recipe,
#: one phase with constant terms, says what it does)
_LEAF_ONLY = (("leaf_width", "--leaf-width", None), ("master_leaf", "--master-leaf", 0),
              ("region_leak", "--region-leak", 0), ("dropout", "--dropout", 0), ("hardening", "--hardening", 0),
              ("balance", "--balance", 0), ("final_hardening", "--final-hardening", None),
              ("balance_fraction", "--balance-fraction", None), ("hardened_fraction", "--hardened-fraction", None),
              ("recipe", "--no-recipe", False))
#: options that only the three-phase recipe reads (``--no-recipe`` trains with constant --hardening and --balance)
_RECIPE_ONLY = (("final_hardening", "--final-hardening"), ("balance_fraction", "--balance-fraction"),
                ("hardened_fraction", "--hardened-fraction"))


def _refuse_options_of_the_other_variant(args):
    """A ValueError naming an option that would have no effect: one of the other --variant's, one of
    the recipe's with --no-recipe, or --classes with --loss mse (they were ignored without a word:
    --parallel-size 3 trained one leaf FFF, --leaf-width 32 the same neuron tree as without it).

    ``args.given`` (:func:`fffcpu.cli.parse_args`) names the options given on the command line; an
    option given at its default value is refused as well, unless the value states the configuration
    as it is (--master-leaf 0 with a neuron tree, --parallel-size 1 with a leaf FFF). Without
    ``args.given`` only values other than the defaults are refused."""
    given = getattr(args, "given", set())
    if args.variant == "neuron-tree":
        for dest, option, neutral in _LEAF_ONLY:
            if not hasattr(args, dest):  # the demo has fewer options
                continue
            value = getattr(args, dest)
            if dest in given and value != neutral or dest in ("master_leaf", "region_leak", "dropout") and value:
                raise ValueError(f"{option} applies to --variant leaf only, got {option} {value} with --variant "
                                 "neuron-tree")
    elif args.parallel_size != 1:
        raise ValueError(f"--parallel-size applies to --variant neuron-tree only, got --parallel-size "
                         f"{args.parallel_size} with --variant leaf")
    elif not getattr(args, "recipe", True):
        for dest, option in _RECIPE_ONLY:
            if dest in given:
                raise ValueError(f"{option} applies to the training recipe only, got {option} "
                                 f"{getattr(args, dest)} with --no-recipe (one phase with constant --hardening "
                                 "and --balance)")
    if getattr(args, "classes", None) is not None and getattr(args, "loss", None) == "mse":
        raise ValueError(f"--classes applies to --loss cross_entropy only, got --classes {args.classes} with "
                         "--loss mse (the targets' width sets the outputs)")


def _refuse_options_of_other_formats(args, labels):
    """A ValueError naming a data option given where it has no effect (--x-key with a CSV file was
    ignored without a word): --x-key and --y-key apply to .npz files, --label-column to CSV files,
    --labels to IDX images, and all of them need --data. ``labels``: how the command uses the
    labels, "read" (train, evaluate), "optional" (inspect) or "ignored" (predict, whose help says
    that it accepts --y-key and --labels). Options left at their defaults are never refused; run
    before any reading, so no fallback can swallow the error."""
    given = getattr(args, "given", set())
    if args.data is None:
        for dest in ("x_key", "y_key", "label_column", "limit"):
            if dest in given:
                option = "--" + dest.replace("_", "-")
                raise ValueError(f"{option} needs --data (it applies to the data file), got {option} "
                                 f"{getattr(args, dest)} without --data")
        return
    path = str(args.data)
    if path == "digits" and "data" in given and os.path.exists(path):  # the file was ignored without a word
        raise ValueError("--data digits names the built-in digits, but a file 'digits' exists here: give "
                         "--data ./digits to read the file (or run elsewhere for the built-in data)")
    npz = path.lower().endswith(".npz")
    idx = not (npz or _is_text_table(path) or path == "digits")
    data = f"--data {path!r}" if "data" in given else f"the default --data {path}"
    for dest, option, applies, kind in (
            ("x_key", "--x-key", npz, ".npz files"),
            ("y_key", "--y-key", npz or labels == "ignored", ".npz files"),
            ("label_column", "--label-column", _is_text_table(path), "CSV files (.csv, .tsv, .txt)"),
            ("labels", "--labels", idx or labels != "optional", "IDX images")):  # train, evaluate: load_dataset's
        if dest in given and not applies:
            raise ValueError(f"{option} applies to {kind} only, got {option} {getattr(args, dest)} with {data}")
    if labels == "read" and "label_column" in given and str(args.label_column).lower() == "none":
        command = getattr(args, "command", "this command")  # it failed after reading the whole file
        raise ValueError(f"--label-column none reads no labels, but {command} needs them; name the label "
                         f"column of {data}")


def _is_text_table(path):
    return path.lower().endswith((".csv", ".tsv", ".txt"))


def _width_error(layer, args, width, what):
    """The ValueError for data whose ``width`` (features, or columns: ``what``) does not fit the model;
    it was "x must have shape (..., 4) (last axis = input_width 4), got shape (5, 64)", naming neither
    file, or a label error when evaluate met the mismatch first."""
    return ValueError(f"data file {args.data!r} has {width} {what}, but the model {args.model!r} takes "
                      f"{layer.input_width} inputs: give the data the model was trained on, or the model "
                      "trained on this data")


def _load_by_saved_column(layer, args, use_labels=True):
    """``(X, y)`` read with the label column ``fffcpu train`` saved (in ``args.label_column``, see
    :func:`_use_training_defaults`), or None where the file has no such column at the model's width
    (a file of features only); ``args.label_column`` is then reset to None."""
    try:
        X, y = _load(args, require_y=False, use_labels=use_labels)
    except _SavedColumnError:  # no such column (a file of features only, without its header name); any
        X = None                # other fault of the file (an empty cell) is the file's to report
    if X is not None and X.shape[1] == layer.input_width:
        return X, y
    args.label_column = None
    args.saved_label_column = False
    return None


def _features_for(layer, args, lenient=False):
    """Read X for ``layer``; a CSV with one column more than input_width has its label dropped.

    ``lenient``: ``args.label_column`` is the one ``fffcpu train`` saved, not the user's; a file
    without that column (features only) is then read as if none were given."""
    if lenient:
        got = _load_by_saved_column(layer, args, use_labels=False)
        if got is not None:
            return got[0]
    if _is_text_table(args.data) and args.label_column is None:
        # with the last column as labels first: read as a feature, a text label would be "not a number"
        try:
            first, _, args.feature_names = fdata.load_dataset(args.data, label_column=-1, require_y=False,
                                                              return_names=True)
        except ValueError:  # e.g. an empty cell in the last column: read as features, which names it
            first = None
        if first is not None and first.shape[1] == layer.input_width:
            return first
        try:
            X, _, args.feature_names = fdata.load_dataset(args.data, label_column=None, require_y=False,
                                                          return_names=True)
        except ValueError:
            if first is None:
                raise
            # the file reads with its last column as labels (text ones, say), just not at this width
            raise _width_error(layer, args, first.shape[1] + 1,
                               "columns (a CSV file may have one more than the inputs: its labels)") from None
        if X.shape[1] != layer.input_width:
            raise _width_error(layer, args, X.shape[1],
                               "columns (a CSV file may have one more than the inputs: its labels)")
        return X
    # --labels is ignored, as its help says (given with IDX images it was read, and a missing file or a
    # count that did not match the images failed the predictions)
    X, _ = _load(args, require_y=False, use_labels=False)
    if X.shape[1] != layer.input_width:
        raise _width_error(layer, args, X.shape[1], "features per sample")
    return X


def _read_model(path):
    """``(layer, classes, training)`` of the MODEL argument (``training``: what ``fffcpu train`` saved
    about its data and loss, {} for other files); a missing file or a folder is named as the model file
    (it was "[Errno 2] No such file or directory: 'm.npz'", which named neither the argument nor the fix)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"model file {path!r} is a directory: give the file that `fffcpu train` or "
                                "fffcpu.save wrote")
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist: give the file that `fffcpu train -o` "
                                "or fffcpu.save wrote")
    return _read(path, with_training=True)


def _use_training_defaults(args, training):
    """Options left at their defaults take what ``fffcpu train`` saved with the model: the label column
    of its CSV file (the last column was read instead, and a label column elsewhere went in as a
    feature: predictions wrong without a word) and, for evaluate, its loss. Returns True when the
    saved label column was taken."""
    saved_column = (getattr(args, "label_column", None) is None and "label_column" in training
                    and args.data is not None and _is_text_table(args.data))
    if saved_column:
        args.label_column = str(training["label_column"])
        args.saved_label_column = True  # for the messages (_named_as_options)
    if getattr(args, "loss", "") is None:
        args.loss = training.get("loss", "cross_entropy")
    return saved_column


def run_evaluate(args):
    """Print loss and accuracy of a saved model on a labelled data file.

    Labels are read as ``predict`` writes them: text labels are looked up in the model's class names,
    and so are integer labels for a model whose names are integers (saved from Python with
    ``fffcpu.save(..., classes=clf.classes_)``); other integer labels are class indices.
    """
    out = args.stream if getattr(args, "stream", None) is not None else sys.stdout
    _refuse_options_of_other_formats(args, "read")
    layer, classes, training = _read_model(args.model)
    _use_training_defaults(args, training)
    X, y = _load(args, require_y=True)
    if X.shape[1] != layer.input_width:  # before the labels: a wrong file failed as "y must hold class indices"
        what = "features per sample"
        if _is_text_table(args.data):
            what += f" (its columns less the label column, {_label_column_source(args)})"
        err = _width_error(layer, args, X.shape[1], what)
        if _is_text_table(args.data) and X.shape[1] == layer.input_width - 1:
            err = ValueError(f"{err}; a file of features only, without a label column, has no labels to "
                             "evaluate: `fffcpu predict` reads it")
        raise err
    _check_feature_columns(args, training)
    try:
        if args.loss == "cross_entropy":
            y = _class_targets(y, args.data, classes)
        else:
            _refuse_text_targets(y, args.data)
    except ValueError as exc:
        if not getattr(args, "saved_label_column", False):
            raise
        raise ValueError(f"{exc} (the labels were read from {_label_column_source(args)})") from None
    try:
        ev = evaluate(layer, X, y, loss=args.loss)
    except (ValueError, TypeError) as exc:  # the targets' check says "y", a name the user never gave
        if not str(exc).startswith("y "):
            raise
        raise type(exc)(f"{_labels_named(args)} {str(exc)[2:]}") from None
    seen = ""
    if args.data == "digits":  # the default: its accuracy (0.99) read as held-out, where train had said 0.96
        seen = (" (all of them: a model trained on digits has seen most of them; `fffcpu train` reported its "
                "held-out accuracy)")
    print(f"{args.model}: {len(X)} samples from {args.data}{seen}", file=out)
    print(f"loss {ev['loss']:.6f}", file=out)
    if ev["accuracy"] is not None:
        print(f"accuracy (hard inference) {ev['accuracy']:.4f}", file=out)
    if ev["accuracy_soft"] is not None:
        print(f"accuracy (soft mixture) {ev['accuracy_soft']:.4f}", file=out)
    return 0


def _refuse_overwriting_inputs(output, what, *inputs):
    """A ValueError when ``output`` is one of the ``(option, path)`` files the command reads, or an
    existing file of another kind than ``what`` ("model" or "predictions"; an empty file is free)."""
    for option, source in inputs:
        if option == "--data" and source == "digits":  # the built-in digits, never a file of that name: a
            continue  # model saved as ./digits was refused as "the --data file" on the next run
        if source and os.path.isfile(output) and os.path.isfile(source) and os.path.samefile(output, source):
            raise ValueError(f"--output {output!r} is the {option} file {source!r}: the {what} would "
                             "overwrite it; choose another output path")
    _refuse_replacing(f"--output {output!r}", output, what)


def _refuse_replacing(named, path, what):
    """A ValueError when ``path`` (``named`` as the user gave it) is a non-empty file that holds another
    kind of thing than ``what`` ("model" or "predictions", "converted model") would write, or cannot
    be read."""
    problem = fio._replacing_problem(path, model=what.endswith("model"))
    if problem:
        raise ValueError(f"{named} exists and {problem}: the {what} would replace it; remove it first or "
                         "choose another path")


def run_predict(args):
    """Predict with a saved model: class indices, or names for a model with class names (default), or
    raw outputs (``--raw``)."""
    out = args.stream if getattr(args, "stream", None) is not None else sys.stdout
    if args.output is not None:  # before the work: a missing folder, a directory, a format it cannot write
        _check_path(args.output)
        if args.output.lower().endswith(".npz"):
            raise ValueError(f"--output {args.output!r}: predictions are written as .npy (np.save) or as CSV "
                             "text, not as an .npz archive; name the file .npy or .csv")
        _refuse_overwriting_inputs(args.output, "predictions", ("MODEL", args.model), ("--data", args.data),
                                   ("--labels", args.labels))
    _refuse_options_of_other_formats(args, "ignored")
    layer, classes, training = _read_model(args.model)
    X = _features_for(layer, args, lenient=_use_training_defaults(args, training))
    _check_feature_columns(args, training)
    outputs = np.asarray(layer(X))
    raw = args.raw or training.get("loss") == "mse"  # a regression model's outputs, not their argmax
    result = outputs if raw else outputs.argmax(axis=1)
    if classes is not None and not raw:
        names = np.array(classes, dtype=np.int64 if isinstance(classes[0], int) else None)  # str: unicode
        result = names[result]
    text = None
    if result.dtype.kind == "U":  # the csv module quotes a name holding a comma, a quote or a line break,
        lines = io.StringIO()     # so that each prediction stays one record, printed or written
        csv.writer(lines, lineterminator="\n").writerows([name] for name in result.tolist())
        text = lines.getvalue()
    if args.output is None:
        if text is not None:
            out.write(text)
            return 0
        for row in np.atleast_1d(result):
            print(" ".join(f"{v:.6g}" for v in np.atleast_1d(row)) if raw else int(row), file=out)
        return 0
    problem = _not_predictions_like(args.output, np.shape(result))
    if problem:  # a data file was replaced by predictions without a word (predict -o train_set.csv)
        raise ValueError(f"--output {args.output!r} exists and {problem}: the predictions would replace it; "
                         "remove it first or choose another path")
    if args.output.lower().endswith(".npy"):
        _atomic_write(args.output, lambda fh: np.save(fh, result, allow_pickle=False))
    elif text is not None:
        _atomic_write(args.output, lambda fh: fh.write(text.encode("utf-8")))
    else:
        # the digits that read back as the same number: 9 for float32, 17 for float64
        fmt = ("%.17g" if result.dtype == np.float64 else "%.9g") if raw else "%d"
        _atomic_write(args.output, lambda fh: np.savetxt(fh, np.atleast_1d(result), fmt=fmt, delimiter=","))
    print(f"wrote {len(result)} predictions to {args.output}", file=out)
    return 0


def _not_predictions_like(path, shape):
    """Why predictions of ``shape`` should not replace the existing, non-empty file ``path``, or None
    when it may: no such file, an empty one, or one that reads as predictions of the same shape (what
    this command wrote for the same data before). Anything else, a data file above all, may hold what
    a user cannot make again."""
    if not (os.path.isfile(path) and os.path.getsize(path)):
        return None
    if path.lower().endswith(".npy"):
        from numpy.lib import format as npy_format  # the header only: the array is not read

        try:
            with open(path, "rb") as f:
                version = npy_format.read_magic(f)
                read = npy_format.read_array_header_2_0 if version == (2, 0) else npy_format.read_array_header_1_0
                held = read(f)[0]
        except (OSError, ValueError) as e:
            return f"is not a NumPy .npy file ({e})"
        if tuple(held) != tuple(shape):
            return f"holds an array of shape {tuple(held)}, not predictions of shape {tuple(shape)}"
        return None
    fields = shape[1] if len(shape) == 2 else 1
    rows = 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                rows += 1
                if len(row) != fields:
                    return (f"has {len(row)} field(s) on line {rows}, where predictions have {fields} (a data "
                            "file?)")
                if rows > shape[0]:
                    break
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return f"is not a text file of predictions ({e})"
    if rows != shape[0]:  # (the count stops one past the predictions')
        return f"holds {f'more than {shape[0]}' if rows > shape[0] else rows} line(s), not {shape[0]} predictions"
    return None


# -- argument parsers -------------------------------------------------------------------------

class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help, except where the help states its default itself, where
    the default is None (the help says what happens without the option) and for flags (``--no-recipe``'s
    default True would read as the flag being on)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default is None or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def _add_data_options(p, labels_help="labels file for IDX images (MNIST's *-labels-idx1-ubyte[.gz])",
                      label_column_default="the last column",
                      y_key_help=".npz array holding the labels, or the regression targets: shape (n,) or, with "
                                 "--loss mse, (n, k) (default: %(default)s)"):
    p.add_argument("--data", default="digits", metavar="FILE",
                   help="data file: .npz (arrays X and y), .csv (one label column), IDX images "
                        "(MNIST format, raw or .gz, with --labels), or 'digits' for the built-in data "
                        "(default: %(default)s)")
    p.add_argument("--labels", metavar="FILE", help=labels_help)
    _add_column_options(p, label_column_default, y_key_help)


def _add_column_options(p, label_column_default="the last column",
                        y_key_help=".npz array holding the labels (default: %(default)s)"):
    """--label-column, --x-key and --y-key: where a data file keeps its features and labels (also
    ``fffcpu inspect``'s)."""
    p.add_argument("--label-column", default=None, metavar="COL",
                   help="CSV label column: an index (negative counts from the end) or a header name; "
                        f"'none' for a file without labels (default: {label_column_default})")
    p.add_argument("--x-key", default="X", metavar="NAME",
                   help=".npz array holding the features (default: %(default)s)")
    p.add_argument("--y-key", default="y", metavar="NAME", help=y_key_help)


def add_parsers(subparsers):
    """Register ``demo``, ``train``, ``evaluate`` and ``predict`` on an argparse subparsers object."""
    fmt = _HelpFormatter

    p = subparsers.add_parser(
        "demo", formatter_class=fmt,
        help="train an FFF and a dense net on the built-in digits and compare them",
        description="Train a leaf FFF (or, with --variant neuron-tree, a neuron tree) and a dense "
                    "feedforward net of the same training width on the built-in 8x8 digits (offline), "
                    "then print the test accuracy of both (a leaf FFF's with soft and with hard routing), "
                    "how evenly the FFF's leaves are used, and the inference speedup of the FFF's hard "
                    "(log-time) inference over the dense net, measured now.")
    p.add_argument("--depth", type=nonneg_int, default=3, help="FFF tree depth d (2^d leaves)")
    p.add_argument("--leaf-width", type=positive_int, default=8, help="neurons per FFF leaf (leaf variant)")
    p.add_argument("--variant", choices=VARIANTS, default="leaf",
                   help="leaf: Belcak & Wattenhofer leaf FFF; neuron-tree: UltraFastBERT tree of neurons")
    p.add_argument("--parallel-size", type=positive_int, default=1, help="number of trees (neuron-tree)")
    p.add_argument("--epochs", type=positive_int, default=60, help="training epochs for both nets")
    p.add_argument("--batch-size", type=positive_int, default=32, help="mini-batch size")
    p.add_argument("--lr", type=nonneg_float, default=3e-3, help="Adam learning rate")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the split, initialisation and shuffling")
    p.set_defaults(func=run_demo)

    p = subparsers.add_parser(
        "train", formatter_class=fmt, help="train an FFF on a data file and save it",
        description="Train a leaf FFF (or a neuron-tree FFF) with mini-batch gradient descent and save "
                    "it with fffcpu.save. Inputs are standardised for training and the scaling is folded "
                    "into the saved weights, so the model takes raw inputs. Leaf FFFs follow a three-"
                    "phase recipe (docs/training.md in fffcpu's source distribution): balancing, "
                    "hardening, hardened fine-tuning. Class labels may be integer indices or text (a CSV column of names such as setosa): "
                    "text labels are numbered in sorted order and their names saved with the model, so "
                    "evaluate reads such labels and predict prints the names. A CSV file's header names "
                    "are saved too: evaluate, predict and inspect refuse a file whose header names other "
                    "input columns, or the same ones in another order.")
    _add_data_options(p)
    p.add_argument("--output", "-o", required=True, metavar="PATH", help="where to save the trained model")
    p.add_argument("--variant", choices=VARIANTS, default="leaf",
                   help="leaf: Belcak & Wattenhofer leaf FFF; neuron-tree: UltraFastBERT tree")
    p.add_argument("--depth", type=nonneg_int, default=3, help="tree depth (leaf: 2^depth leaves)")
    p.add_argument("--leaf-width", type=positive_int, default=8, help="neurons per leaf (leaf variant)")
    p.add_argument("--parallel-size", type=positive_int, default=1, help="number of trees (neuron-tree)")
    p.add_argument("--master-leaf", type=nonneg_int, default=0, metavar="M",
                   help="width of the eFFF always-on master leaf (leaf variant; 0 = none, eFFF uses 8)")
    p.add_argument("--activation", default=None, choices=sorted(ACTIVATIONS),
                   help="leaf or neuron activation (default: relu for leaf, gelu for neuron-tree)")
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy",
                   help="cross_entropy: class labels, integer indices or text names; mse: real-valued "
                        "targets")
    p.add_argument("--classes", type=positive_int, default=None,
                   help="number of classes (default: largest label + 1; with text labels the number of "
                        "names, which a given value must equal)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="momentum/nesterov are SGD with 0.9; local-* update a node or leaf only after "
                        "--local-batch-size samples used it")
    p.add_argument("--lr", type=nonneg_float, default=None,
                   help="learning rate (default: 1e-3 for the Adam family, 0.1 for the SGD family)")
    p.add_argument("--weight-decay", type=nonneg_float, default=None,
                   help="weight decay (default: 0.01 for adamw and local-adamw, decoupled as in "
                        "torch.optim.AdamW; 0 for the others, added to the gradient)")
    p.add_argument("--local-batch-size", type=positive_int, default=None,
                   help="samples a block must see before a local optimizer updates it (default 64)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"training epochs (default: {DEFAULT_EPOCHS}, or on a small data set as many as pass "
                        f"{MIN_DEFAULT_SAMPLES:,} samples through training, at most {MAX_DEFAULT_EPOCHS:,})")
    p.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size")
    p.add_argument("--hardening", type=nonneg_float, default=1.0,
                   help="h, weight of the mean node entropy (first phase of the recipe)")
    p.add_argument("--final-hardening", type=nonneg_float, default=3.0,
                   help="h in the second phase of the recipe")
    p.add_argument("--balance", type=nonneg_float, default=1.0,
                   help="alpha, weight of the eFFF load-balancing term (first phase)")
    p.add_argument("--balance-fraction", type=fraction, default=0.5,
                   help="fraction of the epochs in the balancing phase")
    p.add_argument("--hardened-fraction", type=fraction, default=1 / 3,
                   help="fraction of the epochs, at the end, trained with hard routing")
    p.add_argument("--no-recipe", dest="recipe", action="store_false",
                   help="train in one phase with constant --hardening and --balance")
    p.add_argument("--region-leak", type=probability, default=0.0,
                   help="probability of flipping each routing decision in training (leaf variant)")
    p.add_argument("--dropout", type=fraction, default=0.0,
                   help="dropout after the leaf activation, in training (leaf variant)")
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="train on the raw inputs instead of standardised ones")
    p.add_argument("--test-fraction", type=fraction, default=0.2,
                   help="held out (seeded; stratified by class with --loss cross_entropy) and reported after "
                        "training; 0 to train on all")
    p.add_argument("--validation-split", type=fraction, default=0.0,
                   help="fraction of the training data evaluated after every epoch")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="stop after this many epochs without a better validation loss (needs --validation-split)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="parameter dtype")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of initialisation, split, shuffling and noise")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=run_train)

    p = subparsers.add_parser(
        "evaluate", formatter_class=fmt, help="loss and accuracy of a saved model on a data file",
        description="Load a model saved by `fffcpu train` (or fffcpu.save) and report its loss and "
                    "accuracy with hard (log-time) inference, and with the soft mixture where defined. "
                    "Text labels are looked up in the class names saved with the model (fffcpu train "
                    "saves them when trained on text labels); integer labels are class indices "
                    "0 .. n_classes-1, or for a model saved with integer class names (fffcpu.save(..., "
                    "classes=[-1, 1])) those names.")
    p.add_argument("model", metavar="MODEL", help="saved model file")
    _add_data_options(p)
    p.add_argument("--loss", choices=("cross_entropy", "mse"), default=None,
                   help="how to score the outputs (default: the loss the model was trained with by "
                        "`fffcpu train`, else cross_entropy)")
    p.set_defaults(func=run_evaluate)

    p = subparsers.add_parser(
        "predict", formatter_class=fmt, help="predict with a saved model",
        description="Load a saved model and predict for every row of a data file: the class index "
                    "(argmax), its name for a model saved with class names (trained on text labels), or "
                    "the raw outputs with --raw. A CSV with one column more than the model's input width "
                    "has its last column (a label) ignored. A CSV header must name the input columns "
                    "train read, in the same order (a file without a header is not checked).")
    p.add_argument("model", metavar="MODEL", help="saved model file")
    _add_data_options(p, labels_help="ignored; accepted so the same options work for all commands",
                      label_column_default="the last column if the file has one column more than the "
                                           "model's input width, else none",
                      y_key_help="ignored: predict reads only the features (default: %(default)s)")
    p.add_argument("--raw", action="store_true", help="write the raw outputs instead of classes")
    p.add_argument("--output", "-o", default=None, metavar="PATH",
                   help="write predictions to PATH (.npy, else CSV) instead of printing them; class "
                        "names go to a .npy file as a NumPy str array")
    p.set_defaults(func=run_predict)
