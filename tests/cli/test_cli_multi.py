"""The command line with several latent GPs: svgp-classifier with K > 2 classes (--likelihood) and
svgp with several targets (--target a,b); their TableModel files saved, loaded and checked."""

import numpy as np
import pytest
import varinf as vi
from _cli import fails as _fails
from _files import _edit_meta, _rewrite
from varinf.__main__ import main
from varinf._cli import TableModel

# Labels of three classes, sorted: the column names show them as the shortest text of the number.
_LABELS = (-1.0, 0.5, 2.0)


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(repr(float(v)) for v in row) + "\n" for row in rows)


def _read_predictions(path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


@pytest.fixture(scope="module")
def table():
    """X [48, 2], three classes by x1, and two targets of very different scales."""
    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, size=(48, 2))
    label = np.array(_LABELS)[np.digitize(X[:, 0] + 0.2 * rng.standard_normal(48), [-0.7, 0.7])]
    a = 10.0 + 3.0 * np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(48)
    b = -500.0 + 200.0 * X[:, 1] + 5.0 * rng.standard_normal(48)
    return X, label, a, b


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory, table):
    X, label, a, b = table
    path = tmp_path_factory.mktemp("multi") / "train.csv"
    _write_csv(path, ["a", "x1", "label", "x2", "b"], np.column_stack([a, X[:, 0], label, X[:, 1], b]))
    return str(path)


def _fit(data, out, model, *extra):
    argv = ["fit", "--model", model, str(data), "-o", str(out), "--iterations", "30", "--inducing", "8",
            "--batch-size", "24", "--no-progress", *extra]
    assert main(argv) == 0
    return str(out)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, csv_file):
    return _fit(csv_file, tmp_path_factory.mktemp("clf") / "c.vinf", "svgp-classifier", "--target", "label",
                "--features", "x1,x2")


@pytest.fixture(scope="module")
def regressor(tmp_path_factory, csv_file):
    return _fit(csv_file, tmp_path_factory.mktemp("reg") / "r.vinf", "svgp", "--target", "a,b", "--features", "x1,x2")


def _standardised(X):
    return (X - X.mean(0)) / X.std(0)


# --- K > 2 classes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("likelihood", [None, "softmax"])
def test_three_classes_predict_probabilities_per_class(tmp_path, csv_file, table, capsys, likelihood):
    X = table[0]
    extra = [] if likelihood is None else ["--likelihood", likelihood]
    saved = _fit(csv_file, tmp_path / "c.vinf", "svgp-classifier", "--target", "label", "--features", "x1,x2",
                 *extra)
    assert f"3 classes, {likelihood or 'robustmax'} likelihood" in capsys.readouterr().out
    fitted = vi.load(saved)
    assert fitted.classes.tolist() == list(_LABELS) and fitted.model.num_latent_gps == 3
    assert isinstance(fitted.model.likelihood, vi.likelihoods.Softmax if likelihood else vi.likelihoods.RobustMax)
    assert isinstance(fitted.model.kernel, vi.kernels.SquaredExponential)  # shared by the classes
    assert main(["predict", saved, csv_file, "-o", str(tmp_path / "pred.csv")]) == 0
    header, pred = _read_predictions(tmp_path / "pred.csv")
    assert header == ["p_-1", "p_0.5", "p_2", "class"] and pred.shape == (48, 4)
    # The likelihood's probabilities, divided by their sum (10 significant digits in the file).
    p, _ = fitted.model.predict_y(_standardised(X))  # [48, 3]
    expected = p / p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pred[:, :3], expected, rtol=1e-9)
    np.testing.assert_allclose(pred[:, :3].sum(axis=1), 1.0, rtol=0, atol=1e-9)
    top = np.sort(expected, axis=1)
    decided = top[:, -1] - top[:, -2] > 1e-8
    np.testing.assert_array_equal(pred[decided, 3], np.array(_LABELS)[np.argmax(expected, axis=1)][decided])
    assert set(pred[:, 3]) <= set(_LABELS)


def test_two_classes_keep_the_bernoulli_model_and_columns(tmp_path, csv_file, table, capsys):
    X, label, _, _ = table
    binary = tmp_path / "binary.csv"
    _write_csv(binary, ["x1", "x2", "label"], np.column_stack([X, np.where(label > 0, 1.0, 0.0)]))
    saved = _fit(binary, tmp_path / "c.vinf", "svgp-classifier", "--target", "label", "--likelihood", "softmax")
    err = capsys.readouterr().err
    assert "--likelihood softmax is for more than 2 classes" in err and len(err.splitlines()) == 1
    fitted = vi.load(saved)
    assert isinstance(fitted.model.likelihood, vi.likelihoods.Bernoulli) and fitted.classes.tolist() == [0.0, 1.0]
    assert main(["predict", saved, str(binary), "-o", str(tmp_path / "pred.csv")]) == 0
    header, pred = _read_predictions(tmp_path / "pred.csv")
    assert header == ["probability", "class"] and pred.shape == (48, 2)


