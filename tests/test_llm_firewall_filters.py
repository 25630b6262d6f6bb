"""The llm_firewall role's input checks and rules: CIDRs, ports, the nftables file and unit as rendered."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _modules import load_module
from rendering import render

fw = load_module("plugins/filter/llm_firewall_rules.py")


def test_good_inputs_have_no_errors() -> None:
    assert fw.firewall_errors(["10.0.0.0/8", "192.168.1.7", "fd00:10::/64", "2001:db8::1"], [11434, "8080"]) == []
    # Turned off, an empty list is what the defaults give: nothing to complain about.
    assert fw.firewall_errors([], [11434], enabled=False) == []


@pytest.mark.parametrize(("network", "message"), [
    ("10.0.0.300/24", "'10.0.0.300/24' is not a network: write a CIDR"),
    ("10.0.0.0/33", "is not a network"),
    ("fd00::/129", "is not a network"),
    ("lan", "'lan' is not a network"),
    ("", "'' is not a network"),
    (None, "None is not a network"),
    ("10.0.0.5/24", "'10.0.0.5/24' has host bits set: write 10.0.0.0/24 for the network, or 10.0.0.5/32 for that one host"),
    ("fd00:10::5/64", "write fd00:10::/64 for the network, or fd00:10::5/128"),
])
def test_bad_networks_are_named_with_their_fix(network: object, message: str) -> None:
    errors = fw.firewall_errors(["192.168.0.0/16", network], [11434])
    assert len(errors) == 1
    assert errors[0].startswith("llm_firewall_allowed_networks[1]: ")
    assert message in errors[0]


def test_a_string_instead_of_a_list_is_refused() -> None:
    errors = fw.firewall_errors("10.0.0.0/8", [11434])
    assert errors == ["llm_firewall_allowed_networks must be a list of CIDRs, e.g. [192.168.10.0/24, 'fd00:10::/64'], "
                      "got '10.0.0.0/8'"]


def test_enabled_with_nothing_allowed_or_nothing_to_restrict_is_refused() -> None:
    errors = fw.firewall_errors([], [])
    assert any(e.startswith("llm_firewall_allowed_networks is empty") and "llm_firewall_enabled: false" in e for e in errors)
    assert any(e.startswith("llm_firewall_ports is empty") for e in errors)


@pytest.mark.parametrize("port", [0, 65536, -1, "http", True, None, 8080.5])
def test_bad_ports_are_named(port: object) -> None:
    errors = fw.firewall_errors(["10.0.0.0/8"], [11434, port])
    assert len(errors) == 1
    assert errors[0].startswith("llm_firewall_ports[1]: ") and "use 1-65535" in errors[0]


def test_networks_split_by_family_and_merged() -> None:
    assert fw.allowed_networks([
        "10.1.0.0/16", "10.0.0.0/8",                # contained: one element (nft refuses overlaps)
        "192.168.1.0/25", "192.168.1.128/25",       # neighbours: merged
        "172.16.5.9",                               # bare address: that host
        "fd00:10::/64", "fd00:10::1", "2001:db8::/32",
    ]) == {
        "ipv4": ["10.0.0.0/8", "172.16.5.9/32", "192.168.1.0/24"],
        "ipv6": ["2001:db8::/32", "fd00:10::/64"],
    }
    assert fw.allowed_networks(["fd00::/8"]) == {"ipv4": [], "ipv6": ["fd00::/8"]}


def test_ports_are_sorted_and_unique() -> None:
    assert fw.service_ports([11434, "8080", 8000, 11434, " 8001 "]) == [8000, 8001, 8080, 11434]


def _render(tmp_path: Path, **extra: object) -> Path:
    return render("render_role.yml", tmp_path, **{
        "role": "llm_firewall", "system": "Linux", "architecture": "x86_64",
        "templates": ["etc/llmfleet/firewall.nft", "etc/systemd/system/llmfleet-firewall.service"], **extra})


def test_rules_file_restricts_the_service_ports_of_the_play(tmp_path: Path) -> None:
    out = _render(tmp_path, llm_host_expose=True,
                  llm_host_allowed_networks=["10.20.0.0/16", "10.20.3.0/24", "fd00:20::/48"],
                  open_webui_port=3000,
                  vllm_models=[{"name": "coder", "model": "x", "port": 8001}, {"name": "rr", "model": "y", "port": 8002}])
    rules = (out / "firewall.nft").read_text()
    # Only our table is replaced, in one transaction.
    assert rules.startswith("#!/usr/sbin/nft -f\n# Ansible managed")
    assert "table inet llmfleet\ndelete table inet llmfleet\n\ntable inet llmfleet {" in rules
    assert "flush ruleset" not in rules
    assert "elements = { 3000, 8001, 8002, 11434 }" in rules
    assert "elements = { 10.20.0.0/16 }" in rules
    assert "elements = { fd00:20::/48 }" in rules
    assert "tcp dport @service_ports jump service_access" in rules
    assert 'iif "lo" accept' in rules and "counter drop" in rules


def test_rules_file_without_open_webui_and_one_family(tmp_path: Path) -> None:
    out = _render(tmp_path, llm_firewall_allowed_networks=["192.168.7.0/24"], ollama_port=11500)
    rules = (out / "firewall.nft").read_text()
    assert "elements = { 11500 }" in rules
    # An IPv6 set without elements: every IPv6 source but loopback is dropped on those ports.
    ipv6 = rules[rules.index("set allowed_ipv6"):rules.index("chain input")]
    assert "elements" not in ipv6


def test_unit_loads_our_file_and_follows_the_distributions_nftables(tmp_path: Path) -> None:
    unit = (_render(tmp_path, llm_firewall_allowed_networks=["10.0.0.0/8"]) / "llmfleet-firewall.service").read_text()
    assert "ExecStart=/usr/sbin/nft -f /etc/llmfleet/firewall.nft" in unit
    assert "ExecReload=/usr/sbin/nft -f /etc/llmfleet/firewall.nft" in unit
    assert "ExecStop=-/usr/sbin/nft delete table inet llmfleet" in unit
    assert "PartOf=nftables.service" in unit and "ReloadPropagatedFrom=nftables.service" in unit
    assert "WantedBy=multi-user.target nftables.service" in unit


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
                    reason="nft -c needs root and nft; unshare keeps it off this machine's network namespace")
def test_rules_file_is_accepted_by_nft(tmp_path: Path) -> None:
    out = _render(tmp_path, llm_firewall_allowed_networks=["10.0.0.0/8", "10.9.0.0/16", "fd00::/8"],
                  vllm_models=[{"name": "c", "model": "x", "port": 8000}])
    check = subprocess.run(["unshare", "--net", "nft", "-c", "-f", str(out / "firewall.nft")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("network", [" 10.0.0.0/8", "10.0.0.0/8\n", "10.0.0.0/8 lan"])
def test_a_network_with_anything_around_it_is_refused(network: str) -> None:
    errors = fw.firewall_errors(["192.168.1.0/24", network], [11434])
    assert len(errors) == 1 and errors[0].startswith("llm_firewall_allowed_networks[1]: ")
    label = fw.firewall_errors([network], [11434], networks_label="llm_host_allowed_networks")
    assert label[0].startswith("llm_host_allowed_networks[0]: ")


@pytest.mark.parametrize(("networks", "families"), [
    (["0.0.0.0/0"], ["IPv4"]),
    (["::/0"], ["IPv6"]),
    (["10.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1"], ["IPv4"]),  # together they are everything
    (["::ffff:0:0/96"], []),  # nftables matches IPv4 packets by their IPv4 source, never as mapped
    (["0.0.0.0/0", "::/0", "not a network"], ["IPv4", "IPv6"]),
    (["10.0.0.0/8", "fd00::/8", "0.0.0.0/1"], []),
])
def test_the_whole_internet_is_named_by_family(networks: list[str], families: list[str]) -> None:
    errors = fw.internet_errors(networks, "llm_host_allowed_networks")
    assert [e.split("the whole ")[1].split(" ")[0] for e in errors] == families
    assert all(e.startswith("llm_host_allowed_networks lets the whole") and "llm_host_expose_to_internet: true" in e
               for e in errors)


def test_behind_the_tls_proxy_the_firewall_limits_the_proxys_ports(tmp_path: Path) -> None:
    # The services listen on loopback; the ports the network reaches are the proxy's (llm_proxy in the play).
    out = _render(tmp_path, llm_host_expose=True, llm_host_allowed_networks=["10.20.0.0/16"], open_webui_port=3000,
                  vllm_models=[{"name": "coder", "model": "x", "port": 8001}],
                  llm_proxy_enabled=True, llm_proxy_open_webui_port=443, llm_proxy_ollama_port=11443,
                  llm_proxy_vllm_port=8443)
    assert "elements = { 443, 8443, 11443 }" in (out / "firewall.nft").read_text()
