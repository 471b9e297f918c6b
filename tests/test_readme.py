"""The README's Python snippets run, in order, in one namespace (as a reader would paste them)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_the_tour():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 6  # GPR, sparse, VAE, estimators, save/load, plots


def test_readme_snippets_run(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the snippets write model and image files
    namespace = {}
    for block in python_blocks(README.read_text()):
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "model.vinf").exists() and (tmp_path / "gp.png").exists()
    assert namespace["codes"].shape == (1797, 2)
