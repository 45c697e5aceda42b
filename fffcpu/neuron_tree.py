"""The neuron-tree FFF of UltraFastBERT: validation and dispatch over the NumPy reference and kernels."""
import numpy as np

from . import _kernel_api
from ._aligned import aligned_copy
from ._base import Layer, _state_arrays, _to_numpy
from ._validate import as_grad, as_input, check_fits_memory, check_int, check_nonneg_float
from .reference import neuron_tree as ref

#: deepest tree accepted before the memory check (2^(d+1) - 1 neurons per tree must stay an int64)
MAX_DEPTH = 60


class NeuronTreeFFF(Layer):
    """A neuron-tree fast feedforward layer, the UltraFastBERT variant (SPEC §2).

    Each of ``parallel_size`` trees holds N = 2^(depth+1) - 1 neurons in heap order; every neuron routes
    (a > 0 goes right) and contributes act(a) times its output column. One inference visits
    ``depth + 1`` neurons per tree, ``parallel_size * (depth + 1)`` of ``parallel_size * N``.

    Parameters
    ----------
    input_width, output_width : int
        D and O; >= 1.
    depth : int
        d >= 0 decisions per tree (d + 1 levels). Depth 0 is one gelu neuron per tree.
    parallel_size : int
        P >= 1 trees whose outputs are added.
    activation : {"gelu", "relu", "tanh", "sigmoid", "identity"}
        gelu is the exact (erf) gelu of UltraFastBERT.
    seed : int or None
        Seeds the initialisation (training has no randomness).
    dtype : {"float32", "float64"}
    backend : {"auto", "numba", "numpy"}
        Hard inference through the Numba kernels ("auto", "numba") or the NumPy reference.

    Attributes
    ----------
    params : dict of ndarray
        ``linear_in.weight`` (P*N, D), ``linear_in.bias`` (P*N,), ``linear_out.weight`` (O, P*N).
        ``linear_out.weight`` is a transposed view of C-contiguous (P*N, O) storage (one row per neuron,
        the layout the kernels read); updates must be in place (``p -= lr * g``, ``p[...] = v``, or
        ``params[name] = v``, which copies into the array after checking its shape and values).

    Examples
    --------
    >>> import numpy as np
    >>> from fffcpu.neuron_tree import NeuronTreeFFF
    >>> layer = NeuronTreeFFF(input_width=4, output_width=3, depth=2, parallel_size=2, seed=0)
    >>> layer(np.ones((5, 4))).shape
    (5, 3)
    """

    kind = "neuron_tree"

    def __init__(self, input_width, output_width, depth, parallel_size=1, activation="gelu", seed=None,
                 dtype="float32", backend="auto"):
        self.input_width = check_int("input_width", input_width, 1)
        self.output_width = check_int("output_width", output_width, 1)
        self.depth = check_int("depth", depth, 0)
        self.parallel_size = check_int("parallel_size", parallel_size, 1)
        self.activation = activation  # checked by Layer.__setattr__
        if self.depth > MAX_DEPTH:
            raise MemoryError(f"depth {self.depth} would need 2^{self.depth + 1} - 1 neurons per tree; "
                              "choose a smaller depth")
        self._init_common(dtype, backend, seed)
        check_fits_memory(f"a neuron-tree FFF of depth {self.depth} with {self.parallel_size} tree(s)",
                          self._count_params(), np.dtype(self.dtype).itemsize)
        p = ref.init_params(self.input_width, self.output_width, self.depth, self.parallel_size,
                            self._rng, self.dtype)
        # kernel layout: neuron r's output weights are row r, contiguous; 64-byte aligned copies
        # (see fffcpu._aligned), one array at a time: the peak stays near one copy
        self._w_out_t = aligned_copy(p.pop("linear_out.weight").T)
        self.params = {"linear_in.weight": aligned_copy(p.pop("linear_in.weight")),
                       "linear_in.bias": aligned_copy(p.pop("linear_in.bias")),
                       "linear_out.weight": self._w_out_t.T}

    def __getstate__(self):
        """As :meth:`Layer.__getstate__`, without ``_w_out_t``: it is ``linear_out.weight``'s transpose,
        which a pickle stored a second time (and an unpickled layer held twice)."""
        state = super().__getstate__()
        state.pop("_w_out_t", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        params = self.__dict__.get("params")
        if params is not None and "linear_out.weight" in params:
            self.__dict__["_w_out_t"] = params["linear_out.weight"].T

    def _checked_params(self, value):
        """``layer.params = mapping`` (see :meth:`Layer._checked_params`)."""
        params = super()._checked_params(value)
        if "params" in self.__dict__:
            self._w_out_t = params["linear_out.weight"].T
        return params

    def _kept(self, name, a):
        """As :meth:`Layer._kept`, but ``linear_out.weight`` in the kernel layout: the transpose of a
        C-contiguous (P*N, O) array. A state dict's (O, P*N) C-order array was kept as given, and
        every call then copied its transpose and bound a new one-sample function (one sample 50 times
        slower)."""
        if name != "linear_out.weight":
            return super()._kept(name, a)
        a = np.asarray(a)
        t = a.T
        kept = super()._kept(name, t)
        return a if kept is t else kept.T

    # -- sizes --------------------------------------------------------------------------------
    @property
    def n_nodes(self):
        """Neurons per tree: 2^(depth+1) - 1."""
        return ref.n_tree_nodes(self.depth)

    @property
    def training_width(self):
        """P * N: the width of the dense layer this replaces (all neurons, as in masked training)."""
        return self.parallel_size * self.n_nodes

    @property
    def inference_width(self):
        """P * (depth + 1): the neurons one inference visits."""
        return self.parallel_size * (self.depth + 1)

    def _count_params(self):
        return self.training_width * (self.input_width + 1 + self.output_width)

    def _param_shapes(self):
        return ref.param_shapes(self.input_width, self.output_width, self.depth, self.parallel_size)

    def config(self):
        return dict(input_width=self.input_width, output_width=self.output_width, depth=self.depth,
                    parallel_size=self.parallel_size, activation=self.activation, seed=self.seed,
                    dtype=np.dtype(self.dtype).name, backend=self.backend)

    @classmethod
    def _sizes_from_state_dict(cls, mapping, parallel_size=None, depth=None):
        """Infer the size arguments from array shapes.

        ``linear_in.weight`` has P*N rows, which does not tell P and the depth apart (a tree of depth 2
        has 7 rows, as do 7 trees of depth 0). Without hints one tree is assumed; pass ``parallel_size``
        or ``depth`` (or both, then checked) for a forest.
        """
        names = ("linear_in.weight", "linear_out.weight")
        if any(k not in mapping for k in names):
            raise KeyError(f"a neuron-tree FFF state needs the arrays {list(names)}; got {sorted(mapping)}")
        w_in, w_out = (_to_numpy(mapping[k]) for k in names)
        if w_in.ndim != 2 or w_out.ndim != 2:
            raise ValueError("'linear_in.weight' and 'linear_out.weight' must be 2-D, got shapes "
                             f"{w_in.shape} and {w_out.shape}")
        rows = w_in.shape[0]
        if w_out.shape[1] != rows:
            raise ValueError(f"'linear_out.weight' must have one column per row of 'linear_in.weight' ({rows}), "
                             f"got shape {w_out.shape}")
        if depth is not None:
            depth = check_int("depth", depth, 0)
            if depth > MAX_DEPTH:
                raise ValueError(f"depth must be <= {MAX_DEPTH}, got {depth}")
        if parallel_size is not None:
            parallel_size = check_int("parallel_size", parallel_size, 1)
        if depth is None:
            P = 1 if parallel_size is None else parallel_size
            N = rows // P
            if rows < 1 or rows % P or (N + 1) & N:
                hint = ""
                if parallel_size is None and rows > 0:  # the (parallel_size, depth) pairs that fit, shallowest last
                    fits = [(rows // (2 ** (d + 1) - 1), d) for d in range(min(rows.bit_length(), MAX_DEPTH + 1))
                            if rows % (2 ** (d + 1) - 1) == 0]
                    shown = ", ".join(f"parallel_size {p} at depth {d}" for p, d in fits[::-1][:4])
                    hint = (f"; the rows fit {shown}{', ...' if len(fits) > 4 else ''}: pass parallel_size (or "
                            "depth) to from_state_dict or fffcpu.interop.load_any (fffcpu convert: "
                            "--parallel-size)")
                raise ValueError(f"'linear_in.weight' has {rows} rows, which is not parallel_size {P} "
                                 f"times 2^(depth+1) - 1 for any depth{hint}")
            depth = N.bit_length() - 1
        else:
            N = ref.n_tree_nodes(depth)
            P = rows // N if parallel_size is None else parallel_size
            if parallel_size is None and (P < 1 or P * N != rows):
                raise ValueError(f"'linear_in.weight' has {rows} rows, not a multiple of {N}, the neurons "
                                 f"of one tree of depth {depth}")
            if P * N != rows:
                raise ValueError(f"'linear_in.weight' has {rows} rows, but parallel_size {P} trees of depth "
                                 f"{depth} have {P * N} neurons")
        return dict(input_width=w_in.shape[1], output_width=w_out.shape[0], depth=depth, parallel_size=P)

    @classmethod
    def from_state_dict(cls, mapping, **config):
        """Build a layer from ``{name: array}`` (NumPy arrays or torch tensors), inferring its sizes.

        A converted UltraFastBERT state_dict (``linear_in.weight``, ``linear_in.bias``,
        ``linear_out.weight``) loads as is. ``config`` holds what shapes cannot tell (activation,
        seed, dtype, backend, and ``parallel_size`` or ``depth`` for a forest of several trees); size
        arguments in ``config`` (as in ``layer.config()``) are checked against the arrays. The dtype is
        taken from the arrays unless ``dtype`` is given.
        """
        mapping = _state_arrays(mapping, cls.__name__)
        sizes = cls._sizes_from_state_dict(mapping, config.get("parallel_size"), config.get("depth"))
        return cls._build(mapping, sizes, config)

    # -- inference ----------------------------------------------------------------------------
    def _kernel_arrays(self):
        """``(w_in (P*N, D), b_in (P*N,), w_out_t (P*N, O))``, C-contiguous in the layer's dtype.

        No copies while the parameters are only updated in place (then ``w_out_t`` shares
        ``self._w_out_t``'s memory; ``params[name] = value`` copies into the array, see
        :class:`fffcpu._base.Params`); if a caller assigned a new ``layer.params`` mapping, the kernels
        see its arrays (converted). Views of the parameters' own memory are cached (they always show the
        current values); the cache is keyed on the identity of the three parameter arrays.
        """
        p = self.params
        w_in, b_in, w_out = p["linear_in.weight"], p["linear_in.bias"], p["linear_out.weight"]
        cached = self.__dict__.get("_kernel_cache")
        if cached is not None and cached[0] is w_in and cached[1] is b_in and cached[2] is w_out:
            return cached[3]
        arrays = tuple(np.ascontiguousarray(a, dtype=self.dtype) for a in (w_in, b_in, w_out.T))
        if arrays[0] is w_in and arrays[1] is b_in and np.shares_memory(arrays[2], w_out):
            self._kernel_cache = (w_in, b_in, w_out, arrays)  # kernel arguments last (Layer._one_sample)
        return arrays

    def _bind_one_sample(self, arrays):
        return _kernel_api.neuron_tree_one_sample(*arrays, self.depth, self.parallel_size, self.activation)

    def _bind_batch(self, arrays):
        return _kernel_api.neuron_tree_batch(*arrays, self.depth, self.parallel_size, self.activation)

    def _hard_numpy(self, x2d):
        return ref.hard_forward(self.params, x2d, self.depth, self.parallel_size, self.activation)

    def _hard_numba(self, x2d, check_finite=False):
        """Kernel inference of ``x2d`` (n, D), or of one sample (D,) -> (O,); both C-contiguous in
        the layer's dtype. With ``check_finite``, returns None when ``x2d`` holds NaN or inf."""
        arrays = self._kernel_arrays()
        if x2d.ndim == 1:  # one sample: the finiteness check rides along in the same kernel call
            return self._one_sample(arrays)(x2d)
        return self._batch(arrays)(x2d, check_finite)

    def path(self, x):
        """The neurons each tree visits, numbered 0 .. N-1 inside its tree: (..., D) -> (..., P, depth+1) int."""
        x2d, lead = as_input(x, self.input_width, self.dtype)
        rows, _ = ref.hard_path(self.params, x2d, self.depth, self.parallel_size)
        return (rows % self.n_nodes).reshape(lead + rows.shape[1:])

    def leaf_index(self, x):
        """The last-level neuron each tree reaches, 0 .. 2^depth - 1: (..., D) -> (..., P) int."""
        x2d, lead = as_input(x, self.input_width, self.dtype)
        rows, _ = ref.hard_path(self.params, x2d, self.depth, self.parallel_size)
        return ref.leaf_index(rows, self.depth).reshape(lead + (self.parallel_size,))

    def usage(self, x):
        """Hard visit counts over a batch: ``hard_node`` (P*N,) per neuron, ``hard_leaf`` (P, 2^depth)."""
        x2d, _ = as_input(x, self.input_width, self.dtype)
        return ref.usage(self.params, x2d, self.depth, self.parallel_size)

    # -- training -----------------------------------------------------------------------------
    def train_forward(self, x, rng=None):
        """Masked training forward of SPEC §2 (all logits, activations off the hard path zeroed).

        Its output equals ``self(x)`` up to rounding. ``rng`` is accepted for the layer protocol and
        unused: neuron-tree training draws no random numbers.

        Returns
        -------
        y : ndarray of shape (..., output_width)
        cache : dict
            Pass it to :meth:`backward`.
        """
        x2d, lead = as_input(x, self.input_width, self.dtype)
        y, cache = ref.masked_forward(self.params, x2d, self.depth, self.parallel_size, self.activation)
        cache["lead"], cache["layer"] = lead, self
        return y.reshape(lead + (self.output_width,)), cache

    def backward(self, cache, dL_dy, hardening=0.0, balance=0.0):
        """Gradients of the task loss through the masked forward; routing gets no gradient.

        Parameters
        ----------
        cache : dict from :meth:`train_forward`
        dL_dy : array_like of shape (..., output_width)
            dL/dy for the forward's output.
        hardening, balance : float >= 0
            Accepted for the layer protocol and without effect: a neuron tree's routing is hard
            already and has no soft probabilities to harden or balance.

        Returns
        -------
        grads : dict of ndarray, keyed like ``params`` (same shapes, SPEC layout)
        dL_dx : ndarray of shape (..., input_width)
        """
        check_nonneg_float("hardening", hardening)
        check_nonneg_float("balance", balance)
        self._check_cache(cache)
        n = cache["x"].shape[0]
        g = as_grad(dL_dy, n, self.output_width, self.dtype)
        grads, dL_dx = ref.masked_backward(self.params, cache, g)
        return grads, dL_dx.reshape(cache["lead"] + (self.input_width,))

    def hardening_loss(self, cache):
        """Always 0.0: the routing is hard (see :meth:`backward`)."""
        return 0.0

    def balance_loss(self, cache):
        """Always 0.0: no load-balancing term for the neuron tree."""
        return 0.0

    def block_usage(self, cache):
        """Hard usage per parameter block (dim 0) for the local optimizers: ``{name: (n_blocks,) counts}``.

        A block of ``linear_in.*`` is one neuron (its visit count); a block of ``linear_out.weight`` is one
        output row, which every sample reaches.
        """
        node = cache["mask"].sum(axis=0)
        n = cache["x"].shape[0]
        return {"linear_in.weight": node, "linear_in.bias": node,
                "linear_out.weight": np.full(self.output_width, n, dtype=node.dtype)}
