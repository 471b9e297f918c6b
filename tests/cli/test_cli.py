"""The command line (python -m varinf): demo, fit and predict, run in-process through main()."""

import os
import sys

import numpy as np
import pytest
import varinf as vi
from varinf.__main__ import main
from _cli import fails as _fails


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# --- demo -----------------------------------------------------------------------------------------

def test_demo_quick_prints_the_table_and_writes_plots(tmp_path, capsys):
    plots = tmp_path / "plots"
    assert main(["demo", "--quick", "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "fit", "s", "threads", "log", "lik.", "or", "bound", "/", "datum",
                              "test", "RMSE", "(ppm)", "test", "NLPD"]
    for name in ("exact GP", "SGPR m=64", "SVGP m=64", "linear trend", "VAE"):
        assert sum(line.startswith(name) for line in out.splitlines()) == 1, name
    gp_line = next(line for line in out.splitlines() if line.startswith("exact GP"))
    rmse, nlpd = (float(v) for v in gp_line.split()[-2:])
    assert 0 < rmse < 20 and np.isfinite(nlpd)
    if _has_matplotlib():
        names = sorted(os.listdir(plots))
        assert names == sorted(["co2_forecast.png", "svgp_training.png", "vae_training.png",
                                "vae_reconstructions.png", "vae_samples.png", "vae_latent.png"])
        assert all((plots / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
        assert "Plots written to" in out
    else:
        assert 'Plots skipped: matplotlib is not installed (pip install "varinf[plot]"' in out


def test_demo_without_matplotlib_says_how_to_get_plots(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["demo", "--quick", "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert 'Plots skipped: matplotlib is not installed (pip install "varinf[plot]" to get them).' in out
    assert not (tmp_path / "plots").exists()


def test_help_everywhere(capsys):
    for argv in ([], ["demo"], ["fit"], ["predict"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv + ["--help"])
        assert exit_info.value.code == 0
        assert "usage: python -m varinf" in capsys.readouterr().out


# --- fit and predict ------------------------------------------------------------------------------

def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(40, 2))  # [40, 2]
    y = 50.0 + 3.0 * np.sin(2 * X[:, 0]) + X[:, 1] + 0.1 * rng.standard_normal(40)  # [40]
    labels = np.where(X[:, 0] + 0.3 * rng.standard_normal(40) > 0, 7, 3)  # [40]
    return X, y, labels


@pytest.fixture()
def csv_file(tmp_path, table):
    X, y, labels = table
    path = tmp_path / "train.csv"
    _write_csv(path, ["x1", "label", "x2", "y"], [(a, c, b, t) for (a, b), t, c in zip(X, y, labels)])
    return str(path)


def _read_predictions(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def _fit(csv_file, tmp_path, model, *extra):
    out = str(tmp_path / f"{model}.vinf")
    argv = ["fit", "--model", model, csv_file, "-o", out, "--iterations", "30", "--no-progress", *extra]
    assert main(argv) == 0
    return out


@pytest.mark.parametrize("model", ["gpr", "sgpr", "svgp"])
def test_fit_predict_round_trip_in_original_units(tmp_path, csv_file, table, capsys, model):
    X, y, _ = table
    saved = _fit(csv_file, tmp_path, model, "--target", "y", "--features", "x1,x2", "--inducing", "10")
    assert f"fitted {model} to 40 rows x 2 features" in capsys.readouterr().out
    test_csv = tmp_path / "test.csv"
    Xtest = np.array([[0.5, -1.0], [1.5, 0.25], [-1.0, 1.0]])  # [3, 2]
    _write_csv(test_csv, ["x2", "x1"], Xtest[:, ::-1])  # columns in another order, no target
    assert main(["predict", saved, str(test_csv), "-o", str(tmp_path / "pred.csv")]) == 0
    header, pred = _read_predictions(tmp_path / "pred.csv")
    assert header == ["mean", "std"] and pred.shape == (3, 2)
    # The saved model sees standardised inputs and outputs; predictions come back in y's units.
    inner = vi.load(saved).model
    mean, var = inner.predict_y((Xtest - X.mean(0)) / X.std(0))
    np.testing.assert_allclose(pred[:, 0], y.mean() + y.std() * mean, rtol=1e-8)
    np.testing.assert_allclose(pred[:, 1], y.std() * np.sqrt(var), rtol=1e-8)
    if model != "svgp":
        np.testing.assert_allclose(inner.X, (X - X.mean(0)) / X.std(0), atol=1e-12)
        np.testing.assert_allclose(inner.y, (y - y.mean()) / y.std(), atol=1e-12)


def test_classifier_predicts_probabilities_and_original_labels(tmp_path, csv_file, table):
    X = table[0]
    saved = _fit(csv_file, tmp_path, "svgp-classifier", "--target", "label", "--features", "x1,x2",
                 "--inducing", "8", "--batch-size", "20")
    assert main(["predict", saved, csv_file, "-o", str(tmp_path / "pred.csv")]) == 0
    header, pred = _read_predictions(tmp_path / "pred.csv")
    assert header == ["probability", "class"]
    inner = vi.load(saved).model
    p7, _ = inner.predict_y((X - X.mean(0)) / X.std(0))  # label 7 is the second sorted class
    np.testing.assert_allclose(pred[:, 0], p7, rtol=1e-8)
    decided = np.abs(p7 - 0.5) > 1e-8  # another rounding may put a probability this close on either side
    np.testing.assert_array_equal(pred[decided, 1], np.where(p7 > 0.5, 7, 3)[decided])


def test_predict_streams_blocks_with_the_same_result(tmp_path, csv_file, monkeypatch):
    from varinf._cli import TableModel

    saved = _fit(csv_file, tmp_path, "gpr", "--target", "y")
    assert main(["predict", saved, csv_file, "-o", str(tmp_path / "one.csv")]) == 0
    sizes = []
    original = TableModel.predict
    monkeypatch.setattr(TableModel, "predict", lambda self, X: sizes.append(len(X)) or original(self, X))
    assert main(["predict", saved, csv_file, "-o", str(tmp_path / "blocks.csv"), "--block-rows", "7"]) == 0
    assert sizes == [7] * 5 + [5]
    # Blocks of other sizes may round differently (another GEMM kernel), within float64 rounding; the
    # file keeps 10 significant digits.
    one, blocks = _read_predictions(tmp_path / "one.csv"), _read_predictions(tmp_path / "blocks.csv")
    assert one[0] == blocks[0] == ["mean", "std"]
    np.testing.assert_allclose(blocks[1], one[1], rtol=1e-9)


def test_numpy_files(tmp_path, table, capsys):
    X, y, _ = table
    np.save(tmp_path / "train.npy", np.column_stack([X[:, 0], y, X[:, 1]]))  # target in column 1
    saved = str(tmp_path / "m.vinf")
    assert main(["fit", "--model", "gpr", "--target", "1", str(tmp_path / "train.npy"), "-o", saved,
                 "--iterations", "20", "--no-progress"]) == 0
    assert vi.load(saved).features == ["0", "2"]  # a numpy file's columns are named by index
    # Files of the training layout; the target's column is not read.
    np.save(tmp_path / "inputs.npy", np.column_stack([X[:, 0], np.zeros(40), X[:, 1]]))
    np.savez(tmp_path / "inputs.npz", X=np.column_stack([X[:, 0], np.ones(40), X[:, 1]]))
    outputs = []
    for name in ("train.npy", "inputs.npy", "inputs.npz"):
        assert main(["predict", saved, str(tmp_path / name), "-o", str(tmp_path / "p.csv"), "--block-rows", "9"]) == 0
        outputs.append((tmp_path / "p.csv").read_text())
    assert outputs[0] == outputs[1] == outputs[2]  # the same rows in the same blocks
    np.save(tmp_path / "features.npy", X)  # columns "0" and "1": no column "2"
    capsys.readouterr()
    _fails(["predict", saved, str(tmp_path / "features.npy"), "-o", str(tmp_path / "p.csv")], capsys,
           "missing feature column(s) ['2']", "fitted on a numpy file of 3 columns")
    # .npz training data: arrays X and y; X's columns are "0" and "1", as in features.npy.
    np.savez(tmp_path / "data.npz", X=X, y=y)
    assert main(["fit", "--model", "sgpr", str(tmp_path / "data.npz"), "-o", str(tmp_path / "z.vinf"),
                 "--inducing", "5", "--iterations", "20", "--no-progress"]) == 0
    assert "fitted sgpr to 40 rows x 2 features" in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "z.vinf"), str(tmp_path / "features.npy"), "-o",
                 str(tmp_path / "p.csv")]) == 0


def test_fit_errors_name_the_problem(tmp_path, csv_file, capsys):
    fit = ["fit", "--model", "gpr", "--no-progress", "-o", str(tmp_path / "m.vinf")]
    _fails(fit + ["--target", "y", str(tmp_path / "missing.csv")], capsys, "missing.csv: no such file")
    _fails(fit + ["--target", "price", csv_file], capsys, "no target column 'price'", "x1, label, x2, y")
    _fails(fit + [csv_file], capsys, "--target is required")
    _fails(fit + ["--target", "y", "--features", "x1,x9", csv_file], capsys, "no feature column 'x9'")
    with open(csv_file) as f:
        lines = f.read().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:3] + [lines[3].replace(lines[3].split(",")[2], "abc", 1)] + lines[4:]) + "\n")
    _fails(fit + ["--target", "y", str(bad)], capsys, "data row 3 (line 4)", "column 'x2'", "'abc' is not a finite number")
    bad.write_text("\n".join(lines[:2] + ["1.0,3,,2.0"] + lines[3:]) + "\n")
    _fails(fit + ["--target", "y", str(bad)], capsys, "data row 2 (line 3)", "column 'x2'", "an empty value")
    bad.write_text("\n".join(lines[:5] + ["1.0,3"] + lines[6:]) + "\n")
    _fails(fit + ["--target", "y", str(bad)], capsys, "line 6: 2 fields, but the header has 4")
    (tmp_path / "empty.csv").write_text("")
    _fails(fit + ["--target", "y", str(tmp_path / "empty.csv")], capsys, "empty file")
    (tmp_path / "headless.csv").write_text("1.0,2.0\n3.0,4.0\n")
    _fails(fit + ["--target", "1", str(tmp_path / "headless.csv")], capsys, "looks like data", "header row")
    (tmp_path / "header.csv").write_text("a,y\n")
    _fails(fit + ["--target", "y", str(tmp_path / "header.csv")], capsys, "no data rows")
    np.save(tmp_path / "three.npy", np.zeros((5, 2, 2)))
    _fails(fit + ["--target", "0", str(tmp_path / "three.npy")], capsys, "expected a 2-D numeric array")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    _fails(fit + ["--target", "0", str(tmp_path / "junk.npy")], capsys, "not a readable .npy file")
    classifier = ["fit", "--model", "svgp-classifier", "--no-progress", "-o", str(tmp_path / "c.vinf")]
    _fails(classifier + ["--target", "y", csv_file], capsys, "at most 20 distinct values for 40 rows", "got 40")