def test_a_classifier_target_must_hold_class_labels(tmp_path, csv_file, capsys):
    clf = ["fit", "--model", "svgp-classifier", "--no-progress", "-o", str(tmp_path / "c.vinf"), "--features",
           "x1,x2"]
    _fails(clf + ["--target", "a", csv_file], capsys, "at most 24 distinct values for 48 rows", "got 48",
           "--model svgp")
    one = tmp_path / "one.csv"
    _write_csv(one, ["x1", "x2", "label"], [(0.0, 1.0, 3.0), (1.0, 0.0, 3.0)])
    _fails(clf + ["--target", "label", str(one)], capsys, "at least 2 distinct values, got 1 (3)")
    assert not (tmp_path / "c.vinf").exists()


# --- several targets ------------------------------------------------------------------------------------

def test_two_targets_predict_a_mean_and_std_each(tmp_path, regressor, table, capsys):
    X, _, a, b = table
    fitted = vi.load(regressor)
    assert fitted.targets == ["a", "b"] and fitted.features == ["x1", "x2"]
    Y = np.column_stack([a, b])
    np.testing.assert_allclose(fitted.y_mean, Y.mean(0), rtol=1e-12)
    np.testing.assert_allclose(fitted.y_scale, Y.std(0), rtol=1e-12)
    model = fitted.model
    assert isinstance(model.kernel, vi.kernels.SeparateIndependent) and len(model.kernel.kernels) == 2
    assert model.kernel.kernels[0] is not model.kernel.kernels[1]  # a copy of the kernel per target
    assert model.likelihood.variance.shape == (2,)  # a noise variance per target
    test_csv = tmp_path / "test.csv"
    Xtest = np.array([[0.5, -1.0], [1.5, 0.25], [-1.0, 1.0], [0.0, 0.0]])  # [4, 2]
    _write_csv(test_csv, ["x2", "x1"], Xtest[:, ::-1])  # columns in another order, no targets
    assert main(["predict", regressor, str(test_csv), "-o", str(tmp_path / "pred.csv")]) == 0
    assert "(mean_a, std_a, mean_b, std_b)" in capsys.readouterr().err
    header, pred = _read_predictions(tmp_path / "pred.csv")
    assert header == ["mean_a", "std_a", "mean_b", "std_b"] and pred.shape == (4, 4)
    mean, var = model.predict_y((Xtest - X.mean(0)) / X.std(0))  # [4, 2]
    expected = np.column_stack([Y.mean(0)[0] + Y.std(0)[0] * mean[:, 0], Y.std(0)[0] * np.sqrt(var[:, 0]),
                                Y.mean(0)[1] + Y.std(0)[1] * mean[:, 1], Y.std(0)[1] * np.sqrt(var[:, 1])])
    np.testing.assert_allclose(fitted.predict(Xtest), expected, rtol=1e-10)
    np.testing.assert_allclose(pred, expected, rtol=1e-9)  # the file keeps 10 significant digits


def test_sgpr_fits_two_targets_with_one_kernel_and_noise(tmp_path, csv_file, table, capsys):
    X, _, a, b = table
    saved = _fit(csv_file, tmp_path / "s.vinf", "sgpr", "--target", "a,b", "--features", "x1,x2")
    assert "2 targets" in capsys.readouterr().out
    fitted = vi.load(saved)
    assert fitted.targets == ["a", "b"] and isinstance(fitted.model, vi.SGPR) and fitted.model.num_outputs == 2
    assert isinstance(fitted.model.kernel, vi.kernels.SquaredExponential)  # one kernel, one noise variance
    assert main(["predict", saved, csv_file, "-o", str(tmp_path / "pred.csv")]) == 0
    header, pred = _read_predictions(tmp_path / "pred.csv")
    assert header == ["mean_a", "std_a", "mean_b", "std_b"] and pred.shape == (48, 4)
    Y = np.column_stack([a, b])
    mean, var = fitted.model.predict_y((X - X.mean(0)) / X.std(0))  # [48, 2], [48, 2]
    np.testing.assert_allclose(pred[:, 0::2], Y.mean(0) + Y.std(0) * mean, rtol=1e-9)
    np.testing.assert_allclose(pred[:, 1::2], Y.std(0) * np.sqrt(var), rtol=1e-9)


