"""The training loop: mini-batches, the hardening recipe, validation, early stopping, progress.

One step, for a batch (x, t):

    y, cache = layer.train_forward(x, rng)               # soft mixture (+ region leak, dropout)
    L_task, dL_dy = loss(y, t)
    grads, _ = layer.backward(cache, dL_dy, hardening=h, balance=alpha)
    optimizer.step(grads)                                # local optimizers also get the usage

The reported training loss is L_task + h L_harden + alpha L_balance, the quantity the gradients
belong to. ``hardening`` and ``balance`` may be numbers or functions of the epoch (0-based), so the
two-phase eFFF recipe (balance first, then harden) is ``balance=lambda e: 1.0 if e < k else 0.0``.

Reproducibility: all randomness comes from ``np.random.SeedSequence(seed)``, spawned into one
generator for the shuffling (a fresh ``permutation(n)`` each epoch) and one for the training noise
(region leak, dropout); the same seed and data give bit-identical results.
"""
import math
import numbers
import sys
import time

import numpy as np

from .. import _validate
from .._validate import _check_finite, check_bool, check_int, check_nonneg_float, check_rate
from . import losses
from .optim import Optimizer, make_optimizer


def make_generators(seed):
    """The two generators :func:`fit` uses: ``(shuffle_rng, noise_rng)``, both from ``seed``."""
    shuffle_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(shuffle_seq), np.random.default_rng(noise_seq)


class History(dict):
    """Per-epoch metrics of :func:`fit`: ``history["loss"][e]`` and so on (a dict of lists).

    Keys: ``epoch``, ``loss`` (training objective), ``task_loss``, ``hardening_loss``,
    ``accuracy`` (training batches, soft outputs; classification only), ``val_loss``,
    ``val_accuracy`` (hard inference), ``val_accuracy_soft``, ``time`` (seconds per epoch).
    Attributes ``best_epoch`` and ``stopped_early`` describe early stopping.
    """

    KEYS = ("epoch", "loss", "task_loss", "hardening_loss", "accuracy", "val_loss",
            "val_accuracy", "val_accuracy_soft", "time")

    def __init__(self):
        super().__init__({k: [] for k in self.KEYS})
        self.best_epoch = None
        self.stopped_early = False

    def append(self, **row):
        for k in self.KEYS:
            self[k].append(row.get(k))

    def last(self):
        """The last epoch's metrics as ``{key: value}``."""
        return {k: v[-1] for k, v in self.items() if v}


def _as_schedule(name, value):
    if callable(value):
        return value
    value = check_nonneg_float(name, value)
    return lambda epoch: value


def _check_layer(layer, needs=("input_width", "output_width", "dtype", "params", "train_forward", "backward")):
    """A TypeError for a ``layer`` without the attributes of the layer protocol that a function ``needs``
    (``fit(None, X, y)`` was an AttributeError)."""
    missing = [a for a in needs if not hasattr(layer, a)]
    if missing:
        raise TypeError(f"layer must be an fffcpu layer (FFF, NeuronTreeFFF) or an object with the layer protocol, "
                        f"got {type(layer).__name__} (no {', '.join(missing)})")


def _prepare_features(X, layer, name="X"):
    """``X`` as a C-contiguous (n, input_width) array of the layer's dtype, checked whole before any
    training step: a NaN in the last mini-batch was reported after the earlier ones had changed the
    parameters, and a float64 value beyond float32 as "x must be finite"."""
    try:
        arr = np.asarray(X)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be an array of shape (n, {layer.input_width}); NumPy cannot make one array "
                         f"of the {type(X).__name__} given ({err})") from None
    if arr.ndim != 2 or arr.shape[1] != layer.input_width:
        raise ValueError(f"{name} must have shape (n, {layer.input_width}) (input_width), got "
                         f"{f'a scalar ({type(X).__name__})' if arr.ndim == 0 else arr.shape}")
    return _validate.as_input(arr, layer.input_width, layer.dtype, name=name)[0]  # dtype, values


