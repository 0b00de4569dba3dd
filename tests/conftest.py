"""Shared fixtures: one real build of the default model per test session.

Building minilm-intent (export, fusions, INT8, validation) takes a minute or two on
2 cores, so it happens once; set TRITON_ENCODERS_TEST_REPO to a repository built by
`python -m convert --out DIR` to reuse it while developing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_convert(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m convert ...` as a user runs it, from the repository root."""
    result = subprocess.run([sys.executable, "-m", "convert", *args], cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"convert {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def intent_repository(tmp_path_factory) -> Path:
    """A model repository holding the CPU build of minilm-intent."""
    reused = os.environ.get("TRITON_ENCODERS_TEST_REPO")
    if reused:
        return Path(reused)
    out = tmp_path_factory.mktemp("repo") / "triton_models"
    run_convert("minilm-intent", "--out", str(out))
    return out
