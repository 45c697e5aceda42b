"""Saving and loading layers: one ``.npz`` file, a JSON header, no pickle.

File format (version 1)
-----------------------
An uncompressed zip archive in NumPy's ``.npz`` layout (``np.load(path, allow_pickle=False)`` reads it):

- one ``.npy`` member per parameter, named after it (``w1s.npy``, ``linear_in.weight.npy``, ...);
- a member ``__header__.npy``: a 1-D ``uint8`` array holding UTF-8 JSON::

      {"format": "fffcpu-layer", "format_version": 1, "fffcpu_version": "0.1.0",
       "kind": "fff", "config": {... layer.config() ...},
       "arrays": [{"name": "node_weights", "shape": [7, 4], "dtype": "float32"}, ...],
       "classes": ["setosa", "versicolor", "virginica"]}

  ``"classes"`` is optional (``save(..., classes=...)``; ``fffcpu train`` writes it for text labels): the
  name of each output, in output order, all strings (non-empty, no lone surrogates) or all integers (in
  the int64 range), unique, as many as the layer's ``output_width``. :func:`load_classes` reads it (None
  for a file without it).
  ``"training"`` is optional too, written by ``fffcpu train`` only: ``{"loss": "cross_entropy" or
  "mse", "label_column": the --label-column it was given (a name or an index), when it was given for
  a CSV file, "feature_columns": the header's names of the input columns, in input order, when the
  CSV file had a header}``. With it, ``fffcpu evaluate``, ``predict`` and ``inspect`` read the same
  column as the labels, score the model with the same loss and refuse a CSV file whose header names
  other columns or the same ones in another order; ``predict`` writes a regression model's outputs
  rather than their argmax. Readers that do not know a key ignore it.

Loading rebuilds the layer with ``cls(**config)`` (``cls`` found by ``kind`` in :data:`LAYER_KINDS`) and
copies the arrays in with ``load_state_dict``. The names and shapes it expects come from the rebuilt
layer itself (``_param_shapes()``), so a layer option that adds parameters needs no change here.

What is checked on load, each failure a :class:`ModelFileError` naming the file and the problem: that the
file is a zip archive and not truncated (zip CRCs are verified), that the header is present and valid
JSON of this format and version, that the kind is known, that the arrays listed in the header, the arrays
in the archive and the arrays the rebuilt layer needs are the same names with the same shapes and the
layer's dtype, that the class names (if any) are valid as above, and that no array holds Python objects.
Pickled data is never unpickled: each ``.npy`` member's header is parsed (with ``numpy.lib.format``, which
uses ``ast.literal_eval``) and checked before any data is read, and object dtypes are refused outright.

Paths
-----
``path`` is a ``str`` or ``os.PathLike`` and is used exactly as given: no ``.npz`` suffix is appended
(unlike ``np.savez`` with a string name), so ``save(layer, "model.bin")`` writes ``model.bin``. An
existing model file there (fffcpu's, ``.pt`` or ``.safetensors``) or an empty file is replaced; a file that
holds anything else (a CSV file, an ``np.savez`` archive of data) is refused with a FileExistsError and
left as it is.

Not saved: the state of the layer's random generator (training randomness restarts from ``seed``), and
optimizer state (that belongs to the optimizer). Class names and the training entry live in this format
and, written by :func:`fffcpu.interop.convert` or ``save_safetensors``, in a ``.safetensors`` file's
metadata; a ``.pt`` file does not hold them, and ``convert`` warns when it writes one from a file that has
them.
"""
import errno
import importlib
import inspect
import json
import math
import os
import stat
import tempfile
import tokenize
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["save", "load", "load_classes", "ModelFileError", "LAYER_KINDS", "register_kind", "FORMAT_VERSION"]

#: version of the file layout written by :func:`save`; :func:`load` reads exactly this version
FORMAT_VERSION = 1
FORMAT_NAME = "fffcpu-layer"
HEADER_KEY = "__header__"

