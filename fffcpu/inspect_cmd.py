"""``fffcpu inspect MODEL [--data FILE]``: print a saved layer's tree, and how data flows through it.

Without data: the kind, sizes, parameter count and, per node and leaf, the parameter norms.
With data (any file fffcpu.data.load_dataset reads: .npz, .csv, IDX, or 'digits', built in):
per node the hard count (samples whose hard path passes through it), the soft mass (the sum of
the path probabilities that reach it), the share of its hard traffic that goes right, and the mean
decision entropy H(p); a per-level table; and the leaf usage. Watching the entropies fall as h
grows is watching hardening happen. For a neuron tree (hard routing throughout) the counts are
per neuron. A model saved with class names (fffcpu train on text labels) lists them, reads text
labels by them, and names each leaf's most common class.

The same report is available in Python as fffcpu.inspect_cmd.report(layer, X, y).
"""
import sys

import numpy as np

from . import _tree
from .activations import expit

#: levels of the tree drawn node by node by default; deeper levels appear in the per-level table
TREE_DEPTH = 4


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def report(layer, X=None, y=None, tree_depth=TREE_DEPTH, classes=None):
    """The text ``fffcpu inspect`` prints for ``layer`` (and a data set).

    Parameters
    ----------
    layer : FFF or NeuronTreeFFF
    X : array_like of shape (n, input_width), optional
        Data to send through the tree; without it only the structure and parameter norms are shown.
    y : array_like of shape (n,), optional
        Integer labels (class indices), or with ``classes`` labels among those names (text labels, or
        integer labels where the names are integers); with them the report adds accuracies and each
        leaf's most common class.
    tree_depth : int >= 0
        Draw the tree node by node down to this level.
    classes : sequence of str or int, optional
        The model's class names, one per output (:func:`fffcpu.load_classes`): listed, and used to name
        each leaf's most common class.

    Returns
    -------
    str
    """
    return _report(layer, X, y, tree_depth, classes, "y")


