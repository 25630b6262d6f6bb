"""Each role's meta/argument_specs.yml is its contract: it must match defaults/main.yml exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p.parent.parent for p in (Path(__file__).resolve().parents[1] / "roles").glob("*/meta/argument_specs.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_argument_specs_match_defaults(role: Path) -> None:
    options = _load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = _load(role / "defaults/main.yml")
    assert sorted(options) == sorted(defaults), "every default needs a spec entry and vice versa"
    for name, spec in options.items():
        assert spec.get("description"), f"{name} has no description"
        assert spec.get("default") == defaults[name], f"{name}: spec default differs from defaults/main.yml"
        if "choices" in spec:
            assert defaults[name] in spec["choices"], f"{name}: default is not one of its choices"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_public_variables_are_prefixed_by_role(role: Path) -> None:
    for name in _load(role / "defaults/main.yml"):
        assert name.startswith(f"{role.name}_"), f"{name} is not prefixed with {role.name}_"
    for name in _load(role / "vars/main.yml") if (role / "vars/main.yml").exists() else {}:
        assert name.startswith(f"_{role.name}_"), f"internal variable {name} must start with _{role.name}_"


def test_there_are_roles_to_check() -> None:
    assert any(r.name == "llm_host" for r in ROLES)


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_readme_variables_table_is_current(role: Path) -> None:
    from llmfleet import docs

    text = (role / "README.md").read_text()
    assert docs.render_readme(text, docs.variables_table(role)) == text, "run `invoke docs`"
