"""vi.load on corrupt and crafted files (only FormatError ever comes out, nothing is allocated
before it is checked), saves that are atomic under concurrency and leave nothing behind on
failure, and files whose JSON scalars would load into wrong models."""

import io
import json
import os
import struct
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest
import varinf as vi
from _files import _edit_meta, _rewrite
from test_io import _data, _load_fails, saved  # noqa: F401 (a fixture)
from varinf import kernels as K
from varinf import likelihoods as L
from varinf import serialization
from varinf._cli import TableModel


# --- crafting files -----------------------------------------------------------------------------------

def _npy(shape, descr="<f8", data=b"") -> bytes:
    """A .npy member: a header declaring ``shape`` and ``descr``, then ``data``."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
    return f.getvalue() + data


def _replace_members(path, compression=zipfile.ZIP_STORED, **members):
    """Rewrite the archive at path with members (name without .npy -> raw bytes) replaced."""
    with zipfile.ZipFile(path) as z:
        raw = {info.filename: z.read(info) for info in z.infolist()}
    raw.update({f"{name}.npy": data for name, data in members.items()})
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in raw.items():
            z.writestr(name, data)


def _central_record(data: bytes, member: str) -> int:
    """Offset of ``member``'s record in the central directory (the last copy of its name)."""
    pos = data.rindex(member.encode()) - 46
    assert data[pos:pos + 4] == b"PK\x01\x02"
    return pos


def _patch(path, offset: int, fmt: str, value):
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


# --- item by item: each failure the loader used to let through --------------------------------------------
def test_unsupported_compression_method(saved):
    data = saved.read_bytes()
    _patch(saved, _central_record(data, "y.npy") + 10, "<H", 99)  # was NotImplementedError
    _load_fails(saved, "compression method 99")


def test_local_headers_before_the_start_of_the_file(saved):
    data = saved.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    start = struct.unpack_from("<I", data, eocd + 16)[0]
    _patch(saved, eocd + 16, "<I", start + 1000)  # every offset moves 1000 bytes back: was OSError [Errno 22]
    _load_fails(saved, "")


def test_huge_declared_shape_is_refused_before_allocating(saved):
    _replace_members(saved, y=_npy((10 ** 12,), data=b"\0" * 80))  # was MemoryError (7.28 TiB)
    _load_fails(saved, r"shape \(1000000000000,\)")


def test_header_that_does_not_tokenize(saved):
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,\n"
    header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    _replace_members(saved, y=header + b"\0" * 24)  # was tokenize.TokenError
    _load_fails(saved, "")


@pytest.mark.parametrize("depth, pattern", [(400, ""), (40, f"deeper than {serialization.MAX_DEPTH}")])
def test_deeply_nested_kernels(saved, depth, pattern):
    meta = json.loads(str(np.load(saved)["__varinf__"]))
    spec = json.dumps(meta["config"]["kernel"])
    for _ in range(depth):  # 400 levels was RecursionError
        spec = '{"class": "Sum", "config": {"children": [' + spec + "]}}"
    meta["config"]["kernel"] = "SPEC"
    text = json.dumps(meta).replace('"SPEC"', spec)
    _rewrite(saved, lambda e: e.update(__varinf__=np.array(text)))
    _load_fails(saved, pattern)


def test_nesting_limit_is_the_same_for_save_and_load(tmp_path):
    kernel = K.SquaredExponential()
    for i in range(serialization.MAX_DEPTH + 1):  # alternate, or Sum and Product flatten
        kernel = K.Sum([kernel, K.White()]) if i % 2 else K.Product([kernel, K.Constant()])
    with pytest.raises(ValueError, match="nested deeper"):
        vi.save(kernel, tmp_path / "deep")
    assert os.listdir(tmp_path) == []
    vi.save(kernel.kernels[0], tmp_path / "deep")
    assert repr(vi.load(tmp_path / "deep")) == repr(kernel.kernels[0])


@pytest.mark.parametrize("number", ["NaN", "-Infinity", "1e999"])
def test_non_finite_json_numbers(saved, number):
    text = str(np.load(saved)["__varinf__"]).replace('"format_version": 1', f'"format_version": 1, "x": {number}')
    _rewrite(saved, lambda e: e.update(__varinf__=np.array(text)))
    _load_fails(saved, "not valid JSON")


def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_compressed_member_is_shape_checked_before_it_is_decompressed(saved):
    n = 5_000_000  # 40 MB of zeros in about 40 kB; X has 10 rows
    _replace_members(saved, compression=zipfile.ZIP_DEFLATED, y=_npy((n,), data=bytes(8 * n)))
    assert saved.stat().st_size < 100_000

    def load():
        with pytest.raises(vi.FormatError, match=r"'y' has shape \(5000000,\), expected \(10,\)"):
            vi.load(saved)
    assert _peak_bytes(load) < 4_000_000


