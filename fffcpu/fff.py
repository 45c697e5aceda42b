"""The leaf FFF layer (Belcak & Wattenhofer): validation and dispatch over the NumPy reference and kernels."""
import numpy as np

from . import _kernel_api
from ._aligned import aligned_copy
from ._base import Layer, _to_numpy
from ._tree import n_leaves, n_nodes
from ._validate import as_grad, as_input, check_fits_memory, check_int, check_nonneg_float
from .activations import expit
from .reference import leaf as ref


class FFF(Layer):
    """A fast feedforward layer with leaves of ``leaf_width`` neurons (SPEC §1).

    Parameters
    ----------
    input_width, leaf_width, output_width : int
        D, l and O; all >= 1.
    depth : int
        d >= 0: 2^d - 1 routing nodes and 2^d leaves; training width 2^d * l. Depth 0 is a plain
        feedforward network ``act(x @ W1 + b1) @ W2 + b2``.
    activation : {"relu", "gelu", "tanh", "sigmoid", "identity"}
    dropout : float in [0, 1)
        Dropout after the leaf activation, in training only (inverted: kept units scaled by 1/(1-p)).
    region_leak : float in [0, 1]
        In training only, each (sample, node) decision is flipped with this probability.
    train_hardened : bool
        Train with hard decisions [a >= 0] instead of sigmoids (routing then learns only from the
        hardening term).
    seed : int or None
        Seeds the initialisation, and the training randomness (region leak, dropout) of
        ``train_forward`` calls without ``rng``; :func:`fffcpu.training.fit` draws that randomness
        (and the shuffling) from its own ``seed`` instead.
    dtype : {"float32", "float64"}
    backend : {"auto", "numba", "numpy"}
        Hard inference through the Numba kernels ("auto", "numba") or the NumPy reference.
    master_leaf : int
        Width m of the eFFF master leaf (SPEC §3), an always-on feedforward net mixed into the output
        as ``y = s y_FFF + (1 - s) M(x)``, ``s = sigmoid(kappa)``; 0 (the default) for none, 8 in eFFF.

    Attributes
    ----------
    params : dict of ndarray
        ``node_weights`` (N, D), ``node_biases`` (N, 1), ``w1s`` (L, D, l), ``b1s`` (L, l),
        ``w2s`` (L, l, O), ``b2s`` (L, O) with N = 2^d - 1, L = 2^d; with a master leaf also
        ``magic_w1`` (1, D, m), ``magic_b1`` (1, m), ``magic_w2`` (1, m, O), ``magic_b2`` (1, O), ``k`` ().
        ``params[name] = value`` copies the value into the array, after checking its shape and values.

    Examples
    --------
    >>> import numpy as np, fffcpu
    >>> layer = fffcpu.FFF(input_width=4, leaf_width=2, output_width=3, depth=2, seed=0)
    >>> layer(np.ones((5, 4))).shape
    (5, 3)
    """

    kind = "fff"

    def __init__(self, input_width, leaf_width, output_width, depth, activation="relu", dropout=0.0,
                 region_leak=0.0, train_hardened=False, seed=None, dtype="float32", backend="auto",
                 master_leaf=0):
        self.input_width = check_int("input_width", input_width, 1)
        self.leaf_width = check_int("leaf_width", leaf_width, 1)
        self.output_width = check_int("output_width", output_width, 1)
        self.depth = check_int("depth", depth, 0)
        # checked by Layer.__setattr__, here and whenever they are set later
        self.activation = activation
        self.dropout = dropout
        self.region_leak = region_leak
        self.train_hardened = train_hardened
        self.master_leaf = check_int("master_leaf", master_leaf, 0)
        if self.depth > 62:
            raise MemoryError(f"depth {self.depth} would need 2^{self.depth} leaves; choose a smaller depth")
        self._init_common(dtype, backend, seed)
        check_fits_memory(f"an FFF of depth {self.depth}", self._count_params(), np.dtype(self.dtype).itemsize)
        params = ref.init_params(self.input_width, self.leaf_width, self.output_width, self.depth,
                                 self._rng, self.dtype, self.master_leaf)
        # 64-byte aligned copies (see fffcpu._aligned), one array at a time: the peak stays near one copy
        self.params = {name: aligned_copy(params.pop(name)) for name in list(params)}

    # -- sizes --------------------------------------------------------------------------------
    @property
    def n_nodes(self):
        return n_nodes(self.depth)

    @property
    def n_leaves(self):
        return n_leaves(self.depth)

    @property
    def training_width(self):
        """2^d * l: the width of the dense layer this FFF replaces."""
        return self.n_leaves * self.leaf_width

    def _count_params(self):
        N, L = self.n_nodes, self.n_leaves
        D, l, O = self.input_width, self.leaf_width, self.output_width
        m = self.master_leaf
        return N * (D + 1) + L * (D * l + l + l * O + O) + (D * m + m + m * O + O + 1 if m else 0)

    def _param_shapes(self):
        return ref.param_shapes(self.input_width, self.leaf_width, self.output_width, self.depth,
                                self.master_leaf)

    def config(self):
        return dict(input_width=self.input_width, leaf_width=self.leaf_width,
                    output_width=self.output_width, depth=self.depth, activation=self.activation,
                    dropout=self.dropout, region_leak=self.region_leak,
                    train_hardened=self.train_hardened, seed=self.seed,
                    dtype=np.dtype(self.dtype).name, backend=self.backend,
                    master_leaf=self.master_leaf)

    @classmethod
    def _sizes_from_state_dict(cls, mapping):
        if "w1s" not in mapping or "w2s" not in mapping:
            raise KeyError(f"an FFF state needs the arrays 'w1s' and 'w2s'; got {sorted(mapping)}")
        w1s, w2s = _to_numpy(mapping["w1s"]), _to_numpy(mapping["w2s"])
        if w1s.ndim != 3 or w2s.ndim != 3:
            raise ValueError(f"'w1s' and 'w2s' must be 3-D (n_leaves, ., .), got shapes {w1s.shape} and {w2s.shape}")
        L, D, l = w1s.shape
        depth = int(L).bit_length() - 1
        if L < 1 or (1 << depth) != L:
            raise ValueError(f"'w1s' must have a power of two of leaves on axis 0, got {L}")
        # the sizes come from w1s and w2s: where those two disagree, say so (the check of the others'
        # shapes against them blamed a right 'b2s' for a wrong 'w2s')
        if w2s.shape[:2] != (L, l):
            raise ValueError(f"'w2s' must have shape ({L}, {l}, output_width) to match 'w1s' of shape {w1s.shape} "
                             f"(n_leaves, input_width, leaf_width), got {w2s.shape}")
        b2s_shape = np.shape(_to_numpy(mapping["b2s"])) if "b2s" in mapping else None
        if b2s_shape is not None and len(b2s_shape) == 2 and b2s_shape[1] != w2s.shape[2]:
            raise ValueError(f"'w2s' of shape {w2s.shape} and 'b2s' of shape {b2s_shape} disagree on the output "
                             f"width ({w2s.shape[2]} against {b2s_shape[1]}): one of them is not this layer's")
        # master_leaf 0 without the master leaf's arrays: fffcpu.load checked the other sizes against the
        # arrays before building the layer, but a config's master_leaf of 10**8 allocated gigabytes first
        sizes = dict(input_width=D, leaf_width=l, output_width=w2s.shape[2], depth=depth, master_leaf=0)
        if "magic_w1" in mapping:  # the eFFF authors' master leaf
            mw1 = _to_numpy(mapping["magic_w1"])
            if mw1.ndim != 3:
                raise ValueError(f"'magic_w1' must be 3-D (1, input_width, m), got shape {mw1.shape}")
            sizes["master_leaf"] = mw1.shape[2]
        return sizes

    # -- inference ----------------------------------------------------------------------------
    def _hard_numpy(self, x2d):
        return ref.hard_forward(self.params, x2d, self.activation)

    def _kernel_arrays(self):
        """The parameters as the kernels take them: :func:`fffcpu._kernel_api.leaf_kernel_args`.

        The arrays are the parameters themselves (no copy; the layer keeps them C-contiguous in its
        dtype) and are cached keyed on their identity; ``s = sigmoid(k)`` is re-read on every call
        because ``k`` is updated in place by the optimizers (the arguments with it are kept while it
        stays the same).
        """
        p = self.params
        names = self.__dict__.get("_kernel_names")
        if names is None:
            names = tuple(name for name in self._param_shapes() if name != "k")  # k: a scalar, below
            self._kernel_names = names
        # keyed on the arrays' ids: the cache holds the arrays, so an id cannot be reused meanwhile
        key = tuple(map(id, map(p.__getitem__, names)))
        cached = self.__dict__.get("_kernel_cache")
        if cached is not None and cached[0] == key:
            args = cached[2]
        else:
            arrays = tuple(p[name] for name in names)
            conv = {name: np.ascontiguousarray(p[name], dtype=self.dtype) for name in names}
            cacheable = all(conv[name] is p[name] for name in names)  # the parameters themselves
            if self.master_leaf:
                conv["k"] = p["k"]
            args = _kernel_api.leaf_kernel_args(conv)
            if cacheable:
                self._kernel_cache = (key, arrays, args)  # the kernel arguments last (Layer._one_sample)
        if self.master_leaf:  # the kept arguments with this call's share, kept while s stays the same
            s = _kernel_api.mix_share(p["k"], self.dtype)
            mixed = self.__dict__.get("_mixed_args")
            if mixed is not None and mixed[0] is args and mixed[1] == s:
                return mixed[2]
            base = args
            args = args[:10] + (s,)
            if super()._args_are_kept(base):
                self._mixed_args = (base, s, args)
        return args

    def _args_are_kept(self, args):
        """As :meth:`Layer._args_are_kept`; with a master leaf, the kept arguments with the current
        share ``s`` (``_mixed_args``): a batch call bound a new function every time (about 1 us)."""
        if not self.master_leaf:
            return super()._args_are_kept(args)
        mixed = self.__dict__.get("_mixed_args")
        return mixed is not None and mixed[2] is args

    def _bind_one_sample(self, args):
        return _kernel_api.leaf_one_sample(args, self.activation)

    def _bind_batch(self, args):
        return _kernel_api.leaf_batch(args, self.activation)

    def _hard_numba(self, x2d, check_finite=False):
        """Kernel inference of ``x2d`` (n, D), or of one sample (D,) -> (O,); both C-contiguous in
        the layer's dtype. With ``check_finite``, returns None when ``x2d`` holds NaN or inf (or a
        routing logit overflows: the caller then validates ``x2d`` and calls again without the check).

        The eFFF master leaf, when there is one, is mixed in by the kernels themselves.
        """
        args = self._kernel_arrays()
        if x2d.ndim == 1:  # one sample: the finiteness check rides along in the same kernel call
            if self.master_leaf:
                return _kernel_api.leaf_forward_one(args, self.activation, x2d)
            return self._one_sample(args)(x2d)
        return self._batch(args)(x2d, check_finite)

    def soft_forward(self, x):
        """The soft mixture y = sum_j pi_j(x) L_j(x), deterministic (no leak, no dropout)."""
        x2d, lead = as_input(x, self.input_width, self.dtype)
        y, _ = ref.soft_forward(self.params, x2d, self.activation)
        return y.reshape(lead + (self.output_width,))

    def leaf_index(self, x):
        """The leaf each sample's hard descent reaches: (..., D) -> (...) int."""
        x2d, lead = as_input(x, self.input_width, self.dtype)
        return ref.hard_leaf_index(self.params, x2d).reshape(lead)

    def entropies(self, x):
        """Per-node decision entropies H(p_k(x)): (..., D) -> (..., N)."""
        x2d, lead = as_input(x, self.input_width, self.dtype)
        p = expit(ref.node_logits(self.params, x2d))
        return ref.entropy(p).reshape(lead + (self.n_nodes,))

    def usage(self, x):
        """Routing mass per node and leaf over a batch: ``soft_node``, ``soft_leaf``, ``hard_node``, ``hard_leaf``."""
        x2d, _ = as_input(x, self.input_width, self.dtype)
        return ref.usage(self.params, x2d)

    # -- training -----------------------------------------------------------------------------
    def train_forward(self, x, rng=None):
        """Training forward: soft (or hardened) mixture with region leak and dropout drawn from ``rng``.

        Returns ``(y, cache)``; pass the cache to :meth:`backward`.
        """
        x2d, lead = as_input(x, self.input_width, self.dtype)
        if rng is not None and not callable(getattr(rng, "random", None)):  # rng=0 failed in the draws
            raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed)), a RandomState "
                            f"or None for the layer's own, got {type(rng).__name__}")
        rng = self._rng if rng is None else rng
        n = x2d.shape[0]
        flip = None
        if self.region_leak > 0 and self.n_nodes:
            flip = rng.random((n, self.n_nodes)) < self.region_leak
        drop = None
        if self.dropout > 0:
            keep = rng.random((n, self.n_leaves, self.leaf_width)) >= self.dropout
            drop = keep.astype(self.dtype) / self.dtype(1 - self.dropout)
        y, cache = ref.soft_forward(self.params, x2d, self.activation, flip_mask=flip,
                                    dropout_mask=drop, hardened=self.train_hardened)
        cache["lead"], cache["layer"] = lead, self
        return y.reshape(lead + (self.output_width,)), cache

    def backward(self, cache, dL_dy, hardening=0.0, balance=0.0):
        """Gradients of L_task + hardening * L_harden + balance * L_balance.

        Parameters
        ----------
        cache : dict from :meth:`train_forward`
        dL_dy : array_like of shape (..., output_width)
            dL_task/dy for the forward's output.
        hardening, balance : float
            h and alpha of SPEC §1 and §3.

        Returns
        -------
        grads : dict of ndarray, keyed like ``params``
        dL_dx : ndarray of shape (..., input_width)
        """
        self._check_cache(cache)
        n = cache["x"].shape[0]
        g = as_grad(dL_dy, n, self.output_width, self.dtype)
        hardening = check_nonneg_float("hardening", hardening)
        balance = check_nonneg_float("balance", balance)
        grads, dL_dx = ref.soft_backward(self.params, cache, g, hardening, balance)
        return grads, dL_dx.reshape(cache["lead"] + (self.input_width,))

    def hardening_loss(self, cache):
        """L_harden of SPEC §1 for the batch of ``cache``."""
        return ref.hardening_loss(cache)

    def balance_loss(self, cache):
        """L_balance of SPEC §3 for the batch of ``cache``."""
        return ref.balance_loss(cache)

    def block_usage(self, cache):
        """Hard usage per parameter block for the local optimizers: ``{name: (n_blocks,) counts}``.

        Whole counts (int64): a fraction times the batch size can come back as 2.9999998, and a
        block due after exactly 3 samples would then wait a step.
        """
        leaf = ref.hard_leaf_counts(cache)
        node = ref.subtree_sums(leaf)
        out = {name: leaf for name in ("w1s", "b1s", "w2s", "b2s")}
        out.update(node_weights=node, node_biases=node)
        return out
