"""The vllm role's model rules: validation messages, server arguments and environment."""

from __future__ import annotations


import re

import pytest

from _modules import load_module
from ansible_collections.llmfleet.llmfleet.plugins.module_utils import vllm_serving

vm = load_module("plugins/filter/vllm_models.py")

GOOD = {"name": "coder", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "port": 8000}


def test_a_good_list_has_no_errors() -> None:
    assert vm.model_errors([GOOD, {**GOOD, "name": "b", "port": 8001, "gpu_memory_utilization": 0.5}]) == []


@pytest.mark.parametrize(("entry", "message"), [
    ({**GOOD, "port": "80 00"}, "port '80 00' is not a port: set port to a number 1-65535"),
    ({**GOOD, "port": 70000}, "port 70000 is not a port"),
    ({**GOOD, "name": "coder\n"}, "name must be"),
    ({**GOOD, "name": "has space"}, "name must be"),
    ({**GOOD, "model": "a b"}, "model must be"),
    ({k: v for k, v in GOOD.items() if k != "model"}, "model must be"),
    ({**GOOD, "gpu_memory_utilization": 1.5}, "fraction"),
    ({**GOOD, "max_model_len": 0}, "max_model_len must be"),
    ({**GOOD, "kv_cache_gb": -1}, "kv_cache_gb"),
    ({**GOOD, "extra_args": ["--port", "9"]}, "extra_args sets ['--port']"),
    ({**GOOD, "environment": {"VLLM_API_KEY": "k"}}, "VLLM_API_KEY is set by vllm_api_key; remove it from its environment"),
    ({**GOOD, "gpu": 1}, "unknown keys ['gpu']"),
    ("coder", "must be a mapping"),
])
def test_bad_entries_are_named_with_the_fix(entry: object, message: str) -> None:
    errors = vm.model_errors([entry], owners={"VLLM_API_KEY": "vllm_api_key"})
    assert any(message in e for e in errors), errors
    assert errors[0].startswith("vllm_models[0]")


def test_extra_args_may_hold_spaces_quotes_and_json() -> None:
    # One argument per item: the settings file quotes each for systemd (plugins/module_utils/env_file.py).
    entry = {**GOOD, "extra_args": ["--override-generation-config", '{"temperature": 0.5}', "--enforce-eager"]}
    assert vm.model_errors([entry]) == []
    assert vm.instances([entry])[0]["args"][-3:] == entry["extra_args"]


def test_where_vllm_serves_is_the_shared_rule() -> None:
    # The role's _vllm_is_enabled and Open WebUI's default connections read it (tests/test_module_utils.py).
    assert vm.FilterModule().filters()["vllm_serves_here"] is vllm_serving.serves


def test_duplicate_names() -> None:
    errors = vm.model_errors([GOOD, {**GOOD, "port": 8001}, {**GOOD, "name": "other"}])
    assert any("used twice" in e for e in errors)


def test_every_pair_of_services_on_one_port_is_named() -> None:
    models = [GOOD, {**GOOD, "name": "chat", "port": "8000"}, {**GOOD, "name": "big", "port": 11434}, {"name": "x"}]
    pairs = [["ollama_port", 11434], ["open_webui_port", "8080"]] + vm.model_ports(models)
    assert vm.port_clashes(pairs) == [
        "vllm_models[1].port (chat) and vllm_models[0].port (coder) are both 8000, and two services cannot share a "
        "port on one host: set vllm_models[1].port (chat) to a free port",
        "vllm_models[2].port (big) and ollama_port are both 11434, and two services cannot share a port on one host: "
        "set vllm_models[2].port (big) to a free port"]
    assert vm.port_clashes([["ollama_port", 8080], ["open_webui_port", 8080], ["x", "eight"]]) == [
        "open_webui_port and ollama_port are both 8080, and two services cannot share a port on one host: set "
        "open_webui_port to a free port"]


def test_a_quoted_port_is_a_port() -> None:
    # The inventory check asks for it without quotes; the role's own rules read it as the number.
    assert vm.model_errors([{**GOOD, "port": "8000"}]) == []
    assert vm.instances([{**GOOD, "port": "8000"}])[0]["port"] == 8000


def test_the_environment_keys_the_role_writes_have_an_owner() -> None:
    import yaml
    from pathlib import Path
    owners = yaml.safe_load((Path(__file__).parents[1] / "roles/vllm/vars/main.yml").read_text())["_vllm_environment_owners"]
    env = vm.instances([{**GOOD, "kv_cache_gb": 4, "api_key": "k"}], environment={"HF_HOME": "/h", "HF_TOKEN": "t"})[0]["env"]
    template = (Path(__file__).parents[1] / "roles/vllm/templates/etc/vllm/instance.env.j2").read_text()
    written = set(env) | set(re.findall(r"^([A-Z_]+)=", template, re.MULTILINE))
    assert written <= set(owners), written - set(owners)
    assert vm.model_errors([{**GOOD, "environment": {"HF_HOME": "/x", "X": "1"}}], owners=owners) == [
        "vllm_models[0] (coder): HF_HOME is set by " + owners["HF_HOME"] + "; remove it from its environment"]


def test_instances_arguments_and_environment() -> None:
    servers = vm.instances(
        [{**GOOD, "gpu_memory_utilization": 0.8, "tensor_parallel_size": 2, "extra_args": ["--seed=1"]},
         {"name": "tiny", "model": "/m", "port": 8001, "tool_call_parser": "", "api_key": "own",
          "environment": {"X": 1}}],
        host="0.0.0.0", api_key="shared", environment={"HF_HOME": "/h", "X": "0"})
    coder, tiny = servers
    assert coder["args"] == ["--model", "Qwen/Qwen2.5-Coder-7B-Instruct", "--served-model-name", "coder",
                             "--host", "0.0.0.0", "--port", "8000", "--max-model-len", "16384", "--dtype", "auto",
                             "--gpu-memory-utilization", "0.8", "--tensor-parallel-size", "2",
                             "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--seed=1"]
    assert coder["env"] == {"HF_HOME": "/h", "X": "0", "VLLM_API_KEY": "shared"}
    assert "--enable-auto-tool-choice" not in tiny["args"]
    assert tiny["env"] == {"HF_HOME": "/h", "X": "1", "VLLM_API_KEY": "own"}
    assert vm.instances([{**GOOD, "api_key": ""}], api_key="shared")[0]["env"] == {}


def test_instances_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="is not a port"):
        vm.instances([{**GOOD, "port": None}])


def test_unlisted_reports_without_secrets() -> None:
    results = [
        {"item": {"name": "a", "instance": "a", "env": {"VLLM_API_KEY": "s3cret"}}, "status": 200,
         "json": {"data": [{"id": "a"}]}},
        {"item": {"name": "b", "instance": "b", "env": {"VLLM_API_KEY": "s3cret"}}, "status": 200,
         "json": {"data": [{"id": "other"}]}},
        {"item": {"name": "c", "instance": "c", "env": {"VLLM_API_KEY": "s3cret"}}, "status": 401},
    ]
    problems = vm.unlisted(results)
    assert problems == ["vllm@b lists ['other'], not b", "vllm@c answered /v1/models with 401"]
    assert not any("s3cret" in p for p in problems)
