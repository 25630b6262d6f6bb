"""Pull mode: a host converges itself from the team's git repository (`python -m llmfleet.pull`).

The llm_host role enrols a host (roles/llm_host/tasks/pull.yml): a virtualenv with Ansible,
ansible-runner and Mitogen, this package's run driver beside it, a settings file
(/etc/llmfleet/pull.json) and a timer (launchd on macOS) that runs this module. Each run does what
ansible-pull does, in two steps of its own so that it goes through the same run driver as
`invoke provision`:

1. fetch the branch or tag into a checkout of its own (a shallow `git fetch`, then a forced
   checkout of what it fetched: the checkout is the repository's, never edited on the host);
2. run the checkout's `playbooks/pull.yml` (the preflight, then the settings' playbook) on this host
   alone over a local connection with `runner.run_playbook`: the playbooks take the host lock, so a
   pull run and a push run never interleave, and the run folder holds the same artifacts and
   summary.json as a push run's, plus a `pull` record (repository, version, commit, fetch error).

A fetch that fails (the host is offline) converges the checkout it already has, and says so in the
summary. Only the last `keep` run folders stay. The vault password reaches ansible-playbook as the
path of its root-only file (`--vault-password-file`), never as a value.

With a `report_url`, each run also sends a short record of itself (report_record: when, which
commit, how it ended, the failures' messages; no task output) as an HTTPS PUT of
`<report_url>/<host>.json`, the key from its root-only file as a bearer token, so that the team can
see laptops the controller cannot reach. A report that fails is noted in the summary
(`pull.report_error`) and fails nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmfleet.report import ExitCode, Failure, HostStats, RunResult

# Inside the checkout: the playbook a pull run runs, and the variable that names the one it imports.
PULL_PLAYBOOK = "playbooks/pull.yml"
SUMMARY = "summary.json"


class PullError(Exception):
    """A step of the pull run that failed, with a message that says which and why."""


@dataclass(frozen=True)
class PullSettings:
    """The settings file llm_host writes (templates/etc/llmfleet/pull.json.j2)."""

    repo: str
    version: str
    inventory: str
    playbook: str
    host: str
    checkout: Path
    runs_dir: Path
    keep: int
    vault_password_file: Path | None = None
    venv: Path | None = None
    lib: Path | None = None
    report_url: str | None = None
    report_key_file: Path | None = None

    @classmethod
    def read(cls, path: Path) -> PullSettings:
        data = json.loads(path.read_text())
        return cls(
            repo=str(data["repo"]),
            version=str(data["version"]),
            inventory=str(data["inventory"]),
            playbook=str(data["playbook"]),
            host=str(data["host"]),
            checkout=Path(data["checkout"]),
            runs_dir=Path(data["runs_dir"]),
            keep=max(1, int(data["keep"])),
            vault_password_file=Path(data["vault_password_file"]) if data.get("vault_password_file") else None,
            venv=Path(data["venv"]) if data.get("venv") else None,
            lib=Path(data["lib"]) if data.get("lib") else None,
            report_url=str(data["report_url"]) if data.get("report_url") else None,
            report_key_file=Path(data["report_key_file"]) if data.get("report_key_file") else None,
        )


def _git(*args: str, cwd: Path | None = None) -> str:
    """Run git; PullError with git's own message when it fails. No terminal prompt: a run is unattended."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise PullError(f"git {args[0]} failed ({done.returncode}): {' '.join(detail[-3:])}")
    return done.stdout.strip()


def fetch(settings: PullSettings) -> str:
    """Bring the checkout to the tip of the settings' branch or tag; return its commit id."""
    checkout = settings.checkout
    if not (checkout / ".git").is_dir():
        if checkout.exists():
            shutil.rmtree(checkout)
        # Readable: tasks that become a developer start in the playbook's directory.
        checkout.mkdir(parents=True, mode=0o755)
        _git("init", "--quiet", cwd=checkout)
        _git("remote", "add", "origin", settings.repo, cwd=checkout)
    else:
        # The inventory may move the host to another repository.
        _git("remote", "set-url", "origin", settings.repo, cwd=checkout)
    _git("fetch", "--quiet", "--depth", "1", "--no-tags", "origin", settings.version, cwd=checkout)
    _git("checkout", "--quiet", "--force", "--detach", "FETCH_HEAD", cwd=checkout)
    _git("clean", "--quiet", "-ffdx", cwd=checkout)
    return current_commit(checkout)