def _prepare_targets(loss, y, n, output_width, name="y", dtype=None):
    try:
        y = np.asarray(y)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{name} must be an array with {n} rows (one per sample of X); NumPy cannot make one "
                         f"array of the {type(y).__name__} given ({err})") from None
    if y.shape[:1] != (n,):
        raise ValueError(f"{name} must have {n} rows (one per sample of X), got shape {y.shape}")
    if loss == "cross_entropy":
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise ValueError(
                f"{name} must be a 1-d array of class indices for loss='cross_entropy', got shape {y.shape} "
                f"dtype {y.dtype}"
            )
        if y.size and (y.min() < 0 or y.max() >= output_width):
            raise ValueError(
                f"{name} must hold class indices in [0, {output_width - 1}] (output_width {output_width}), "
                f"got values in [{y.min()}, {y.max()}]"
            )
        return y.astype(np.int64, copy=False)
    if y.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers for loss='mse', got dtype {y.dtype}")
    given = y.shape
    if y.ndim == 1:
        y = y[:, None]
    if y.shape != (n, output_width):  # the shape as given: a (100,) y was reported as (100, 1)
        raise ValueError(f"{name} must have shape ({n}, {output_width}) for loss='mse' (one target per output), "
                         f"got {given}")
    # else training stopped on "dL_dy must be finite", and a validation loss of NaN never improved; and
    # targets beyond the layer's dtype "diverged" at once ("lower the learning rate")
    with np.errstate(over="ignore"):
        _check_finite(name, y, y if dtype is None else y.astype(dtype))
    return y


def _block_usage(layer, cache, x):
    """Hard usage per parameter block, from the layer (or recomputed from a hard descent)."""
    if hasattr(layer, "block_usage"):
        return layer.block_usage(cache)
    u = layer.usage(x)
    node, leaf = u["hard_node"], u["hard_leaf"]
    out = {name: leaf for name in ("w1s", "b1s", "w2s", "b2s")}
    out.update(node_weights=node, node_biases=node)
    return {k: v for k, v in out.items() if k in layer.params}


#: samples per hard-inference call in :func:`evaluate` (and in :func:`fit`'s validation)
EVAL_BATCH = 1024


def evaluate(layer, X, y, loss="cross_entropy", batch_size=EVAL_BATCH):
    """Task loss and accuracy of hard inference ``layer(X)`` (and of the soft mixture if it has one).

    Returns
    -------
    dict with ``loss``, ``accuracy`` (None for mse) and ``accuracy_soft`` (None where not defined)
    """
    loss_fn = losses.get(loss)
    batch_size = check_int("batch_size", batch_size, 1)
    _check_layer(layer, ("input_width", "output_width", "dtype", "__call__"))
    X = _prepare_features(X, layer)
    n = X.shape[0]
    t = _prepare_targets(loss, y, n, layer.output_width, dtype=layer.dtype)
    if n == 0:
        raise ValueError("cannot evaluate on an empty data set (X has 0 rows)")
    return _evaluate_prepared(layer, X, t, loss, loss_fn, batch_size)


def _evaluate_prepared(layer, X, t, loss, loss_fn, batch_size):
    """:func:`evaluate` on data already checked and converted (:func:`_prepare_features`,
    :func:`_prepare_targets`, at least one row): :func:`fit` checks its validation data once, not
    again at every epoch."""
    n = X.shape[0]
    hard = np.concatenate([np.asarray(layer(X[i:i + batch_size])) for i in range(0, n, batch_size)])
    value, _ = loss_fn(hard.astype(np.float64), t)
    out = {"loss": value, "accuracy": None, "accuracy_soft": None}
    if loss == "cross_entropy":
        out["accuracy"] = float(np.mean(hard.argmax(axis=1) == t))
        if hasattr(layer, "soft_forward"):
            soft = np.concatenate([layer.soft_forward(X[i:i + batch_size]) for i in range(0, n, batch_size)])
            out["accuracy_soft"] = float(np.mean(soft.argmax(axis=1) == t))
    return out


