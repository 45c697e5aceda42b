"""`fffcpu inspect`: the report's numbers against the layer's own statistics, both kinds, bad input."""
import argparse
import gzip
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import fffcpu
from fffcpu import _tree, inspect_cmd
from fffcpu.inspect_cmd import report


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="fffcpu")
    inspect_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", *argv])
    return args.func(args)


def floats_after(text, key):
    """The numbers after ``key`` on the drawn tree's lines (nodes, leaves, neurons), in drawing order."""
    tree = "\n".join(line for line in text.splitlines() if re.match(r"^[\s│├└─]*(node|leaf|neuron) \d+", line))
    return [float(v) for v in re.findall(re.escape(key) + r"\s+(-?[\d.]+)", tree)]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40)
    return X, y


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_structure_lists_every_node_and_leaf(depth):
    layer = fffcpu.FFF(5, 2, 3, depth, seed=0)
    text = report(layer)
    assert len(re.findall(r"^\W*node \d+ ", text, re.M)) == layer.n_nodes
    assert len(re.findall(r"^\W*leaf \d+", text, re.M)) == layer.n_leaves
    assert f"parameters: {layer.n_params:,}" in text
    for j in range(layer.n_leaves):  # path bits follow the heap numbering
        bits = "".join("1" if right else "0" for _, right in _tree.leaf_path(j, depth))
        assert (f"leaf {j} [{bits}]" if depth else "leaf 0 ") in text
    # the printed norm of node 0 is the row norm
    if depth:
        assert floats_after(text, "|w|")[0] == pytest.approx(np.linalg.norm(layer.params["node_weights"][0]), abs=1e-3)


def test_usage_and_entropy_match_the_layer(data):
    X, y = data
    layer = fffcpu.FFF(5, 2, 3, 3, seed=1, dtype="float64")
    text = report(layer, X, y, tree_depth=3)
    use = layer.usage(X)
    n = len(X)
    hard_nodes = floats_after(text, "hard")  # nodes and leaves in drawing (pre-)order
    order = []

    def preorder(k):
        order.append(k)
        if k < layer.n_nodes:
            preorder(2 * k + 1)
            preorder(2 * k + 2)
    preorder(0)
    expected = [100 * (use["hard_node"][k] if k < layer.n_nodes else use["hard_leaf"][k - layer.n_nodes]) / n
                for k in order]
    assert np.allclose(hard_nodes, expected, atol=0.051)
    H = layer.entropies(X)
    assert np.allclose(floats_after(text, " H"), H.mean(axis=0)[[k for k in order if k < layer.n_nodes]], atol=5e-4)
    l_harden = float(re.search(r"L_harden on this data.*: ([\d.]+)", text).group(1))
    _, cache = layer.train_forward(X)
    assert l_harden == pytest.approx(layer.hardening_loss(cache), abs=1e-4)
    hard_acc = float(re.search(r"accuracy on these labels: hard ([\d.]+)", text).group(1))
    assert hard_acc == pytest.approx(np.mean(layer(X).argmax(1) == y), abs=1e-4)


def test_saturated_routing_shows_zero_entropy_and_soft_equals_hard(data):
    X, y = data
    layer = fffcpu.FFF(5, 2, 3, 2, seed=0, dtype="float64")
    layer.params["node_weights"] *= 1e5
    layer.params["node_biases"] *= 1e5
    text = report(layer, X, y)
    assert all(h == 0 for h in floats_after(text, " H"))
    assert floats_after(text, "hard")[1:] == floats_after(text, "soft")[1:]


def test_tree_depth_folds_deep_levels(data):
    layer = fffcpu.FFF(5, 2, 3, 5, seed=0)
    text = report(layer, data[0], tree_depth=1)
    assert text.count("more below") == 2
    assert "30 more below" in text  # under node 1: 14 nodes on levels 2-4 and 16 leaves
    table = text.split("per level:")[1]
    assert len(re.findall(r"^\s+\d+\s+\d+\s+\d+\s", table, re.M)) == 5  # every level in the table


