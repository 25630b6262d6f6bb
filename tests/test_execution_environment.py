"""The execution environment for AWX / Automation Platform, checked without building an image.

`ansible-builder create` runs for real on execution-environment/ and the build context it writes is
read: pins, base image, stages, what the image carries. A build needs a base image from a registry
(none is reachable in CI); docs/execution-environment.md records the build tried by hand.

The project itself is not in the image: AWX checks it out of git for every job. One test runs the
site playbook the way an AWX job does (ansible-runner, project under the private data directory,
AWX's roles and collections search paths) to show the checkout finds its roles and collections.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml
from packaging.requirements import Requirement

from llmfleet import cli, ee, pipstage

ROOT = Path(__file__).resolve().parents[1]
EE_DIR = ROOT / "execution-environment"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Something that looks like a host name (registry, index, Galaxy): none belongs in the definition.
HOST_NAME = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:io|com|org|net|dev)\b")
FQCN = re.compile(r"^([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_.]+$")
JINJA_FQCN = re.compile(r"(?:lookup|query)\(\s*'([a-z0-9_]+\.[a-z0-9_]+)\.|\|\s*([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+")


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ee") / "context"
    argv = ee.create_argv(cli.venv_tool("ansible-builder"), ROOT, out)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def containerfile(context: Path) -> list[str]:
    return (context / "Containerfile").read_text().splitlines()


def build_arg_default(context: Path, name: str) -> str:
    for line in containerfile(context):
        if line.startswith(f"ARG {name}="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError(f"no ARG {name} with a default in the Containerfile")


def specifiers(requirements: list[str]) -> dict[str, str]:
    """Requirement name -> its version specifier, sorted so equal sets compare equal."""
    parsed = [Requirement(line) for line in requirements]
    return {r.name: ",".join(sorted(str(s) for s in r.specifier)) for r in parsed}


def pyproject_specifiers(*names: str) -> dict[str, str]:
    everything = specifiers(PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"])
    return {name: everything[name] for name in names}


def test_ansible_and_mitogen_versions_follow_pyproject(context: Path) -> None:
    installed_in_base = specifiers(build_arg_default(context, "ANSIBLE_INSTALL_REFS").split())
    assert installed_in_base == pyproject_specifiers("ansible-core", "ansible-runner")
    requirements = [line for line in (context / "_build" / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert specifiers(requirements) == pyproject_specifiers("ansible", "mitogen")


def test_base_image_is_a_build_argument_without_a_registry(context: Path) -> None:
    lines = containerfile(context)
    assert [line for line in lines if line.startswith("FROM ")][0] == "FROM $EE_BASE_IMAGE AS base"
    default = build_arg_default(context, "EE_BASE_IMAGE")
    # An unqualified short name: the builder's registries.conf (or a local tag) decides where it is.
    assert "/" not in default and ":" in default
    for path in [*EE_DIR.iterdir(), context / "Containerfile"]:
        assert not HOST_NAME.findall(path.read_text()), f"{path.name} names a host"


def test_the_build_needs_a_python_index_but_not_galaxy(context: Path) -> None:
    text = (context / "Containerfile").read_text()
    assert "ansible-galaxy" not in text and "FROM base AS galaxy" not in text
    assert not (context / "_build" / "requirements.yml").exists()
    # Base images differ: the Python check comes first, the package manager is an argument.
    lines = containerfile(context)
    check = next(i for i, line in enumerate(lines) if "sys.version_info < (3, 11)" in line)
    install = lines.index("RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS")
    assert check < install
    assert build_arg_default(context, "PKGMGR") == "/usr/bin/dnf"
    bindep = (context / "_build" / "bindep.txt").read_text()
    assert "openssh-client [platform:dpkg]" in bindep and "openssh-clients [platform:rpm]" in bindep


def test_project_content_stays_out_of_the_image(context: Path) -> None:
    copied = {p.relative_to(context).parts[1] for p in (context / "_build").rglob("*") if p.is_file()}
    assert copied == {"requirements.txt", "bindep.txt", "scripts"}
    sources = [line.split()[1] for line in containerfile(context) if line.startswith("COPY ")]
    assert all(src.startswith(("_build/", "--from=")) for src in sources), sources


def _yaml_files() -> Iterator[Path]:
    yield from (ROOT / "playbooks").glob("*.yml")
    for kind in ("tasks", "handlers"):
        yield from (ROOT / "roles").glob(f"*/{kind}/*.yml")


def _collections_in(node: Any) -> Iterator[str]:
    """Collections named by task keys (modules, `ansible.builtin.include_tasks`) and in Jinja
    (lookups, filters) anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and (match := FQCN.match(key)):
                yield match.group(1)
            yield from _collections_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _collections_in(item)
    elif isinstance(node, str):
        for lookup, filter_ in JINJA_FQCN.findall(node):
            yield lookup or filter_


