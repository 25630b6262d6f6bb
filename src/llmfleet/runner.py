"""Run one playbook through ansible-runner: the path every `invoke provision` (and later `drift`) takes.

Each run gets its own folder, kept for audit:
`runs_dir/<UTC yyyymmddTHHMMSSZ>-<playbook stem>-<short id>/` holds ansible-runner's artifacts
(`stdout`, `job_events/`, `rc`, `status`, `command`, `fact_cache/`) and our `summary.json`
(the request without secret values, times, per-host counts, failures, changes).

Secrets (`RunRequest.secret_extravars`) never reach argv, the environment, or disk in clear.
ansible-runner would put an `extravars` dict on the command line, and it records the command
line *and the whole environment* in the `command` artifact, so neither channel may carry a
secret. Instead:

1. the secrets are encrypted in-process with a fresh random vault password, and only that
   ciphertext is written, to a 0700 private data dir that is deleted after the run;
2. ansible-playbook gets `-e @<ciphertext file> --vault-id llmfleet_run@prompt`;
3. ansible asks for that vault id's password on its terminal, and ansible-runner (which runs
   it under a pty) answers from its in-memory `passwords` map; the prompt has echo off, so the
   answer does not reach `stdout` either. This is how AWX feeds vault passwords to ansible.

A user vault password file (`vault_password_file`) is passed as `--vault-password-file`
alongside, so user-vaulted inventory still decrypts.

What this cannot cover: a task that prints a secret it was given (without `no_log: true`)
puts it into `stdout` and `job_events/`, as with bare ansible-playbook.

When ansible-playbook stops on an error of its own (or targets no host), its error and warning
lines are kept in the result (`RunResult.errors`, summary.json's "errors") and printed. They are
read from the events that carry ansible's own messages, not from host results, so a task's output
cannot pass for the reason. Every secret value in them is masked, and the source excerpt ansible
shows under an origin is dropped when that file is vault-encrypted or no longer there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner
from ansible.release import __version__ as ansible_version

from llmfleet.progress import Reporter, RunTracker
from llmfleet.report import RunResult, ansible_messages

SECRET_VAULT_ID = "llmfleet_run"
# ansible's PromptVaultSecret prompt for `--vault-id <id>@prompt`.
_VAULT_PROMPT = re.escape(f"Vault password ({SECRET_VAULT_ID}):") + r"\s*$"
# ansible-playbook's prompt for --ask-become-pass ("BECOME password: ", or with the method's name).
_BECOME_PROMPT = r"BECOME password[^:\n]*:\s*$"
# Runner events that carry ansible's own messages rather than a host's result: `error` and
# `warning` once runner's callback is loaded, `verbose` for each line printed before it (parse
# errors, inventory warnings).
_MESSAGE_EVENTS = frozenset({"error", "warning", "system_warning", "verbose"})


@dataclass(frozen=True)
class RunRequest:
    """One ansible-playbook run. Relative paths are taken from the caller's working directory."""

    playbook: Path
    inventory: Path  # file or directory
    limit: str | None = None
    check: bool = False
    diff: bool = False
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    extravars: Mapping[str, Any] = field(default_factory=dict)  # not secret: visible in argv and artifacts
    # repr=False: keeps secrets out of logs and tracebacks that print the request.
    secret_extravars: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # sudo's password (ansible's --ask-become-pass), answered at ansible's prompt like the vault password.
    become_password: str | None = field(default=None, repr=False)
    vault_password_file: Path | None = None
    forks: int | None = None
    verbosity: int = 0

    def describe(self) -> str:
        """Short human title, e.g. `site.yml on inventory/local (check, diff)`."""
        modes = [m for m, on in (("check", self.check), ("diff", self.diff)) if on]
        if self.limit:
            modes.append(f"limit {self.limit}")
        suffix = f" ({', '.join(modes)})" if modes else ""
        return f"{self.playbook.name} on {self.inventory}{suffix}"

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form for summary.json: secret values are left out, their names kept."""
        return {
            "playbook": str(self.playbook),
            "inventory": str(self.inventory),
            "limit": self.limit,
            "check": self.check,
            "diff": self.diff,
            "tags": list(self.tags),
            "skip_tags": list(self.skip_tags),
            "extravars": dict(self.extravars),
            "secret_extravar_names": sorted(self.secret_extravars),
            "become_password_given": self.become_password is not None,
            "vault_password_file": str(self.vault_password_file) if self.vault_password_file else None,
            "forks": self.forks,
            "verbosity": self.verbosity,
        }


def run_playbook(
    request: RunRequest,
    *,
    project_dir: Path,
    runs_dir: Path,
    reporter: Reporter | None = None,
) -> RunResult:
    """Run `request` with `project_dir` (which holds ansible.cfg) as working directory.

    Artifacts and summary.json land in a new folder under `runs_dir`; see the module docstring.
    `reporter` is shown every progress note. Raises FileNotFoundError before starting if an
    input file is missing.
    """
    # Resolved here, against the caller's cwd, because ansible-playbook runs in project_dir.
    request = replace(
        request,
        playbook=request.playbook.resolve(),
        inventory=request.inventory.resolve(),
        vault_password_file=request.vault_password_file.resolve() if request.vault_password_file else None,
    )
    project_dir = project_dir.resolve()
    _check_inputs(request, project_dir)
    started = datetime.now(UTC)
    ident = f"{started:%Y%m%dT%H%M%SZ}-{request.playbook.stem}-{uuid.uuid4().hex[:8]}"
    runs_dir = runs_dir.resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    artifact_dir = runs_dir / ident

    tracker = RunTracker()
    # ansible's own output outside host results, in stretches: any event but a `verbose` line ends
    # one, so a message block never runs on into -vvv connection chatter or the next message.
    # (At -v and up, what ansible prints before runner's callback loads, such as "Parsed <inventory>",
    # is one stretch of lines: it may trail a block there.)
    messages: list[list[str]] = [[]]

    def on_event(event: Mapping[str, Any]) -> bool:
        kind = event.get("event")
        if kind != "verbose" and messages[-1]:
            messages.append([])
        # `verbosity` marks -v output (display.v); ansible's errors and warnings never carry it.
        if kind in _MESSAGE_EVENTS and "verbosity" not in event:
            messages[-1].append(str(event.get("stdout") or ""))
        note = tracker.feed(event)
        if note is not None and reporter is not None:
            reporter.show(note, tracker.hosts)
        return True  # keep writing job_events/

    if reporter is not None:
        reporter.start(f"{request.describe()} -> {artifact_dir}")
    try:
        with _private_data_dir() as private_dir, _signal_handlers_kept():
            runner = ansible_runner.run(
                private_data_dir=str(private_dir),
                project_dir=str(project_dir),
                artifact_dir=str(runs_dir),
                ident=ident,
                playbook=str(request.playbook),
                inventory=str(request.inventory),
                limit=request.limit,
                tags=",".join(request.tags) or None,
                skip_tags=",".join(request.skip_tags) or None,
                forks=request.forks,
                verbosity=request.verbosity or None,
                extravars=dict(request.extravars) or None,
                envvars=_environment(project_dir, ident),
                event_handler=on_event,
                quiet=True,  # progress comes from events; ansible's own output stays in `stdout`
                suppress_env_files=True,  # runner would otherwise write env/, extravars, passwords to disk
                **_ansible_options(request, private_dir),
            )
    finally:
        if reporter is not None:
            reporter.stop()

    result = RunResult(
        status=str(runner.status),
        rc=int(runner.rc),
        hosts=tracker.stats(),
        failures=tracker.failures(),
        changes=tracker.changes,
        artifact_dir=artifact_dir,
        started=started,
        finished=datetime.now(UTC),
        custom_stats=tracker.custom_stats,
        outcomes=tracker.outcomes(str(runner.status)),
        notices=tuple(tracker.notices),
    )
    if result.needs_ansible_messages:
        errors = ansible_messages(
            *("\n".join(stretch) for stretch in messages),
            secrets=_secret_strings(request.secret_extravars),
            hides_source=lambda path: _hides_source(project_dir / path),
        )
        result = replace(result, errors=tuple(errors))
    summary = {"request": request.to_record(), "ansible_core": ansible_version, **result.to_dict()}
    (artifact_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return result


def _check_inputs(request: RunRequest, project_dir: Path) -> None:
    # ansible-runner would read a missing inventory path as inline inventory text, and a missing
    # ansible.cfg would silently fall back to defaults: fail early instead.
    for label, path in (
        ("playbook", request.playbook),
        ("inventory", request.inventory),
        ("vault password file", request.vault_password_file),
        ("ansible.cfg", project_dir / "ansible.cfg"),
    ):
        if path is not None and not path.exists():
            raise FileNotFoundError(f"{label} not found: {path}")


def _secret_strings(value: Any) -> Iterator[str]:
    """Every scalar inside a secret extravar value, as text."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _secret_strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_strings(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _hides_source(path: Path) -> bool:
    """Whether ansible's excerpt of `path` must not be shown: vault-encrypted, or unreadable now
    (the secret extravars file is deleted after the run), so nothing proves it was plain text."""
    try:
        with path.open("rb") as file:
            return file.read(len(b"$ANSIBLE_VAULT")) == b"$ANSIBLE_VAULT"
    except (OSError, ValueError):  # ValueError: a path ansible printed that no file can have
        return True


