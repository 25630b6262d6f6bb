"""The llm_proxy role's filters: the developers' keys, the certificate's names, and what the role's one
look at the host says must change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _modules import load_module
from rendering import render

proxy = load_module("plugins/filter/llm_proxy.py")

GOOD = {"alice": "alice-key-0123456789abcdef", "bob": "b0b+K3y/with=base64.chars~"}


def test_good_keys_pass_and_become_an_exact_case_sensitive_map() -> None:
    assert proxy.key_errors(GOOD) == []
    assert proxy.key_errors({}) == [] and proxy.key_errors(None) == []
    entries = proxy.key_map(GOOD)
    assert [e["name"] for e in entries] == ["alice", "bob"]
    for entry, key in zip(entries, (GOOD["alice"], GOOD["bob"])):
        pattern = entry["pattern"]
        assert pattern.startswith("~^Bearer ") and pattern.endswith("$")
        regex = re.compile(pattern[1:])
        assert regex.match(f"Bearer {key}")
        assert not regex.match(f"bearer {key}".replace(key, key.upper()))
        assert not regex.match(f"Bearer {key}x") and not regex.match(f"Bearer {key[:-1]}")
    # Only "." and "+" are escaped (the key is in the file as written otherwise); they are literal.
    assert [e["pattern"] for e in entries] == ["~^Bearer alice-key-0123456789abcdef$",
                                              "~^Bearer b0b\\+K3y/with=base64\\.chars~$"]
    assert not re.compile(entries[1]["pattern"][1:]).match("Bearer b0b+K3y/with=base64Xchars~")


@pytest.mark.parametrize(("keys", "message"), [
    ({"alice": "short"}, "llm_host_team_keys.alice must be at least 16 characters"),
    ({"alice": "has a space in it 0123"}, "llm_host_team_keys.alice must be at least 16 characters"),
    ({"alice": 'quote"0123456789abcdef'}, "llm_host_team_keys.alice must be at least 16 characters"),
    ({"alice": "changeme"}, "llm_host_team_keys.alice holds no key"),
    ({"alice": ""}, "llm_host_team_keys.alice holds no key"),
    ({"al ice": "alice-key-0123456789abcdef"}, "'al ice' is not a developer name"),
    ({"alice": "same-key-0123456789abcdef", "bob": "same-key-0123456789abcdef"},
     "llm_host_team_keys.bob has the same key as llm_host_team_keys.alice"),
    (["alice"], "llm_host_team_keys must be a mapping"),
])
def test_bad_keys_are_named_never_shown(keys: object, message: str) -> None:
    errors = proxy.key_errors(keys)
    assert len(errors) == 1 and message in errors[0], errors
    for value in (keys.values() if isinstance(keys, dict) else []):
        if len(str(value)) > 4:
            assert str(value) not in errors[0]


def test_certificate_names_are_dns_names_and_addresses_once_each() -> None:
    assert proxy.certificate_names(["Team-GPU.lan", "10.0.0.5", "team-gpu.lan.", "fd00::5", "", None]) == [
        "DNS:team-gpu.lan", "IP:10.0.0.5", "IP:fd00::5"]
    assert proxy.name_errors(["team-gpu.lan", "10.0.0.5"]) == []
    [error] = proxy.name_errors(["https://team-gpu.lan:443"])
    assert "'https://team-gpu.lan:443' is not a host name or an IP address" in error


FILES = {"/etc/nginx/conf.d/llmfleet.conf": {"sha256": "c0", "mode": "644:root:root"},
         "/etc/llmfleet/proxy/ollama-keys.conf": {"sha256": "k0", "mode": "600:root:root"},
         "/etc/llmfleet/proxy/server.key": {"sha256": "", "mode": "600:root:root"},
         "/etc/llmfleet/proxy/server.crt": {"sha256": "", "mode": "644:root:root"}}
WANT = {"enabled": True, "own_certificate": False, "ca": True, "names": ["DNS:team-gpu.lan", "IP:10.0.0.5"],
        "files": FILES, "absent": ["/etc/nginx/sites-enabled/default"]}
CONVERGED = [
    "nginx=installed",
    "file:/etc/nginx/conf.d/llmfleet.conf=c0 644:root:root",
    "file:/etc/llmfleet/proxy/ollama-keys.conf=k0 600:root:root",
    "file:/etc/llmfleet/proxy/server.key=aa 600:root:root",
    "file:/etc/llmfleet/proxy/server.crt=bb 644:root:root",
    "active=active", "enabled=enabled",
    "cert_fresh=yes", "cert_names=    DNS:team-gpu.lan, IP Address:10.0.0.5", "key_matches=yes", "ca_signed=yes",
]


def _todo(lines: list[str], **want: object) -> list[str]:
    return proxy.todo(proxy.look(lines), {**WANT, **want})


def test_a_converged_host_needs_nothing() -> None:
    assert _todo(CONVERGED) == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: s.replace("nginx=installed", "nginx=missing"), "package"),
    (lambda s: s.replace("=c0 644", "=c1 644"), "write /etc/nginx/conf.d/llmfleet.conf"),
    (lambda s: s.replace("=k0 600", "=k0 644"), "write /etc/llmfleet/proxy/ollama-keys.conf"),
    (lambda s: s.replace("=aa 600:root:root", "absent"), "write /etc/llmfleet/proxy/server.key"),
    (lambda s: s + "\npresent:/etc/nginx/sites-enabled/default=yes", "remove /etc/nginx/sites-enabled/default"),
    (lambda s: s.replace("active=active", "active=inactive"), "service"),
    (lambda s: s.replace("enabled=enabled", "enabled=disabled"), "service"),
    (lambda s: s.replace("cert_fresh=yes", ""), "certificate: near its end"),
    (lambda s: s.replace("key_matches=yes", ""), "certificate: none, or not for the key"),
    (lambda s: s.replace("ca_signed=yes", ""), "certificate: not signed by the team CA"),
    (lambda s: s.replace(", IP Address:10.0.0.5", ""), "certificate: other names"),
])
def test_each_drift_is_found(change: object, expected: str) -> None:
    lines = change("\n".join(CONVERGED)).split("\n")  # type: ignore[operator]
    assert _todo(lines) == [expected]


def test_the_teams_own_certificate_is_compared_by_checksum_only() -> None:
    files = {**FILES, "/etc/llmfleet/proxy/server.crt": {"sha256": "bb", "mode": "644:root:root"}}
    lines = [line for line in CONVERGED if not line.startswith(("cert_", "ca_"))]
    assert _todo(lines, own_certificate=True, ca=False, files=files) == []
    files["/etc/llmfleet/proxy/server.crt"]["sha256"] = "other"
    assert _todo(lines, own_certificate=True, ca=False, files=files) == ["write /etc/llmfleet/proxy/server.crt"]


def test_turned_off_only_our_leftovers_count() -> None:
    assert _todo(CONVERGED, enabled=False) == ["remove"]
    gone = [f"file:{path}=absent" for path in FILES] + ["nginx=installed", "active=active"]
    assert _todo(gone, enabled=False) == []


REPORTS = "/var/lib/llmfleet/pull-reports"


def test_the_reports_directory_is_kept_as_it_must_be_and_stays_when_turned_off() -> None:
    dirs = {REPORTS: "750:www-data:root"}
    assert _todo([*CONVERGED, f"dir:{REPORTS}=750:www-data:root"], dirs=dirs) == []
    assert _todo([*CONVERGED, f"dir:{REPORTS}=absent"], dirs=dirs) == [f"directory {REPORTS}"]
    assert _todo([*CONVERGED, f"dir:{REPORTS}=755:root:root"], dirs=dirs) == [f"directory {REPORTS}"]
    # Turned off, the reports (data) are no leftover to remove.
    gone = [f"file:{path}=absent" for path in FILES] + [f"dir:{REPORTS}=750:www-data:root"]
    assert _todo(gone, enabled=False, dirs=dirs) == []


class _Vars(dict):  # type: ignore[type-arg]
    """A host's variables as hostvars gives them: only what the inventory sets (no role defaults)."""