class _Progress:
    """A one-line progress bar on a terminal (``\\r``); plain lines, one per epoch, otherwise."""

    def __init__(self, epochs, n_batches, verbose, stream):
        self.epochs, self.n_batches, self.verbose = epochs, n_batches, verbose
        self.stream = stream if stream is not None else sys.stdout
        self.tty = verbose and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0

    def batch(self, epoch, b, t_start, loss, correct, seen):
        if not self.tty:
            return
        now = time.perf_counter()
        if b + 1 < self.n_batches and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        done = (b + 1) / self.n_batches
        eta = (now - t_start) / done * (1 - done)
        width = 24
        bar = "#" * int(width * done) + "." * (width - int(width * done))
        acc = f" acc {correct / seen:.4f}" if correct is not None and seen else ""
        self.stream.write(f"\repoch {epoch + 1}/{self.epochs} [{bar}] ETA {eta:5.1f}s loss {loss:.4f}{acc}  ")
        self.stream.flush()

    def epoch_end(self, row):
        if not self.verbose:
            return
        parts = [f"epoch {row['epoch'] + 1}/{self.epochs}", f"loss {row['loss']:.4f}"]
        if row.get("task_loss") is not None and row["task_loss"] != row["loss"]:
            # the objective holds the hardening and balancing terms; the held-out loss after training is
            # the task loss alone, and two numbers both called "loss" read as a model that got worse
            parts[-1] += f" (task {row['task_loss']:.4f})"
        if row.get("accuracy") is not None:
            parts.append(f"acc {row['accuracy']:.4f}")
        if row.get("val_loss") is not None:
            parts.append(f"val_loss {row['val_loss']:.4f}")
        if row.get("val_accuracy") is not None:
            parts.append(f"val_acc {row['val_accuracy']:.4f}")
        parts.append(f"{row['time']:.2f}s")
        prefix = "\r" if self.tty else ""
        self.stream.write(prefix + "  ".join(parts) + (" " * 8 if self.tty else "") + "\n")
        self.stream.flush()


def _check_training_memory(layer, batch, soft):
    """Refuse (``MemoryError``) a run that cannot fit in this machine's memory, before it starts.

    A lower bound: one gradient per parameter, and, for a ``batch`` in soft training, the
    pre-activation and activation of every hidden unit of the mixture (``layer.training_width`` per
    sample; a neuron tree's masked training computes every neuron too). The layer's own size was
    checked when it was built, but training needs more: ``fffcpu train --depth 25`` on 4 inputs
    built its 9 GiB of weights and was then killed at 24 GiB, without a word.
    """
    params = sum(int(np.size(p)) for p in layer.params.values())
    width = int(getattr(layer, "training_width", 0))  # 0: a layer of the user's own, no mixture known
    itemsize = np.dtype(getattr(layer, "dtype", np.float64)).itemsize
    need = itemsize * (params + (2 * batch * width if soft else 0))
    have = _validate.physical_memory_bytes()
    if need > have:
        mixture = f" and, for a batch of {batch}, twice the {width} hidden units of the soft mixture" if soft else ""
        raise MemoryError(
            f"training this {type(layer).__name__} would need at least {need / 2**30:.1f} GiB (a gradient for "
            f"each of its {params} parameters{mixture}) but this machine has {have / 2**30:.1f} GiB; choose a "
            "smaller depth or width" + (", or a smaller batch_size" if soft else "")
        )


def _hardenable(layer):
    """Whether ``layer`` trains hardened when ``layer.train_hardened`` is set: a layer with a
    ``config()`` (fffcpu's own) says so there, another layer by having the attribute. Not
    ``hasattr`` alone: a neuron tree ignores a ``train_hardened`` attribute set on it, which made
    ``hardened_epochs`` run without effect instead of being refused."""
    config = getattr(layer, "config", None)
    if callable(config):
        return "train_hardened" in config()
    return hasattr(layer, "train_hardened")


