"""The ollama role's model planning: names, memory estimates, exact matching, custom model drift."""

from __future__ import annotations


import pytest

from _modules import load_module

om = load_module("plugins/filter/ollama_models.py")


@pytest.mark.parametrize(("given", "listed"), [
    ("llama3.2", "llama3.2:latest"),
    ("llama3.2:1b", "llama3.2:1b"),
    ("library/llama3.2", "llama3.2:latest"),
    ("registry.ollama.ai/library/qwen3:8b", "qwen3:8b"),
    ("someone/model:q4", "someone/model:q4"),
    ("hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M"),
    ("  qwen3 ", "qwen3:latest"),
])
def test_names_are_normalised_like_ollama_lists_them(given: str, listed: str) -> None:
    assert om.model_name(given) == listed


@pytest.mark.parametrize("bad", ["", "a//b", "x@sha256:abc", None, "a/b/c/d"])
def test_bad_names_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        om.model_name(bad)  # type: ignore[arg-type]


def test_model_errors_lists_every_problem() -> None:
    errors = om.model_errors(
        ["llama3.2", "llama3.2:latest", {"name": "x", "memory_gb": -1}, {"name": "y", "size": 3}, 7],
        [{"name": "c"}, {"name": "d", "from": "llama3.2", "parameters": [1]}],
    )
    assert any("listed twice" in e for e in errors)
    assert any("memory_gb must be a positive number" in e for e in errors)
    assert any("unknown keys ['size']" in e for e in errors)
    assert any("must be a name or a mapping" in e for e in errors)
    assert any("'c': from" in e for e in errors)
    assert any("parameters must be a mapping" in e for e in errors)
    assert om.model_errors(["a", {"name": "b", "memory_gb": 2}], [{"name": "c", "from": "a"}]) == []


@pytest.mark.parametrize(("name", "mb"), [
    ("qwen2.5-coder:32b", int((32 * 0.6 + 1) * 1024)),
    ("qwen2.5-coder:1.5b", int((1.5 * 0.6 + 1) * 1024)),
    ("llama3:70b-instruct-q4_K_M", int((70 * 0.6 + 1) * 1024)),
    ("llama3.2", None),
    ("nomic-embed-text:v1.5", None),
])
def test_memory_estimate_reads_the_parameter_count_in_the_tag(name: str, mb: int | None) -> None:
    assert om.estimate_mb(name, 0.6, 1.0) == mb


def test_plan_pulls_only_missing_and_skips_what_does_not_fit() -> None:
    plan = om.model_plan(
        ["llama3.2", "qwen2.5-coder:32b", {"name": "big-embed", "memory_gb": 40}, "qwen3:8b"],
        installed=["llama3.2:latest", "other:latest"],
        budget_mb=16 * 1024,
    )
    assert plan["wanted"] == ["llama3.2:latest", "qwen3:8b"]
    assert plan["pull"] == ["qwen3:8b"]
    assert [s["name"] for s in plan["skipped"]] == ["qwen2.5-coder:32b", "big-embed:latest"]
    assert plan["skipped"][1] == {"name": "big-embed:latest", "need_mb": 40 * 1024, "budget_mb": 16 * 1024}
    assert plan["prune"] == []  # prune is off


def test_plan_prunes_exact_names_only_and_keeps_custom_bases_and_skipped() -> None:
    plan = om.model_plan(
        ["gemma4:e4b", "qwen2.5-coder:32b"],
        installed=["gemma4:e4b", "gemma4:12b", "qwen2.5-coder:32b", "mine:latest", "qwen3:8b", "stray:latest"],
        budget_mb=8 * 1024,
        custom=[{"name": "mine", "from": "qwen3:8b"}],
        prune=True,
    )
    # gemma4:12b shares a prefix with a wanted model: it still goes. The 32b model does not fit but
    # is declared, so an existing copy stays.
    assert plan["prune"] == ["gemma4:12b", "stray:latest"]
    assert plan["wanted"] == ["gemma4:e4b", "qwen3:8b"]
    assert plan["custom"] == ["mine:latest"]


def test_plan_without_budget_skips_nothing() -> None:
    assert om.model_plan(["qwen3:235b"], [], budget_mb=0)["pull"] == ["qwen3:235b"]


def test_plan_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        om.model_plan(["a", "a:latest"], [], 0)


SHOW = {
    "system": "You review code. Answer briefly.",
    "parameters": 'num_ctx                        8192\ntemperature                    0.1\nstop                           "<|im_end|>"\nstop                           "<|endoftext|>"',
    "template": "{{ .Prompt }}",
}


def test_custom_model_matches_its_definition() -> None:
    desired = {"name": "c", "from": "b", "system": "You review code. Answer briefly.",
               "parameters": {"temperature": 0.1, "num_ctx": 8192, "stop": ["<|im_end|>", "<|endoftext|>"]}}
    assert om.custom_model_drift(SHOW, desired) == []


def test_custom_model_drift_names_the_difference() -> None:
    assert om.custom_model_drift(None, {"name": "c"}) == ["missing"]
    reasons = om.custom_model_drift(SHOW, {"system": "other", "parameters": {"temperature": 0.2, "top_k": 20},
                                           "template": "x"})
    assert reasons == ["system prompt differs", "template differs",
                       "parameter temperature is ['0.1'], want ['0.2']", "parameter top_k is unset, want ['20']"]


def test_sha256sums_reads_release_checksum_files() -> None:
    text = ("a" * 64 + "  ollama-linux-amd64.tar.zst\n" + "B" * 64 + " *./ollama-linux-arm64.tgz\n"
            "garbage line\n")
    assert om.sha256sums(text) == {"ollama-linux-amd64.tar.zst": "a" * 64, "ollama-linux-arm64.tgz": "b" * 64}


def test_manifest_names_are_what_the_api_lists() -> None:
    # A check run that finds the server stopped plans from the store's manifests instead of /api/tags.
    root = "/usr/share/ollama/.ollama/models/manifests"
    paths = [f"{root}/registry.ollama.ai/library/llama3.2/latest",
             f"{root}/registry.ollama.ai/library/qwen2.5-coder/1.5b",
             f"{root}/registry.ollama.ai/alice/coder/v2",
             f"{root}/mirror.lan:5000/team/coder/7b",
             f"{root}/registry.ollama.ai/library/partial",  # not host/namespace/model/tag
             "/elsewhere/registry.ollama.ai/library/x/latest"]
    assert om.manifest_names(paths, root + "/") == [
        "alice/coder:v2", "llama3.2:latest", "mirror.lan:5000/team/coder:7b", "qwen2.5-coder:1.5b"]
    plan = om.model_plan(["llama3.2", "qwen2.5-coder:7b"], om.manifest_names(paths, root), 0)
    assert plan["pull"] == ["qwen2.5-coder:7b"]


@pytest.mark.parametrize("entry", ["qwen3:8b\n", " qwen3:8b", {"name": "qwen3:8b\n"}])
def test_a_model_name_with_anything_around_it_is_refused(entry: object) -> None:
    errors = om.model_errors([entry])
    assert len(errors) == 1 and "has spaces or a line break around it" in errors[0]
    assert om.model_errors([], [{"name": "coder", "from": "qwen3:8b\n"}])[0].endswith("around it; remove them")
