"""What every fffcpu layer shares: parameters as a dict of NumPy arrays, validation, dispatch.

A layer subclass provides
- ``kind``: the name save/load records (``"fff"``, ``"neuron_tree"``);
- ``_param_shapes()``: ordered ``{name: shape}`` in the PyTorch package's state_dict order;
- ``config()``: the JSON-able hyperparameters that rebuild it with ``cls(**config)``;
- ``_sizes_from_state_dict(mapping)`` (classmethod): the size arguments inferred from array shapes;
- ``_hard_numpy(x2d)`` and ``_hard_numba(x2d, check_finite=False)``: hard inference on a validated
  (n, input_width) batch; ``_hard_numba`` also takes one sample (input_width,) -> (output_width,), and
  with ``check_finite`` returns None for NaN/inf input (the lean path of ``__call__``);
- ``train_forward(x, rng=None)`` -> ``(y, cache)`` and ``backward(cache, dL_dy, ...)`` -> ``(grads, dL_dx)``.

Parameters are updated **in place** by the optimizers (``p -= lr * g``), so kernels and views always
see the current values; ``layer.params`` is a :class:`Params`, whose item assignment copies into the
array too.
"""
import math

import numpy as np

from . import activations
from ._aligned import aligned_empty
from ._validate import as_input, check_bool, check_choice, check_dtype, check_int, check_rate

BACKENDS = ("auto", "numba", "numpy")


def _checked_activation(value):
    """The name, as a plain ``str``: a NumPy string (``np.load(...)["activation"][()]``) passed the
    check, and every kernel call then failed ("invalid literal for int()": the kernels take a name
    only as a ``str``, anything else as an activation code)."""
    activations.get(value)  # raises naming the choices
    return str(value)


#: attributes a user may change after construction, each with its check (run on every assignment)
_SETTABLE = {
    "activation": _checked_activation,
    "dropout": lambda v: check_rate("dropout", v),
    "region_leak": lambda v: check_rate("region_leak", v, upper_inclusive=True),  # 1: every decision swapped
    "train_hardened": lambda v: check_bool("train_hardened", v),
    "backend": lambda v: str(check_choice("backend", v, BACKENDS)),
}

#: attributes fixed at construction: the parameter arrays (their shapes, their dtype), the kernels'
#: cached arguments and compiled entry points, and a saved file's config follow them
_FIXED = ("input_width", "output_width", "leaf_width", "depth", "parallel_size", "master_leaf", "seed",
          "dtype")


class Params(dict):
    """A layer's parameter arrays by name (a dict). Assigning to a parameter's name,
    ``params["k"] = 0.5``, copies the value into its array, checked as :meth:`Layer.load_state_dict`
    checks it (shape, real finite numbers that fit the dtype): a rebound array of another shape made
    the kernels read past its end, and one of another dtype made the NumPy reference answer in that
    dtype. A new name (a subclass's extra parameter) is stored as given."""

    __slots__ = ()

    def __setitem__(self, name, value):
        target = self.get(name)
        if target is None:
            dict.__setitem__(self, name, value)
            return
        if value is target:  # params[name] -= g: already done in place
            return
        target[...] = self._checked(name, value)

    def _checked(self, name, value):
        """``value`` for the parameter array ``name``, checked as :meth:`Layer.load_state_dict` does."""
        target = self[name]
        return _check_mapping({name: value}, {name: target.shape}, "a parameter", target.dtype)[name]

    def update(self, *args, **kwargs):
        """All or nothing: every value is checked before any array changes (one at a time, a bad
        value after good ones left the good ones copied in)."""
        items = dict(*args, **kwargs)
        checked = {name: self._checked(name, value) for name, value in items.items()
                   if self.get(name) is not None and value is not self[name]}
        for name, value in items.items():
            if name in checked:
                self[name][...] = checked[name]
            elif self.get(name) is None:
                dict.__setitem__(self, name, value)

    def __ior__(self, other):  # params |= {...}: dict's own would store the values unchecked
        self.update(other)
        return self

    def __reduce__(self):  # copy/deepcopy: rebuild from a plain dict, not item by item
        return type(self), (dict(self),)


