"""``python -m varinf fit | predict --dask``: globs of CSV and Parquet files read by dask.dataframe,
fits on the session's cluster, partitioned predictions equal to those of the one-process command,
and every failure as one line with exit status 2. Run in-process through main()."""

import glob
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import varinf as vi
from varinf.__main__ import main
from _cli import fails as _fails

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

_FIT = ["--iterations", "5", "--inducing", "10", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """600 rows in 3 CSV files and 3 Parquet files (part-0..2), and all of them in all.csv."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(600, 2))  # [600, 2]
    frame = pd.DataFrame({"x1": X[:, 0], "label": np.where(X[:, 0] + 0.3 * rng.standard_normal(600) > 0, 7, 3),
                          "x2": X[:, 1], "y": 20.0 + 3.0 * np.sin(2 * X[:, 0]) + X[:, 1]
                          + 0.1 * rng.standard_normal(600)})
    for i in range(3):
        part = frame.iloc[200 * i:200 * (i + 1)]
        part.to_csv(folder / f"part-{i}.csv", index=False)
        part.to_parquet(folder / f"part-{i}.parquet", index=False)
    frame.to_csv(folder / "all.csv", index=False)
    return folder, frame


def _partitioned(pattern):
    """The rows of the files matching ``pattern``, in the order of their partition numbers."""
    paths = sorted(glob.glob(pattern))
    assert paths
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_sgpr_on_a_glob_predicts_as_the_one_process_command(tmp_path, files, cluster, capsys, suffix):
    folder, frame = files
    data, saved = str(folder / f"part-*.{suffix}"), str(tmp_path / "m.vinf")
    address = ["--dask", cluster.scheduler_address]
    assert main(["fit", "--model", "sgpr", "--target", "y", "--features", "x1,x2", data, "-o", saved, *_FIT,
                 *address]) == 0
    assert f"fitted sgpr to 600 rows x 2 features of {data}" in capsys.readouterr().out
    fitted = vi.load(saved)  # standardised with the columns' statistics, computed on the cluster
    np.testing.assert_allclose(fitted.x_mean, frame[["x1", "x2"]].mean(), rtol=1e-12)
    np.testing.assert_allclose(fitted.x_scale, frame[["x1", "x2"]].std(ddof=0), rtol=1e-12)
    np.testing.assert_allclose([fitted.y_mean, fitted.y_scale], [frame.y.mean(), frame.y.std(ddof=0)], rtol=1e-12)
    os.mkdir(tmp_path / "out")
    assert main(["predict", saved, data, "-o", str(tmp_path / "out" / "pred-*.csv"), *address]) == 0
    assert sorted(os.listdir(tmp_path / "out"))[0] == "pred-0.csv"  # and nothing hidden left behind
    assert main(["predict", saved, str(folder / "all.csv"), "-o", str(tmp_path / "all.csv")]) == 0
    expected = pd.read_csv(tmp_path / "all.csv")
    got = _partitioned(str(tmp_path / "out" / "pred-*.csv"))
    assert list(got.columns) == ["mean", "std"] and got.shape == (600, 2)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-8)
    if suffix == "parquet":  # and into a Parquet folder
        assert main(["predict", saved, data, "-o", str(tmp_path / "pred.parquet"), *address]) == 0
        got = pd.read_parquet(tmp_path / "pred.parquet")
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-8)


def test_svgp_classifier_on_the_cluster(tmp_path, files, cluster, capsys):
    folder, frame = files
    saved = str(tmp_path / "c.vinf")
    assert main(["fit", "--model", "svgp-classifier", "--target", "label", "--features", "x1,x2",
                 str(folder / "part-*.csv"), "-o", saved, "--iterations", "20", "--inducing", "10",
                 "--no-progress", "--dask", cluster.scheduler_address]) == 0
    assert "fitted svgp-classifier to 600 rows x 2 features" in capsys.readouterr().out
    assert vi.load(saved).classes.tolist() == [3.0, 7.0]  # the distinct labels, found by dask
    os.mkdir(tmp_path / "out")
    assert main(["predict", saved, str(folder / "part-*.parquet"), "-o", str(tmp_path / "out" / "p-*.csv"),
                 "--dask", cluster.scheduler_address]) == 0
    got = _partitioned(str(tmp_path / "out" / "p-*.csv"))
    assert list(got.columns) == ["probability", "class"] and got.shape == (600, 2)
    assert set(got["class"]) <= {3.0, 7.0} and got.probability.between(0, 1).all()


def test_failures_are_one_line_and_status_2(tmp_path, files, cluster, capsys, monkeypatch):
    folder, _ = files
    data, address = str(folder / "part-*.csv"), ["--dask", cluster.scheduler_address]
    saved = str(tmp_path / "m.vinf")
    sgpr = ["fit", "--model", "sgpr", "-o", saved, *_FIT, *address]
    _fails(sgpr + ["--target", "price", data], capsys, "no target column 'price'")
    _fails(sgpr + ["--target", "y", str(folder / "none-*.csv")], capsys, "none-*.csv: no such file")
    _fails(sgpr + ["--target", "y", str(folder / "all.npz")], capsys, "--dask reads CSV files")
    _fails(sgpr + ["--target", "y", data, "--model", "gpr"], capsys, "--model gpr does not take --dask", "in memory")
    _fails(sgpr + ["--target", "y", data, "--model", "svgp-classifier"], capsys,
           "at most 300 distinct values for 600 rows", "got 600")
    import varinf.dask._cli as dask_cli

    monkeypatch.setattr(dask_cli, "_CONNECT_SECONDS", 1)  # the default, 5 s, is for real networks
    start = time.perf_counter()
    _fails(sgpr + ["--target", "y", data, "--dask", "tcp://127.0.0.1:1"], capsys, "--dask tcp://127.0.0.1:1",
           "no Dask scheduler answered")
    assert time.perf_counter() - start < 5
    assert not (tmp_path / "m.vinf").exists()
    # predict: the output must be partitioned; a cell that is not a number fails, leaving nothing
    assert main(sgpr + ["--target", "y", data]) == 0
    capsys.readouterr()  # the fit's lines
    predict = ["predict", saved]
    _fails(predict + [data, "-o", str(tmp_path / "pred.csv"), *address], capsys, "needs a '*' in the file name")
    _fails(predict + [data, *address], capsys, "not standard output")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.csv").write_text("x1,x2,label\n0.5,1.0,3\n0.1,,3\n")
    (bad / "b.csv").write_text("x1,x2,label\n0.5,abc,3\n")
    out = tmp_path / "out"
    out.mkdir()
    _fails(predict + [str(bad / "a.csv"), "-o", str(out / "p-*.csv"), *address], capsys,
           "partition 0: column 'x2' has 1 values that are not finite numbers")
    _fails(predict + [str(bad / "b*.csv"), "-o", str(out / "p-*.csv"), *address], capsys,
           "could not convert string to float: 'abc'")
    _fails(sgpr + ["--target", "label", str(bad / "a.csv")], capsys,
           "a.csv: column 'x2' has 1 values that are not finite numbers")
    _fails(predict + [str(folder / "part-*.csv"), "-o", str(out / "p-*.csv"), "--dask", "tcp://"], capsys,
           "not a scheduler address")
    assert os.listdir(out) == []


def test_a_local_cluster_for_the_command(tmp_path, files, capsys):
    folder, _ = files
    saved = str(tmp_path / "m.vinf")
    assert main(["fit", "--model", "sgpr", "--target", "y", "--features", "x1,x2", str(folder / "part-*.csv"),
                 "-o", saved, *_FIT, "--dask", "local:1"]) == 0
    assert "(Dask: 1 worker(s), 1 thread(s))" in capsys.readouterr().out
    assert vi.load(saved).model.predict_f(np.zeros((1, 2)))[0].shape == (1,)


def test_without_dask_the_option_says_how_to_install_it(tmp_path, files, capsys, monkeypatch):
    folder, _ = files
    monkeypatch.setitem(sys.modules, "varinf.dask._cli", None)  # importing it now raises ImportError
    _fails(["fit", "--model", "sgpr", "--target", "y", str(folder / "part-*.csv"), "-o", str(tmp_path / "m.vinf"),
            *_FIT, "--dask", "local:1"], capsys, "--dask needs dask and distributed", 'pip install "varinf[dask]"')


def test_importing_varinf_and_its_command_line_does_not_import_dask():
    code = "import sys, varinf, varinf._cli, varinf.__main__; assert 'dask' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