def test_neuron_tree_visits(data):
    X, y = data
    layer = fffcpu.NeuronTreeFFF(5, 3, 2, parallel_size=2, seed=0)
    text = report(layer, X, y)
    visits = np.array(floats_after(text, "visits")) * len(X) / 100  # tree 0 then tree 1, pre-order
    counts = layer.usage(X)["hard_node"].reshape(2, 7)
    pre = [0, 1, 3, 4, 2, 5, 6]
    assert np.allclose(visits, counts[:, pre].ravel(), atol=0.05)
    assert "one inference visits 6 of 14 neurons" in text
    assert "|w_in|" in report(layer)


def test_cli_reads_every_data_format(tmp_path, data, capsys):
    X, y = data
    layer = fffcpu.FFF(5, 2, 3, 2, seed=0)
    model = tmp_path / "m.npz"
    fffcpu.save(layer, model)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",")
    assert run_cli(str(model)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model: {model}\n") and "give --data" in out
    for name in ("d.npz", "d.csv"):
        assert run_cli(str(model), "--data", str(tmp_path / name), "--limit", "30") == 0
        out = capsys.readouterr().out
        assert "routing of 30 samples" in out and "accuracy on these labels" in out
    # IDX images 1x5 of uint8, gzip-compressed, with an IDX labels file
    img = (np.abs(X[:, None, :]) * 50).astype(np.uint8)
    with gzip.open(tmp_path / "img-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in img.shape) + img.tobytes())
    (tmp_path / "lab-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + len(y).to_bytes(4, "big") + y.astype(np.uint8).tobytes())
    assert run_cli(str(model), "--data", str(tmp_path / "img-idx3-ubyte.gz"),
                   "--labels", str(tmp_path / "lab-idx1-ubyte")) == 0
    assert "routing of 40 samples" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--data", "MISSING.npz"], "does not exist"),
    (["--model", "MISSING.npz"], "model file '{tmp}/MISSING.npz' does not exist"),
    (["--data", "WIDE.npz"], "WIDE.npz' has 6 features per sample, but the model"),
    (["--labels", "x"], "--labels needs --data"),
    (["--data", "WIDE.npz", "--limit", "0"], "--limit must be"),
    (["--tree-depth", "-1"], "--tree-depth must be"),
])
def test_cli_errors_name_the_problem(tmp_path, capsys, extra, message):
    model = tmp_path / "m.npz"
    fffcpu.save(fffcpu.FFF(5, 2, 3, 1, seed=0), model)
    np.savez(tmp_path / "WIDE.npz", X=np.zeros((3, 6)), y=np.zeros(3, dtype=int))
    extra = [str(tmp_path / e) if e.endswith(".npz") else e for e in extra]
    if extra[0] == "--model":  # the model file itself is missing
        model, extra = extra[1], extra[2:]
    assert run_cli(str(model), *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("fffcpu inspect: error:") and message.format(tmp=tmp_path) in err


def test_cli_refuses_a_file_that_is_not_a_model(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert run_cli(str(bad)) == 2
    assert "fffcpu inspect: error:" in capsys.readouterr().err


def test_soft_accuracy_of_a_deep_tree_is_computed_in_row_blocks(monkeypatch):
    """The soft forward holds every leaf's output for every sample: inspect of a depth-16 model on the
    1797 digits peaked at 15 GB. It now sends rows in blocks of at most 2**22 leaf-output values."""
    layer = fffcpu.FFF(4, 8, 8, 12, seed=0)  # 4096 leaves x (8 + 8) values per sample: 64 rows a block
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = rng.integers(0, 8, 200)
    expected = np.mean(layer.soft_forward(X).argmax(axis=1) == y)
    sizes = []
    soft_forward = layer.soft_forward
    monkeypatch.setattr(layer, "soft_forward", lambda x: sizes.append(len(x)) or soft_forward(x))
    text = report(layer, X, y)
    assert sizes == [64, 64, 64, 8]
    assert f"soft {expected:.4f}" in text


def test_cli_output_into_a_closed_pipe_is_not_an_error(tmp_path):
    """`fffcpu inspect MODEL | head -1` printed "error: [Errno 32] Broken pipe" and exited with 2."""
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(5, 2, 3, 2, seed=0), model)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    # block-buffered stdout, as a shell pipe has it: under PYTHONUNBUFFERED every print raises at once,
    # and neither main's flush nor its redirection of stdout for the flush at exit would be tested
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    try:
        proc = subprocess.run([sys.executable, "-m", "fffcpu", "inspect", str(model)], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=pathlib.Path(fffcpu.__file__).parents[1], timeout=120,
                              env=env)
    finally:
        os.close(write_end)
    assert proc.stderr == b"" and proc.returncode == 141


@pytest.mark.parametrize("kwargs, message", [
    (dict(tree_depth=-1), r"tree_depth must be an integer >= 0, got -1"),
    (dict(tree_depth=True), r"tree_depth must be an integer >= 0, got True"),
    (dict(tree_depth=1.0), r"tree_depth must be an integer >= 0, got 1.0"),
    (dict(X=np.zeros(5)), r"data must have shape \(n, 5\) to match the model's input_width, got shape \(5,\)"),
    (dict(X=np.zeros((0, 5))), r"data has 0 samples; inspect needs at least one"),
    (dict(X=np.zeros((4, 5)), y=np.zeros(3, dtype=int)), r"labels must have shape \(4,\), got \(3,\)"),
])
def test_report_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        report(fffcpu.FFF(5, 2, 3, 1, seed=0), **kwargs)


def test_sizes_line_counts_in_singular_and_plural():
    assert "depth 0: 0 routing nodes, 1 leaf" in report(fffcpu.FFF(5, 1, 3, 0, seed=0))
    assert "0 node dot products and 1 leaf of 1 neuron" in report(fffcpu.FFF(5, 1, 3, 0, seed=0))
    assert "depth 1: 1 routing node, 2 leaves" in report(fffcpu.FFF(5, 2, 3, 1, seed=0))
    assert "1 node dot product and 1 leaf of 2 neurons" in report(fffcpu.FFF(5, 2, 3, 1, seed=0))


def test_tree_is_drawn_with_its_branches_and_every_norm():
    layer = fffcpu.FFF(5, 2, 3, 2, seed=0, dtype="float64")
    p = layer.params
    text = report(layer)
    drawn = [m.group(1) for m in (re.match(r"^([\s│├└─]*(?:node|leaf) \d+)", line) for line in text.splitlines()) if m]
    assert drawn == ["node 0", "├── node 1", "│   ├── leaf 0", "│   └── leaf 1",
                     "└── node 2", "    ├── leaf 2", "    └── leaf 3"]
    nodes = re.findall(r"node (\d+)  \|w\| ([\d.]+)  b ([-+][\d.]+)", text)
    assert [int(k) for k, _, _ in nodes] == [0, 1, 2]
    for k, w, b in nodes:
        assert float(w) == pytest.approx(np.linalg.norm(p["node_weights"][int(k)]), abs=6e-4)
        assert float(b) == pytest.approx(p["node_biases"][int(k), 0], abs=6e-4)
    leaves = re.findall(r"leaf (\d) \[\d\d\]  \|W1\| ([\d.]+)  \|b1\| ([\d.]+)  \|W2\| ([\d.]+)  \|b2\| ([\d.]+)", text)
    assert [int(j) for j, *_ in leaves] == [0, 1, 2, 3]
    for j, *norms in leaves:
        for name, value in zip(("w1s", "b1s", "w2s", "b2s"), norms):
            assert float(value) == pytest.approx(np.linalg.norm(p[name][int(j)]), abs=6e-4), (j, name)


def _hand_set_routing():
    """``(layer, X, y)``: depth 2 on one feature, five samples with labels 1, 1, 0, 2, 2."""
    layer = fffcpu.FFF(1, 2, 3, 2, seed=0, dtype="float64")
    layer.params["node_weights"][:] = [[100.0], [0.0], [1.0]]
    layer.params["node_biases"][:] = [[0.0], [-0.1], [-1.5]]
    X = np.array([[-1.0], [-1.0], [-1.0], [2.0], [2.0]])
    y = np.array([1, 1, 0, 2, 2])
    return layer, X, y


def test_report_of_a_hand_set_routing():
    """Depth 2 on one feature: node 0 sends x = -1 left and x = 2 right (saturated); node 1 sends its
    three samples left, node 2 its two right, neither saturated. Leaves 1 and 2 get no hard traffic."""
    layer, X, y = _hand_set_routing()
    text = report(layer, X, y)
    lines = {m.group(1): line for line in text.splitlines() for m in [re.search(r"((?:node|leaf) \d) ", line)] if m}

    def sig(a):
        return 1 / (1 + np.exp(-a))

    def ent(a):
        q = sig(a)
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))

    x = X[:, 0]
    assert re.search(r"node 0  hard 100.0%  soft 100.0%  .*  right  40.0%$", lines["node 0"])
    assert re.search(r"node 1  hard  60.0%  .*  right   0.0%$", lines["node 1"])
    assert re.search(r"node 2  hard  40.0%  .*  right 100.0%$", lines["node 2"])
    # node 2 matters only for x = 2: H|reach is its entropy there, H the mean over all five samples
    h2 = ent(x - 1.5)
    assert f"H {h2.mean():.3f}  H|reach {h2[3:].mean():.3f}" in lines["node 2"]
    soft = np.array([3 * (1 - sig(-0.1)), 3 * sig(-0.1), 2 * (1 - sig(0.5)), 2 * sig(0.5)]) / 5
    for j, (hard, top) in enumerate([(60.0, "  top label 1 (67%)"), (0.0, ""), (0.0, ""), (40.0, "  top label 2 (100%)")]):
        bits = format(j, "02b")
        assert lines[f"leaf {j}"].endswith(f"leaf {j} [{bits}]  hard {hard:5.1f}%  soft {100 * soft[j]:5.1f}%{top}")

    def effective(c):
        c = c[c > 0] / c.sum()
        return np.exp(-(c * np.log(c)).sum())

    assert (f"leaves: 2 of 4 used by hard inference; effective number of leaves (exp of the usage entropy) "
            f"hard {effective(np.array([3.0, 2.0])):.2f}, soft {effective(soft):.2f}; busiest leaf 60.0% of "
            "the samples") in text
    # with everything sent left, node 2 routes nothing: no share to give
    layer.params["node_weights"][0] = 0.0
    layer.params["node_biases"][0] = -100.0
    node2 = [line for line in report(layer, X, y).splitlines() if "node 2  " in line][0]
    assert re.search(r"node 2  hard   0.0%  .*  right     - $", node2)


def test_accuracy_only_for_class_labels_and_several_outputs():
    X = np.random.default_rng(0).normal(size=(12, 5))
    y = np.arange(12) % 3
    assert "accuracy on these labels" in report(fffcpu.FFF(5, 2, 3, 1, seed=0), X, y)
    assert "accuracy" not in report(fffcpu.FFF(5, 2, 3, 1, seed=0), X, y.astype(np.float64))  # regression targets
    assert "accuracy" not in report(fffcpu.FFF(5, 2, 1, 1, seed=0), X, y)  # one output: no argmax


def test_master_leaf_share():
    layer = fffcpu.FFF(5, 2, 3, 1, seed=0, master_leaf=2)
    layer.params["k"] = np.log(3.0)  # sigmoid(k) = 0.75
    assert "master leaf (eFFF): width 2, mixed as y = 0.750 y_tree + 0.250 M(x)" in report(layer)


def test_top_labels_follow_the_layers_own_routing_in_its_dtype():
    """float32 layer, float64 data: 0.1 - float32(0.1) is 0 in float32 (a tie: right), but -1.5e-9 in
    float64 (left). The top label belongs to the leaf the layer's hard count sends the sample to."""
    layer = fffcpu.FFF(1, 2, 3, 1, seed=0)
    layer.params["node_weights"][:] = 1.0
    layer.params["node_biases"][:] = -0.1
    text = report(layer, np.array([[0.1]]), np.array([2]))
    assert "leaf 1 [1]  hard 100.0%" in text
    assert re.search(r"leaf 1 \[1\] .*top label 2 \(100%\)", text) and not re.search(r"leaf 0 .*top label", text)


