"""eFFF (SPEC §3) on the built-in digits: plain FFF vs + load balancing vs + master leaf vs both.

Each variant trains with the published two-phase recipe (AdamW, lr 1e-3, weight decay 0.01): a
balancing phase (alpha = 1, h = 1) and then a hardening phase (alpha = 0, h = 3); the plain and
master-leaf-only variants use the same phases with alpha = 0. Every (variant, seed) pair starts from the same tree
weights for a given seed, so differences come from the recipe, not the draw.

Inputs are standardised with the training set's statistics (:func:`~fffcpu.training.loop.input_scaling`)
as in ``fffcpu train``: on raw non-negative pixels every sample starts on the same side of every node.

Leaf usage spread is measured on the test set with hard routing: the coefficient of variation of the
per-leaf sample counts (0 = perfectly even) and the number of leaves that receive no sample.
"""
import json
import time

import numpy as np

from . import data
from ._argtypes import nonneg_int, positive_int
from .fff import FFF
from .training.loop import evaluate, fit, input_scaling

VARIANTS = {
    "plain": dict(balance=False, master=False),
    "+balance": dict(balance=True, master=False),
    "+master": dict(balance=False, master=True),
    "+balance+master": dict(balance=True, master=True),
}


def leaf_spread(layer, X):
    """Coefficient of variation of the hard leaf counts over ``X``, and the number of unused leaves."""
    counts = np.bincount(np.asarray(layer.leaf_index(X)).ravel(), minlength=layer.n_leaves)
    mean = counts.mean()
    return float(counts.std() / mean) if mean else 0.0, int(np.count_nonzero(counts == 0))


def run_one(variant, seed, depth=3, leaf_width=2, master_width=8, epochs=100, balance_epochs=None,
            batch_size=64, lr=1e-3, split=None):
    """Train one variant with one seed on the digits; returns a dict of results.

    ``split`` is ``(X_train, X_test, y_train, y_test)``, used as given; by default the digits split,
    standardised as :func:`compare` does.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    opts = VARIANTS[variant]
    phase = epochs // 2 if balance_epochs is None else balance_epochs
    # either would make the variant train exactly as "plain" while reported under its own name
    if opts["master"] and master_width < 1:
        raise ValueError(f"master_width must be >= 1 for variant {variant!r}, got {master_width}")
    if opts["balance"] and phase < 1:
        raise ValueError(f"variant {variant!r} needs a balancing phase of >= 1 epoch (the first half of the "
                         f"epochs unless balance_epochs is given), got {phase} with epochs {epochs}: give epochs "
                         ">= 2 (fffcpu efff --epochs 2)")
    if split is None:
        split = _standardised_digits()
    X_tr, X_te, y_tr, y_te = split
    layer = FFF(X_tr.shape[1], leaf_width, 10, depth, seed=seed,
                master_leaf=master_width if opts["master"] else 0)
    alpha = 1.0 if opts["balance"] else 0.0
    start = time.perf_counter()
    fit(layer, X_tr, y_tr, optimizer="adamw", lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
        hardening=lambda e: 1.0 if e < phase else 3.0,
        balance=lambda e: alpha if e < phase else 0.0)
    metrics = evaluate(layer, X_te, y_te)
    cv, unused = leaf_spread(layer, X_te)
    return dict(variant=variant, seed=seed, accuracy=metrics["accuracy"],
                accuracy_soft=metrics["accuracy_soft"], leaf_cv=cv, unused_leaves=unused,
                seconds=time.perf_counter() - start)


def _standardised_digits():
    X_tr, X_te, y_tr, y_te = data.digits_split(seed=0)
    mean, scale = input_scaling(X_tr)
    return (((X_tr - mean) / scale).astype(np.float32), ((X_te - mean) / scale).astype(np.float32), y_tr, y_te)


def compare(seeds=(0, 1, 2), variants=tuple(VARIANTS), **kwargs):
    """Run every variant for every seed; returns ``(rows, summary)`` with mean and spread per variant."""
    for name, value, example in (("seeds", seeds, "range(3)"), ("variants", variants, "('plain', '+balance')")):
        if isinstance(value, str) or not hasattr(value, "__iter__"):  # 'plain' was split into its letters
            raise TypeError(f"{name} must be a sequence such as {example}, got {value!r} ({type(value).__name__})")
    seeds, variants = list(seeds), list(variants)
    if not seeds or not variants:  # empty: NumPy's "zero-size array to reduction operation minimum"
        raise ValueError(f"seeds and variants must each name at least one, got seeds={seeds} and "
                         f"variants={variants}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"variants must be among {list(VARIANTS)}, got {unknown}")
    split = _standardised_digits()
    rows = [run_one(v, s, split=split, **kwargs) for v in variants for s in seeds]
    summary = []
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        acc = np.array([r["accuracy"] for r in mine])
        cv = np.array([r["leaf_cv"] for r in mine])
        summary.append(dict(variant=v, runs=len(mine), accuracy_mean=float(acc.mean()),
                            accuracy_std=float(acc.std()), accuracy_min=float(acc.min()),
                            accuracy_max=float(acc.max()),
                            accuracy_soft_mean=float(np.mean([r["accuracy_soft"] for r in mine])),
                            leaf_cv_mean=float(cv.mean()),
                            unused_leaves_mean=float(np.mean([r["unused_leaves"] for r in mine]))))
    return rows, summary


def format_table(summary, depth, leaf_width):
    lines = [f"eFFF comparison on the built-in digits, depth {depth}, leaf width {leaf_width} "
             f"(training width {leaf_width << depth}); hard-inference test accuracy",
             f"{'variant':<18}{'runs':>5}{'acc mean':>10}{'acc std':>9}{'min':>8}{'max':>8}"
             f"{'soft acc':>10}{'leaf CV':>9}{'unused':>8}"]
    for s in summary:
        lines.append(f"{s['variant']:<18}{s['runs']:>5}{s['accuracy_mean']:>10.4f}{s['accuracy_std']:>9.4f}"
                     f"{s['accuracy_min']:>8.4f}{s['accuracy_max']:>8.4f}{s['accuracy_soft_mean']:>10.4f}"
                     f"{s['leaf_cv_mean']:>9.3f}"
                     f"{s['unused_leaves_mean']:>8.1f}")
    return "\n".join(lines)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "efff", help="compare plain FFF, + load balancing, + master leaf and both (eFFF) on the built-in digits",
        description="Train each eFFF variant over several seeds on the built-in digits and print the "
                    "hard-inference test accuracy (mean, spread) and how evenly the leaves are used.")
    p.add_argument("--seeds", type=positive_int, default=3, help="number of seeds per variant (0 .. N-1; default 3)")
    p.add_argument("--depth", type=nonneg_int, default=3, help="tree depth d (default 3)")
    p.add_argument("--leaf-width", type=positive_int, default=2, help="leaf width l (default 2: training width 16)")
    p.add_argument("--master-width", type=positive_int, default=8, help="master leaf width m (default 8)")
    p.add_argument("--epochs", type=positive_int, default=100,
                   help="epochs in all (default 100); the first half balances (alpha 1, h 1), the second hardens "
                        "(alpha 0, h 3)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--json", action="store_true", help="print one JSON object per run and per variant summary")
    p.set_defaults(func=_run)
    return p


def _run(args):
    rows, summary = compare(seeds=range(args.seeds), depth=args.depth, leaf_width=args.leaf_width,
                            master_width=args.master_width, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr)
    if args.json:
        for r in rows + summary:
            print(json.dumps(r))
    else:
        print(format_table(summary, args.depth, args.leaf_width))
    return 0
