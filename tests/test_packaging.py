"""What ``pip install .`` installs (pyproject.toml, ``[tool.setuptools]``): the project's own
top-level names only, every runtime and app module, the shipped models as package data of
``codt_deploy``, and commands that work from the installed copy, outside any checkout.

The wheel is built by the project's build backend (setuptools, in-process: no network, no build
isolation) from a copy of the repository, so the checkout gets no ``build/`` or ``*.egg-info``.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

from tests.conftest import REPO_ROOT, example_paths

# What the wheel may put into site-packages, and where each part comes from in the checkout.
TOP_LEVEL = {"codt_deploy", "codt_app"}
BUILT_FROM = {"codt_deploy": "codt_deploy", "codt_app": "app", "codt_deploy/exported": "exported"}
NOT_COPIED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
              ".hypothesis", "data", "runs", "artifacts")


def _require_the_build_backend() -> None:
    """Skip unless this environment has the setuptools that pyproject's build-system asks for (the
    dev extra installs it)."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (wanted,) = [Requirement(r) for r in pyproject["build-system"]["requires"]
                 if Requirement(r).name == "setuptools"]
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the build backend ({wanted}) is not installed")
    if version not in wanted.specifier:
        pytest.skip(f"setuptools {version} is installed; the build backend needs {wanted}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    _require_the_build_backend()
    source = tmp_path_factory.mktemp("source") / "codt"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    out = tmp_path_factory.mktemp("dist")
    build = ("import sys\nfrom setuptools import build_meta\n"
             "print(build_meta.build_wheel(sys.argv[1]))")
    result = subprocess.run([sys.executable, "-c", build, str(out)], cwd=source,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked as a site-packages folder would hold it."""
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def _dist_info(names: list[str]) -> str:
    (folder,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    return folder


def test_only_the_projects_own_names_reach_site_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = _dist_info(names)
    assert {n.split("/")[0] for n in names} == TOP_LEVEL | {dist_info}
    top_level = zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split()
    assert set(top_level) == TOP_LEVEL
    for generic in ("training", "app", "exported", "tests", "benchmarks", "examples"):
        assert not any(n.split("/")[0] == generic for n in names), generic


def test_every_module_and_every_shipped_model_file_is_in_the_wheel(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    for installed_as, folder in BUILT_FROM.items():
        files = [p for p in (REPO_ROOT / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts
                 and (p.suffix == ".py" or folder == "exported")]
        assert files, folder
        for path in files:
            name = f"{installed_as}/{path.relative_to(REPO_ROOT / folder).as_posix()}"
            if installed_as == "codt_deploy" and name.startswith("codt_deploy/exported/"):
                continue
            assert name in names, f"{path} is not in the wheel as {name}"
            if folder == "exported":
                assert archive.read(name) == path.read_bytes(), name


def test_the_commands_point_at_installed_modules(wheel):
    archive = zipfile.ZipFile(wheel)
    entry_points = configparser.ConfigParser()
    entry_points.read_string(archive.read(f"{_dist_info(archive.namelist())}/entry_points.txt")
                             .decode())
    scripts = dict(entry_points["console_scripts"])
    assert scripts == {"codt-cluster": "codt_deploy.cli:main", "codt-app": "codt_app.__main__:main"}
    for target in scripts.values():
        module = target.split(":")[0].replace(".", "/")
        assert f"{module}.py" in archive.namelist(), target


# Run in a folder outside the checkout, with the unpacked wheel first on the path.
_CHECK_INSTALLED = """
import importlib, importlib.util, sys
from pathlib import Path
site = Path(sys.argv[1]).resolve()
import codt_deploy, codt_deploy.models
assert Path(codt_deploy.__file__).resolve().is_relative_to(site), codt_deploy.__file__
model = codt_deploy.models.resolve_model("default")
assert model.onnx_path.resolve().is_relative_to(site / "codt_deploy" / "exported"), model.onnx_path
names = ["codt_app.logic", "codt_app.uploads", "codt_app.model_store"]
if importlib.util.find_spec("gradio") and importlib.util.find_spec("plotly"):
    names += ["codt_app.__main__", "codt_app.ui"]  # the app extra is installed
for name in names:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(site / "codt_app"), module.__file__
print(model.name)
"""


def test_the_installed_copy_finds_its_models_and_clusters_files(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("CODT_MODEL_DIR", None)
    checked = subprocess.run([sys.executable, "-c", _CHECK_INSTALLED, str(installed)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-4000:]
    assert checked.stdout.split() == ["ucla2msr"]
    out = tmp_path / "clusters.csv"
    files = [str(p) for p in example_paths()[:3]]
    run = subprocess.run([sys.executable, "-m", "codt_deploy", *files, "-o", str(out), "--quiet"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert len(out.read_text().splitlines()) == 1 + len(files)