def test_neuron_tree_report_numbers(data):
    X, y = data
    layer = fffcpu.NeuronTreeFFF(5, 3, 2, parallel_size=2, seed=0)
    N = layer.n_nodes
    counts = layer.usage(X)["hard_node"].reshape(2, N)
    text = report(layer, X, y)
    trees = re.split(r"^tree (\d) \(heap order", text, flags=re.M)
    assert trees[1::2] == ["0", "1"]
    for t, block in enumerate(trees[2::2]):
        rights = dict(re.findall(r"neuron (\d)  visits\s+[\d.]+%  right\s+(\S+)", block))
        assert sorted(rights) == ["0", "1", "2"]
        for k, share in rights.items():
            k = int(k)
            c = counts[t, k]
            assert share == (f"{100 * counts[t, 2 * k + 2] / c:.1f}%" if c else "-"), (t, k)
        last = counts[t, 3:]
        q = last[last > 0] / last.sum()
        assert (f"tree {t} last level: {np.count_nonzero(last)} of 4 neurons reached; "
                f"effective number {np.exp(-(q * np.log(q)).sum()):.2f}") in text
    table = text.split("per level (visits of 40 samples, all trees):")[1]
    rows = re.findall(r"^\s+(\d)\s+(\d+)\s+(\d+)\s+([\d.]+)%$", table, re.M)
    assert len(rows) == 3
    for m, (level, neurons, visited, busiest) in enumerate(rows):
        c = counts[:, _tree.level_slice(m)]
        assert (int(level), int(neurons), int(visited)) == (m, c.size, np.count_nonzero(c))
        assert float(busiest) == pytest.approx(100 * c.max() / 40, abs=0.051)
    acc = np.mean(layer(X).argmax(axis=1) == y)
    assert f"accuracy on these labels: {acc:.4f}" in text
    # without data: the norms of each tree's own rows of linear_in and columns of linear_out
    w_in, w_out = layer.params["linear_in.weight"], layer.params["linear_out.weight"]
    norms = [(float(a), float(b)) for a, b in re.findall(r"\|w_in\| ([\d.]+)  b \S+  \|w_out\| ([\d.]+)", report(layer))]
    pre = [0, 1, 3, 4, 2, 5, 6]
    expected = [(np.linalg.norm(w_in[t * N + k]), np.linalg.norm(w_out[:, t * N + k])) for t in range(2) for k in pre]
    np.testing.assert_allclose(norms, expected, atol=6e-4)