def test_collections_the_project_uses_come_with_the_ansible_package() -> None:
    used = {name for path in _yaml_files() for name in _collections_in(yaml.safe_load(path.read_text()))}
    galaxy = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    used |= {entry["name"] for entry in galaxy}
    assert "community.general" in used  # the scan sees the macOS tasks' modules
    files = importlib.metadata.files("ansible") or []
    bundled = {".".join(f.parts[1:3]) for f in files if f.parts[0] == "ansible_collections" and f.name == "MANIFEST.json"}
    own = "{namespace}.{name}".format(**yaml.safe_load((ROOT / "galaxy.yml").read_text()))
    missing = sorted(used - bundled - {"ansible.builtin", "ansible.legacy", own})
    assert not missing, f"not in the `ansible` package, so not in the execution environment: {missing}"


def awx_env(private_data_dir: Path, project: Path) -> dict[str, str]:
    """The search paths an AWX job sets: project-synced content first, then the project's own
    ansible.cfg setting, then the defaults (AWX's RunJob.build_env)."""
    config = ConfigParser()
    config.read(project / "ansible.cfg")
    roles = [str(private_data_dir / "requirements_roles"), config["defaults"]["roles_path"],
             "~/.ansible/roles", "/usr/share/ansible/roles", "/etc/ansible/roles"]
    collections = [str(private_data_dir / "requirements_collections"), "~/.ansible/collections",
                   "/usr/share/ansible/collections"]
    # The EE has ansible-playbook on PATH; here it is this interpreter's.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    return {"ANSIBLE_ROLES_PATH": ":".join(roles), "ANSIBLE_COLLECTIONS_PATH": ":".join(collections), "PATH": path}


def test_an_awx_job_finds_the_roles_and_collections_of_the_checkout(tmp_path: Path) -> None:
    private_data_dir = tmp_path / "runner"
    project = private_data_dir / "project"
    project.mkdir(parents=True)
    # What AWX checks out: the project with its collection parts and its link (playbooks/collections)
    # kept as a link. AWX sets its own collections path; the link next to the playbooks still counts.
    for name in ("ansible.cfg", "galaxy.yml", "meta", "playbooks", "plugins", "roles", "inventory"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / name)
    result = ansible_runner.run(
        private_data_dir=str(private_data_dir),
        playbook="playbooks/site.yml",
        inventory=str(project / "inventory" / "example"),
        cmdline="--syntax-check",
        envvars=awx_env(private_data_dir, project),
        quiet=True,
    )
    assert result.rc == 0, result.stdout.read()


def test_build_command_takes_the_base_image_and_mounts_read_only() -> None:
    argv = ee.build_argv("ansible-builder", ROOT, ROOT / "ctx", base_image="bookworm-python:1",
                         build_args={"PKGMGR": "/usr/bin/apt-get"}, volumes=["/h/pip:/c/pip"])
    assert argv[:2] == ["ansible-builder", "build"]
    assert argv[argv.index("--file") + 1] == str(EE_DIR / "execution-environment.yml")
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--build-arg"]
    assert pairs == ["PKGMGR=/usr/bin/apt-get", "EE_BASE_IMAGE=bookworm-python:1"]
    assert argv[argv.index("--tag") + 1] == ee.DEFAULT_TAG
    assert argv[argv.index("--extra-build-cli-args") + 1] == "--volume=/h/pip:/c/pip:ro"
    with pytest.raises(cli.UsageError):
        ee.build_argv("ansible-builder", ROOT, ROOT / "ctx", base_image="")
    with pytest.raises(cli.UsageError):
        ee.parse_build_args(["PKGMGR"])


def test_build_gets_the_hosts_pip_settings_and_ca(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    out = tmp_path / "staged"
    volumes = ee.stage_pip(out, {"find-links": str(wheels), "cert": str(ca), "index-url": "https://mirror.example/simple"})
    conf = ConfigParser()
    conf.read(out / "pip.conf")
    assert conf["global"]["cert"] == f"{pipstage.PIP_MOUNT}/ca.pem"
    assert (out / "ca.pem").read_text() == ca.read_text()
    assert conf["global"]["index-url"] == "https://mirror.example/simple"
    assert list((out / Path(conf["global"]["find-links"]).relative_to(pipstage.PIP_MOUNT)).iterdir())
    assert volumes == [f"{out}:{pipstage.PIP_MOUNT}", f"{out}/pip.conf:/etc/pip.conf"]
