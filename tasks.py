"""llmfleet's command line: `invoke --list` shows every task, `invoke --help TASK` its options.

Thin on purpose: each task parses its options and calls the llmfleet package.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from invoke import Collection, Context, Exit, task
from rich.console import Console

from llmfleet import bundle as llmbundle
from llmfleet import cli, lanes, testbed
from llmfleet import collection as llmcollection
from llmfleet import docs as llmdocs
from llmfleet import ee as llmee
from llmfleet.project import Project

PROJECT = Project.find()
console = Console()

# Options several tasks share, with one wording.
_HELP = {
    "inventory": "Inventory file or directory (default: inventory/local, this machine).",
    "vault_password_file": "File (or script) that gives the inventory's ansible-vault password.",
    "playbook": "Playbook name in playbooks/ or a path (default: site).",
    "ask_become_pass": "Ask for the sudo password (or read $LLMFLEET_BECOME_PASSWORD); never on disk or argv.",
}
# The longest scenarios (about 20, 15 and 10 minutes here), started first so that the lanes of
# `invoke test` end close together; the others follow in name order.
_HEAVY_SCENARIOS = ("fleet", "workstation", "vllm")
_LINT_STEPS = [
    ("yamllint", [cli.venv_tool("yamllint"), "--strict", "."]),
    ("ansible-lint", [cli.venv_tool("ansible-lint")]),
]


def _exit_with(name: str, run: Callable[[], int]) -> None:
    """Run a command; bad options exit 64 with the reason, any other non-zero code is the task's."""
    try:
        code = run()
    except (cli.UsageError, FileNotFoundError) as error:
        raise Exit(f"{name}: {error}", code=64) from error
    if code:
        raise Exit(code=int(code))


@task(
    iterable=["tags", "skip_tags", "extra_vars", "secret"],
    incrementable=["verbose"],
    help={
        "host": "Provision only this inventory host.",
        "group": "Provision only this inventory group.",
        "inventory": _HELP["inventory"],
        "check": "Dry run: report what would change, change nothing.",
        "diff": "Show the differences in changed files and templates.",
        "tags": "Run only tasks with these tags (repeatable, or comma-separated).",
        "skip_tags": "Skip tasks with these tags (repeatable, or comma-separated).",
        "extra_vars": "KEY=VALUE (YAML value) or @FILE.yml; repeatable. Not for secrets: see --secret.",
        "secret": "Secret variable NAME, read from $LLMFLEET_SECRET_<NAME> or asked for; never on disk or argv.",
        "vault_password_file": _HELP["vault_password_file"],
        "ask_become_pass": _HELP["ask_become_pass"],
        "playbook": _HELP["playbook"],
        "forks": "Hosts worked on in parallel (default 0: ansible.cfg's forks).",
        "verbose": "More ansible output in the run's artifacts (-v, -vv, ...).",
    },
)
def provision(
    c: Context,
    host: str | None = None,
    group: str | None = None,
    inventory: str | None = None,
    check: bool = False,
    diff: bool = False,
    tags: list[str] | None = None,
    skip_tags: list[str] | None = None,
    extra_vars: list[str] | None = None,
    secret: list[str] | None = None,
    vault_password_file: str | None = None,
    ask_become_pass: bool = False,
    playbook: str = "site",
    forks: int = 0,
    verbose: int = 0,
) -> None:
    """Provision hosts (default: this machine) with live progress and a per-host summary."""
    _exit_with("provision", lambda: cli.provision(
        PROJECT, playbook=playbook, inventory=inventory, host=host, group=group, check=check,
        diff=diff, tags=tags or [], skip_tags=skip_tags or [], extra_vars=extra_vars or [],
        secrets=secret or [], vault_password_file=vault_password_file, ask_become_pass=ask_become_pass,
        forks=forks or None,
        verbose=verbose, console=console,
    ).exit_code)


