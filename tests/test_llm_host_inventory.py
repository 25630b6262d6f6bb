"""The inventory check of names and types (plugins/filter/llm_host_inventory.py).

The bad-inventory cases run it through the real preflight (tests/test_bad_inventories.py); these tests
pin its rules one by one, and run it over the project's own inventories, which must pass.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from _modules import ROOT, load_module
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultSecret
from ansible.vars.manager import VariableManager

inv = load_module("plugins/filter/llm_host_inventory.py")


def problems(**host_vars: Any) -> list[str]:
    return inv.inventory_problems(host_vars, host_vars.get("llm_host_own_variables", []))


def test_every_role_declares_its_options() -> None:
    declared = inv.declared_options()
    for name in ("ollama_models", "open_webui_port", "vllm_models", "continue_users", "llm_host_expose",
                 "llm_firewall_ports", "llm_host_own_variables", "llm_host_dropins_units"):
        assert name in declared
    assert declared["vllm_models"]["options"]["port"]["type"] == "int"


@pytest.mark.parametrize(("a", "b", "expected"), [("ollama", "olama", 1), ("port", "host", 2), ("abc", "abc", 0),
                                                  ("short", "a-much-longer-name", 3)])
def test_distance_stops_past_its_limit(a: str, b: str, expected: int) -> None:
    assert inv.distance(a, b, limit=2) == expected


@pytest.mark.parametrize(("name", "guess"), [
    ("continue_user", "continue_users"), ("vllm_model", "vllm_models"), ("llm_host_exposed", "llm_host_expose"),
    ("open_webui_admin_pass", "open_webui_admin_password"), ("continue_autocomplete", "continue_autocomplete_model"),
])
def test_an_unknown_name_with_a_prefix_gets_the_nearest_of_its_role(name: str, guess: str) -> None:
    [message] = problems(**{name: 1})
    assert message.startswith(f"{name} is not a setting of any llmfleet role; did you mean {guess}?")


@pytest.mark.parametrize(("name", "guess"), [("olama_models", "ollama_models"), ("openwebui_port", "open_webui_port"),
                                             ("vlm_models", "vllm_models"), ("llm_hots_expose", "llm_host_expose")])
def test_a_near_miss_without_the_prefix_is_named(name: str, guess: str) -> None:
    [message] = problems(**{name: 1})
    assert message.startswith(f"{name} looks like a misspelling of {guess}")


@pytest.mark.parametrize("name", ["ansible_host", "ansible_user", "inventory_hostname", "group_names", "groups",
                                  "my_models", "team_name", "vault_vllm_api_key", "_ollama_internal", "llm_host_facts",
                                  "http_proxy", "models"])
def test_names_that_are_not_ours_pass(name: str) -> None:
    assert problems(**{name: "x"}) == []


def test_a_teams_own_names_pass_when_listed() -> None:
    assert problems(ollama_site_colour="blue", vllm_team_note="x",
                    llm_host_own_variables=["ollama_site_*", "vllm_team_note"]) == []
    assert problems(ollama_site_colour="blue")  # not listed
    # A string for the list is its own mistake, and does not turn into one-letter patterns.
    assert [p for p in problems(o="x", llm_host_own_variables="o*") if p.startswith("llm_host_own_variables must")]


@pytest.mark.parametrize(("host_vars", "expected"), [
    ({"ollama_models": "qwen3"}, "ollama_models must be a list, and it is the string 'qwen3': a role would read it "
                                 "character by character. Write it as a YAML list, e.g. ollama_models: [qwen3]."),
    ({"ollama_models": None}, "ollama_models must be a list, and it is empty (null). Write it as a YAML list, e.g. "
                              "ollama_models: []."),
    ({"ollama_environment": ["OLLAMA_DEBUG=1"]}, "ollama_environment must be a mapping (key: value lines), and it "
                                                 "is a list."),
    ({"ollama_port": "11435"}, "ollama_port is the string '11435', not a number: the roles compare and compute with "
                               "it as a number. Write ollama_port: 11435 without quotes; with -e, pass JSON: "
                               "-e '{\"ollama_port\": 11435}'."),
    ({"ollama_port": "eleven"}, "ollama_port must be a whole number, and it is the string 'eleven'."),
    ({"ollama_port": 8000.5}, "ollama_port must be a whole number, and it is 8000.5."),
    ({"ollama_port": True}, "ollama_port must be a whole number, and it is a boolean (true)."),
    ({"llm_host_expose": "yes"}, "llm_host_expose is the string 'yes', not a boolean: the roles test it as true or "
                                 "false, and any non-empty string counts as true. Write llm_host_expose: true without "
                                 "quotes; with -e, pass JSON: -e '{\"llm_host_expose\": true}'."),
    ({"llm_host_expose": 1}, "llm_host_expose must be true or false, and it is a number (1)."),
    ({"ollama_version": 0.32}, "ollama_version must be a string, and it is a number (0.32). Put it in quotes."),
    ({"llm_host_type": "linux_gpu"}, "llm_host_type is 'linux_gpu'; it must be one of: auto, macos_arm64, "
                                     "linux_cuda, linux_rocm, linux_cpu."),
    ({"llm_firewall_ports": [8000, "8001"]}, "llm_firewall_ports[1] is the string '8001', not a number: the roles "
                                             "compare and compute with it as a number. Write 8001 without quotes."),
])
def test_a_value_of_the_wrong_type_gets_one_message(host_vars: dict[str, Any], expected: str) -> None:
    assert problems(**host_vars) == [expected]


def test_entries_are_checked_key_by_key_with_their_path() -> None:
    found = problems(vllm_models=[{"name": "a", "model": "m", "port": 8000},
                                  {"name": "b", "model": "m", "port": "8001", "max_len": 4096},
                                  {"name": "c", "model": "m"}, "d"])
    assert found == [
        "vllm_models[1].max_len is not a key of vllm_models[1]: did you mean max_model_len?",
        "vllm_models[1].port is the string '8001', not a number: the roles compare and compute with it as a number. "
        "Write port: 8001 without quotes.",
        "vllm_models[2] lacks port, which is required.",
        "vllm_models[3] must be a mapping (key: value lines), and it is the string 'd'.",
    ]


@pytest.mark.parametrize("host_vars", [
    {"vllm_hf_token": ["hf_secret_value"]}, {"open_webui_admin_password": 123456789},
    {"vllm_models": [{"name": "a", "model": "m", "port": 8000, "api_key": 1234567}]},
    {"open_webui_secret_key": {"k": "hf_secret_value"}}, {"ollama_environment": "HF_TOKEN=hf_secret_value"},
])
def test_a_secret_is_named_never_shown(host_vars: dict[str, Any]) -> None:
    [message] = problems(**host_vars)
    assert "secret_value" not in message and "123456789" not in message and "1234567" not in message
    assert "(value not shown)" in message or "it is a list" in message or "it is a mapping" in message \
        or "it is a number." in message


def test_a_value_that_cannot_be_read_is_reported_under_its_name() -> None:
    class HostVars(dict):
        def __getitem__(self, name: str) -> Any:
            if name == "vllm_hf_token":
                raise RuntimeError("'vault_hf_token' is undefined\nmore")
            return super().__getitem__(name)

    found = inv.inventory_problems(HostVars(vllm_hf_token="{{ vault_hf_token }}", ollama_port=11434))
    assert found == ["vllm_hf_token cannot be read: 'vault_hf_token' is undefined"]


def _hosts_vars(inventory: Path, vault_password: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each host's variables as Ansible gives them to hostvars, templates left unrendered."""
    loader = DataLoader()
    if vault_password:
        loader.set_vault_secrets([("default", VaultSecret(vault_password.read_bytes().strip()))])
    manager = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=manager)
    return {host.name: variables.get_vars(host=host, include_hostvars=False) for host in manager.get_hosts()}