def test_default_tree_depth_draws_four_levels():
    text = report(fffcpu.FFF(5, 2, 3, 5, seed=0))  # levels 0-4 node by node, the leaves under level 4 folded
    assert text.count("└── ... 2 more below") == 16


def test_help_names_the_python_function_by_its_module():
    """--help said "available in Python as :func:`report`", which names no module to import it from."""
    parser = argparse.ArgumentParser(prog="fffcpu")
    inspect_cmd.add_parser(parser.add_subparsers(dest="command"))
    text = " ".join(parser._subparsers._group_actions[0].choices["inspect"].format_help().split())
    assert "fffcpu.inspect_cmd.report(layer, X, y)" in text and ":func:`report`" not in text


def test_class_names_are_listed_and_name_the_top_labels():
    """The hand-set routing of test_report_of_a_hand_set_routing, with names for its three outputs."""
    layer, X, y = _hand_set_routing()
    names = ["zero", "one", "two"]
    plain = report(layer, X, y)
    named = report(layer, X, y, classes=names)
    assert "named outputs, 3 classes: zero, one, two" in named.splitlines()
    assert named.replace("named outputs, 3 classes: zero, one, two\n", "") == \
        plain.replace("top label 1 ", "top label one ").replace("top label 2 ", "top label two ")
    assert re.search(r"leaf 0 .*top label one \(67%\)", named) and re.search(r"leaf 3 .*top label two \(100%\)", named)
    text_labels = np.array(names)[y]
    assert report(layer, X, text_labels, classes=names) == named  # looked up: the same accuracies
    assert "accuracy" not in report(layer, X, text_labels)  # text without names: no indices to score
    assert "top label one (67%)" in report(layer, X, text_labels)
    with pytest.raises(ValueError, match=r"label 'three' at index 4 of 'y' is not one of the model's 3 classes: "
                                         r"zero, one, two"):
        report(layer, X, np.array(["one", "one", "zero", "two", "three"]), classes=names)
    with pytest.raises(ValueError, match=r"classes must name each of the model's 3 outputs, got 2 names"):
        report(layer, classes=names[:2])
    tree = fffcpu.NeuronTreeFFF(1, 3, 1, seed=0)
    assert "named outputs, 3 classes: zero, one, two" in report(tree, classes=names).splitlines()


