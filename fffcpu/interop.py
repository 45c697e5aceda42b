"""Interoperability with the PyTorch FFF packages: import and export of weights.

Two published layouts are read and written (SPEC §1, §2):

- ``fastfeedforward.FFF`` (PyPI ``fastfeedforward`` 0.2.x), the leaf FFF: ``node_weights``,
  ``node_biases``, ``w1s``, ``b1s``, ``w2s``, ``b2s``. Its ``state_dict`` also holds ``depth`` (a
  0-d int64 tensor, checked against the shapes) and, with ``usage_mode != 'none'``, the usage counters
  ``node_usage`` and ``leaf_usage`` (statistics, not weights: dropped on import).
- the UltraFastBERT FFF layer, the neuron tree: ``linear_in.weight``, ``linear_in.bias``,
  ``linear_out.weight``. Its rows count ``parallel_size * n_nodes``; the parallel size cannot be told
  from the shapes alone and defaults to 1.

Weights come from an in-memory mapping of arrays (NumPy arrays or torch tensors; no torch needed for
the former), from ``.pt`` files (torch needed) and from ``.safetensors`` files (the ``safetensors``
package; its NumPy side works without torch). Keys may carry a module prefix such as ``"mlp.fff."``:
it is detected when only one layer is in the mapping, else pass ``prefix=``.

What the weights cannot tell (the activation, the parallel size, dropout, ...) is passed as keyword
arguments; ``.safetensors`` files written here also record it in their metadata. Files are written
atomically (a temporary file in the same folder, then ``os.replace``).

Examples
--------
>>> import numpy as np, fffcpu
>>> from fffcpu import interop
>>> rng = np.random.default_rng(0)
>>> sd = {"mlp.fff.depth": np.array(1), "mlp.fff.node_weights": rng.normal(size=(1, 3)),
...       "mlp.fff.node_biases": rng.normal(size=(1, 1)), "mlp.fff.w1s": rng.normal(size=(2, 3, 4)),
...       "mlp.fff.b1s": rng.normal(size=(2, 4)), "mlp.fff.w2s": rng.normal(size=(2, 4, 5)),
...       "mlp.fff.b2s": rng.normal(size=(2, 5))}
>>> layer = interop.from_torch_state_dict(sd)
>>> layer.kind, layer.depth, layer.dtype.__name__
('fff', 1, 'float64')
"""
import contextlib
import errno
import json
import os
import re
import textwrap
import warnings
import zipfile
import zlib

import numpy as np

#: parameter names of each kind, in the PyTorch modules' state_dict order
PARAM_NAMES = {
    "fff": ("node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s"),
    "neuron_tree": ("linear_in.weight", "linear_in.bias", "linear_out.weight"),
}
#: the key whose presence identifies a kind (and whose position gives the prefix)
_ANCHORS = {"fff": "w1s", "neuron_tree": "linear_in.weight"}
#: non-weight entries of fastfeedforward.FFF's state_dict
_FFF_EXTRAS = ("depth", "node_usage", "leaf_usage")
#: the eFFF master leaf (SPEC §3): all five or none
_MASTER_NAMES = ("magic_w1", "magic_b1", "magic_w2", "magic_b2", "k")
#: hyperparameters (not sizes) that a file's metadata may carry, per kind
_HYPER = {
    "fff": ("activation", "dropout", "region_leak", "train_hardened"),
    "neuron_tree": ("activation", "parallel_size"),
}
_TORCH_HINT = "install it with `pip install fffcpu[torch]` (or `pip install torch`)"
_SAFETENSORS_HINT = "install it with `pip install fffcpu[torch]` (or `pip install safetensors`)"


# ---------------------------------------------------------------------------------------------
# optional dependencies
# ---------------------------------------------------------------------------------------------
def _require_torch(what):
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"{what} needs PyTorch, which is not installed; {_TORCH_HINT}") from exc
    return torch


def _require_safetensors(what):
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError(f"{what} needs the safetensors package, which is not installed; "
                          f"{_SAFETENSORS_HINT}") from exc
    return safetensors


def _layer_class(kind):
    if kind == "fff":
        from .fff import FFF
        return FFF
    from .neuron_tree import NeuronTreeFFF
    return NeuronTreeFFF


