"""How the Python package is put together: no import cycles, a light ``import varinf``, a file
format module that knows no model, every saveable class registered from its own module, and
inputs validated once."""

import ast
import importlib.machinery
import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import varinf as vi
from varinf import kernels as K
from varinf import likelihoods as L
from varinf import serialization

PACKAGE = pathlib.Path(vi.__file__).parent


def _modules() -> dict:
    """module name -> path of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_extension(name: str) -> bool:
    """Whether ``name`` is a compiled module (varinf._cpu, the cores), which imports nothing back."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, AttributeError, ValueError):
        return False
    return spec is not None and str(spec.origin).endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def _imports(name: str, path: pathlib.Path, modules: dict) -> set:
    """The package's modules that ``name`` imports, at module level or inside functions."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                parts = parts[:len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
                       if not _is_extension(f"{base}.{a.name}")]
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found


def _cycle(graph: dict):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_serialization_imports_no_model():
    modules = _modules()
    assert _imports("varinf.serialization", modules["varinf.serialization"], modules) == {
        "varinf._atomic", "varinf._errors", "varinf._npz", "varinf._version"}


def test_import_loads_no_heavy_dependency():
    code = ("import sys, varinf; heavy = ('scipy', 'tqdm', 'threadpoolctl', 'sklearn', 'matplotlib'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_class_registers_itself_from_its_own_module():
    classes = ([getattr(K, n) for n in K.__all__ if n != "Kernel"]
               + [getattr(L, n) for n in L.__all__ if n != "Likelihood"] + [vi.GPR, vi.SGPR, vi.FITC, vi.SVGP, vi.VAE])
    for cls in classes:
        assert serialization._REGISTRY[cls.__name__] is cls
        # the protocol is the class's own (or its base's), not a function of the file format module
        assert cls._save_state.__module__ != "varinf.serialization"
        assert cls._from_state.__func__.__module__ != "varinf.serialization"


def _counting(monkeypatch, module, name="as_matrix"):
    """Count the calls of ``module.<name>`` by the argument name they validate."""
    calls = []
    original = getattr(module, name)

    def counted(value, arg, *args, **kwargs):
        calls.append(arg)
        return original(value, arg, *args, **kwargs)
    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("Z", [4, np.linspace(-1, 1, 8)[:4, None] * np.ones((1, 2))], ids=["m", "Z"])
def test_svgp_validates_each_input_once(monkeypatch, Z):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 2)), rng.standard_normal(20)
    model = vi.SVGP(K.SquaredExponential(), L.Gaussian(), Z, num_data=20)
    svgp_calls = _counting(monkeypatch, vi.models.svgp)
    inducing_calls = _counting(monkeypatch, sys.modules["varinf.inducing"])
    model.fit(X, y, iterations=2, progress=False)
    assert svgp_calls.count("X") == 1 and inducing_calls == []
    svgp_calls.clear()
    model.predict_log_density(X[:5], y[:5])
    assert svgp_calls == ["Xnew"]


@pytest.mark.parametrize("make", [lambda X, y: vi.GPR(X, y, K.Matern32()),
                                  lambda X, y: vi.SGPR(X, y, K.Matern32(), X[:3])], ids=["GPR", "SGPR"])
def test_regression_predictions_validate_inputs_once(monkeypatch, make):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    model = make(X, y)
    calls = _counting(monkeypatch, vi.models._regression)
    model.predict_log_density(X[:4], y[:4])
    model.predict_y(X[:4])
    assert calls == ["Xnew", "Xnew"]


CORE_SUBMODULES = ["gp", "kernels", "linalg", "sparse", "testing", "threads", "vae"]


def _stub_all(path: pathlib.Path) -> list:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "__all__":
            return sorted(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no __all__")


def _public(module) -> list:
    return sorted(n for n in dir(module) if not n.startswith("_"))


@pytest.mark.parametrize("name", ["__init__"] + CORE_SUBMODULES)
def test_core_stubs_name_what_the_compiled_core_defines(name):
    """The shipped .pyi stubs (python/varinf/_core_baseline/) match the core, submodule by
    submodule; tools/gen_stubs.py regenerates them."""
    from varinf._loader import core

    module = core if name == "__init__" else getattr(core, name)
    assert _public(core) == CORE_SUBMODULES
    assert _stub_all(PACKAGE / "_core_baseline" / f"{name}.pyi") == _public(module), "run tools/gen_stubs.py"
