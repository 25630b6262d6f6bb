"""Which roles a kind of host runs is written once, in llm_host's map (_llm_host_kind_roles in
roles/llm_host/vars/main.yml); the playbooks follow it. The preflight and models.yml read the map at
run time; the kind playbooks and component playbooks name their roles and groups statically (static
imports keep each role's variables visible to the roles before it, which the Ollama role reads for
its clients' models), so this test holds them to the map.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
KIND_ROLES: dict[str, list[str]] = yaml.safe_load((ROOT / "roles/llm_host/vars/main.yml").read_text())[
    "_llm_host_kind_roles"]
KIND_PLAYBOOKS = {"gpu_servers": "team_server.yml", "dev_laptops": "laptop.yml", "workstations": "workstation.yml"}
COMPONENTS = {"ollama": "ollama.yml", "vllm": "vllm.yml", "open_webui": "open_webui.yml", "continue": "continue.yml"}


def _tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every task, blocks opened (block, rescue and always in order)."""
    found = []
    for task in tasks:
        if "block" in task:
            found += _tasks(task["block"]) + _tasks(task.get("rescue", [])) + _tasks(task.get("always", []))
        else:
            found.append(task)
    return found


def _imported_roles(play: dict[str, Any]) -> list[str]:
    """The roles a play imports whole (not an entry point such as the lock)."""
    return [task["ansible.builtin.import_role"]["name"] for task in _tasks(play["tasks"])
            if "ansible.builtin.import_role" in task and "tasks_from" not in task["ansible.builtin.import_role"]]


def test_the_map_names_every_kind_and_real_roles() -> None:
    assert set(KIND_ROLES) == set(KIND_PLAYBOOKS)
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file()}
    for kind, names in KIND_ROLES.items():
        assert names[0] == "llm_host" and "ollama" in names and set(names) <= roles, kind


@pytest.mark.parametrize("kind", sorted(KIND_PLAYBOOKS))
def test_each_kind_playbook_runs_the_roles_of_its_kind_in_the_map_s_order(kind: str) -> None:
    [play] = yaml.safe_load((PLAYBOOKS / KIND_PLAYBOOKS[kind]).read_text())
    assert _imported_roles(play) == KIND_ROLES[kind]


@pytest.mark.parametrize("role", sorted(COMPONENTS))
def test_each_component_playbook_targets_the_kinds_that_run_its_role(role: str) -> None:
    [play] = yaml.safe_load((PLAYBOOKS / COMPONENTS[role]).read_text())
    kinds = {kind for kind, names in KIND_ROLES.items() if role in names}
    assert set(play["hosts"].split(":")) == kinds
    assert role in _imported_roles(play)


def test_the_preflight_checks_each_role_where_the_map_runs_it() -> None:
    """One include checks the settings of every role the host's kind runs (llm_host's map), Ollama last."""
    [play] = yaml.safe_load((PLAYBOOKS / "preflight.yml").read_text())
    [check] = [task for task in _tasks(play["tasks"])
               if task.get("ansible.builtin.include_role", {}).get("tasks_from") == "settings"]
    var = check["loop_control"]["loop_var"]
    assert check["ansible.builtin.include_role"]["name"] == "{{ %s }}" % var
    match = re.fullmatch(r"\{\{ (\[.*\]) \| select\('in', _llm_host_roles\) \| list \}\}", check["loop"])
    assert match, check["loop"]
    roles = ast.literal_eval(match.group(1))
    assert set(roles) == {name for names in KIND_ROLES.values() for name in names} - {"llm_host"}
    assert roles[-1] == "ollama"


def test_models_yml_converges_vllm_where_the_map_runs_it() -> None:
    [play] = [p for p in yaml.safe_load((PLAYBOOKS / "models.yml").read_text()) if "tasks" in p]
    [vllm] = [t for t in _tasks(play["tasks"]) if t.get("ansible.builtin.include_role", {}).get("name") == "vllm"]
    assert vllm["when"] == "'vllm' in _llm_host_roles"


def _role_calls(path: Path) -> list[dict[str, Any]]:
    """Every import_role and include_role of a playbook's plays."""
    calls = []
    for play in yaml.safe_load(path.read_text()):
        for task in _tasks(play.get("tasks", [])):
            for key in ("ansible.builtin.import_role", "ansible.builtin.include_role"):
                if key in task:
                    calls.append(task[key])
    return calls


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml") if p.name != "uninstall.yml"))
def test_the_playbooks_leave_argument_specs_to_the_preflight(playbook: str) -> None:
    """The preflight checks every variable against every role's specs (llm_host's first check), and
    each role's preflight.yml validates its main options when it runs on its own: Ansible's implicit
    validation at each role's start would be the same check again, a task and a spec load per role.
    uninstall.yml keeps it (the uninstall entry points are not in a preflight)."""
    calls = _role_calls(PLAYBOOKS / playbook)
    assert all(call.get("rolespec_validate") is False for call in calls), [c["name"] for c in calls]


@pytest.mark.parametrize("role", sorted({name for names in KIND_ROLES.values() for name in names} - {"llm_host"}))
def test_each_role_validates_its_main_options_in_its_preflight(role: str) -> None:
    """preflight.yml (a role run on its own) validates, then runs the settings checks; the preflight play,
    whose first check already held the inventory against every spec, runs the settings checks alone."""
    [first, settings] = yaml.safe_load((ROOT / "roles" / role / "tasks" / "preflight.yml").read_text())
    spec = first["ansible.builtin.validate_argument_spec"]["argument_spec"]
    assert "meta/argument_specs.yml" in spec and "['argument_specs']['main']['options']" in spec
    assert settings["ansible.builtin.import_tasks"] == "settings.yml"
    assert not any("ansible.builtin.validate_argument_spec" in task
                   for task in yaml.safe_load((ROOT / "roles" / role / "tasks" / "settings.yml").read_text()))
    main = yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text())
    assert any(t.get("ansible.builtin.include_tasks", {}).get("file") == "preflight.yml"
               and t.get("when") == "not (_llmfleet_preflight_passed | default(false))" for t in main), role