def test_declared_size_beyond_what_deflate_can_hold(saved):
    n = 6_000_000  # the header and the zip directory say 48 MB; the compressed bytes hold 80
    _replace_members(saved, compression=zipfile.ZIP_DEFLATED, y=_npy((n,), data=bytes(80)))
    _patch(saved, _central_record(saved.read_bytes(), "y.npy") + 24, "<I", len(_npy((n,))) + 8 * n)

    def load():
        with pytest.raises(vi.FormatError, match="more than its .* compressed bytes can hold"):
            vi.load(saved)
    assert _peak_bytes(load) < 4_000_000


def test_vae_config_is_checked_against_the_weights_before_allocating(tmp_path):
    path = tmp_path / "vae.vi"
    vi.save(vi.VAE(4, 2, hidden=(3,), seed=0), path)
    _edit_meta(path, lambda meta: meta["config"].update(hidden=[1_000_000, 1_000_000]))

    def load():
        _load_fails(path, "describes .* weights; the file holds")
    assert _peak_bytes(load) < 4_000_000


def test_foreign_member_names_and_duplicates(saved):
    with zipfile.ZipFile(saved, "a") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("y.npy", _npy((10,), data=bytes(80)))
    _load_fails(saved, "appears twice")


# --- paths, descriptors and file objects ------------------------------------------------------------------------
def test_path_descriptor_and_file_object_all_load(saved):
    expected = vi.load(saved).predict_y(np.zeros((2, 2)))
    fd = os.open(saved, os.O_RDONLY)
    try:
        with open(saved, "rb") as f:
            for source in (str(saved), saved, fd, f, io.BytesIO(saved.read_bytes())):
                np.testing.assert_array_equal(vi.load(source).predict_y(np.zeros((2, 2)))[0], expected[0])
        os.fstat(fd)  # still open: vi.load(fd) used to close the caller's descriptor
    finally:
        os.close(fd)


def test_save_to_a_descriptor_leaves_it_open(tmp_path, saved):
    model = vi.load(saved)
    fd = os.open(tmp_path / "out.vi", os.O_WRONLY | os.O_CREAT)
    try:
        vi.save(model, fd)
        os.fstat(fd)
    finally:
        os.close(fd)
    assert repr(vi.load(tmp_path / "out.vi")) == repr(model)


def test_unreadable_stream_is_buffered():
    class Stream(io.RawIOBase):  # a pipe-like object: read, no seek
        def __init__(self, data):
            self._buf = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self._buf.readinto(b)

    buf = io.BytesIO()
    vi.save(K.Matern32(variance=0.5), buf)
    assert repr(vi.load(Stream(buf.getvalue()))) == repr(K.Matern32(variance=0.5))


def test_wrong_argument_type_names_file():
    with pytest.raises(ValueError, match="file must be a path, a file descriptor or a binary file object"):
        vi.load(3.5)


def test_a_path_that_cannot_be_opened_keeps_its_os_error(tmp_path):
    with pytest.raises(IsADirectoryError):
        vi.load(tmp_path)


# --- fuzzing: only FormatError ever comes out ----------------------------------------------------------------
def _check_usable(obj):
    """A file that loads gives a working object: finite predictions, non-negative variances."""
    Xs = np.random.default_rng(3).uniform(-2, 2, (4, 2))
    if isinstance(obj, TableModel):
        out = obj.predict(Xs)
        assert np.all(np.isfinite(out)) and np.all(out[:, 1] >= 0)
    elif isinstance(obj, K.Kernel):
        assert np.all(np.isfinite(obj.K(Xs)))
    elif hasattr(obj, "get_params"):  # a scikit-learn estimator, fitted or not
        mean, std = obj.predict(Xs, return_std=True) if hasattr(obj, "model_") else (np.zeros(1), np.ones(1))
        assert np.all(np.isfinite(mean)) and np.all(std > 0)
    else:
        mean, var = obj.predict_y(Xs)
        assert np.all(np.isfinite(mean)) and np.all(var >= 0)


def _outcome(data: bytes):
    try:
        obj = vi.load(io.BytesIO(data))
    except vi.FormatError:
        return
    _check_usable(obj)


def test_truncated_and_bit_flipped_files(saved):
    data = saved.read_bytes()
    for end in range(0, len(data), 17):  # about 260 truncations
        _outcome(data[:end])
    rng = np.random.default_rng(0)
    for _ in range(300):
        mutated = bytearray(data)
        mutated[rng.integers(len(data))] = rng.integers(256)
        _outcome(bytes(mutated))