@task(
    iterable=["tags", "extra_vars"],
    help={
        "host": "Check only this inventory host.",
        "group": "Check only this inventory group.",
        "inventory": _HELP["inventory"],
        "tags": "Check only tasks with these tags (repeatable, or comma-separated).",
        "extra_vars": "KEY=VALUE (YAML value) or @FILE.yml; repeatable.",
        "vault_password_file": _HELP["vault_password_file"],
        "ask_become_pass": _HELP["ask_become_pass"],
        "playbook": _HELP["playbook"],
    },
)
def drift(
    c: Context,
    host: str | None = None,
    group: str | None = None,
    inventory: str | None = None,
    tags: list[str] | None = None,
    extra_vars: list[str] | None = None,
    vault_password_file: str | None = None,
    ask_become_pass: bool = False,
    playbook: str = "site",
) -> None:
    """Report what a provision run would change, per host; exit 2 on drift, 0 when clean."""
    _exit_with("drift", lambda: cli.drift(
        PROJECT, playbook=playbook, inventory=inventory, host=host, group=group, tags=tags or [],
        extra_vars=extra_vars or [], vault_password_file=vault_password_file, ask_become_pass=ask_become_pass,
        console=console,
    )[1])


@task(
    help={
        "host": "Only this inventory host.",
        "group": "Only this inventory group.",
        "inventory": _HELP["inventory"],
        "vault_password_file": _HELP["vault_password_file"],
        "ask_become_pass": _HELP["ask_become_pass"],
        "pulled": "Every host in pull mode: its last report to the team server (time, commit, result, age), "
                  "read on the server; the laptops are not reached.",
    },
)
def status(
    c: Context,
    host: str | None = None,
    group: str | None = None,
    inventory: str | None = None,
    vault_password_file: str | None = None,
    ask_become_pass: bool = False,
    pulled: bool = False,
) -> None:
    """Per host: services, installed vs pinned versions, models present vs declared (changes nothing)."""
    _exit_with("status", lambda: cli.status(PROJECT, inventory=inventory, host=host, group=group,
                                            vault_password_file=vault_password_file,
                                            ask_become_pass=ask_become_pass, pulled=pulled, console=console)[1])


@task(
    iterable=["model", "arch", "python_version", "python_platform", "cpython_platform", "apt_suite"],
    help={
        "inventory": _HELP["inventory"],
        "vault_password_file": _HELP["vault_password_file"],
        "out": "The bundle's directory (created; a second run keeps what it holds).",
        "releases_from": "Where Ollama releases come from (default GitHub's, unless the inventory names a mirror).",
        "models_from": "A models directory or a mirror of one that has the inventory's Ollama models.",
        "hf_from": "A Hugging Face cache (HF_HOME or its hub/) with the models vLLM servers name by id.",
        "vsix_from": "The Continue VSIX (file or URL) when the inventory's continue_vscode_extension_vsix is the mirror.",
        "model": "An Ollama model to add besides the inventory's ollama_models (repeatable).",
        "arch": "Linux architecture of the Ollama releases and the distribution packages (repeatable; default amd64).",
        "apt": "Carry the distribution packages the roles install with apt, with their dependencies, as an apt "
               "repository (--no-apt leaves them out).",
        "apt_suite": "Distribution release of the hosts (repeatable; default this controller's, e.g. bookworm).",
        "apt_sources": "An apt sources file (one-line or deb822) of the hosts' distribution, for one --apt-suite "
                       "(default: this controller's own sources of its release, renamed for --apt-suite).",
        "python": "Carry the Python packages the hosts install as a package index (--no-python leaves them out).",
        "python_version": "Python X.Y the hosts' packages are for (repeatable; default this controller's): "
                          "3.11 for Debian 12's system Python, llm_host_python_version's X.Y for the managed one.",
        "python_platform": "Hosts' platform when not this controller's (repeatable; uv's names): "
                           "x86_64-manylinux_2_<N>, aarch64-manylinux_2_<N> (N: hosts' glibc), aarch64-apple-darwin.",
        "cpython": "Carry the CPython builds of the hosts' llm_host_python_version, checked by uv, for "
                   "llm_host_python_install_mirror (--no-cpython leaves them out).",
        "cpython_platform": "Hosts' platform for the CPython builds (repeatable; default x86_64-unknown-linux-gnu; "
                            "or aarch64-unknown-linux-gnu).",
        "cpython_from": "A URL or directory in place of uv's download base for the CPython builds "
                        "(<base>/<build>/<file>, e.g. the team's mirror of python-build-standalone's releases).",
    },
)
def bundle(
    c: Context,
    out: str,
    inventory: str | None = None,
    vault_password_file: str | None = None,
    releases_from: str = "",
    models_from: str = "",
    vsix_from: str = "",
    model: list[str] | None = None,
    arch: list[str] | None = None,
    python: bool = True,
    python_version: list[str] | None = None,
    python_platform: list[str] | None = None,
    cpython: bool = True,
    cpython_platform: list[str] | None = None,
    cpython_from: str = "",
    hf_from: str = "",
    apt: bool = True,
    apt_suite: list[str] | None = None,
    apt_sources: str = "",
) -> None:
    """One directory with what an offline fleet downloads (releases, models, VSIX, Python, CPython, apt) and digests."""
    try:
        llmbundle.make(PROJECT.root, inventory=inventory or str(PROJECT.root / "inventory/local"), out=out,
                       vault_password_file=vault_password_file, releases_from=releases_from,
                       models_from=models_from, vsix_from=vsix_from, models=model or [], arches=arch or ["amd64"],
                       python=python, python_versions=python_version or [],
                       python_platforms=python_platform or [], cpython=cpython,
                       cpython_platforms=cpython_platform or [], cpython_from=cpython_from, hf_from=hf_from,
                       apt=apt, apt_suites=apt_suite or [], apt_sources=apt_sources, log=console.print)
    except llmbundle.BundleError as error:
        raise Exit(f"bundle: {error}", code=1) from error


