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
    assert "give --data" in capsys.readouterr().out
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
    (["--data", "WIDE.npz"], "input_width"),
    (["--labels", "x"], "--labels needs --data"),
    (["--data", "WIDE.npz", "--limit", "0"], "--limit must be"),
    (["--tree-depth", "-1"], "--tree-depth must be"),
])
def test_cli_errors_name_the_problem(tmp_path, capsys, extra, message):
    model = tmp_path / "m.npz"
    fffcpu.save(fffcpu.FFF(5, 2, 3, 1, seed=0), model)
    np.savez(tmp_path / "WIDE.npz", X=np.zeros((3, 6)), y=np.zeros(3, dtype=int))
    extra = [str(tmp_path / e) if e.endswith(".npz") else e for e in extra]
    assert run_cli(str(model), *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("fffcpu inspect: error:") and message in err


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
    try:
        proc = subprocess.run([sys.executable, "-m", "fffcpu", "inspect", str(model)], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=pathlib.Path(fffcpu.__file__).parents[1], timeout=120)
    finally:
        os.close(write_end)
    assert proc.stderr == b"" and proc.returncode == 141
