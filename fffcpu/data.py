"""Data: the built-in digits, a seeded train/test split, and loaders for IDX, .npz and .csv files.

Every loader returns plain NumPy arrays ``X`` of shape (n, n_features) and ``y`` of shape (n,),
and refuses a malformed or truncated file with a ``ValueError`` that names the file and what is
wrong with it. Nothing is ever unpickled (``.npz`` files are read with ``allow_pickle=False``).

The built-in data set is the 8x8 "Optical Recognition of Handwritten Digits" (UCI, CC BY 4.0;
see ``fffcpu/data/DIGITS_LICENSE.txt`` for the attribution): 1797 images, 64 pixels in 0..16,
10 classes. It lets ``fffcpu demo`` run offline.
"""
import csv
import gzip
import io
import math
import os
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from ._validate import check_bool, check_dtype, check_int, check_rate
from .io import NPZ_MEMBER_ERRORS

_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DIGITS_PATH = os.path.join(_DATA_DIR, "digits.npz")
DIGITS_LICENSE_PATH = os.path.join(_DATA_DIR, "DIGITS_LICENSE.txt")

# IDX type codes (third byte of the magic number) -> big-endian NumPy dtype
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# -- built-in data ----------------------------------------------------------------------------
def load_digits(scale=True, dtype="float32"):
    """The 8x8 handwritten digits shipped with fffcpu.

    Parameters
    ----------
    scale : bool, default True
        Divide the pixel counts (0..16) by 16 so that features lie in [0, 1].
    dtype : {"float32", "float64"}, default "float32"

    Returns
    -------
    X : ndarray of shape (1797, 64), ``dtype``
    y : ndarray of shape (1797,), int64
        The digit 0..9.
    """
    dtype = check_dtype(dtype)  # int32 failed in the division, None gave float64
    scale = check_bool("scale", scale)
    X, y = load_npz(DIGITS_PATH)
    X = X.astype(dtype)
    if scale:
        X /= 16
    return X, y.astype(np.int64)