@task
def lint(c: Context) -> None:
    """yamllint and ansible-lint (production profile) over the whole project."""
    _stages(_LINT_STEPS)


@task(help={"check": "Only check the READMEs are current; exit 1 when not."})
def docs(c: Context, check: bool = False) -> None:
    """Regenerate each role README's variables table from its meta/argument_specs.yml."""
    stale = [role.name for role in sorted(PROJECT.root.glob("roles/*")) if (role / "README.md").exists()
             and (llmdocs.is_stale(role) if check else llmdocs.update(role))]
    for name in stale:
        console.print(f"roles/{name}/README.md {'is out of date' if check else 'updated'}")
    if check and stale:
        raise Exit(code=1)


@task(help={"output": "Directory for the tarball (default: dist/)."})
def collection(c: Context, output: str = "dist") -> None:
    """Build the Ansible collection llmfleet.llmfleet from this checkout, for ansible-galaxy collection install."""
    tarball = llmcollection.build(PROJECT.root, PROJECT.root / output)
    console.print(f"{tarball}\ninstall: ansible-galaxy collection install {tarball}")


@task(
    iterable=["suite"],
    help={"suite": "Debian suite to build an image for (repeatable; default: bookworm).",
          "force": "Rebuild images even when the cached ones match their inputs."},
)
def testbed_(c: Context, suite: list[str] | None = None, force: bool = False) -> None:
    """Prepare the container test bed: podman + runc, containers.conf, systemd images (cached)."""
    with cli.stage("testbed", console):
        testbed.prepare(PROJECT.root, suites=tuple(suite or ["bookworm"]), force=force, log=console.print)