def fit(layer, X, y, loss="cross_entropy", optimizer="adam", lr=None, epochs=10, batch_size=64,
        hardening=0.0, balance=0.0, validation=None, validation_split=0.0, patience=None,
        restore_best=True, shuffle=True, seed=None, verbose=False, stream=None, local_batch_size=None,
        hardened_epochs=0, weight_decay=None):
    """Train ``layer`` on ``(X, y)`` with mini-batch gradient descent; the parameters change in place.

    Parameters
    ----------
    layer : FFF, NeuronTreeFFF or any object with the layer protocol
        (``params``, ``train_forward``, ``backward``, ``hardening_loss``, ``__call__``).
    X : array_like of shape (n, input_width)
    y : array_like
        Class indices (n,) for ``loss="cross_entropy"``; targets (n, output_width) or (n,) for "mse".
    loss : {"cross_entropy", "mse"}
    optimizer : str or Optimizer, default "adam"
        A name for :func:`~fffcpu.training.optim.make_optimizer` (built on ``layer.params`` with
        ``lr``), or a ready optimizer over ``layer.params``.
    lr : float, optional
        Learning rate for a named optimizer (default 1e-3 Adam family, 0.1 SGD family).
    weight_decay : float >= 0, optional
        For a named optimizer: default 0.01 for "adamw" and "local-adamw" (decoupled, as
        torch.optim.AdamW), 0 for the others.
    epochs : int >= 1
    batch_size : int >= 1
    hardening : float >= 0 or callable epoch -> float
        h, the weight of L_harden (mean node entropy, SPEC §1).
    balance : float >= 0 or callable epoch -> float
        alpha, the weight of the eFFF load-balancing term (SPEC §3).
    validation : (X_val, y_val), optional
        Evaluated after every epoch with hard inference ``layer(X_val)``.
    validation_split : float in [0, 1), default 0
        Hold out this fraction of (X, y) (a seeded random subset); not together with ``validation``.
    patience : int, optional
        Stop when the validation loss has not improved for this many epochs (needs validation data).
    restore_best : bool, default True
        With ``patience``, load back the parameters of the best validation epoch at the end.
    shuffle : bool, default True
    seed : int >= 0, optional
        Seeds the shuffling and the training noise (see the module docstring).
    verbose : bool
        Print progress to ``stream`` (default stdout): a live bar on a terminal, otherwise one
        line per epoch.
    local_batch_size : int, optional
        For the local optimizers ("local-sgd", "local-adam", "local-adamw"). ``lr``,
        ``weight_decay`` and ``local_batch_size`` apply to an optimizer given by name only.
    hardened_epochs : int, default 0
        Run the last ``hardened_epochs`` of the ``epochs`` with ``layer.train_hardened = True``
        (hard routing in the forward, so each leaf is fine-tuned on exactly the samples that
        inference sends it; routing then moves only through the hardening term). The layer's
        own setting is restored at the end. Leaf FFFs only.

    Returns
    -------
    History
    """
    loss_fn = losses.get(loss)
    _check_layer(layer)
    epochs = check_int("epochs", epochs, 1)
    if not isinstance(verbose, (bool, np.bool_, numbers.Integral)):  # 0 and 1 as scikit-learn's levels
        raise TypeError(f"verbose must be a bool (or an integer level), got {verbose!r} ({type(verbose).__name__})")
    verbose = bool(verbose)
    if stream is not None and not callable(getattr(stream, "write", None)):
        raise TypeError(f"stream must be a text stream with a write method (or None for stdout), got "
                        f"{type(stream).__name__}")
    batch_size = check_int("batch_size", batch_size, 1)
    validation_split = check_rate("validation_split", validation_split)
    if patience is not None:
        patience = check_int("patience", patience, 1)
    restore_best = check_bool("restore_best", restore_best)
    shuffle = check_bool("shuffle", shuffle)
    if seed is not None:
        seed = check_int("seed", seed, 0)
    if validation is not None and validation_split > 0:
        raise ValueError(
            f"pass validation or validation_split, not both (got validation data and validation_split "
            f"{validation_split}, which would be ignored)"
        )
    if isinstance(optimizer, Optimizer):
        given = {k: v for k, v in dict(lr=lr, weight_decay=weight_decay, local_batch_size=local_batch_size).items()
                 if v is not None}
        if given:
            raise ValueError(
                f"{', '.join(given)} applies to an optimizer given by name; the optimizer instance passed "
                f"has its own settings (got {given})"
            )
    h_of, alpha_of = _as_schedule("hardening", hardening), _as_schedule("balance", balance)
    hardened_epochs = check_int("hardened_epochs", hardened_epochs, 0)
    if hardened_epochs > epochs:
        raise ValueError(f"hardened_epochs must be <= epochs ({epochs}), got {hardened_epochs}")
    hardenable = _hardenable(layer)
    if hardened_epochs and not hardenable:
        raise ValueError(f"hardened_epochs needs a layer with train_hardened (a leaf FFF), got {type(layer).__name__}")

    X = _prepare_features(X, layer)
    n = X.shape[0]
    y = _prepare_targets(loss, y, n, layer.output_width, dtype=layer.dtype)
    shuffle_rng, noise_rng = make_generators(seed)

    if validation is None and validation_split > 0:
        n_val = int(round(validation_split * n))
        if n_val < 1 or n_val >= n:
            raise ValueError(
                f"validation_split {validation_split} of {n} samples leaves {n - n_val} for training "
                f"and {n_val} for validation; both must be >= 1"
            )
        perm = shuffle_rng.permutation(n)
        validation = (X[perm[:n_val]], y[perm[:n_val]])
        X, y = X[perm[n_val:]], y[perm[n_val:]]
        n = X.shape[0]
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise ValueError(
                f"validation must be a pair (X_val, y_val), got {type(validation).__name__}"
                + (f" of length {len(validation)}" if isinstance(validation, (tuple, list)) else "")
            )
        Xv, yv = validation
        Xv = _prepare_features(Xv, layer, name="validation X")
        yv = _prepare_targets(loss, yv, Xv.shape[0], layer.output_width, name="validation y", dtype=layer.dtype)
        if Xv.shape[0] == 0:  # checked here, before any training, and not again at every epoch
            raise ValueError("cannot validate on an empty data set (validation X has 0 rows)")
    if patience is not None and validation is None:
        raise ValueError("patience needs validation data: pass validation=(X_val, y_val) or validation_split > 0")
    if n == 0:
        raise ValueError("cannot train on an empty data set (X has 0 rows)")

    _check_training_memory(layer, min(batch_size, n), soft=not (hardenable and layer.train_hardened)
                           and hardened_epochs < epochs)

    if isinstance(optimizer, Optimizer):
        opt = optimizer
        if opt.params is not layer.params:
            raise ValueError("optimizer must be built on this layer's params (layer.params)")
    else:
        opt = make_optimizer(optimizer, layer.params, lr=lr, weight_decay=weight_decay,
                             local_batch_size=local_batch_size)
    needs_usage = getattr(opt, "needs_usage", False)

    classify = loss == "cross_entropy"
    n_batches = math.ceil(n / batch_size)
    progress = _Progress(epochs, n_batches, verbose, stream)
    history = History()
    best, best_state, waited = math.inf, None, 0
    was_hardened = layer.train_hardened if hardenable else None
    try:
        for epoch in range(epochs):
            t0 = time.perf_counter()
            if hardened_epochs and epoch == epochs - hardened_epochs:
                layer.train_hardened = True
            h = check_nonneg_float(f"hardening (at epoch {epoch})", h_of(epoch))
            alpha = check_nonneg_float(f"balance (at epoch {epoch})", alpha_of(epoch))
            order = shuffle_rng.permutation(n) if shuffle else np.arange(n)
            sums = np.zeros(3)  # objective, task loss, hardening loss; each times batch size
            correct = 0 if classify else None
            for b in range(n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                xb, tb = X[idx], y[idx]
                out, cache = layer.train_forward(xb, rng=noise_rng)
                task, dL_dy = loss_fn(out, tb)
                harden = layer.hardening_loss(cache)
                objective = task + h * harden + (alpha * layer.balance_loss(cache) if alpha else 0.0)
                if not np.isfinite(objective):
                    # before the backward pass, which would refuse the non-finite dL_dy by its own name
                    raise FloatingPointError(
                        f"training diverged at epoch {epoch + 1}, batch {b + 1}: the loss is {objective}; "
                        "lower the learning rate"
                    )
                grads, _ = layer.backward(cache, dL_dy, hardening=h, balance=alpha)
                if needs_usage:
                    opt.step(grads, _block_usage(layer, cache, xb))
                else:
                    opt.step(grads)
                sums += len(idx) * np.array([objective, task, harden])
                if classify:
                    correct += int(np.count_nonzero(out.argmax(axis=1) == tb))
                progress.batch(epoch, b, t0, sums[0] / ((b * batch_size) + len(idx)), correct,
                               b * batch_size + len(idx))
            if not np.isfinite(sums[0]):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1}: the loss is {sums[0] / n}; lower the learning rate"
                )
            # the epoch's last step is checked by no later loss: an overflow there returned inf weights
            broken = next((name for name, p in layer.params.items() if not np.isfinite(p).all()), None)
            if broken is not None:
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1}: its last step made parameter {broken!r} "
                    "non-finite; lower the learning rate"
                )
            row = dict(epoch=epoch, loss=float(sums[0] / n), task_loss=float(sums[1] / n), hardening_loss=float(sums[2] / n),
                       accuracy=correct / n if classify else None)
            if validation is not None:
                ev = _evaluate_prepared(layer, Xv, yv, loss, loss_fn, EVAL_BATCH)
                row.update(val_loss=ev["loss"], val_accuracy=ev["accuracy"], val_accuracy_soft=ev["accuracy_soft"])
            row["time"] = time.perf_counter() - t0
            history.append(**row)
            progress.epoch_end(row)
            if patience is not None:
                if row["val_loss"] < best:
                    best, waited, history.best_epoch = row["val_loss"], 0, epoch
                    if restore_best:
                        best_state = {k: v.copy() for k, v in layer.params.items()}
                else:
                    waited += 1
                    if waited >= patience:
                        history.stopped_early = True
                        break
    except FloatingPointError as exc:  # diverged: with restore_best, the best epoch's parameters come back
        if best_state is None:
            raise
        _put_params(layer, best_state)
        raise FloatingPointError(f"{exc}; the parameters of the best epoch so far (epoch "
                                 f"{history.best_epoch + 1}) were restored") from None
    finally:
        if was_hardened is not None:
            layer.train_hardened = was_hardened
    if best_state is not None:
        _put_params(layer, best_state)
    return history


