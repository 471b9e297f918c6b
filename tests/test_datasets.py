"""Tests of vi.datasets: the idx reader, digits helpers and the Fashion-MNIST loader."""

import gzip
import os

import numpy as np
import pytest

import varinf as vi


def write_idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip_plain_and_gzip(tmp_path, name):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, images, 0x08)
    out = vi.datasets.load_idx(str(tmp_path / name))
    np.testing.assert_array_equal(out, images)
    assert out.dtype == np.uint8


def test_idx_big_endian_types(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 1e10]], dtype=np.float64)
    write_idx(tmp_path / "f", values, 0x0E)
    np.testing.assert_array_equal(vi.datasets.load_idx(str(tmp_path / "f")), values)
    ints = np.array([-7, 70000], dtype=np.int32)
    write_idx(tmp_path / "i", ints, 0x0C)
    np.testing.assert_array_equal(vi.datasets.load_idx(str(tmp_path / "i")), ints)


def test_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(ValueError, match="magic"):
        vi.datasets.load_idx(str(tmp_path / "bad"))
    write_idx(tmp_path / "short", np.zeros((2, 2), dtype=np.uint8), 0x08)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="shape"):
        vi.datasets.load_idx(str(tmp_path / "short"))


def test_fashion_mnist_missing_names_the_apt_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        vi.datasets.load_fashion_mnist(directory=str(tmp_path))
    with pytest.raises(ValueError, match="kind"):
        vi.datasets.load_fashion_mnist(kind="validation")


def test_fashion_mnist_from_a_directory(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 0x08)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, 0x08)
    X, y = vi.datasets.load_fashion_mnist("test", directory=str(tmp_path))
    assert X.shape == (5, 784) and X.dtype == np.float32
    np.testing.assert_allclose(X, images.reshape(5, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


@pytest.mark.skipif(not os.path.isdir(vi.datasets.FASHION_MNIST_DIR), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package():
    X, y = vi.datasets.load_fashion_mnist_binarized("test")
    assert X.shape == (10000, 784) and y.shape == (10000,)
    assert set(np.unique(X)) == {0.0, 1.0}
    assert set(np.unique(y)) == set(range(10))


def test_digits_binarized_and_split():
    X, y = vi.datasets.load_digits_binarized()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert set(np.unique(X)) == {0.0, 1.0}
    Xs, _ = vi.datasets.load_digits_scaled()
    np.testing.assert_array_equal(X, (Xs > 0.5).astype(np.float32))
    Xtr, Xte, ytr, yte = vi.datasets.train_test_split(X, y, test_fraction=0.25, seed=1)
    assert Xtr.shape[0] + Xte.shape[0] == 1797 and Xte.shape[0] == 449
    assert ytr.shape[0] == Xtr.shape[0]
    with pytest.raises(ValueError, match="test_fraction"):
        vi.datasets.train_test_split(X, test_fraction=1.5)


def test_stochastic_binarisation_is_seeded():
    X = np.full((200, 50), 0.3)
    a = vi.datasets.binarize(X, seed=1)
    np.testing.assert_array_equal(a, vi.datasets.binarize(X, seed=1))
    assert abs(a.mean() - 0.3) < 0.02


def test_shipped_digits_equal_scikit_learns():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = vi.datasets.load_digits_scaled(np.float64)
    digits = datasets.load_digits()
    np.testing.assert_array_equal(X, digits.data / 16.0)
    np.testing.assert_array_equal(y, digits.target)


def test_mcycle_shipped():
    X, y = vi.datasets.load_mcycle()
    assert X.shape == (133, 1) and y.shape == (133,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    assert np.all(np.isfinite(X)) and np.all(np.isfinite(y))
    assert X.min() == 2.4 and X.max() == 57.6
    assert y.min() == -134.0 and y.max() == 75.0
    assert X[0, 0] == 2.4 and y[0] == 0.0 and X[-1, 0] == 57.6 and y[-1] == 10.7  # original order
    assert np.all(np.diff(X[:, 0]) >= 0)  # sorted by time, as in MASS
