"""Where the vllm role's servers run and how much memory each takes (plugins/filter/vllm_gpu.py).

GPU hosts: servers sharing a GPU split vllm_gpu_memory_utilization, declared shares count first, and
more than the whole of a GPU is refused; `gpus` pins a server (CUDA_VISIBLE_DEVICES). CPU and macOS
hosts: each server's KV cache (VLLM_CPU_KVCACHE_SPACE) from the RAM the other services leave.
inventory/example's two servers on one GPU are rendered as the role writes them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from _modules import load_module
from rendering import render

ROOT = Path(__file__).resolve().parents[1]
GPU = load_module("plugins/filter/vllm_gpu.py")
VM = load_module("plugins/filter/vllm_models.py")
TWO_GPUS = [{"index": 0, "name": "H100", "vram_mb": 81559, "driver_version": "590.48.01"},
            {"index": 1, "name": "H100", "vram_mb": 81559, "driver_version": "590.48.01"}]


def _model(name: str, port: int, **keys: object) -> dict[str, object]:
    return {"name": name, "model": f"Qwen/{name}", "port": port, **keys}


def _gpu_plan(models: list[dict[str, object]], budget: float = 0.92) -> dict[str, object]:
    return GPU.memory_plan(models, "linux_cuda", TWO_GPUS, budget)


def _shares(plan: dict[str, object]) -> dict[str, tuple[list[int], float]]:
    return {s["name"]: (s["devices"], s["share"]) for s in plan["servers"]}


def test_servers_sharing_a_gpu_split_the_budget_evenly() -> None:
    plan = _gpu_plan([_model("a", 8000), _model("b", 8001), _model("c", 8002)])
    assert plan["errors"] == []
    assert _shares(plan) == {"a": ([0], 0.3), "b": ([0], 0.3), "c": ([0], 0.3)}
    assert _shares(_gpu_plan([_model("alone", 8000)])) == {"alone": ([0], 0.92)}


def test_a_declared_share_counts_first_and_the_others_split_the_rest() -> None:
    plan = _gpu_plan([_model("big", 8000, gpu_memory_utilization=0.6), _model("small", 8001), _model("tiny", 8002)])
    assert plan["errors"] == []
    assert _shares(plan) == {"big": ([0], 0.6), "small": ([0], 0.16), "tiny": ([0], 0.16)}


def test_pinned_servers_share_only_their_own_gpus() -> None:
    plan = _gpu_plan([_model("a", 8000, gpus=[1]), _model("b", 8001), _model("split", 8002, tensor_parallel_size=2)])
    assert plan["errors"] == []
    # split takes GPUs 0 and 1 (its tensor_parallel_size): it shares 0 with b and 1 with a.
    assert _shares(plan) == {"a": ([1], 0.46), "b": ([0], 0.46), "split": ([0, 1], 0.46)}


@pytest.mark.parametrize(("models", "expect"), [
    ([_model("a", 8000, gpu_memory_utilization=0.6), _model("b", 8001, gpu_memory_utilization=0.5)],
     "vllm: GPU 0 is promised 1.1 of its memory: the gpu_memory_utilization of a (0.6) and b (0.5) add up to more "
     "than the whole GPU; lower them so they add up to 1 or less, or move a server to another GPU with its gpus key"),
    ([_model("a", 8000, gpu_memory_utilization=0.95), _model("b", 8001)],
     "vllm: on GPU 0, a (0.95) take 0.95 of its memory, which leaves nothing of vllm_gpu_memory_utilization (0.92) "
     "for b"),
    ([_model("a", 8000, gpus=[2])], "vllm_models[0] (a): gpus names GPU 2, and this host has GPU 0, 1"),
    ([_model("a", 8000, gpus=[1], tensor_parallel_size=2)],
     "vllm_models[0] (a): tensor_parallel_size 2 needs 2 GPUs, and gpus lists 1"),
    ([_model("a", 8000, tensor_parallel_size=4)], "tensor_parallel_size 4 needs 4 GPUs, and this host has 2"),
])
def test_memory_a_gpu_does_not_have_is_refused(models: list[dict[str, object]], expect: str) -> None:
    assert any(expect in error for error in _gpu_plan(models)["errors"]), _gpu_plan(models)["errors"]


def test_a_pinned_server_gets_its_devices_and_share_in_its_environment() -> None:
    models = [_model("a", 8000, gpus=[1]), _model("b", 8001)]
    servers = VM.instances(models, plan=_gpu_plan(models))
    assert servers[0]["env"]["CUDA_VISIBLE_DEVICES"] == "1" and servers[0]["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "--gpu-memory-utilization 0.92" in servers[0]["command_line"]
    assert "CUDA_VISIBLE_DEVICES" not in servers[1]["env"]


@pytest.mark.parametrize("gpus", ["0", [], [0, 0], [-1], [True], ["0"]])
def test_gpus_must_be_a_list_of_gpu_numbers(gpus: object) -> None:
    errors = VM.model_errors([_model("a", 8000, gpus=gpus)])
    assert any("gpus must be a list of GPU numbers as nvidia-smi shows them" in e for e in errors)


def test_cpu_servers_split_what_the_ram_leaves() -> None:
    reserved = GPU.cpu_reserved("auto", ["ollama", "open_webui", "vllm"], ["qwen2.5-coder:7b"])
    assert reserved == [["the system", 2048], ["Open WebUI", 2048], ["Ollama's largest model, qwen2.5-coder:7b", 5324]]
    models = [_model("a", 8000), _model("b", 8001), _model("c", 8002, kv_cache_gb=2)]
    # A 16 GiB Mac: 16384 - 2048 - 2048 - 5324 - (3 servers' runtime, no weights known) 3072 - 2048 (c's)
    # = 1844 MiB, not a whole GiB for each of a and b (vLLM takes whole GiB): refused.
    plan = GPU.memory_plan(models, "macos_arm64", [], 0.92, 16384, reserved, [0, 0, 0])
    assert plan["pool_mb"] == 1844 and "leaves 1.8 GiB, less than 1 GiB each" in plan["errors"][0]
    # A 32 GiB Mac, 1 GiB of weights each for a and b: 32768 - 9420 - 5120 - 2048 = 16180 MiB, 7 GiB each.
    plan = GPU.memory_plan(models, "macos_arm64", [], 0.92, 32768, reserved, [1024, 1024, 0])
    assert plan["errors"] == []
    assert {s["name"]: s["kv_cache_gb"] for s in plan["servers"]} == {"a": 7, "b": 7, "c": 2}
    servers = VM.instances(models, plan=plan)
    assert [s["env"]["VLLM_CPU_KVCACHE_SPACE"] for s in servers] == ["7", "7", "2"]
    assert all("--gpu-memory-utilization" not in s["command_line"] for s in servers)


def test_cpu_servers_that_do_not_fit_are_refused_with_the_arithmetic() -> None:
    plan = GPU.memory_plan([_model("a", 8000), _model("b", 8001)], "linux_cpu", [], 0.92, 16384,
                           GPU.cpu_reserved("auto", ["ollama"], []), [14000, 0])
    assert plan["errors"] == [
        "vllm: the KV caches of a, b do not fit this host's memory: 16 GiB of RAM - 2.0 GiB (the system) - 4.0 GiB "
        "(Ollama's models) - 15.7 GiB (weights and runtime of a, b) leaves -5.7 GiB, less than 1 GiB each; serve "
        "fewer or smaller models here, give each a kv_cache_gb, or lower vllm_cpu_reserved_gb"]
    assert GPU.cpu_reserved(6, ["ollama"], []) == [["vllm_cpu_reserved_gb", 6144]]


def test_unknown_ram_leaves_the_kv_cache_to_the_inventory() -> None:
    plan = GPU.memory_plan([_model("a", 8000), _model("b", 8001, kv_cache_gb=3)], "linux_cpu", [], 0.92, 0, [], [0, 0])
    assert plan["errors"] == [] and [s["kv_cache_gb"] for s in plan["servers"]] == [None, 3]
    assert "VLLM_CPU_KVCACHE_SPACE" not in VM.instances([_model("a", 8000)], plan=plan)[0]["env"]


def test_kv_cache_gb_is_whole_gib() -> None:
    assert any("kv_cache_gb is 2.5, and vLLM takes whole GiB only; set it to 2" in e
               for e in VM.model_errors([_model("a", 8000, kv_cache_gb=2.5)]))
    assert VM.model_errors([_model("a", 8000, kv_cache_gb=2.0)]) == []


def _example() -> dict[str, object]:
    inventory = ROOT / "inventory/example/group_vars"
    # The key vllm.yml points at lives in the team's vault.
    return {**yaml.safe_load((inventory / "gpu_servers/vllm.yml").read_text()),
            **yaml.safe_load((inventory / "gpu_servers/fleet.yml").read_text()),
            "vault_vllm_api_key": "from-the-vault"}


def test_example_inventory_servers_fit_their_gpu(tmp_path: Path) -> None:
    # inventory/example's team server, as written: two vLLM servers, neither with a share or gpus, on an
    # 80 GB GPU (the R590 double's). Rendered by Ansible from the role's own vars: the 32B coder gets its
    # weights' part (about 61 GiB of 79.6) and half of the rest, the reranker (no size in its name) the
    # other half; together no more than vllm_gpu_memory_utilization.
    hostvars = _example()
    gpus = [{"index": i, "name": "NVIDIA H100 80GB HBM3", "vram_mb": 81559, "driver_version": "590.48.01"}
            for i in (0, 1)]
    out = render("render_role.yml", tmp_path, role="vllm", system="Linux", architecture="x86_64",
                 items_var="_vllm_instances", item_templates=["etc/vllm/instance.env"],
                 llm_host_facts={"type": "linux_cuda", "gpus": gpus, "arch": "amd64", "ram_mb": 257000}, **hostvars)
    shares = {}
    for entry in hostvars["vllm_models"]:
        env = (out / f"{entry['name']}-instance.env").read_text()
        shares[entry["name"]] = float(re.search(r"--gpu-memory-utilization ([0-9.]+)", env).group(1))
        assert "CUDA_VISIBLE_DEVICES" not in env  # both on GPU 0, vLLM's first device
    assert shares == {"qwen2.5-coder-32b": 0.83, "bge-reranker": 0.08}
    assert sum(shares.values()) <= 0.92
    # The coder's share holds its weights with room for its KV cache: 0.83 of 79.6 GiB is 66.1 GiB.
    assert 0.83 * 81559 > 61035 + 4096
    weights = [61035, 0]  # vllm_model_size_mb of each model, as vars/main.yml passes them
    assert GPU.memory_plan(hostvars["vllm_models"], "linux_cuda", gpus, 0.92, 0, [], weights)["errors"] == []


def test_example_inventory_on_48_gb_gpus_is_told_to_split_the_model() -> None:
    # The same on two 48 GB GPUs: 61 GiB of bf16 weights fit neither. Refused, naming the way out; with
    # tensor_parallel_size: 2 the coder takes both GPUs and the reranker shares the first.
    hostvars = _example()
    gpus = [{"index": i, "name": "NVIDIA RTX A6000", "vram_mb": 49140, "driver_version": "590.48.01"} for i in (0, 1)]
    plan = GPU.memory_plan(hostvars["vllm_models"], "linux_cuda", gpus, 0.92, 0, [], [61035, 0])
    assert plan["errors"] == [
        "vllm: the weights of qwen2.5-coder-32b (about 59.6 GiB) do not fit GPU 0: 0.92 of its 48.0 GiB is theirs "
        "(vllm_gpu_memory_utilization 0.92), with room left for their KV caches; split a model over more GPUs "
        "(tensor_parallel_size), give the servers GPUs of their own (gpus), serve a quantised checkpoint, or "
        "declare gpu_memory_utilization to overrule the estimate (2 bytes per parameter of the size in the name)"]
    models = [{**hostvars["vllm_models"][0], "tensor_parallel_size": 2}, hostvars["vllm_models"][1]]
    plan = GPU.memory_plan(models, "linux_cuda", gpus, 0.92, 0, [], [61035, 0])
    assert plan["errors"] == [] and _shares(plan) == {"qwen2.5-coder-32b": ([0, 1], 0.77), "bge-reranker": ([0], 0.14)}
