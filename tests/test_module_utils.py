"""The collection's shared code (plugins/module_utils): the placeholder rule, where vLLM serves, the
roles' files. Its environment-file rule has its own tests (tests/test_env_file.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _modules import load_module
from ansible_collections.llmfleet.llmfleet.plugins.module_utils import addresses, collection, secrets, vllm_serving


@pytest.mark.parametrize("value", ["changeme", "Change-Me", "replace_me", "password", "SECRET", "todo", "xxx", "***",
                                   "<token>", "...", " ", "\t", " changeme "])
def test_placeholders(value: str) -> None:
    assert secrets.is_placeholder(value)


@pytest.mark.parametrize("value", ["", "none", "k-9c1f0d2e", "hf_abc", "password1", "xx"])
def test_real_values_and_empty_are_not_placeholders(value: str) -> None:
    # Empty is "not set", which each role reads on its own; "none" is the key Open WebUI sends to a server without one.
    assert not secrets.is_placeholder(value)


def test_one_placeholder_rule_for_every_role() -> None:
    # continue, open_webui and vllm use this one function, not copies of it.
    for path in ("plugins/filter/continue_config.py", "plugins/filter/open_webui_env.py",
                 "plugins/filter/vllm_models.py"):
        module = load_module(path)
        assert module.is_placeholder is secrets.is_placeholder
        assert not hasattr(module, "_PLACEHOLDER") and not hasattr(module, "_is_placeholder")
    secret_values = {"a": "changeme", "b": "real-key", "c": "<x>"}
    assert secrets.placeholders(secret_values) == ["a", "c"]


@pytest.mark.parametrize(("enabled", "host_type", "models", "serves"), [
    ("auto", "linux_cuda", ["m"], True), ("auto", "macos_arm64", ["m"], True), ("auto", "linux_rocm", ["m"], False),
    ("auto", "linux_cpu", ["m"], False), ("auto", "linux_cuda", [], False), (True, "linux_cpu", [], True),
    ("true", "linux_cpu", ["m"], True), ("on", "", [], True), (False, "linux_cuda", ["m"], False),
    ("no", "macos_arm64", ["m"], False),
])
def test_where_vllm_serves(enabled: object, host_type: str, models: list, serves: bool) -> None:
    assert vllm_serving.serves(enabled, host_type, models) is serves


def test_open_webui_connects_where_the_vllm_role_serves() -> None:
    ow = load_module("plugins/filter/open_webui_env.py")
    models = [{"name": "coder", "port": 8001}]
    for enabled, host_type in (("auto", "linux_cuda"), ("auto", "linux_cpu"), (True, "linux_cpu"), (False, "linux_cuda")):
        assert bool(ow.vllm_connections(models, enabled, host_type)) is vllm_serving.serves(enabled, host_type, models)


def test_the_roles_are_the_collections() -> None:
    assert Path(collection.ROLES_DIR, "vllm", "meta", "argument_specs.yml").is_file()
    assert collection.role_defaults("ollama")["ollama_port"] == 11434
    assert collection.role_defaults("no_such_role") == {}


def test_role_defaults_are_read_from_the_given_roles(tmp_path: Path) -> None:
    (tmp_path / "ollama" / "defaults").mkdir(parents=True)
    (tmp_path / "ollama" / "defaults" / "main.yml").write_text("---\nollama_port: 11500\n")
    assert collection.role_defaults("ollama", str(tmp_path)) == {"ollama_port": 11500}


@pytest.mark.parametrize("value", ["team-gpu", "team-gpu.lan", "team-gpu.lan.", "10.0.0.5", "fd00::1", "gpu_01.lan"])
def test_host_names(value: str) -> None:
    assert addresses.is_host_name(value)


@pytest.mark.parametrize("value", ["http://team-gpu", "team gpu", "team-gpu.lan\n", "-gpu", "a" * 64, "x." * 127 + "x",
                                   "team-gpu:8000", "", None, 5])
def test_not_host_names(value: object) -> None:
    assert not addresses.is_host_name(value)


@pytest.mark.parametrize("value", ["http://team-gpu:11434", "https://team-gpu.lan/v1", "http://[fd00::1]:8000/v1",
                                   "http://10.0.0.5:65535"])
def test_urls(value: str) -> None:
    assert addresses.is_url(value) and addresses.is_url(value, ";")


@pytest.mark.parametrize("value", ["team-gpu:11434", "ftp://team-gpu", "http://team-gpu:0", "http://team-gpu:65536",
                                   "http://http://team-gpu", "http://team-gpu/v1 x", "http://team-gpu/v1\n", None])
def test_not_urls(value: object) -> None:
    assert not addresses.is_url(value)


def test_a_list_joined_with_semicolons_forbids_them_in_each_url() -> None:
    assert addresses.is_url("http://a/x;y") and not addresses.is_url("http://a/x;y", ";")


def test_one_address_rule_for_every_role() -> None:
    # The filters that check host names and URLs use this module, not copies of its patterns.
    for path, names in (("plugins/filter/llm_host_settings.py", ("is_host_name", "is_url")),
                        ("plugins/filter/llm_host_team.py", ("is_host_name",)),
                        ("plugins/filter/continue_config.py", ("is_url",)),
                        ("plugins/filter/open_webui_env.py", ("is_url",))):
        module = load_module(path)
        assert all(getattr(module, name) is getattr(addresses, name) for name in names), path
        assert not hasattr(module, "_LABEL") and not hasattr(module, "_URL") and not hasattr(module, "_HOST_NAME"), path


def test_what_is_in_the_way_goes_beside_it_under_an_unused_name(tmp_path: Path) -> None:
    from ansible_collections.llmfleet.llmfleet.plugins.module_utils import backups
    path = tmp_path / "config.json"
    first = backups.aside_path(str(path))
    assert first.startswith(f"{path}.") and first.endswith("~")
    Path(first).write_text("taken")
    second = backups.aside_path(str(path))
    assert second != first and not Path(second).exists()
    for module in ("plugins/modules/llm_host_paths.py", "plugins/modules/continue_json_settings.py"):
        loaded = load_module(module)
        assert loaded.aside_path is backups.aside_path and not hasattr(loaded, "_aside") and not hasattr(loaded, "aside")
