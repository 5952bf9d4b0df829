"""The package's layers and the one import rule of each (CONTRIBUTING.md, "Layers").

Every import of every module of ``src/mmbalance`` (at the top or inside a function; not those under
``if TYPE_CHECKING:``, which never run) is an arrow from the importing module's layer to the imported
one's; an arrow to a layer its own may not import — one that runs back up — fails the test, naming the
file, the line and the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mmbalance"

# Layer of a module: the longest matching prefix wins.
LAYER_OF = {
    "mmbalance": "base",
    "mmbalance.errors": "base",
    "mmbalance.io": "base",
    "mmbalance.registry": "base",
    "mmbalance.runlock": "base",
    "mmbalance.runs": "base",
    "mmbalance.runs.files": "base",
    "mmbalance.runs.matrix": "params",
    "mmbalance.config": "params",
    "mmbalance.paths": "params",
    "mmbalance.sweeps": "params",
    # the table of the train block's engine keys, their defaults and which enter a run id: read by
    # config (it imports nothing of the engine and no torch), typed for the engine by EngineSettings
    "mmbalance.engine.settings": "params",
    "mmbalance.data": "data",
    "mmbalance.models": "models",
    "mmbalance.engine": "engine",
    "mmbalance.methods": "methods",
    "mmbalance.report": "report",
    "mmbalance.analysis": "analysis",
    "mmbalance.pipeline": "pipeline",
    "mmbalance.cli": "cli",
    "mmbalance.__main__": "cli",
}
BELOW = {
    "base": set(),
    "params": {"base"},
    "data": {"base", "params"},
    "models": {"base", "params", "data"},
    "engine": {"base", "params", "data", "models"},
    "methods": {"base", "params", "data", "models", "engine"},
    "report": {"base"},
    "analysis": {"base", "params", "data", "models", "engine", "methods", "report"},
    "pipeline": {"base", "params", "data", "models", "engine", "methods", "report", "analysis"},
    "cli": {"base", "params", "data", "models", "engine", "methods", "report", "analysis", "pipeline"},
}
"""What each layer may import besides itself. In words: the report reads run files and nothing of the
training (no config, data, model, engine or method, and no torch); data knows no model or engine;
models know no engine or method; the engine knows no method (methods plug into it through the
registry) and nothing imports the CLI."""
NO_TORCH = {"base", "params", "report"}


def layer(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in LAYER_OF:
            return LAYER_OF[name]
    raise AssertionError(f"{module}: in no layer; add it to LAYER_OF")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in one file that runs (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append((node.lineno, full if _is_module(full) else node.module))
    return found


def arrows() -> list[tuple[str, int, str, str, str]]:
    """(file, line, importer's layer, imported module, imported layer) of every import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = layer(module_name(path))
        for line, target in imports(path):
            root = target.split(".")[0]
            if root == "mmbalance":
                found.append((str(path.relative_to(SRC)), line, mine, target, layer(target)))
            elif root == "torch":
                found.append((str(path.relative_to(SRC)), line, mine, target, "torch"))
    return found


def test_every_import_runs_downhill() -> None:
    wrong = [
        f"{file}:{line}: {mine} imports {target} ({theirs})"
        for file, line, mine, target, theirs in arrows()
        if theirs not in ({mine} | BELOW[mine] | ({"torch"} if mine not in NO_TORCH else set()))
    ]
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def test_the_rule_catches_an_arrow_up(tmp_path: Path) -> None:
    """The walk sees a lazy import inside a function and skips one under TYPE_CHECKING."""
    path = tmp_path / "probe.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mmbalance.engine.loop import Trainer\n"
        "def f():\n    import torch\n    from mmbalance import config\n"
    )
    assert [target for _, target in imports(path)] == ["typing", "torch", "mmbalance.config"]
    assert layer("mmbalance.report.tables") == "report" and "params" not in BELOW["report"]


@pytest.mark.parametrize("package", ["mmbalance.report", "mmbalance.runs.files"])
def test_the_report_loads_no_training_code(package: str) -> None:
    """Importing every module of the report (or the run-file reader) loads no torch, method, engine,
    model, data module or configuration: ``mmbalance tables`` draws from files."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"package = importlib.import_module({package!r})\n"
        "for info in pkgutil.walk_packages(getattr(package, '__path__', []), package.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    forbidden = ("torch", "mmbalance.engine", "mmbalance.methods", "mmbalance.models", "mmbalance.data")
    forbidden += ("mmbalance.config", "mmbalance.registry", "mmbalance.analysis")
    assert [m for m in loaded if m.startswith(forbidden)] == []
    assert package in loaded


def test_a_training_process_loads_no_plotting_statistics_or_vision_library() -> None:
    """``mmbalance train`` validates params (which imports every analysis, and through them the report)
    and builds the engine; scipy, matplotlib and torchvision are imported only where used, so none of
    them costs each of the workflow's training jobs its import time (benchmarks/README.md)."""
    code = (
        "import sys\n"
        "from mmbalance import config\n"
        "config.load_params('params.yaml')\n"
        "import mmbalance.engine.loop\n"
        "from mmbalance.registry import METHODS\n"
        "METHODS.names()\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SRC.parent
    ).stdout.split()
    assert "mmbalance.engine.loop" in loaded and "mmbalance.analysis.landscape" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("scipy", "matplotlib", "torchvision")] == []
