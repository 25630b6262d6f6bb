"""tests/fixtures/make_tiny_model.py writes a tiny Llama that real vLLM serves on CPU.

These tests run the script as a process (the controller runs it with a bare python3) and
check what it wrote with the standard library alone: the safetensors file is parsed by
hand, the config, tokenizer and chat template are checked against each other. Serving
the model with vLLM is too slow for this suite (a minute or more to start).
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from array import array
from pathlib import Path

import jinja2.sandbox
import pytest

SCRIPT = Path(__file__).resolve().parent / "fixtures" / "make_tiny_model.py"
FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]


def _run(out_dir: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out_dir), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    stdout = _run(out)
    size = sum(p.stat().st_size for p in out.iterdir())
    assert stdout.split()[:2] == [str(out.resolve()), str(size)], stdout
    return out


def _json(model_dir: Path, name: str) -> dict:
    return json.loads((model_dir / name).read_text(encoding="utf-8"))


def _safetensors(path: Path) -> tuple[dict, bytes]:
    """(header, data section) of a safetensors file."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert 0 < header_len <= len(raw) - 8
    header = json.loads(raw[8 : 8 + header_len].decode("utf-8"))
    return header, raw[8 + header_len :]


def _floats(header: dict, data: bytes, name: str) -> array:
    begin, end = header[name]["data_offsets"]
    values = array("f")
    values.frombytes(data[begin:end])
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _expected_shapes(config: dict) -> dict[str, list[int]]:
    """Every tensor HF's LlamaForCausalLM loads, derived from config.json."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim = config["head_dim"]
    q_dim = config["num_attention_heads"] * head_dim
    kv_dim = config["num_key_value_heads"] * head_dim
    shapes = {
        "model.embed_tokens.weight": [config["vocab_size"], hidden],
        "model.norm.weight": [hidden],
    }
    for n in range(config["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes |= {
            p + "self_attn.q_proj.weight": [q_dim, hidden],
            p + "self_attn.k_proj.weight": [kv_dim, hidden],
            p + "self_attn.v_proj.weight": [kv_dim, hidden],
            p + "self_attn.o_proj.weight": [hidden, q_dim],
            p + "mlp.gate_proj.weight": [inter, hidden],
            p + "mlp.up_proj.weight": [inter, hidden],
            p + "mlp.down_proj.weight": [hidden, inter],
            p + "input_layernorm.weight": [hidden],
            p + "post_attention_layernorm.weight": [hidden],
        }
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = [config["vocab_size"], hidden]
    return shapes


def test_writes_the_model_files_well_under_2_mb(model_dir: Path) -> None:
    assert {p.name for p in model_dir.iterdir()} == FILES
    assert sum(p.stat().st_size for p in model_dir.iterdir()) < 1.5 * 1024 * 1024


def test_config_is_a_tiny_llama_that_vllm_cpu_accepts(model_dir: Path) -> None:
    config = _json(model_dir, "config.json")
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["model_type"] == "llama"
    assert config["vocab_size"] == 64
    assert (config["hidden_size"], config["intermediate_size"]) == (128, 256)
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]) == (2, 2, 2)
    # The CPU attention backend accepts head_dim 64 and rejects 16.
    assert config["head_dim"] == config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0
    # Continue's prompt with tools needs a long context (served with --max-model-len 16384).
    assert config["max_position_embeddings"] == 16384
    assert config["torch_dtype"] == "float32"
    assert config["rms_norm_eps"] > 0 and config["rope_theta"] > 0
    vocab = _json(model_dir, "tokenizer.json")["model"]["vocab"]
    assert [config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")] == [
        vocab["<s>"], vocab["</s>"], vocab["<pad>"]
    ]
    generation = _json(model_dir, "generation_config.json")
    assert [generation[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")] == [
        config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
    ]
    assert 0 < generation["max_new_tokens"] <= 64


def test_safetensors_holds_every_llama_tensor_with_matching_offsets(model_dir: Path) -> None:
    config = _json(model_dir, "config.json")
    header, data = _safetensors(model_dir / "model.safetensors")
    assert header.pop("__metadata__") == {"format": "pt"}
    expected = _expected_shapes(config)
    assert set(header) == set(expected)
    spans = []
    for name, info in header.items():
        assert set(info) == {"dtype", "shape", "data_offsets"}, name
        assert info["dtype"] == "F32", name
        assert info["shape"] == expected[name], name
        begin, end = info["data_offsets"]
        assert end - begin == 4 * math.prod(info["shape"]), name
        spans.append((begin, end))
    spans.sort()
    # Contiguous from 0 to the end of the file: no gap, no overlap, nothing after.
    assert spans[0][0] == 0
    assert all(a_end == b_begin for (_, a_end), (b_begin, _) in zip(spans, spans[1:]))
    assert spans[-1][1] == len(data)


def test_weights_are_small_random_values_and_norms_are_one(model_dir: Path) -> None:
    header, data = _safetensors(model_dir / "model.safetensors")
    header.pop("__metadata__")
    for name in header:
        values = _floats(header, data, name)
        assert all(math.isfinite(v) for v in values), name
        if name.endswith("norm.weight"):
            assert set(values) == {1.0}, name
            continue
        # Leave out the bias channel (column 0 or row 0, see below) when measuring the spread.
        rows, cols = header[name]["shape"]
        rest = [values[r * cols + c] for r in range(1, rows) for c in range(1, cols)]
        mean = sum(rest) / len(rest)
        std = math.sqrt(sum((v - mean) ** 2 for v in rest) / len(rest))
        assert abs(mean) < 0.002 and 0.018 < std < 0.022, (name, mean, std)
        assert max(abs(v) for v in rest) < 0.2, name


def test_bias_channel_keeps_special_tokens_out_of_the_output(model_dir: Path) -> None:
    """Hidden dim 0 is 1.0 in every embedding, nothing writes or reads it, lm_head uses it."""
    header, data = _safetensors(model_dir / "model.safetensors")
    header.pop("__metadata__")
    n_special = len(SPECIAL)
    for name in header:
        if name.endswith("norm.weight"):
            continue
        values = _floats(header, data, name)
        rows, cols = header[name]["shape"]
        column0 = [values[r * cols] for r in range(rows)]
        row0 = list(values[:cols])
        if name == "model.embed_tokens.weight":
            assert set(column0) == {1.0}
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            assert set(row0) == {0.0}, name
        elif name == "lm_head.weight":
            assert max(column0[:n_special]) <= -1.0
            assert set(column0[n_special:]) == {0.0}
        else:
            assert set(column0) == {0.0}, name


def test_tokenizer_is_word_level_with_64_ids(model_dir: Path) -> None:
    tokenizer = _json(model_dir, "tokenizer.json")
    model = tokenizer["model"]
    assert model["type"] == "WordLevel" and model["unk_token"] == "<unk>"
    vocab = model["vocab"]
    assert sorted(vocab.values()) == list(range(64))
    assert len(set(vocab)) == 64
    assert tokenizer["pre_tokenizer"] == {"type": "Whitespace"}
    added = tokenizer["added_tokens"]
    assert [t["content"] for t in added] == SPECIAL
    assert all(t["special"] and vocab[t["content"]] == t["id"] for t in added)
    config = _json(model_dir, "tokenizer_config.json")
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["model_max_length"] == 16384
    special_map = _json(model_dir, "special_tokens_map.json")
    assert special_map == {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"
    }
    assert all(config[k] == v for k, v in special_map.items())
    assert {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()} == {
        t: vocab[t] for t in SPECIAL
    }


def _render(template: str, **context: object) -> str:
    # The environment transformers uses for chat templates.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(**context)


def test_chat_template_renders_with_and_without_tools(model_dir: Path) -> None:
    template = _json(model_dir, "tokenizer_config.json")["chat_template"]
    vocab = _json(model_dir, "tokenizer.json")["model"]["vocab"]
    messages = [
        {"role": "system", "content": "you are a tiny model"},
        {"role": "user", "content": "say hello"},
        {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]},
        {"role": "tool", "content": "ok"},
    ]
    plain = _render(template, messages=messages, add_generation_prompt=True)
    assert plain == (
        "system : you are a tiny model\nuser : say hello\nassistant :\ntool : ok\nassistant :"
    )
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with_tools = _render(template, messages=messages, tools=tools, add_generation_prompt=True)
    assert with_tools == "system : tools available\n" + plain
    # Every word the template itself writes is in the vocabulary (no <unk>).
    assert {"system", "tools", "available", "user", "assistant", "tool", ":"} <= set(vocab)


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path, model_dir: Path) -> None:
    _run(tmp_path / "again", "--seed", "0")
    _run(tmp_path / "seed7", "--seed", "7")
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (model_dir / name).read_bytes(), name
    assert (tmp_path / "seed7" / "model.safetensors").read_bytes() != (model_dir / "model.safetensors").read_bytes()
    for name in FILES - {"model.safetensors"}:
        assert (tmp_path / "seed7" / name).read_bytes() == (model_dir / name).read_bytes(), name


def test_runs_without_third_party_packages(tmp_path: Path) -> None:
    """The controller has no torch/numpy: run with -I -S (no site-packages, no user site)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), str(tmp_path / "bare")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "bare" / "model.safetensors").stat().st_size > 1_000_000