@pytest.mark.parametrize("inventory", ["inventory/example", "inventory/local"])
def test_the_projects_inventories_pass(inventory: str) -> None:
    hosts = _hosts_vars(ROOT / inventory)
    assert hosts
    for name, host_vars in hosts.items():
        # Vault references stay templates here; their type is the string they are written as.
        assert problems(**host_vars) == [], name


def test_the_fleet_scenarios_inventory_passes(tmp_path: Path) -> None:
    # Its hosts file is written by prepare.yml; the group variables are the scenario's own.
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    gpu_servers: {hosts: {fleet-server: {}}}\n"
        "    dev_laptops: {hosts: {fleet-laptop-1: {}}}\n    llm_mirrors: {hosts: {fleet-mirror: {}}}\n")
    (tmp_path / "group_vars").symlink_to(ROOT / "molecule/fleet/inventory/group_vars")
    for name, host_vars in _hosts_vars(tmp_path, ROOT / "molecule/fleet/vault-password").items():
        assert problems(**host_vars) == [], name


def test_the_example_inventorys_mirror_passes(tmp_path: Path) -> None:
    # The example's llm_mirrors group has no host (a commented one): give it one to read its variables.
    example = tmp_path / "example"
    shutil.copytree(ROOT / "inventory/example", example)
    hosts = yaml.safe_load((example / "hosts.yml").read_text())
    hosts["all"]["children"]["llm_mirrors"]["hosts"] = {"mirror": {"ansible_host": "mirror.lan"}}
    (example / "hosts.yml").write_text(yaml.safe_dump(hosts))
    mirror = _hosts_vars(example)["mirror"]
    assert mirror["llm_mirror_root"] == "/srv/llmfleet-mirror"
    assert problems(**mirror) == []