def test_integer_class_names_read_integer_labels_by_name():
    """A model saved with integer names (classes_ of -1, 5, 7) reads labels as those names, as evaluate does."""
    layer, X, y = _hand_set_routing()
    names = np.array([-1, 5, 7])  # int64 items, as classes_ holds them
    plain = report(layer, X, y)
    named = report(layer, X, names[y], classes=names)
    assert named.replace("named outputs, 3 classes: -1, 5, 7\n", "") == \
        plain.replace("top label 1 ", "top label 5 ").replace("top label 2 ", "top label 7 ")
    assert "accuracy on these labels" in named and re.search(r"leaf 3 .*top label 7 \(100%\)", named)
    with pytest.raises(ValueError, match=r"label 1 at index 0 of 'y' is not one of the model's 3 classes: -1, 5, 7"):
        report(layer, X, y, classes=names)


def test_cli_reads_labels_by_integer_class_names_once(tmp_path, capsys):
    """The command looked the labels up in the names, and report() looked the indices it found up again:
    a model named -1, 5, 7 failed with "label 0 at index 0 of 'y' is not one of the model's 3 classes"."""
    layer = fffcpu.FFF(2, 2, 3, 1, seed=0)
    fffcpu.save(layer, tmp_path / "m.npz", classes=[-1, 5, 7])
    X = np.random.default_rng(0).normal(size=(9, 2))
    y = np.arange(9) % 3
    named = np.array([-1, 5, 7])[y]
    np.savez(tmp_path / "d.npz", X=X, y=named)
    assert run_cli(str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz")) == 0
    out = capsys.readouterr().out
    assert out == f"model: {tmp_path / 'm.npz'}\n" + report(layer, X, named, classes=[-1, 5, 7]) + "\n"
    assert "accuracy on these labels" in out
    np.savez(tmp_path / "d.npz", X=X, y=y)  # indices are no names here: the error names the data file
    assert run_cli(str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz")) == 2
    assert capsys.readouterr().err == (f"fffcpu inspect: error: label 0 at index 0 of {str(tmp_path / 'd.npz')!r} "
                                       "is not one of the model's 3 classes: -1, 5, 7\n")


def test_cli_uses_the_models_class_names(tmp_path, capsys):
    layer = fffcpu.FFF(2, 2, 3, 1, seed=0)
    model = tmp_path / "m.npz"
    names = ["setosa", "versicolor", "virginica"]
    fffcpu.save(layer, model, classes=names)
    X = np.random.default_rng(0).normal(size=(9, 2))
    y = np.arange(9) % 3
    rows = [f"{a!r},{b!r},{names[c]}" for (a, b), c in zip(X.tolist(), y)]
    (tmp_path / "d.csv").write_text("x1,x2,species\n" + "\n".join(rows) + "\n")
    assert run_cli(str(model), "--data", str(tmp_path / "d.csv")) == 0
    out = capsys.readouterr().out
    assert out == f"model: {model}\n" + report(layer, X, y, classes=names) + "\n"
    assert "named outputs, 3 classes: setosa, versicolor, virginica" in out and "accuracy on these labels" in out
    (tmp_path / "d.csv").write_text("x1,x2,species\n" + "\n".join(rows).replace("virginica", "rose") + "\n")
    assert run_cli(str(model), "--data", str(tmp_path / "d.csv")) == 2
    assert capsys.readouterr().err == (f"fffcpu inspect: error: label 'rose' at index 2 of "
                                       f"{str(tmp_path / 'd.csv')!r} is not one of the model's 3 classes: setosa, "
                                       "versicolor, virginica\n")


def test_cli_reads_a_csv_without_labels_or_with_them_anywhere(tmp_path, capsys):
    """inspect had no --label-column: a CSV of features only (the file predict takes) lost its last
    feature to the labels and failed as "data must have shape (n, 4)", and a label column other than the
    last could not be named at all; nor could .npz arrays other than X and y."""
    layer = fffcpu.FFF(3, 2, 3, 2, seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    model = tmp_path / "m.npz"
    fffcpu.save(layer, model)
    width = layer.input_width
    header = ",".join(f"f{i}" for i in range(width))
    np.savetxt(tmp_path / "features.csv", X, delimiter=",", header=header, comments="")
    np.savetxt(tmp_path / "first.csv", np.column_stack([y, X]), delimiter=",", header="label," + header,
               comments="", fmt="%.9g")
    np.savez(tmp_path / "keys.npz", features=X, target=y)
    assert run_cli(str(model), "--data", str(tmp_path / "features.csv")) == 2
    err = capsys.readouterr().err
    assert f"has {width - 1} features per sample besides its last column" in err and "--label-column none" in err
    assert run_cli(str(model), "--data", str(tmp_path / "features.csv"), "--label-column", "none") == 0
    out = capsys.readouterr().out
    assert f"routing of {len(X)} samples" in out and "accuracy on these labels" not in out
    for column in ("label", "0"):
        assert run_cli(str(model), "--data", str(tmp_path / "first.csv"), "--label-column", column) == 0
        assert "accuracy on these labels" in capsys.readouterr().out
    assert run_cli(str(model), "--data", str(tmp_path / "keys.npz"), "--x-key", "features", "--y-key", "target") == 0
    assert "accuracy on these labels" in capsys.readouterr().out


def test_report_says_when_the_model_runs_on_the_numpy_reference():
    """A model saved with backend="numpy" loads with it and infers on the reference, many times slower;
    inspect showed nothing of it."""
    for make in (lambda b: fffcpu.FFF(4, 2, 3, 2, seed=0, backend=b),
                 lambda b: fffcpu.NeuronTreeFFF(4, 3, 2, seed=0, backend=b)):
        kind_line = report(make("numpy")).splitlines()[0]
        assert kind_line.endswith('backend numpy (saved with the model; `layer.backend = "auto"` after '
                                  'fffcpu.load runs the Numba kernels)'), kind_line
        assert "backend" not in report(make("auto")).splitlines()[0]
        assert report(make("numba")).splitlines()[0].endswith("   backend numba")


def test_neuron_tree_report_states_the_flop_ratio():
    """training_width / inference_width (SPEC §2: 4095 / 12 = 341x for ufb-768-d11); another ratio
    printed there passed every test (a SPEC audit)."""
    text = report(fffcpu.NeuronTreeFFF(5, 3, 2, parallel_size=2, seed=0))
    assert "one inference visits 6 of 14 neurons (FLOP ratio 2.33x)" in text
    text = report(fffcpu.NeuronTreeFFF(8, 3, 11, seed=0, backend="numpy"))
    assert "one inference visits 12 of 4095 neurons (FLOP ratio 341.25x)" in text


@pytest.mark.parametrize("y, message", [
    (np.array([0.5, 1, 2, 0, 1, 2]), "labels in {data!r} must be integer class indices 0 .. n_classes-1 for "
                                     "classification, got 0.5 at index 0 (dtype float64; a model trained with "
                                     "--loss mse takes real-valued targets)"),
    (np.zeros((6, 2)), "labels in {data!r} must be one class index per sample, shape (n,), got shape (6, 2) (a model "
                       "trained with --loss mse takes several real-valued targets)"),
    (np.array([0, 1, -2, 0, 1, 2]), "labels in {data!r} must be >= 0, got minimum -2"),
    (np.array([0, 1, 3, 0, 1, 2]), "the labels in {data!r} (--y-key y) must hold class indices in [0, 2] "
                                   "(output_width 3), got values in [0, 3]"),
])
def test_cli_refuses_labels_that_evaluate_refuses(tmp_path, capsys, y, message):
    """Real-valued labels were shown as "top label -4.1219684158773715 (50%)", negative ones as "top
    label -2" with an accuracy, labels of 2 columns were dropped without a word: evaluate refuses them all."""
    from fffcpu import cli
    model, data = tmp_path / "m.npz", tmp_path / "d.npz"
    fffcpu.save(fffcpu.FFF(2, 2, 3, 1, seed=0), model)
    np.savez(data, X=np.random.default_rng(0).normal(size=(6, 2)), y=y)
    assert run_cli(str(model), "--data", str(data)) == 2
    assert capsys.readouterr().err == f"fffcpu inspect: error: {message.format(data=str(data))}\n"
    assert cli.main(["evaluate", str(model), "--data", str(data)]) == 2
    assert "evaluate: error:" in capsys.readouterr().err


def test_cli_reads_whole_float_labels_as_evaluate_does(tmp_path, capsys):
    """Labels 0., 1., 2. (as NumPy and pandas often store them) are class indices, and with integer class
    names they are names: inspect showed them as "top label 1.0", without an accuracy."""
    layer, X, y = _hand_set_routing()
    model, data = tmp_path / "m.npz", tmp_path / "d.npz"
    fffcpu.save(layer, model)
    np.savez(data, X=X, y=y.astype(np.float64))
    assert run_cli(str(model), "--data", str(data)) == 0
    assert capsys.readouterr().out == f"model: {model}\n" + report(layer, X, y) + "\n"
    names = np.array([-1, 5, 7])
    fffcpu.save(layer, model, classes=names)
    np.savez(data, X=X, y=names[y].astype(np.float64))
    assert run_cli(str(model), "--data", str(data)) == 0
    out = capsys.readouterr().out
    assert out == f"model: {model}\n" + report(layer, X, names[y], classes=names) + "\n"
    assert "accuracy on these labels" in out and "top label 7 (100%)" in out


def test_cli_keeps_text_labels_of_a_model_without_names_and_drops_a_regression_models_targets(tmp_path, capsys):
    """Text labels without class names to look them up in: each leaf's most common one, no accuracy (as
    report() shows them). A model `fffcpu train --loss mse` saved takes real-valued targets: not labels."""
    layer, X, y = _hand_set_routing()
    model, data = tmp_path / "m.npz", tmp_path / "d.npz"
    fffcpu.save(layer, model)
    np.savez(data, X=X, y=np.array(["zero", "one", "two"])[y])
    assert run_cli(str(model), "--data", str(data)) == 0
    out = capsys.readouterr().out
    assert "top label two (100%)" in out and "accuracy" not in out
    fffcpu.io.save(layer, model, _training={"loss": "mse"})
    np.savez(data, X=X, y=np.linspace(-4.5, 3.25, 10).reshape(5, 2))
    assert run_cli(str(model), "--data", str(data)) == 0
    out = capsys.readouterr().out
    assert "routing of 5 samples" in out and "top label" not in out


def test_cli_names_the_models_saved_label_column_in_a_label_error(tmp_path, capsys):
    """A label column the user did not choose (saved by `fffcpu train --label-column`) may be the cause."""
    layer = fffcpu.FFF(2, 2, 3, 1, seed=0)
    model = tmp_path / "m.npz"
    fffcpu.io.save(layer, model, _training={"loss": "cross_entropy", "label_column": "kind"})
    (tmp_path / "d.csv").write_text("kind,a,b\n0,0.5,1\n-1,2,3\n")
    assert run_cli(str(model), "--data", str(tmp_path / "d.csv")) == 2
    assert capsys.readouterr().err == (
        f"fffcpu inspect: error: labels in {str(tmp_path / 'd.csv')!r} must be >= 0, got minimum -1 (the labels were "
        "read from column kind, the model's saved label column (from `fffcpu train --label-column`))\n")
