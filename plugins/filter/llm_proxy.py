"""Filters of the llm_proxy role: the developers' keys and the pull reports' keys (each enrolled host's,
from the inventory) checked and turned into nginx's maps, the names
the server certificate must carry, and the state the role's one look at the host reports.

Kept in Python so the rules (which keys nginx can match safely, what a name in a certificate is, when a
certificate must be issued again) are unit-tested in tests/test_llm_proxy_filters.py rather than spread
over Jinja expressions. A key's value is never part of a message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.addresses import is_host_name
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.secrets import is_placeholder

KEYS = "llm_host_team_keys"
# A bearer key nginx matches with a regular expression: RFC 6750's token68 characters, long enough
# not to be guessed. The map escapes them (regex_escape) all the same.
KEY = re.compile(r"[A-Za-z0-9._~+/=-]{16,512}")
KEY_MIN = 16
# A developer's name, as nginx's map gives it back and its access log writes it.
DEVELOPER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")


def key_errors(keys: Any) -> list[str]:
    """What is wrong with llm_host_team_keys ({developer: key}), as messages without the values."""
    if keys in (None, ""):
        return []
    if not isinstance(keys, Mapping):
        return [f"{KEYS} must be a mapping of developer names to keys (developer: \"{{{{ vault_team_key_<name> }}}}\"), "
                f"and it is a {type(keys).__name__}"]
    errors: list[str] = []
    seen: dict[str, str] = {}
    for name, key in keys.items():
        if not isinstance(name, str) or not DEVELOPER.fullmatch(name):
            errors.append(f"{KEYS}: {name!r} is not a developer name (letters, digits, _ . @ -; the account name "
                          "of continue_users)")
            continue
        _check_key(errors, seen, f"{KEYS}.{name}", str(name), key,
                   lambda holder: f"has the same key as {KEYS}.{holder}: each developer needs their own, so one can be "
                                  "revoked without the other")
    return errors


def _check_key(errors: list[str], seen: dict[str, str], label: str, owner: str, key: Any,
               same: Callable[[str], str]) -> None:
    """One bearer key checked (messages name `label`, never the key): set, well-formed, and not one that
    another owner in `seen` already has (`same(holder)` says why that matters); a good one joins `seen`."""
    if not isinstance(key, str) or is_placeholder(key) or not key:
        errors.append(f"{label} holds no key (empty or a placeholder): put a random key in the vault, e.g. "
                      "`openssl rand -base64 32`, and point the entry at it")
    elif not KEY.fullmatch(key):
        errors.append(f"{label} must be at least {KEY_MIN} characters of A-Z a-z 0-9 . _ ~ + / = - (a bearer token); "
                      "e.g. `openssl rand -base64 32`")
    elif key in seen:
        errors.append(f"{label} {same(seen[key])}")
    else:
        seen[key] = owner


# An inventory host name as the report endpoint takes it in a URL (<host>.json) and as a file name.
REPORT_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")
REPORT_KEYS = "llm_host_pull_report_key"


def _enrolled(values: Mapping[str, Any]) -> bool:
    """Whether a host's variables put it in pull mode (llm_host_pull, a bool or its YAML spelling)."""
    return _truthy(values.get("llm_host_pull", False))


def _report_host(url: Any) -> str:
    """The host name or address a report URL names (lower case, without port or brackets), or ""."""
    try:
        host = urlsplit(str(url or "")).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


def pull_report_keys(hostvars: Mapping[str, Any], hosts: Iterable[str],
                     names: Iterable[str] | None = None) -> dict[str, str]:
    """{host: key} for each of `hosts` in pull mode (llm_host_pull) with a report key whose report URL
    (llm_host_pull_report_url) names this server: one of `names`, its certificate's subjectAltName
    entries (certificate_names), the only names under which a host can reach it over verified TLS.
    The keys the team server's report endpoint accepts, each for that host's own report only.

    Read from the inventory's hostvars, where the laptops get them: one place for both ends, so enrolling
    a laptop (or revoking its key) is one vault entry and a run of the laptop and the server. The
    role defaults are not in another host's hostvars: a variable a host does not set counts as unset.
    """
    served = {entry.split(":", 1)[1].lower() for entry in names or [] if ":" in entry}
    keys: dict[str, str] = {}
    for host in hosts or []:
        values = hostvars.get(host) or {}
        key = values.get(REPORT_KEYS) or ""
        if _enrolled(values) and key and _report_host(values.get("llm_host_pull_report_url")) in served:
            keys[str(host)] = str(key)
    return keys


