"""Training: one full step (soft forward, CE, hardening, backward, SGD), the forward and the backward."""
from .common import (HARDENING, LEAF_TRAIN, LR, TRAIN_BATCH, TREE_TRAIN, fix_threads, make_labels, make_layer,
                     make_x, require, reset_peak_memory, suite)

VARIANTS = ["fff", "neuron_tree"]


def _sizes(variant):
    return LEAF_TRAIN if variant == "fff" else TREE_TRAIN


@suite
class TrainingStep:
    """leaf-784-d6-l8 batch 256 (and a neuron tree 784-10 of depth 8): one SGD step with hardening.

    Setup runs a step (first touch of the gradient buffers) and then resets the peak
    (``reset_peak_memory``): without that, setup's step had already set the peak and ``peakmem_step``
    read the same whatever the step allocated. It is now what setup holds plus one step's most.
    """

    params = VARIANTS
    param_names = ["variant"]

    def setup(self, variant):
        fix_threads()
        losses = require("fffcpu.training.losses")
        optim = require("fffcpu.training.optim")
        sizes = _sizes(variant)
        self.layer = make_layer(variant, sizes, backend="numpy")
        self.x = make_x(TRAIN_BATCH, sizes["input_width"])
        self.t = make_labels(TRAIN_BATCH, sizes["output_width"])
        self.cross_entropy = losses.cross_entropy
        self.opt = optim.SGD(self.layer.params, lr=LR)
        self.time_step(variant)  # first-touch of the gradient buffers
        reset_peak_memory()  # peakmem_step: the peak from here on is what one step adds

    def time_step(self, variant):
        y, cache = self.layer.train_forward(self.x)
        _, dL_dy = self.cross_entropy(y, self.t)
        grads, _ = self.layer.backward(cache, dL_dy, hardening=HARDENING)
        self.opt.step(grads)

    def peakmem_step(self, variant):
        self.time_step(variant)


@suite
class TrainForward:
    """The training forward alone (leaf FFF: the soft mixture over all leaves; neuron tree: masked)."""

    params = VARIANTS
    param_names = ["variant"]

    def setup(self, variant):
        fix_threads()
        sizes = _sizes(variant)
        self.layer = make_layer(variant, sizes, backend="numpy")
        self.x = make_x(TRAIN_BATCH, sizes["input_width"])
        self.layer.train_forward(self.x)

    def time_train_forward(self, variant):
        self.layer.train_forward(self.x)


@suite
class Backward:
    """The backward pass alone, from a cache built once in setup (hardening on for the leaf FFF)."""

    params = VARIANTS
    param_names = ["variant"]

    def setup(self, variant):
        fix_threads()
        losses = require("fffcpu.training.losses")
        sizes = _sizes(variant)
        self.layer = make_layer(variant, sizes, backend="numpy")
        x = make_x(TRAIN_BATCH, sizes["input_width"])
        y, self.cache = self.layer.train_forward(x)
        _, self.dL_dy = losses.cross_entropy(y, make_labels(TRAIN_BATCH, sizes["output_width"]))
        self.layer.backward(self.cache, self.dL_dy, hardening=HARDENING)

    def time_backward(self, variant):
        self.layer.backward(self.cache, self.dL_dy, hardening=HARDENING)
