"""The kit's own promises: two README commands, CI calls them, conda and pip agree."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip_side = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_side = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for r in dep["pip"]:
                if not r.startswith("-e"):
                    conda_side.update([_split(r)])
            assert "-e ." in dep["pip"], "environment.yml must install the kit itself"
        elif not dep.startswith(("python", "pip")):
            name, spec = _split(dep)
            conda_side[CONDA_NAMES.get(name, name)] = spec
    assert conda_side == pip_side


def test_readme_leads_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:30])
    assert "make lab" in first_screen and "make test" in first_screen
    for target in ("lab", "test", "setup", "run", "smoke"):
        assert re.search(rf"^{target}:", (REPO / "Makefile").read_text(), re.M), f"Makefile lacks '{target}'"


def test_ci_runs_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", script, re.M)


def test_course_map_lists_the_notebooks_that_exist():
    readme = (REPO / "README.md").read_text()
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        assert nb.name in readme, f"README's course map does not mention {nb.name}"


def test_no_machine_paths_in_the_project():
    pattern = re.compile(r"['\"](/(tmp|root|home|Users|work)/)")
    suspects = [p for p in REPO.glob("notebooks/*.ipynb") if pattern.search(p.read_text())]
    assert suspects == []


PACKAGE = REPO / "xferlib"
ALIASES = {"quiz"}  # ``python -m xferlib.quiz``: a command alias, never imported


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(xferlib module, names, line)`` for every import of a sibling module in ``path``,
    at any depth (imports inside functions count: they close circles too)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.append((node.module.split(".")[0], [a.name for a in node.names], node.lineno))
            elif node.level == 0 and (node.module or "").startswith("xferlib."):
                found.append((node.module.split(".")[1], [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], [], node.lineno) for a in node.names if a.name.startswith("xferlib.")]
    return found


def test_no_module_imports_another_modules_private_names():
    borrowed = [f"{path.name}:{line} takes {name} from {module}"
                for path in sorted(PACKAGE.glob("*.py")) for module, names, line in _imports(path)
                for name in names if name.startswith("_")]
    assert borrowed == []


def test_the_modules_import_each_other_without_a_circle():
    import graphlib

    graph = {path.stem: {m for m, _, _ in _imports(path) if m != path.stem} for path in PACKAGE.glob("*.py")}
    graph.pop("__init__")
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"import circle: {' -> '.join(err.args[1])}") from None
    assert order.index("storage") < order.index("features") and order.index("device") < order.index("training")
    assert "backbones" not in graph["data"], "data reads the model's config through a spec, never the reverse"


def test_every_module_and_public_name_resolves_in_a_fresh_interpreter():
    """``xl.plots`` and friends must work on first use, not only after another import."""
    import subprocess
    import sys

    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__" and p.stem not in ALIASES)
    code = (
        "import xferlib as xl, types\n"
        f"for m in {modules!r}:\n"
        "    assert isinstance(getattr(xl, m), types.ModuleType), m\n"
        "for name in xl.__all__:\n"
        "    assert getattr(xl, name) is not None, name\n"
        "assert callable(xl.quiz) and sorted(set(dir(xl)) & set(xl.__all__)) == sorted(xl.__all__)\n"
        "try:\n    xl.no_such_helper\nexcept AttributeError as err:\n    assert 'no_such_helper' in str(err)\n"
        "else:\n    raise SystemExit('an unknown name must raise AttributeError')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import xferlib as xl

    assert set(modules) <= set(xl.__all__), "every module is part of the one name list"


def test_the_quiz_drill_starts_without_pytorch():
    import subprocess
    import sys

    code = "import sys, xferlib.quizzes; xferlib.quizzes.main(['--check']); assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]


def _make_setup(tmp_path, torch: str | None):
    """Run the Makefile's setup with a stand-in Python that records its arguments: ``(exit code, calls, stderr)``."""
    import subprocess

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    fake = venv / "bin" / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.log"}\n')
    fake.chmod(0o755)
    args = ["make", "-s", "-C", str(REPO), "setup", f"VENV={venv}"] + ([f"TORCH={torch}"] if torch else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    log = tmp_path / "calls.log"
    return done.returncode, log.read_text().splitlines() if log.exists() else [], done.stderr


def test_make_installs_cpu_only_pytorch_when_asked_and_refuses_to_mix_builds(tmp_path):
    code, calls, _ = _make_setup(tmp_path, "cpu")
    assert code == 0 and len(calls) == 2
    assert "--index-url https://download.pytorch.org/whl/cpu" in calls[0] and "torch>=2.4" in calls[0]
    assert "-e .[dev]" in calls[1], "the kit comes after PyTorch, so pip keeps the CPU build"
    assert (tmp_path / "venv" / ".xfer-torch").read_text().strip() == "cpu"

    (tmp_path / "venv" / ".xfer-installed").unlink()  # pyproject changed: setup runs again, now asking for the default build
    code, _, err = _make_setup(tmp_path, None)
    assert code != 0 and "holds the 'cpu' PyTorch build, not TORCH=default" in err

    code, _, err = _make_setup(tmp_path / "other", "gpu")
    assert code != 0 and "TORCH=gpu is not a PyTorch build" in err


def test_make_installs_pypis_pytorch_by_default(tmp_path):
    code, calls, _ = _make_setup(tmp_path, None)
    assert code == 0 and len(calls) == 1 and "-e .[dev]" in calls[0] and "index-url" not in calls[0]


def test_nbval_compares_checked_outputs_without_the_measured_numbers():
    """make test sanitises numbers and padding in checked outputs, and nothing else."""
    from nbval.plugin import get_sanitize_patterns

    assert "--nbval-sanitize-with tests/nbval_sanitize.cfg" in (REPO / "Makefile").read_text()
    patterns = get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text())
    assert len(patterns) == 3

    def clean(s):
        for regex, replace in patterns:
            s = re.sub(regex, replace, s)
        return s

    amd = "✔ holds: A beats B (A − B: +9.4 points, 95 % CI [+7.8, +11.0], 5 seeds)\nlr  0.001   400 steps"
    intel = "✔ holds: A beats B (A − B: +4.4 points, 95 % CI [-0.5, +9.3], 5 seeds)\nlr 0.0001  1,200 steps"
    assert clean(amd) == clean(intel)
    assert clean(amd) != clean(amd.replace("✔ holds", "✔ no difference detectable"))
    assert clean(amd) != clean(amd.replace("A beats B", "B beats A"))
    figure = '<img src="data:image/png;base64,{}" alt="Accuracy rises with 2 epochs.">'
    assert clean(figure.format("iVBORw0KGgoAAA+/=")) == clean(figure.format("iVBORw0KGgoBBB9z"))
    assert clean(figure.format("iVBO")) != clean(figure.format("iVBO").replace("rises", "falls"))
