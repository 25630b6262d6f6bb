"""llm_host's pull mode: the settings check (plugins/filter/llm_host_settings.py's pull_problems), the
pull tools' pins against the controller's own ranges, and the files the role writes, as Ansible
renders them: the systemd service and timer, the launchd plist (parsed as launchd's tools do; no macOS
here) and the settings the pull tool reads (src/llmfleet/pull.py).
"""

from __future__ import annotations

import json
import plistlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from _modules import load_module
from packaging.requirements import Requirement

from llmfleet.pull import PullSettings
from rendering import render

ROOT = Path(__file__).resolve().parents[1]
hs = load_module("plugins/filter/llm_host_settings.py")

GOOD = {
    "llm_host_pull_repo_url": "https://git.team.lan/team/llmfleet.git",
    "llm_host_pull_version": "main",
    "llm_host_pull_inventory": "inventory/team",
    "llm_host_pull_boot_delay": 300,
    "llm_host_pull_interval": 3600,
    "llm_host_pull_random_delay": 900,
    "llm_host_pull_keep": 20,
}
SERVICE = "etc/systemd/system/llmfleet-pull.service"
TIMER = "etc/systemd/system/llmfleet-pull.timer"
PLIST = "Library/LaunchDaemons/com.llmfleet.pull.plist"
SETTINGS = "etc/llmfleet/pull.json"


@pytest.mark.parametrize("url", ["https://git.team.lan/team/llmfleet.git", "ssh://git@git.team.lan:2222/llmfleet.git",
                                 "git@git.team.lan:team/llmfleet.git", "file:///srv/git/llmfleet.git",
                                 "git://git.team.lan/llmfleet.git", "https://deploy@git.team.lan/llmfleet.git"])
def test_git_urls_pass(url: str) -> None:
    assert hs.pull_problems({**GOOD, "llm_host_pull_repo_url": url}) == []


@pytest.mark.parametrize("url", ["", "git.team.lan/llmfleet.git", "ftp://git.team.lan/x", "https://", "/srv/git/x.git",
                                 "https://git.team.lan/x y"])
def test_what_is_not_a_git_url_is_named(url: str) -> None:
    [problem] = hs.pull_problems({**GOOD, "llm_host_pull_repo_url": url})
    assert problem.startswith(f"llm_host_pull is on but llm_host_pull_repo_url {url!r} is not a git URL")


def test_a_password_in_the_url_is_refused_and_never_repeated() -> None:
    [problem] = hs.pull_problems({**GOOD, "llm_host_pull_repo_url": "https://bob:s3cret-pw@git.team.lan/x.git"})
    assert "carries a password" in problem and "s3cret-pw" not in problem


@pytest.mark.parametrize(("name", "value"), [
    ("llm_host_pull_inventory", ""), ("llm_host_pull_inventory", "/etc/ansible/hosts"),
    ("llm_host_pull_inventory", "inventory/../../x"), ("llm_host_pull_version", ""),
    ("llm_host_pull_version", "-upload-pack=x"), ("llm_host_pull_version", "main branch"),
    ("llm_host_pull_version", "v1..v2"), ("llm_host_pull_version", "main/"), ("llm_host_pull_interval", 59),
    ("llm_host_pull_interval", "hourly"), ("llm_host_pull_keep", 0), ("llm_host_pull_random_delay", -1),
    ("llm_host_pull_boot_delay", None),
])
def test_each_bad_setting_is_named(name: str, value: object) -> None:
    [problem] = hs.pull_problems({**GOOD, name: value})
    assert name in problem


def test_a_report_goes_over_tls_with_a_key() -> None:
    report = {**GOOD, "llm_host_pull_report_url": "https://team-gpu.lan/llmfleet/pull-reports",
              "llm_host_pull_report_key_length": 32}
    assert hs.pull_problems(report) == []
    [plain] = hs.pull_problems({**report, "llm_host_pull_report_url": "http://team-gpu.lan/r"})
    assert "is not an https:// URL" in plain
    [creds] = hs.pull_problems({**report, "llm_host_pull_report_url": "https://me:pw-77x@team-gpu.lan/r"})
    assert "without credentials" in creds and "pw-77x" not in creds
    [short] = hs.pull_problems({**report, "llm_host_pull_report_key_length": 8})
    assert "llm_host_pull_report_key is shorter than 16 characters" in short


def test_pull_mode_needs_the_checkout_s_run_driver() -> None:
    [problem] = hs.pull_problems({**GOOD, "llm_host_pull_driver_found": False})
    assert "no src/llmfleet/pull.py beside its playbooks" in problem
    assert hs.pull_problems({**GOOD, "llm_host_pull_driver_found": True}) == []


@pytest.mark.parametrize("version", ["main", "v1.2.0", "release/2026-12", "team_laptops"])
def test_branch_and_tag_names_pass(version: str) -> None:
    assert hs.pull_problems({**GOOD, "llm_host_pull_version": version}) == []


