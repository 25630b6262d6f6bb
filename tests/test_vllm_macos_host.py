"""plugins/modules/vllm_macos_host.py: what a Mac needs before vLLM is built and served there.

No Mac here: sw_vers, pkgutil, xcode-select, clang and sysctl outputs are written from their documented
formats (tests/fixtures/macos/, each file says so in its `#@` header). The minimums come from the role
(vars/main.yml, `_vllm_macos_build_needs`), which follows vLLM's Apple silicon install page of the pin.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import yaml
from _modules import ROOT, load_module

FIXTURES = Path(__file__).parent / "fixtures" / "macos"


@pytest.fixture(scope="module")
def mac() -> ModuleType:
    return load_module("plugins/modules/vllm_macos_host.py")


@pytest.fixture(scope="module")
def needs() -> dict[str, str]:
    return yaml.safe_load((ROOT / "roles/vllm/vars/main.yml").read_text())["_vllm_macos_build_needs"]


def recorded(name: str) -> str:
    text = (FIXTURES / name).read_text()
    assert text.startswith("#@ Written from the documented format, not captured"), name
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#@"))


def check(mac: ModuleType, needs: dict[str, str], sw_vers: str = "sw_vers-14.txt", pkgutil: str = "pkgutil-clt-16.txt",
          select: str = "xcode-select-clt.txt", clang: str = "clang-16.txt", sysctl: str = "sysctl-bf16-m2.txt",
          build: bool = True, dtypes: dict[str, str] | None = None) -> list[str]:
    """The module's messages for a Mac whose commands printed the named fixtures (missing ones print nothing)."""
    clang_text = recorded(clang) if select != "xcode-select-missing.txt" else ""
    developer_dir = recorded(select).strip() if select != "xcode-select-missing.txt" else ""
    return mac.problems(
        mac.parse_sw_vers(recorded(sw_vers)),
        mac.parse_pkgutil(recorded(pkgutil)),
        developer_dir,
        mac.parse_clang(clang_text),
        recorded(sysctl).strip() == "1",
        needs, build, dtypes or {}, "bob-mbp",
    )


def test_the_minimums_are_those_of_vllms_apple_silicon_page(needs: dict[str, str]) -> None:
    # docs/getting_started/installation/cpu.apple.inc.md: macOS Sonoma or later, Xcode 15.4 or later with
    # the Command Line Tools, Apple Clang >= 15.0.0.
    assert needs == {"macos": "14.0", "clt": "15.4", "clang": "15.0.0"}


def test_parses_the_recorded_outputs(mac: ModuleType) -> None:
    assert mac.parse_sw_vers(recorded("sw_vers-14.txt")) == "14.5"
    assert mac.parse_sw_vers(recorded("sw_vers-15.txt")) == "15.0"
    assert mac.parse_pkgutil(recorded("pkgutil-clt-15.txt")) == "15.3.0.0.1.1708646388"
    assert mac.parse_pkgutil(recorded("pkgutil-clt-missing.txt")) == ""
    assert mac.parse_clang(recorded("clang-15.txt")) == "15.0.0"
    assert mac.parse_clang("clang version 18.1.8\nTarget: arm64-apple-darwin23.5.0\n") == ""
    assert mac.version_tuple("15.3.0.0.1.1708646388") == (15, 3, 0)
    assert mac.version_tuple("15.0") == (15, 0, 0)


def test_a_mac_with_sonoma_and_current_tools_passes(mac: ModuleType, needs: dict[str, str]) -> None:
    assert check(mac, needs) == []
    assert check(mac, needs, sw_vers="sw_vers-15.txt") == []


def test_ventura_is_refused(mac: ModuleType, needs: dict[str, str]) -> None:
    [message] = check(mac, needs, sw_vers="sw_vers-13.txt")
    assert "bob-mbp runs macOS 13.6.7; vLLM's Apple silicon build needs macOS 14.0 (Sonoma) or newer" in message


def test_missing_command_line_tools_are_refused_with_the_install_command(mac: ModuleType, needs: dict[str, str]) -> None:
    [message] = check(mac, needs, pkgutil="pkgutil-clt-missing.txt", select="xcode-select-missing.txt")
    assert "bob-mbp has no Command Line Tools" in message and "`xcode-select --install`" in message


def test_old_command_line_tools_and_compiler_are_refused(mac: ModuleType, needs: dict[str, str]) -> None:
    messages = check(mac, needs, pkgutil="pkgutil-clt-14.txt", clang="clang-14.txt")
    assert len(messages) == 2
    assert "the Command Line Tools on bob-mbp are version 14.3; vLLM's source build needs 15.4 or newer" in messages[0]
    assert "the compiler on bob-mbp is Apple clang 14.0.3; vLLM's source build needs Apple clang 15.0.0" in messages[1]
    # 15.3 ships Apple clang 15.0.0, but vLLM's page names 15.4: the tools are refused, the compiler is not.
    [message] = check(mac, needs, pkgutil="pkgutil-clt-15.txt", clang="clang-15.txt")
    assert "are version 15.3" in message


def test_xcode_alone_is_judged_by_its_compiler(mac: ModuleType, needs: dict[str, str]) -> None:
    # Xcode without the separate Command Line Tools package: no receipt, a developer directory, its clang.
    assert check(mac, needs, pkgutil="pkgutil-clt-missing.txt") == []


def test_a_prebuilt_install_needs_no_toolchain(mac: ModuleType, needs: dict[str, str]) -> None:
    assert check(mac, needs, pkgutil="pkgutil-clt-missing.txt", select="xcode-select-missing.txt", build=False) == []
    # The macOS version still counts.
    assert len(check(mac, needs, sw_vers="sw_vers-13.txt", build=False)) == 1


def test_bfloat16_is_refused_only_on_a_cpu_without_bf16(mac: ModuleType, needs: dict[str, str]) -> None:
    dtypes = {"coder": "bfloat16", "chat": "auto"}
    assert check(mac, needs, dtypes=dtypes) == []
    [message] = check(mac, needs, sysctl="sysctl-bf16-m1.txt", dtypes=dtypes)
    assert "bob-mbp's CPU has no BF16" in message and "coder asks for bfloat16" in message and "chat" not in message