def report_url_problems(url: Any, hostvars: Mapping[str, Any], servers: Iterable[str]) -> list[str]:
    """The laptop's side of pull_report_keys: a report URL must name an exposed team server of the inventory
    by one of its certificate's names (its advertised name, its address, llm_proxy_names), or that server
    never takes the laptop's key and every report is refused. [] when it does, or names no host at all
    (the URL's own form is checked with the other pull settings)."""
    target = _report_host(url)
    if not target:
        return []
    names: set[str] = set()
    for server in servers or []:
        values = hostvars.get(server) or {}
        if not _truthy(values.get("llm_host_expose", False)):
            continue
        address = values.get("ansible_host") or server
        for name in [values.get("llm_host_advertised_name") or address, address, *(values.get("llm_proxy_names") or [])]:
            names.add(str(name).rstrip(".").lower())
    if target in names:
        return []
    return [f"llm_host_pull_report_url names {target}, which is none of the names of the inventory's exposed team "
            f"servers ({', '.join(sorted(names)) or 'there is none'}): a server takes a host's reports only under a "
            "name of its certificate. Name one of those, or add this one to that server's llm_proxy_names."]


def _truthy(value: Any) -> bool:
    """A boolean inventory value, or its YAML spelling in a string."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def pull_hosts(hostvars: Mapping[str, Any], hosts: Iterable[str],
               defaults: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """{host: {report, interval, random_delay}} for each of `hosts` in pull mode, without any key: whether it
    sends reports (a report URL and key), and its schedule (`defaults`, llm_host's, where the inventory sets
    none), for `invoke status --pulled` to name the hosts that never reported and those overdue."""
    defaults = defaults or {}
    enrolled: dict[str, dict[str, Any]] = {}
    for host in hosts or []:
        values = hostvars.get(host) or {}
        if _enrolled(values):
            schedule = {name: _int(values.get(f"llm_host_pull_{name}", defaults.get(f"llm_host_pull_{name}")), 0)
                        for name in ("interval", "random_delay")}
            enrolled[str(host)] = {"report": bool(values.get(REPORT_KEYS)) and bool(values.get("llm_host_pull_report_url")),
                                   **schedule}
    return enrolled


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def pull_report_key_errors(keys: Mapping[str, Any]) -> list[str]:
    """What is wrong with the report keys ({host: key}, pull_report_keys), as messages without the values."""
    errors: list[str] = []
    seen: dict[str, str] = {}
    for host, key in sorted((keys or {}).items()):
        if not REPORT_HOST.fullmatch(host):
            errors.append(f"{host!r} is in pull mode with a report key, but its inventory name cannot name its report "
                          "(<host>.json): use letters, digits, _ . - only")
            continue
        _check_key(errors, seen, f"{REPORT_KEYS} of {host}", host, key,
                   lambda holder: f"is the same key as {holder}'s: each host needs its own, so that one host cannot write "
                                  "another's report")
    return errors


def key_map(keys: Mapping[str, str] | None) -> list[dict[str, str]]:
    """[{name, pattern}] for nginx's map from the Authorization header to the developer's name (or, for
    the pull reports' keys, the host's).

    Matched case-sensitively and whole (`~^Bearer <key>$`): a plain map key would match case-insensitively.
    Only keys key_errors accepts reach here: of their characters only "." and "+" mean something in a
    regular expression, and only those are escaped, so the file holds each key as it is written
    (a secret scan finds it there).
    """
    entries = []
    for name, key in sorted((keys or {}).items()):
        entries.append({"name": str(name), "pattern": "~^Bearer " + re.sub(r"([.+])", r"\\\1", str(key)) + "$"})
    return entries


def certificate_names(names: Iterable[Any]) -> list[str]:
    """The subjectAltName entries for these names and addresses ("DNS:team-gpu.lan", "IP:10.0.0.5"),
    without duplicates, in the order given; entries that are neither are left out (the preflight names them)."""
    entries: list[str] = []
    for name in names or []:
        text = str(name).strip().rstrip(".") if name is not None else ""
        if not text:
            continue
        try:
            entry = f"IP:{ipaddress.ip_address(text.strip('[]'))}"
        except ValueError:
            if not is_host_name(text):
                continue
            entry = f"DNS:{text.lower()}"
        if entry not in entries:
            entries.append(entry)
    return entries


def name_errors(names: Iterable[Any]) -> list[str]:
    """The names (llm_proxy_names, llm_host_advertised_name) that cannot go in a certificate."""
    errors = []
    for name in names or []:
        if not certificate_names([name]):
            errors.append(f"{name!r} is not a host name or an IP address, so it cannot be one of the certificate's "
                          "names: write the name alone (team-gpu.lan), without scheme, port or path")
    return errors


def _openssl_names(text: str) -> list[str]:
    """openssl's `-ext subjectAltName` line ("DNS:a, IP Address:10.0.0.5") as certificate_names writes them."""
    entries = []
    for part in (text or "").split(","):
        part = part.strip()
        if part.startswith("DNS:"):
            entries.append("DNS:" + part[4:].lower())
        elif part.startswith("IP Address:"):
            try:
                entries.append(f"IP:{ipaddress.ip_address(part[11:].strip())}")
            except ValueError:
                entries.append(part)
        elif part:
            entries.append(part)
    return entries


