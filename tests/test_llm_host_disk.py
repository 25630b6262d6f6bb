"""The host-facts checks of the preflight: model paths, and whether the models to download fit the disk.

llm_host's storage module (its checks, and its look on a temporary directory) and the filters that
say what to ask it (ollama_disk, vllm_host); tests/test_bad_inventories.py runs them through the real
preflight.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
from _modules import load_module

GIB = 1024


@pytest.fixture(scope="module")
def disk() -> ModuleType:
    return load_module("plugins/modules/llm_host_storage.py")


@pytest.fixture(scope="module")
def ollama() -> ModuleType:
    return load_module("plugins/filter/ollama_disk.py")


@pytest.fixture(scope="module")
def vllm() -> ModuleType:
    return load_module("plugins/filter/vllm_host.py")


def _missing(label: str, need_mb: int | None, device: int = 1, free_mb: int = 100 * GIB, **extra: object) -> dict:
    return {"label": label, "path": f"/store/{label}", "need_mb": need_mb, "mount": "/", "device": device,
            "free_mb": free_mb, **extra}


def test_models_that_fit_give_no_message(disk: ModuleType) -> None:
    assert disk.disk_problems([]) == []
    assert disk.disk_problems([_missing("a", 40 * GIB), _missing("b", 50 * GIB)]) == []


def test_the_margin_counts(disk: ModuleType) -> None:
    assert disk.disk_problems([_missing("a", 95 * GIB)], margin=0.0) == []
    [message] = disk.disk_problems([_missing("a", 95 * GIB)], "gpu1")
    assert "Would not fit: a (about 95.0 GiB)" in message
    assert "need about 95.0 GiB (104.5 GiB with a 10% margin)" in message and "has 100.0 GiB free" in message


def test_the_models_after_the_free_space_would_not_fit(disk: ModuleType) -> None:
    items = [_missing("small", 10 * GIB, store="/models", setting="ollama_models_dir"),
             _missing("huge", 500 * GIB, store="/models", setting="ollama_models_dir"),
             _missing("unsized", None, store="/hf", setting="vllm_home"),
             _missing("medium", 30 * GIB, store="/hf", setting="vllm_home")]
    [message] = disk.disk_problems(items, "gpu1")
    assert "Would not fit: huge (about 500.0 GiB)." in message  # small and medium fit without it
    assert "small (" not in message and "medium (" not in message
    assert "Not counted, their size unknown: unsized." in message
    assert "(/hf, /models)" in message and "(ollama_models_dir, vllm_home)" in message
    assert "Free space on /" in message and "remove those models" in message
    [message] = disk.disk_problems([_missing("a", 50 * GIB), _missing("b", 45 * GIB), _missing("c", 50 * GIB)])
    assert "Would not fit: b (about 45.0 GiB), c (about 50.0 GiB)." in message


def test_file_systems_are_counted_apart(disk: ModuleType) -> None:
    items = [_missing("a", 60 * GIB, device=1), _missing("b", 60 * GIB, device=2)]
    assert disk.disk_problems(items) == []
    assert len(disk.disk_problems([*items, _missing("c", 60 * GIB, device=2)])) == 1


def test_nothing_of_known_size_is_no_message(disk: ModuleType) -> None:
    assert disk.disk_problems([_missing("a", None, free_mb=0)]) == []


def test_what_an_earlier_look_found_missing_counts_first(disk: ModuleType, tmp_path: Path) -> None:
    free = disk.filesystem(str(tmp_path))["free_mb"]
    earlier = disk.check(wanted=[{"label": "vllm's", "path": str(tmp_path / "hf/x"), "need_mb": free * 0.6}])
    assert earlier["problems"] == [] and len(earlier["missing"]) == 1
    later = disk.check(wanted=[{"label": "ollama's", "path": str(tmp_path / "o/y"), "need_mb": free * 0.6}],
                       missing=earlier["missing"], host="ws")
    [problem] = later["problems"]
    assert "Would not fit: ollama's (about" in problem and "vllm's (" not in problem


def test_ollama_wants_what_a_run_pulls_sized_like_the_memory_plan(ollama: ModuleType) -> None:
    wanted = ollama.storage_wanted(["qwen2.5-coder:7b", {"name": "big:latest", "memory_gb": 20},
                                    "nomic-embed-text", "team/coder:v2", "hf.co/org/repo:Q4_K_M", "qwen3:235b"],
                                   "/m", 64 * GIB, custom=[{"name": "mine", "from": "llama3.2:3b"}])
    by_label = {item["label"]: item for item in wanted}
    assert list(by_label) == ["Ollama model qwen2.5-coder:7b", "Ollama model big:latest",
                              "Ollama model nomic-embed-text:latest", "Ollama model team/coder:v2",
                              "Ollama model hf.co/org/repo:Q4_K_M", "Ollama model llama3.2:3b"]  # 235b: over budget
    assert by_label["Ollama model qwen2.5-coder:7b"]["need_mb"] == int((7 * 0.6 + 1) * 1024)
    assert by_label["Ollama model big:latest"]["need_mb"] == 20 * 1024
    assert by_label["Ollama model nomic-embed-text:latest"]["need_mb"] is None
    assert [item["path"] for item in wanted][:5] == [
        "/m/manifests/registry.ollama.ai/library/qwen2.5-coder/7b", "/m/manifests/registry.ollama.ai/library/big/latest",
        "/m/manifests/registry.ollama.ai/library/nomic-embed-text/latest",
        "/m/manifests/registry.ollama.ai/team/coder/v2", "/m/manifests/hf.co/org/repo/Q4_K_M"]
    assert {item["setting"] for item in wanted} == {"ollama_models_dir"}


@pytest.mark.parametrize(("model", "gib"), [
    ("Qwen/Qwen2.5-Coder-1.5B-Instruct", 2.8), ("meta-llama/Llama-3.1-8B-Instruct", 14.9),
    ("Qwen/Qwen3-30B-A3B", 55.9), ("mistralai/Mixtral-8x7B-v0.1", 104.3), ("HuggingFaceTB/SmolLM2-135M", 0.25),
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", 3.9), ("RedHatAI/Llama-3.1-8B-Instruct-FP8", 8.2),
    ("BAAI/bge-reranker-v2-m3", None), ("microsoft/Phi-3.5-mini-instruct", None)])
def test_hugging_face_sizes_come_from_the_name(vllm: ModuleType, model: str, gib: float | None) -> None:
    mb = vllm.estimate_mb(model)
    assert (mb is None) if gib is None else round(mb / 1024, 1) == pytest.approx(gib, abs=0.1)


def test_vllm_wants_its_hugging_face_models_in_the_cache(vllm: ModuleType) -> None:
    models = [{"name": "a", "model": "Qwen/Qwen3-8B", "port": 8000},
              {"name": "b", "model": "/srv/models/x", "port": 8001},
              {"name": "c", "model": "org/thing", "port": 8002, "environment": {"HF_HOME": "/data/hf"}}]
    wanted = vllm.storage_wanted(models, "/var/lib/vllm/huggingface")
    assert [(w["label"], w["path"]) for w in wanted] == [
        ("vllm_models[0].model Qwen/Qwen3-8B", "/var/lib/vllm/huggingface/hub/models--Qwen--Qwen3-8B/snapshots"),
        ("vllm_models[2].model org/thing", "/data/hf/hub/models--org--thing/snapshots")]
    assert vllm.storage_wanted(models[:1], "/h", {"HF_HUB_CACHE": "/c/"})[0]["path"] == "/c/models--Qwen--Qwen3-8B/snapshots"
    assert vllm.model_paths(models) == [{"label": "vllm: vllm_models[1].model", "path": "/srv/models/x"}]


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_model_paths_must_be_models(tmp_path: Path, disk: ModuleType, vllm: ModuleType) -> None:
    _tree(tmp_path, {"good/config.json": "{}", "good/model-00001-of-00002.safetensors": "",
                     "mistral/params.json": "{}", "mistral/consolidated.safetensors": "",
                     "noconfig/model.safetensors": "", "noweights/config.json": "{}", "noweights/tokenizer.json": "",
                     "gguf/model.Q4_K_M.gguf": "", "file.txt": "", "one.gguf": ""})
    names = ("good", "mistral", "noconfig", "noweights", "gguf", "file.txt", "one.gguf", "absent")
    models = [{"name": f"m{i}", "model": str(tmp_path / name), "port": 8000 + i} for i, name in enumerate(names)]
    models.append({"name": "hub", "model": "Qwen/Qwen3-8B", "port": 9000})
    paths = vllm.model_paths(models)
    assert [p["label"] for p in paths] == [f"vllm: vllm_models[{i}].model" for i in range(len(names))]
    problems = disk.check(models=paths, host="gpu1")["problems"]
    by_index = {int(e.split("[", 1)[1].split("]", 1)[0]): e for e in problems}
    assert sorted(by_index) == [2, 3, 4, 5, 7], problems
    assert "without config.json, so not a model directory" in by_index[2]
    assert "without weights (*.safetensors or *.bin)" in by_index[3]
    assert "give the .gguf file as the model" in by_index[4]
    assert "a file that is not a GGUF model" in by_index[5]
    assert by_index[7].startswith(f"vllm: vllm_models[7].model is {tmp_path / 'absent'}, which does not exist on gpu1.")
    assert all("Copy the model there" in e for e in problems)


def test_the_look_finds_what_is_missing_and_the_room_for_it(tmp_path: Path, disk: ModuleType) -> None:
    _tree(tmp_path, {"store/manifests/h/n/m/have": "{}"})
    (tmp_path / "hub/models--a--b/snapshots").mkdir(parents=True)  # an interrupted download: empty
    wanted = [{"label": "have", "path": str(tmp_path / "store/manifests/h/n/m/have"), "need_mb": 1},
              {"label": "new", "path": str(tmp_path / "store/manifests/h/n/m/new"), "need_mb": 2, "setting": "x"},
              {"label": "fresh", "path": str(tmp_path / "not/yet/there/file"), "need_mb": None},
              {"label": "empty", "path": str(tmp_path / "hub/models--a--b/snapshots"), "need_mb": 3}]
    missing = disk.check(wanted=wanted)["missing"]
    assert [m["label"] for m in missing] == ["new", "fresh", "empty"]
    assert missing[0]["setting"] == "x"
    stat = os.statvfs(tmp_path)
    assert abs(missing[1]["free_mb"] - stat.f_bavail * stat.f_frsize // 2**20) < 64
    assert missing[1]["device"] == os.stat(tmp_path).st_dev and os.path.ismount(missing[1]["mount"])