def _put_params(layer, state):
    """Copy the arrays of ``state`` (name -> array, from ``layer.params``) back into the layer's
    parameters, in place (the kernels keep reading the same aligned buffers)."""
    for name, value in state.items():
        layer.params[name][...] = value


# -- input standardisation folded into the layer ----------------------------------------------
#: parameters that multiply the input x, with the axis of theirs that indexes x, and their biases
_INPUT_FACING = {
    "node_weights": ("nd", "node_biases"),
    "w1s": ("ldk", "b1s"),
    "magic_w1": ("ldk", "magic_b1"),
    "linear_in.weight": ("nd", "linear_in.bias"),
}


def input_scaling(X, floor=0.3):
    """Per-feature ``(mean, scale)`` for standardising ``X``: ``(X - mean) / scale``.

    ``scale = std + floor * mean(std)``: the floor keeps nearly constant features (the border
    pixels of the digits) from being blown up on unseen data. Training on standardised inputs is
    what makes the routing nodes split the data at all: with raw non-negative pixels every sample
    falls on the same side of the initial hyperplanes.

    Parameters
    ----------
    X : ndarray of shape (n, D)
    floor : float >= 0

    Returns
    -------
    mean, scale : ndarrays of shape (D,), float64
    """
    floor = check_nonneg_float("floor", floor)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must have shape (n, n_features) with n >= 1, got shape {X.shape}")
    _check_finite("X", X, X)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    scale = std + floor * std.mean()
    scale[scale == 0] = 1.0
    return mean, scale