def _environment(project_dir: Path, ident: str) -> dict[str, str]:
    env = {
        # Explicit, because ansible ignores ansible.cfg in a world-writable cwd.
        "ANSIBLE_CONFIG": str(project_dir / "ansible.cfg"),
        # The run's name in each host's lock (llm_host's lock.yml), so a refused run names this folder.
        "LLMFLEET_RUN_ID": ident,
        # Artifacts are read later as text; colour codes would only get in the way.
        "ANSIBLE_NOCOLOR": "1",
    }
    # Run the ansible-playbook installed next to this interpreter (the venv's), not whichever is
    # first on PATH: it must be the ansible that encrypted the secret vars, and the venv may not
    # be activated when invoke runs.
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "ansible-playbook").exists():
        env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def _ansible_options(request: RunRequest, private_dir: Path) -> dict[str, Any]:
    """ansible_runner.run arguments for what it has no parameter of its own: modes, vaults, secrets."""
    args: list[str] = []
    passwords: dict[str, str] = {}
    if request.check:
        args.append("--check")
    if request.diff:
        args.append("--diff")
    if request.vault_password_file is not None:
        args += ["--vault-password-file", str(request.vault_password_file)]
    if request.secret_extravars:
        password = secrets.token_hex(32)
        secret_file = private_dir / "secret-extravars.yml"
        # JSON is YAML, and refuses values ansible could not read back.
        plaintext = json.dumps(dict(request.secret_extravars))
        # Imported here: ansible's vault module costs a tenth of a second to import, and most runs
        # have no secrets (bench/run wrapper measures the command's start).
        from ansible.parsing.vault import VaultLib, VaultSecret

        vault = VaultLib([(SECRET_VAULT_ID, VaultSecret(password.encode()))])
        secret_file.write_bytes(vault.encrypt(plaintext, vault_id=SECRET_VAULT_ID))
        args += ["-e", f"@{secret_file}", "--vault-id", f"{SECRET_VAULT_ID}@prompt"]
        passwords[_VAULT_PROMPT] = password
    if request.become_password is not None:
        args.append("--ask-become-pass")
        passwords[_BECOME_PROMPT] = request.become_password
    options: dict[str, Any] = {"cmdline": shlex.join(args)} if args else {}
    if passwords:
        options["passwords"] = passwords
    return options


@contextmanager
def _private_data_dir() -> Iterator[Path]:
    """A fresh 0700 directory for runner's inputs (mkdtemp's mode), removed whatever happens."""
    path = Path(tempfile.mkdtemp(prefix="llmfleet-run-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Restore SIGINT/SIGTERM handlers after the run.

    ansible_runner.run installs its own (they turn Ctrl-C into a clean "canceled" run that kills
    ansible-playbook) and never puts the previous ones back, so Ctrl-C would stop working in the
    calling program after its first run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # runner installs no handlers off the main thread either
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