def test_the_report_keys_are_those_of_the_hosts_in_pull_mode_that_report_here() -> None:
    here = "https://team-gpu.lan/llmfleet/pull-reports"
    hostvars = {
        "laptop-a": _Vars(llm_host_pull=True, llm_host_pull_report_key="key-a-0123456789abcdef", llm_host_pull_report_url=here),
        "laptop-b": _Vars(llm_host_pull="true", llm_host_pull_report_key="key-b-0123456789abcdef",
                          llm_host_pull_report_url="https://10.0.0.5:443/llmfleet/pull-reports"),
        "laptop-c": _Vars(llm_host_pull=False, llm_host_pull_report_key="key-c-0123456789abcdef", llm_host_pull_report_url=here),
        "laptop-d": _Vars(llm_host_pull=True, llm_host_pull_report_url=here),
        "laptop-e": _Vars(llm_host_pull="false", llm_host_pull_report_key="key-e-0123456789abcdef", llm_host_pull_report_url=here),
        # Reports to another server: that one takes its key, this one does not.
        "laptop-f": _Vars(llm_host_pull=True, llm_host_pull_report_key="key-f-0123456789abcdef",
                          llm_host_pull_report_url="https://other-gpu.lan/llmfleet/pull-reports"),
        "laptop-g": _Vars(llm_host_pull=True, llm_host_pull_report_key="key-g-0123456789abcdef"),
        "server": _Vars(),
    }
    names = proxy.certificate_names(["TEAM-GPU.lan.", "10.0.0.5"])
    keys = proxy.pull_report_keys(hostvars, list(hostvars), names)
    assert keys == {"laptop-a": "key-a-0123456789abcdef", "laptop-b": "key-b-0123456789abcdef"}
    assert proxy.pull_report_key_errors(keys) == []
    assert proxy.pull_report_keys(hostvars, [], names) == {}
    assert proxy.pull_report_keys(hostvars, list(hostvars), proxy.certificate_names(["other-gpu.lan"])) == {
        "laptop-f": "key-f-0123456789abcdef"}


