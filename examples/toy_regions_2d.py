"""Train a small FFF on a 2-D toy problem and draw the regions its tree learned.

The picture has three panels over the plane:

1. the class the hard (log-time) inference predicts, with the training points;
2. which leaf owns each point: every leaf's region is cut out by the d routing hyperplanes
   a_k(x) = 0 on its path, so the map is a set of convex polygons labelled by leaf index
   (its binary digits are the left/right decisions from the root, 1 = right);
3. the mean decision entropy H(p_k) along the hard path: the fuzzy band where the soft mixture
   still blends leaves. Hardening (the ``--hardening`` weight h) narrows it.

Run::

    python examples/toy_regions_2d.py                       # two spirals, depth 3, writes toy_regions_2d.png
    python examples/toy_regions_2d.py --problem blobs --depth 2 --out blobs.png
    python examples/toy_regions_2d.py --quick               # a few epochs, for the tests

The picture needs matplotlib (``pip install "fffcpu[plot]"``); without it the script still trains
and prints the accuracies.
"""
import argparse
import sys

import numpy as np

import fffcpu
from fffcpu.training import evaluate, fit


def two_spirals(n, rng, noise=0.1):
    """Two interleaved spirals in [-1, 1]^2: ``X`` (n, 2) float32, ``y`` (n,) in {0, 1}."""
    t = np.sqrt(rng.random(n)) * 3 * np.pi  # sqrt: even density along the arm
    y = rng.integers(0, 2, n)
    angle = t + np.pi * y
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * np.pi)
    X += rng.normal(scale=noise / 3, size=X.shape)
    return X.astype(np.float32), y


def four_blobs(n, rng, spread=0.3):
    """Four Gaussian blobs around (+-0.6, +-0.6): ``X`` (n, 2) float32, ``y`` (n,) in {0, 1, 2, 3}."""
    centers = 0.6 * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]])
    y = rng.integers(0, 4, n)
    X = centers[y] + rng.normal(scale=spread, size=(n, 2))
    return X.astype(np.float32), y


PROBLEMS = {"spirals": two_spirals, "blobs": four_blobs}


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


def path_entropy(layer, x):
    """Mean of H(p_k(x)) over the d nodes on each sample's hard path: (n, 2) -> (n,)."""
    if layer.depth == 0:
        return np.zeros(len(x))
    H = layer.entropies(x)  # (n, n_nodes)
    j = layer.leaf_index(x)  # (n,)
    d = layer.depth
    # the node visited at level m is (2^m - 1) + (the first m binary digits of j)
    nodes = np.stack([(1 << m) - 1 + (j >> (d - m)) for m in range(d)], axis=1)  # (n, d)
    return np.take_along_axis(H, nodes, axis=1).mean(axis=1)


