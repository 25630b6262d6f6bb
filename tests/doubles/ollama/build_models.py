#!/usr/bin/env python3
"""Write models of the Ollama test double's catalog into a models directory, as its pull would.

**Test double.** The test bed's team mirror of Ollama models (`ollama_models_mirror`) is a copy of
a store that has them; real Ollama models cannot be downloaded here, so this fills a store from the
double's catalog (the same manifests and blobs the double's own pull writes) for a mirror to serve:

    python3 tests/doubles/ollama/build_models.py --out DIR qwen2.5-coder:1.5b nomic-embed-text

Writing a model again leaves its files as they are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ollama_double  # noqa: E402 - the double sits next to this file


def build(out: Path, names: list[str]) -> list[str]:
    """The models written (display names); blobs two models share are written once."""
    store = ollama_double.Store(out)
    store.ensure()
    registry = ollama_double.Registry(None)
    written = []
    for raw in names:
        name = ollama_double.ModelName.parse(raw)
        remote = registry.lookup(name)
        if remote is None:
            raise SystemExit(f"build_models: {raw} is not in the double's catalog")
        for layer in remote.layers:
            if not store.has_blob(layer["digest"]):
                store.write_blob(layer["digest"], remote.blobs[layer["digest"]])
        if not store.manifest_path(name).is_file():
            store.write_manifest(name, remote.manifest)
        written.append(name.display())
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the models directory to fill")
    parser.add_argument("models", nargs="+", help="model names as `ollama pull` takes them")
    args = parser.parse_args()
    print("\n".join(build(args.out, args.models)))


if __name__ == "__main__":
    main()