@pytest.mark.parametrize(("keys", "message"), [
    ({"laptop-a": "short"}, "llm_host_pull_report_key of laptop-a must be at least 16 characters"),
    ({"laptop-a": "changeme"}, "llm_host_pull_report_key of laptop-a holds no key"),
    ({"laptop a": "key-a-0123456789abcdef"}, "'laptop a' is in pull mode with a report key, but its inventory name"),
    ({"laptop-a": "same-key-0123456789abcdef", "laptop-b": "same-key-0123456789abcdef"},
     "llm_host_pull_report_key of laptop-b is the same key as laptop-a's"),
])
def test_bad_report_keys_are_named_never_shown(keys: dict[str, str], message: str) -> None:
    errors = proxy.pull_report_key_errors(keys)
    assert len(errors) == 1 and errors[0].startswith(message), errors
    for key in keys.values():
        if key != "changeme":
            assert key not in errors[0]


def _render(tmp_path: Path, **extra: object) -> tuple[str, str]:
    out = render("render_role.yml", tmp_path, **{
        "role": "llm_proxy", "system": "Linux", "architecture": "x86_64",
        "templates": ["etc/nginx/conf.d/llmfleet.conf", "etc/llmfleet/proxy/ollama-keys.conf",
                      "etc/llmfleet/proxy/pull-report-keys.conf"],
        "llm_host_team_keys": GOOD, **extra})
    return (out / "llmfleet.conf").read_text(), (out / "ollama-keys.conf").read_text()