# ---------------------------------------------------------------------------------------------
# mappings
# ---------------------------------------------------------------------------------------------
def to_numpy(value, name="array"):
    """A NumPy array from a NumPy array, a torch tensor or a nested list.

    Half-precision tensors (float16, bfloat16; NumPy has no bfloat16) are widened to float32; meta,
    sparse and quantized tensors are refused naming ``name`` (:func:`fffcpu._base.tensor_to_numpy`).
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, duck-typed
        from ._base import tensor_to_numpy
        return tensor_to_numpy(value, f"array {name!r}")
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}")
    return arr


def _unwrap(obj):
    """A checkpoint's state dict: ``obj`` itself, or ``obj["state_dict"]`` / ``obj["model"]``."""
    if not hasattr(obj, "keys"):
        raise TypeError(f"a state dict must be a mapping of names to arrays, got {type(obj).__name__}")
    for key in ("state_dict", "model"):
        inner = obj.get(key) if key in obj else None
        if hasattr(inner, "keys"):
            return inner
    return obj


def detect_kind(mapping, prefix=None, kind=None):
    """Which layer a state dict holds: returns ``(kind, prefix)``.

    Parameters
    ----------
    mapping : mapping of str to array
    prefix : str, optional
        The module prefix of the layer's keys (``"mlp.fff."``); detected when omitted.
    kind : {"fff", "neuron_tree"}, optional
        Look for this kind only.

    Returns
    -------
    kind : {"fff", "neuron_tree"}
    prefix : str
        The prefix found ("" for bare names).

    Raises
    ------
    KeyError
        No FFF layer in the mapping, or several and no ``prefix`` to choose.
    """
    _check_prefix(prefix)
    keys = [str(k) for k in _unwrap(mapping).keys()]
    found = []
    for candidate, anchor in _ANCHORS.items():
        for key in keys:
            if key == anchor or key.endswith("." + anchor):
                found.append((candidate, key[: len(key) - len(anchor)]))
    everywhere = found
    if prefix is not None:
        found = [f for f in found if f[1] == prefix]
    if kind is not None:
        other = [f for f in found if f[0] != kind]
        found = [f for f in found if f[0] == kind]
        if other and not found:
            raise KeyError(f"kind={kind!r} was asked for, but the state dict holds (kind, prefix) {other}")
    if len(found) == 1:
        return found[0]
    shown = keys[:8] + (["..."] if len(keys) > 8 else [])
    where = "" if prefix is None else f" under prefix {prefix!r}"
    if not found:
        dotted = [f for f in everywhere if prefix and f[1] == prefix + "."]
        if dotted:  # --prefix mlp.fff for mlp.fff.w1s: a prefix is the key's whole start, dot included
            raise KeyError(f"found no FFF layer under prefix {prefix!r}, but one under {prefix + '.'!r}: a "
                           "prefix is the keys' whole start, ending with its dot")
        raise KeyError(
            f"found no FFF layer{where} in a state dict with keys {shown}: expected the keys "
            f"{list(PARAM_NAMES['fff'])} (fastfeedforward.FFF) or {list(PARAM_NAMES['neuron_tree'])} "
            "(UltraFastBERT), possibly behind a prefix such as 'mlp.fff.'"
        )
    raise KeyError(
        f"found {len(found)} FFF layers{where} in the state dict (kind, prefix): {found}; "
        "pass prefix= (and kind=) to choose one"
    )