class Layer:
    kind = None
    #: attributes that only cache views of the parameters, or functions bound to them; a copy of the
    #: layer (``copy.deepcopy``) rebuilds them, since copied ones would still read the original's arrays
    _CACHES = ("_kernel_cache", "_kernel_names", "_one_sample_fn", "_batch_fn", "_mixed_args")

    def __setattr__(self, name, value):
        """Checks the hyperparameters a user may set (``activation``, ``dropout``, ``region_leak``,
        ``train_hardened``, ``backend``) and refuses to change the sizes, the seed and the dtype: an
        unchecked value was used silently (a dropout of 2) and then saved into a file that
        ``fffcpu.load`` refuses; a changed dtype broke the batch calls of every other layer (the
        compiled entry points are kept per process)."""
        check = _SETTABLE.get(name)
        if check is not None:
            value = check(value)
        elif name == "params":
            value = self._checked_params(value)
        elif name in _FIXED and name in self.__dict__:
            if name == "dtype":
                try:
                    wanted = repr(np.dtype(value).name)
                except TypeError:
                    wanted = repr(value)
                raise AttributeError(f"dtype is fixed at construction (this layer's is "
                                     f"{np.dtype(self.dtype).name}, got {wanted}); layer.astype({wanted}) "
                                     "returns a converted copy")
            raise AttributeError(
                f"{name} is fixed at construction (this layer's is {self.__dict__[name]!r}, got {value!r}): "
                f"the parameter arrays follow it; build a new layer with "
                f"type(layer)(**dict(layer.config(), {name}=...))"
            )
        object.__setattr__(self, name, value)

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._CACHES:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        """An unpickled layer (``pickle``, ``multiprocessing``): its arrays come back with a dtype
        equal to the layer's but not the same object, for which ``np.ascontiguousarray(a, dtype)``
        returns a new view; so the kernel arguments, keyed on the parameters themselves, were never
        kept, and every call rebuilt them and bound a new function (one sample 25 to 50 times
        slower). The parameters are taken back as views with the layer's own dtype object, in a new
        :class:`Params` (``copy.copy`` shares the original's, which must stay as it was).

        They are not realigned to 64 bytes (:mod:`fffcpu._aligned`; an unpickled array is 16-byte
        aligned, about 0.3 us more per sample): a copy would untie what the pickle keeps together,
        two layers sharing an array, or a layer and an array pickled beside it."""
        self.__dict__.update(state)
        descr = np.dtype(self.dtype)
        self.__dict__["_descr"] = descr
        params = self.__dict__.get("params")
        if params is not None:
            self.__dict__["params"] = Params(
                {name: a.view(descr) if isinstance(a, np.ndarray) and a.dtype == descr and a.dtype is not descr
                 else a for name, a in params.items()})

    def _checked_params(self, value):
        """``layer.params = mapping``: the layer's own arrays at construction; afterwards a mapping
        with the same names and shapes, each array kept as given where the kernels can use it as it
        is, else copied (:meth:`_kept`)."""
        if "params" not in self.__dict__:
            return Params(value)
        shapes = {name: np.shape(a) for name, a in self.params.items()}
        arrays = _check_mapping(value, shapes, type(self).__name__, self.dtype)
        return Params({name: self._kept(name, arrays[name]) for name in shapes})

    def _kept(self, name, a):
        """The array the layer keeps for parameter ``name`` when assigned ``a`` (checked): ``a`` itself
        when it is C-contiguous, writable and of the layer's dtype, else a 64-byte aligned C-order copy
        in that dtype. A Fortran-order or strided array kept as given was copied by every call (one
        sample 4 to 130 times slower); a read-only one (``np.load(..., mmap_mode="r")``) could not be
        trained and compiled kernel variants that ``fffcpu.warmup()`` does not."""
        a = np.asarray(a)
        if a.dtype == self._descr and a.flags.c_contiguous and a.flags.writeable:
            # an unpickled array's dtype is equal but another object: a view with the layer's own, or
            # the kernel arguments (keyed on the arrays) were rebuilt by every call (30x slower)
            return a if a.dtype is self._descr else a.view(self._descr)
        out = aligned_empty(a.shape, self._descr)
        out[...] = a
        return out

    def _init_common(self, dtype, backend, seed):
        self.dtype = check_dtype(dtype)  # the NumPy scalar type, fixed (see __setattr__)
        self._descr = np.dtype(self.dtype)  # for the lean path of __call__
        self.backend = backend
        self.seed = None if seed is None else check_int("seed", seed, 0)
        self._rng = np.random.default_rng(seed)

    def astype(self, dtype):
        """A new layer like this one with parameters converted to ``dtype`` ("float32" or "float64")."""
        config = dict(self.config(), dtype=np.dtype(check_dtype(dtype)).name)
        return type(self).from_state_dict(self.state_dict(), **config)

    # -- parameters ---------------------------------------------------------------------------
    def _param_shapes(self):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def n_params(self):
        """Total number of trainable numbers."""
        return int(sum(np.prod(s) for s in self._param_shapes().values()))

    def state_dict(self):
        """Copies of the parameters, ``{name: ndarray}``, in the PyTorch package's order and layout."""
        return {name: np.array(self.params[name], order="C", copy=True) for name in self._param_shapes()}

    def _check_cache(self, cache):
        """``backward``'s check that ``cache`` is what this layer's ``train_forward`` returned (it
        records the layer as ``cache["layer"]``): the cache of a layer of other sizes gave a NumPy
        broadcasting error or, for a neuron tree, gradients of the other layer's shapes, and one of
        another layer of the same sizes gradients of the wrong weights; ``{}`` gave KeyError 'x'."""
        if not isinstance(cache, dict) or "layer" not in cache:
            raise TypeError(f"cache must be the dict that this layer's train_forward returned, got "
                            f"{type(cache).__name__}" + ("" if not isinstance(cache, dict) else
                                                        f" with keys {sorted(map(str, cache))[:8]}"))
        if cache["layer"] is not self:
            other = cache["layer"]
            raise ValueError(f"cache comes from the train_forward of another layer ({type(other).__name__} "
                             f"{getattr(other, 'config', dict)()}), not of this one; pass the cache of this "
                             "layer's own train_forward")

    def load_state_dict(self, mapping):
        """Copy arrays from ``mapping`` into this layer's parameters (same names and shapes required)."""
        arrays = _check_mapping(mapping, self._param_shapes(), type(self).__name__, self.dtype)
        for name, arr in arrays.items():
            self.params[name][...] = arr
        return self

    @classmethod
    def from_state_dict(cls, mapping, **config):
        """Build a layer from ``{name: array}`` (NumPy arrays or torch tensors), inferring its sizes.

        ``config`` holds the hyperparameters that shapes cannot tell (activation, ...); size arguments
        in it (as in ``layer.config()``) are checked against the arrays. The dtype is taken from the
        arrays unless ``dtype`` is given.
        """
        mapping = _state_arrays(mapping, cls.__name__)
        return cls._build(mapping, cls._sizes_from_state_dict(mapping), config)

    @classmethod
    def _build(cls, mapping, sizes, config):
        """``cls(**sizes, **config)`` loaded with ``mapping``; sizes repeated in ``config`` must agree."""
        for name, value in sizes.items():
            given = config.pop(name, value)
            if isinstance(value, int) and given is not value:  # depth="2" was said not to match depth 2
                check_int(name, given)
            if given != value:
                raise ValueError(f"{name} given as {given!r} does not match the arrays, which have {value}")
        if "dtype" not in config:  # float64 for any float of 8 bytes or more, whatever its byte order
            # (a big-endian float64 state dict was built as float32: '>f8' != float64) or width
            wide = any(v.dtype.kind == "f" and v.dtype.itemsize >= 8 for v in mapping.values())
            config["dtype"] = "float64" if wide else "float32"
        return cls(**sizes, **config).load_state_dict(mapping)

    # -- inference ----------------------------------------------------------------------------
    def _one_sample(self, args):
        """The one-sample function (``_bind_one_sample``) for the kernel arguments ``args``
        (``_kernel_arrays()``); see :meth:`_bound`."""
        return self._bound("_one_sample_fn", self._bind_one_sample, args)

    def _batch(self, args):
        """The batch function (``_bind_batch``) for the kernel arguments ``args``; see :meth:`_bound`."""
        return self._bound("_batch_fn", self._bind_batch, args)

    def _bound(self, slot, bind, args):
        """``bind(args)``, kept in attribute ``slot`` while ``args`` and the activation stay the same;
        kept only when ``args`` are themselves the cached ones (:meth:`_args_are_kept`)."""
        kept = self.__dict__.get(slot)
        if kept is not None and kept[0] is args and kept[1] == self.activation:
            return kept[2]
        fn = bind(args)
        if self._args_are_kept(args):
            setattr(self, slot, (args, self.activation, fn))
        return fn

    def _args_are_kept(self, args):
        """Whether ``args`` are the kernel arguments the layer keeps (the last item of
        ``_kernel_cache``), so that a function bound to them may be kept too."""
        cached = self.__dict__.get("_kernel_cache")
        return cached is not None and cached[-1] is args

    def _use_numba(self):
        return self.backend != "numpy"

    def __call__(self, x):
        """Hard (log-time) inference: ``x`` of shape (..., input_width) -> (..., output_width)."""
        # The lean path, for an input already in kernel layout: no conversion; the kernels check
        # finiteness themselves (no temporaries) and answer None for NaN or inf, which then falls
        # through to as_input and its usual error. Few Python steps: one sample costs microseconds,
        # and a batch call starts with the caches cold from the previous call (docs/kernels.md).
        if type(x) is np.ndarray and self.backend != "numpy":
            dtype = x.dtype
            shape = x.shape
            if shape and shape[-1] == self.input_width:
                xc = x
                if not (x.flags.c_contiguous and (dtype is self._descr or dtype == self._descr)):
                    xc = _lean_convert(x, self._descr)  # another dtype, order or strides (as_input's cast)
                if xc is not None:
                    y = self._lean_call(xc, shape)
                    if y is not None:
                        return y
        x2d, lead = as_input(x, self.input_width, self.dtype)
        y = self._hard_numba(x2d) if self._use_numba() else self._hard_numpy(x2d)
        return y.reshape(lead + (self.output_width,))

    predict = __call__

    def _lean_call(self, x, shape):
        """:meth:`__call__`'s lean path for ``x`` of ``shape`` (..., input_width), C-contiguous in
        the layer's dtype: the output, or None (NaN or inf in ``x``, or an empty batch of more than
        two axes) for :func:`as_input` to handle."""
        if len(shape) == 1:
            return self._hard_numba(x, check_finite=True)
        n = shape[0] if len(shape) == 2 else math.prod(shape[:-1])
        if n == 1:  # a batch of one takes the one-sample kernel call
            y = self._hard_numba(x.reshape(self.input_width), check_finite=True)
        elif len(shape) == 2:
            return self._hard_numba(x, check_finite=True)
        elif n:  # (batch, tokens, width): rows of one C-contiguous block, as one batch
            y = self._hard_numba(x.reshape(n, self.input_width), check_finite=True)
        else:
            return None
        return None if y is None else y.reshape(shape[:-1] + (self.output_width,))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _lean_convert(x, descr):
    """``x`` (an ndarray of real numbers) as a C-contiguous array of ``descr``, as :func:`as_input`
    casts it, or None for other dtypes (as_input then explains). A float64 input that overflows
    float32 becomes inf, which the kernels' check reports; as_input then names it. Without this,
    one sample of float64, a strided view or a (1, 1, width) array cost ~5 us more than the same
    values in the layer's layout (round 16)."""
    if x.dtype.kind not in "fiu":
        return None
    if x.dtype.kind == "f" and x.dtype.itemsize > descr.itemsize:
        with np.errstate(over="ignore"):
            return np.ascontiguousarray(x, dtype=descr)
    return np.ascontiguousarray(x, dtype=descr)


