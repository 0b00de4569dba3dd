"""The linters run with the tests: ruff (pycodestyle, pyflakes, import order, a complexity
limit of 10) and vulture (dead code), both configured in pyproject.toml."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ruff_finds_nothing():
    result = run_tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, f"ruff check . found:\n{result.stdout}{result.stderr}"


def test_vulture_finds_no_dead_code():
    result = run_tool("vulture")
    assert result.returncode == 0, f"vulture found dead code (remove it):\n{result.stdout}{result.stderr}"


def test_both_do_fail_on_what_they_are_there_to_find(tmp_path):
    """A function no one calls, an unused import, imports out of order, a function of 12 branches."""
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(12))
    (tmp_path / "bad.py").write_text(f"import sys\nimport json\n\n\ndef never_called(x):\n{branches}    return -1\n")
    ruff = run_tool("ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), "bad.py", cwd=tmp_path)
    assert all(code in ruff.stdout for code in ("F401", "I001", "C901")), ruff.stdout
    vulture = run_tool("vulture", "bad.py", cwd=tmp_path)
    assert vulture.returncode != 0 and "unused function 'never_called'" in vulture.stdout, vulture.stdout