def look(lines: Iterable[str]) -> dict[str, str]:
    """The look's `key=value` lines as a mapping."""
    found = {}
    for line in lines or []:
        key, sep, value = str(line).partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def todo(state: Mapping[str, str], want: Mapping[str, Any]) -> list[str]:
    """What must change on the host, from the look (`state`) and what the role wants (`want`).

    `want`: enabled, files ({path: {sha256 or '' for "any content", mode}}), absent (paths that must
    not exist), dirs ({path: mode:owner:group}, directories that must be so: the pull reports'),
    names (subjectAltName entries), own_certificate (the team's: compared by checksum in files), ca
    (whether the look could check the issuer). Empty when the host is as it should be. Disabled, only
    leftovers of ours count (our files present; the reports' directory stays, it holds data).
    """
    changes: list[str] = []
    files = want.get("files") or {}
    if not want.get("enabled"):
        return ["remove"] if any(state.get(f"file:{path}", "absent") != "absent" for path in files) else []
    if state.get("nginx") != "installed":
        changes.append("package")
    for path, spec in files.items():
        found = state.get(f"file:{path}", "absent")
        if found == "absent":
            changes.append(f"write {path}")
            continue
        digest, _, mode = found.partition(" ")
        if (spec.get("sha256") and digest != spec["sha256"]) or mode != spec.get("mode", mode):
            changes.append(f"write {path}")
    for path, mode in (want.get("dirs") or {}).items():
        if state.get(f"dir:{path}", "absent") != mode:
            changes.append(f"directory {path}")
    for path in want.get("absent") or []:
        if state.get(f"present:{path}") == "yes":
            changes.append(f"remove {path}")
    if state.get("active") != "active" or state.get("enabled") != "enabled":
        changes.append("service")
    if not want.get("own_certificate"):
        if state.get("key_matches") != "yes":
            changes.append("certificate: none, or not for the key")
        elif state.get("cert_fresh") != "yes":
            changes.append("certificate: near its end")
        elif want.get("ca") and state.get("ca_signed") != "yes":
            changes.append("certificate: not signed by the team CA")
        elif sorted(_openssl_names(state.get("cert_names", ""))) != sorted(want.get("names") or []):
            changes.append("certificate: other names")
    return changes


class FilterModule:
    """llm_proxy filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "llm_proxy_key_errors": key_errors,
            "llm_proxy_key_map": key_map,
            "llm_proxy_pull_report_keys": pull_report_keys,
            "llm_proxy_pull_report_key_errors": pull_report_key_errors,
            "llm_proxy_pull_hosts": pull_hosts,
            "llm_proxy_report_url_problems": report_url_problems,
            "llm_proxy_certificate_names": certificate_names,
            "llm_proxy_name_errors": name_errors,
            "llm_proxy_look": look,
            "llm_proxy_todo": todo,
        }
