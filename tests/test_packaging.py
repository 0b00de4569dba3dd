"""`pip install <checkout>[client]` into a new virtual environment outside the checkout, then the
README's three-line script, run from another folder against a live server.

Offline and quick: the new environment sees this environment's packages through a .pth file (so
pip finds tritonclient, numpy and setuptools already there and downloads nothing), and the
checkout is copied first, so the build leaves nothing behind in it. What the client drags in is
checked by what it imports, not by what happens to be installed: importing it must load none of
the heavy stages' packages. (Checked by hand from the package index, in a venv with nothing else,
on 2026-12-02: `pip install '<checkout>[client]'` brought tritonclient, numpy and their
dependencies only, and the script printed `translate`.)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT
from test_docs import Target, parse

pytestmark = pytest.mark.slow
HEAVY = ("torch", "onnxruntime", "onnx", "transformers", "tokenizers", "rich", "sklearn", "pytriton")
COPY_IGNORES = shutil.ignore_patterns(".venv", ".git", "triton_models", "build", "*.egg-info", "__pycache__",
                                      ".pytest_cache", "results", "*.png")


def readme_script() -> str:
    """The README's example for an application that installed the client with pip."""
    [block] = [b for b in parse("README.md")
               if b.language == "python" and "from triton_encoders.client import EncoderClient" in b.text]
    assert len(block.text.splitlines()) == 3, block.text
    return block.text


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A new venv with `triton-encoders[client]` installed from a copy of the checkout; its python."""
    work = tmp_path_factory.mktemp("packaging")
    checkout = work / "checkout"
    shutil.copytree(ROOT, checkout, ignore=COPY_IGNORES)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "project-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                          "--no-build-isolation", "--quiet", f"{checkout}[client]"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return python


def run_in(folder: Path, python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=folder, capture_output=True, text=True, timeout=120)


def test_the_readme_script_classifies_with_the_pip_installed_client(installed, intent_server, tmp_path):
    script = Target(intent_server.grpc_url, intent_server.http_url, tmp_path).into(readme_script())
    (tmp_path / "classify.py").write_text(script)
    result = run_in(tmp_path, installed, "classify.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "translate"


def test_the_client_comes_under_the_project_namespace_without_the_heavy_stages(installed, tmp_path):
    probe = ("import sys, triton_encoders.client as c; "
             "print(c.__file__); print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = run_in(tmp_path, installed, "-c", probe)
    assert result.returncode == 0, result.stderr
    location, modules = result.stdout.splitlines()
    assert not Path(location).is_relative_to(ROOT), "imported from the checkout, not from the installed package"
    assert not set(modules.split()) & set(HEAVY), f"importing the client loaded {set(modules.split()) & set(HEAVY)}"
    bare = run_in(tmp_path, installed, "-c", "import client")
    assert bare.returncode != 0 and "No module named 'client'" in bare.stderr   # no clash with other installs


def test_the_distribution_asks_only_for_the_clients_dependencies(installed, tmp_path):
    probe = "from importlib.metadata import requires; print('\\n'.join(requires('triton-encoders')))"
    result = run_in(tmp_path, installed, "-c", probe)
    unconditional = {line.split(";")[0].split("[")[0].split(">")[0].strip() for line in result.stdout.splitlines()
                     if "extra ==" not in line}
    assert unconditional == {"tritonclient", "numpy"}, result.stdout


def test_the_console_script_runs_a_stage(installed, intent_server, tmp_path):
    command = installed.parent / "triton-encoders"
    result = subprocess.run([str(command), "client", "--url", f"grpc://{intent_server.grpc_url}",
                             "how do you say thank you in japanese"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "translate" in result.stdout
    usage = subprocess.run([str(command), "nothing"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "name a stage: convert, serve, client, perf" in usage.stderr


@pytest.mark.parametrize("stage", ["client", "convert", "serve", "perf", "modelrepo"])
def test_every_package_of_a_stage_is_in_the_wheel(stage):
    """A sub-package left out of pyproject.toml works in a checkout and is missing once installed."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = sorted(str(init.parent.relative_to(ROOT)) for init in (ROOT / stage).rglob("__init__.py")
                     if "__pycache__" not in init.parts)
    for folder in folders:
        name = "triton_encoders." + folder.replace("/", ".")
        assert name in setuptools["packages"], f"{folder}/ is not listed in pyproject.toml's packages"
        assert setuptools["package-dir"].get(name, folder) == folder, name
