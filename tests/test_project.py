"""Project-level guarantees: documented settings and hooks, CI runs the README's command,
and the core imports nothing from the layers above it."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

from c360 import hookspecs
from c360.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_has_a_docstring():
    undocumented = [f.name for f in dataclasses.fields(Settings) if not f.metadata.get("doc")]
    assert undocumented == []


def test_every_hook_has_a_docstring():
    hooks = [obj for name, obj in vars(hookspecs).items() if name.startswith("c360_")]
    assert hooks, "no hooks found"
    assert [h.__name__ for h in hooks if not inspect.getdoc(h)] == []


def test_ci_runs_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    test_command = blocks[1].strip()
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_readme_starts_with_the_trial():
    readme = (ROOT / "README.md").read_text()
    first = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)[0]
    assert "c360 trial" in first and "pip install" in first


def test_the_core_imports_nothing_above_it():
    forbidden = ("c360.appliance", "c360.ui", "c360.connectors")
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(forbidden)]
    assert offenders == []


def test_no_stage_imports_another_stage():
    stages = {"f2_persist", "f3_resolve", "lake_sink"}
    offenders = []
    for name in stages:
        source = (ROOT / "core" / "stages" / f"{name}.py").read_text()
        offenders += [f"{name} -> {other}" for other in stages - {name} if other in source]
    assert offenders == []


def test_the_code_is_formatted_and_passes_the_linter():
    import subprocess
    import sys

    ruff = [sys.executable, "-m", "ruff"]
    lint = subprocess.run([*ruff, "check", "--quiet", str(ROOT)], capture_output=True, text=True)
    form = subprocess.run(
        [*ruff, "format", "--check", "--quiet", str(ROOT)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    assert form.returncode == 0, f"run `ruff format .`:\n{form.stdout}"