def current_commit(checkout: Path) -> str:
    """The commit the checkout holds, or "" when it holds none."""
    try:
        return _git("rev-parse", "HEAD", cwd=checkout)
    except (PullError, OSError):
        return ""


def prune(runs_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` run folders (their names start with the UTC start time)."""
    runs = sorted((p for p in runs_dir.iterdir() if p.is_dir() and (p / SUMMARY).exists()), key=lambda p: p.name)
    gone = runs[: max(0, len(runs) - keep)]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def last_run(runs_dir: Path) -> dict[str, Any] | None:
    """The newest run's summary (what `invoke status` shows), or None when there is none."""
    if not runs_dir.is_dir():
        return None
    for path in sorted(runs_dir.iterdir(), key=lambda p: p.name, reverse=True):
        try:
            return dict(json.loads((path / SUMMARY).read_text()))
        except (OSError, ValueError):
            continue
    return None


def report_record(summary: Mapping[str, Any], host: str) -> dict[str, Any]:
    """What a pull run reports to the team server: when, which commit, how it ended (no task output)."""
    record = summary.get("pull") or {}
    outcome = (summary.get("hosts") or {}).get(host) or {}
    return {
        "host": host,
        "started": summary.get("started"),
        "finished": summary.get("finished"),
        "repo": record.get("repo"),
        "version": record.get("version"),
        "commit": record.get("commit"),
        "fetch_error": record.get("fetch_error"),
        "state": outcome.get("state") or summary.get("status"),
        "changed": outcome.get("changed", 0),
        "exit_code": summary.get("exit_code"),
        "exit_reason": summary.get("exit_reason"),
        "failures": [{"task": f.get("task"), "message": f.get("message")}
                     for f in summary.get("failures") or [] if f.get("host") == host],
    }


def send_report(url: str, key_file: Path | None, record: Mapping[str, Any], *, timeout: float = 20) -> None:
    """PUT `record` as JSON to `url`/<host>.json, with the bearer key read from `key_file`.

    TLS is verified against the system's trust store (the team CA, llm_host's trust.yml). Raises
    PullError naming the URL and the cause, never the key.
    """
    target = f"{url.rstrip('/')}/{record['host']}.json"
    headers = {"Content-Type": "application/json"}
    if key_file is not None:
        headers["Authorization"] = "Bearer " + key_file.read_text().strip()
    request = urllib.request.Request(target, data=json.dumps(record).encode(), headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise PullError(f"report to {target} refused: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise PullError(f"report to {target} failed: {reason}") from None


def _record(settings: PullSettings, commit: str, fetch_error: str | None) -> dict[str, Any]:
    return {"repo": settings.repo, "version": settings.version, "commit": commit, "fetch_error": fetch_error,
            "host": settings.host, "playbook": settings.playbook}


def _failed_run(settings: PullSettings, started: datetime, message: str) -> Path:
    """A run folder for a pull run that could not start its playbook, with a summary of the same shape."""
    ident = f"{started:%Y%m%dT%H%M%SZ}-pull-{uuid.uuid4().hex[:8]}"
    folder = settings.runs_dir / ident
    folder.mkdir(parents=True)
    result = RunResult(status="failed", rc=1, hosts={settings.host: HostStats(failed=1)},
                       failures=[Failure(settings.host, "Fetch the team's repository", message)], changes=[],
                       artifact_dir=folder, started=started, finished=datetime.now(UTC), errors=(message,))
    summary = {"request": {"playbook": PULL_PLAYBOOK, "inventory": settings.inventory, "limit": settings.host},
               **result.to_dict(), "pull": _record(settings, "", message)}
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return folder


def _finish(settings: PullSettings, folder: Path) -> None:
    """Report the run when the settings say where (its outcome noted in its summary), then prune."""
    if settings.report_url:
        path = folder / SUMMARY
        summary = json.loads(path.read_text())
        try:
            send_report(settings.report_url, settings.report_key_file, report_record(summary, settings.host))
            summary["pull"]["report_error"] = None
        except (PullError, OSError) as error:
            summary["pull"]["report_error"] = str(error)
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    prune(settings.runs_dir, settings.keep)


RunPlaybook = Callable[..., RunResult]


def pull(settings: PullSettings, *, run_playbook: RunPlaybook | None = None) -> tuple[ExitCode, Path]:
    """One pull run: fetch, converge this host, keep the summary, prune. Returns the exit code and run folder."""
    started = datetime.now(UTC)
    # Root-only: ansible-runner's artifacts hold every task's output.
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    settings.runs_dir.chmod(0o700)
    fetch_error = None
    try:
        commit = fetch(settings)
    except (PullError, OSError) as error:
        fetch_error = str(error)
        commit = current_commit(settings.checkout)
    if not commit:
        folder = _failed_run(settings, started, f"no checkout of {settings.repo} to converge from: {fetch_error}")
        _finish(settings, folder)
        return ExitCode.FAILED, folder

    if run_playbook is None:
        from llmfleet.runner import run_playbook  # ansible-runner: imported only for a real run
    from llmfleet.runner import RunRequest

    request = RunRequest(
        playbook=settings.checkout / PULL_PLAYBOOK,
        inventory=settings.checkout / settings.inventory,
        limit=settings.host,
        # Not secret: they name the playbook and the connection, and show in the run's command.
        extravars={"ansible_connection": "local", "llmfleet_pull_playbook": settings.playbook,
                   "llmfleet_pull_run": True},
        vault_password_file=settings.vault_password_file,
    )
    try:
        result = run_playbook(request, project_dir=settings.checkout, runs_dir=settings.runs_dir)
    except FileNotFoundError as error:  # the commit lacks the inventory or the playbook
        folder = _failed_run(settings, started, f"commit {commit}: {error}")
        _finish(settings, folder)
        return ExitCode.FAILED, folder
    summary_path = result.artifact_dir / SUMMARY
    summary = json.loads(summary_path.read_text())
    summary["pull"] = _record(settings, commit, fetch_error)
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _finish(settings, result.artifact_dir)
    return result.exit_code, result.artifact_dir


def remove_old_tools(settings: PullSettings, running: Sequence[Path]) -> list[Path]:
    """Delete the pull tools' virtualenvs and run drivers other than the settings' and the `running`
    ones (a new requirement set or run driver installs beside them, llm_host's pull-enrol.yml)."""
    if settings.venv is None:
        return []
    keep = {p.resolve() for p in (settings.venv, settings.lib, *running) if p is not None}
    tools = settings.venv.parent
    gone = sorted(p for pattern in ("venv-*", "lib-*") for p in tools.glob(pattern) if p.resolve() not in keep)
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def remove_tools(settings: PullSettings, tools: Path) -> bool:
    """The host left pull mode during this run (its settings are gone): its checkout and `tools` (the
    directory of the virtualenvs and the run driver) go too, when `tools` is the settings' own."""
    if settings.venv is None or settings.venv.parent.resolve() != tools.resolve():
        return False
    shutil.rmtree(settings.checkout, ignore_errors=True)
    shutil.rmtree(tools, ignore_errors=True)
    return True


def _wait(boot_delay: int, random_delay: int) -> None:
    """launchd has neither a delay after boot nor a random delay: sleep them here (systemd's timer has both)."""
    uptime = time.clock_gettime(time.CLOCK_MONOTONIC)
    if boot_delay > uptime:
        time.sleep(boot_delay - uptime)
    if random_delay > 0:
        time.sleep(random.uniform(0, random_delay))  # noqa: S311 - spreading load, not security


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmfleet.pull", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/llmfleet/pull.json"), help="the settings file")
    parser.add_argument("--boot-delay", type=int, default=0, help="seconds after boot before the run (launchd)")
    parser.add_argument("--random-delay", type=int, default=0, help="a random delay of up to this (launchd)")
    args = parser.parse_args(argv)
    _wait(args.boot_delay, args.random_delay)
    settings = PullSettings.read(args.config)
    remove_old_tools(settings, [Path(sys.prefix), Path(__file__).resolve().parents[1]])
    code, folder = pull(settings)
    summary = json.loads((folder / SUMMARY).read_text())
    record = summary.get("pull", {})
    outcome = (summary.get("outcomes") or {}).get(settings.host, {})
    print(f"pull run {folder.name}: commit {record.get('commit') or '-'}, "
          f"{outcome.get('state', summary.get('status'))}, exit {int(code)}"
          + (f"; fetch failed, converged the checkout it had: {record['fetch_error']}" if record.get("fetch_error") else "")
          + (f"; {record['report_error']}" if record.get("report_error") else ""))
    if not args.config.exists():
        remove_tools(settings, Path(__file__).resolve().parents[2])
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