def test_several_targets_of_numpy_files(tmp_path, table, capsys):
    X, _, a, b = table
    np.save(tmp_path / "train.npy", np.column_stack([a, X[:, 0], b, X[:, 1]]))
    saved = _fit(tmp_path / "train.npy", tmp_path / "m.vinf", "svgp", "--target", "0,-2")
    fitted = vi.load(saved)
    assert fitted.targets == ["0", "2"] and fitted.features == ["1", "3"]  # named by index
    assert main(["predict", saved, str(tmp_path / "train.npy"), "-o", str(tmp_path / "p.csv")]) == 0
    assert _read_predictions(tmp_path / "p.csv")[0] == ["mean_0", "std_0", "mean_2", "std_2"]
    # .npz: the targets are 1-D arrays, named by --target.
    np.savez(tmp_path / "data.npz", X=X, a=a, b=b)
    saved = _fit(tmp_path / "data.npz", tmp_path / "z.vinf", "svgp", "--target", "b,a")
    assert vi.load(saved).targets == ["b", "a"]
    assert "2 targets" in capsys.readouterr().out
    np.testing.assert_allclose(vi.load(saved).y_mean, [b.mean(), a.mean()], rtol=1e-12)
    capsys.readouterr()
    _fails(["fit", "--model", "svgp", str(tmp_path / "data.npz"), "--target", "a,c", "-o", str(tmp_path / "x.vinf")],
           capsys, "no array 'c'")


def test_a_column_whose_name_holds_a_comma_is_one_target(tmp_path, table):
    X, _, a, _ = table
    path = tmp_path / "comma.csv"
    with open(path, "w") as f:
        f.write('x1,x2,"a,b"\n')
        f.writelines(f"{u!r},{v!r},{t!r}\n" for (u, v), t in zip(X.tolist(), a.tolist()))
    saved = _fit(path, tmp_path / "m.vinf", "sgpr", "--target", "a,b")
    assert vi.load(saved).targets is None and vi.load(saved).features == ["x1", "x2"]


@pytest.mark.parametrize("argv, expected", [
    (["--model", "gpr", "--target", "a,b"], ["--model gpr fits one target", "--target names 2 (a,b)"]),
    (["--model", "svgp-classifier", "--target", "label,a"], ["svgp-classifier takes one --target column"]),
    (["--model", "svgp", "--target", "a,zz"], ["no target column 'zz'", "a, x1, label, x2, b"]),
    (["--model", "svgp", "--target", "a,b,a"], ["--target names 'a' twice"]),
    (["--model", "svgp", "--target", ",,"], ["--target is empty"]),
    (["--model", "svgp", "--target", "a,b", "--features", "x1,b"], ["target column 'b' is also listed in --features"]),
    (["--model", "svgp", "--target", "a,b", "--features", "x1", "--dask", "local:1"], ["--dask fits one --target"]),
    (["--model", "svgp", "--target", "a", "--likelihood", "softmax"],
     ["--likelihood softmax is for --model svgp-classifier", "not --model svgp"]),
    (["--model", "gpr", "--target", "a", "--likelihood", "robustmax"], ["--likelihood robustmax is for"]),
])
def test_argument_errors_exit_2_before_training(tmp_path, csv_file, capsys, monkeypatch, argv, expected):
    import varinf._cli as cli

    monkeypatch.setattr(cli, "_build_and_fit", lambda *args: pytest.fail("trained despite a bad argument"))
    _fails(["fit", csv_file, "-o", str(tmp_path / "m.vinf"), "--no-progress", *argv], capsys, *expected)
    assert not (tmp_path / "m.vinf").exists()


# --- saving and loading ---------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["classifier", "regressor"])
def test_save_load_round_trip(tmp_path, request, table, which):
    saved = request.getfixturevalue(which)
    fitted = vi.load(saved)
    vi.save(fitted, tmp_path / "again.vinf")
    again = vi.load(tmp_path / "again.vinf")
    assert isinstance(again, TableModel) and again.kind == fitted.kind and again.targets == fitted.targets
    assert repr(again) == repr(fitted)
    np.testing.assert_array_equal(again.classes if which == "classifier" else again.y_scale,
                                  fitted.classes if which == "classifier" else fitted.y_scale)
    X = table[0]
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))  # bit for bit
    assert (tmp_path / "again.vinf").read_bytes() == open(saved, "rb").read()


def _crafted(tmp_path, source, change=None, meta=None):
    path = tmp_path / "crafted.vinf"
    path.write_bytes(open(source, "rb").read())
    if change is not None:
        _rewrite(path, change)
    if meta is not None:
        _edit_meta(path, meta)
    return path


def _load_fails(path, *expected):
    with pytest.raises(vi.FormatError) as info:
        vi.load(path)
    for text in expected:
        assert text in str(info.value), info.value