#: kind -> layer class. Filled on first use from the built-in kinds below; add others with
#: :func:`register_kind`.
LAYER_KINDS = {}

# built-in kinds, imported lazily so that loading an FFF never needs the other modules
_BUILTIN_KINDS = {
    "fff": ("fffcpu.fff", "FFF"),
    "neuron_tree": ("fffcpu.neuron_tree", "NeuronTreeFFF"),
}


class ModelFileError(ValueError):
    """A model file is malformed: not an npz, truncated, wrong header, or wrong arrays."""


def register_kind(kind, cls):
    """Make :func:`load` rebuild layers of ``kind`` with ``cls`` (``cls.kind`` must equal ``kind``)."""
    if getattr(cls, "kind", None) != kind:
        raise ValueError(f"cls.kind must equal kind {kind!r}, got {getattr(cls, 'kind', None)!r}")
    LAYER_KINDS[kind] = cls
    return cls


def _layer_class(kind):
    """The class registered for ``kind``, importing a built-in module on first use; KeyError if unknown."""
    if kind not in LAYER_KINDS:
        if kind not in _BUILTIN_KINDS:
            raise KeyError(kind)
        module, name = _BUILTIN_KINDS[kind]
        LAYER_KINDS[kind] = getattr(importlib.import_module(module), name)
    return LAYER_KINDS[kind]


# ---------------------------------------------------------------------------------------------
# save
# ---------------------------------------------------------------------------------------------
def save(layer, path, *, classes=None, _training=None):
    """Write ``layer`` to ``path`` atomically (see the module docstring for the format).

    The file is written to a temporary file in the same directory, flushed and fsynced, then renamed
    over ``path``; if anything fails, the temporary file is removed and an existing file at ``path`` is
    left untouched.

    Parameters
    ----------
    layer : fffcpu layer (``FFF``, ``NeuronTreeFFF``, or a class added with :func:`register_kind`)
    path : str or os.PathLike
        Used exactly as given; no suffix is appended. Its directory must exist. A symbolic link is
        followed: the file it names is replaced, the link stays.
    classes : list, tuple or 1-D ndarray, optional
        The name of each output (class), in output order: all ``str`` (non-empty, no lone surrogates) or
        all integers (Python or NumPy, not bool, in the int64 range), unique, ``layer.output_width`` of
        them; NumPy items are stored as plain ``str``/``int``. A fitted ``FFFClassifier`` saves its names with
        ``save(clf.layer_, path, classes=clf.classes_)``. Read them back with :func:`load_classes`.

    Raises
    ------
    TypeError
        ``layer`` is not a registered layer kind, or its config is not JSON-serialisable; ``classes`` is
        not a sequence of str or of integers.
    ValueError
        A parameter holds NaN or inf (such a file could not be loaded); ``classes`` has the wrong length,
        a repeated or empty name, or an integer beyond int64.
    ValueError
        ``path`` is empty or ends with a separator (it names no file).
    FileNotFoundError, IsADirectoryError
        The directory does not exist, or ``path`` is a directory.
    FileExistsError
        ``path`` is a non-empty file that holds no model (a CSV file, an ``np.savez`` archive of data):
        it is left as it is. A model file (fffcpu's, ``.pt`` or ``.safetensors``) is replaced.
    """
    path = _check_model_path(path)
    kind = getattr(layer, "kind", None)
    try:
        cls = _layer_class(kind)
    except (KeyError, TypeError):
        raise TypeError(
            f"layer must be a registered layer kind {sorted(set(_BUILTIN_KINDS) | set(LAYER_KINDS))}, "
            f"got {type(layer).__name__} with kind {kind!r}"
        ) from None
    if type(layer) is not cls:
        raise TypeError(
            f"layer of kind {kind!r} would load back as {cls.__name__}, not {type(layer).__name__}; "
            f"register its class with fffcpu.io.register_kind under a kind of its own"
        )
    if classes is not None:
        classes = _plain_classes(classes, layer.output_width)
    arrays = layer.state_dict()
    if HEADER_KEY in arrays:
        raise ValueError(f"a parameter may not be named {HEADER_KEY!r} (reserved for the file header)")
    for name, arr in arrays.items():
        if arr.dtype.hasobject or arr.dtype.kind not in "fiu":
            raise TypeError(f"parameter {name!r} must hold real numbers, got dtype {arr.dtype}")
        if arr.size and not np.isfinite(arr).all():
            raise ValueError(f"parameter {name!r} holds NaN or inf values; refusing to save a file "
                             f"that could not be loaded")
    from . import __version__
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fffcpu_version": __version__,
        "kind": kind,
        "config": _json_config(layer.config()),
        "arrays": [{"name": name, "shape": list(arr.shape), "dtype": arr.dtype.name}
                   for name, arr in arrays.items()],
    }
    if classes is not None:
        header["classes"] = classes
    if _training is not None:
        header["training"] = _checked_training(_training, layer.input_width)
    blob = json.dumps(header, allow_nan=False).encode("utf-8")
    members = {HEADER_KEY: np.frombuffer(blob, dtype=np.uint8), **arrays}
    _atomic_write(path, lambda f: _write_npz(f, members))


