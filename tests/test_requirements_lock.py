"""requirements.lock, the environment `make` and the Dockerfile install, satisfies pyproject.toml.

Every line pins one package to one version with its hashes; every requirement of the package and
of its `workflow` and `dev` extras (for Python 3.11 on linux x86_64, the lock's target) names a
locked package whose version it allows. `make lock` refreshes the lock after pyproject.toml changes.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
TARGET = {"python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux"}
TARGET |= {"platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name → (version, hashes) of every package in the lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    current = None
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match["name"])
            assert current not in entries, f"{current} locked twice"
            entries[current] = (Version(match["version"]), [])
        elif line.strip().startswith("--hash=sha256:"):
            assert current is not None
            entries[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"not a pin, hash or comment: {line!r}"
    return entries


def requirements() -> list[Requirement]:
    """The package's requirements and those of its workflow and dev extras, for the lock's target."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs = [Requirement(r) for r in [*project["dependencies"], *extras["workflow"], *extras["dev"]]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({**TARGET, "extra": ""})]


def test_every_line_pins_a_version_with_hashes() -> None:
    entries = locked()
    assert len(entries) > 50
    for name, (_, hashes) in entries.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_lock_satisfies_pyproject(requirement: Requirement) -> None:
    entries = locked()
    name = canonicalize_name(requirement.name)
    assert name in entries, f"{requirement} is not in requirements.lock; run `make lock`"
    version = entries[name][0]
    assert requirement.specifier.contains(version, prereleases=True), (
        f"requirements.lock has {name}=={version}, pyproject.toml asks for {requirement}; run `make lock`"
    )


def test_the_project_torch_pins_are_locked() -> None:
    """The pins the container tag and the paper tables were made with (README, Reproducibility)."""
    entries = locked()
    assert str(entries["torch"][0]) == "2.14.1" and str(entries["torchvision"][0]) == "0.29.1"


def test_make_and_the_dockerfile_install_from_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --require-hashes --no-deps -r $(LOCK)" in makefile
    assert "LOCK := requirements.lock" in makefile
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile
