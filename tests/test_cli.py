"""The command line (python -m varinf): demo, fit and predict, run in-process through main()."""

import os

import numpy as np
import pytest

import varinf as vi
from varinf.__main__ import main


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
    from varinf import _demo

    monkeypatch.setattr(_demo, "_matplotlib_available", lambda: False)
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