def train_test_split(X, y, test_fraction=0.25, seed=0):
    """Split ``(X, y)`` by a seeded permutation, stratified by class when ``y`` holds labels.

    For each class (each distinct value of ``y``) ``round(test_fraction * count)`` samples go to
    the test part, so both parts keep the class proportions. The same seed gives the same split.

    Parameters
    ----------
    X : ndarray of shape (n, ...)
    y : ndarray of shape (n,)
    test_fraction : float in [0, 1), default 0.25
    seed : int, default 0

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarrays
        Rows in a shuffled order.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    test_fraction = check_rate("test_fraction", test_fraction)
    if seed is not None and not isinstance(seed, np.random.Generator):  # None: a fresh random split
        seed = check_int("seed", seed, 0)
    if y.ndim != 1:  # np.unique would stratify by the flattened values, and index rows with them
        raise ValueError(f"y must have shape (n,) (one label per sample to stratify by), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}"
        )
    rng = np.random.default_rng(seed)
    test_idx = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        rng.shuffle(members)
        test_idx.append(members[: int(round(test_fraction * members.size))])
    test_idx = np.concatenate(test_idx) if test_idx else np.zeros(0, dtype=np.intp)
    is_test = np.zeros(y.shape[0], dtype=bool)
    is_test[test_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    if y.size and not train_idx.size:  # it returned an empty training part without a word
        raise ValueError(f"test_fraction {test_fraction} leaves no training samples of {y.size}; use a smaller "
                         "fraction")
    test_idx = rng.permutation(test_idx)
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


def digits_split(test_fraction=0.25, seed=0, dtype="float32"):
    """The built-in digits, scaled to [0, 1] and split by :func:`train_test_split`.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarrays
        With the defaults: 1347 training and 450 test samples.
    """
    X, y = load_digits(dtype=dtype)
    return train_test_split(X, y, test_fraction=test_fraction, seed=seed)


# -- IDX (the MNIST file format) --------------------------------------------------------------
def _read_bytes(path):
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        with open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise FileNotFoundError(f"data file {path!r} does not exist") from None
        if isinstance(exc, zlib.error):  # damaged deflate data inside the gzip stream
            raise ValueError(f"cannot read {path!r}: corrupt gzip data ({exc})") from None
        raise ValueError(f"cannot read {path!r}: {exc}") from None


def load_idx(path):
    """Read one IDX file (raw or gzip-compressed, as MNIST is distributed).

    The format: a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32
    dimensions, then the values in C order, big-endian, of the type given by TYPE
    (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64).

    Parameters
    ----------
    path : str or path-like
        A name ending in ``.gz`` is decompressed.

    Returns
    -------
    ndarray of shape (dim_0, ..., dim_(NDIM-1))
        In native byte order.
    """
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(
            f"IDX file {path!r} is truncated: {len(raw)} bytes, need at least 4 for the magic number"
        )
    zero0, zero1, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0:
        hint = _file_kind_hint(raw, path)
        raise ValueError(
            f"IDX file {path!r} has a bad magic number {raw[:4].hex()}: the first two bytes must be 0"
            + (f"; {hint}" if hint else "")
        )
    if type_code not in _IDX_TYPES:
        raise ValueError(
            f"IDX file {path!r} has an unknown type code 0x{type_code:02x}; expected one of "
            + ", ".join(f"0x{c:02x}" for c in _IDX_TYPES)
        )
    if ndim == 0:
        raise ValueError(f"IDX file {path!r} declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"IDX file {path!r} is truncated: the header declares {ndim} dimensions "
            f"({header} bytes) but the file has {len(raw)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[type_code]
    need = math.prod(dims) * dtype.itemsize  # Python ints: an int64 product can wrap around to a small size
    have = len(raw) - header
    if have < need:
        raise ValueError(
            f"IDX file {path!r} is truncated: shape {dims} of {dtype.name} needs {need} data bytes, "
            f"found {have}"
        )
    if have > need:
        raise ValueError(
            f"IDX file {path!r} is malformed: shape {dims} of {dtype.name} needs {need} data bytes, "
            f"found {have} ({have - need} extra)"
        )
    try:
        data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    except ValueError as exc:  # NumPy holds at most 64 dimensions (32 before 2.0); the byte allows 255
        raise ValueError(f"IDX file {path!r} declares {ndim} dimensions, more than a NumPy array can "
                         f"have ({exc})") from None
    return data.astype(dtype.newbyteorder("="))


def _file_kind_hint(raw, path=""):
    """What a file of the wrong format seems to be, for the error ("" if nothing is recognised):
    ``load_dataset`` reads any name it does not know as IDX, so a ``.npy`` or a CSV named ``.dat`` got
    only "bad magic number"."""
    if raw.startswith(b"\x93NUMPY"):
        return ("it is a .npy array (np.save): save the features and labels together with "
                "np.savez(path, X=X, y=y) and name the file .npz")
    if raw.startswith(b"PK"):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                model = "__header__.npy" in zf.namelist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
            model = False
        if model:  # a trained model given as the data (fffcpu train -o m.fff; fffcpu evaluate --data m.fff)
            return ("it is an fffcpu model file (fffcpu.save): a model is the MODEL argument of evaluate, "
                    "predict and inspect, not --data")
        if os.fspath(path).lower().endswith(".npz"):  # given where an IDX file belongs (--labels data.npz)
            return ("it is an .npz archive, not an IDX file (an .npz file holds its labels itself, under "
                    "--y-key: give it as --data)")
        return "it is a zip archive: if it holds arrays saved with np.savez, name the file *.npz"
    start = raw[:256]
    if start.isascii() and all(b >= 32 or b in b"\t\r\n" for b in start):
        if os.fspath(path).lower().endswith((".csv", ".tsv", ".txt")):  # given where an IDX file belongs
            return "it is a text file, not an IDX file (a CSV file holds its labels as a column: --label-column)"
        return "it looks like text: name a CSV file *.csv (or *.tsv with tabs)"
    return ""


def _idx_images(path):
    """:func:`load_idx`, refusing a file without samples or without features (reshaping those fails), and a
    1-d file: that is a labels file (taken for images, each label became the one feature of its sample)."""
    images = load_idx(path)
    _refuse_non_finite(images, f"IDX images file {os.fspath(path)!r}")
    if images.ndim == 1:
        raise ValueError(f"IDX images file {os.fspath(path)!r} holds a 1-d array of shape {images.shape}, "
                         "like a labels file: expected images of shape (n, rows, cols) or (n, n_features)")
    if images.shape[0] == 0 or images[0].size == 0:
        raise ValueError(f"IDX images file {os.fspath(path)!r} must hold at least one sample with at least "
                         f"one feature, got shape {images.shape}")
    return images


def load_mnist(images_path, labels_path, scale=True, dtype="float32"):
    """Read an MNIST-style pair of IDX files: images (n, rows, cols) and labels (n,).

    Parameters
    ----------
    images_path, labels_path : str or path-like
        For example ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz``.
    scale : bool, default True
        Divide uint8 images by 255 so that features lie in [0, 1].
    dtype : {"float32", "float64"}

    Returns
    -------
    X : ndarray of shape (n, rows * cols)
    y : ndarray of shape (n,), int64
    """
    images = _idx_images(images_path)
    if not os.path.exists(labels_path):  # it was named "data file", as the images are
        raise FileNotFoundError(f"labels file {os.fspath(labels_path)!r} does not exist")
    labels = load_idx(labels_path)
    if labels.ndim != 1:
        raise ValueError(
            f"labels file {os.fspath(labels_path)!r} must hold a 1-d array, got shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images file {os.fspath(images_path)!r} has {images.shape[0]} samples but labels file "
            f"{os.fspath(labels_path)!r} has {labels.shape[0]}"
        )
    if labels.dtype.kind == "f":  # the cast to int64 below truncated 1.5 to 1 and made NaN a huge number
        bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (np.abs(labels) >= 2.0 ** 63)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"labels file {os.fspath(labels_path)!r} must hold integer class labels, got "
                             f"{labels[i]} at index {i} ({int(bad.sum())} such value(s))")
    is_bytes = images.dtype == np.uint8
    X = images.reshape(images.shape[0], -1).astype(dtype)
    if scale and is_bytes:
        X /= 255
    return X, labels.astype(np.int64)


# -- .npz -------------------------------------------------------------------------------------
def load_npz(path, x_key="X", y_key="y", require_y=True):
    """Read ``X`` and ``y`` from a NumPy ``.npz`` archive (never unpickling).

    Parameters
    ----------
    path : str or path-like
    x_key, y_key : str, default "X", "y"
        The names of the arrays in the archive.
    require_y : bool, default True
        If False, a missing ``y_key`` gives ``y = None``.

    Returns
    -------
    X : ndarray of shape (n, n_features)
        A 1-d ``X`` is read as one feature; higher ranks are flattened per sample. At least one row
        and one feature.
    y : ndarray of shape (n,) or (n, k), or None
        Class labels or one regression target per sample, or k regression targets per sample.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    _check_npz_start(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if x_key not in names:
                raise ValueError(
                    f".npz file {path!r} has no array {x_key!r} (arrays: {names}); "
                    "choose the names with x_key / y_key (--x-key / --y-key on the command line)"
                )
            X = _npz_array(archive, x_key, path)
            y = None
            if y_key in names:
                y = _npz_array(archive, y_key, path)
            elif require_y:
                raise ValueError(
                    f".npz file {path!r} has no array {y_key!r} (arrays: {names}); "
                    "choose the names with x_key / y_key (--x-key / --y-key on the command line)"
                )
    except ValueError as exc:
        if str(exc).startswith(".npz file"):
            raise
        raise ValueError(f"cannot read .npz file {path!r}: {exc}") from None
    except (KeyError, *NPZ_MEMBER_ERRORS) as exc:  # damaged members, unsupported zip features
        raise ValueError(f"cannot read .npz file {path!r}: {type(exc).__name__}: {exc}") from None
    if X.dtype.kind not in "fiub":
        raise ValueError(f"array {x_key!r} in {path!r} must hold numbers, got dtype {X.dtype}")
    if X.ndim == 0:
        raise ValueError(f"array {x_key!r} in {path!r} must have one row per sample, got a scalar")
    if X.shape[0] == 0:
        raise ValueError(f"array {x_key!r} in {path!r} must have at least one row (sample), "
                         f"got shape {X.shape}")
    X = X.reshape(X.shape[0], -1) if X.ndim != 1 else X.reshape(-1, 1)
    if X.shape[1] == 0:
        raise ValueError(f"array {x_key!r} in {path!r} must have at least one feature per sample, "
                         f"got shape {X.shape}")
    _refuse_non_finite(X, f"array {x_key!r} in {path!r}")
    if y is not None:
        _refuse_non_finite(y, f"array {y_key!r} in {path!r}")
        if y.ndim not in (1, 2) or y.ndim == 2 and y.shape[1] == 0:
            raise ValueError(f"array {y_key!r} in {path!r} must have shape (n,) (labels or one target) or "
                             f"(n, k) with k >= 1 (k regression targets), got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f".npz file {path!r}: {x_key!r} has {X.shape[0]} rows but {y_key!r} has {y.shape[0]}"
            )
    return X, y


def _refuse_non_finite(arr, what):
    """Refuse NaN and inf in a float array read from a file, naming the first one's index: training and
    the layers refuse them too, but without naming the file ("X must be finite")."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = ~np.isfinite(arr)
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        index = index[0] if len(index) == 1 else index
        raise ValueError(f"{what} holds {arr[index]} at index {index} ({int(bad.sum())} value(s) NaN or "
                         "infinite); fffcpu needs finite numbers (drop or fill in such values first)")


def _check_npz_start(path):
    """Refuse a file that is not a zip archive before np.load sees it: np.load returns a ``.npy`` file's
    one array, and takes anything else for a pickle (and says so, suggesting to unpickle it)."""
    try:
        with open(path, "rb") as fh:
            start = fh.read(6)
    except OSError as exc:
        raise ValueError(f"cannot read .npz file {path!r}: {exc}") from None
    if start.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a zip's first member, or an empty zip
        return
    if not start:
        problem = "is empty"
    elif start == b"\x93NUMPY":
        problem = "is a single .npy array (np.save), not an .npz archive"
    else:
        problem = f"is not an .npz archive (it starts with {start!r})"
    raise ValueError(f".npz file {path!r} {problem}: expected a zip of named arrays as np.savez writes, "
                     "e.g. np.savez(path, X=X, y=y)")


def _npz_array(archive, key, path):
    """``archive[key]``, refusing object arrays (never unpickled), members that are not arrays, and
    members whose .npy header declares more data than they hold."""
    _check_npz_member_size(archive, key, path)
    try:
        arr = archive[key]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        raise ValueError(f".npz file {path!r}: array {key!r} holds Python objects (pickled data), which "
                         "are never unpickled: expected an array of numbers") from None
    if not isinstance(arr, np.ndarray):  # np.load returns the raw bytes of a member that is no .npy
        raise ValueError(f".npz file {path!r}: member {key!r} is not a .npy array ({len(arr)} raw bytes)")
    return arr


def _check_npz_member_size(archive, key, path):
    """Refuse a member whose .npy header (versions 1.0 and 2.0) declares more bytes of data than the
    member holds, before np.load allocates them: a damaged header declaring shape (10**11,) made it ask
    for 373 GiB (MemoryError). Other members are left to np.load, which says what is wrong with them."""
    member = key if key in archive.zip.namelist() else key + ".npy"  # as np.load looks a key up
    info = archive.zip.getinfo(member)
    with archive.zip.open(info) as fp:
        try:
            version = npy_format.read_magic(fp)
        except ValueError:
            return  # no .npy member: np.load returns its bytes, which _npz_array refuses
        read_header = {(1, 0): npy_format.read_array_header_1_0,
                       (2, 0): npy_format.read_array_header_2_0}.get(version)
        if read_header is None:
            return
        shape, _, dtype = read_header(fp)
    if dtype.hasobject:  # pickled objects, whose size says nothing: np.load refuses them, and the caller
        return           # says so (they were reported as damaged when the pickle was small)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise ValueError(f".npz file {path!r}: array {key!r} declares shape {shape} of {dtype} ({nbytes} "
                         f"bytes) but its member holds only {info.file_size} bytes (damaged or truncated)")


# -- .csv -------------------------------------------------------------------------------------
def _not_utf8_error(path):
    """The error for a CSV file that is not UTF-8: where, and what to do (the codec's own message gave a
    "position" within the chunk being decoded, not within the file)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    start = 0
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
    line = raw.count(b"\n", 0, start) + 1
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        hint = "it is UTF-16 text (Excel's \"Unicode Text\"): save it as \"CSV UTF-8\""
    elif raw.startswith((b"\x93NUMPY", b"PK")):
        hint = _file_kind_hint(raw)
    else:
        hint = "save it as UTF-8 (Excel: \"CSV UTF-8\"), e.g. re-encode a Latin-1 or Windows-1252 file"
    return ValueError(f"CSV file {path!r} is not UTF-8 text: byte 0x{raw[start]:02x} at offset {start} "
                      f"(line {line}); {hint}")


def _csv_float(cell):
    """``float(cell)`` for the numbers a CSV file holds: ASCII digits with an optional sign, decimal point
    and exponent, spaces around them allowed; ValueError for anything else.

    float() alone also reads Python literals nobody writes into a table: ``1_0`` (10.0) and non-ASCII
    digits (U+FF11, a fullwidth 1). It still reads nan / inf spellings and values beyond float64's
    range (inf): the callers refuse those by position.
    """
    if "_" in cell or not cell.isascii():
        raise ValueError(cell)
    return float(cell)


def _not_finite(cell):
    """Why ``cell``, read by :func:`_csv_float` into a NaN or inf, is not a finite number."""
    if math.isnan(float(cell)):
        return "NaN (a missing value)"
    if "inf" in cell.lower():
        return "infinite"
    return f"beyond the float64 range (largest magnitude {np.finfo(np.float64).max:.4g})"


def _csv_rows(text, delimiter, limit=None, lines=None):
    """The rows of a CSV text that hold something (a row of blank cells is skipped), the first ``limit``
    of them if given; each row's line number in the file (of its last line, for a quoted line break)
    is appended to the list ``lines`` if given."""
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        if row and any(c.strip() for c in row):
            rows.append(row)
            if lines is not None:
                lines.append(reader.line_num)
            if len(rows) == limit:
                break
    return rows


def _is_number(cell):
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _csv_has_header(head, header):
    """Whether the first row of a CSV file is a header, decided from its first two rows ``head``."""
    if header != "auto":
        return header
    # a header has a non-number where the next row has a number (a text label column does not);
    # an empty cell is a missing value, not a column name
    first = [_is_number(c) or not c.strip() for c in head[0]]
    if len(head) > 1:
        second = [_is_number(c) for c in head[1]]
        header = any(s and not f for f, s in zip(first, second))
    else:
        header = not all(first)
    # pandas names the columns of a DataFrame made from an array 0, 1, ..., k-1, after an empty cell
    # over its row index if it writes one: such a first row was read as a sample
    cells = [c.strip() for c in head[0]]
    over_index = cells[0] == ""
    if over_index:
        cells = cells[1:]
    # without the empty cell, a sample could read 0, 1, 2: ask for four columns
    if len(head) > 1 and len(cells) >= (2 if over_index else 4) and cells == [str(j) for j in range(len(cells))]:
        header = True
    return header


# the characters of a table of plain numbers, less the delimiter and the line ends
_NUMBER_CHARS = "0123456789+-.eE \t"


def _csv_numbers(text, delimiter, names_row):
    """The data rows of a CSV text as one array (int64 if every cell is an integer, else float64), if
    every cell is a finite number in the plain spelling (digits, sign, point, exponent, spaces) and every
    row has the same number of cells; else None. ``names_row``: the header row as the csv module read
    it, or None without a header.

    NumPy's reader reads these spellings as float() does (checked against float() in the tests); a cell
    that it refuses (``--1``, ``1e``, an empty one) sends the file to the cell-by-cell reader.
    """
    body = _csv_body(text, delimiter, names_row)
    values = None if body is None else _plain_numbers(body, delimiter)
    if values is None or (names_row is not None and values.shape[1] != len(names_row)):
        return None
    return values


def _csv_body(text, delimiter, names_row):
    """The data lines of a CSV text, joined by "\\n" (a "\\r\\n" read as "\\n"), if the header (if
    any) is the whole first line; else None."""
    if names_row is not None and names_row[0].strip() == "":
        return None  # a column without a name: perhaps a row index, which load_csv refuses
    text = text.replace("\r\n", "\n")  # a lone "\r" (old Mac line ends) is not one of the characters below
    if names_row is not None:
        first_line, _, text = text.partition("\n")
        # the header must be the file's first line, whole: no blank line before it, no quoted line end, no
        # lone "\r" (a line end to the csv module, which refuses one inside a line it is given)
        if "\r" in first_line or next(csv.reader([first_line], delimiter=delimiter), None) != names_row:
            return None
    return text


def _plain_numbers(text, delimiter):
    """The rows of ``text`` (data lines, no header) as one array, int64 if every cell is an integer, else
    float64, if every cell is a finite number in the plain spelling; else None."""
    if not text.strip() or text.translate(str.maketrans("", "", _NUMBER_CHARS + delimiter + "\n")):
        # nothing but the header; or a character that is not part of a plain number: NumPy would read
        # some that float() refuses, such as "\x1c1"
        return None
    values = None
    # integers parse ~5x faster than floats, and int64 -> float64 rounds as float() does; "-0" is -0.0 to
    # float(), and 19 digits may not fit int64, which NumPy before 2.3 reads through a float and wraps
    # around (with a DeprecationWarning only) instead of refusing
    if not ("." in text or "e" in text or "E" in text or "-0" in text or _has_19_digits(text)):
        values = _read_numbers(text, delimiter, np.int64)
    if values is None:  # real numbers, 19 digits in a row, or a cell the integer parser refuses
        values = _read_numbers(text, delimiter, np.float64)
    if values is None or not np.isfinite(values).all():
        return None
    return values


def _csv_text_labels(text, delimiter, names_row, label_idx, width):
    """``(features, labels)`` of a CSV text whose label column (index ``label_idx`` of ``width``) holds
    text and whose other cells are plain numbers: the features as :func:`_plain_numbers` reads them, the
    labels as a str array of the stripped cells; else None (anything unusual, such as a quote, an empty or
    numeric label or a ragged row, is left to the cell-by-cell reader, which says what is wrong).

    Each line is split around its label cell (str.rpartition for the last column, str.partition for the
    first, else str.split up to it) and the features, joined again, go through NumPy's reader: MNIST as
    CSV (70,000 x 785, 196 MB) with names as labels loads in 6.3-8.5 s at a peak RSS of 1.8 GB, against
    27-37 s and 4.7 GB cell by cell (integer labels: 5-7 s, 1.7 GB); the split and join take 0.7 s.
    """
    body = _csv_body(text, delimiter, names_row)
    # the csv module reads a quote at the start of a cell, and a lone "\r", differently; a NUL is an
    # error to it before Python 3.11
    if body is None or '"' in body or "\r" in body or "\0" in body:
        return None
    features, labels = [], []
    lines, body = body.split("\n"), None  # each line is held once, not twice
    for line in lines:
        if label_idx == width - 1:
            feature, _, label = line.rpartition(delimiter)
        elif label_idx == 0:
            label, _, feature = line.partition(delimiter)
        else:
            rest = line.split(delimiter, label_idx)[-1]
            label, _, after = rest.partition(delimiter)
            feature = line[:len(line) - len(rest)] + after
        label = label.strip()
        if not label:
            if line.replace(delimiter, "").strip():
                return None  # an empty label
            continue  # a row of blank cells, which the csv reader skips
        features.append(feature)
        labels.append(label)
    for label in set(labels):  # a few distinct labels, however many rows
        try:
            _csv_float(label)
            return None  # a number: the column mixes numbers and text, or holds only numbers
        except ValueError:
            pass
    del lines
    features = "\n".join(features)
    values = _plain_numbers(features, delimiter)
    if values is None or values.shape != (len(labels), width - 1):
        return None
    return values, np.array(labels)


def _has_19_digits(text):
    """Whether ``text`` holds 19 digits in a row (0.2 s for MNIST as CSV; a regular expression takes
    1.5 s). UTF-8 keeps each ASCII digit one byte, and a delimiter such as "€" holds none."""
    run = np.frombuffer(text.encode("utf-8"), np.uint8) - np.uint8(48) < 10  # a digit starts a run of 1
    for shift in (1, 2, 4, 8, 3):  # runs of 2, 4, 8, 16, then 19 digits
        run = run[:-shift] & run[shift:]
    return bool(run.any())


def _read_numbers(text, delimiter, dtype):
    """NumPy's C reader on a text of numbers: an array of shape (rows, columns), or None if it refuses."""
    try:
        return np.loadtxt(io.StringIO(text), delimiter=delimiter, comments=None, dtype=dtype, ndmin=2)
    except ValueError:
        return None


def _csv_columns(path, label_column, names, width):
    """``(label_idx, feature_cols)`` of a CSV table ``width`` columns wide with header ``names`` (or
    None): the label column's index (None for ``label_column=None``) and the other columns' indices."""
    if label_column is None:
        return None, list(range(width))
    if isinstance(label_column, str):
        if names is None or label_column not in names:
            raise ValueError(
                f"label_column {label_column!r} is not a column of {path!r} "
                f"(header: {names if names is not None else 'none'})"
            )
        label_idx = names.index(label_column)
        if names.count(label_column) > 1:  # the first one was taken, the others read as features
            where = [c + 1 for c, name in enumerate(names) if name == label_column]
            raise ValueError(f"label_column {label_column!r} names {len(where)} columns of {path!r} "
                             f"(columns {where}); give the label column by its index instead")
    else:
        label_idx = check_int("label_column", label_column)
        if not -width <= label_idx < width:
            raise ValueError(
                f"label_column must be in [{-width}, {width - 1}] for {path!r} ({width} columns), "
                f"got {label_idx}"
            )
        label_idx %= width
    feature_cols = [c for c in range(width) if c != label_idx]
    if not feature_cols:
        hint = ""
        if os.fspath(path).lower().endswith(".tsv"):  # a comma-separated file named .tsv reads as one column
            hint = " (a .tsv file is read with tabs between the values: for commas, name it *.csv)"
        raise ValueError(f"CSV file {path!r} has only the label column, no features{hint}")
    return label_idx, feature_cols


def load_csv(path, label_column=-1, header="auto", delimiter=",", *, return_names=False):
    """Read a table of numbers with one label column.

    A number is written as a spreadsheet or ``pandas.DataFrame.to_csv`` writes it: ASCII digits with an
    optional sign, decimal point and exponent (``-1.5``, ``+2``, ``3e-4``), spaces around it allowed.
    Python's other float() spellings (``1_0``, non-ASCII digits) are refused, as are NaN, inf and
    values beyond the float64 range: the error names the line in the file and the column.

    A file of plain numbers (nothing but digits, signs, points, exponents, spaces, delimiters and line
    ends) is parsed by NumPy's C reader, integers as int64, which is about 5x faster for MNIST as CSV;
    the numbers are the same, bit for bit. So is a file whose label column holds text (iris' species,
    digits written as names) and whose other cells are plain numbers: the labels are split off each line
    and the features go through that reader (about 5x faster, with under half the memory). Any other
    file (quotes, a lone "\\r", a label column mixing numbers and text or with an empty label, a row of
    another width, ...), or a file with a cell that reader refuses, is read cell by cell, which names the
    cell that is wrong; the fast paths give the same arrays and errors as that reader.

    Parameters
    ----------
    path : str or path-like
    label_column : int, str or None, default -1
        Index (negative counts from the end) or header name of the label column; None if the
        file holds features only.
    header : {"auto", True, False, None}, default "auto"
        Whether the first row holds column names (None: no, as pandas' ``header=None``); "auto": it does if one of its cells is not a number
        where the second row has a number, or if it reads 0, 1, ..., k-1 with k >= 4 (the names pandas
        gives the columns of an array), after an empty cell over a row index (then k >= 2). A first
        column without a name that holds integers (pandas' row index) is refused.
    delimiter : str, default ","
    return_names : bool, default False
        Also return the feature columns' names.

    Returns
    -------
    X : ndarray of shape (n, n_columns - 1), float64
    y : ndarray of shape (n,) or None
        int64 if every label is an integral number (``1``, ``+1``, `` 1 `` and ``1.0`` all give 1),
        float64 if every label is a number, str if none is. A column mixing numbers and text, or
        holding an empty, NaN or infinite label, is refused.
    names : list of str or None
        Only with ``return_names``: the header's name of each column of ``X`` (spaces around it
        stripped), or None for a file without a header.
    """
    path = os.fspath(path)
    if header is None:  # as pandas' header=None: no header row
        header = False
    if not (isinstance(header, (bool, np.bool_)) or (isinstance(header, str) and header == "auto")):
        # "yes" was read as True, and 0 as no header where pandas' header=0 means a header in row 0
        raise ValueError(f"header must be 'auto', True or False (or None: no header), got {header!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: drop a byte-order mark
            text = fh.read()
        head = _csv_rows(text, delimiter, limit=2)
    except UnicodeDecodeError:
        raise _not_utf8_error(path) from None
    except (OSError, csv.Error) as exc:
        raise ValueError(f"cannot read CSV file {path!r}: {exc}") from None
    if not head:
        raise ValueError(f"CSV file {path!r} is empty")
    header = _csv_has_header(head, header)

    # a table of plain numbers (MNIST as CSV) is parsed by NumPy's C reader, ~3x faster than a cell at a
    # time; it gives the same numbers, and anything else (text, quotes, a malformed or non-finite cell)
    # goes the slow way below, which says what is wrong
    names_row = head[0] if header else None
    names = [c.strip() for c in head[0]] if header else None
    values = _csv_numbers(text, delimiter, names_row)
    if values is not None:
        label_idx, feature_cols = _csv_columns(path, label_column, names, values.shape[1])
        lo, hi = feature_cols[0], feature_cols[-1] + 1
        # the label first or last: a slice, copied once (a column list would make a Fortran-order copy first)
        X = np.ascontiguousarray(values[:, lo:hi] if hi - lo == len(feature_cols) else values[:, feature_cols],
                                 dtype=np.float64)
        y = None if label_idx is None else _number_labels(values[:, label_idx].astype(np.float64))
        return _with_names((X, y), names, feature_cols, return_names)
    # a text label column (iris' species, digits written as names): the label cells are split off each
    # line, and the features go through NumPy's reader as above
    try:
        label_idx = _csv_columns(path, label_column, names, len(head[0]))[0]
    except (TypeError, ValueError):
        label_idx = None  # the cell-by-cell reader raises it, after the checks it makes first
    found = None if label_idx is None else _csv_text_labels(text, delimiter, names_row, label_idx, len(head[0]))
    if found is not None:
        feature_cols = [c for c in range(len(head[0])) if c != label_idx]
        return _with_names((np.ascontiguousarray(found[0], dtype=np.float64), found[1]), names, feature_cols,
                           return_names)

    try:
        lines = []  # each row's line in the file, for the errors (blank lines are skipped)
        rows = _csv_rows(text, delimiter, lines=lines)
    except csv.Error as exc:
        raise ValueError(f"cannot read CSV file {path!r}: {exc}") from None
    names = None
    if header:
        names = [c.strip() for c in rows[0]]
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise ValueError(f"CSV file {path!r} has a header but no data rows")
        if names[0] == "" and all(row[0].strip().isdigit() for row in rows):
            raise ValueError(f"CSV file {path!r} starts with a column without a name that holds integers: a "
                             "row index as pandas writes it (DataFrame.to_csv without index=False), which "
                             "would be read as a feature; write the file with index=False, or name the column")
    width = len(rows[0]) if names is None else len(names)
    if width == 1:  # a file separated by something else: "has only the label column" or "not a number"
        for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'"), (" ", "spaces")):
            if sep in rows[0][0].strip():
                raise ValueError(f"CSV file {path!r} has one column, whose first cell {rows[0][0]!r} holds "
                                 f"{name}: expected fields separated by {delimiter!r} (fffcpu reads .csv "
                                 "and .txt with commas, .tsv with tabs)")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"CSV file {path!r} is malformed: line {lines[i]} has {len(row)} columns, "
                             f"expected {width}")

    label_idx, feature_cols = _csv_columns(path, label_column, names, width)

    def cell_error(i, c, problem):
        return ValueError(f"CSV file {path!r} is malformed: line {lines[i]}, column {c + 1} holds "
                          f"{rows[i][c]!r}, {problem}")

    X = np.empty((len(rows), len(feature_cols)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, c in enumerate(feature_cols):
            try:
                X[i, j] = _csv_float(row[c])
            except ValueError:
                raise cell_error(i, c, "not a number" + _text_column_hint(rows, c, names)) from None
    if not np.isfinite(X).all():  # the training and the layers refuse NaN and inf: say where they are
        i, j = np.argwhere(~np.isfinite(X))[0]
        c = feature_cols[j]
        raise cell_error(i, c, f"which is {_not_finite(rows[i][c])}; fffcpu needs finite numbers "
                               "(drop or fill in such values first)")
    if label_idx is None:
        return _with_names((X, None), names, feature_cols, return_names)
    empty = [i for i, row in enumerate(rows) if not row[label_idx].strip()]
    if empty:
        raise ValueError(f"CSV file {path!r} is malformed: line {lines[empty[0]]}, column {label_idx + 1} (the "
                         "label column) is empty")
    return _with_names((X, _csv_labels(rows, label_idx, cell_error)), names, feature_cols, return_names)


def _with_names(X_y, names, feature_cols, return_names):
    """``load_csv``'s result: ``(X, y)``, or ``(X, y, names of X's columns or None)`` with ``return_names``."""
    if not return_names:
        return X_y
    return (*X_y, None if names is None else [names[c] for c in feature_cols])


def _text_column_hint(rows, c, names):
    """For a feature column ``c`` that holds text in every row (species written first, say): how to read
    it as the label column; else ""."""
    if not all(row[c].strip() and not _is_number(row[c]) for row in rows):
        return ""
    name = names[c] if names is not None and names[c] and names.count(names[c]) == 1 else None
    shown = f" ({name!r})" if name else ""
    return (f"; column {c + 1}{shown} holds text in every row: if it holds the labels, read it as the label "
            f"column with label_column={name if name else c!r} (fffcpu: --label-column {name if name else c})")


def _csv_labels(rows, label_idx, cell_error):
    """The label column: int64 if every label is an integral number, float64 if all are numbers, str
    if none is; a NaN or infinite label, or a column mixing numbers and text, is refused."""
    labels = [row[label_idx].strip() for row in rows]
    numbers = np.empty(len(labels), dtype=np.float64)
    is_text = np.zeros(len(labels), dtype=bool)
    for i, label in enumerate(labels):
        try:
            numbers[i] = _csv_float(label)
        except ValueError:
            is_text[i] = True
    if is_text.all():
        return np.array(labels)
    if is_text.any():  # "?" or "n/a" for a missing label, or a typo: as str, every label would be text
        i, number = np.argmax(is_text), np.argmin(is_text)
        raise cell_error(i, label_idx, f"not a number, unlike other labels in the column such as "
                                       f"{labels[number]!r}")
    if not np.isfinite(numbers).all():
        i = np.argmin(np.isfinite(numbers))
        raise cell_error(i, label_idx, f"which is {_not_finite(labels[i])}; labels must be finite numbers")
    return _number_labels(numbers)


def _number_labels(numbers):
    """A label column of finite float64 numbers: as int64 if every one is integral, else as it is."""
    # |label| < 2**63: a larger integral value would wrap around in the cast to int64
    if np.all(numbers == np.round(numbers)) and np.all(np.abs(numbers) < 2.0 ** 63):
        return numbers.astype(np.int64)
    return np.ascontiguousarray(numbers)


# -- one entry point for the command line -----------------------------------------------------
def load_dataset(path, labels=None, label_column=-1, x_key="X", y_key="y", require_y=True, *, return_names=False):
    """Load ``(X, y)`` from a file, choosing the reader from its name.

    - ``"digits"``: the built-in digits (all 1797 samples, scaled to [0, 1]);
    - ``*.npz``: :func:`load_npz` with ``x_key`` / ``y_key``;
    - ``*.csv``, ``*.tsv``, ``*.txt``: :func:`load_csv` with ``label_column``;
    - anything else (``*-ubyte``, ``*.idx``, ``*.gz``): IDX images, with the labels from the IDX
      file ``labels`` (required when ``require_y``).

    The other formats hold their own labels: a ``labels`` file given with them is refused when
    ``require_y`` (ignored otherwise, as ``fffcpu predict`` documents).

    Returns
    -------
    X : ndarray of shape (n, n_features)
    y : ndarray of shape (n,) or None
    names : list of str or None
        Only with ``return_names``: the names of X's columns in a CSV file's header (None for a CSV file
        without a header, and for the other formats).
    """
    path = os.fspath(path)
    low = path.lower()
    if labels is not None and require_y and (path == "digits" or low.endswith((".npz", ".csv", ".tsv", ".txt"))):
        # it was ignored: `--data X.csv --labels y.csv` trained on X.csv's last column as the labels
        raise ValueError(f"--labels {os.fspath(labels)!r} is for IDX images only: --data {path!r} holds its "
                         "own labels (an .npz file as an array, --y-key; a CSV file as a column, "
                         "--label-column); put features and labels in one file")
    if low.endswith((".csv", ".tsv", ".txt")):
        delimiter = "\t" if low.endswith(".tsv") else ","
        X, y, names = load_csv(path, label_column=label_column, delimiter=delimiter, return_names=True)
        if require_y and y is None:
            raise ValueError(f"CSV file {path!r} was read without a label column, but labels are needed")
        return (X, y, names) if return_names else (X, y)
    if path == "digits":
        X, y = load_digits()
    elif low.endswith(".npz"):
        X, y = load_npz(path, x_key=x_key, y_key=y_key, require_y=require_y)
    elif labels is not None:
        X, y = load_mnist(path, labels)
    else:
        images = _idx_images(path)  # first: a file that is no IDX file should say so, not ask for labels
        if require_y:
            raise ValueError(
                f"IDX file {path!r} holds no labels: give the labels file as well (--labels FILE)"
            )
        X, y = images.reshape(images.shape[0], -1).astype(np.float32), None
        if images.dtype == np.uint8:
            X /= 255
    return (X, y, None) if return_names else (X, y)
