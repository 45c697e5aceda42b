"""Saving and loading a layer (fffcpu.io): atomic write with fsync, validated read."""
import os
import shutil
import tempfile

from .common import LEAF_INFER, TINY, TREE_INFER, fix_threads, make_layer, require, suite


@suite
class SaveLoad:
    """leaf-768-d8-l16 (6.69 M numbers, 25.5 MiB) and ufb-768-d11 (6.3 M numbers), float32."""

    params = ["fff", "neuron_tree"]
    param_names = ["variant"]

    def setup(self, variant):
        fix_threads()
        self.io = require("fffcpu.io")
        sizes = LEAF_INFER if variant == "fff" else TREE_INFER
        self.layer = make_layer(variant, sizes, backend="numpy")
        self.dir = tempfile.mkdtemp(prefix="fffcpu-bench-")
        self.path = os.path.join(self.dir, "layer.fff")
        self.out = os.path.join(self.dir, "out.fff")
        self.io.save(self.layer, self.path)

    def teardown(self, variant):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_save(self, variant):
        self.io.save(self.layer, self.out)

    def time_load(self, variant):
        self.io.load(self.path)

    def peakmem_load(self, variant):
        self.io.load(self.path)

    def track_file_size(self, variant):
        return os.path.getsize(self.path) / 2 ** 20

    track_file_size.unit = "MiB"


@suite
class LoadCsv:
    """fffcpu.data.load_csv on 2000 rows of 785 columns, as MNIST is often shared: a header, the label
    first, integer pixels (about 80 % of them 0) or the same pixels scaled to [0, 1] and printed as reals.
    Plain numbers go through NumPy's C reader; with a text label column, the labels are split off each
    line and the features go through that reader too."""

    params = ["integers", "reals", "text labels"]
    param_names = ["cells"]

    def setup(self, cells):
        fix_threads()
        self.data = require("fffcpu.data")
        import numpy as np

        n = 20 if TINY else 2000
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, size=(n, 784)) * (rng.random((n, 784)) < 0.2)
        labels = rng.integers(0, 10, size=n).astype(str)
        if cells == "reals":
            rows = [[f"{v / 255:.6g}" for v in row] for row in pixels]
        else:
            rows = [[str(v) for v in row] for row in pixels]
        if cells == "text labels":
            labels = np.array(["digit" + v for v in labels])
        self.dir = tempfile.mkdtemp(prefix="fffcpu-bench-")
        self.path = os.path.join(self.dir, "mnist_rows.csv")
        with open(self.path, "w") as fh:
            fh.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
            fh.writelines(f"{label},{','.join(row)}\n" for label, row in zip(labels, rows))

    def teardown(self, cells):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_load_csv(self, cells):
        self.data.load_csv(self.path, label_column="label")
