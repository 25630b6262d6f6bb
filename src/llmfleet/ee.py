"""The execution environment AWX / Ansible Automation Platform run the playbooks in (ansible-builder).

The definition is execution-environment/execution-environment.yml. `invoke ee` writes its build
context; `invoke ee --base-image IMAGE` builds the image from it with podman. The base image is
always the caller's choice (a build argument), and pip inside the build uses this machine's own pip
settings, mounted read-only for the build only, so a host that installs from a mirror or a local
index builds the same way. Nothing of those settings stays in the image.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from llmfleet import pipstage
from llmfleet.errors import UsageError

DEFINITION = Path("execution-environment") / "execution-environment.yml"
DEFAULT_TAG = "llmfleet-ee:latest"
# The build argument ansible-builder's Containerfile takes its FROM image from.
BASE_IMAGE_ARG = "EE_BASE_IMAGE"


def definition(project_root: Path) -> Path:
    return project_root / DEFINITION


def cache_dir(project_root: Path) -> Path:
    """Build context and staged pip settings; under .cache/, which git ignores."""
    return project_root / ".cache" / "ee"


def _builder_argv(builder: str, command: str, project_root: Path, context: Path) -> list[str]:
    return [builder, command, "--file", str(definition(project_root)), "--context", str(context)]


def create_argv(builder: str, project_root: Path, context: Path) -> list[str]:
    """`ansible-builder create`: the Containerfile and the files it copies, into `context`."""
    return _builder_argv(builder, "create", project_root, context)


def parse_build_args(pairs: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` build arguments (PKGMGR=/usr/bin/apt-get, PYCMD=...) as a mapping."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--build-arg takes KEY=VALUE, not {pair!r}")
        result[key] = value
    return result


def build_argv(
    builder: str,
    project_root: Path,
    context: Path,
    *,
    base_image: str,
    tag: str = DEFAULT_TAG,
    build_args: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
) -> list[str]:
    """`ansible-builder build` with podman: the base image and other build arguments, and read-only
    volumes that every RUN step of the build sees (but that are not committed to the image)."""
    if not base_image:
        raise UsageError("a build needs --base-image (the image the execution environment starts from)")
    args = {**(build_args or {}), BASE_IMAGE_ARG: base_image}
    argv = [*_builder_argv(builder, "build", project_root, context), "--tag", tag, "--container-runtime", "podman"]
    for key, value in args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if volumes:
        argv += ["--extra-build-cli-args", shlex.join(f"--volume={volume}:ro" for volume in volumes)]
    return argv


def stage_pip(out: Path, settings: Mapping[str, str] | None = None) -> list[str]:
    """Stage this machine's pip settings for a build; returns the `host:container` volumes to mount.

    The test bed's staging does the work (local indexes and find-links directories linked under
    `out`, paths rewritten to where the build sees them). The CA bundle pip trusts here is staged
    too, so the build trusts the same mirrors whatever CA path the base image uses.
    """
    settings = dict(pipstage.host_pip_settings() if settings is None else settings)
    cert = settings.pop("cert", "")
    pipstage.stage_host_pip(settings, out)
    if cert and Path(cert).is_file():
        shutil.copyfile(cert, out / "ca.pem")
        with (out / "pip.conf").open("a") as conf:
            conf.write(f"cert = {pipstage.PIP_MOUNT}/ca.pem\n")
    return [f"{out.absolute()}:{pipstage.PIP_MOUNT}", f"{out.absolute() / 'pip.conf'}:/etc/pip.conf"]