def _scenario_inventories() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "molecule").glob("*/molecule.yml")):
        inventory = (yaml.safe_load(path.read_text()).get("provisioner") or {}).get("inventory") or {}
        for kind in ("group_vars", "host_vars"):
            for name, host_vars in (inventory.get(kind) or {}).items():
                found.append((path.parent.name, f"{kind}/{name}", host_vars or {}))
    return found


@pytest.mark.parametrize(("scenario", "where", "host_vars"), _scenario_inventories(),
                         ids=[f"{s}:{w}" for s, w, _ in _scenario_inventories()])
def test_the_scenarios_inventories_pass(scenario: str, where: str, host_vars: dict[str, Any]) -> None:
    assert problems(**host_vars) == []


def _set_by_roles() -> set[str]:
    """Names the roles and playbooks set with set_fact or register that a user could also write."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                    names.update(name for name in value if name != "cacheable")
                elif key == "register" and isinstance(value, str):
                    names.add(value)
                walk(value)

    for path in [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml"), *ROOT.glob("playbooks/*.yml")]:
        walk(yaml.safe_load(path.read_text()))
    return {name for name in names if not name.startswith("_")}


def test_what_the_roles_set_themselves_is_never_reported() -> None:
    found = _set_by_roles()
    assert {"llm_host_facts", "llm_host_team"} <= found
    assert found <= inv.ROLE_FACTS, "a role sets a public variable the inventory check would report"


def test_a_misspelled_variable_in_the_example_inventory_is_caught(tmp_path: Path) -> None:
    example = tmp_path / "example"
    shutil.copytree(ROOT / "inventory/example", example)
    with (example / "host_vars/carol-thinkpad.yml").open("a") as handle:
        handle.write("\nolama_models: [qwen3:8b]\ncontinue_user: [carol]\n")
    found = problems(**_hosts_vars(example)["carol-thinkpad"])
    assert [p.split(" ", 1)[0] for p in found] == ["continue_user", "olama_models"]


# Across the inventory: fleet_problems(hostvars, hosts) -> {host: messages}.
FLEET = {
    "team-gpu": {"ansible_host": "team-gpu.lan", "llm_host_expose": True},
    "alice-mbp": {"ansible_host": "alice-mbp.lan"},
    "alice-again": {"ansible_host": "Alice-MBP.lan."},
    "behind-nat-1": {"ansible_host": "gateway.lan", "ansible_port": 2201},
    "behind-nat-2": {"ansible_host": "gateway.lan", "ansible_port": 2202},
    "spare-gpu": {"ansible_host": "spare-gpu.lan", "llm_host_expose": "yes", "llm_host_advertised_name": "TEAM-GPU.lan"},
    "quiet-gpu": {"ansible_host": "quiet-gpu.lan", "llm_host_advertised_name": "team-gpu.lan"},
    "bastion": {"ansible_host": "alice-mbp.lan"},
}
FLEET_HOSTS = [name for name in FLEET if name != "bastion"]


def fleet(me: str) -> list[str]:
    return inv.fleet_problems(FLEET, FLEET_HOSTS).get(me, [])


@pytest.mark.parametrize("me", ["alice-mbp", "alice-again"])
def test_one_machine_under_two_names_is_named_on_both(me: str) -> None:
    [message] = fleet(me)
    other = "alice-again" if me == "alice-mbp" else "alice-mbp"
    assert message.startswith(f"{me} and {other} are one machine (alice-mbp.lan, port 22)")
    assert "give each its own ansible_host" in message


def test_one_address_on_other_ports_is_other_machines() -> None:
    assert fleet("behind-nat-1") == [] and fleet("behind-nat-2") == []


@pytest.mark.parametrize("me", ["team-gpu", "spare-gpu"])
def test_two_exposed_hosts_at_one_advertised_address_are_named(me: str) -> None:
    [message] = fleet(me)
    assert "are exposed at one address, team-gpu.lan" in message and "llm_host_advertised_name" in message


def test_hosts_llmfleet_does_not_run_on_and_unexposed_ones_are_not_compared() -> None:
    assert fleet("quiet-gpu") == []  # not exposed: no client reaches it by that name
    assert "bastion" not in inv.fleet_problems(FLEET, FLEET_HOSTS)  # not an llmfleet host


@pytest.mark.parametrize("inventory", ["inventory/example", "inventory/local"])
def test_the_projects_inventories_have_no_collisions(inventory: str) -> None:
    hosts = _hosts_vars(ROOT / inventory)
    assert inv.fleet_problems(hosts, list(hosts)) == {}


class _CountingHostvars(dict):
    """Ansible's hostvars as the filter sees them, counting each host's lookups (each costs the
    controller a full variable resolution of that host)."""

    def __init__(self, hosts: dict) -> None:
        super().__init__(hosts)
        self.reads: dict[str, int] = {}

    def __getitem__(self, name: str) -> Any:
        self.reads[name] = self.reads.get(name, 0) + 1
        return super().__getitem__(name)


def test_each_hosts_variables_are_read_once_for_the_whole_inventory() -> None:
    hostvars = _CountingHostvars(FLEET)
    found = inv.fleet_problems(hostvars, FLEET_HOSTS)
    assert hostvars.reads == {name: 1 for name in FLEET_HOSTS}
    assert sorted(found) == ["alice-again", "alice-mbp", "spare-gpu", "team-gpu"]


def test_three_names_for_one_machine_each_name_the_other_two() -> None:
    hosts = {"a": {"ansible_host": "box"}, "b": {"ansible_host": "BOX."}, "c": {"ansible_host": "box"}}
    found = inv.fleet_problems(hosts, list(hosts))
    assert found["b"][0].startswith("b and a, c are one machine (box, port 22)")


class _Lazy(dict):
    """Host variables as Ansible hands them over: a value is rendered when it is read."""

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        if isinstance(value, Exception):
            raise value
        return value


def test_a_value_that_names_what_a_role_publishes_later_is_left_to_that_role() -> None:
    # continue_models with apiBase "{{ llm_host_team.ollama_url }}": llm_host sets llm_host_team after this check.
    host_vars = _Lazy({"continue_models": Exception("'llm_host_team' is undefined"),
                       "vllm_api_key": Exception("'vault_vllm_api_key' is undefined")})
    found = inv.inventory_problems(host_vars)
    assert found == ["vllm_api_key cannot be read: 'vault_vllm_api_key' is undefined"]
