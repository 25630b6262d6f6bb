"""The modules' documentation (plugins/modules/*.py), which ansible-doc shows and ansible-lint parses.

Each module's DOCUMENTATION, EXAMPLES and RETURN are YAML; DOCUMENTATION's options are the module's
ARGUMENT_SPEC (names, type, required, default, choices, elements), so the two cannot drift apart; every
example task calls the module by its fully qualified name with options it has; every return value says
what it is and when it is returned. A module added without all that fails here, and ansible-doc must
render every module.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _modules import load_module

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
COLLECTION = f"{GALAXY['namespace']}.{GALAXY['name']}"
# What AnsibleModule assumes for a key an option's spec leaves out; ansible-doc shows the same.
SPEC_DEFAULTS: dict[str, Any] = {"type": "str", "required": False, "default": None, "choices": None,
                                 "elements": None, "aliases": None}


def _strings(path: Path) -> dict[str, str]:
    """The module-level string constants of a module file (DOCUMENTATION, EXAMPLES, RETURN), unexecuted."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            found[node.targets[0].id] = node.value.value
    return found


def _docs(path: Path) -> dict[str, Any]:
    strings = _strings(path)
    missing = [name for name in ("DOCUMENTATION", "EXAMPLES", "RETURN") if not strings.get(name, "").strip()]
    assert not missing, f"{path.name} has no {', '.join(missing)}"
    return {name: yaml.safe_load(strings[name]) for name in ("DOCUMENTATION", "EXAMPLES", "RETURN")}


def _argument_spec(path: Path) -> dict[str, Any]:
    module = load_module(path, f"_module_docs_{path.stem}")
    spec = getattr(module, "ARGUMENT_SPEC", None)
    assert isinstance(spec, dict), f"{path.name}: its argument_spec must be the module-level ARGUMENT_SPEC"
    return spec


def _option_differences(documented: dict[str, Any], spec: dict[str, Any], prefix: str = "") -> list[str]:
    """Where DOCUMENTATION's options and the argument spec disagree (sub-options included)."""
    problems = []
    if set(documented) != set(spec):
        problems.append(f"{prefix or 'options'}: documented {sorted(documented)}, argument_spec {sorted(spec)}")
    for name in sorted(set(documented) & set(spec)):
        doc, real = documented[name] or {}, spec[name]
        if not doc.get("description"):
            problems.append(f"{prefix}{name}: no description")
        for key, default in SPEC_DEFAULTS.items():
            if doc.get(key, default) != real.get(key, default):
                problems.append(f"{prefix}{name}.{key}: documented {doc.get(key, default)!r}, "
                                f"argument_spec {real.get(key, default)!r}")
        if doc.get("suboptions") or real.get("options"):
            problems += _option_differences(doc.get("suboptions") or {}, real.get("options") or {}, f"{prefix}{name}.")
    return problems


def test_there_are_modules() -> None:
    assert {"llm_host_lock", "ollama_pull", "continue_json_settings"} <= {path.stem for path in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=[path.stem for path in MODULES])
def test_documentation_describes_the_module(path: Path) -> None:
    doc = _docs(path)["DOCUMENTATION"]
    assert isinstance(doc, dict), "DOCUMENTATION is a mapping"
    assert doc.get("module") == path.stem
    assert isinstance(doc.get("short_description"), str) and doc["short_description"].strip()
    assert isinstance(doc.get("description"), list) and all(isinstance(line, str) and line for line in doc["description"])
    assert doc.get("author"), "DOCUMENTATION names an author"
    for name, attribute in (doc.get("attributes") or {}).items():
        assert attribute.get("description") and attribute.get("support") in ("full", "partial", "none", "N/A"), name


@pytest.mark.parametrize("path", MODULES, ids=[path.stem for path in MODULES])
def test_documented_options_are_the_argument_spec(path: Path) -> None:
    documented = _docs(path)["DOCUMENTATION"].get("options") or {}
    assert _option_differences(documented, _argument_spec(path)) == []


@pytest.mark.parametrize("path", MODULES, ids=[path.stem for path in MODULES])
def test_examples_call_the_module_by_its_fully_qualified_name(path: Path) -> None:
    fqcn = f"{COLLECTION}.{path.stem}"
    spec = _argument_spec(path)
    required = {name for name, option in spec.items() if option.get("required")}
    tasks = _docs(path)["EXAMPLES"]
    assert isinstance(tasks, list) and tasks, "EXAMPLES is a list of tasks"
    for task in tasks:
        assert isinstance(task, dict) and task.get("name"), f"an example task without a name: {task!r}"
        assert fqcn in task, f"{task['name']!r} does not call {fqcn}"
        assert path.stem not in task, f"{task['name']!r} calls the module by its short name"
        args = task[fqcn]
        assert isinstance(args, dict), f"{task['name']!r}: give the options as a mapping"
        assert set(args) <= set(spec), f"{task['name']!r}: unknown options {sorted(set(args) - set(spec))}"
        assert required <= set(args), f"{task['name']!r}: required options missing {sorted(required - set(args))}"
        for name, value in args.items():
            choices = spec[name].get("choices")
            assert choices is None or value in choices, f"{task['name']!r}: {name}={value!r} is not one of {choices}"


@pytest.mark.parametrize("path", MODULES, ids=[path.stem for path in MODULES])
def test_return_values_are_documented(path: Path) -> None:
    returned = _docs(path)["RETURN"]
    assert isinstance(returned, dict) and returned, "RETURN is a mapping of the values returned"
    for name, value in returned.items():
        assert isinstance(value, dict), name
        missing = [key for key in ("description", "type", "returned") if not value.get(key)]
        assert not missing, f"{name}: no {', '.join(missing)}"


def test_ansible_doc_renders_every_module(tmp_path: Path) -> None:
    # The checkout as the collection on a path of its own (ansible-doc reads it as a user's install would).
    link = tmp_path / "ansible_collections" / GALAXY["namespace"] / GALAXY["name"]
    link.parent.mkdir(parents=True)
    link.symlink_to(ROOT, target_is_directory=True)
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    names = [f"{COLLECTION}.{path.stem}" for path in MODULES]
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path), "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run([str(bindir / "ansible-doc"), "-t", "module", "--json", *names],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "ERROR" not in run.stderr, run.stderr
    shown = json.loads(run.stdout)
    assert sorted(shown) == sorted(names), run.stderr
    for name in names:
        assert shown[name]["doc"]["module"] == name.rsplit(".", 1)[1]
        assert shown[name]["examples"] and shown[name]["return"], name