def _report(layer, X, y, tree_depth, classes, labels_from, labels_checked=False):
    """:func:`report`, with ``labels_from`` naming where ``y`` came from in an error about a label;
    ``labels_checked``: ``y`` holds class indices already (or text labels, without names), as
    :func:`_class_labels` gives them, and is not looked up in the names again."""
    if isinstance(tree_depth, bool) or not isinstance(tree_depth, (int, np.integer)) or tree_depth < 0:
        raise ValueError(f"tree_depth must be an integer >= 0, got {tree_depth!r}")
    if classes is not None:
        classes = [name.item() if isinstance(name, np.generic) else name for name in classes]  # int64 -> int
        if len(classes) != layer.output_width:
            raise ValueError(f"classes must name each of the model's {layer.output_width} outputs, "
                             f"got {len(classes)} names")
    if X is not None:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != layer.input_width:
            raise ValueError(f"data must have shape (n, {layer.input_width}) to match the model's "
                             f"input_width, got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("data has 0 samples; inspect needs at least one")
        X = np.ascontiguousarray(X, dtype=layer.dtype)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (X.shape[0],):
                raise ValueError(f"labels must have shape ({X.shape[0]},), got {y.shape}")
            if not labels_checked and _labels_are_names(y, classes):  # as indices, for the accuracies
                from .training.commands import _class_targets
                y = _class_targets(y, labels_from, classes)
    if layer.kind == "fff":
        return "\n".join(_fff_report(layer, X, y, int(tree_depth), classes))
    if layer.kind == "neuron_tree":
        return "\n".join(_neuron_tree_report(layer, X, y, int(tree_depth), classes))
    raise ValueError(f"inspect knows the kinds 'fff' and 'neuron_tree', got {layer.kind!r}")


def _norm(a):
    return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def _n(count, noun):
    """'1 node', '3 nodes'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _pct(count, total):
    return f"{100.0 * count / total:5.1f}%" if total else "    - "


def _labels_are_names(y, classes):
    """Whether labels ``y`` are the model's class names rather than class indices: text labels, or
    integer labels where the names are integers (as ``fffcpu evaluate`` reads them)."""
    return classes is not None and (y.dtype.kind == "U" or (y.dtype.kind in "iu" and isinstance(classes[0], int)))


def _classes_lines(classes):
    if classes is None:
        return []
    from .training.commands import _classes_text
    return [f"named outputs, {_classes_text(classes, limit=20)}"]


def _params_lines(layer):
    lines = [f"parameters: {layer.n_params:,}"]
    for name, arr in layer.params.items():
        lines.append(f"  {name:<18} {str(tuple(arr.shape)):<16} |.| {_norm(arr):9.4f}")
    return lines


def _draw_tree(n_heap, depth, label, tree_depth, is_leaf):
    """Lines of an indented tree over heap indices 0 .. n_heap - 1, ``label(k)`` per entry.

    Levels deeper than ``tree_depth`` are folded into one line under their ancestor.
    """
    lines = []

    def visit(k, level, prefix, tail):
        lines.append(prefix + tail + label(k))
        if is_leaf(k):
            return
        child_prefix = prefix + ("    " if tail == "└── " else "│   " if tail else "")
        if level == tree_depth:
            below = (1 << (depth - level + 1)) - 2  # entries in the subtree under k
            lines.append(child_prefix + f"└── ... {below} more below (raise --tree-depth to draw them)")
            return
        left, right = _tree.children(k)
        visit(left, level + 1, child_prefix, "├── ")
        visit(right, level + 1, child_prefix, "└── ")

    if n_heap:
        visit(0, 0, "", "")
    return lines


def _label_stats(leaf_of_sample, y, n_leaves):
    """Per leaf: (most common label, its share among the leaf's samples) or None where empty."""
    out = []
    for j in range(n_leaves):
        labels = y[leaf_of_sample == j]
        if labels.size == 0:
            out.append(None)
            continue
        values, counts = np.unique(labels, return_counts=True)
        out.append((values[counts.argmax()], counts.max() / labels.size))
    return out


def _accuracy(out, y):
    if y is None or out.shape[1] < 2 or y.dtype.kind not in "iub":
        return None
    return float(np.mean(out.argmax(axis=1) == y))


def _effective(counts):
    """exp(entropy) of a usage distribution: how many leaves are used, counting evenly used ones."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def _backend_note(layer):
    """Where the saved layer computes, if not on the kernels: a model saved with ``backend="numpy"``
    loads with it, and inference then runs on the NumPy reference, many times slower, without a word."""
    if layer.backend == "auto":
        return ""
    note = f"   backend {layer.backend}"
    if layer.backend == "numpy":
        note += ' (saved with the model; `layer.backend = "auto"` after fffcpu.load runs the Numba kernels)'
    return note


# ---------------------------------------------------------------------------------------------
# leaf FFF
# ---------------------------------------------------------------------------------------------
def _fff_report(layer, X, y, tree_depth, classes=None):
    from .reference import leaf as ref

    d, N, L = layer.depth, layer.n_nodes, layer.n_leaves
    lines = [
        f"kind: fff (leaf FFF, Belcak & Wattenhofer)   activation {layer.activation}   "
        f"dtype {np.dtype(layer.dtype).name}{_backend_note(layer)}",
        f"sizes: input {layer.input_width}, leaf width {layer.leaf_width}, output {layer.output_width}, "
        f"depth {d}: {_n(N, 'routing node')}, {L} lea{'f' if L == 1 else 'ves'}",
        f"training width {layer.training_width} (2^{d} x {layer.leaf_width}); one inference computes "
        f"{_n(d, 'node dot product')} and 1 leaf of {_n(layer.leaf_width, 'neuron')}",
    ]
    if layer.master_leaf:
        s = float(expit(layer.params["k"]))
        lines.append(f"master leaf (eFFF): width {layer.master_leaf}, mixed as y = {s:.3f} y_tree + "
                     f"{1 - s:.3f} M(x)")
    lines += _classes_lines(classes) + _params_lines(layer) + [""]
    p = layer.params

    if X is None:
        def label(k):
            if k >= N:
                j = k - N
                bits = f" [{j:0{d}b}]" if d else ""
                return (f"leaf {j}{bits}  |W1| {_norm(p['w1s'][j]):.3f}  |b1| {_norm(p['b1s'][j]):.3f}  "
                        f"|W2| {_norm(p['w2s'][j]):.3f}  |b2| {_norm(p['b2s'][j]):.3f}")
            return f"node {k}  |w| {_norm(p['node_weights'][k]):.3f}  b {float(p['node_biases'][k, 0]):+.3f}"

        lines.append("tree (heap order: children of node k are 2k+1 left, 2k+2 right; leaf bits = "
                     "decisions from the root, 1 = right):")
        lines += _draw_tree(N + L, d, label, tree_depth, lambda k: k >= N)
        lines.append("")
        lines.append("give --data FILE to see how samples are routed (usage and decision entropy per node)")
        return lines

    n = X.shape[0]
    a = ref.node_logits(p, X)  # (n, N)
    prob = expit(a)
    H = ref.entropy(prob)  # (n, N)
    R = ref.reach_probabilities(prob)  # per level (n, 2^m), then the leaves (n, L)
    reach = np.concatenate(R[:-1], axis=1) if N else np.zeros((n, 0))  # (n, N) soft reach per node
    use = layer.usage(X)
    hard_node, soft_node = use["hard_node"], use["soft_node"]
    hard_leaf, soft_leaf = use["hard_leaf"], use["soft_leaf"]
    H_mean = H.mean(axis=0) if N else np.zeros(0)  # the terms of L_harden
    with np.errstate(invalid="ignore", divide="ignore"):
        H_reach = (reach * H).sum(axis=0) / reach.sum(axis=0)  # entropy where the node matters
    leaf_of = ref.hard_leaf_index_from_logits(a)
    tops = _label_stats(leaf_of, y, L) if y is not None else None

    def label(k):
        if k >= N:
            j = k - N
            bits = f" [{j:0{d}b}]" if d else ""
            text = f"leaf {j}{bits}  hard {_pct(hard_leaf[j], n)}  soft {_pct(soft_leaf[j], n)}"
            if tops is not None and tops[j] is not None:
                top = tops[j][0]
                if classes is not None and y.dtype.kind in "iu" and 0 <= top < len(classes):
                    top = classes[top]
                text += f"  top label {top} ({100 * tops[j][1]:.0f}%)"
            return text
        left, right = _tree.children(k)
        going = hard_node[k]
        right_count = hard_node[right] if right < N else hard_leaf[right - N]
        return (f"node {k}  hard {_pct(going, n)}  soft {_pct(soft_node[k], n)}  "
                f"H {H_mean[k]:.3f}  H|reach {H_reach[k]:.3f}  right {_pct(right_count, going)}")

    lines.append(f"routing of {n} samples: hard = share whose hard path passes here, soft = share of "
                 "the routing mass (sum of path probabilities);")
    lines.append("H = mean decision entropy H(p) over all samples (the terms of L_harden), H|reach = "
                 "weighted by the probability of reaching the node; ln 2 = 0.693 is a coin flip")
    lines += _draw_tree(N + L, d, label, tree_depth, lambda k: k >= N)
    lines.append("")
    if N:
        lines.append("per level:")
        lines.append("  level  nodes  used   mean H  mean H|reach")
        for m in range(d):
            s = _tree.level_slice(m)
            hr = np.average(H_reach[s][np.isfinite(H_reach[s])]) if np.isfinite(H_reach[s]).any() else np.nan
            lines.append(f"  {m:>5}  {1 << m:>5}  {int(np.count_nonzero(hard_node[s])):>4}   "
                         f"{H_mean[s].mean():.4f}  {hr:.4f}")
        lines.append(f"L_harden on this data (mean H over samples and nodes): {H.mean():.4f}")
    used = int(np.count_nonzero(hard_leaf))
    lines.append(f"leaves: {used} of {L} used by hard inference; effective number of leaves "
                 f"(exp of the usage entropy) hard {_effective(hard_leaf):.2f}, soft {_effective(soft_leaf):.2f}; "
                 f"busiest leaf {_pct(hard_leaf.max(), n).strip()} of the samples")
    hard_acc = _accuracy(layer(X), y)
    if hard_acc is not None:
        # in row blocks: the soft forward holds every leaf's output for every sample (GBs for a deep tree)
        rows = max(1, (1 << 22) // (L * (layer.leaf_width + layer.output_width)))
        soft_acc = _accuracy(np.concatenate([layer.soft_forward(X[i:i + rows]) for i in range(0, n, rows)]), y)
        lines.append(f"accuracy on these labels: hard {hard_acc:.4f}, soft {soft_acc:.4f}")
    return lines


# ---------------------------------------------------------------------------------------------
# neuron tree
# ---------------------------------------------------------------------------------------------
def _neuron_tree_report(layer, X, y, tree_depth, classes=None):
    d, P, N = layer.depth, layer.parallel_size, layer.n_nodes
    lines = [
        f"kind: neuron_tree (UltraFastBERT)   activation {layer.activation}   dtype {np.dtype(layer.dtype).name}"
        f"{_backend_note(layer)}",
        f"sizes: input {layer.input_width}, output {layer.output_width}, depth {d}, parallel_size {P}: "
        f"{_n(N, 'neuron')} per tree, {P * N} in all",
        f"one inference visits {layer.inference_width} of {layer.training_width} neurons "
        f"(FLOP ratio {layer.training_width / layer.inference_width:.2f}x)",
    ]
    lines += _classes_lines(classes) + _params_lines(layer) + [""]
    w_in, b_in = layer.params["linear_in.weight"], layer.params["linear_in.bias"]
    w_out = layer.params["linear_out.weight"]  # (O, P*N)
    last = (1 << d) - 1  # first last-level neuron

    if X is None:
        def label_of(t):
            def label(k):
                r = t * N + k
                return (f"neuron {k}  |w_in| {_norm(w_in[r]):.3f}  b {float(b_in[r]):+.3f}  "
                        f"|w_out| {_norm(w_out[:, r]):.3f}")
            return label
        counts = None
    else:
        n = X.shape[0]
        use = layer.usage(X)
        counts = use["hard_node"].reshape(P, N)

        def label_of(t):
            def label(k):
                c = counts[t, k]
                text = f"neuron {k}  visits {_pct(c, n)}"
                if k < last:
                    text += f"  right {_pct(counts[t, 2 * k + 2], c)}"
                return text
            return label

    for t in range(P):
        head = f"tree {t} " if P > 1 else "tree "
        lines.append(head + "(heap order, every neuron routes: a > 0 goes right, and adds act(a) w_out):")
        lines += _draw_tree(N, d, label_of(t), tree_depth, lambda k: k >= last)
        lines.append("")
    if counts is None:
        lines.append("give --data FILE to see how samples are routed (visits per neuron)")
        return lines
    lines.append(f"per level (visits of {n} samples, all trees):")
    lines.append("  level  neurons  visited  busiest")
    for m in range(d + 1):
        s = _tree.level_slice(m)
        c = counts[:, s]
        lines.append(f"  {m:>5}  {c.size:>7}  {int(np.count_nonzero(c)):>7}  {_pct(c.max(), n)}")
    for t in range(P):
        leaf = counts[t, last:]
        lines.append(f"tree {t} last level: {int(np.count_nonzero(leaf))} of {1 << d} neurons reached; "
                     f"effective number {_effective(leaf):.2f}")
    acc = _accuracy(layer(X), y)
    if acc is not None:
        lines.append(f"accuracy on these labels: {acc:.4f}")
    return lines


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_parser(subparsers):
    """Register the ``inspect`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "inspect",
        help="print a saved model's tree, with per-node usage and decision entropy on data",
        description=(__doc__ or "").split("\n\n", 1)[-1].strip(),  # no docstrings under python -OO
    )
    p.add_argument("model", metavar="MODEL", help="a model file written by fffcpu.save (.npz)")
    p.add_argument("--data", metavar="FILE",
                   help="data to route: .npz (arrays X, y), .csv, IDX images, or 'digits' (built in)")
    p.add_argument("--labels", metavar="FILE", help="IDX labels file to go with IDX images in --data")
    from .training.commands import _add_column_options
    _add_column_options(p)
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N samples of the data")
    p.add_argument("--tree-depth", type=int, default=TREE_DEPTH, dest="tree_depth", metavar="K",
                   help=f"draw the tree node by node down to level K (default {TREE_DEPTH})")
    p.set_defaults(func=run_inspect)
    return p


def _class_labels(y, args, classes, output_width):
    """The labels ``y`` of ``--data`` as ``fffcpu evaluate`` reads them (class indices, or names looked
    up in ``classes``), refused as evaluate refuses them: real-valued, negative, several per sample, or
    an index beyond the outputs. Text labels of a model without class names are kept as text: each
    leaf's most common one is shown, with no accuracy (evaluate refuses them, having nothing to score)."""
    from .training.commands import _class_targets, _label_column_source, _labels_named
    from .training.loop import _prepare_targets
    if y.dtype.kind == "U" and classes is None:
        return y
    try:
        # evaluate's hint names its --loss, which inspect does not have: the model's own loss decides here
        y = _class_targets(y, args.data, classes, mse_hint="a model trained with --loss mse takes")
    except ValueError as exc:
        text = str(exc)
        if getattr(args, "saved_label_column", False):
            text += f" (the labels were read from {_label_column_source(args)})"
        raise ValueError(text) from None
    return _prepare_targets("cross_entropy", y, len(y), output_width, name=_labels_named(args))


def run_inspect(args):
    """Handler of ``fffcpu inspect``: prints the report; returns the exit status (0, or 2 on bad input)."""
    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be an integer >= 1, got {args.limit}")
        if args.tree_depth < 0:
            raise ValueError(f"--tree-depth must be an integer >= 0, got {args.tree_depth}")
        if args.labels is not None and args.data is None:
            raise ValueError("--labels needs --data (the IDX images it labels)")
        from .training.commands import (_check_feature_columns, _is_text_table, _load, _load_by_saved_column,
                                        _read_model, _use_training_defaults, _width_error,
                                        _refuse_options_of_other_formats)
        _refuse_options_of_other_formats(args, "optional")
        layer, classes, training = _read_model(args.model)
        saved_column = _use_training_defaults(args, training)
        X = y = None
        if args.data is not None:
            got = _load_by_saved_column(layer, args) if saved_column else None
            if got is None:
                # an --y-key the user named must exist (a missing array dropped the accuracy without a word)
                got = _load(args, require_y="y_key" in getattr(args, "given", ()))
                if saved_column and got[0].shape[1] != layer.input_width:
                    # the model's label column is not in this file, and its last column is no label
                    # either (as predict reads such a file): features only, read whole
                    args.label_column = "none"
                    got = _load(args, require_y=False)
            X, y = got
            if X.shape[1] == layer.input_width - 1 and args.label_column is None and _is_text_table(args.data):
                raise ValueError(f"data file {args.data!r} has {X.shape[1]} features per sample besides its last "
                                 f"column, read as the labels, but the model takes {layer.input_width} inputs; "
                                 "for a file without a label column, give --label-column none")
            if X.shape[1] != layer.input_width:  # it was "data must have shape (n, 4) ...", naming no file
                raise _width_error(layer, args, X.shape[1], "features per sample")
            _check_feature_columns(args, training)
            if y is not None and training.get("loss") == "mse":
                y = None  # regression targets, not class labels: nothing to count per leaf
            if args.limit is not None:
                X = X[:args.limit]
                y = None if y is None else y[:args.limit]
            if y is not None:  # real-valued, negative or 2-d labels were shown as "top label -4.12"
                y = _class_labels(y, args, classes, layer.output_width)
        # labels are looked up in the class names once, here: _report must not look the indices found up
        # again (integer names read the indices as names: "label 0 ... is not one of the model's classes")
        text = _report(layer, X, y, args.tree_depth, classes, args.data, labels_checked=True)
    except (ValueError, TypeError, KeyError, OSError, MemoryError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"fffcpu inspect: error: {msg}", file=sys.stderr)
        return 2
    print(f"model: {args.model}")
    print(text)
    return 0