def _leaves(node, path=()):
    """Paths of every scalar in a JSON tree."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        yield path
        return
    for key, child in items:
        yield from _leaves(child, (*path, key))


def _table_model():
    X, y = _data(n=12)
    model = vi.SGPR(X, y, K.SquaredExponential(lengthscales=[1.0, 1.0]), Z=X[:3], noise_variance=0.2)
    return TableModel("sgpr", model, ["a", "b"], 3, X.mean(axis=0), X.std(axis=0), 0.5, 2.0)


def _gp_regressor():
    estimators = pytest.importorskip("varinf.estimators")
    return estimators.GPRegressor(normalize_y=True, normalize_X=True, max_iter=3).fit(*_data(n=12))


@pytest.mark.filterwarnings("ignore:L-BFGS-B stopped")
@pytest.mark.parametrize("make", [_table_model, _gp_regressor,
                                  lambda: K.RationalQuadratic(active_dims=[1]) * K.Linear([1.0, 2.0])],
                         ids=["TableModel", "GPRegressor", "kernel"])
def test_every_json_scalar_replaced(tmp_path, make):
    path = tmp_path / "obj.vi"
    vi.save(make(), path)
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    meta = json.loads(str(entries["__varinf__"]))
    for leaf in _leaves(meta):
        for value in (None, True, -1, 0, 1e308, "x", [], float("nan")):
            changed = json.loads(json.dumps(meta))
            node = changed
            for key in leaf[:-1]:
                node = node[key]
            node[leaf[-1]] = value
            buf = io.BytesIO()
            np.savez(buf, **{**entries, "__varinf__": np.array(json.dumps(changed))})
            _outcome(buf.getvalue())


# --- item 5: scalars of the JSON header ------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, pattern", [
    ("y_scale", float("nan"), "not valid JSON"),
    ("y_scale", -1.0, "'y_scale' must be a finite number > 0"),
    ("y_scale", 0, "'y_scale' must be a finite number > 0"),
    ("y_mean", "0", "'y_mean' has the wrong type"),
    ("columns", 1, "'columns' must be a finite number >= 2"),
    ("columns", 2.0, "'columns' has the wrong type"),
    ("features", ["a", "a"], "distinct column names"),
    ("features", ["a"], "does not fit a sgpr model over 1 features"),
    ("kind", "gpr", "expected a GPR"),
])
def test_table_model_scalars_are_validated(tmp_path, key, value, pattern):
    path = tmp_path / "table.vi"
    vi.save(_table_model(), path)
    _edit_meta(path, lambda meta: meta["config"].update({key: value}))
    _load_fails(path, pattern)


def _table_classifier(tmp_path):
    X, y = _data(n=12)
    model = vi.SVGP(K.SquaredExponential(), L.Bernoulli(), Z=X[:3], num_data=12)
    path = tmp_path / "clf.vi"
    vi.save(TableModel("svgp-classifier", model, ["a", "b"], 3, X.mean(axis=0), X.std(axis=0),
                       classes=[-1.0, 1.0]), path)
    return path


@pytest.mark.parametrize("classes", [[1.0, -1.0], [1.0, 1.0], [0.0, 1.0, 2.0]])
def test_table_classifier_needs_two_sorted_classes(tmp_path, classes):
    path = _table_classifier(tmp_path)
    _rewrite(path, lambda e: e.update(classes=np.array(classes)))
    _load_fails(path, "classes")


def test_table_classifier_needs_a_bernoulli_svgp(tmp_path):
    path = _table_classifier(tmp_path)
    _edit_meta(path, lambda meta: meta["config"].update(kind="svgp"))
    _load_fails(path, "does not fit a svgp model")
    path = _table_classifier(tmp_path)
    _edit_meta(path, lambda meta: meta["config"].update(y_scale=2.0))
    _load_fails(path, "y_scale 1")


# --- item 6: atomic saves ----------------------------------------------------------------------------------------
def test_concurrent_saves_and_loads_of_one_path(tmp_path):
    X, y = _data(n=400)
    models = [vi.GPR(X, y + i, K.Matern32(), noise_variance=0.1) for i in range(3)]
    path = tmp_path / "shared.vi"
    vi.save(models[0], path)
    failures, stop = [], threading.Event()

    def run(action):
        try:
            action()
        except Exception as exc:  # noqa: BLE001 (reported below)
            failures.append(exc)

    def write(model):
        for _ in range(15):
            vi.save(model, path)

    def read():
        while not stop.is_set():
            loaded = vi.load(path)
            if not any(np.array_equal(loaded.y, m.y) for m in models):
                raise AssertionError(f"{loaded.y[:3]} {[m.y[:3] for m in models]}")

    writers = [threading.Thread(target=run, args=(lambda m=m: write(m),)) for m in models]
    reader = threading.Thread(target=run, args=(read,))
    for t in [*writers, reader]:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert failures == []
    final = vi.load(path)
    assert any(np.array_equal(final.y, m.y) for m in models)
    assert os.listdir(tmp_path) == ["shared.vi"]  # no temporary file left


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch, saved):
    model = vi.load(saved)
    before = saved.read_bytes()

    def fail(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        vi.save(K.White(), saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["model.vi"]
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        vi.save(model, tmp_path / "folder")
    assert sorted(os.listdir(tmp_path)) == ["folder", "model.vi"] and os.listdir(tmp_path / "folder") == []


def test_saved_file_has_the_permissions_open_gives(tmp_path):
    vi.save(K.White(), tmp_path / "a.vi")
    with open(tmp_path / "b.vi", "wb"):
        pass
    assert (tmp_path / "a.vi").stat().st_mode == (tmp_path / "b.vi").stat().st_mode