def canonical_state_dict(mapping, kind=None, prefix=None):
    """The layer's own arrays, with the prefix stripped and converted to NumPy.

    Keys of other modules (outside the prefix) are ignored. Under the prefix, the kind's parameter
    names are required; fastfeedforward's ``depth`` is checked against the shapes and its usage
    counters are dropped; any other key there is an error (for example ``linear_out.bias``: the
    UltraFastBERT layer has no output bias, SPEC §2).

    Parameters
    ----------
    mapping : mapping of str to array (NumPy arrays or torch tensors)
    kind : {"fff", "neuron_tree"}, optional
        Detected from the key names when omitted.
    prefix : str, optional
        Detected when omitted.

    Returns
    -------
    kind : str
    arrays : dict of str to ndarray, in the PyTorch module's order
    """
    mapping = _unwrap(mapping)
    if kind is not None and kind not in PARAM_NAMES:
        raise ValueError(f"kind must be one of {sorted(PARAM_NAMES)}, got {kind!r}")
    kind, prefix = detect_kind(mapping, prefix, kind)
    names = PARAM_NAMES[kind]
    own = {str(k)[len(prefix):]: v for k, v in mapping.items() if str(k).startswith(prefix)}
    if kind == "neuron_tree":
        own = {k: v for k, v in own.items() if k.startswith(("linear_in.", "linear_out."))}
    else:
        own = {k: v for k, v in own.items() if "." not in k}  # dotted keys: child modules
        if any(n in own for n in _MASTER_NAMES):  # eFFF: the master leaf comes as a whole
            names = names + _MASTER_NAMES
    missing = [n for n in names if n not in own]
    allowed = names + (_FFF_EXTRAS if kind == "fff" else ())
    unexpected = [k for k in own if k not in allowed]
    if missing or unexpected:
        hint = ""
        if "linear_out.bias" in unexpected:
            hint = " (the UltraFastBERT FFF layer has no output bias: SPEC §2)"
        raise KeyError(
            f"the {kind!r} layer under prefix {prefix!r} must have the arrays {list(names)}; "
            f"missing {missing}, unexpected {unexpected}{hint}"
        )
    arrays = {n: to_numpy(own[n], f"{prefix}{n}") for n in names}
    ints = [f"{prefix}{n} ({a.dtype})" for n, a in arrays.items() if a.dtype.kind in "iu"]
    if ints:  # int8 weights are often quantized values, which need their scales: loading them as is misleads
        warnings.warn(f"the arrays {', '.join(ints)} hold integers, taken as the weights' values; if they are "
                      "quantized weights, dequantize them before converting", UserWarning, stacklevel=3)
    if kind == "fff" and "depth" in own:
        w1s = arrays["w1s"]
        depth = to_numpy(own["depth"], f"{prefix}depth")
        leaves = w1s.shape[0] if w1s.ndim == 3 else 0
        if depth.dtype.kind not in "iuf":  # a str '2' was said not to match 4 leaves
            raise ValueError(f"array {prefix + 'depth'!r} must hold a number (the tree depth), got dtype "
                             f"{depth.dtype} ({depth.tolist()!r})")
        # compared, not shifted: 1 << 4278190082 (a damaged file's depth) took 500 MB, a negative one raised
        if (depth.size != 1 or leaves < 1 or leaves & (leaves - 1)
                or depth.reshape(()).item() != leaves.bit_length() - 1):
            raise ValueError(
                f"array {prefix + 'depth'!r} ({depth.tolist()}) does not match 'w1s' of shape "
                f"{w1s.shape}: a depth d needs 2^d leaves on axis 0"
            )
    return kind, arrays


def from_torch_state_dict(mapping, kind=None, prefix=None, **config):
    """Build an fffcpu layer from a PyTorch FFF state dict.

    Parameters
    ----------
    mapping : mapping of str to array
        ``module.state_dict()`` of ``fastfeedforward.FFF`` or of the UltraFastBERT FFF layer, or any
        mapping of NumPy arrays with the same names (torch is not needed for those); it may be a
        whole model's state dict (``prefix``) or a checkpoint dict with a ``"state_dict"`` or
        ``"model"`` entry.
    kind : {"fff", "neuron_tree"}, optional
        Detected from the key names when omitted.
    prefix : str, optional
        The layer's key prefix (``"mlp.fff."``), detected when the mapping holds one FFF layer.
    **config
        Hyperparameters the weights cannot tell, passed to the layer: ``activation``, ``dropout``,
        ``region_leak``, ``train_hardened`` (leaf FFF); ``activation``, ``parallel_size``
        (neuron tree; default 1); and ``dtype``, ``backend``, ``seed``. The dtype defaults to
        float64 if any array is float64, else float32.

    Returns
    -------
    FFF or NeuronTreeFFF
    """
    kind, arrays = canonical_state_dict(mapping, kind, prefix)
    cls = _layer_class(kind)
    _check_config(cls, kind, config)
    return cls.from_state_dict(arrays, **config)


def _check_config(cls, kind, config):
    """A ValueError naming the ``config`` keywords that layer class ``cls`` does not take (it was
    "FFF.__init__() got an unexpected keyword argument 'parallel_size'")."""
    import inspect
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [name for name in config if name not in accepted]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} does not apply to the file's layer, a {cls.__name__} "
                         f"(kind {kind!r}); leave it out")


def to_numpy_state_dict(layer, prefix=""):
    """The layer's weights under the PyTorch module's names: ``{prefix + name: ndarray}`` (copies).

    For a leaf FFF the dict starts with ``depth`` (0-d int64), as ``fastfeedforward.FFF`` keeps it, so
    that the package's strict ``load_state_dict`` accepts the result; an eFFF master leaf adds
    ``magic_w1``, ``magic_b1``, ``magic_w2``, ``magic_b2`` and ``k`` (the eFFF code's names), which
    ``fastfeedforward.FFF`` has no place for (its strict ``load_state_dict`` refuses them), but which
    :func:`from_torch_state_dict`, :func:`load_pt` and :func:`load_safetensors` read back.
    """
    kind = _kind_of(layer)
    _check_prefix(prefix, optional=False)
    out = {}
    if kind == "fff":
        out[prefix + "depth"] = np.array(layer.depth, dtype=np.int64)
    for name, arr in layer.state_dict().items():
        out[prefix + name] = np.asarray(arr, order="C")  # (ascontiguousarray would make 0-d 1-d)
    return out