def _to_numpy(v, name="array"):
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch tensor, duck-typed
        return tensor_to_numpy(v, name)
    return np.asarray(v)


def tensor_to_numpy(t, name="array"):
    """A torch tensor (duck-typed: torch is never imported here) as a NumPy array; half-precision
    floats (float16, bfloat16, which NumPy lacks) widened to float32. A tensor that holds no plain
    numbers is refused with a ValueError naming ``name``: torch's own errors named no array (a meta
    tensor's "Cannot copy out of meta tensor; no data!" ended ``fffcpu convert`` with a traceback)."""
    if getattr(t, "is_meta", False):
        raise ValueError(f"{name} is a tensor on the meta device, which holds no data: load or "
                         "materialise the weights before saving them")
    if getattr(t, "is_quantized", False):
        raise ValueError(f"{name} is a quantized tensor ({t.dtype}): dequantize it first (tensor.dequantize())")
    layout = str(getattr(t, "layout", "torch.strided"))
    if layout != "torch.strided":
        raise ValueError(f"{name} is a {layout.replace('torch.', '')} tensor: fffcpu reads dense tensors "
                         "(tensor.to_dense())")
    t = t.detach().cpu()
    if getattr(t, "is_floating_point", lambda: False)() and t.element_size() < 4:
        t = t.float()
    return t.numpy()