def _fspath(path):
    """``path`` (str, bytes or os.PathLike) as a str, or a TypeError naming what it got."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    return os.fsdecode(path) if isinstance(path, bytes) else path


def _check_path(path):
    path = _fspath(path)
    if not path or path.endswith(("/", os.sep)) or "\0" in path:  # the rename failed with a bare OSError
        raise ValueError(f"path must name a file to save to, got {path!r}"  # naming a temp file
                         + (" (it ends with a separator, so it names a directory)" if path.endswith(("/", os.sep))
                            else " (it holds a NUL character, which no file name may)" if path else ""))
    target = path
    if os.path.islink(path):  # the file is written where the link points (_atomic_write)
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OSError(f"cannot save to {path!r}: it is a loop of symbolic links") from None
        target = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(target))
    link = "" if target == path else f" (the link's target {target!r})"
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}{link}: directory {directory!r} does not exist")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot save to {path!r}{link}: it is a directory")
    kind = _special_kind(target)
    if kind:  # the rename replaced a pipe or a device (/dev/full, as root) with a regular file
        raise OSError(f"cannot save to {path!r}{link}: it is {kind}, not a regular file; give the path of a "
                      "file")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        # the atomic rename needs only the folder's permission, so it replaced write-protected files
        raise PermissionError(f"cannot save to {path!r}{link}: the file is write-protected (not writable by "
                              "this user); remove its protection or choose another path")
    try:  # a folder that takes no new file (permissions, a read-only file system, /sys as root): found
        fd, trial = tempfile.mkstemp(dir=directory, prefix=".fffcpu-", suffix=".tmp")  # here, not after the
    except OSError as e:                                                                # work, naming a temp file
        raise OSError(f"cannot save to {path!r}{link}: no file can be created in directory {directory!r} "
                      f"({e.strerror or e})") from None
    os.close(fd)
    os.unlink(trial)
    return path


def _special_kind(path):
    """What the existing ``path`` is when it is not a regular file or a folder ("a pipe", "a character
    device", ...), else None (a regular file, a folder, or nothing there)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def _check_model_path(path):
    """:func:`_check_path` for a model file: a FileExistsError where ``path`` is a non-empty file that
    holds no model (:func:`looks_like_model_file`), which the model would replace. ``fffcpu.save(layer,
    "train.csv")`` turned a data file into a zip archive without a word."""
    path = _check_path(path)
    problem = _replacing_problem(path, model=True)
    if problem:
        raise FileExistsError(f"cannot save to {path!r}: the file exists and {problem}, and the model would "
                              "replace it; remove it first or choose another path")
    return path


def _replacing_problem(path, model):
    """Why a file of the kind ``model`` (True: a model, False: anything else) should not replace the
    existing, non-empty file ``path`` ("holds no model ...", "cannot be read ..."), or None when it may
    (no such file, an empty one, or one of the same kind)."""
    if not (os.path.isfile(path) and os.path.getsize(path)):
        return None
    held = looks_like_model_file(path)
    if held is None:
        return "cannot be read, so whether it holds a model is unknown"
    if held != model:
        return ("holds a model" if held else
                "holds no model (a data or text file, or an .npz archive of data, say)")
    return None


def looks_like_model_file(path):
    """Whether the existing file ``path`` holds a model: True, False, or None where it cannot be read.

    A model is fffcpu's own archive (a zip with a ``__header__.npy`` member), torch's ``.pt`` (a zip
    with a ``data.pkl`` member, or, named ``.pt``/``.pth``, the legacy pickle that starts with
    protocol 2 to 5) or a ``.safetensors`` file (an 8-byte little-endian header length, then JSON).
    A plain ``np.savez`` archive of data is not one. The commands that write a file refuse to replace
    one of another kind: ``fffcpu train -o data.csv`` turned a data file into a model, ``fffcpu predict
    ... -o model.fff`` a model into CSV text."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        if head[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
            except zipfile.BadZipFile:
                return False
            return any(n == "__header__.npy" or n == "data.pkl" or n.endswith("/data.pkl") for n in names)
    except OSError:
        return None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return os.fspath(path).lower().endswith((".pt", ".pth"))
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 1 << 30


def _json_config(config):
    """``config`` with NumPy scalars turned into Python ones; TypeError naming a value JSON cannot hold."""
    out = {}
    for key, value in config.items():
        if isinstance(value, (np.bool_, np.integer, np.floating)):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise TypeError(f"layer.config()[{key!r}] = {value!r} cannot be saved (not finite)")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise TypeError(
                f"layer.config()[{key!r}] = {value!r} ({type(value).__name__}) cannot be saved as JSON; "
                f"build the layer with JSON-able hyperparameters (for example an int seed)"
            ) from None
        out[key] = value
    return out


def _plain_classes(classes, output_width):
    """``classes`` (list, tuple or 1-D array) as a list of plain ``str`` or ``int``, checked for a layer
    with ``output_width`` outputs; TypeError or ValueError naming the argument."""
    if isinstance(classes, np.ndarray):
        if classes.ndim != 1:
            raise ValueError(f"classes must be 1-D (one name per output), got an array of shape {classes.shape}")
        names = classes.tolist()  # NumPy str_ and int64 items become str and int
    elif isinstance(classes, (list, tuple)):
        names = [x.item() if isinstance(x, (np.str_, np.integer)) else x for x in classes]
    else:  # a str is a sequence too: "abc" would have named three classes
        raise TypeError(f"classes must be a list, tuple or 1-D array of class names, "
                        f"got {type(classes).__name__}")
    _check_class_count(names, output_width, "classes")
    _check_class_names(names, "classes")
    return names


def _check_class_count(names, output_width, what):
    if len(names) != output_width:
        raise ValueError(f"{what} must name each of the layer's {output_width} outputs (output_width), "
                         f"got {len(names)} name{'' if len(names) == 1 else 's'}")


def _check_class_names(names, what):
    """Refuse class names (a list of plain values) that are not all str or all int, repeated, empty, not
    encodable as UTF-8, or beyond int64 (``fffcpu predict`` writes integer names as an int64 array).
    Shared by save and load; TypeError or ValueError whose message starts with ``what``."""
    first = {}  # name -> its first index
    for i, name in enumerate(names):
        if isinstance(name, bool) or not isinstance(name, (str, int)):
            raise TypeError(f"{what} must be all str or all integers, got {name!r} ({type(name).__name__}) "
                            f"at index {i}")
        if isinstance(name, str) != isinstance(names[0], str):  # names[0] passed the check above
            raise TypeError(f"{what} must be all str or all integers, not both: got {names[0]!r} at index 0 "
                            f"and {name!r} at index {i}")
        if name == "":
            raise ValueError(f"{what} must be non-empty names, got '' at index {i}")
        if isinstance(name, str) and not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): fffcpu predict could not write it
                raise ValueError(f"{what} must be text that UTF-8 can encode, got {name!r} at index {i} "
                                 "(a lone surrogate)") from None
        if isinstance(name, int) and not -(1 << 63) <= name < (1 << 63):
            raise ValueError(f"{what} must be integers in the int64 range, got {name} at index {i}")
        if name in first:
            raise ValueError(f"{what} must be unique, got {name!r} at index {first[name]} and at index {i}")
        first[name] = i


def _write_npz(f, members):
    """Write ``{name: array}`` to the binary file ``f`` as an uncompressed npz archive."""
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in members.items():
            with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                npy_format.write_array(member, np.asarray(arr), allow_pickle=False)


def _atomic_write(path, write):
    if os.path.islink(path):  # write the file the link names: renaming onto the link replaced the link
        path = os.path.realpath(path)  # with a file and left its target as it was
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _temp_prefix(path):
    """The prefix of the temporary file that :func:`_atomic_write` writes beside ``path``: a dot and
    ``path``'s name cut to 64 bytes. Why cut: a 250-character name plus mkstemp's 8 letters and
    ".tmp" went past the 255 bytes a name may have, and the error named the temporary file; counted
    in bytes (a character of UTF-8 may take four)."""
    name = os.path.basename(path)[:64]
    while len(os.fsencode(name)) > 64:
        name = name[:-1]
    return "." + name + "."


def _new_file_mode(path):
    """Keep the mode of the file being replaced; a new file gets 0o666 minus the umask (as open() would).

    mkstemp creates files readable by the owner only.
    """
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask():
    # os.umask can only be read by setting it, which races with other threads; Linux shows it here
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_directory(directory):
    """Make the rename durable (POSIX); harmless to skip where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------
def load(path, *, with_classes=False):
    """Read a layer written by :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
    with_classes : bool
        Also return the class names saved with the layer (as :func:`load_classes` does), from the same
        reading of the file: a file replaced between two calls (a server reloading its model) cannot
        pair one model with another's names, and the file is read and checked once.

    Returns
    -------
    layer
        Of the class registered for the file's kind, with the saved config and parameters (bit for bit,
        same dtype). The config includes ``backend``: a layer saved with ``backend="numpy"`` runs on
        the NumPy reference until ``layer.backend = "auto"`` is set (``fffcpu inspect`` shows it).
        With ``with_classes``, the pair ``(layer, classes)``; ``classes`` is None when the file has
        none.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError
        The file is not a valid model file, or ``path`` names a device, pipe or socket; the message
        names the file and what is wrong.
    """
    if not isinstance(with_classes, (bool, np.bool_)):
        raise TypeError(f"with_classes must be True or False, got {with_classes!r}")
    layer, classes = _read(path)
    return (layer, classes) if with_classes else layer


def load_classes(path):
    """The class names saved with a layer (``save(..., classes=...)``), or None if the file has none.

    The whole file is read and checked as :func:`load` checks it, so a file that ``load`` refuses is
    refused here too, with the same :class:`ModelFileError`. To get the layer too, from one reading of
    the file, use ``load(path, with_classes=True)``.

    Returns
    -------
    tuple of str, tuple of int, or None
        One name per output of the layer, in output order.
    """
    return _read(path)[1]


def require_regular_file(path, what):
    """Refuse a ``path`` that names a device, a pipe or a socket, with a :class:`ModelFileError` naming
    it and ``what`` was expected (``"an fffcpu model file"``). Why: a zip reader reads a file that
    reports no size to its end, so ``/dev/zero`` took memory without limit, and a pipe (``/dev/stdin``)
    cannot seek, which was reported as a damaged archive. A missing path is left to ``open``."""
    kind = _special_kind(path)
    if kind is None:
        return
    raise ModelFileError(f"{path!r} is {kind}, not a file: {what} is read from a regular file (save or copy "
                         "it to one and give that path)")


def _read(path, with_training=False):
    """``(layer, classes)`` from a model file: :func:`load`'s layer and :func:`load_classes`' names;
    ``with_training``: ``(layer, classes, training)``, the header's ``training`` entry ({} without one)."""
    path = _fspath(path)
    require_regular_file(path, "an fffcpu model file")

    def fail(problem):
        from .interop import file_format
        try:
            other = file_format(path) != "npz"
        except ValueError:  # a suffix of no known format
            other = False
        hint = ("; its suffix names another format: read it with fffcpu.interop.load_any, or convert it "
                "with `fffcpu convert`") if other else ""
        return ModelFileError(f"{path!r} is not a valid fffcpu model file: {problem}{hint}")

    with open(path, "rb") as f:
        file_size = os.fstat(f.fileno()).st_size
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError) as err:
            raise fail(f"not an npz (zip) archive, or truncated ({err})") from None
        with zf:
            members = {}
            for info in zf.infolist():
                name = info.filename
                if not name.endswith(".npy") or name[:-4] in members:
                    raise fail(f"unexpected or duplicate archive member {name!r}")
                members[name[:-4]] = info
            if HEADER_KEY not in members:
                names = sorted(members)
                shown = ", ".join(map(repr, names[:6])) + (", ..." if len(names) > 6 else "")
                hint = (f"; it holds the arrays {shown}, as a plain NumPy archive (np.savez) does: if they are "
                        "a layer's state dict, read them with fffcpu.interop.from_torch_state_dict("
                        "dict(np.load(path)))") if names else ""
                raise fail(f"no {HEADER_KEY!r} member (the JSON header){hint}")
            raw = _read_member(zf, members[HEADER_KEY], None, fail)
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise fail(f"{HEADER_KEY!r} must be a 1-D uint8 array, got {raw.dtype} of shape {raw.shape}")
            header = _parse_header(raw, fail)
            listed = {a["name"]: a for a in header["arrays"]}

            in_file = [k for k in members if k != HEADER_KEY]
            missing = [k for k in listed if k not in members]
            extra = [k for k in in_file if k not in listed]
            if missing or extra:
                raise fail(f"the arrays in the archive do not match its header: missing {missing}, "
                           f"unexpected {extra}")
            declared = sum(math.prod(a["shape"]) * np.dtype(a["dtype"]).itemsize for a in listed.values())
            if declared > file_size:
                raise fail(f"the header declares {declared} bytes of arrays but the file has only "
                           f"{file_size} bytes (truncated?)")
            arrays = {name: _read_member(zf, members[name], listed[name], fail) for name in listed}

    kind, config = header["kind"], header["config"]
    try:
        cls = _layer_class(kind)
    except KeyError:
        raise fail(f"unknown layer kind {kind!r}; known kinds: "
                   f"{sorted(set(_BUILTIN_KINDS) | set(LAYER_KINDS))}") from None
    except ImportError as err:
        raise fail(f"layer kind {kind!r} needs a module that could not be imported ({err})") from None
    _check_sizes(cls, config, listed, fail)
    try:
        layer = cls(**config)
    except (TypeError, ValueError, KeyError) as err:
        raise fail(f"its config {config} does not build a {cls.__name__}: {err}") from None

    expected = {name: tuple(shape) for name, shape in layer._param_shapes().items()}
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in expected]
    if missing or extra:
        raise fail(f"a {cls.__name__} with this config needs the arrays {list(expected)}; "
                   f"missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise fail(f"array {name!r} must have shape {shape} for this config, got {arrays[name].shape}")
        want = np.asarray(layer.params[name]).dtype
        if arrays[name].dtype != want:
            raise fail(f"array {name!r} must have the layer's dtype {want.name}, "
                       f"got {arrays[name].dtype.name}")
    try:
        layer.load_state_dict(arrays)
    except (KeyError, ValueError, TypeError) as err:
        raise fail(str(err)) from None
    classes = header.get("classes")
    if classes is not None:
        try:
            _check_class_count(classes, layer.output_width, "the header's 'classes'")
        except ValueError as err:
            raise fail(str(err)) from None
        classes = tuple(classes)
    if with_training:
        return layer, classes, _usable_training(header.get("training"), layer.input_width)
    return layer, classes


def _usable_training(training, input_width):
    """The entries of a recorded ``training`` entry that this version can use for a layer of
    ``input_width`` inputs, as a dict ({} for anything but a dict). Informational: an entry it cannot
    use (a later loss) is left out, key by key."""
    good = {}
    for key, value in (training.items() if isinstance(training, dict) else ()):
        try:
            good.update(_checked_training({key: value}, input_width))
        except ValueError:
            pass
    return good


def _checked_training(training, input_width):
    """The header's ``training`` entry (see the module docstring) for a layer of ``input_width`` inputs
    as a plain dict, or a ValueError saying what is wrong with it."""
    if not isinstance(training, dict):
        raise ValueError(f"must be a JSON object, got {training!r}")
    training = {k: v for k, v in training.items()  # later entries, and a label column of null: left out
                if k in ("loss", "label_column", "feature_columns") and v is not None}
    if training.get("loss", "cross_entropy") not in ("cross_entropy", "mse"):
        raise ValueError(f"'loss' must be 'cross_entropy' or 'mse', got {training['loss']!r}")
    column = training.get("label_column")
    if column is not None and (isinstance(column, bool) or not isinstance(column, (str, int))):
        raise ValueError(f"'label_column' must be a column name or index, got {column!r}")
    names = training.get("feature_columns")
    if names is not None:
        if not (isinstance(names, (list, tuple)) and all(isinstance(name, str) for name in names)):
            raise ValueError(f"'feature_columns' must be a list of column names, got {names!r}"[:300])
        if len(names) != input_width:
            raise ValueError(f"'feature_columns' must name the layer's {input_width} inputs, got {len(names)} "
                             "names")
        training["feature_columns"] = list(names)
    return dict(training)


def _parse_header(raw, fail):
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise fail(f"the header is not valid UTF-8 JSON ({err})") from None
    except RecursionError:  # lists or objects nested thousands deep
        raise fail("the header's JSON is nested too deeply to read") from None
    if not isinstance(header, dict):
        raise fail(f"the header must be a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT_NAME:
        raise fail(f"the header's format must be {FORMAT_NAME!r}, got {header.get('format')!r}")
    version = header.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise fail(f"unsupported format_version {version!r}; this fffcpu reads version {FORMAT_VERSION}"
                   f" (file written by fffcpu {header.get('fffcpu_version')!r})")
    for key, typ in (("kind", str), ("config", dict), ("arrays", list)):
        if not isinstance(header.get(key), typ):
            raise fail(f"the header's {key!r} must be a JSON {typ.__name__}, got {header.get(key)!r}")
    seen = set()
    for entry in header["arrays"]:
        ok = (isinstance(entry, dict) and set(entry) == {"name", "shape", "dtype"}
              and isinstance(entry["name"], str) and entry["name"] != HEADER_KEY
              and isinstance(entry["shape"], list)
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in entry["shape"])
              and entry["dtype"] in ("float32", "float64", "int32", "int64", "uint8"))
        if not ok:
            raise fail(f"bad array entry in the header: {entry!r} (expected name, shape, dtype)")
        if entry["name"] in seen:
            raise fail(f"array {entry['name']!r} is listed twice in the header")
        seen.add(entry["name"])
    if "classes" in header:  # optional; its length is checked against the rebuilt layer
        if not isinstance(header["classes"], list):
            raise fail(f"the header's 'classes' must be a JSON list of class names, got {header['classes']!r}")
        try:
            _check_class_names(header["classes"], "the header's 'classes'")
        except (TypeError, ValueError) as err:
            raise fail(str(err)) from None
    return header


#: what zipfile, zlib and numpy.lib.format raise on a damaged member: a bad CRC or zip record, bad
#: deflate data (zlib.error), a compression method, zip version or flag zipfile does not support
#: (NotImplementedError), an "encrypted" flag (RuntimeError: a password is required), a bad .npy header
#: (ValueError, SyntaxError, or tokenize.TokenError from NumPy's fallback parser of old headers)
#: (fffcpu.data's .npz reader catches the same)
NPZ_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError,
                     ValueError, SyntaxError, tokenize.TokenError)


