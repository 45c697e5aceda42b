"""Every script in examples/ runs, at small sizes, and does what its docstring says."""
import gzip
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

import fffcpu

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    """The example's module namespace, without running its ``__main__`` block."""
    return runpy.run_path(str(EXAMPLES / name), run_name="example_under_test")


def test_every_example_is_tested():
    tested = {"toy_regions_2d.py", "embed_inference.py", "train_mnist.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


# -- toy_regions_2d.py ----------------------------------------------------------------------------
def test_toy_regions_as_a_script_writes_a_png(tmp_path):
    out = tmp_path / "regions.png"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "toy_regions_2d.py"), "--quick", "--seed", "1",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy: hard" in proc.stdout
    pytest.importorskip("matplotlib")
    assert f"wrote {out}" in proc.stdout
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 2 * height > 0  # three panels side by side


def test_toy_regions_without_matplotlib_still_trains(tmp_path, monkeypatch, capsys):
    ns = load_example("toy_regions_2d.py")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "never.png"
    assert ns["main"](["--quick", "--problem", "blobs", "--depth", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test accuracy: hard" in text and "matplotlib is not installed" in text
    assert not out.exists()


def test_toy_data_and_path_entropy():
    ns = load_example("toy_regions_2d.py")
    rng = np.random.default_rng(0)
    for make, n_classes in ((ns["two_spirals"], 2), (ns["four_blobs"], 4)):
        X, y = make(100, rng)
        assert X.shape == (100, 2) and X.dtype == np.float32 and set(np.unique(y)) <= set(range(n_classes))
    layer = fffcpu.FFF(2, 3, 2, depth=3, seed=0, dtype="float64")
    X, _ = ns["two_spirals"](50, rng)
    got = ns["path_entropy"](layer, X)
    H = layer.entropies(X)
    from fffcpu import _tree
    want = [np.mean([H[i, k] for k, _ in _tree.leaf_path(j, 3)]) for i, j in enumerate(layer.leaf_index(X))]
    assert np.allclose(got, want)
    assert np.array_equal(ns["path_entropy"](fffcpu.FFF(2, 3, 2, depth=0, seed=0), X), np.zeros(50))


# -- embed_inference.py ---------------------------------------------------------------------------
@pytest.fixture(params=["fff", "neuron_tree"])
def saved_model(request, tmp_path):
    if request.param == "fff":
        layer = fffcpu.FFF(4, 3, 3, depth=2, seed=0)
    else:
        layer = fffcpu.NeuronTreeFFF(4, 3, depth=2, seed=0)
    path = tmp_path / "model.npz"
    fffcpu.save(layer, path)
    return layer, path


def test_embed_answers_one_by_one_and_in_batches(tmp_path, saved_model, capsys):
    layer, path = saved_model
    X = np.random.default_rng(0).normal(size=(11, 4)).astype(np.float32)
    lines = [" ".join(f"{v:.9g}" for v in row) for row in X]
    lines.insert(3, "1, 2, three, 4")  # not numbers
    lines.insert(7, "1 2 3")  # wrong width
    lines.insert(9, "")  # blank lines are skipped
    lines.insert(10, "1e50 0 0 0")  # finite as a float64, beyond float32: ended the batch mode
    lines.insert(11, "nan 0 0 0")
    requests = tmp_path / "requests.txt"
    requests.write_text("\n".join(lines) + "\n")
    ns = load_example("embed_inference.py")
    answers = {}
    for batch in ("0", "1", "4", "64"):
        assert ns["main"]([str(path), "--input", str(requests), "--batch", batch]) == 0
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 15
        assert out[3].startswith("error:") and "numbers" in out[3]
        assert out[7].startswith("error:") and "4" in out[7]
        assert out[9].startswith("error:") and "float32" in out[9], batch
        assert out[10].startswith("error:") and "finite" in out[10], batch
        answers[batch] = [line for line in out if not line.startswith("error:")]
    assert answers["0"] == answers["1"] == answers["4"] == answers["64"]
    Y = layer(X)
    for line, y in zip(answers["0"], Y):
        label, values = line.split("\t")
        assert int(label) == int(np.argmax(y))
        assert np.allclose([float(v) for v in values.split()], y, rtol=1e-4, atol=1e-5)


def test_embed_answers_with_the_class_names_saved_with_the_model(tmp_path, capsys):
    """A model trained on text labels (fffcpu train on iris' species) answered with class indices: the
    names saved with it were never read."""
    layer = fffcpu.FFF(4, 3, 3, depth=2, seed=0)
    names = ("setosa", "versicolor", "virginica")
    path = tmp_path / "named.npz"
    fffcpu.save(layer, path, classes=names)
    X = np.random.default_rng(1).normal(size=(9, 4)).astype(np.float32)
    requests = tmp_path / "requests.txt"
    requests.write_text("".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in X))
    expected = [names[k] for k in np.asarray(layer(X)).argmax(axis=1)]
    ns = load_example("embed_inference.py")
    for batch in ("0", "4"):
        assert ns["main"]([str(path), "--input", str(requests), "--batch", batch]) == 0
        assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == expected


def test_embed_reads_stdin_as_a_script(saved_model):
    layer, path = saved_model
    x = np.linspace(-1, 1, 4)
    proc = subprocess.run([sys.executable, str(EXAMPLES / "embed_inference.py"), str(path)],
                          input=" ".join(map(str, x)) + "\n", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label, values = proc.stdout.strip().split("\t")
    assert np.allclose([float(v) for v in values.split()], layer(x.astype(np.float32)), rtol=1e-4, atol=1e-5)
    assert "1 single-sample calls" in proc.stderr


def test_embed_stops_quietly_when_its_reader_goes_away(tmp_path, saved_model):
    """``embed_inference.py MODEL --input FILE | head -1``: a BrokenPipeError traceback ended it."""
    layer, path = saved_model
    requests = tmp_path / "many.txt"
    requests.write_text(("0.5 " * layer.input_width + "\n") * 5000)  # far more output than a pipe holds
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "embed_inference.py"), str(path), "--input",
                             str(requests)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# -- train_mnist.py -------------------------------------------------------------------------------
def write_idx(path, arr):
    data = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    data += arr.astype(np.uint8).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(data)


@pytest.fixture
def tiny_mnist(tmp_path):
    """Four IDX files of 6x6 images whose label is the bright row (train gzip-compressed, test raw)."""
    rng = np.random.default_rng(0)
    for split, n, suffix in (("train", 120, ".gz"), ("t10k", 40, "")):
        y = rng.integers(0, 6, n)
        X = rng.integers(0, 40, (n, 6, 6))
        X[np.arange(n), y, :] = 255
        write_idx(tmp_path / f"{split}-images-idx3-ubyte{suffix}", X)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte{suffix}", y)
    return tmp_path


def test_train_mnist_on_tiny_idx_files(tiny_mnist, capsys):
    ns = load_example("train_mnist.py")
    out = tiny_mnist / "model.npz"
    assert ns["main"](["--dir", str(tiny_mnist), "--depth", "1", "--leaf-width", "4", "--epochs", "3",
                       "--lr", "0.01", "--harden-after", "1", "--master-leaf", "2", "--balance", "1",
                       "--balance-epochs", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "120 training and 40 test images of 36 pixels, 6 classes" in text
    layer = fffcpu.load(out)
    assert (layer.input_width, layer.output_width, layer.depth, layer.master_leaf) == (36, 6, 1, 2)


def test_train_mnist_explicit_paths_and_limit(tiny_mnist, capsys):
    ns = load_example("train_mnist.py")
    d = tiny_mnist
    args = ["--train-images", str(d / "train-images-idx3-ubyte.gz"), "--train-labels",
            str(d / "train-labels-idx1-ubyte.gz"), "--test-images", str(d / "t10k-images-idx3-ubyte"),
            "--test-labels", str(d / "t10k-labels-idx1-ubyte"), "--depth", "0", "--epochs", "1",
            "--limit", "50", "--out", str(d / "m.npz")]
    assert ns["main"](args) == 0
    assert "50 training and 40 test images" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ns["main"](args[2:])  # --train-images missing and no --dir


@pytest.mark.parametrize("name", ["toy_regions_2d.py", "train_mnist.py"])
def test_every_option_with_a_default_states_it(name, monkeypatch, capsys):
    """toy_regions_2d.py --help listed --problem, --epochs, --seed bare, and train_mnist.py --depth,
    --leaf-width, --epochs, --batch-size, --lr, --seed: a reader could not tell what runs by default."""
    import argparse
    parsers = []
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args",
                        lambda self, *a, **k: parsers.append(self) or (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        load_example(name)["main"]([])
    for action in parsers[0]._actions:
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert action.help and "default" in action.help, (name, action.option_strings)


# -- user mistakes: an argparse-style line and exit status 2, never a traceback ----------------------
def refused(name, argv, capsys, before_any_output=False):
    """The last stderr line of ``main(argv)`` of example ``name``, which must exit with status 2 (with
    ``before_any_output``, before it printed anything: before training)."""
    with pytest.raises(SystemExit) as stop:
        load_example(name)["main"](argv)
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert out == "" or not before_any_output, out
    return err.splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["--depth", "-1", "--quick"], "argument --depth: must be an integer >= 0, got '-1'"),
    (["--samples", "0"], "argument --samples: must be an integer >= 1, got '0'"),  # "zero-size array ..."
    (["--epochs", "0", "--quick"], "argument --epochs: must be an integer >= 1, got '0'"),  # --quick overrode it
    (["--quick", "--hardening", "nan"], "argument --hardening: must be a finite number >= 0, got 'nan'"),
    (["--quick", "--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
    (["--quick", "--out", "adir.npz"], "--out must name a .png file, got 'adir.npz'"),  # "Format 'npz' is not ..."
])
def test_toy_regions_refuses_bad_options(argv, message, capsys):
    assert refused("toy_regions_2d.py", argv, capsys, before_any_output=True).endswith(f": error: {message}")


def test_toy_regions_quick_keeps_the_samples_and_epochs_given(tmp_path, monkeypatch, capsys):
    """--quick replaced --samples and --epochs without a word: --quick --samples 40 trained on 500."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no picture: faster
    ns = load_example("toy_regions_2d.py")
    assert ns["main"](["--quick", "--samples", "40", "--epochs", "1", "--out", str(tmp_path / "r.png")]) == 0
    assert "spirals: 40 training points" in capsys.readouterr().out
    assert ns["main"](["--quick", "--out", str(tmp_path / "r.png")]) == 0
    assert "spirals: 500 training points" in capsys.readouterr().out


def test_toy_regions_names_an_out_path_it_cannot_write(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "no such folder" / "r.png"
    line = refused("toy_regions_2d.py", ["--quick", "--samples", "40", "--epochs", "1", "--out", str(out)], capsys)
    assert line.endswith(f": error: cannot write --out {str(out)!r}: No such file or directory")


def test_embed_names_a_missing_or_wrong_file_in_one_line(tmp_path, saved_model, capsys):
    _, model = saved_model
    (tmp_path / "iris like.csv").write_text("a,b\n1,2\n")
    missing = str(tmp_path / "missing.npz")
    assert refused("embed_inference.py", [missing], capsys).endswith(
        f": error: [Errno 2] No such file or directory: {missing!r}")
    assert refused("embed_inference.py", [str(tmp_path / "iris like.csv")], capsys).endswith(
        f": error: {str(tmp_path / 'iris like.csv')!r} is not a valid fffcpu model file: not an npz (zip) archive, "
        "or truncated (File is not a zip file)")
    assert refused("embed_inference.py", [str(model), "--input", str(tmp_path / "none.txt")], capsys).endswith(
        f": error: [Errno 2] No such file or directory: {str(tmp_path / 'none.txt')!r}")


def test_embed_as_a_script_exits_with_one_line_for_a_missing_model(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "embed_inference.py"), str(tmp_path / "missing.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"embed_inference.py: error: [Errno 2] No such file or directory: "
                           f"{str(tmp_path / 'missing.npz')!r}\n")


@pytest.mark.parametrize("argv, message", [
    (["--limit", "0"], "argument --limit: must be an integer >= 1, got '0'"),  # ignored: all samples were used
    (["--limit", "-100"], "argument --limit: must be an integer >= 1, got '-100'"),  # all but the last 100
    (["--depth", "-1"], "argument --depth: must be an integer >= 0, got '-1'"),
    (["--lr", "nan"], "argument --lr: must be a finite number >= 0, got 'nan'"),
    (["--harden-after", "x"], "argument --harden-after: must be an integer >= 0, got 'x'"),
    (["--out", "{d}/no such folder/m.npz"], "--out must be a file in an existing folder, got '{d}/no such folder/m.npz'"),
    (["--train-images", "{d}/missing.gz"], "data file '{d}/missing.gz' does not exist"),
    (["--train-images", "{d}/text.csv"], "IDX file '{d}/text.csv' has a bad magic number"),
    (["--dir", "{d}/nowhere"], "neither train-images-idx3-ubyte nor train-images-idx3-ubyte.gz is in '{d}/nowhere'"),
])
def test_train_mnist_refuses_bad_options_and_files_before_training(tiny_mnist, argv, message, capsys):
    (tiny_mnist / "text.csv").write_text("a,b\n1,2\n")
    argv = ["--dir", str(tiny_mnist), *(a.format(d=tiny_mnist) for a in argv)]
    line = refused("train_mnist.py", argv, capsys, before_any_output=True)
    assert f": error: {message.format(d=tiny_mnist)}" in line


def test_train_mnist_names_an_out_file_it_cannot_replace(tiny_mnist, capsys):
    (tiny_mnist / "notes.txt").write_text("not a model\n")
    line = refused("train_mnist.py", ["--dir", str(tiny_mnist), "--depth", "0", "--epochs", "1", "--out",
                                      str(tiny_mnist / "notes.txt")], capsys)
    assert f": error: --out: cannot save to {str(tiny_mnist / 'notes.txt')!r}: the file exists and holds no model" in line
