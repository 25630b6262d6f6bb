"""Where a host finds the team server: the URLs of the services the server exposes to the fleet.

Computed from the server's inventory variables (not from facts), so a laptop-only run
(`invoke provision --group dev_laptops`) wires the same URLs as a full run. Unit-tested in
tests/test_llm_host_filters.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.addresses import is_host_name
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.collection import ROLES_DIR, role_defaults

# vLLM's own default port (`vllm serve --port`), for an entry without one: the vllm role has no default,
# its preflight requires each entry's port. The other services' defaults are their roles' (default_ports).
VLLM_PORT = 8000
def _served_ollama_models(server_vars: Mapping[str, Any]) -> list[str]:
    """The models the server's inventory gives its Ollama (ollama_models, ollama_custom_models), as written.

    The continue role compares them with its developers' models, each side normalised as Ollama lists it.
    """
    names = []
    for key in ("ollama_models", "ollama_custom_models"):
        entries = server_vars.get(key) or []
        if not isinstance(entries, list):
            continue
        for entry in entries:
            value = entry.get("name") if isinstance(entry, Mapping) else entry
            if isinstance(value, str) and value.strip():
                names.append(value.strip())
    return names


def _port(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def default_ports(roles_dir: str = ROLES_DIR) -> dict[str, int]:
    """The ports the ollama and open_webui roles listen on when the inventory sets none (their defaults),
    and the HTTPS ports of the llm_proxy role in front of them (proxy_*)."""
    proxy = role_defaults("llm_proxy", roles_dir)
    return {"ollama": int(role_defaults("ollama", roles_dir)["ollama_port"]),
            "open_webui": int(role_defaults("open_webui", roles_dir)["open_webui_port"]),
            "proxy_ollama": int(proxy["llm_proxy_ollama_port"]),
            "proxy_open_webui": int(proxy["llm_proxy_open_webui_port"]),
            "proxy_vllm": int(proxy["llm_proxy_vllm_port"])}


def _https(address: str, port: int) -> str:
    return f"https://{address}" if port == 443 else f"https://{address}:{port}"


def team_endpoints(server: str, me: str, server_vars: Mapping[str, Any] | None,
                   roles_dir: str = ROLES_DIR) -> dict[str, Any]:
    """The team server's name, whether it serves the fleet, and its service URLs.

    `server` is llm_host_team_server (empty: no team server), `me` the calling host's
    inventory_hostname, `server_vars` the server's hostvars. A server reaches its own services on
    localhost over plain HTTP; another host only when the server sets llm_host_expose, through the
    server's TLS proxy (the llm_proxy role's HTTPS ports, each vLLM server at /<name>/v1) at
    llm_host_advertised_name (else ansible_host, else its inventory name). An unexposed server yields no URLs: its services
    listen on loopback only. Ports the server's inventory does not set are its roles' defaults, read
    from `roles_dir` (the collection's roles).
    """
    result: dict[str, Any] = {"server": server or "", "exposed": False, "address": ""}
    if not server:
        return result
    server_vars = server_vars or {}
    local = server == me
    exposed = boolean(server_vars.get("llm_host_expose", False), strict=False)
    result["exposed"] = exposed
    if not (local or exposed):
        return result
    address = "localhost" if local else (
        server_vars.get("llm_host_advertised_name") or server_vars.get("ansible_host") or server)
    result["address"] = address
    if not local and not is_host_name(address):
        # A laptop-only run does not run the server's preflight: its clients name the mistake.
        result["errors"] = [f"the team server {server}'s address {str(address)!r} (its llm_host_advertised_name, else "
                            "ansible_host) is not a host name: write the name alone in its host_vars, e.g. "
                            "llm_host_advertised_name: team-gpu.lan (llmfleet adds https:// and each service's port)"]
    defaults = default_ports(roles_dir)
    if local:
        # The server's own clients (Open WebUI, a workstation's Continue) use the services on loopback.
        ollama_port = _port(server_vars.get("ollama_port"), defaults["ollama"])
        webui_port = _port(server_vars.get("open_webui_port"), defaults["open_webui"])
        result["ollama_url"] = f"http://{address}:{ollama_port}"
        result["open_webui_url"] = f"http://{address}:{webui_port}"
        vllm_urls = {str(entry["name"]): f"http://{address}:{_port(entry.get('port'), VLLM_PORT)}/v1"
                     for entry in server_vars.get("vllm_models") or [] if isinstance(entry, Mapping) and entry.get("name")}
    else:
        # Everyone else through the server's TLS proxy (llm_proxy): its HTTPS ports, each vLLM server
        # under its name. "team": the certificate is signed by the team CA the clients trust (llm_host's
        # trust.yml); "own": the team's own certificate (llm_proxy_certificate).
        result["tls"] = "own" if server_vars.get("llm_proxy_certificate") else "team"
        ollama_port = _port(server_vars.get("llm_proxy_ollama_port"), defaults["proxy_ollama"])
        webui_port = _port(server_vars.get("llm_proxy_open_webui_port"), defaults["proxy_open_webui"])
        vllm_port = _port(server_vars.get("llm_proxy_vllm_port"), defaults["proxy_vllm"])
        result["ollama_url"] = _https(address, ollama_port)
        result["open_webui_url"] = _https(address, webui_port)
        vllm_urls = {str(entry["name"]): f"{_https(address, vllm_port)}/{entry['name']}/v1"
                     for entry in server_vars.get("vllm_models") or [] if isinstance(entry, Mapping) and entry.get("name")}
    result["ollama_models"] = _served_ollama_models(server_vars)
    result["vllm_urls"] = vllm_urls
    if vllm_urls:
        result["vllm_url"] = next(iter(vllm_urls.values()))
    return result


class FilterModule:
    """llm_host filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "llm_host_team_endpoints": team_endpoints,
            # 'ollama' or 'open_webui' -> the port its role listens on by default (its defaults/main.yml).
            "llm_host_default_port": lambda service: default_ports()[service],
        }
