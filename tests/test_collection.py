"""The checkout as the collection llmfleet.llmfleet: built, installed away from the checkout, and used
by a team's own playbook by fully qualified names, as README's "Use it from your own playbooks" says.

Everything runs the real ansible-galaxy, ansible-playbook and ansible-lint. The consumer directory
lies outside the checkout and has its own ansible.cfg, whose collections_path names only the
temporary install: nothing is found through the checkout's own link (playbooks/collections).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from llmfleet import collection

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
FIXTURES = ROOT / "tests" / "fixtures" / "bad_inventories"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collection.build(ROOT, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Path:
    """A team's Ansible directory: the collection installed from the tarball, its own config."""
    home = tmp_path_factory.mktemp("team")
    installed = collection.install(str(built), home / "collections")
    assert installed == home / "collections" / "ansible_collections" / "llmfleet" / "llmfleet"
    (home / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {home / 'collections'}\n"
                                      "inject_facts_as_vars = false\nretry_files_enabled = false\n")
    return home


def _playbook(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(home / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    return subprocess.run([str(BIN / "ansible-playbook"), *args], cwd=home, env=env, capture_output=True, text=True,
                          check=False)


def _laptop_inventory(home: Path, name: str, **variables: object) -> Path:
    path = home / name
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **variables}
    path.write_text(yaml.safe_dump({"dev_laptops": {"hosts": {"localhost": host}}}))
    return path


def _failures(done: subprocess.CompletedProcess[str]) -> list[str]:
    """Each failed task's message, from the json callback's report."""
    report = json.loads(done.stdout[done.stdout.index("{"):])
    return [result.get("msg", "") for play in report["plays"] for task in play["tasks"]
            for result in task["hosts"].values() if result.get("failed")]


def test_the_version_is_the_python_package_s_and_the_ansible_core_range_holds_this_one() -> None:
    galaxy = collection.metadata(ROOT)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'\nversion = "{galaxy.version}"\n' in pyproject
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    from ansible.module_utils.compat.version import LooseVersion
    from ansible.release import __version__
    low, high = (part.strip().lstrip("<>=") for part in runtime["requires_ansible"].split(","))
    assert LooseVersion(low) <= LooseVersion(__version__) < LooseVersion(high)


def test_the_tarball_holds_what_a_consumer_runs_and_nothing_of_the_checkout_s_own(built: Path) -> None:
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    tops = {name.split("/")[0] for name in names}
    assert {"roles", "playbooks", "plugins", "meta", "MANIFEST.json", "README.md"} <= tops
    for absent in ("tests", "molecule", "src", "runs", ".cache", ".venv", "bench", "tasks.py",
                   "testbed", "scripts", "pyproject.toml"):
        assert absent not in tops, absent
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    for role in ROLES:
        assert f"roles/{role}/tasks/main.yml" in names and f"roles/{role}/meta/argument_specs.yml" in names
        # Roles in a collection cannot carry plugins: they live at collection level.
        assert not any(name.startswith((f"roles/{role}/filter_plugins", f"roles/{role}/library")) for name in names)
    filters = {p.name for p in (ROOT / "plugins" / "filter").glob("*.py")}
    modules = {p.name for p in (ROOT / "plugins" / "modules").glob("*.py")}
    assert {f"plugins/filter/{f}" for f in filters} | {f"plugins/modules/{m}" for m in modules} <= names
    assert "playbooks/site.yml" in names and "playbooks/preflight.yml" in names


def test_a_team_s_playbook_uses_every_role_by_its_name(consumer: Path) -> None:
    own = consumer / "own.yml"
    own.write_text(yaml.safe_dump([{"name": "Our servers", "hosts": "all", "gather_facts": False,
                                    "roles": [f"llmfleet.llmfleet.{role}" for role in ROLES]}], sort_keys=False))
    done = _playbook(consumer, "-i", "localhost,", "--syntax-check", "own.yml")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("playbook", ["site", "laptop", "team_server", "workstation", "uninstall", "models"])
def test_the_collection_s_playbooks_run_by_name(consumer: Path, playbook: str) -> None:
    done = _playbook(consumer, "-i", "localhost,", "--syntax-check", f"llmfleet.llmfleet.{playbook}")
    assert done.returncode == 0, done.stderr


def test_a_role_s_preflight_runs_from_the_installed_collection(consumer: Path) -> None:
    # The team's own play pretends systemd (this machine has none as PID 1), then runs llm_host's
    # detection and the Ollama and Continue preflights by their names: filters and modules come
    # from the installed collection. A good laptop passes and changes nothing.
    (consumer / "systemd_facts.yml").write_text((FIXTURES / "systemd_facts.yml").read_text())
    own = [{"name": "Pretend systemd", "ansible.builtin.import_playbook": "systemd_facts.yml"},
           {"name": "Our laptops, checked with llmfleet's preflights", "hosts": "dev_laptops", "gather_facts": False,
            "tasks": [
                {"name": "Detect", "ansible.builtin.include_role": {
                    "name": "llmfleet.llmfleet.llm_host", "tasks_from": "detect", "public": True}},
                {"name": "Check the host", "ansible.builtin.include_role": {
                    "name": "llmfleet.llmfleet.llm_host", "tasks_from": "preflight"}},
                {"name": "Check Continue", "ansible.builtin.include_role": {
                    "name": "llmfleet.llmfleet.continue", "tasks_from": "preflight", "public": True}},
                {"name": "Check Ollama", "ansible.builtin.include_role": {
                    "name": "llmfleet.llmfleet.ollama", "tasks_from": "preflight"}}]}]
    (consumer / "check.yml").write_text(yaml.safe_dump(own, sort_keys=False))
    good = _laptop_inventory(consumer, "good.yml", continue_users=["root"], ollama_models=["llama3.2"])
    done = _playbook(consumer, "-i", str(good), "check.yml")
    assert done.returncode == 0, _failures(done) or done.stderr
    stats = json.loads(done.stdout[done.stdout.index("{"):])["stats"]["localhost"]
    assert stats["changed"] == 0 and stats["ok"] > 5
    # The same play on a misspelled variable and a string for a list stops with the preflight's words.
    bad = _laptop_inventory(consumer, "bad.yml", continue_users=["root"], olama_models=["llama3.2"])
    done = _playbook(consumer, "-i", str(bad), "check.yml")
    assert done.returncode != 0 and any("misspelling of ollama_models" in msg for msg in _failures(done)), done.stdout[-2000:]
    bad = _laptop_inventory(consumer, "bad2.yml", continue_users=["root"], ollama_models="qwen3")
    done = _playbook(consumer, "-i", str(bad), "check.yml")
    assert done.returncode != 0 and any("ollama_models" in msg and "list" in msg for msg in _failures(done))


def test_installed_from_the_repository_s_git_url(tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # The committed tree of HEAD, as a team installs from its own git server.
    installed = collection.install(f"git+file://{ROOT},HEAD", tmp_path / "collections")
    assert (installed / "roles" / "ollama" / "tasks" / "main.yml").is_file()
    assert (installed / "plugins" / "filter" / "ollama_models.py").is_file()
    assert not (installed / "tests").exists() and not (installed / "molecule").exists()


def test_ansible_lint_s_collection_checks_pass_on_the_built_content(consumer: Path) -> None:
    installed = consumer / "collections" / "ansible_collections" / "llmfleet" / "llmfleet"
    config = consumer / "lint.yml"
    # The checkout's own .ansible-lint, less its paths (the built content has none of them).
    settings = yaml.safe_load((ROOT / ".ansible-lint").read_text())
    settings.pop("exclude_paths", None)
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_COLLECTIONS_PATH": str(consumer / "collections")}
    done = subprocess.run([str(BIN / "ansible-lint"), "-c", str(config), "--offline", "--nocolor"], cwd=installed,
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Passed" in done.stdout + done.stderr
