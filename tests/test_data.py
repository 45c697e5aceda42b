"""Built-in digits, the seeded split, and the IDX / .npz / .csv loaders (good and broken files)."""
import gzip
import io
import os
import pathlib
import re
import struct
import warnings
import zipfile

import numpy as np
import pytest

import fffcpu
from fffcpu import data

from .fuzzing import damaged_copies


def test_digits_shape_values_and_licence():
    X, y = data.load_digits(scale=False)
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    Xs, _ = data.load_digits()
    np.testing.assert_allclose(Xs, X / 16)
    text = open(data.DIGITS_LICENSE_PATH, encoding="utf-8").read()
    assert "CC BY 4.0" in text and "Alpaydin" in text


def test_split_is_seeded_stratified_and_disjoint():
    a = data.digits_split(seed=1)
    b = data.digits_split(seed=1)
    c = data.digits_split(seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1], c[1])
    X_train, X_test, y_train, y_test = a
    assert len(y_train) + len(y_test) == 1797
    np.testing.assert_allclose(np.bincount(y_test) / len(y_test), np.bincount(y_train) / len(y_train), atol=0.01)
    # no sample in both parts (rows of the digits are not all distinct, so compare indices via a tag)
    X = np.arange(20)[:, None]
    y = np.repeat([0, 1], 10)
    Xtr, Xte, _, _ = data.train_test_split(X, y, test_fraction=0.3, seed=0)
    assert len(Xte) == 6 and set(Xtr[:, 0]).isdisjoint(Xte[:, 0])
    assert sorted(np.concatenate([Xtr[:, 0], Xte[:, 0]])) == list(range(20))  # nothing lost or repeated
    # "rows in a shuffled order": not the input order, which would put one class after the other
    assert np.any(np.diff(Xtr[:, 0]) < 0) and np.any(np.diff(Xte[:, 0]) < 0)
    with pytest.raises(ValueError, match="same number of rows"):
        data.train_test_split(X, y[:5])


def test_digits_split_sizes_are_what_the_docs_say():
    """digits_split's docstring said 1348/449 and docs/efff.md 449 test samples; the split gives 1347/450."""
    X_train, X_test, y_train, y_test = data.digits_split()
    assert (len(X_train), len(X_test), len(y_train), len(y_test)) == (1347, 450, 1347, 450)
    assert "1347 training and 450 test samples" in data.digits_split.__doc__
    efff = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "efff.md").read_text(encoding="utf-8")
    assert "450 test samples" in efff and "449" not in efff


def write_idx(path, arr, type_code=0x08, compress=False, dims=None, extra=b""):
    dims = arr.shape if dims is None else dims
    dt = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    raw = bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    raw += np.asarray(arr).astype(dt).tobytes() + extra
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(raw)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_and_mnist_pair(tmp_path, compress):
    suffix = ".gz" if compress else ""
    imgs = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2) * 20
    labels = np.array([7, 0, 9], dtype=np.uint8)
    ip = write_idx(tmp_path / f"img{suffix}", imgs, compress=compress)
    lp = write_idx(tmp_path / f"lab{suffix}", labels, compress=compress)
    np.testing.assert_array_equal(data.load_idx(ip), imgs)
    X, y = data.load_mnist(ip, lp)
    assert X.shape == (3, 4) and X.dtype == np.float32
    np.testing.assert_allclose(X, imgs.reshape(3, 4) / 255)
    np.testing.assert_array_equal(y, [7, 0, 9])
    Xd, yd = data.load_dataset(str(ip), labels=str(lp))
    np.testing.assert_array_equal(Xd, X)


def test_idx_other_types(tmp_path):
    a = np.array([[1.5, -2.0], [0.25, 8.0]], dtype=np.float32)
    np.testing.assert_array_equal(data.load_idx(write_idx(tmp_path / "f", a, 0x0D)), a)
    b = np.array([-300, 300], dtype=np.int16)
    np.testing.assert_array_equal(data.load_idx(write_idx(tmp_path / "s", b, 0x0B)), b)
    for arr, code in ((a, 0x0D), (b, 0x0B)):
        got = data.load_idx(write_idx(tmp_path / "n", arr, code))
        assert got.dtype.isnative and got.dtype == arr.dtype  # documented: native byte order
    # scale divides byte images only: float images are taken as they are
    ip = write_idx(tmp_path / "fimg", np.stack([a, a + 1]), 0x0D)
    lp = write_idx(tmp_path / "flab", np.array([1, 2], dtype=np.uint8))
    X, _ = data.load_mnist(ip, lp, scale=True, dtype="float64")
    np.testing.assert_array_equal(X, np.stack([a, a + 1]).reshape(2, 4))


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x00", "truncated: 2 bytes"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown type code 0x07"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x01", "header declares 3 dimensions"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", r"truncated: shape \(5,\) of uint8 needs 5 data bytes, found 2"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "1 extra"),
    (b"\x00\x00\x08\x00", "0 dimensions"),
    # 65536**4 = 2**64 wrapped to 0 in an int64 product, matching the empty data
    (b"\x00\x00\x08\x04" + b"\x00\x01\x00\x00" * 4, "needs 18446744073709551616 data bytes, found 0"),
    # NumPy's reshape refused 255 dimensions with a ValueError that named no file
    (b"\x00\x00\x08\xff" + b"\x00\x00\x00\x01" * 255 + b"\x05", "declares 255 dimensions, more than a NumPy array"),
])
def test_idx_malformed_files_name_file_and_problem(tmp_path, raw, match):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as info:
        data.load_idx(path)
    assert "bad-idx1-ubyte" in str(info.value)


def test_idx_truncated_gzip_and_missing_file(tmp_path):
    good = write_idx(tmp_path / "x.gz", np.zeros((50, 4), np.uint8), compress=True)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[:20])
    with pytest.raises(ValueError, match="cut.gz"):
        data.load_idx(cut)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_idx(tmp_path / "nope")


def test_idx_gzip_with_damaged_deflate_data(tmp_path):
    """zlib.error from the gzip reader came out raw, naming no file."""
    raw = bytes([0, 0, 8, 2]) + struct.pack(">II", 50, 4) + bytes(range(200))
    packed = bytearray(gzip.compress(raw, mtime=0))
    packed[10] ^= 0xFF  # the first byte of the deflate stream (after the 10-byte gzip header)
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(ValueError, match=r"cannot read '.*bad-idx3-ubyte\.gz': corrupt gzip data"):
        data.load_idx(path)


def test_mnist_count_mismatch(tmp_path):
    ip = write_idx(tmp_path / "i", np.zeros((3, 2, 2), np.uint8))
    lp = write_idx(tmp_path / "l", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="has 3 samples but labels file"):
        data.load_mnist(ip, lp)
    with pytest.raises(ValueError, match="--labels"):
        data.load_dataset(str(ip))


@pytest.mark.parametrize("shape", [(0, 2, 2), (3, 0, 2)])
def test_idx_images_without_samples_or_features(tmp_path, shape):
    # reshaping them failed with NumPy's "cannot reshape array of size 0", naming no file
    ip = write_idx(tmp_path / "empty-idx3-ubyte", np.zeros(shape, np.uint8))
    lp = write_idx(tmp_path / "lab", np.zeros(shape[0], np.uint8))
    match = rf"'.*empty-idx3-ubyte' must hold at least one sample with at least one feature, got shape \({shape[0]}, {shape[1]}, 2\)"
    with pytest.raises(ValueError, match=match):
        data.load_mnist(ip, lp)
    with pytest.raises(ValueError, match=match):
        data.load_dataset(str(ip), require_y=False)


