"""Filters that check the firewall's inputs and shape them for the nftables rules file.

Kept in Python so the rules (what a network or port is, IPv4/IPv6 split, overlaps merged) are
unit-tested in tests/test_llm_firewall_filters.py rather than spread over Jinja expressions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

NETWORKS = "llm_firewall_allowed_networks"
PORTS = "llm_firewall_ports"
_EXAMPLE = "write a CIDR such as 192.168.10.0/24 or fd00:10::/64 (a bare address means that one host)"


def _is_list(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One allowed network; ValueError with the fix when it is not one."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a network: {_EXAMPLE}")
    text = value.strip()
    if text != value:
        raise ValueError(f"{value!r} has spaces or a line break around it: write {text} alone")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a network: {_EXAMPLE}") from None
    host = text.split("/", 1)[0]
    raise ValueError(f"{text!r} has host bits set: write {loose} for the network, "
                     f"or {host}/{loose.max_prefixlen} for that one host")


def _port(value: Any) -> int:
    """One port number; ValueError when it is not 1-65535."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{value!r} is not a port")
    return value


def firewall_errors(networks: Any, ports: Any, enabled: bool = True, networks_label: str = NETWORKS) -> list[str]:
    """Every problem with the firewall's inputs, as messages naming the variable and the fix.

    `networks_label` names the networks as the inventory wrote them (llm_host_allowed_networks, whose
    value llm_firewall_allowed_networks takes unless set itself).
    """
    errors: list[str] = []
    if not _is_list(networks):
        errors.append(f"{networks_label} must be a list of CIDRs, e.g. [192.168.10.0/24, 'fd00:10::/64'], "
                      f"got {networks!r}")
    else:
        for index, entry in enumerate(networks):
            try:
                _network(entry)
            except ValueError as error:
                errors.append(f"{networks_label}[{index}]: {error}")
        if enabled and not list(networks):
            errors.append(f"{networks_label} is empty, so no other host could reach the services: list the "
                          f"networks allowed (llm_host_allowed_networks), or set llm_firewall_enabled: false")
    if not _is_list(ports):
        errors.append(f"{PORTS} must be a list of port numbers, e.g. [11434, 8080], got {ports!r}")
    else:
        for index, entry in enumerate(ports):
            try:
                _port(entry)
            except ValueError as error:
                errors.append(f"{PORTS}[{index}]: {error}: use 1-65535 (by default the list comes from "
                              f"ollama_port, open_webui_port and the port of each vllm_models entry)")
        if enabled and not list(ports):
            errors.append(f"{PORTS} is empty: list the service ports to restrict, or set llm_firewall_enabled: false")
    return errors


_WHOLE = {4: ("IPv4", ipaddress.ip_network("0.0.0.0/0")), 6: ("IPv6", ipaddress.ip_network("::/0"))}


def internet_errors(networks: Any, label: str = NETWORKS) -> list[str]:
    """A message per address family whose whole internet the allowed networks let in (empty: none).

    Together, not only one by one: 0.0.0.0/1 and 128.0.0.0/1 cover every IPv4 address as 0.0.0.0/0
    does. Entries that are not networks are firewall_errors' to name.
    """
    parsed = []
    for entry in networks if _is_list(networks) else []:
        try:
            parsed.append((str(entry).strip(), _network(entry)))
        except ValueError:
            continue
    errors = []
    for version, (family, whole) in _WHOLE.items():
        merged = list(ipaddress.collapse_addresses(n for _, n in parsed if n.version == version))
        if whole in merged:
            written = [text for text, n in parsed if n.version == version]
            errors.append(f"{label} lets the whole {family} internet in ({', '.join(written)}), and the services "
                          "listen on every address (llm_host_expose): list your own networks instead (e.g. "
                          "192.168.10.0/24), or set llm_host_expose_to_internet: true if this host is meant to "
                          "serve anyone on the internet")
    return errors


def allowed_networks(networks: Iterable[Any]) -> dict[str, list[str]]:
    """The allowed networks split by family, overlaps and neighbours merged (nftables interval sets
    refuse overlapping elements): {"ipv4": [...], "ipv6": [...]}."""
    parsed = [_network(entry) for entry in networks]
    return {
        "ipv4": [str(n) for n in ipaddress.collapse_addresses(n for n in parsed if n.version == 4)],
        "ipv6": [str(n) for n in ipaddress.collapse_addresses(n for n in parsed if n.version == 6)],
    }


def service_ports(ports: Iterable[Any]) -> list[int]:
    """The ports to restrict, as sorted unique numbers."""
    return sorted({_port(entry) for entry in ports})


class FilterModule:
    """llm_firewall_errors, llm_firewall_networks, llm_firewall_port_list."""

    def filters(self) -> dict[str, Any]:
        return {
            "llm_firewall_errors": firewall_errors,
            "llm_firewall_internet_errors": internet_errors,
            "llm_firewall_networks": allowed_networks,
            "llm_firewall_port_list": service_ports,
        }