def to_torch_state_dict(layer, prefix=""):
    """The layer's weights as torch tensors under the PyTorch module's names (see
    :func:`to_numpy_state_dict`); load them with ``module.load_state_dict(sd)``."""
    torch = _require_torch("to_torch_state_dict")
    return {k: torch.from_numpy(v) for k, v in to_numpy_state_dict(layer, prefix).items()}


def _kind_of(layer):
    kind = getattr(layer, "kind", None)
    if kind not in PARAM_NAMES:
        raise TypeError(f"layer must be an fffcpu FFF or NeuronTreeFFF, got {type(layer).__name__}")
    return kind


def hyperparameters(layer):
    """The hyperparameters of ``layer`` that its weights cannot tell: ``{name: value}``."""
    kind = _kind_of(layer)  # first: hyperparameters("x") was "'str' object has no attribute 'config'"
    config = layer.config()
    return {k: config[k] for k in _HYPER[kind] if k in config}


def _check_prefix(prefix, optional=True):
    """``prefix`` as given, or a TypeError naming it: an int was "unsupported operand type(s) for +"."""
    if not (isinstance(prefix, str) or (optional and prefix is None)):
        raise TypeError(f"prefix must be a str (the module prefix of the layer's keys, such as 'mlp.fff.'"
                        f"{' or None to detect it' if optional else ''}), got {prefix!r} ({type(prefix).__name__})")
    return prefix


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def _atomic_write(path, write):
    """``write(f)`` into a temporary file beside ``path``, then ``os.replace`` it onto ``path``
    (fffcpu.io's writer: fsynced, an existing file's mode kept, the temporary removed on failure).

    The path is checked first as by ``fffcpu.save``: FileNotFoundError if its directory does not exist,
    IsADirectoryError if it is a directory, FileExistsError if it is a file that holds no model.
    """
    from .io import _atomic_write as write_atomically, _check_model_path
    write_atomically(_check_model_path(path), write)


def save_pt(layer, path, prefix=""):
    """Write the layer's state dict (torch tensors, :func:`to_torch_state_dict`) with ``torch.save``.

    The file loads into the PyTorch module with
    ``module.load_state_dict(torch.load(path, weights_only=True))``.
    """
    torch = _require_torch("save_pt")
    sd = to_torch_state_dict(layer, prefix)
    _atomic_write(path, lambda f: torch.save(sd, f))
    if _kind_of(layer) == "neuron_tree" and layer.parallel_size > 1:
        rows = layer.training_width
        one_tree = (rows + 1) & rows == 0  # 2^(d+1) - 1 rows: they also read as one tree of depth d
        otherwise = (f"without it, its {rows} rows load as one tree of depth {(rows + 1).bit_length() - 2}, "
                     "a different model" if one_tree else "it cannot be loaded without it")
        warnings.warn(f"{os.fspath(path)!r}: a .pt file records no parallel_size: load it with load_pt(path, "
                      f"parallel_size={layer.parallel_size}) or `fffcpu convert --parallel-size "
                      f"{layer.parallel_size}` ({otherwise}); .safetensors and .npz files keep it",
                      UserWarning, stacklevel=2)
    return path


def load_pt(path, kind=None, prefix=None, **config):
    """Read a ``.pt`` state dict (``torch.load(..., weights_only=True)``: nothing is unpickled beyond
    tensors and plain containers) and build a layer (:func:`from_torch_state_dict`).

    Raises
    ------
    ValueError
        The file is not a state dict that ``torch.load`` reads with ``weights_only=True``: empty,
        truncated, corrupt, of another format, or holding other pickled objects (a whole module saved
        with ``torch.save(module)``).
    """
    torch = _require_torch("load_pt")
    path = os.fspath(path)
    _require_regular_file(path, "a .pt file")
    _check_pt_records(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, MemoryError):  # no such file, a directory, no permission: the message says so
        raise
    except Exception as exc:  # torch.load's unpickler and zip reader raise all kinds on a bad file
        raise ValueError(_pt_load_problem(path, exc)) from None
    if not hasattr(obj, "keys"):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict (a mapping of names to "
                         "tensors); save one with torch.save(module.state_dict(), path)")
    with _naming_the_file(path):
        return from_torch_state_dict(obj, kind=kind, prefix=prefix, **config)