def _read_member(zf, info, entry, fail):
    """Read one ``.npy`` member, checking its own header against ``entry`` before reading any data.

    ``entry`` is the JSON header's ``{"name", "shape", "dtype"}`` (None for the header member itself).
    """
    name = info.filename[:-4]
    try:
        with zf.open(info) as fp:
            version = npy_format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
            else:
                raise fail(f"array {name!r} uses .npy format version {version}, not 1.0 or 2.0")
            if dtype.hasobject:
                raise fail(f"array {name!r} holds Python objects (pickled data); refused, not unpickled")
            if entry is not None:
                if list(shape) != entry["shape"]:
                    raise fail(f"array {name!r} has shape {tuple(shape)} in the archive but "
                               f"{tuple(entry['shape'])} in the header")
                if dtype.name != entry["dtype"]:
                    raise fail(f"array {name!r} has dtype {dtype.name} in the archive but "
                               f"{entry['dtype']} in the header")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > info.file_size:
                raise fail(f"array {name!r} declares {nbytes} bytes of data but its member holds only "
                           f"{info.file_size} bytes (truncated?)")
            data = fp.read(nbytes)
            if len(data) != nbytes:
                raise fail(f"array {name!r} is truncated: {len(data)} of {nbytes} bytes")
            if fp.read(1):  # also reaches the end of the member, where zipfile checks the CRC
                raise fail(f"array {name!r} has trailing bytes after its {nbytes} bytes of data")
    except ModelFileError:
        raise
    except NPZ_MEMBER_ERRORS as err:
        raise fail(f"array {name!r} is corrupt or truncated ({type(err).__name__}: {err})") from None
    arr = np.frombuffer(bytearray(data), dtype=dtype)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), order="C", copy=False)  # native byte order, C layout