def fold_input_scaling(layer, mean, scale):
    """Rewrite ``layer`` (in place) so that ``layer(x)`` equals the old ``layer((x - mean) / scale)``.

    Every parameter that multiplies the input absorbs the scaling: W' = W / scale along the input
    axis, and its bias b' = b - W' . mean. Exact up to rounding; the saved model then needs no
    preprocessing. Works for leaf FFFs (nodes, leaves, an eFFF master leaf) and neuron trees.
    """
    mean = np.asarray(mean, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    D = layer.input_width
    if mean.shape != (D,) or scale.shape != (D,):
        raise ValueError(f"mean and scale must have shape ({D},), got {mean.shape} and {scale.shape}")
    _check_finite("mean", mean, mean)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        # a NaN or inf here wrote non-finite weights into the layer, in place
        raise ValueError(f"scale must be finite and > 0 everywhere, got {scale[~(np.isfinite(scale) & (scale > 0))][0]}")
    found = False
    for name, (layout, bias_name) in _INPUT_FACING.items():
        if name not in layer.params:
            continue
        found = True
        W = layer.params[name].astype(np.float64)
        b = layer.params[bias_name]
        if layout == "nd":  # (rows, D) with bias (rows,) or (rows, 1)
            W = W / scale
            shift = W @ mean
        else:  # (leaves, D, width) with bias (leaves, width)
            W = W / scale[None, :, None]
            shift = np.einsum("d,ldk->lk", mean, W)
        layer.params[name][...] = W
        layer.params[bias_name][...] = b - shift.reshape(b.shape)
    if not found:
        raise ValueError(f"{type(layer).__name__} has no known input-facing parameters to fold into")
    return layer
