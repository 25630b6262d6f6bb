"""Playbook scaffolding written once.

- The host lock frame is playbooks/locked_play.yml: every playbook that changes hosts imports it with
  its settings, and its own tasks live in playbooks/tasks/.
- Which roles a kind of host runs is llm_host's map (_llm_host_kind_roles in
  roles/llm_host/vars/main.yml); the playbooks follow it. The preflight and models.yml read the map at
  run time; the kind playbooks' and component playbooks' tasks name their roles and groups statically
  (static imports keep each role's variables visible to the roles before it, which the Ollama role
  reads for its clients' models), so this test holds them to the map.
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
KIND_PLAYBOOKS = {"llm_mirrors": "mirror.yml", "gpu_servers": "team_server.yml", "dev_laptops": "laptop.yml",
                  "workstations": "workstation.yml"}
# The kinds that serve models (every one runs Ollama); the mirror serves files.
SERVICE_KINDS = {"gpu_servers", "dev_laptops", "workstations"}
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


FRAME = "locked_play.yml"


def _plays(playbook: str) -> list[dict[str, Any]]:
    """A playbook's plays, each import of the lock frame read as the play it makes: its hosts, its
    kind, and its tasks (playbooks/tasks/<name>.yml); an import of another playbook is left as it is."""
    plays = []
    for entry in yaml.safe_load((PLAYBOOKS / playbook).read_text()):
        if entry.get("ansible.builtin.import_playbook") == FRAME:
            settings = entry["vars"]
            tasks = yaml.safe_load((PLAYBOOKS / "tasks" / f"{settings['_llmfleet_tasks']}.yml").read_text())
            plays.append({"name": settings["_llmfleet_play"], "hosts": settings["_llmfleet_hosts"],
                          "kind": settings.get("_llmfleet_kind"), "tasks": tasks})
        else:
            plays.append(entry)
    return plays


def _imported_roles(play: dict[str, Any]) -> list[str]:
    """The roles a play imports whole (not an entry point such as the lock)."""
    return [task["ansible.builtin.import_role"]["name"] for task in _tasks(play["tasks"])
            if "ansible.builtin.import_role" in task and "tasks_from" not in task["ansible.builtin.import_role"]]


def _locks(tasks: list[dict[str, Any]]) -> list[str]:
    return [task["ansible.builtin.import_role"]["tasks_from"] for task in _tasks(tasks)
            if task.get("ansible.builtin.import_role", {}).get("tasks_from") in ("lock", "unlock")]


def test_the_lock_frame_is_written_once() -> None:
    """The frame: its kind's hosts only, the lock first, the tasks and the handlers in a block whose
    `always:` releases the lock, so a failed host still frees it."""
    [frame] = yaml.safe_load((PLAYBOOKS / FRAME).read_text())
    leave, lock, block = frame["tasks"]
    assert leave["ansible.builtin.meta"] == "end_host" and "_llmfleet_kind not in group_names" in leave["when"]
    assert lock["ansible.builtin.import_role"] == {"name": "llm_host", "tasks_from": "lock", "rolespec_validate": False}
    body, flush = block["block"]
    assert body["ansible.builtin.import_tasks"] == "tasks/{{ _llmfleet_tasks | default('unset') }}.yml"
    assert flush["ansible.builtin.meta"] == "flush_handlers"
    [unlock] = block["always"]
    assert unlock["ansible.builtin.import_role"]["tasks_from"] == "unlock"
    assert all(task.get("tags") == ["always"] for task in (leave, lock, flush, unlock))


READ_ONLY = {"preflight.yml", "status.yml", "pulled.yml", FRAME}


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml") if p.name not in READ_ONLY))
def test_every_playbook_that_changes_hosts_runs_under_the_frame(playbook: str) -> None:
    """No play writes its own frame: every play is the frame's, or an imported playbook (the preflight,
    a kind's playbook); neither its tasks nor any other take or release the lock themselves."""
    plays = _plays(playbook)
    assert any(play.get("tasks") is not None for play in plays) or playbook == "site.yml"
    for play in plays:
        if "tasks" in play:
            assert "hosts" in play and play["name"], play
            assert not _locks(play["tasks"]), playbook
        else:
            assert "ansible.builtin.import_playbook" in play, play
    for path in (PLAYBOOKS / "tasks").glob("*.yml"):
        assert not _locks(yaml.safe_load(path.read_text())), path.name