def test_the_pins_are_the_controller_s_own_ranges() -> None:
    pins = yaml.safe_load((ROOT / "roles/llm_host/vars/main.yml").read_text())["_llm_host_pull_pins"]
    ranges = {Requirement(r).name.lower(): Requirement(r).specifier
              for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    pinned = {Requirement(p).name.lower(): str(Requirement(p).specifier).removeprefix("==") for p in pins}
    # Everything a pull run imports (the run driver, ansible, the strategy), nothing of the controller's tools.
    assert set(pinned) == set(ranges) - {"invoke", "uv"}
    for name, version in pinned.items():
        assert ranges[name].contains(version), f"{name}=={version} is outside pyproject's {ranges[name]}"


def _render(tmp_path: Path, system: str, **extra: object) -> Path:
    templates = [SETTINGS] + ([PLIST] if system == "Darwin" else [SERVICE, TIMER])
    return render("render_role.yml", tmp_path, role="llm_host", system=system,
                  architecture="arm64" if system == "Darwin" else "x86_64", templates=templates,
                  inventory_hostname="bob-mbp", _llm_host_pull_driver=str(ROOT / "src/llmfleet"), llm_host_pull=True, llm_host_pull_repo_url=GOOD["llm_host_pull_repo_url"],
                  llm_host_pull_inventory="inventory/team", **extra)


def test_systemd_units_run_the_pull_tool_after_the_network_on_a_randomized_schedule(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", llm_host_pull_interval=1800, llm_host_pull_random_delay=600,
                  llm_host_pull_boot_delay=120, llm_host_pull_vault_password="v-pass-7e1")
    service, timer = (out / "llmfleet-pull.service").read_text(), (out / "llmfleet-pull.timer").read_text()
    lines = [line for line in service.splitlines() if line and not line.startswith("#")]
    [exec_start] = [line for line in lines if line.startswith("ExecStart=")]
    assert exec_start.startswith("ExecStart=/opt/llmfleet/pull/venv-")
    assert exec_start.endswith("/bin/python -m llmfleet.pull --config /etc/llmfleet/pull.json")
    assert {"Type=oneshot", "Wants=network-online.target", "After=network-online.target",
            "TimeoutStartSec=14400"} <= set(lines)
    # The run driver's directory is named by its modules' content.
    [path] = [line for line in lines if line.startswith("Environment=PYTHONPATH=")]
    assert re.fullmatch(r"Environment=PYTHONPATH=/opt/llmfleet/pull/lib-[0-9a-f]{12}", path)
    timer_lines = set(timer.splitlines())
    assert {"OnBootSec=120", "OnUnitActiveSec=1800", "RandomizedDelaySec=600", "WantedBy=timers.target"} <= timer_lines
    assert "v-pass-7e1" not in service + timer


def test_the_settings_are_what_the_pull_tool_reads_and_name_the_password_file_only(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", llm_host_pull_vault_password="v-pass-7e1", llm_host_pull_version="v2",
                  llm_host_pull_keep=5, llm_host_pull_playbook="continue.yml")
    text = (out / "pull.json").read_text()
    assert "v-pass-7e1" not in text
    settings = PullSettings.read(out / "pull.json")
    assert settings.repo == GOOD["llm_host_pull_repo_url"] and settings.version == "v2"
    assert settings.inventory == "inventory/team" and settings.playbook == "continue.yml" and settings.host == "bob-mbp"
    assert settings.checkout == Path("/var/lib/llmfleet/pull/checkout") and settings.keep == 5
    assert settings.runs_dir == Path("/var/lib/llmfleet/pull/runs")
    assert settings.vault_password_file == Path("/etc/llmfleet/pull-vault-password")
    assert settings.report_url is None and settings.report_key_file is None
    assert json.loads(text)["_comment"].startswith("Ansible managed")
    # Without a password the settings name no file; a report names its key's file, never the key.
    (tmp_path / "none").mkdir()
    out = _render(tmp_path / "none", "Linux", llm_host_pull_report_url="https://team-gpu.lan/r",
                  llm_host_pull_report_key="rk-0123456789abcdef")
    assert "rk-0123456789abcdef" not in (out / "pull.json").read_text()
    settings = PullSettings.read(out / "pull.json")
    assert settings.vault_password_file is None and settings.report_url == "https://team-gpu.lan/r"
    assert settings.report_key_file == Path("/etc/llmfleet/pull-report-key")


def test_the_launchd_plist_runs_at_load_on_an_interval_and_sleeps_the_delays_itself(tmp_path: Path) -> None:
    out = _render(tmp_path, "Darwin", llm_host_pull_interval=7200, llm_host_pull_random_delay=300,
                  llm_host_pull_boot_delay=60)
    plist = plistlib.loads((out / "com.llmfleet.pull.plist").read_bytes())
    assert plist["Label"] == "com.llmfleet.pull"
    assert plist["ProgramArguments"][0].startswith("/opt/llmfleet/pull/venv-")
    assert plist["ProgramArguments"][1:] == ["-m", "llmfleet.pull", "--config", "/etc/llmfleet/pull.json",
                                             "--boot-delay", "60", "--random-delay", "300"]
    assert plist["RunAtLoad"] is True and plist["StartInterval"] == 7200
    assert re.fullmatch(r"/opt/llmfleet/pull/lib-[0-9a-f]{12}", plist["EnvironmentVariables"]["PYTHONPATH"])
    assert PullSettings.read(out / "pull.json").lib == Path(plist["EnvironmentVariables"]["PYTHONPATH"])
    assert PullSettings.read(out / "pull.json").checkout == Path("/Library/Application Support/llmfleet/pull/checkout")