@task(
    iterable=["scenario"],
    help={"scenario": "Molecule scenario to run (repeatable; default: all of molecule/*).",
          "lint": "Run the linters first (default: yes).",
          "unit": "Run the Python unit tests (default: yes).",
          "jobs": "Scenarios run side by side (default 2; 1 runs them one after another, output live)."},
)
def test(c: Context, scenario: list[str] | None = None, lint: bool = True, unit: bool = True, jobs: int = 2) -> None:
    """Everything CI runs: lint, unit tests, then each molecule scenario in containers."""
    steps = []
    if lint:
        steps += _LINT_STEPS
    if unit:
        # On every core, one test file per worker (a module's fixtures run once: the bad-inventory
        # run); --durations: the slowest tests in every CI log, where CI time is spent.
        steps.append(("pytest", [cli.venv_tool("python"), "-m", "pytest", "-q", "-n", "auto", "--dist", "loadfile",
                                 "--durations=15"]))
    _stages(steps)
    scenarios = scenario or PROJECT.scenarios()
    if not scenarios:
        return
    # The images the scenarios name (bookworm; molecule/workstation's second host also trixie).
    with cli.stage("testbed", console):
        testbed.prepare(PROJECT.root, suites=testbed.scenario_suites(PROJECT.root, scenarios), log=console.print,
                        networks=testbed.scenario_networks(PROJECT.root, scenarios))
    env = testbed.test_env(PROJECT.root)
    steps = [(f"molecule {name}", [cli.venv_tool("molecule"), "test", "-s", name])
             for name in lanes.heaviest_first(scenarios, _HEAVY_SCENARIOS)]
    if jobs <= 1 or len(steps) == 1:
        _stages(steps, env)
        return
    outcomes = lanes.run_lanes([lanes.Stage(name, argv) for name, argv in steps], jobs=jobs, cwd=PROJECT.root,
                               logs=PROJECT.root / ".cache" / "test-logs", console=console, env=env)
    failed = [o.name for o in outcomes if o.returncode]
    skipped = [name for name, _ in steps if name not in {o.name for o in outcomes}]
    if failed:
        raise Exit(f"{', '.join(failed)} failed" + (f"; not started: {', '.join(skipped)}" if skipped else ""), code=1)


@task(
    iterable=["build_arg"],
    help={
        "base_image": "Build the image from this base (build argument EE_BASE_IMAGE; Python >= 3.11). "
                      "Without it, only the build context is written.",
        "build_arg": "Another build argument KEY=VALUE, repeatable (PKGMGR=/usr/bin/apt-get for Debian bases).",
        "tag": f"Name of the built image (default: {llmee.DEFAULT_TAG}).",
        "host_pip": "Build with this machine's pip settings (indexes, find-links, CA); default: yes.",
    },
)
def ee(
    c: Context,
    base_image: str | None = None,
    build_arg: list[str] | None = None,
    tag: str = llmee.DEFAULT_TAG,
    host_pip: bool = True,
) -> None:
    """Execution environment for AWX / Automation Platform: the ansible-builder context, or the image (podman)."""
    cache = llmee.cache_dir(PROJECT.root)
    builder = cli.venv_tool("ansible-builder")

    def run() -> int:
        if not base_image:
            if build_arg or tag != llmee.DEFAULT_TAG:
                raise cli.UsageError("--build-arg and --tag build an image: give --base-image too")
            _stages([("ansible-builder create", llmee.create_argv(builder, PROJECT.root, cache / "context"))])
            console.print(f"build context: {cache / 'context'}; build it with --build-arg {llmee.BASE_IMAGE_ARG}=IMAGE")
            return 0
        argv = llmee.build_argv(builder, PROJECT.root, cache / "context", base_image=base_image, tag=tag,
                                build_args=llmee.parse_build_args(build_arg or []),
                                volumes=llmee.stage_pip(cache / "pip") if host_pip else ())
        _stages([("ansible-builder build", argv)])
        return 0

    _exit_with("ee", run)

def _stages(steps: list[tuple[str, list[str]]], env: dict[str, str] | None = None) -> None:
    for name, argv in steps:
        with cli.stage(name, console):
            try:
                cli.run(argv, cwd=PROJECT.root, env=env)
            except subprocess.CalledProcessError as error:
                raise Exit(f"{name} failed (exit {error.returncode})", code=1) from error


ns = Collection(provision, drift, status, bundle, lint, test, docs, ee, collection)
ns.add_task(testbed_, name="testbed")