def draw(layer, X, y, out, title):
    """Write the three-panel picture to ``out``; return False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    lo, hi = X.min(axis=0) - 0.15, X.max(axis=0) + 0.15
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    shape = gx.shape
    extent = (lo[0], hi[0], lo[1], hi[1])
    pred = layer(grid).argmax(axis=1).reshape(shape)
    leaf = layer.leaf_index(grid).reshape(shape)
    ent = path_entropy(layer, grid).reshape(shape)
    n_classes = int(y.max()) + 1

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
    ax = axes[0]
    ax.imshow(pred, origin="lower", extent=extent, cmap="Pastel1", vmin=0, vmax=8, aspect="auto")
    for c in range(n_classes):
        pts = X[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=4, color=plt.cm.Set1(c), label=f"class {c}")
    ax.set_title("hard inference: predicted class")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)

    ax = axes[1]
    ax.imshow(leaf, origin="lower", extent=extent, cmap="tab10" if layer.n_leaves <= 10 else "tab20",
              vmin=0, vmax=9 if layer.n_leaves <= 10 else 19, aspect="auto", alpha=0.55)
    ax.contour(gx, gy, leaf, levels=np.arange(layer.n_leaves) + 0.5, colors="k", linewidths=0.8)
    for j in range(layer.n_leaves):
        rows, cols = np.nonzero(leaf == j)
        if len(rows):  # label each leaf at the middle of its region
            r, c = int(np.median(rows)), int(np.median(cols))
            ax.text(gx[r, c], gy[r, c], f"{j}\n{j:0{layer.depth}b}" if layer.depth else "0",
                    ha="center", va="center", fontsize=9, weight="bold")
    ax.set_title("which leaf owns each point (index / path bits)")

    ax = axes[2]
    im = ax.imshow(ent, origin="lower", extent=extent, cmap="magma", vmin=0, vmax=np.log(2), aspect="auto")
    fig.colorbar(im, ax=ax, label="mean H(p) on the hard path (max ln 2)")
    ax.set_title("decision entropy: where routing is still soft")

    for ax in axes:
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", choices=sorted(PROBLEMS), default="spirals",
                        help="the 2-D data set (default %(default)s)")
    parser.add_argument("--depth", type=at_least(0), default=3, help="tree depth d: 2^d leaves (default 3)")
    parser.add_argument("--leaf-width", type=at_least(1), default=8, help="neurons per leaf (default 8)")
    parser.add_argument("--epochs", type=at_least(1), help="training epochs (default 60; 5 with --quick)")
    parser.add_argument("--hardening", type=at_least(0, float), default=1.0,
                        help="h, the weight of the mean decision entropy, switched on after a third of the epochs "
                             "(default %(default)s)")
    parser.add_argument("--samples", type=at_least(1), help="training samples, as many again for testing "
                                                             "(default 2000; 500 with --quick)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the data, weights and shuffling (default 0)")
    parser.add_argument("--out", default="toy_regions_2d.png", help="PNG to write (default toy_regions_2d.png)")
    parser.add_argument("--quick", action="store_true", help="500 samples and 5 epochs unless --samples or --epochs "
                                                             "is given: a smoke test")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error(f"--out must name a .png file, got {args.out!r}")
    if args.samples is None:
        args.samples = 500 if args.quick else 2000
    if args.epochs is None:
        args.epochs = 5 if args.quick else 60

    rng = np.random.default_rng(args.seed)
    make = PROBLEMS[args.problem]
    X, y = make(args.samples, rng)
    X_test, y_test = make(args.samples, rng)
    n_classes = int(max(y.max(), y_test.max())) + 1  # a few samples may miss a class in one of them

    layer = fffcpu.FFF(input_width=2, leaf_width=args.leaf_width, output_width=n_classes, depth=args.depth,
                       seed=args.seed)
    start_hardening = args.epochs // 3
    print(f"{args.problem}: {args.samples} training points, FFF depth {layer.depth} "
          f"({layer.n_leaves} leaves of {layer.leaf_width}), training width {layer.training_width}")
    history = fit(layer, X, y, optimizer="adam", lr=1e-2, epochs=args.epochs, batch_size=64,
                  hardening=lambda epoch: args.hardening if epoch >= start_hardening else 0.0,
                  seed=args.seed)
    print(f"mean decision entropy at the end of training: {history['hardening_loss'][-1]:.3f} "
          f"(ln 2 = {np.log(2):.3f} is a coin flip)")
    ev = evaluate(layer, X_test, y_test)
    print(f"test accuracy: hard (one leaf per point) {ev['accuracy']:.3f}, "
          f"soft (mixture of all leaves) {ev['accuracy_soft']:.3f}")
    counts = np.bincount(layer.leaf_index(X_test), minlength=layer.n_leaves)
    print("test points per leaf:", " ".join(f"{j}:{c}" for j, c in enumerate(counts)))

    title = (f"{args.problem}, FFF depth {layer.depth}, leaf width {layer.leaf_width}: "
             f"hard test accuracy {ev['accuracy']:.3f} (soft {ev['accuracy_soft']:.3f})")
    try:
        drawn = draw(layer, X, y, args.out, title)
    except OSError as exc:  # no such folder, no permission: one line, not a traceback
        parser.exit(2, f"{parser.prog}: error: cannot write --out {args.out!r}: {exc.strerror or exc}\n")
    if drawn:
        print(f"wrote {args.out}")
    else:
        print("matplotlib is not installed, so no picture was drawn; "
              'install it with: pip install "fffcpu[plot]"  (or: pip install matplotlib)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
