"""What the invoke tasks do, behind tasks.py's argument parsing."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from llmfleet.drift import drift_exit, render_drift
from llmfleet.errors import UsageError
from llmfleet.lanes import tool_environment
from llmfleet.progress import make_reporter
from llmfleet.project import Project
from llmfleet.report import ExitCode, RunResult, render_exit, render_summary
from llmfleet.runner import RunRequest, run_playbook
from llmfleet.status import render_pulled, render_status

SECRET_ENV_PREFIX = "LLMFLEET_SECRET_"


def limit_for(host: str | None, group: str | None) -> str | None:
    """`--host` and `--group` both become ansible's --limit; asking for both is ambiguous."""
    if host and group:
        raise UsageError("give --host or --group, not both")
    return host or group


def parse_extravars(pairs: Iterable[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs, values read as YAML scalars (`purge=true` is a boolean), or `@file.yml`."""
    result: dict[str, Any] = {}
    for pair in pairs:
        if pair.startswith("@"):
            loaded = yaml.safe_load(Path(pair[1:]).read_text())
            if not isinstance(loaded, dict):
                raise UsageError(f"{pair[1:]} must hold a mapping of variables")
            result.update(loaded)
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"-e takes KEY=VALUE or @FILE, not {pair!r}")
        result[key] = yaml.safe_load(value) if value else ""
    return result


def read_secrets(names: Iterable[str], env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Secret variables by name: from $LLMFLEET_SECRET_<NAME>, else asked on the terminal.

    Values never go through argv, so they stay out of `ps` and shell history.
    """
    result: dict[str, str] = {}
    for name in names:
        if not name.isidentifier():
            raise UsageError(f"--secret takes a variable name, not {name!r}")
        value = env.get(SECRET_ENV_PREFIX + name.upper())
        if value is None:
            if not sys.stdin.isatty():
                raise UsageError(f"secret {name}: set {SECRET_ENV_PREFIX}{name.upper()} (no terminal to ask on)")
            value = getpass.getpass(f"{name}: ")
        result[name] = value
    return result


BECOME_PASSWORD_ENV = "LLMFLEET_BECOME_PASSWORD"


def read_become_password(env: Mapping[str, str] = os.environ) -> str:
    """sudo's password for --ask-become-pass: from $LLMFLEET_BECOME_PASSWORD, else asked on the terminal."""
    value = env.get(BECOME_PASSWORD_ENV)
    if value is None:
        if not sys.stdin.isatty():
            raise UsageError(f"--ask-become-pass: set {BECOME_PASSWORD_ENV} (no terminal to ask on)")
        value = getpass.getpass("BECOME (sudo) password: ")
    return value


def provision(
    project: Project,
    *,
    playbook: str = "site",
    inventory: str | None = None,
    host: str | None = None,
    group: str | None = None,
    check: bool = False,
    diff: bool = False,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    extra_vars: Sequence[str] = (),
    secrets: Sequence[str] = (),
    vault_password_file: str | None = None,
    ask_become_pass: bool = False,
    forks: int | None = None,
    verbose: int = 0,
    console: Console | None = None,
    exit_line: bool = True,
) -> RunResult:
    """Run a playbook against the inventory with live progress, then print the per-host summary.

    `exit_line`: end the summary with the run's exit code; a command whose own exit code differs
    (drift, status) prints its own instead, so a run ends with one exit line.
    """
    console = console or Console()
    request = RunRequest(
        playbook=project.playbook(playbook),
        inventory=Path(inventory).resolve() if inventory else project.default_inventory,
        limit=limit_for(host, group),
        check=check,
        diff=diff,
        tags=_split(tags),
        skip_tags=_split(skip_tags),
        extravars=parse_extravars(extra_vars),
        secret_extravars=read_secrets(secrets),
        become_password=read_become_password() if ask_become_pass else None,
        vault_password_file=Path(vault_password_file).resolve() if vault_password_file else None,
        forks=forks,
        verbosity=verbose,
    )
    result = run_playbook(request, project_dir=project.root, runs_dir=project.runs_dir,
                          reporter=make_reporter(console))
    render_summary(result, console, exit_line=exit_line)
    return result


def drift(project: Project, *, console: Console | None = None, **options: Any) -> tuple[RunResult, ExitCode]:
    """A check+diff run of the playbook, reported as drift per host; returns the run and the exit code."""
    console = console or Console()
    result = provision(project, check=True, diff=True, console=console, exit_line=False, **options)
    render_drift(result, console)
    return result, drift_exit(result)[0]


def status(project: Project, *, console: Console | None = None, pulled: bool = False,
           **options: Any) -> tuple[RunResult, ExitCode]:
    """Run playbooks/status.yml (read-only) and print each host's services, versions and models; with
    `pulled`, playbooks/pulled.yml on the team server(s) and every host's last pull report instead.

    Exit code: the run's own when a host failed or was unreachable, else 2 when a host differs from
    its inventory (a version not yet applied, a stopped service, a missing model; with `pulled`, a host
    in pull mode whose last report failed, is overdue or missing), else 0.
    """
    console = console or Console()
    if pulled and (options.get("host") or options.get("group")):
        raise UsageError("--pulled lists every host in pull mode from the team server's reports: "
                         "give it without --host or --group")
    playbook = "pulled" if pulled else "status"
    result = provision(project, playbook=playbook, console=console, exit_line=False, **options)
    if pulled:
        clean = render_pulled(result.custom_stats.get("llmfleet_pulled") or {}, console)
    else:
        clean = render_status(result.custom_stats.get("llmfleet_status") or {}, console)
    if result.exit_code != ExitCode.OK:
        code, reason = result.exit_code, result.exit_reason
    elif clean:
        code, reason = ExitCode.OK, ("every host in pull mode reported a good run in time" if pulled
                                     else "every host is as its inventory says")
    else:
        code, reason = ExitCode.CHANGES, ("a host in pull mode needs a look (above)" if pulled
                                          else "a host differs from its inventory (above)")
    render_exit(code, reason, console)
    return result, code


def _split(values: Sequence[str]) -> tuple[str, ...]:
    """Tags may come as repeated options or comma lists."""
    return tuple(tag for value in values for tag in value.split(",") if tag)


@contextmanager
def stage(name: str, console: Console) -> Iterator[None]:
    """Print a stage's start and how long it took, even when it fails."""
    console.print(f"[bold]==> {name}[/bold]")
    started = time.monotonic()
    try:
        yield
    finally:
        console.print(f"[bold]<== {name}: {time.monotonic() - started:.1f} s[/bold]")


def run(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> None:
    """Run a tool, streaming its output; a non-zero exit raises CalledProcessError.

    The interpreter's own bin directory leads PATH: molecule and ansible-lint call ansible-* tools
    by name, and the venv need not be activated.
    """
    subprocess.run(list(argv), cwd=cwd, env=tool_environment(env), check=True)


def venv_tool(name: str) -> str:
    """A console script from this interpreter's environment, so tasks work without activating it."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
