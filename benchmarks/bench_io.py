"""Saving and loading a layer (fffcpu.io): atomic write with fsync, validated read."""
import os
import shutil
import tempfile

from .common import LEAF_INFER, TREE_INFER, make_layer, require


class SaveLoad:
    """leaf-768-d8-l16 (6.69 M numbers, 25.5 MiB) and ufb-768-d11 (6.3 M numbers), float32."""

    params = ["fff", "neuron_tree"]
    param_names = ["variant"]

    def setup(self, variant):
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
