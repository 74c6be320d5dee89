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


def test_every_public_name_resolves_and_the_quiz_drill_starts_without_pytorch():
    import subprocess
    import sys

    import xferlib as xl

    assert all(getattr(xl, name) is not None for name in xl.__all__)
    assert set(xl.__all__) <= set(dir(xl))
    try:
        xl.no_such_helper
    except AttributeError as err:
        assert "no_such_helper" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    code = "import sys, xferlib.quiz; xferlib.quiz.main(['--check']); assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
