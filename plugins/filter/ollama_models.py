"""Filters that turn the inventory's model lists into a plan: what to pull, skip, prune or re-create.

Kept in Python so the rules (name normalisation, memory estimates, exact matching) are unit-tested
in tests/test_ollama_filters.py rather than spread over Jinja expressions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
# "32b", "1.5b", "70b-instruct-q4_K_M": a parameter count at the start of a tag or after a dash.
_PARAMS = re.compile(r"(?:^|[-_])(\d+(?:\.\d+)?)b(?:$|[-_])", re.IGNORECASE)
# What Ollama accepts in a name: each path part letters, digits, '.', '_' and '-' (a registry host may
# carry a :port), the tag the same, starting with a letter, digit or '_'.
# Matched whole (fullmatch: `$` would also match before a final line break).
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def model_name(name: str) -> str:
    """The name Ollama lists a model under: default host and namespace dropped, tag made explicit."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    name = name.strip()
    if "@" in name:
        raise ValueError(f"model {name!r}: pin a tag, not a digest")
    path, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    tag = tag or DEFAULT_TAG
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == DEFAULT_HOST:
        parts = parts[1:]
    if len(parts) == 2 and parts[0] == DEFAULT_NAMESPACE:
        parts = parts[1:]
    valid = [(_HOST if len(parts) == 3 and i == 0 else _PART).fullmatch(part) for i, part in enumerate(parts)]
    if not all(parts) or len(parts) > 3 or not all(valid) or not _TAG.fullmatch(tag):
        raise ValueError(f"model name {name!r} is not [host/][namespace/]model[:tag] (letters, digits, '.', '_', '-')")
    return "/".join(parts) + ":" + tag


def _entry(entry: Any) -> tuple[str, float | None]:
    """(normalised name, declared memory in GiB or None) of one ollama_models entry."""
    if isinstance(entry, str):
        return model_name(entry), None
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"name", "memory_gb"}
        if unknown:
            raise ValueError(f"model entry {dict(entry)!r}: unknown keys {sorted(unknown)}; allowed: name, memory_gb")
        memory = entry.get("memory_gb")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory <= 0):
            raise ValueError(f"model {entry.get('name')!r}: memory_gb must be a positive number (GiB), got {memory!r}")
        return model_name(entry.get("name", "")), memory
    raise ValueError(f"model entry must be a name or a mapping with a name, got {entry!r}")


def model_errors(declared: Iterable[Any], custom: Iterable[Any] = ()) -> list[str]:
    """Every problem in the declared model lists, as messages (empty when all is well)."""
    errors: list[str] = []
    seen: set[str] = set()
    for entry in declared or []:
        written = entry.get("name") if isinstance(entry, Mapping) else entry
        if isinstance(written, str) and written != written.strip():
            # model_name() strips what `ollama list` prints; in the inventory it is a typo.
            errors.append(f"ollama_models: model name {written!r} has spaces or a line break around it; remove them")
            continue
        try:
            name, _ = _entry(entry)
        except ValueError as error:
            errors.append(f"ollama_models: {error}")
            continue
        if name in seen:
            errors.append(f"ollama_models: model {name} is listed twice")
        seen.add(name)
    for entry in custom or []:
        if not isinstance(entry, Mapping):
            errors.append(f"ollama_custom_models: custom model must be a mapping, got {entry!r}")
            continue
        label = f"ollama_custom_models: custom model {entry.get('name')!r}"
        unknown = set(entry) - {"name", "from", "system", "parameters", "template"}
        if unknown:
            errors.append(f"{label}: unknown keys {sorted(unknown)}")
        for key in ("name", "from"):
            written = entry.get(key, "")
            if isinstance(written, str) and written != written.strip():
                errors.append(f"{label}: {key} {written!r} has spaces or a line break around it; remove them")
                continue
            try:
                model_name(written)
            except ValueError as error:
                errors.append(f"{label}: {key}: {error}")
        if not isinstance(entry.get("parameters", {}), Mapping):
            errors.append(f"{label}: parameters must be a mapping")
    return errors


def _served_here(api_base: str, own_hosts: Iterable[str], port: int) -> bool:
    """Whether an Ollama URL (http://localhost:11434) is this host's own Ollama."""
    try:
        url = urlsplit(api_base.strip())
        url_port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:
        return False
    hosts = {str(h).strip("[]").lower() for h in own_hosts if h}
    return url.scheme in ("http", "https") and (url.hostname or "") in hosts and url_port == int(port)


def client_models(uses: Any, own_hosts: Iterable[str], port: int) -> dict[str, Any]:
    """The models clients on this host take from its own Ollama, to pull without listing them twice.

    `uses` are [{provider, model, api_base, by}] as the continue and open_webui roles publish them;
    those with provider ollama whose api_base is one of `own_hosts` at `port` count. Returns
    {models: [normalised names, in order], by: {name: [who uses it]}, errors: [messages]}.
    """
    models: list[str] = []
    by: dict[str, list[str]] = {}
    errors: list[str] = []
    for use in uses if isinstance(uses, Iterable) and not isinstance(uses, (str, Mapping)) else []:
        if not isinstance(use, Mapping) or use.get("provider") != "ollama":
            continue
        if not _served_here(str(use.get("api_base") or ""), own_hosts, port):
            continue
        try:
            name = model_name(use.get("model", ""))
        except ValueError as error:
            errors.append(f"{use.get('by', 'a client')}: {error}")
            continue
        if name not in by:
            models.append(name)
        by.setdefault(name, []).append(str(use.get("by", "")))
    return {"models": models, "by": by, "errors": errors}