def test_the_map_names_every_kind_and_real_roles() -> None:
    assert set(KIND_ROLES) == set(KIND_PLAYBOOKS)
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file()}
    for kind, names in KIND_ROLES.items():
        assert names[0] == "llm_host" and set(names) <= roles, kind
        assert ("ollama" in names) == (kind in SERVICE_KINDS), kind


@pytest.mark.parametrize("kind", sorted(KIND_PLAYBOOKS))
def test_each_kind_playbook_runs_the_roles_of_its_kind_in_the_map_s_order(kind: str) -> None:
    [play] = [p for p in _plays(KIND_PLAYBOOKS[kind]) if "tasks" in p]
    assert play["kind"] == kind
    assert _imported_roles(play) == KIND_ROLES[kind]


@pytest.mark.parametrize("role", sorted(COMPONENTS))
def test_each_component_playbook_targets_the_kinds_that_run_its_role(role: str) -> None:
    [play] = _plays(COMPONENTS[role])
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
    # A kind's own preflight (_llmfleet_preflight_kind: the mirrors', playbooks/mirror.yml) checks that
    # kind's roles; the fleet's, every role of the host's kinds.
    kind_roles = "_llm_host_kind_roles[_llmfleet_preflight_kind] if _llmfleet_preflight_kind is defined else _llm_host_roles"
    match = re.fullmatch(r"\{\{ (\[.*\]) \| select\('in', %s\) \| list \}\}" % re.escape(kind_roles),
                         " ".join(check["loop"].split()))
    assert match, check["loop"]
    roles = ast.literal_eval(match.group(1))
    assert set(roles) == {name for names in KIND_ROLES.values() for name in names} - {"llm_host"}
    assert roles[-1] == "ollama"


def test_the_mirrors_are_checked_and_served_before_the_fleet_is_checked() -> None:
    """site.yml: the mirrors' own preflight and play first (playbooks/mirror.yml), then the fleet's
    preflight, whose offline checks read the mirror, then the kinds that take from it."""
    imports = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((PLAYBOOKS / "site.yml").read_text())]
    assert imports == ["mirror.yml", "preflight.yml", "team_server.yml", "laptop.yml", "workstation.yml"]
    preflight, play = _plays("mirror.yml")
    assert preflight == {"name": "Check the mirrors' inventory", "ansible.builtin.import_playbook": "preflight.yml",
                         "vars": {"_llmfleet_preflight_kind": "llm_mirrors"}}
    assert play["kind"] == "llm_mirrors" and "'llm_mirrors:" in play["hosts"]


def test_models_yml_converges_vllm_where_the_map_runs_it() -> None:
    [play] = [p for p in _plays("models.yml") if "tasks" in p]
    [vllm] = [t for t in _tasks(play["tasks"]) if t.get("ansible.builtin.include_role", {}).get("name") == "vllm"]
    assert vllm["when"] == "'vllm' in _llm_host_roles"


def _role_calls(path: Path) -> list[dict[str, Any]]:
    """Every import_role and include_role of a playbook's plays."""
    calls = []
    for play in _plays(path.name):
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


def test_the_frame_run_alone_stops_before_changing_anything() -> None:
    """Without a playbook's settings the frame's tasks are playbooks/tasks/unset.yml: one failure that
    names what to run instead."""
    [stop] = yaml.safe_load((PLAYBOOKS / "tasks" / "unset.yml").read_text())
    assert "ansible.builtin.fail" in stop and "playbooks/site.yml" in stop["ansible.builtin.fail"]["msg"]