def _check_sizes(cls, config, listed, fail):
    """Refuse a config whose sizes disagree with the arrays' shapes, before building (and allocating) it.

    The sizes are inferred by the class's own ``_sizes_from_state_dict`` from zero-memory arrays of the
    header's shapes, given as hints the config values it accepts by name (a neuron-tree forest needs
    ``parallel_size`` or ``depth``: its row count alone does not tell them apart). The header's shapes are
    bounded by the file's size, so a config that passes cannot make the layer allocate much more.
    """
    infer = getattr(cls, "_sizes_from_state_dict", None)
    if infer is None:
        return
    accepted = list(inspect.signature(infer).parameters)[1:]  # after the mapping
    hints = {k: config[k] for k in accepted if k in config}
    shaped = {name: np.broadcast_to(np.zeros((), np.dtype(a["dtype"])), a["shape"])
              for name, a in listed.items()}
    try:
        sizes = infer(shaped, **hints)
    except (KeyError, ValueError, TypeError) as err:
        raise fail(f"the arrays' shapes do not fit a {cls.__name__} with this config: {err}") from None
    # a size the config leaves out is the constructor's default (a file of an FFF without master_leaf)
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()
                if p.default is not inspect.Parameter.empty}
    given = {k: config.get(k, defaults.get(k)) for k in sizes}
    wrong = {k: (given[k], v) for k, v in sizes.items() if given[k] != v}
    if wrong:
        detail = ", ".join(f"{k} is {c!r} in the config but {v} from the arrays"
                           for k, (c, v) in wrong.items())
        raise fail(f"the config does not match the arrays' shapes: {detail}")