def test_predict_errors_name_the_problem(tmp_path, csv_file, table, capsys):
    X, _, _ = table
    saved = _fit(csv_file, tmp_path, "gpr", "--target", "y", "--features", "x1,x2")
    capsys.readouterr()  # the fit's output
    predict = ["predict", saved]
    out = ["-o", str(tmp_path / "pred.csv")]
    _write_csv(tmp_path / "other.csv", ["x1", "z"], X)
    _fails(predict + [str(tmp_path / "other.csv")] + out, capsys, "missing feature column(s) ['x2']")
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    _fails(predict + [str(tmp_path / "wide.npy")] + out, capsys, "missing feature column(s) ['x1', 'x2']")
    _write_csv(tmp_path / "nan.csv", ["x1", "x2"], [(0.0, 1.0), (2.0, "nan")])
    _fails(predict + [str(tmp_path / "nan.csv")] + out, capsys, "data row 2", "column 'x2'", "'nan' is not a finite")
    assert not (tmp_path / "pred.csv").exists()  # nothing written when a block fails
    (tmp_path / "junk.vinf").write_text("hello")
    _fails(["predict", str(tmp_path / "junk.vinf"), csv_file] + out, capsys, "junk.vinf", "expected a model written by")
    _fails(["predict", str(tmp_path / "none.vinf"), csv_file] + out, capsys, "none.vinf: no such model file")
    gpr = vi.GPR(X, X[:, 0], vi.kernels.SquaredExponential())
    vi.save(gpr, tmp_path / "plain.vinf")
    _fails(["predict", str(tmp_path / "plain.vinf"), csv_file] + out, capsys, "holds a GPR, not a model written by")


def test_bad_arguments_exit_2(capsys, csv_file):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "forest", "--target", "y", csv_file])
    assert exit_info.value.code == 2
    assert "invalid choice: 'forest'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--model", "svgp", "--inducing", "0", csv_file])
    assert "expected a positive integer, got 0" in capsys.readouterr().err


# --- features are found by name, in every format ---------------------------------------------------

def test_a_model_fitted_on_a_numpy_file_refuses_csv_columns_of_other_names(tmp_path, table, capsys):
    X, y, _ = table
    np.savez(tmp_path / "train.npz", X=X, y=y)  # X's columns are named "0" and "1"
    saved = str(tmp_path / "m.vinf")
    assert main(["fit", "--model", "sgpr", str(tmp_path / "train.npz"), "-o", saved, "--inducing", "5",
                 "--iterations", "10", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    for header in (["b", "a"], ["foo", "bar"]):
        _write_csv(tmp_path / "test.csv", header, X[:3])
        _fails(["predict", saved, str(tmp_path / "test.csv"), "-o", str(out)], capsys,
               "test.csv: missing feature column(s) ['0', '1'] that the model was fitted on", "numpy file")
    assert not out.exists()


def test_a_model_fitted_on_a_csv_file_refuses_a_numpy_file_without_names(tmp_path, csv_file, table, capsys):
    saved = _fit(csv_file, tmp_path, "gpr", "--target", "y", "--features", "x1,x2")
    capsys.readouterr()
    np.save(tmp_path / "features.npy", table[0])  # its columns are named "0" and "1"
    _fails(["predict", saved, str(tmp_path / "features.npy"), "-o", str(tmp_path / "pred.csv")], capsys,
           "missing feature column(s) ['x1', 'x2']", "numpy file")


# --- nothing is left behind by a failure ----------------------------------------------------------

@pytest.mark.parametrize("output, expected", [
    ("folder", "folder: is a directory"),
    ("nowhere/m.vinf", "no folder"),
    ("data.txt/m.vinf", "no folder"),
    ("nowhere/", "-o needs a file name"),
    ("/sys/varinf-test.vinf", "cannot write"),  # read-only even for root
])
def test_fit_refuses_an_output_it_cannot_write_before_training(tmp_path, csv_file, capsys, monkeypatch,
                                                               output, expected):
    import varinf._cli as cli

    if output.startswith("/sys") and not os.path.isdir("/sys"):
        pytest.skip("needs Linux's read-only /sys")
    monkeypatch.setattr(cli, "_build_and_fit", lambda *args: pytest.fail("trained before checking the output"))
    (tmp_path / "folder").mkdir()
    (tmp_path / "data.txt").write_text("x")
    before = sorted(os.listdir(tmp_path))
    _fails(["fit", "--model", "gpr", "--target", "y", csv_file, "-o", os.path.join(tmp_path, output)], capsys, expected)
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(tmp_path / "folder") == []


def test_a_failed_predict_leaves_the_folder_as_it_was(tmp_path, csv_file, table, capsys, monkeypatch):
    from varinf._cli import TableModel

    X = table[0]
    saved = _fit(csv_file, tmp_path, "gpr", "--target", "y", "--features", "x1,x2")
    capsys.readouterr()
    rows = [tuple(r) for r in X]
    rows[30] = (rows[30][0], "nan")
    _write_csv(tmp_path / "late_nan.csv", ["x1", "x2"], rows)  # fails in the 5th block of 7 rows
    out = tmp_path / "pred.csv"
    out.write_text("earlier predictions\n")
    before = sorted(os.listdir(tmp_path))
    predict = ["predict", saved, str(tmp_path / "late_nan.csv"), "-o", str(out), "--block-rows", "7"]
    _fails(predict, capsys, "data row 31", "column 'x2'")
    assert sorted(os.listdir(tmp_path)) == before and out.read_text() == "earlier predictions\n"
    # An interruption in the middle of the file: the same.
    _write_csv(tmp_path / "good.csv", ["x1", "x2"], X)
    before = sorted(os.listdir(tmp_path))
    calls = []
    original = TableModel.predict

    def interrupted(self, Xb):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, Xb)

    monkeypatch.setattr(TableModel, "predict", interrupted)
    assert main(["predict", saved, str(tmp_path / "good.csv"), "-o", str(out), "--block-rows", "7"]) == 130
    assert sorted(os.listdir(tmp_path)) == before and out.read_text() == "earlier predictions\n"
    assert capsys.readouterr().err == "python -m varinf predict: interrupted\n"
    # An output that is a folder is refused before reading anything.
    (tmp_path / "folder").mkdir()
    _fails(["predict", saved, str(tmp_path / "good.csv"), "-o", str(tmp_path / "folder")], capsys,
           "folder: is a directory")
    assert os.listdir(tmp_path / "folder") == [] and len(calls) == 3


def test_predict_keeps_the_permissions_a_new_file_gets(tmp_path, csv_file):
    saved = _fit(csv_file, tmp_path, "gpr", "--target", "y")
    assert main(["predict", saved, csv_file, "-o", str(tmp_path / "pred.csv")]) == 0
    (tmp_path / "plain.csv").write_text("")
    assert os.stat(tmp_path / "pred.csv").st_mode == os.stat(tmp_path / "plain.csv").st_mode


# --- damaged files: one line and exit status 2 ----------------------------------------------------

# Files that cannot be read, and a text their error must contain.
_DAMAGED = {"long_field.csv": "line 42: field larger than field limit (131072)",
            "long_name.csv": "line 1: field larger than field limit",
            "truncated.csv.gz": "Compressed file ended before the end-of-stream marker",
            "corrupt.csv.gz": "not a readable CSV file (Error -3 while decompressing data",
            "plain.csv.gz": "Not a gzipped file",
            "latin1.csv": "'utf-8' codec can't decode byte 0xe9",
            "truncated.npz": "truncated.npz: not a readable .npz file",
            "truncated.npy": "truncated.npy: not a readable .npy file",
            "huge.npz": "huge.npz: not a readable .npz file",
            "/proc/self/mem": "not a readable CSV file ([Errno 5] Input/output error)"}  # OSError on reading


def _write_damaged_files(folder, csv_text):
    import gzip
    import io
    import zipfile

    long_field = "1" * 140000
    (folder / "long_field.csv").write_text(csv_text + f"{long_field},1,2,3\n")
    (folder / "long_name.csv").write_text(f"{long_field},y\n1,2\n")
    packed = gzip.compress(csv_text.encode() * 40)
    (folder / "truncated.csv.gz").write_bytes(packed[:len(packed) // 2])
    corrupt = bytearray(packed)
    corrupt[len(corrupt) // 2:len(corrupt) // 2 + 64] = bytes(64)
    (folder / "corrupt.csv.gz").write_bytes(bytes(corrupt))
    (folder / "plain.csv.gz").write_text(csv_text)
    (folder / "latin1.csv").write_bytes(csv_text.encode() + "\xe9,1,2,3\n".encode("latin-1"))
    np.savez(folder / "data.npz", X=np.ones((500, 2)), y=np.ones(500))
    zipped = (folder / "data.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(zipped[:len(zipped) // 2])
    np.save(folder / "data.npy", np.ones((500, 4)))
    (folder / "truncated.npy").write_bytes((folder / "data.npy").read_bytes()[:2000])
    header = io.BytesIO()  # a .npz member declaring 8 TB of data
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(folder / "huge.npz", "w") as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(800))
        archive.writestr("y.npy", header.getvalue())


@pytest.mark.parametrize("name", sorted(_DAMAGED))
def test_a_damaged_file_gives_one_line_and_status_2(tmp_path, csv_file, capsys, name):
    if name.startswith("/proc") and not os.path.exists(name):
        pytest.skip("needs Linux's /proc")
    with open(csv_file) as f:
        _write_damaged_files(tmp_path, f.read())
    data, expected = str(tmp_path / name), _DAMAGED[name]
    is_csv = not name.endswith((".npy", ".npz"))
    _fails(["fit", "--model", "gpr", "--target", "y" if is_csv else "0", "--no-progress", data, "-o",
            str(tmp_path / "m.vinf")], capsys, name, expected)
    if is_csv:
        saved = _fit(csv_file, tmp_path, "gpr", "--target", "y")
        capsys.readouterr()
        _fails(["predict", saved, data, "-o", str(tmp_path / "p.csv")], capsys, name, expected)
    assert not (tmp_path / "m.vinf").exists() and not (tmp_path / "p.csv").exists()


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path, csv_file, capsys):
    import gzip

    with open(csv_file) as f:
        text = "\ufeff" + f.read()
    (tmp_path / "bom.csv").write_text(text, encoding="utf-8")
    (tmp_path / "bom.csv.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    for name in ("bom.csv", "bom.csv.gz"):
        saved = _fit(str(tmp_path / name), tmp_path, "gpr", "--target", "y", "--features", "x1,x2")
        assert vi.load(saved).features == ["x1", "x2"]
        assert main(["predict", saved, str(tmp_path / name), "-o", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()


# --- warnings --------------------------------------------------------------------------------------

def test_a_warning_of_the_fit_is_one_line_on_stderr(tmp_path, csv_file, capsys, monkeypatch):
    import warnings

    original = vi.SGPR.fit

    def diverging(self, *args, **kwargs):
        original(self, *args, **kwargs)
        warnings.warn("training diverged at step 3;\n  lower the learning rate", RuntimeWarning)
        return self

    monkeypatch.setattr(vi.SGPR, "fit", diverging)
    for _ in range(2):  # shown every time, not once per process
        _fit(csv_file, tmp_path, "sgpr", "--target", "y", "--inducing", "5")
        lines = capsys.readouterr().err.splitlines()
        assert "python -m varinf: warning: training diverged at step 3; lower the learning rate" in lines
        assert all(line.startswith("python -m varinf: warning: ") for line in lines), lines


def test_a_diverging_fit_warns_in_one_line(tmp_path, csv_file, capsys):
    _fit(csv_file, tmp_path, "svgp", "--target", "y", "--inducing", "5", "--learning-rate", "1000")
    lines = capsys.readouterr().err.splitlines()
    assert any("diverge" in line for line in lines), lines
    assert all(line.startswith("python -m varinf: warning: ") for line in lines), lines