def with_models(declared: Any, extra: Iterable[str]) -> Any:
    """`declared` (ollama_models) followed by the names in `extra` it does not already hold.

    A declared entry wins over a derived one (it may give memory_gb). Entries that are not valid
    are kept as they are, for the preflight to name.
    """
    if not isinstance(declared, (list, tuple)):
        return declared  # not a list: left for the preflight to refuse
    entries = list(declared)
    names = set()
    for entry in entries:
        try:
            names.add(_entry(entry)[0])
        except ValueError:
            continue
    return entries + [name for name in extra or [] if name not in names]


def estimate_mb(name: str, gb_per_billion: float, overhead_gb: float) -> int | None:
    """Memory a model needs, from a parameter count in its tag; None when the tag has none."""
    tag = model_name(name).rsplit(":", 1)[1]
    match = _PARAMS.search(tag)
    if not match:
        return None
    return int((float(match.group(1)) * gb_per_billion + overhead_gb) * 1024)


def model_plan(declared: Iterable[Any], installed: Iterable[str], budget_mb: int,
               gb_per_billion: float = 0.6, overhead_gb: float = 1.0, custom: Iterable[Any] = (),
               prune: bool = False) -> dict[str, Any]:
    """What to do on one host.

    wanted: declared models that fit (plus the bases of custom models); pull: those not installed;
    skipped: [{name, need_mb, budget_mb}] that do not fit; prune: installed models that nobody
    declared (only when prune is true). Names match exactly after normalisation.
    """
    errors = model_errors(declared, custom)
    if errors:
        raise ValueError("; ".join(errors))
    installed_set = {model_name(name) for name in installed or []}
    wanted: list[str] = []
    skipped: list[dict[str, Any]] = []
    declared_names: set[str] = set()
    for entry in declared or []:
        name, memory_gb = _entry(entry)
        declared_names.add(name)
        need = int(memory_gb * 1024) if memory_gb is not None else estimate_mb(name, gb_per_billion, overhead_gb)
        if need is not None and budget_mb > 0 and need > budget_mb:
            skipped.append({"name": name, "need_mb": need, "budget_mb": int(budget_mb)})
        else:
            wanted.append(name)
    custom_names = [model_name(entry["name"]) for entry in custom or []]
    for entry in custom or []:
        base = model_name(entry["from"])
        if base not in wanted and base not in custom_names:
            wanted.append(base)
    keep = set(wanted) | declared_names | set(custom_names)
    return {
        "wanted": wanted,
        "pull": [name for name in wanted if name not in installed_set],
        "skipped": skipped,
        "prune": sorted(installed_set - keep) if prune else [],
        "custom": custom_names,
    }


def _parameter_values(text: str) -> dict[str, list[str]]:
    """The `parameters` text of /api/show ("num_ctx    8192" lines) as name -> values."""
    values: dict[str, list[str]] = {}
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            values.setdefault(key, []).append(value.strip().strip('"'))
    return values


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def custom_model_drift(show: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[str]:
    """How an installed custom model differs from its definition (empty: it matches).

    `show` is the /api/show answer, or None when the model is missing.
    """
    if not show:
        return ["missing"]
    reasons = []
    if (show.get("system") or "").strip() != (desired.get("system") or "").strip():
        reasons.append("system prompt differs")
    if desired.get("template") and (show.get("template") or "").strip() != desired["template"].strip():
        reasons.append("template differs")
    have = _parameter_values(show.get("parameters", ""))
    for key, value in (desired.get("parameters") or {}).items():
        want = [str(v) for v in value] if isinstance(value, list) else [str(value).lower() if isinstance(value, bool) else str(value)]
        got = have.get(key, [])
        if len(want) != len(got) or not all(_same(w, g) for w, g in zip(want, got)):
            reasons.append(f"parameter {key} is {got or 'unset'}, want {want}")
    return reasons


def manifest_names(paths: Iterable[str], root: str) -> list[str]:
    """The models whose manifests are at `paths` in a store's manifests directory `root`.

    Ollama keeps one manifest per model at <root>/<host>/<namespace>/<model>/<tag>; the names are
    what /api/tags lists, for a check run that finds the server not answering. Anything else there
    (a partial download, a stray file) is not a model and is left out.
    """
    names = []
    prefix = root.rstrip("/") + "/"
    for path in paths or []:
        parts = path[len(prefix):].split("/") if path.startswith(prefix) else []
        if len(parts) != 4:
            continue
        try:
            names.append(model_name("/".join(parts[:3]) + ":" + parts[3]))
        except ValueError:
            continue
    return sorted(set(names))


def sha256sums(text: str) -> dict[str, str]:
    """The `sha256sum` output a release publishes ("<hex>  [*./]name" lines) as name -> hex."""
    sums: dict[str, str] = {}
    for line in (text or "").splitlines():
        match = re.match(r"^([0-9a-fA-F]{64})\s+\*?(?:\./)?(\S+)\s*$", line)
        if match:
            sums[match.group(2)] = match.group(1).lower()
    return sums


class FilterModule:
    """Ollama model filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "ollama_model_name": model_name,
            "ollama_model_errors": model_errors,
            "ollama_model_plan": model_plan,
            "ollama_client_models": client_models,
            "ollama_with_models": with_models,
            "ollama_custom_model_drift": custom_model_drift,
            "ollama_sha256sums": sha256sums,
            "ollama_manifest_names": manifest_names,
        }