def test_npz_names_shapes_and_errors(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, X=np.ones((4, 2, 3)), y=np.arange(4))
    X, y = data.load_npz(p)
    assert X.shape == (4, 6) and y.tolist() == [0, 1, 2, 3]
    q = tmp_path / "other.npz"
    np.savez(q, feats=np.ones((2, 3)), target=np.zeros(2))
    X, y = data.load_npz(q, x_key="feats", y_key="target")
    assert X.shape == (2, 3)
    with pytest.raises(ValueError, match=r"has no array 'X' \(arrays: \['feats', 'target'\]\)"):
        data.load_npz(q)
    X, y = data.load_npz(q, x_key="feats", y_key="nope", require_y=False)
    assert y is None
    r = tmp_path / "rows.npz"
    np.savez(r, X=np.ones((3, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match="'X' has 3 rows but 'y' has 2"):
        data.load_npz(r)
    obj = tmp_path / "obj.npz"
    np.savez(obj, X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(ValueError, match="obj.npz"):
        data.load_npz(obj)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(p.read_bytes()[:40])
    with pytest.raises(ValueError, match="broken.npz"):
        data.load_npz(broken)


@pytest.mark.parametrize("content, match", [
    ("npy", "is a single .npy array"),
    (b"hello, world\n1,2,3\n", r"is not an .npz archive \(it starts with b'hello,'\)"),
    (b"", "is empty"),
])
def test_npz_that_is_no_zip_archive(tmp_path, content, match):
    """A .npy file gave "TypeError: 'numpy.ndarray' object does not support the context manager
    protocol"; a text file got numpy's advice to load it unsafely (unpickle it)."""
    p = tmp_path / "d.npz"
    if content == "npy":
        np.save(tmp_path / "a.npy", np.ones((3, 2)))
        p.write_bytes((tmp_path / "a.npy").read_bytes())
    else:
        p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        data.load_npz(p)
    msg = str(info.value)
    assert str(p) in msg and "np.savez(path, X=X, y=y)" in msg and "unsafe" not in msg and "pickle" not in msg


@pytest.mark.parametrize("X, match", [
    (np.ones((0, 5)), r"at least one row \(sample\), got shape \(0, 5\)"),
    (np.ones(0), r"at least one row \(sample\), got shape \(0,\)"),
    (np.ones((3, 0)), r"at least one feature per sample, got shape \(3, 0\)"),
])
def test_npz_without_rows_or_features(tmp_path, X, match):
    """X with 0 rows gave "cannot reshape array of size 0 into shape (0,newaxis)"."""
    p = tmp_path / "empty.npz"
    np.savez(p, X=X, y=np.zeros(X.shape[0]))
    with pytest.raises(ValueError, match=match) as info:
        data.load_npz(p)
    assert "'X'" in str(info.value) and str(p) in str(info.value)


def test_train_on_an_npz_without_rows_is_a_clean_error(tmp_path, capsys):
    from fffcpu import cli
    p = tmp_path / "empty.npz"
    np.savez(p, X=np.ones((0, 5)), y=np.zeros(0, dtype=np.int64))
    assert cli.main(["train", "--data", str(p), "--output", str(tmp_path / "m.fff"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fffcpu train: error: array 'X'") and "at least one row" in err
    assert not (tmp_path / "m.fff").exists()


def test_train_and_evaluate_on_several_regression_targets(tmp_path, capsys):
    """load_npz refused a y of shape (n, k), so `fffcpu train --loss mse` could not fit several
    targets, although it sizes the layer's output from y.shape[1]."""
    from fffcpu import cli
    rng = np.random.default_rng(0)
    p = tmp_path / "multi.npz"
    np.savez(p, X=rng.normal(size=(40, 3)), y=rng.normal(size=(40, 2)))
    X, y = data.load_npz(p)
    assert X.shape == (40, 3) and y.shape == (40, 2)
    model = tmp_path / "m.fff"
    assert cli.main(["train", "--data", str(p), "--loss", "mse", "--depth", "1", "--leaf-width", "2",
                     "--epochs", "1", "--output", str(model), "--quiet"]) == 0
    assert fffcpu.load(model).output_width == 2
    assert cli.main(["evaluate", str(model), "--data", str(p), "--loss", "mse"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--data", str(p), "--output", str(tmp_path / "c.fff"), "--quiet"]) == 2
    assert "must be one class index per sample, shape (n,), got shape (40, 2)" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"y must have shape \(n,\) \(one label per sample .*got shape \(40, 2\)"):
        data.train_test_split(X, y)  # it failed with an IndexError, or split by flattened values
    for bad in (np.zeros((40, 0)), np.zeros((40, 2, 2))):
        np.savez(p, X=np.ones((40, 3)), y=bad)
        with pytest.raises(ValueError, match=r"'y' in .* must have shape \(n,\) .* or \(n, k\) with k >= 1"):
            data.load_npz(p)


def test_npz_damaged_or_odd_members(tmp_path):
    """zipfile's NotImplementedError and zlib.error came out raw; an object array's message spoke of
    allow_pickle; a member that is no .npy came back as bytes and failed on ``.dtype``."""
    p = tmp_path / "c.npz"
    np.savez_compressed(p, X=np.random.default_rng(0).normal(size=(40, 8)), y=np.arange(40))
    good = p.read_bytes()
    raw = bytearray(good)
    raw[raw.rfind(b"PK\x01\x02") + 10] = 1  # compression method 1 (shrunk)
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"cannot read .npz file .*c\.npz.*compression method"):
        data.load_npz(p)
    raw = bytearray(good)
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo("X.npy")
    local = info.header_offset
    start = local + 30 + int.from_bytes(raw[local + 26: local + 28], "little") \
        + int.from_bytes(raw[local + 28: local + 30], "little")
    raw[start + 4: start + 12] = bytes(b ^ 0xFF for b in raw[start + 4: start + 12])
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"cannot read .npz file .*c\.npz.*decompressing"):
        data.load_npz(p)
    obj = tmp_path / "obj.npz"
    np.savez(obj, X=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"obj\.npz.*'X' holds Python objects") as err:
        data.load_npz(obj)
    assert "allow_pickle" not in str(err.value)
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(odd, "w") as zf:
        zf.writestr("X", b"abc")
    with pytest.raises(ValueError, match=r"odd\.npz.*'X' is not a .npy array"):
        data.load_npz(odd, require_y=False)


@pytest.mark.parametrize("shape, version", [((10 ** 11,), "1_0"), ((10 ** 6, 10 ** 6), "1_0"), ((10 ** 11,), "2_0"),
                                            ((40,), "1_0")])  # 160 bytes declared, 144 held (with the header)
def test_npz_member_declaring_a_huge_shape(tmp_path, shape, version):
    """A damaged .npy header (format 1.0 or 2.0) declaring shape (10**11,) made np.load allocate 373 GiB:
    MemoryError."""
    header = io.BytesIO()
    write = getattr(np.lib.format, f"write_array_header_{version}")
    write(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", header.getvalue() + b"\0" * 16)
        zf.writestr("y.npy", _npy_bytes(np.zeros(2)))
    with pytest.raises(ValueError, match=rf"huge\.npz.*'X' declares shape {re.escape(str(shape))} of float32 "
                                         rf"\({4 * np.prod(shape, dtype=object)} bytes\) but its member holds only"):
        data.load_npz(path)


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_csv_header_label_column_and_types(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,label,b\n1,3,2\n4,5,6.5\n\n")
    X, y = data.load_csv(p, label_column="label")
    np.testing.assert_array_equal(X, [[1, 2], [4, 6.5]])
    assert y.dtype == np.int64 and y.tolist() == [3, 5]
    X, y = data.load_csv(p, label_column=0)
    np.testing.assert_array_equal(y, [1, 4])
    q = tmp_path / "n.csv"
    q.write_text("0.5,1,cat\n1.5,2,dog\n")
    X, y = data.load_csv(q)
    assert X.shape == (2, 2) and y.tolist() == ["cat", "dog"]
    r = tmp_path / "r.csv"
    r.write_text("1,2,0.5\n3,4,1.25\n")
    X, y = data.load_dataset(str(r))
    assert y.dtype == np.float64
    X, y = data.load_csv(r, label_column=None)
    assert X.shape == (2, 3) and y is None


@pytest.mark.parametrize("text, label_column, names", [
    ("a, b ,label\n1,2,3\n4,5,6\n", -1, ["a", "b"]),  # plain numbers: NumPy's reader
    ("a,label,b\n1,3,2\n4,5,6.5\n", "label", ["a", "b"]),
    ("label,a,b\ncat,1,2\ndog,4,5\n", 0, ["a", "b"]),  # text labels split off each line
    ('a,"b",label\n1,2,"cat"\n4,5,dog\n', -1, ["a", "b"]),  # quotes: cell by cell
    ("a,b,c\n1,2,3\n", None, ["a", "b", "c"]),
    ("1,2,3\n4,5,6\n", -1, None),  # no header
    ('1,2,"cat"\n4,5,dog\n', -1, None),
])
def test_csv_feature_names(tmp_path, text, label_column, names):
    """The header's names of X's columns (return_names=True), which fffcpu train saves with the model
    and the other commands check, from each of the reader's three paths; the arrays are as without."""
    p = tmp_path / "d.csv"
    p.write_text(text)
    X, y, got = data.load_csv(p, label_column=label_column, return_names=True)
    assert got == names
    X0, y0 = data.load_csv(p, label_column=label_column)
    np.testing.assert_array_equal(X, X0)
    assert (y is None and y0 is None) or y.tolist() == y0.tolist()
    assert data.load_dataset(str(p), label_column=label_column, require_y=False, return_names=True)[2] == names
    np.savez(tmp_path / "d.npz", X=X0)
    assert data.load_dataset(str(tmp_path / "d.npz"), require_y=False, return_names=True)[2] is None
    assert len(data.load_dataset("digits", return_names=True)) == 3


@pytest.mark.parametrize("text, kw, match", [
    ("1,2\n3\n", {}, "line 2 has 1 columns, expected 2"),
    ("x,y\n1,2\n3,oops\n", {"label_column": 0}, "line 3, column 2 holds 'oops', not a number"),
    ("", {}, "is empty"),
    ("a,b\n", {}, "has a header but no data rows"),
    ("1,2\n", {"label_column": 5}, r"label_column must be in \[-2, 1\]"),
    ("a,b\n1,2\n", {"label_column": "c"}, "label_column 'c' is not a column"),
])
def test_csv_malformed(tmp_path, text, kw, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        data.load_csv(p, **kw)
    assert "bad.csv" in str(info.value)


@pytest.mark.parametrize("text, match", [
    ("a,b,c\n\n1,2,0\n,,\n3,x,1\n", r"line 5, column 2 holds 'x', not a number$"),  # blank lines count
    ('a,b,c\n1,"2\n",0\n3,4\n', r"line 4 has 2 columns, expected 3$"),  # a quoted line break too
    ("\n1,2,0\n3,4,\n", r"line 3, column 3 \(the label column\) is empty$"),
    ("a,b,c\r\n1,2,0\r\n\r\n3,4,1\r\n5,inf,0\r\n", r"line 5, column 2 holds 'inf', which is infinite"),
])
def test_csv_errors_name_the_line_in_the_file(tmp_path, text, match):
    """They named the data row counted from 1 after the header (as 'data row 2' for the first one) or the
    header-less row number, which skipped blank lines: not the line an editor shows."""
    p = tmp_path / "lines.csv"
    p.write_bytes(text.encode())
    with pytest.raises(ValueError, match=r"lines\.csv' is malformed: " + match):
        data.load_csv(p)


@pytest.mark.parametrize("text, kw, where, hint", [
    ("species,a,b\nsetosa,1,2\nvirginica,3,4\n", {}, "line 2, column 1 holds 'setosa'",
     "; column 1 ('species') holds text in every row: if it holds the labels, read it as the label column with "
     "label_column='species' (fffcpu: --label-column species)"),
    ("setosa,1,2\nvirginica,3,4\n", {"header": False}, "line 1, column 1 holds 'setosa'",
     "; column 1 holds text in every row: if it holds the labels, read it as the label column with "
     "label_column=0 (fffcpu: --label-column 0)"),
    ("c,c,y\nsetosa,1,0\nvirginica,3,1\n", {}, "line 2, column 1 holds 'setosa'",  # a name twice picks nothing
     "; column 1 holds text in every row: if it holds the labels, read it as the label column with "
     "label_column=0 (fffcpu: --label-column 0)"),
    ("species,a,b\nsetosa,1,2\n7,3,4\n", {}, "line 2, column 1 holds 'setosa'", ""),  # a number among them
    ("species,a,b\nsetosa,1,2\n,3,4\n", {}, "line 2, column 1 holds 'setosa'", ""),  # an empty cell
])
def test_csv_text_feature_column_points_to_label_column(tmp_path, text, kw, where, hint):
    """A label column of names written first (species, then the measurements) failed as 'not a number'
    with no word on label_column."""
    p = tmp_path / "first.csv"
    p.write_text(text)
    with pytest.raises(ValueError) as info:
        data.load_csv(p, **kw)
    assert str(info.value) == f"CSV file {str(p)!r} is malformed: {where}, not a number{hint}"



def test_csv_byte_order_mark_is_not_part_of_the_first_cell(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM; read as a character, it made the first row look like a
    # header (the row was dropped) and the first column name "\ufeffa"
    p = tmp_path / "bom.csv"
    p.write_bytes("1,2,0\n3,4,1\n".encode("utf-8-sig"))
    X, y = data.load_csv(p)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert y.tolist() == [0, 1]
    q = tmp_path / "bom_header.csv"
    q.write_bytes("a,b,label\n1,2,0\n3,4,1\n".encode("utf-8-sig"))
    X, y = data.load_csv(q, label_column="a")
    assert y.tolist() == [1, 3]


@pytest.mark.parametrize("text, match", [
    ("1,,0\n3,4,1\n", r"line 1, column 2 holds '', not a number"),
    ("1,2,\n3,4,1\n", r"line 1, column 3 \(the label column\) is empty"),
    ("1,2,0,\n3,4,1,\n", r"line 1, column 4 \(the label column\) is empty"),
    ("a,b,c\n1,2,0\n3,4,\n", r"line 3, column 3 \(the label column\) is empty"),
])
def test_csv_empty_cell_is_a_missing_value_not_a_header(tmp_path, text, match):
    # a first row with an empty cell was taken for a header and silently dropped
    p = tmp_path / "gap.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        data.load_csv(p)


def test_csv_integral_label_beyond_int64_is_not_wrapped(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text("1,2,1e30\n3,4,1\n")
    _, y = data.load_csv(p)
    assert y.dtype == np.float64 and y.tolist() == [1e30, 1.0]


def test_predict_output_path_is_checked_and_npz_refused(tmp_path, capsys):
    """`fffcpu predict -o x.npz` wrote CSV text into a file named .npz; a missing folder or a directory
    gave an OSError naming the hidden temporary file."""
    from fffcpu import cli
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(64, 2, 10, depth=1, seed=0), model)
    cases = [
        (tmp_path / "p.npz", r"--output '.*p\.npz': predictions are written as \.npy .* or as CSV text"),
        (tmp_path / "p.NPZ", r"--output '.*p\.NPZ': predictions are written as \.npy .* or as CSV text"),
        (tmp_path / "missing" / "p.csv", r"cannot save to '.*p\.csv': directory '.*missing' does not exist"),
        (tmp_path, r"cannot save to '.*': it is a directory"),
    ]
    for out, match in cases:
        assert cli.main(["predict", str(model), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fffcpu predict: error: ") and err.count("\n") == 1 and ".tmp" not in err
        assert re.search(match, err), err
    assert not (tmp_path / "p.npz").exists() and not (tmp_path / "p.NPZ").exists()
    assert not (tmp_path / "missing").exists()
    assert cli.main(["predict", str(model), "--output", str(tmp_path / "p.NPY")]) == 0
    assert np.load(tmp_path / "p.NPY", allow_pickle=False).shape == (1797,)


def test_predict_refuses_to_overwrite_its_model_or_data(tmp_path, capsys):
    """`fffcpu predict model.fff --data rows.csv -o rows.csv` replaced the user's data with predictions."""
    from fffcpu import cli
    model = tmp_path / "m.fff"
    fffcpu.save(fffcpu.FFF(2, 2, 2, depth=1, seed=0), model)
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2\n3,4\n")
    saved_model = model.read_bytes()
    respelled = os.path.join(str(tmp_path), ".", "rows.csv")  # the same file under another name
    for out, what in ((rows, "--data"), (model, "MODEL"), (respelled, "--data")):
        assert cli.main(["predict", str(model), "--data", str(rows), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fffcpu predict: error: --output '{out}' is the {what} file"), err
    assert rows.read_text() == "1,2\n3,4\n" and model.read_bytes() == saved_model
    assert cli.main(["predict", str(model), "--data", str(rows), "--output", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().split()) == 2


def test_predict_drops_a_text_label_column(tmp_path, capsys):
    """`fffcpu predict` read a CSV without --label-column as features first, so a text label column
    (an iris file's species) failed as "not a number" although the file had one column more than the
    model's input width, the case whose last column the help says is dropped."""
    from fffcpu import cli
    layer = fffcpu.FFF(4, 2, 3, depth=2, seed=0)
    fffcpu.save(layer, tmp_path / "m.fff")
    X = np.random.default_rng(3).normal(size=(12, 4))
    want = [str(int(v)) for v in layer(X.astype(np.float32)).argmax(axis=1)]
    cells = [",".join(map(repr, row)) for row in X.tolist()]
    files = {"text.csv": ["a,b,c,d,species"] + [f"{row},kind{i % 3}" for i, row in enumerate(cells)],
             "numbers.csv": [f"{row},{i % 3}" for i, row in enumerate(cells)],
             "features.csv": cells}
    for name, lines in files.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        assert cli.main(["predict", str(tmp_path / "m.fff"), "--data", str(tmp_path / name)]) == 0
        assert capsys.readouterr().out.split() == want, name
    (tmp_path / "gap.csv").write_text("1,2,3,4,\n5,6,7,8,0\n")  # an empty last cell: named as a feature's
    assert cli.main(["predict", str(tmp_path / "m.fff"), "--data", str(tmp_path / "gap.csv")]) == 2
    assert "line 1, column 5 holds '', not a number" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_raw_outputs_in_a_csv_file_read_back_exactly(tmp_path, dtype):
    """`fffcpu predict --raw -o p.csv` wrote 9 significant digits, enough for float32 but not for a
    float64 model's outputs: reading the file back gave other numbers than the layer's."""
    from fffcpu import cli
    layer = fffcpu.FFF(3, 2, 4, depth=2, seed=0, dtype=dtype)
    fffcpu.save(layer, tmp_path / "m.fff")
    X = np.random.default_rng(0).normal(size=(40, 3))
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n")
    out = tmp_path / "p.csv"
    assert cli.main(["predict", str(tmp_path / "m.fff"), "--data", str(rows), "--raw", "--output", str(out)]) == 0
    back = np.loadtxt(out, delimiter=",").astype(dtype)
    want = layer(X.astype(dtype))
    assert back.shape == want.shape == (40, 4)
    np.testing.assert_array_equal(back, want)


@pytest.mark.parametrize("cell", ["1_0", "\uff11", "\u0661"])  # underscore, fullwidth 1, Arabic-Indic 1
def test_csv_refuses_python_float_spellings(tmp_path, cell):
    """float() reads "1_0" as 10.0 and non-ASCII digits as numbers; the CSV reader took them silently."""
    p = tmp_path / "odd.csv"
    p.write_text(f"0.5,{cell},0\n3,4,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"odd\.csv' is malformed: line 1, column 2 holds '{cell}', "
                                         "not a number$"):
        data.load_csv(p)


@pytest.mark.parametrize("cell, what", [
    ("nan", r"NaN \(a missing value\)"), ("NaN", r"NaN \(a missing value\)"), ("-inf", "infinite"), ("Infinity", "infinite"),
    ("1e999", r"beyond the float64 range \(largest magnitude 1.798e\+308\)"),
])
def test_csv_non_finite_features_are_refused_where_they_are(tmp_path, cell, what):
    """NaN and inf were read, and training failed later with "X must be finite, got 1 NaN or inf
    value(s)", naming neither the file nor the row."""
    p = tmp_path / "gaps.csv"
    p.write_text(f"a,b,label\n1,2,0\n3,{cell},1\n")
    with pytest.raises(ValueError, match=rf"gaps\.csv' is malformed: line 3, column 2 holds '{cell}', "
                                         rf"which is {what}; fffcpu needs finite numbers"):
        data.load_csv(p)
    # the header is still recognised: NaN and inf count as numbers there, like an empty cell
    q = tmp_path / "first.csv"
    q.write_text(f"{cell},2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=rf"line 1, column 1 holds '{cell}'"):
        data.load_csv(q)


def test_csv_label_spellings(tmp_path):
    """+1, " 1 " and 1.0 are the label 1; 1_0 was read as 10, nan as a float label (which
    `fffcpu train` then refused as "dtype float64"), and "?" turned every label into text."""
    p = tmp_path / "y.csv"
    p.write_text("1,2,+1\n3,4, 1 \n5,6,1.0\n7,8,1e1\n9,10,-2\n")
    _, y = data.load_csv(p)
    assert y.dtype == np.int64 and y.tolist() == [1, 1, 1, 10, -2]
    p.write_text("1,2,0.5\n3,4, 1 \n")
    _, y = data.load_csv(p)
    assert y.dtype == np.float64 and y.tolist() == [0.5, 1.0]
    p.write_text("1,2,cat\n3,4,dog_1\n")  # no label is a number: text labels, taken as written
    _, y = data.load_csv(p)
    assert y.tolist() == ["cat", "dog_1"]
    for label, match in [
        ("1_0", "holds '1_0', not a number, unlike other labels in the column such as '0'"),
        ("?", "holds '\\?', not a number, unlike other labels in the column such as '0'"),
        ("nan", r"holds 'nan', which is NaN \(a missing value\); labels must be finite numbers"),
        ("inf", "holds 'inf', which is infinite; labels must be finite numbers"),
    ]:
        p.write_text(f"1,2,0\n3,4,{label}\n5,6,1\n")
        with pytest.raises(ValueError, match=r"y\.csv' is malformed: line 2, column 3 " + match):
            data.load_csv(p)


def test_train_on_a_csv_with_a_missing_value_names_the_cell(tmp_path, capsys):
    from fffcpu import cli
    p = tmp_path / "d.csv"
    p.write_text("1,2,0\n3,NaN,1\n" * 5)
    assert cli.main(["train", "--data", str(p), "--output", str(tmp_path / "m.fff"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "line 2, column 2 holds 'NaN', which is NaN (a missing value)" in err, err


def test_labels_file_with_a_format_that_holds_its_own_labels(tmp_path, capsys):
    """`--data X.csv --labels y.csv` ignored y.csv and trained on X.csv's last column as the labels."""
    from fffcpu import cli
    X = tmp_path / "X.csv"
    X.write_text("1,2,3\n4,5,6\n" * 4)
    y = tmp_path / "y.csv"
    y.write_text("0\n1\n" * 4)
    npz = tmp_path / "d.npz"
    np.savez(npz, X=np.ones((8, 3)), y=np.zeros(8, dtype=np.int64))
    for path in (str(X), str(npz), "digits"):
        with pytest.raises(ValueError, match=rf"--labels '.*y\.csv' is for IDX images only: --data "
                                             rf"'{re.escape(path)}' holds its own labels"):
            data.load_dataset(path, labels=str(y))
        data.load_dataset(path, labels=str(y), require_y=False)  # ignored, as `fffcpu predict --help` says
    assert cli.main(["train", "--data", str(X), "--labels", str(y), "--output", str(tmp_path / "m.fff"),
                     "--quiet"]) == 2
    assert "is for IDX images only" in capsys.readouterr().err and not (tmp_path / "m.fff").exists()


@pytest.mark.parametrize("kind, match", [
    ("npy", r"it is a \.npy array \(np\.save\): save the features and labels together with np\.savez"),
    ("npz", r"it is a zip archive: if it holds arrays saved with np\.savez, name the file \*\.npz$"),
    ("model", r"it is an fffcpu model file \(fffcpu\.save\): a model is the MODEL argument of evaluate, "
              r"predict and inspect, not --data$"),
    # "PK" and then no zip archive (a damaged one): still the zip hint, not zipfile's BadZipFile
    ("damaged zip", r"it is a zip archive: if it holds arrays saved with np\.savez, name the file \*\.npz$"),
    ("text", r"it looks like text: name a CSV file \*\.csv"),
])
def test_file_read_as_idx_says_what_it_seems_to_be(tmp_path, kind, match):
    """A name load_dataset does not know is read as IDX: a .npy file got "holds no labels: give the
    labels file as well" (train) or a bare "bad magic number" (predict)."""
    p = tmp_path / "data.dat"
    if kind == "text":
        p.write_text("1,2,0\n3,4,1\n")
    elif kind == "model":
        fffcpu.save(fffcpu.FFF(2, 2, 3, 1, seed=0), p)
    elif kind == "damaged zip":
        p.write_bytes(b"PK\x03\x04" + b"\xff" * 60)
    else:
        with open(p, "wb") as fh:  # np.save / np.savez to a file object: they add no suffix to it
            (np.save if kind == "npy" else np.savez)(fh, np.ones((3, 2)))
    for require_y in (True, False):
        with pytest.raises(ValueError, match=r"data\.dat' has a bad magic number [0-9a-f]{8}: the first two "
                                             r"bytes must be 0; " + match):
            data.load_dataset(str(p), require_y=require_y)
    p.write_bytes(b"\x01\x02\xff\x00\x00")  # nothing recognisable: no guess
    with pytest.raises(ValueError, match=r"bad magic number 0102ff00: the first two bytes must be 0$"):
        data.load_idx(p)


def test_an_npz_archive_read_as_idx_labels_is_not_told_to_be_named_npz(tmp_path):
    """Round 22's review: `--labels data.npz` was told "name the file *.npz", which it already was."""
    images = write_idx(tmp_path / "img-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    np.savez(tmp_path / "data.npz", X=np.ones((3, 4)), y=np.arange(3))
    with pytest.raises(ValueError, match=r"data\.npz' has a bad magic number [0-9a-f]{8}: the first two bytes must "
                                         r"be 0; it is an \.npz archive, not an IDX file \(an \.npz file holds its "
                                         r"labels itself, under --y-key: give it as --data\)$"):
        data.load_mnist(images, tmp_path / "data.npz")


def test_idx_labels_file_given_as_images_or_float_labels(tmp_path):
    """A 1-d labels file given as the images became one feature per sample; float labels were cast to
    int64, 1.5 silently becoming 1 and NaN a huge negative number."""
    lp = write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 0, 2], np.uint8))
    for call in (lambda: data.load_mnist(lp, lp), lambda: data.load_dataset(str(lp), require_y=False)):
        with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte' holds a 1-d array of shape \(3,\), like "
                                             r"a labels file: expected images of shape \(n, rows, cols\)"):
            call()
    ip = write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    for values, shown in (([1.0, 1.5, 2.0], "1.5 at index 1 (1 such value(s))"),
                          ([np.nan, 0.0, np.inf], "nan at index 0 (2 such value(s))")):
        fp = write_idx(tmp_path / "flab", np.array(values), 0x0D)
        with pytest.raises(ValueError, match=r"flab' must hold integer class labels, got " + re.escape(shown)):
            data.load_mnist(ip, fp)
    _, y = data.load_mnist(ip, write_idx(tmp_path / "ok", np.array([1.0, 0.0, 2.0]), 0x0D))
    assert y.dtype == np.int64 and y.tolist() == [1, 0, 2]


@pytest.mark.parametrize("raw, match", [
    ("a,größe\n1,2\n".encode("latin-1") + b"3,4\n" * 5000,
     r"byte 0xf6 at offset 4 \(line 1\); save it as UTF-8 \(Excel: \"CSV UTF-8\"\)"),
    (b"a,b\n" + b"1,2\n" * 5000 + "caf\xe9,1\n".encode("latin-1"),  # past the first chunk the codec reads
     r"byte 0xe9 at offset 20007 \(line 5002\); save it as UTF-8"),
    ("1,2,0\n3,4,1\n".encode("utf-16"), r"byte 0xff at offset 0 \(line 1\); it is UTF-16 text"),
    ("npz", r"it is a zip archive: if it holds arrays saved with np\.savez, name the file \*\.npz$"),
])
def test_csv_that_is_not_utf8(tmp_path, raw, match):
    """The codec's message ("can't decode byte 0xe9 in position 3: invalid continuation byte") gave the
    position within the chunk it decoded, not within the file, and no way out."""
    p = tmp_path / "latin.csv"
    if raw == "npz":
        np.savez(tmp_path / "d.npz", X=np.ones((3, 2)) * 0.123456789, y=np.arange(3))
        raw = (tmp_path / "d.npz").read_bytes()
        match = r"byte 0x[0-9a-f]{2} at offset \d+ \(line \d+\); " + match
    p.write_bytes(raw)
    with pytest.raises(ValueError, match=r"latin\.csv' is not UTF-8 text: " + match):
        data.load_csv(p)


def test_csv_label_column_name_given_twice_in_the_header(tmp_path):
    """The first column of that name was taken as the labels, the other read as a feature."""
    p = tmp_path / "dup.csv"
    p.write_text("a,label,label\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"label_column 'label' names 2 columns of '.*dup\.csv' "
                                         r"\(columns \[2, 3\]\); give the label column by its index"):
        data.load_csv(p, label_column="label")
    X, y = data.load_csv(p, label_column=-1)
    assert X.tolist() == [[1, 2], [3, 4]] and y.tolist() == [0, 1]


@pytest.mark.parametrize("name, text, what", [
    ("semi.csv", "1;2;0\n3;4;1\n", "';'"),  # Excel's CSV where the decimal separator is a comma
    ("spaces.txt", "1.0 2.0 0\n3.0 4.0 1\n", "spaces"),  # np.savetxt's default
    ("tabs.csv", "a\tb\n1\t2\n", "tabs"),
])
def test_csv_with_another_separator_says_so(tmp_path, name, text, what):
    """Read as one column, it gave "has only the label column, no features" (or, without a label
    column, "holds '1.0 2.0 0', not a number")."""
    p = tmp_path / name
    p.write_text(text)
    match = rf"{name}' has one column, whose first cell .* holds {what}: expected fields separated by ','"
    for label_column in (-1, None):
        with pytest.raises(ValueError, match=match):
            data.load_dataset(str(p), label_column=label_column, require_y=False)
    p.write_text("0.5\n1.5\n")  # one column of numbers is fine without labels
    assert data.load_csv(p, label_column=None)[0].tolist() == [[0.5], [1.5]]


def test_csv_as_pandas_writes_a_dataframe_made_from_an_array(tmp_path):
    """pd.DataFrame(np.c_[X, y]).to_csv(path, index=False) names the columns 0, 1, ..., k-1: that row was
    read as a sample (its last "label" k-1 even adding a class). With the index (pandas' default), the
    row index was read as a feature, or the header row failed as "holds '', not a number"."""
    p = tmp_path / "pd.csv"
    p.write_text("0,1,2,3\n0.5,0.25,1.0,1\n1.5,0.75,2.0,0\n")
    X, y = data.load_csv(p)
    assert X.tolist() == [[0.5, 0.25, 1.0], [1.5, 0.75, 2.0]] and y.tolist() == [1, 0]
    X, y = data.load_csv(p, label_column="0")  # the names are names
    assert y.tolist() == [0.5, 1.5]
    p.write_text("0,1,2\n0,1,2\n3,4,0\n")  # three columns: 0,1,2 may well be a sample
    assert data.load_csv(p)[0].shape == (3, 2)
    for text in (",0,1,2,3\n0,0.5,0.25,1.0,1\n1,1.5,0.75,2.0,0\n",  # pandas' default, index=True
                 ",a,b,label\n7,0.5,0.25,1\n3,1.5,0.75,0\n"):  # a shuffled frame's index
        p.write_text(text)
        with pytest.raises(ValueError, match=r"pd\.csv' starts with a column without a name that holds integers: "
                                             r"a row index as pandas writes it \(DataFrame\.to_csv without "
                                             r"index=False\)"):
            data.load_csv(p)
    p.write_text(",a,label\n0.5,0.25,1\n1.5,0.75,0\n")  # an unnamed column of real numbers: a feature
    assert data.load_csv(p)[0].tolist() == [[0.5, 0.25], [1.5, 0.75]]


def test_nan_and_inf_in_npz_and_idx_files_are_refused_naming_the_file_and_index(tmp_path):
    """They loaded, and training then failed with "X must be finite", naming neither file nor place."""
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(4))
    with pytest.raises(ValueError, match=r"array 'X' in .*d\.npz' holds nan at index \(2, 1\) \(1 value\(s\) "
                                         r"NaN or infinite\); fffcpu needs finite numbers"):
        data.load_dataset(str(tmp_path / "d.npz"))
    y = np.zeros(4)
    y[3] = -np.inf
    np.savez(tmp_path / "r.npz", X=np.ones((4, 3)), y=y)
    with pytest.raises(ValueError, match=r"array 'y' in .*r\.npz' holds -inf at index 3 "):
        data.load_npz(tmp_path / "r.npz")
    assert data.load_npz(tmp_path / "r.npz", require_y=False, y_key="none")[1] is None  # y unread: no check
    images = np.ones((3, 2, 2), np.float32)
    images[1, 0, 1] = np.inf
    path = write_idx(tmp_path / "fimg", images, 0x0D)
    for load in (lambda: data.load_dataset(str(path), require_y=False),
                 lambda: data.load_mnist(path, write_idx(tmp_path / "lab", np.arange(3, dtype=np.uint8)))):
        with pytest.raises(ValueError, match=r"IDX images file .*fimg' holds inf at index \(1, 0, 1\)"):
            load()


# -- a table of plain numbers goes through NumPy's reader: the same result as cell by cell -------------
def _csv_outcome(path, slow=False, **kw):
    """What load_csv gives for ``path``: ("ok", X, y) or ("error", message); ``slow=True`` turns the
    NumPy paths (plain numbers, text labels) off, leaving the cell-by-cell reader alone. No warning may be raised (such as NumPy's
    "input contained no data"); they are recorded, not turned into errors, because NumPy's reader
    behaves differently under an error filter (NumPy 1.24 refuses an integer beyond int64 then, and
    wraps it around otherwise)."""
    saved = data._csv_numbers, data._csv_text_labels
    if slow:
        data._csv_numbers = data._csv_text_labels = lambda *args: None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                X, y = data.load_csv(path, **kw)
                outcome = "ok", X, y
            except ValueError as exc:
                outcome = "error", str(exc)
    finally:
        data._csv_numbers, data._csv_text_labels = saved
    assert not caught, [str(w.message) for w in caught]
    return outcome


def _assert_same_outcome(fast, slow):
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "error":
        assert fast[1] == slow[1]
        return
    (_, X, y), (_, Xs, ys) = fast, slow
    assert X.dtype == Xs.dtype == np.float64 and X.flags.c_contiguous and X.shape == Xs.shape
    np.testing.assert_array_equal(X.view(np.uint64), Xs.view(np.uint64))  # bit for bit: -0.0 too
    if ys is None:
        assert y is None
    else:
        assert y.dtype == ys.dtype and y.flags.c_contiguous and y.tolist() == ys.tolist()


@pytest.mark.parametrize("text, kw", [
    ("a,label,b\n1,3,2\n4,5,6.5\n\n", {"label_column": "label"}),
    (" +1.5e-3 ,.5,5.\n-0,1E5,\t7 \n\n\n2e-310,1e308,-3\n", {}),  # labels 5., 7 and -3 are int64
    ("x\ty\tlab\n1\t2\t0\n3\t 4 \t1\n", {"delimiter": "\t"}),
    ("a,b,c\r\n1,2,0\r\n3,4,1\r\n", {"label_column": 0}),
    ("1,2,0.5\n3,4,1.25", {}),  # float labels; no line end after the last row
    ("1,2,1e30\n3,4,1\n", {}),  # an integral label beyond int64 stays float64
    ("0,1,2,3\n5,6,7,8\n9,10,11,12\n", {"label_column": None}),  # pandas' column names 0..k-1: a header
    ('"a","b","c"\n1,2,0\n3,4,1\n', {"label_column": "b"}),  # a quoted header
    ("1;2;0\n3;4;1\n", {"delimiter": ";"}),
    ("1\u20ac2\u20ac0\n3\u20ac4\u20ac1\n", {"delimiter": "\u20ac"}),  # a delimiter beyond ASCII
    ("1,2,0\n3,-4,1\n+5, 007 ,2\n", {}),  # integers
    ("-0,1,2\n3,-00,1\n-5,+7,0\n", {}),  # -0 is -0.0
    ("99999999999999999999,2,0\n3,4,1\n", {}),  # beyond int64
    ("1,2,9223372036854775807\n3,4,1\n", {}),  # an integral label that rounds to 2**63: float64
    ("1,2,0\n3,4,1\n", {"label_column": 7}),  # errors that the file is not to blame for: the same too
    ("a,b,c\n1,2,0\n", {"label_column": "z"}),
])
def test_csv_of_plain_numbers_reads_as_cell_by_cell(tmp_path, text, kw):
    p = tmp_path / "t.csv"
    p.write_bytes(text.encode())
    slow = _csv_outcome(p, slow=True, **kw)
    saved = data._csv_float
    data._csv_float = None  # the cell-by-cell reader would call it: this proves the NumPy path ran
    try:
        fast = _csv_outcome(p, **kw)
    finally:
        data._csv_float = saved
    _assert_same_outcome(fast, slow)


@pytest.mark.parametrize("text, kw", [
    ("\n1,2,3\n4,5,6\n", {"header": True}),  # the header is the first row, not the first line
    ("a,b,c\rx\n1,2,3\n4,5,6\n", {"header": True}),  # the header row ends at a lone "\r"
    ("a,b,c\r1,2,3\n4,5,6\n", {}),
    ("a,b\n1,2,0\n3,4,1\n", {}),  # a header narrower than the rows
    ("a,b,c\n1,2,0\n3,\x1c4,1\n", {}),  # NumPy reads "\x1c4" as 4
    ("1 2 0\n3  4 1\n", {"delimiter": " "}),
] + [(text, {}) for text in [
    "1,2,0\n,,\n3,4,1\n",  # a row of empty cells is skipped
    "1,2,0\n   \n3,4,1\n",
    "1,2,0\n3,,1\n",  # a missing value
    "1,2,0\r3,4,1\r",  # old Mac line ends
    "\n\na,b,c\n1,2,0\n3,4,1\n",  # blank lines before the header
    '"a\nb",c,d\n1,2,0\n',  # a line end inside a quoted header cell
    '"1","2","0"\n"3","4","1"\n',  # quoted numbers
    "1,2,0\n3,4,1,\n",  # one cell too many
    "1,2\n3\n",
    "1,--2,0\n3,4,1\n", "1,2e,0\n3,4,1\n", "1,2 3,0\n3,4,1\n", "1,1e999,0\n3,4,1\n", "1,.,0\n3,4,1\n",
    ",a,b\n0,1,2\n1,3,4\n",  # a row index as pandas writes it
    "a,b\n",  # a header and no data
    "1\n2\n",  # a single column
    "1,2,cat\n3,4,dog\n",  # text labels
    "1;2;0\n3;4;1\n",  # another separator
]])
def test_csv_that_is_not_plain_numbers_reads_as_before(tmp_path, text, kw):
    """Anything NumPy's reader would read differently, or refuse, goes the cell-by-cell way: the same
    result, or the same error naming the cell."""
    p = tmp_path / "t.csv"
    p.write_bytes(text.encode())
    _assert_same_outcome(_csv_outcome(p, **kw), _csv_outcome(p, slow=True, **kw))


def _csv_fast_outcome(path, fast_path, **kw):
    """``(outcome, taken)``: :func:`_csv_outcome` of ``path``, and whether the NumPy path named
    ``fast_path`` ("_csv_numbers" or "_csv_text_labels") gave load_csv its result."""
    found = []
    saved = getattr(data, fast_path)
    setattr(data, fast_path, lambda *args: found.append(saved(*args)) or found[-1])
    try:
        outcome = _csv_outcome(path, **kw)
    finally:
        setattr(data, fast_path, saved)
    return outcome, bool(found) and found[-1] is not None


def _csv_text_labels_outcome(path, **kw):
    """:func:`_csv_outcome` for a file that must take the text-label path: it returns a result."""
    outcome, taken = _csv_fast_outcome(path, "_csv_text_labels", **kw)
    assert taken
    return outcome


@pytest.mark.parametrize("text, kw", [
    ("a,b,species\n5.1,3.5,setosa\n4.9, 3 ,versicolor\n", {}),  # iris
    ("label,p0,p1\nseven,0,255\nthree,12,0\n", {"label_column": "label"}),  # MNIST, labels as names
    ("1,cat,2\n3,dog,4\n", {"label_column": 1}),
    ("1,2,cat,4\n5,6,dog,8\n", {"label_column": -2}),
    ("a,lab,b,c\n1,x,2,3\n4,y,5,6\n", {"label_column": "lab"}),
    ("1,2, class-1 \n3,4,3a\n5,6,e\n7,8,Iris setosa\n9,10,v.2\n1,1,-\n2,2,.\n3,3,1e\n", {}),
    ("1,2,x-0\n3,4,y1234567890123456789\n", {}),  # "-0" and 19 digits in a label only
    ("1,2,caf\u00e9\n3,4,\u732b\n5,6,\u0661\n", {}),  # beyond ASCII (an Arabic-Indic digit is text)
    ("a,b,c\r\n1,2,cat\r\n3,4,dog\r\n", {}),
    ("\ufeffa,b,c\n1,2,cat\n3,4,dog\n", {"label_column": "c"}),  # a BOM before the header
    ("\ufeffcat,1,2\ndog,3,4\n", {"label_column": 0}),
    ("\n\n1,2,cat\n\n,,\n \t, ,\n3,4,dog\n\n", {}),  # rows of blank cells are skipped
    ("1,2,cat\n3,4,dog", {}),  # no line end after the last row
    ("1\t2\tcat dog\n3\t 4 \tbird\n", {"delimiter": "\t"}),
    ("1\u20ac2\u20accat\n3\u20ac4\u20acdog\n", {"delimiter": "\u20ac"}),
    ("1;2;cat\n3;4;dog\n", {"delimiter": ";"}),
    ("1 2 cat\n3 4 dog\n", {"delimiter": " "}),  # NumPy's reader splits at any delimiter as csv does
    ("1.2.cat\n3.4.dog\n", {"delimiter": "."}), ("1e2ecat\n3e4edog\n", {"delimiter": "e"}),
    ("1-2-cat\n3-4-dog\n", {"delimiter": "-"}), ("102cat\n304dog\n", {"delimiter": "0"}),
    ("-0,1.5,cat\n2e-310,1e308,dog\n", {}),  # -0.0, subnormal, large: as float() reads them
    ("99999999999999999999,2,cat\n3,4,dog\n", {}),  # beyond int64
    ("x,y,z\n1,2,cat\n3,4,dog\n", {"header": True}),
    ("1,2,cat\n3,4,dog\n", {"header": False}),
    ("1,2,cat\n", {"header": False}),  # one row (read as a header if "auto")
    ("0,1,2,3\n5,6,cat,8\n9,10,dog,12\n", {"label_column": 2}),  # pandas' column names 0..k-1
    ('"a","b","c"\n1,2,cat\n3,4,dog\n', {"label_column": "c"}),  # a quoted header
])
def test_csv_with_text_labels_reads_as_cell_by_cell(tmp_path, text, kw):
    p = tmp_path / "t.csv"
    p.write_bytes(text.encode())
    _assert_same_outcome(_csv_text_labels_outcome(p, **kw), _csv_outcome(p, slow=True, **kw))


@pytest.mark.parametrize("text, kw", [
    ('1,2,"setosa"\n3,4,"x"\n', {}),  # quoted labels
    ('1,2,"a,b"\n3,4,c\n', {}),  # a delimiter inside a quoted label
    ('1,2,a"b\n3,4,c\n', {}),
    ("1,2,cat\n3,4,5\n", {}),  # a column mixing numbers and text
    ("1,2,cat\n3,4,nan\n", {}), ("1,2,inf\n3,4,cat\n", {}), ("1,2,cat\n3,4, 5 \n", {}),
    ("1,2,\n3,4,dog\n", {}), ("1,2, \n3,4,dog\n", {}), ("1,2,cat\n3,4,\n", {}),  # empty labels
    ("1,2,cat,\n3,4,dog,\n", {}),  # a trailing delimiter: the label column is the empty last one
    ("cat,,\ndog,1,2\n", {"label_column": 0}),
    ("1,2,cat\n3,dog\n", {}), ("1,2,cat\n3,4,5,dog\n", {}),  # ragged rows
    ("cat,1,2\ndog,3\n", {"label_column": 0}), ("cat,1\ndog,3,4\n", {"label_column": 0}),
    ("1,cat,2\n3,dog\n", {"label_column": 1}), ("1,cat,2\n3\n", {"label_column": 1}),
    ("1,cat,2\n3,dog,4,5\n", {"label_column": 1}),
    ("1,2,cat\ndog\n", {}), ("cat,1\ndog\n", {"label_column": 0}), ("1,cat\n,dog\n", {}),
    ("\na,b,c\n1,2,cat\n", {"header": True}),  # the header is the first row, not the first line
    ("a,b\n1,2,cat\n3,4,dog\n", {}),  # a header narrower than the rows
    ("1,2,cat\r3,4,dog\r", {}), ("1,2,c\rat\n3,4,dog\n", {}), ("1,2,cat\n3,4,dog\r", {}),
    ("1,2,cat\n3,4,dog\n5,6,c\x00t\n", {}),  # NUL: an error to the csv module before Python 3.11
    ("x,2,cat\n3,4,dog\n", {}), ("1,2 3,cat\n3,4,dog\n", {}), ("1,1e999,cat\n3,4,dog\n", {}),
    ("1,\x1c2,cat\n3,4,dog\n", {}), ("1,,cat\n3,4,dog\n", {}), ("1,--2,cat\n3,4,dog\n", {}),
    ("1,2,cat\n3,4,dog\n", {"label_column": None}),  # text where features are expected
    ("1,2,cat\n3,4,dog\n", {"label_column": 0}),
    ("1,2,cat\n3,4,dog\n", {"label_column": 7}), ("a,b,c\n1,2,cat\n", {"label_column": "z"}),
    ("1,2,cat\n3,dog\n", {"label_column": 7}),  # the malformed row is reported first
    ("1,2,cat\n3,dog\n", {"label_column": "z"}),
    ("a,b,a\n1,2,cat\n", {"label_column": "a"}),  # a name given twice
    (",a,b\n0,1,cat\n1,3,dog\n", {}),  # a row index as pandas writes it
    ("a,b,c\n", {}), ("1,2,cat\n", {}), ("a\ncat\ndog\n", {"label_column": "a"}),
    ("1  2 cat\n3 4 dog\n", {"delimiter": " "}),  # an empty cell
])
def test_csv_with_text_labels_that_is_unusual_reads_as_before(tmp_path, text, kw):
    """Files that the text-label path leaves to the cell-by-cell reader: the same result or error."""
    p = tmp_path / "t.csv"
    p.write_bytes(text.encode())
    _assert_same_outcome(_csv_outcome(p, **kw), _csv_outcome(p, slow=True, **kw))


def test_csv_with_text_labels_and_a_label_column_that_is_no_integer(tmp_path):
    """A TypeError for label_column comes after the cell-by-cell reader's checks of the file, as before."""
    p = tmp_path / "t.csv"
    p.write_text("1,2,cat\n3,dog\n")
    with pytest.raises(ValueError, match="line 2 has 2 columns, expected 3"):
        data.load_csv(p, label_column=1.0)
    p.write_text("1,2,cat\n3,4,dog\n")
    with pytest.raises(TypeError, match="label_column must be an integer"):
        data.load_csv(p, label_column=1.0)


def test_csv_with_text_labels_reads_integer_features_as_integers(tmp_path):
    """Labels holding "e", ".", "-0" or 19 digits do not send the features to the float parser."""
    p = tmp_path / "t.csv"
    p.write_text("label,a,b\nseven,1,-2\nv.1,3,4\nx-0,5,6\nn1234567890123456789,7,8\n")
    read = data._read_numbers
    dtypes = []
    data._read_numbers = lambda text, delimiter, dtype: dtypes.append(dtype) or read(text, delimiter, dtype)
    try:
        X, y = data.load_csv(p, label_column="label")
    finally:
        data._read_numbers = read
    assert dtypes == [np.int64]
    assert X.tolist() == [[1, -2], [3, 4], [5, 6], [7, 8]] and y.tolist() == ["seven", "v.1", "x-0",
                                                                             "n1234567890123456789"]


def test_csv_numbers_read_bit_for_bit_as_float_reads_them(tmp_path):
    """NumPy's reader parses the digits itself: each spelling must give the float64 that float() gives
    (correct rounding, subnormals, the largest finite values, halfway cases)."""
    rng = np.random.default_rng(5)
    v = rng.standard_normal(600) * 10.0 ** rng.integers(-310, 308, 600)
    cells = [repr(float(x)) for x in v] + [f"{x:.3e}" for x in v] + [f"{x:+.17g}" for x in v]
    cells += [f" {x:.9f}\t" for x in v[:200]] + [f"{x:.0f}." for x in v[:200] if abs(x) < 1e20]
    cells += ["9007199254740993", "0.1", "5e-324", "2.4703282292062327e-324", "2.4703282292062328e-324",
              "1.7976931348623157e308", "1.7976931348623158e308", "-0", "+.5", "5.", "1E+05", "0001",
              "123456789012345678901234567890", "2.2250738585072011e-308", "4.9406564584124654E-324",
              "1" + "0" * 300, "0." + "0" * 320 + "1"]
    cells = [c for c in cells if "inf" not in c and "nan" not in c]  # 10.0**308 * 3 overflows
    cells += ["0"] * (-len(cells) % 4)
    grid = np.array(cells, dtype=object).reshape(-1, 4)
    p = tmp_path / "spellings.csv"
    p.write_text("\n".join(",".join(row) for row in grid) + "\n")
    saved = data._csv_float
    data._csv_float = None
    try:
        X, y = data.load_csv(p, label_column=None)
    finally:
        data._csv_float = saved
    want = np.array([[float(c) for c in row] for row in grid])
    np.testing.assert_array_equal(X.view(np.uint64), want.view(np.uint64))


def test_csv_integers_read_bit_for_bit_as_float_reads_them(tmp_path):
    """A table of integers of up to 18 digits is read as int64 (~5x faster than as float64) and converted:
    each value must be the float64 that float() gives, rounded the same way beyond 2**53."""
    rng = np.random.default_rng(6)
    v = rng.integers(-10 ** 18 + 1, 10 ** 18, 400) >> rng.integers(0, 60, 400)
    cells = [str(x) for x in v] + [f"+{abs(x)}" for x in v[:50]] + [f" {x} " for x in v[:50]]
    cells += ["9007199254740993", "9007199254740995", "-9007199254740993", "999999999999999999",
              "-999999999999999999", "0", "007", "+0"]
    cells += ["0"] * (-len(cells) % 4)
    grid = np.array(cells, dtype=object).reshape(-1, 4)
    p = tmp_path / "integers.csv"
    p.write_text("\n".join(",".join(row) for row in grid) + "\n")
    read = data._read_numbers
    dtypes = []
    data._read_numbers = lambda text, delimiter, dtype: dtypes.append(dtype) or read(text, delimiter, dtype)
    try:
        X, y = data.load_csv(p, label_column=None)
    finally:
        data._read_numbers = read
    assert dtypes == [np.int64]
    want = np.array([[float(c) for c in row] for row in grid])
    np.testing.assert_array_equal(X.view(np.uint64), want.view(np.uint64))


@pytest.mark.parametrize("labels", ["numbers", "text"])
def test_csv_random_small_files_read_the_same_either_way(tmp_path, labels):
    """Seeded random small files mixing plain numbers with the spellings and shapes that must leave the
    NumPy paths (text, quotes, empty cells, blank rows, ragged rows, CRLF, headers, non-finite values):
    the same result or the same error either way, for several label_column/header settings. With
    ``labels="text"`` a label column (usually the one that label_column names) holds text labels, now
    and then a number, an empty or quoted label or one that the csv module reads otherwise."""
    text_labels = labels == "text"
    rng = np.random.default_rng(8 if text_labels else 7)
    plain = ["0", "1", "7", "12", "-3", "+4", "1.5", ".5", "5.", "-0", "1e3", "2E-2", "  9 ", "\t8"]
    odd = ["", " ", "1e", "--1", "nan", "inf", "1e999", "x", '"3"', "99999999999999999999", "1_0", "\x1c2"]
    names = ["cat", "dog", "Iris setosa", " class-1 ", "3a", "e", "E5", "v.2", "-", ".", "x-0", "caf\u00e9",
             "\u732b", "\u0661", "1_0", "n1234567890123456789", "a\tb"]
    odd_names = ["", " ", "5", "-0", "nan", "inf", '"cat"', '"a,b"', 'a"b', "c\rat", "c\x00t", "a,b", "\x1c"]
    settings = [{}, {"label_column": None}, {"label_column": 0}, {"header": True}, {"header": False}]
    if text_labels:
        settings = [{}, {"label_column": 0}, {"label_column": 1}, {"label_column": -2},
                    {"label_column": "label"}, {"header": True}, {"header": False}, {"label_column": None},
                    {"delimiter": "\t"}, {"delimiter": ";"}]
    p = tmp_path / "f.csv"
    fast_runs = 0
    for case in range(400):
        kw = settings[case % len(settings)]
        delimiter = kw.get("delimiter", ",")
        width, lines = int(rng.integers(1, 5)), []
        if text_labels:
            width = int(rng.integers(2, 6))
            where = kw.get("label_column", -1)
            where = int(rng.integers(width)) if where is None or where == "label" else where % width
            if rng.random() < 0.1:
                where = int(rng.integers(width))  # text in a feature column
        if rng.random() < (0.6 if kw.get("label_column") == "label" else 0.4):
            header = list(rng.choice(["a", "label", "", "0", "1", "2", "3"], width))
            if text_labels and rng.random() < 0.8:
                header[where] = "label"
            lines.append(delimiter.join(header))
        for _ in range(int(rng.integers(1, 6))):
            cells = [str(rng.choice(plain if rng.random() < (0.97 if text_labels else 0.9) else odd))
                     for _ in range(width)]
            if text_labels:
                cells[where] = str(rng.choice(names if rng.random() < 0.93 else odd_names))
            ragged = rng.random() < (0.04 if text_labels else 0.1)
            lines.append(delimiter.join(cells[:int(rng.integers(1, width + 1))] if ragged else cells))
            if rng.random() < 0.1:
                lines.append(str(rng.choice(["", " ", ",,"])).replace(",", delimiter))
        end = str(rng.choice(["\n", "\r\n"]))
        p.write_bytes((end.join(lines) + end).encode())
        fast, taken = _csv_fast_outcome(p, "_csv_text_labels" if text_labels else "_csv_numbers", **kw)
        _assert_same_outcome(fast, _csv_outcome(p, slow=True, **kw))
        fast_runs += taken
    assert fast_runs > 100  # the comparison covers the NumPy path, not only files that leave it


@pytest.mark.parametrize("cell, value", [("99999999999999999999", 1e20), (" 9223372036854775808", 2.0 ** 63),
                                         ("-9223372036854775809", -2.0 ** 63), ("9223372036854775807", 2.0 ** 63)])
def test_csv_integer_beyond_int64_is_read_as_float_reads_it(tmp_path, cell, value):
    """NumPy 1.24 (setup.cfg allows it) parses an integer that does not fit int64 through a float and wraps
    it to -2**63 with only a DeprecationWarning: the fast path read 99999999999999999999 as -9.2e18.
    Integers of 19 digits or more now go straight to the float parser. No warning filter here: with
    warnings as errors NumPy refuses instead, which hid the wrap."""
    p = tmp_path / "big.csv"
    p.write_text(f"{cell},2,0\n3,4,1\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X, y = data.load_csv(p)
    assert X[0, 0] == value == float(cell) and y.tolist() == [0, 1]
    assert not caught, [str(w.message) for w in caught]


def _same_or_refused(load, path, copies, expected):
    """Write each copy to ``path``: ``load(path)`` gives ``expected`` (arrays compared bit for bit) or a
    ValueError naming the file; returns how many loaded."""
    loaded = 0
    for raw, _ in copies:
        path.write_bytes(raw)
        try:
            got = load(path)
        except ValueError as err:
            assert str(path) in str(err), (raw, err)
            continue
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), raw
        loaded += 1
    return loaded


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_fuzz_damaged_npz_files_load_the_same_or_name_the_file(tmp_path, save):
    """Every truncation of a small .npz data set and 200 seeded byte changes: the same arrays, or a
    ValueError naming the file (the zip CRCs catch a changed byte of a member)."""
    X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    y = np.arange(6) % 3
    path = tmp_path / "fuzz.npz"
    save(path, X=X, y=y)
    loaded = _same_or_refused(data.load_npz, path, damaged_copies(path.read_bytes(), seed=12), (X, y))
    assert 0 < loaded < 100


def test_fuzz_damaged_idx_files_load_the_same_or_name_the_file(tmp_path):
    """A gzipped IDX file, truncated at every length and with 200 seeded byte changes: the same images, or
    a ValueError naming the file (gzip's CRC catches a changed byte of the data). A raw IDX file has no
    checksum: every truncation of it is refused."""
    images = (np.arange(12) * 7 % 256).astype(np.uint8).reshape(3, 2, 2)
    raw = bytes([0, 0, 8, 3]) + struct.pack(">III", 3, 2, 2) + images.tobytes()
    path = tmp_path / "fuzz-idx3-ubyte.gz"
    loaded = _same_or_refused(lambda p: (data.load_idx(p),), path,
                              damaged_copies(gzip.compress(raw, mtime=0), seed=13), (images,))
    assert 0 < loaded < 100  # a changed byte of the gzip header's time or OS field does not matter
    path = tmp_path / "fuzz-idx3-ubyte"
    assert _same_or_refused(lambda p: (data.load_idx(p),), path, damaged_copies(raw, seed=13, n=0), ()) == 0


@pytest.mark.parametrize("text", ["a,b,label\n1.5,2,0\n3,-4e1,1\n5,6,2\n", "1,2,cat\n3,4,dog\n5,6,cat\n"])
def test_fuzz_damaged_csv_files_load_or_name_the_file(tmp_path, text):
    """Every truncation of a small CSV file and 200 seeded byte changes (often to a quote, line end,
    comma, NUL or a byte that is no UTF-8): a table, or a ValueError naming the file, never another
    exception. A CSV file has no checksum, so a changed number reads as that number."""
    path = tmp_path / "fuzz.csv"
    values = b'"\r\n,\x00\x80\xc3 e.-'
    for raw, _ in damaged_copies(text.encode(), seed=14, values=values):
        path.write_bytes(raw)
        try:
            X, y = data.load_csv(path)
        except ValueError as err:
            assert str(path) in str(err), (raw, err)
            continue
        assert X.ndim == 2 and X.dtype == np.float64 and y.shape == (X.shape[0],)


@pytest.mark.parametrize("header", ["yes", 1, 0])
def test_csv_header_option_is_checked(tmp_path, header):
    """header="yes" was read as True whatever the file held, and 0 as no header (pandas' header=0 means
    a header in row 0); None means no header, as in pandas."""
    p = tmp_path / "d.csv"
    p.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match=re.escape(f"header must be 'auto', True or False (or None: no header), got "
                                                   f"{header!r}")):
        data.load_csv(p, header=header)
    assert data.load_csv(p, header=False)[0].shape == (2, 2) and data.load_csv(p, header=True)[0].shape == (1, 2)
    assert data.load_csv(p, header=None)[0].shape == (2, 2)