@pytest.mark.parametrize("classes, expected", [
    ([0.0, 1.0], "'classes'"),  # the shape (2,) of a Bernoulli classifier
    ([0.0, 1.0, 2.0, 3.0], "'classes'"),
    ([[0.0, 1.0, 2.0]], "'classes'"),
    ([2.0, 1.0, 0.0], "needs 3 sorted classes"),
    ([0.0, 0.0, 1.0], "needs 3 sorted classes"),
])
def test_a_classifier_file_with_wrong_classes_is_refused(tmp_path, classifier, classes, expected):
    path = _crafted(tmp_path, classifier, lambda e: e.update(classes=np.array(classes)))
    _load_fails(path, expected)


def test_crafted_classifier_files_are_refused(tmp_path, classifier):
    _load_fails(_crafted(tmp_path, classifier, lambda e: e.pop("classes")), "classes")
    _load_fails(_crafted(tmp_path, classifier, meta=lambda m: m["config"].update(kind="svgp")),
                "does not fit a svgp model")
    _load_fails(_crafted(tmp_path, classifier, meta=lambda m: m["config"].update(targets=["a", "b"])),
                "targets must be")
    _load_fails(_crafted(tmp_path, classifier, meta=lambda m: m["config"].update(y_scale=2.0)), "y_scale 1")

    def two_class_robustmax(meta):
        meta["config"]["model"]["config"]["likelihood"]["config"]["settings"]["num_classes"] = 2
    # num_latent_gps 3 no longer fits the likelihood: refused by the model or by the TableModel.
    _load_fails(_crafted(tmp_path, classifier, meta=two_class_robustmax))


def test_crafted_regressor_files_are_refused(tmp_path, regressor):
    def config(**changes):
        return lambda meta: meta["config"].update(changes)

    _load_fails(_crafted(tmp_path, regressor, meta=config(targets=["a", "b", "c"])), "does not fit a svgp model",
                "3 targets")
    _load_fails(_crafted(tmp_path, regressor, meta=config(targets=["a", "a"])), "targets must be")
    _load_fails(_crafted(tmp_path, regressor, meta=config(targets=["a"])), "targets must be")
    _load_fails(_crafted(tmp_path, regressor, meta=config(targets=["a", 3])), "targets must be")
    _load_fails(_crafted(tmp_path, regressor, meta=config(targets=[["a"], "b"])), "targets must be")
    _load_fails(_crafted(tmp_path, regressor, meta=config(targets="a,b")), "'targets' has the wrong type")
    _load_fails(_crafted(tmp_path, regressor, meta=config(kind="gpr")), "targets must be")
    _load_fails(_crafted(tmp_path, regressor, meta=config(kind="sgpr")), "expected a SGPR")
    # Without targets, a model of two outputs is not a one-target svgp.
    _load_fails(_crafted(tmp_path, regressor, meta=lambda m: m["config"].pop("targets")),
                "does not fit a svgp model over 2 features")
    _load_fails(_crafted(tmp_path, regressor, lambda e: e.update(y_mean=np.zeros(3))), "'y_mean'")
    _load_fails(_crafted(tmp_path, regressor, lambda e: e.update(y_scale=np.array([1.0, 0.0]))),
                "y_scale must be positive")
    _load_fails(_crafted(tmp_path, regressor, lambda e: e.update(y_scale=np.array([1.0, np.nan]))), "y_scale")
    _load_fails(_crafted(tmp_path, regressor, lambda e: e.pop("y_mean")), "y_mean")


@pytest.mark.parametrize("which", ["classifier", "regressor"])
def test_only_format_errors_come_out_of_crafted_table_entries(tmp_path, request, table, which):
    """Every entry of the TableModel's own config and arrays replaced by values of other types and
    shapes: vi.load raises FormatError, or gives a model whose predictions are finite."""
    import io
    import json

    saved = request.getfixturevalue(which)
    with np.load(saved, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    meta = json.loads(str(entries["__varinf__"]))
    variants = []
    for key in [k for k in meta["config"] if k != "model"]:
        for value in (None, True, -1, 0, 2, 1e308, "x", [], ["a", "b"], ["a", "b", "c"], [["a"], "b"], [1, 2], {"a": 1}):
            changed = json.loads(json.dumps(meta))
            changed["config"][key] = value
            variants.append({**entries, "__varinf__": np.array(json.dumps(changed))})
    for name in [k for k in entries if k != "__varinf__" and not k.startswith("model/")]:
        for value in (np.zeros(0), np.zeros(1), np.ones(2), np.ones(3), np.ones((2, 2)), -entries[name]):
            variants.append({**entries, name: value})
    X = table[0]
    for arrays in variants:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            loaded = vi.load(io.BytesIO(buffer.getvalue()))
        except vi.FormatError:
            continue
        out = loaded.predict(X)
        assert out.shape == (len(X), len(loaded.output_columns)) and np.all(np.isfinite(out))
