"""Train an FFF on MNIST (or any data set in MNIST's IDX format) and save it.

MNIST is not shipped with fffcpu; if you have the four files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, gzip-compressed
or not), point this script at them::

    python examples/train_mnist.py --train-images train-images-idx3-ubyte.gz \\
        --train-labels train-labels-idx1-ubyte.gz --test-images t10k-images-idx3-ubyte.gz \\
        --test-labels t10k-labels-idx1-ubyte.gz --depth 3 --leaf-width 16 --epochs 10 --out mnist_fff.npz

or, with all four files in one folder under their usual names, ``--dir FOLDER``.

The recipe: Adam, the hardening weight h switched on after ``--harden-after`` epochs (a soft
start lets the leaves specialise before the decisions are pushed to 0 or 1), optional eFFF load
balancing for the first ``--balance-epochs`` epochs (``--balance``) and a master leaf
(``--master-leaf``). SPEC §4 lists published figures to compare with: for example, depth 3, leaf 16
reaches about 0.93. Then look inside the trained tree with ``fffcpu inspect mnist_fff.npz --data
t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz``.
"""
import argparse
import os
import sys

import numpy as np

import fffcpu
from fffcpu.data import load_mnist
from fffcpu.training import evaluate, fit

NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def find_in(folder, stem):
    """``folder/stem`` or ``folder/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"neither {stem} nor {stem}.gz is in {folder!r}")


def at_least(low, kind=int):
    """An argparse type: a number of ``kind`` >= ``low`` (and finite); argparse names the option in its error."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not low <= value < float("inf"):  # NaN and inf fail too
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a finite number'} >= {low}, got {text!r}")
        return value
    return parse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="folder holding the four files under their usual names")
    for key, stem in NAMES.items():
        parser.add_argument("--" + key.replace("_", "-"), dest=key, help=f"path to {stem}[.gz]")
    parser.add_argument("--depth", type=at_least(0), default=3, help="tree depth (default 3)")
    parser.add_argument("--leaf-width", type=at_least(1), default=16, help="neurons per leaf (default 16)")
    parser.add_argument("--master-leaf", type=at_least(0), default=0,
                        help="eFFF master leaf width (default 0: none; eFFF uses 8)")
    parser.add_argument("--epochs", type=at_least(1), default=10, help="training epochs (default 10)")
    parser.add_argument("--batch-size", type=at_least(1), default=64, help="mini-batch size (default 64)")
    parser.add_argument("--lr", type=at_least(0, float), default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--hardening", type=at_least(0, float), default=1.0,
                        help="h, weight of the mean decision entropy (default 1.0)")
    parser.add_argument("--harden-after", type=at_least(0), default=1, help="epochs before hardening starts (default 1)")
    parser.add_argument("--balance", type=at_least(0, float), default=0.0,
                        help="alpha, weight of the eFFF load balancing (default 0: off)")
    parser.add_argument("--balance-epochs", type=at_least(0), default=0, help="epochs with load balancing on (default 0)")
    parser.add_argument("--limit", type=at_least(1), help="use only the first N training samples")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the weights and shuffling (default 0)")
    parser.add_argument("--out", default="mnist_fff.npz", help="where to save the trained layer (default mnist_fff.npz)")
    args = parser.parse_args(argv)
    if os.path.isdir(args.out) or not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        parser.error(f"--out must be a file in an existing folder, got {args.out!r}")  # found before training

    paths = {}
    try:  # a missing file, or one that is no IDX file: one line, not a traceback
        for key, stem in NAMES.items():
            given = getattr(args, key)
            if given is None and args.dir is None:
                parser.error(f"give --{key.replace('_', '-')} (or --dir with all four files)")
            paths[key] = given if given is not None else find_in(args.dir, stem)
        X_train, y_train = load_mnist(paths["train_images"], paths["train_labels"])
        X_test, y_test = load_mnist(paths["test_images"], paths["test_labels"])
    except (OSError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    if args.limit:
        X_train, y_train = X_train[:args.limit], y_train[:args.limit]
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    print(f"{len(X_train)} training and {len(X_test)} test images of {X_train.shape[1]} pixels, {n_classes} classes")

    layer = fffcpu.FFF(input_width=X_train.shape[1], leaf_width=args.leaf_width, output_width=n_classes,
                       depth=args.depth, master_leaf=args.master_leaf, seed=args.seed)
    print(f"{layer!r}\ntraining width {layer.training_width}; one inference: {layer.depth} node dot products "
          f"+ 1 leaf of {layer.leaf_width}")
    history = fit(layer, X_train, y_train, optimizer="adam", lr=args.lr, epochs=args.epochs,
                  batch_size=args.batch_size,
                  hardening=lambda e: args.hardening if e >= args.harden_after else 0.0,
                  balance=lambda e: args.balance if e < args.balance_epochs else 0.0,
                  validation=(X_test, y_test), seed=args.seed, verbose=True)
    ev = evaluate(layer, X_test, y_test)
    print(f"test accuracy: hard {ev['accuracy']:.4f} (the log-time inference), soft {ev['accuracy_soft']:.4f} "
          f"(the training mixture); final mean decision entropy {history['hardening_loss'][-1]:.4f}")
    counts = np.bincount(layer.leaf_index(X_test), minlength=layer.n_leaves)
    print(f"test images per leaf: {counts.tolist()}")
    try:
        fffcpu.save(layer, args.out)
    except OSError as exc:  # say, a file that holds no model is in the way: one line, not a traceback
        parser.exit(2, f"{parser.prog}: error: --out: {exc}\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
