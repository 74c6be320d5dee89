"""Binder: binder/ asks for the kit's packages (CPU wheels), postBuild runs offline, the badge opens 00_setup."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"


def _requirement(line: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", line).groups()
    return name.lower().replace("_", "-"), spec.strip()


def _binder_requirements() -> tuple[dict, list]:
    packages, options = {}, []
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            packages.update([_requirement(line)])
    return packages, options


def test_binder_asks_for_the_packages_of_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = dict(_requirement(r) for r in project["dependencies"])
    packages, _ = _binder_requirements()
    missing = {k: v for k, v in wanted.items() if packages.get(k) != v}
    assert missing == {}, f"binder/requirements.txt lacks or differs on {missing}"
    extra = set(packages) - set(wanted)
    assert extra == {"jupyterlab", "ipykernel"}, f"binder/requirements.txt has more than the interface: {extra}"


def test_binder_uses_cpu_only_pytorch_wheels():
    _, options = _binder_requirements()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options
    assert re.fullmatch(r"python-3\.\d+", (BINDER / "runtime.txt").read_text().strip())


def test_binder_scripts_are_executable_and_start_hands_over():
    for name in ("postBuild", "start"):
        assert os.access(BINDER / name, os.X_OK), f"binder/{name} is not executable"
    assert 'exec "$@"' in (BINDER / "start").read_text()


@pytest.mark.slow
def test_postbuild_runs_here_and_fails_gracefully_offline(tmp_path):
    """postBuild as Binder runs it, with every side effect kept in tmp_path: pip only does a dry
    run (the test environment is not reinstalled) and downloads would land in a fresh home."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PIP_DRY_RUN="1", HOME=str(tmp_path), TORCH_HOME=str(tmp_path / "torch"),
               MPLCONFIGDIR=str(tmp_path / "matplotlib"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XFERLIB_CACHE=str(tmp_path / "xferlib"))
    proc = subprocess.run(["bash", str(BINDER / "postBuild")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "efficientnet_lite0: weights ready" in out  # the offline model always loads
    for name in ("resnet18", "resnet50", "mobilenet_v3_large"):  # online: fetched, or skipped with a reason
        assert re.search(rf"^{name}: (weights ready|skipped, cannot download now \(.+\))$", out, re.M), out
    assert "matplotlib font cache: ready" in out
    assert "Would install xferlib" in out + proc.stderr, "postBuild installs the kit (a dry run here)"
    assert (tmp_path / "matplotlib").is_dir(), "the font cache was built in the test's own home"


def test_readme_badge_opens_jupyterlab_at_the_first_lesson():
    head = "\n".join((REPO / "README.md").read_text().splitlines()[:12])
    badge = re.search(r"\(https://mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/HEAD\?urlpath=([^)\s]+)\)", head)
    assert badge, "no Binder launch badge at the top of README.md"
    target = badge.group(2).replace("%2F", "/")
    assert target.startswith("lab/tree/"), f"the badge should open JupyterLab, not {target}"
    assert (REPO / target.removeprefix("lab/tree/")).is_file(), f"the badge opens {target}, which does not exist"
    assert "mybinder.org/badge_logo.svg" in head