def test_nginx_passes_only_the_client_endpoints_and_each_vllm_server_under_its_name(tmp_path: Path) -> None:
    conf, keys = _render(tmp_path, _llm_host_roles=["llm_host", "ollama", "vllm", "open_webui", "llm_proxy"],
                         open_webui_port=3000, ollama_port=11500,
                         vllm_models=[{"name": "coder", "model": "x", "port": 8001}, {"name": "rr", "model": "y", "port": 8002}])
    # Each key whole and case-sensitive, mapped to its developer; the configuration itself holds none.
    assert '"~^Bearer alice-key-0123456789abcdef$" "alice";' in keys
    assert '"~^Bearer b0b\\+K3y/with=base64\\.chars~$" "bob";' in keys
    assert GOOD["alice"] not in conf and "include /etc/llmfleet/proxy/ollama-keys.conf;" in conf
    ollama = conf[conf.index("listen 11443 ssl"):conf.index("listen 8443 ssl")]
    assert 'if ($llmfleet_ollama_client = "") {\n        return 401;' in ollama
    passed = re.findall(r"location = (\S+) \{\n +limit_except (\w+)", ollama)
    assert sorted(passed) == sorted([
        ("/api/chat", "POST"), ("/api/generate", "POST"), ("/api/embed", "POST"), ("/api/embeddings", "POST"),
        ("/api/show", "POST"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"),
        ("/v1/embeddings", "POST"), ("/", "GET"), ("/api/tags", "GET"), ("/api/version", "GET"), ("/api/ps", "GET"),
        ("/v1/models", "GET")])
    for management in ("/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs"):
        assert management not in ollama.split("# Everything else")[0]
    assert "location / {\n        return 403;" in ollama
    assert ollama.count("proxy_pass http://127.0.0.1:11500;") == len(passed)
    assert 'proxy_set_header Authorization "";' in ollama
    assert "location /coder/ {\n        proxy_pass http://127.0.0.1:8001/;" in conf
    assert "location /rr/ {\n        proxy_pass http://127.0.0.1:8002/;" in conf
    assert "proxy_pass http://127.0.0.1:3000;" in conf and "listen 443 ssl http2;" in conf
    # TLS in every server; the http block's own settings (Debian's nginx.conf) are not repeated there.
    assert conf.count("ssl_certificate /etc/llmfleet/proxy/server.crt;") == 3
    assert conf.index("ssl_protocols") > conf.index("server {")


def test_without_open_webui_and_vllm_only_ollama_is_served(tmp_path: Path) -> None:
    conf, _ = _render(tmp_path, _llm_host_roles=["llm_host", "ollama", "llm_proxy"],
                      vllm_models=[{"name": "coder", "model": "x", "port": 8001}])
    assert "listen 11443 ssl" in conf and "listen 443 ssl" not in conf and "listen 8443 ssl" not in conf


def test_a_host_in_pull_mode_may_put_its_own_report_only(tmp_path: Path) -> None:
    # The inventory's one host (localhost) is in pull mode with a report key: the server's map has it.
    conf, _ = _render(tmp_path, _llm_host_roles=["llm_host", "ollama", "llm_proxy"],
                      llm_host_pull=True, llm_host_pull_report_key="laptop-report-key-0123456789",
                      llm_host_pull_report_url="https://localhost/llmfleet/pull-reports")
    keys = (tmp_path / "pull-report-keys.conf").read_text()
    assert 'map $http_authorization $llmfleet_pull_host {\n    default "";' in keys
    assert '"~^Bearer laptop-report-key-0123456789$" "localhost";' in keys
    # The report server (443) without Open WebUI: reports only, everything else 404; no key in it.
    assert "listen 443 ssl http2;" in conf and "proxy_pass http://127.0.0.1:8080" not in conf
    assert "laptop-report-key" not in conf and "include /etc/llmfleet/proxy/pull-report-keys.conf;" in conf
    reports = conf[conf.index("location ~ ^/llmfleet/pull-reports/"):conf.index("location /llmfleet/pull-reports/ {")]
    assert 'if ($llmfleet_pull_host = "") {\n            return 401;' in reports
    assert "if ($llmfleet_pull_host != $llmfleet_report_host) {\n            return 403;" in reports
    assert "limit_except PUT { deny all; }" in reports and "dav_methods PUT;" in reports
    assert "alias /var/lib/llmfleet/pull-reports/$llmfleet_report_host.json;" in reports
    assert "$http_authorization" not in conf.split("log_format llmfleet_pull")[1].split("\n")[0]


def test_without_hosts_in_pull_mode_the_report_keys_map_is_empty(tmp_path: Path) -> None:
    _render(tmp_path, _llm_host_roles=["llm_host", "ollama", "llm_proxy"])
    keys = (tmp_path / "pull-report-keys.conf").read_text()
    assert re.search(r'map \$http_authorization \$llmfleet_pull_host \{\n    default "";\n\}', keys)


def test_a_report_url_must_name_an_exposed_team_server() -> None:
    hostvars = {
        "gpu-1": {"llm_host_expose": True, "llm_host_advertised_name": "Team-GPU.lan.", "ansible_host": "10.0.0.5",
                  "llm_proxy_names": ["reports.team.lan"]},
        "gpu-2": {"llm_host_expose": "yes"},
        "gpu-3": {"ansible_host": "quiet-gpu.lan"},
    }
    servers = ["gpu-1", "gpu-2", "gpu-3"]
    for url in ("https://team-gpu.lan/llmfleet/pull-reports", "https://10.0.0.5:443/x", "https://REPORTS.team.lan/x",
                "https://gpu-2/x", "", None):
        assert proxy.report_url_problems(url, hostvars, servers) == [], url
    [problem] = proxy.report_url_problems("https://team-gpu.lna/llmfleet/pull-reports", hostvars, servers)
    assert "names team-gpu.lna, which is none of" in problem
    assert "(10.0.0.5, gpu-2, reports.team.lan, team-gpu.lan)" in problem
    # A server that is not exposed has no report endpoint: its name does not count.
    assert proxy.report_url_problems("https://quiet-gpu.lan/x", hostvars, servers) != []
    assert "there is none" in proxy.report_url_problems("https://team-gpu.lan/x", hostvars, [])[0]