def _state_arrays(mapping, owner):
    """``{name: ndarray}`` from a state mapping (NumPy arrays or torch tensors) of ``owner``; a
    non-mapping is refused by name (``dict(None)`` said "'NoneType' object is not iterable", a str
    ``dict()``'s own words)."""
    if not hasattr(mapping, "keys"):
        raise TypeError(f"state for {owner} must be a mapping of names to arrays (a state dict), got "
                        f"{type(mapping).__name__}")
    return {k: _to_numpy(v, f"array {k!r}") for k, v in dict(mapping).items()}


def _check_mapping(mapping, shapes, owner, dtype=None):
    """Check a state mapping has exactly the expected names and shapes (and, given the ``dtype`` it
    will be cast to, values that fit it); return numpy arrays."""
    arrays = _state_arrays(mapping, owner)
    missing = [k for k in shapes if k not in arrays]
    extra = [k for k in arrays if k not in shapes]
    if missing or extra:
        raise KeyError(
            f"state for {owner} must have the arrays {list(shapes)}; "
            f"missing {missing}, unexpected {extra}"
        )
    for name, shape in shapes.items():
        a = arrays[name]
        if a.shape != tuple(shape):
            raise ValueError(f"array {name!r} must have shape {tuple(shape)}, got {a.shape}")
        if a.dtype.kind not in "fiu":
            raise TypeError(f"array {name!r} must hold real numbers, got dtype {a.dtype}")
        if a.size and not np.isfinite(a).all():
            raise ValueError(f"array {name!r} must be finite, got NaN or inf values")
        narrower = dtype is not None and a.dtype.kind == "f" and a.dtype.itemsize > np.dtype(dtype).itemsize
        if narrower and a.size:
            big, top = float(np.abs(a).max()), float(np.finfo(dtype).max)
            if big > top:
                raise ValueError(f"array {name!r} must fit the layer's dtype {np.dtype(dtype).name} "
                                 f"(largest magnitude {top:.4g}), got a value of magnitude {big:.4g}")
    return arrays
