"""Filters that check Open WebUI's settings and connection lists.

Kept in Python so the connection rules are unit-tested in tests/test_open_webui_filters.py. Its
environment files are written by the collection's env_file filter (plugins/filter/env_file.py), like
every other role's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.addresses import is_url
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.secrets import is_placeholder, placeholders
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.vllm_serving import serves

# Addresses that keep Open WebUI on this machine (exposure_errors).
_LOOPBACK = ("127.0.0.1", "::1", "localhost", "[::1]")


def connection_errors(ollama_urls: Iterable[Any], openai_connections: Iterable[Any]) -> list[str]:
    """What is wrong with open_webui_ollama_base_urls and open_webui_openai_connections (empty: fine).

    Open WebUI joins both lists with `;`, so a URL may hold no `;` or whitespace; keys are matched to
    URLs by position, so every OpenAI connection is a mapping with a url and an optional key.
    """
    errors = []
    for url in ollama_urls or []:
        if not isinstance(url, str) or not is_url(url, ';'):
            errors.append(f"open_webui_ollama_base_urls: Ollama URL {url!r} must be http(s)://host[:port] without ';' or spaces")
    for index, connection in enumerate(openai_connections or []):
        if not isinstance(connection, Mapping) or set(connection) - {"url", "key"}:
            errors.append(f"open_webui_openai_connections: OpenAI connection #{index + 1} must be a mapping with url and key only")
            continue
        url = connection.get("url")
        if not isinstance(url, str) or not is_url(url, ';'):
            errors.append(f"open_webui_openai_connections: OpenAI connection #{index + 1}: url {url!r} must be http(s)://... "
                          "without ';' or spaces")
        key = connection.get("key", "")
        if not isinstance(key, str) or ";" in key:
            errors.append(f"open_webui_openai_connections: OpenAI connection #{index + 1}: key must be a string without ';'")
        elif is_placeholder(key):
            errors.append(f"open_webui_openai_connections: OpenAI connection #{index + 1}: key is a placeholder; put the "
                          "real key in vault, or \"none\" for a server without one")
    return errors


def exposure_errors(host: str, environment: Mapping[str, Any], signup: Any, default_role: str) -> list[str]:
    """What makes an Open WebUI listening beyond loopback open to anyone who reaches it (empty: fine)."""
    if str(host).strip() in _LOOPBACK:
        return []
    # "proxy": on loopback, but the host serves the network through its TLS proxy (llm_host_expose).
    proxied = str(host) == "proxy"
    where = ("serves the network through its TLS proxy (llm_host_expose)" if proxied
             else f"listens on {host} (open_webui_host)")
    errors = []
    auth = (environment or {}).get("WEBUI_AUTH", True)
    if str(auth).strip().lower() in ("false", "0", "no", "off"):
        errors.append(f"open_webui_environment sets WEBUI_AUTH false while Open WebUI {where}, so anyone who reaches "
                      "it is admin. Remove WEBUI_AUTH from open_webui_environment, or set "
                      + ("llm_host_expose: false" if proxied else "open_webui_host: 127.0.0.1"))
    if str(signup).strip().lower() in ("true", "1", "yes", "on") and default_role == "admin":
        errors.append(f"open_webui_enable_signup with open_webui_default_user_role admin while Open WebUI {where}: "
                      "anyone who reaches it can make themselves admin. Set open_webui_default_user_role: "
                      "pending (an admin approves new accounts), or open_webui_enable_signup: false")
    return errors


def vllm_connections(vllm_models: Iterable[Any], enabled: Any = "auto", host_type: str = "",
                     api_key: str = "") -> list[dict[str, str]]:
    """OpenAI connections to the vLLM servers the vllm role runs on this host, one per served model.

    Where the vllm role serves by its own rule (module_utils/vllm_serving.py, the role's
    _vllm_is_enabled). Each connection carries the entry's api_key, else the role-wide key.
    """
    if not serves(enabled, host_type, vllm_models):
        return []
    connections = []
    for entry in vllm_models or []:
        if not isinstance(entry, Mapping) or "port" not in entry:
            continue  # the vllm role's own checks name a broken entry
        key = entry.get("api_key", api_key) or ""
        connections.append({"url": f"http://127.0.0.1:{entry['port']}/v1", "key": str(key)})
    return connections


def model_uses(environment: Mapping[str, Any]) -> list[dict[str, str]]:
    """The Ollama models this server's settings name, and where: [{provider, model, api_base, by}].

    From the server's effective environment (the inventory's values already on top): the embedding
    model when embeddings go through Ollama (RAG_OLLAMA_BASE_URL, else the first Ollama server), and
    the task model (TASK_MODEL, always an Ollama model). The ollama role pulls those its own Ollama
    serves, so they need not be listed in ollama_models as well.
    """
    env = environment if isinstance(environment, Mapping) else {}
    urls = [u for u in str(env.get("OLLAMA_BASE_URLS") or "").split(";") if u]
    first = urls[0] if urls else ""
    uses = []
    if str(env.get("RAG_EMBEDDING_ENGINE") or "") == "ollama" and env.get("RAG_EMBEDDING_MODEL"):
        uses.append({"provider": "ollama", "model": str(env["RAG_EMBEDDING_MODEL"]),
                     "api_base": str(env.get("RAG_OLLAMA_BASE_URL") or first),
                     "by": "Open WebUI's embedding model (open_webui_rag_embedding_model)"})
    if env.get("TASK_MODEL") and first:
        uses.append({"provider": "ollama", "model": str(env["TASK_MODEL"]), "api_base": first,
                     "by": "Open WebUI's task model (TASK_MODEL in open_webui_environment)"})
    return uses


class FilterModule:
    """Open WebUI environment filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "open_webui_connection_errors": connection_errors,
            "open_webui_placeholders": placeholders,
            "open_webui_exposure_errors": exposure_errors,
            "open_webui_vllm_connections": vllm_connections,
            "open_webui_model_uses": model_uses,
        }