def _require_regular_file(path, what):
    from .io import require_regular_file
    require_regular_file(path, what)


@contextlib.contextmanager
def _naming_the_file(path):
    """Errors building a layer from the arrays of the file ``path`` name it: a KeyError (missing or
    unexpected arrays, as a damaged name gives) or ValueError as a ValueError, a TypeError as one."""
    try:
        yield
    except (KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(f"{path!r}: {msg}") from None
    except TypeError as exc:
        raise TypeError(f"{path!r}: {exc}") from None


def _check_pt_records(path):
    """Refuse a ``.pt`` file (a zip archive since PyTorch 1.6) whose records do not match their CRC-32 or
    are marked as directories: torch.load checks neither, so a flipped byte in a tensor's data loaded as a
    different weight, and a tensor whose record had the MS-DOS directory bit set loaded as zeros.
    A file that does not start as a zip archive (the legacy format, or another file) is left to
    torch.load, which says what it is; one that does but whose zip directory is unreadable is refused
    (torch.load's reader read the records of such a file, damaged ones too). A record stored without a
    CRC (0: ``torch.serialization.set_crc32_options(False)``) is not checked. Reads the file once more
    than torch.load does."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        try:
            with open(path, "rb") as f:
                is_zip = f.read(4) == b"PK\x03\x04"
        except OSError:
            return  # no such file, a directory: torch.load says so
        if is_zip and not isinstance(exc, OSError):
            raise ValueError(f"{path!r} is not a readable PyTorch .pt file (truncated or corrupt): its zip "
                             f"directory is damaged ({type(exc).__name__}: {exc})") from None
        return
    with archive:
        for info in archive.infolist():
            if info.external_attr & 0x10:  # the MS-DOS directory attribute
                raise ValueError(f"{path!r} is not a readable PyTorch .pt file (corrupt): its record "
                                 f"{info.filename!r} is marked as a directory, whose data PyTorch does not read")
            if info.CRC == 0:
                continue
            try:
                with archive.open(info) as record:
                    while record.read(1 << 20):  # zipfile checks the CRC at the record's end
                        pass
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError,
                    ValueError) as exc:
                raise ValueError(f"{path!r} is not a readable PyTorch .pt file (truncated or corrupt): its "
                                 f"record {info.filename!r} is damaged ({type(exc).__name__}: {exc})") from None


def _pt_load_problem(path, exc):
    """What was wrong with the ``.pt`` file ``path`` that ``torch.load`` failed on with ``exc``."""
    if _is_empty(path):
        return f"{path!r} is empty: expected a state dict saved with torch.save(module.state_dict(), path)"
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:  # weights_only refused a pickled class or function
        return (f"{path!r} holds more than a state dict: a pickled {found.group(1)} (for example a whole "
                "module saved with torch.save(module)). fffcpu reads .pt files with torch.load(weights_only="
                "True), which unpickles tensors and plain containers only; save the state dict instead: "
                "torch.save(module.state_dict(), path)")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    detail = textwrap.shorten(text, 200, placeholder=" ...") or "no message"
    return (f"{path!r} is not a readable PyTorch .pt file (truncated, corrupt, or not written by "
            f"torch.save): expected a state dict saved with torch.save(module.state_dict(), path); "
            f"torch.load raised {type(exc).__name__}: {detail}")


def _is_empty(path):
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def save_safetensors(layer, path, prefix="", *, classes=None, _training=None):
    """Write the layer's state dict to a ``.safetensors`` file (no torch needed).

    The metadata records ``fffcpu.kind`` and ``fffcpu.hyperparameters`` (JSON of the activation,
    parallel size, ...), which :func:`load_safetensors` uses unless told otherwise, and, when given,
    ``fffcpu.classes`` (JSON list of the class names, checked as ``fffcpu.save`` checks them) and
    ``fffcpu.training`` (what ``fffcpu train`` saved: its loss, label column and feature columns' names), which
    :func:`convert` carries from and to fffcpu's own files.
    """
    st = _require_safetensors("save_safetensors")
    from . import io as fio
    meta = {"format": "pt", "fffcpu.kind": layer.kind,
            "fffcpu.hyperparameters": json.dumps(hyperparameters(layer))}
    if classes is not None:
        meta["fffcpu.classes"] = json.dumps(fio._plain_classes(classes, layer.output_width))
    if _training:
        meta["fffcpu.training"] = json.dumps(fio._checked_training(_training, layer.input_width))
    sd = to_numpy_state_dict(layer, prefix)
    blob = st.numpy.save(sd, metadata=meta)
    _atomic_write(path, lambda f: f.write(blob))
    return path


def read_safetensors(path):
    """``(arrays, metadata)`` of a ``.safetensors`` file, as NumPy arrays and a dict of str."""
    st = _require_safetensors("read_safetensors")
    path = os.fspath(path)
    _require_regular_file(path, "a .safetensors file")
    if os.path.isdir(path):  # safetensors would say only "No such device (os error 19)"
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    try:
        with st.safe_open(path, framework="np") as f:
            meta = dict(f.metadata() or {})
            names = list(f.keys())
    except st.SafetensorError as exc:
        if _is_empty(path):
            raise ValueError(f"{path!r} is empty: expected a .safetensors file") from None
        raise ValueError(f"{path!r} is not a readable .safetensors file (truncated, corrupt, or another "
                         f"format): {exc}") from None
    try:
        arrays = st.numpy.load_file(path)
    except (TypeError, ValueError) as exc:  # e.g. bfloat16, which NumPy lacks: go through torch
        try:
            import safetensors.torch
        except ImportError:
            raise ValueError(f"cannot read {path!r} with NumPy ({exc}); {_TORCH_HINT}") from exc
        arrays = safetensors.torch.load_file(path)
    return {n: arrays[n] for n in names}, meta


def load_safetensors(path, kind=None, prefix=None, **config):
    """Read a ``.safetensors`` state dict and build a layer (:func:`from_torch_state_dict`).

    Hyperparameters recorded by :func:`save_safetensors` are used where ``config`` does not give them,
    and so is the recorded ``fffcpu.kind`` where ``kind`` is not given: a ValueError naming the file
    says when that record is not a kind or does not match the arrays.
    """
    return _load_safetensors(path, kind, prefix, config)[0]


def _load_safetensors(path, kind, prefix, config):
    """:func:`load_safetensors`' layer and the file's metadata, from one reading."""
    arrays, meta = read_safetensors(path)
    recorded_kind = meta.get("fffcpu.kind")
    if kind is None and recorded_kind is not None:
        if recorded_kind not in PARAM_NAMES:
            raise ValueError(f"{os.fspath(path)!r}: metadata 'fffcpu.kind' must be one of "
                             f"{sorted(PARAM_NAMES)}, got {recorded_kind[:100]!r}")
        try:
            held = detect_kind(arrays, prefix)
        except KeyError:  # no layer, or several: canonical_state_dict says so below
            held = (recorded_kind, prefix)
        if held[0] != recorded_kind:
            raise ValueError(f"{os.fspath(path)!r}: metadata 'fffcpu.kind' is {recorded_kind!r}, but the "
                             f"arrays hold (kind, prefix) {held}; pass kind={held[0]!r} (--kind {held[0]}) to read "
                             "them as such")
        kind = recorded_kind
    with _naming_the_file(os.fspath(path)):
        return _layer_from_safetensors(arrays, meta, kind, prefix, config), meta


def _safetensors_extras(path, meta, output_width, input_width):
    """``(classes, training)`` from a ``.safetensors`` file's metadata (:func:`save_safetensors`): the
    class names as a tuple (None without them; a ValueError naming the file when they are not a JSON
    list of names, one per output), and the training entry ({} without one; entries this version
    cannot use are left out, as ``fffcpu.load`` does)."""
    from . import io as fio
    classes = None
    if "fffcpu.classes" in meta:
        text = meta["fffcpu.classes"]
        try:
            names = json.loads(text)
        except (ValueError, RecursionError):
            names = None
        if not isinstance(names, list):
            raise ValueError(f"{os.fspath(path)!r}: metadata 'fffcpu.classes' must be a JSON list of class names, "
                             f"got {text[:100]!r}")
        try:
            fio._check_class_count(names, output_width, "metadata 'fffcpu.classes'")
            fio._check_class_names(names, "metadata 'fffcpu.classes'")
        except (TypeError, ValueError) as err:
            raise ValueError(f"{os.fspath(path)!r}: {err}") from None
        classes = tuple(names)
    try:
        recorded = json.loads(meta.get("fffcpu.training", "{}"))
    except (ValueError, RecursionError):
        recorded = {}
    return classes, fio._usable_training(recorded, input_width)


def _layer_from_safetensors(arrays, meta, kind, prefix, config):
    """:func:`load_safetensors`' layer from a file's arrays and metadata."""
    kind, arrays = canonical_state_dict(arrays, kind, prefix)
    stored = {}
    if meta.get("fffcpu.kind") == kind and "fffcpu.hyperparameters" in meta:
        try:
            recorded = json.loads(meta["fffcpu.hyperparameters"])
        except (ValueError, RecursionError):  # not JSON, or nested thousands deep
            recorded = None
        if not isinstance(recorded, dict):
            raise ValueError(f"metadata 'fffcpu.hyperparameters' must be a JSON "
                             f"object, got {meta['fffcpu.hyperparameters'][:100]!r}")
        stored = {k: v for k, v in recorded.items() if k in _HYPER[kind]}
    _check_config(_layer_class(kind), kind, config)  # the caller's options; the file's own are the layer's
    return _layer_class(kind).from_state_dict(arrays, **{**stored, **config})


# ---------------------------------------------------------------------------------------------
# the PyTorch module itself
# ---------------------------------------------------------------------------------------------
_TORCH_ACTIVATIONS = {"ReLU": "relu", "GELU": "gelu", "Tanh": "tanh", "Sigmoid": "sigmoid",
                      "Identity": "identity"}


def activation_name(module):
    """fffcpu's name for a torch activation module (``nn.ReLU()`` -> ``"relu"``)."""
    cls = type(module).__name__
    if cls == "GELU" and getattr(module, "approximate", "none") != "none":
        raise ValueError("activation nn.GELU(approximate='tanh') has no fffcpu equivalent; "
                         "fffcpu's gelu is the exact erf form")
    if cls not in _TORCH_ACTIVATIONS:
        raise ValueError(f"activation {module!r} has no fffcpu equivalent; expected one of "
                         f"{['nn.' + c + '()' for c in _TORCH_ACTIVATIONS]}")
    return _TORCH_ACTIVATIONS[cls]


def from_fastfeedforward(module, **config):
    """An :class:`fffcpu.FFF` with the weights and hyperparameters of a ``fastfeedforward.FFF`` module.

    The activation, dropout, region leak and train_hardened are read from the module; ``config``
    overrides them or adds ``dtype``, ``backend``, ``seed``.
    """
    missing = [a for a in ("activation", "dropout", "region_leak", "train_hardened", "state_dict")
               if not hasattr(module, a)]
    if missing:  # a torch.nn.Linear: "'Linear' object has no attribute 'activation'"
        raise TypeError(f"module must be a fastfeedforward.FFF, got {type(module).__name__} (no "
                        f"{', '.join(missing)}); for a state dict use from_torch_state_dict")
    hyper = dict(activation=activation_name(module.activation), dropout=float(module.dropout),
                 region_leak=float(module.region_leak), train_hardened=bool(module.train_hardened))
    if "dropout" not in config and hyper["dropout"] >= 1:  # the package takes p = 1; training would divide by 0
        raise ValueError(f"the module's dropout is {hyper['dropout']} (every hidden unit dropped in training), "
                         "which an fffcpu.FFF does not take (dropout must be in [0, 1)); inference does not "
                         "use it: pass from_fastfeedforward(module, dropout=0.0)")
    return from_torch_state_dict(module.state_dict(), kind="fff", **{**hyper, **config})


def to_fastfeedforward(layer):
    """A ``fastfeedforward.FFF`` module (in training mode, float32) with the weights and
    hyperparameters of an :class:`fffcpu.FFF`. Needs the ``fastfeedforward`` package."""
    torch = _require_torch("to_fastfeedforward")
    try:
        import fastfeedforward
    except ImportError as exc:
        raise ImportError("to_fastfeedforward needs the fastfeedforward package; "
                          "install it with `pip install fffcpu[torch]`") from exc
    if _kind_of(layer) != "fff":
        raise TypeError(f"to_fastfeedforward needs a leaf FFF, got a {layer.kind!r} layer")
    if layer.master_leaf:
        raise ValueError(f"to_fastfeedforward needs a layer without an eFFF master leaf (master_leaf=0), got "
                         f"master_leaf={layer.master_leaf}: fastfeedforward.FFF has no master leaf; keep "
                         "its weights with to_torch_state_dict, save_pt or save_safetensors instead")
    acts = {v: k for k, v in _TORCH_ACTIVATIONS.items()}
    module = fastfeedforward.FFF(layer.input_width, layer.leaf_width, layer.output_width, layer.depth,
                                 activation=getattr(torch.nn, acts[layer.activation])(),
                                 dropout=layer.dropout, train_hardened=layer.train_hardened,
                                 region_leak=layer.region_leak)
    module.load_state_dict(to_torch_state_dict(layer))
    return module


# ---------------------------------------------------------------------------------------------
# any supported file, by suffix
# ---------------------------------------------------------------------------------------------
#: fffcpu's own format (``fffcpu.save``) is an ``.npz``; ``.fff``, the suffix the docs use for it, is the same
FORMATS = {".pt": "pt", ".pth": "pt", ".safetensors": "safetensors", ".npz": "npz", ".fff": "npz"}


def file_format(path):
    """``"pt"``, ``"safetensors"`` or ``"npz"`` (suffix ``.npz`` or ``.fff``) from the file name's suffix."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot tell the format of {os.fspath(path)!r} from its suffix "
                         f"{suffix!r}: expected one of {sorted(FORMATS)}")
    return FORMATS[suffix]


def load_any(path, kind=None, prefix=None, **config):
    """Read a layer from ``.pt``/``.pth``, ``.safetensors`` or fffcpu's ``.npz``/``.fff`` (``fffcpu.load``).

    An ``.npz`` records its own kind and hyperparameters, so ``kind``, ``prefix`` and ``config``
    are refused for it. Its class names, if any, are read by :func:`fffcpu.load_classes`.
    """
    return _load_any(path, kind, prefix, config)[0]


def _load_any(path, kind, prefix, config, with_training=False):
    """``(layer, classes)``: :func:`load_any`'s layer, and the class names of an fffcpu ``.npz`` (None for
    other formats, or a file without them), from one reading of the file; ``with_training``: also what
    ``fffcpu train`` saved about its data and loss ({} for other files), as ``fffcpu.io._read``."""
    fmt = file_format(path)
    if fmt == "safetensors":
        layer, meta = _load_safetensors(path, kind, prefix, config)
        classes, training = _safetensors_extras(path, meta, layer.output_width, layer.input_width)
        return (layer, classes, training) if with_training else (layer, classes)
    if fmt == "pt":
        layer = load_pt(path, kind=kind, prefix=prefix, **config)
        return (layer, None, {}) if with_training else (layer, None)
    given = {k: v for k, v in dict(config, kind=kind, prefix=prefix).items() if v is not None}
    if given:
        raise ValueError(f"{os.fspath(path)!r} is an fffcpu .npz file, which records its own kind and "
                         f"hyperparameters; these options do not apply to it: {sorted(given)}")
    from . import io as fio
    return fio._read(path, with_training=with_training)


def save_any(layer, path):
    """Write ``layer`` as ``.pt``/``.pth``, ``.safetensors`` or fffcpu's ``.npz``/``.fff`` (``fffcpu.save``)."""
    fmt = file_format(path)
    if fmt == "pt":
        return save_pt(layer, path)
    if fmt == "safetensors":
        return save_safetensors(layer, path)
    from . import io as fio
    fio.save(layer, path)
    return path


def convert(src, dst, kind=None, prefix=None, **config):
    """Read ``src`` and write ``dst``, formats by suffix (:func:`load_any`, :func:`save_any`).

    Returns the layer that was written. Class names (``fffcpu.save(..., classes=...)``) and what
    ``fffcpu train`` saved (its loss and label column) go with it between fffcpu's ``.npz``/``.fff``
    and ``.safetensors`` (in its metadata, :func:`save_safetensors`); a ``.pt`` file has no place for
    them, so writing one from a file with names, or from a regression model, warns (``UserWarning``)
    that they are left out.
    """
    from . import io as fio
    # the file is read once, its names with it, and what `fffcpu train` saved (its loss, its CSV label
    # column), which evaluate, predict and inspect read from the copy as well
    layer, classes, training = _load_any(src, kind, prefix, config, with_training=True)
    if file_format(dst) == "npz":
        fio.save(layer, dst, classes=classes, _training=training or None)
        return layer
    if file_format(dst) == "safetensors":
        save_safetensors(layer, dst, classes=classes, _training=training or None)
        return layer
    save_any(layer, dst)
    if classes is not None:
        warnings.warn(f"the class names of {os.fspath(src)!r} ({len(classes)}: "
                      f"{', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''}) are not in "
                      f"{os.fspath(dst)!r}: a .{file_format(dst)} file has no place for them, only fffcpu's "
                      ".npz/.fff and .safetensors do", UserWarning, stacklevel=2)
    if training.get("loss") == "mse":  # read back from dst, the model would be taken for a classifier
        warnings.warn(f"{os.fspath(src)!r} was trained as a regression model (loss mse), which "
                      f"{os.fspath(dst)!r} does not record: predict gives its raw outputs with --raw only, "
                      "and evaluate needs --loss mse", UserWarning, stacklevel=2)
    return layer
