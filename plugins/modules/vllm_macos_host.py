#!/usr/bin/python
# -*- coding: utf-8 -*-
"""macOS: check the Mac against what vLLM's source build and its Apple CPU backend need, before any change."""

from __future__ import annotations

import re
from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: vllm_macos_host
short_description: Check a Mac against vLLM's source build and its Apple CPU backend, read-only
description:
  - >-
    Reads the macOS version (C(sw_vers)), the Command Line Tools' receipt
    (C(pkgutil --pkg-info=com.apple.pkg.CLTools_Executables)), the developer directory
    (C(xcode-select -p)), the compiler's version (C(xcrun clang --version)) and whether the CPU has BF16
    (C(sysctl -n hw.optional.arm.FEAT_BF16)).
  - >-
    Fails, naming what is missing and how to get it, when the macOS version is below the C(macos) of
    O(needs); for a source build (O(build)), when the Command Line Tools are missing or older than the
    C(clt) of O(needs), or Apple clang is older than its C(clang); and when a model is served with
    C(bfloat16) on a CPU without BF16 (vLLM's Apple CPU backend then computes in float16 and float32
    only).
  - >-
    Never runs the C(clang) shim without a developer directory (it would open the installer's dialog).
  - Changes nothing.
author:
  - llmfleet maintainers
options:
  needs:
    description:
      - The minimum versions, C(macos), C(clt) and C(clang), as dotted numbers.
    type: dict
    required: true
  build:
    description:
      - Whether vLLM is built from source on this Mac (then the toolchain is checked).
    type: bool
    default: true
  dtypes:
    description:
      - The dtype of each served model, by the model's name.
    type: dict
    default: {}
  host:
    description:
      - The host's name in the messages.
    type: str
    default: this Mac
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.read_only
  - llmfleet.llmfleet.attributes.macos
notes:
  - >-
    Not run in CI, which has no macOS: its parsing and decisions are unit-tested with outputs written from
    the tools' documented formats (tests/fixtures/macos/).
"""

EXAMPLES = r"""
- name: Check the Mac before vLLM is built and served on it
  llmfleet.llmfleet.vllm_macos_host:
    needs: {macos: "14.0", clt: "15.4", clang: "15.0.0"}
    build: true
    dtypes: {coder: auto, reviewer: bfloat16}
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
macos:
  description: The macOS version (C(sw_vers -productVersion)).
  type: str
  returned: always
  sample: "14.5"
clt:
  description: The Command Line Tools' version; empty when they are not installed or O(build) is false.
  type: str
  returned: always
  sample: "15.3.0.0.1.1708646388"
clang:
  description: The Apple clang version; empty when none was found or O(build) is false.
  type: str
  returned: always
  sample: "15.0.0"
bf16:
  description: Whether the CPU has BF16 (C(FEAT_BF16)).
  type: bool
  returned: always
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "needs": {"type": "dict", "required": True},
    "build": {"type": "bool", "default": True},
    "dtypes": {"type": "dict", "default": {}},
    "host": {"type": "str", "default": "this Mac"},
}

CLT_PACKAGE = "com.apple.pkg.CLTools_Executables"


def parse_sw_vers(text: str) -> str:
    """`sw_vers`: the ProductVersion, e.g. "14.5"."""
    match = re.search(r"^ProductVersion:\s*([0-9.]+)\s*$", text, re.MULTILINE)
    return match.group(1) if match else ""


def parse_pkgutil(text: str) -> str:
    """`pkgutil --pkg-info=...`: the package version, e.g. "15.3.0.0.1.1708646388" ("" without a receipt)."""
    match = re.search(r"^version:\s*([0-9.]+)\s*$", text, re.MULTILINE)
    return match.group(1) if match else ""


def parse_clang(text: str) -> str:
    """`clang --version`: Apple clang's version, e.g. "15.0.0" ("" for another compiler)."""
    match = re.search(r"^Apple clang version ([0-9.]+)", text, re.MULTILINE)
    return match.group(1) if match else ""


def version_tuple(text: str, parts: int = 3) -> tuple[int, ...]:
    """"15.3.0.0.1.1708646388" -> (15, 3, 0): the leading release numbers, missing ones as 0."""
    numbers = [int(n) for n in re.findall(r"[0-9]+", text)[:parts]]
    return tuple(numbers + [0] * (parts - len(numbers)))


def at_least(found: str, needed: str) -> bool:
    return bool(found) and version_tuple(found) >= version_tuple(needed)


def problems(
    macos: str, clt: str, developer_dir: str, clang: str, bf16: bool, needs: dict[str, str],
    build: bool, dtypes: dict[str, str], host: str,
) -> list[str]:
    """One sentence per unmet need (empty: the Mac can build and serve)."""
    found: list[str] = []
    if not at_least(macos, needs["macos"]):
        found.append(
            f"vllm: {host} runs macOS {macos or 'of an unknown version'}; vLLM's Apple silicon build needs macOS "
            f"{needs['macos']} (Sonoma) or newer. Update macOS, or set vllm_enabled: false on this host"
        )
    if build:
        if not clt and not developer_dir:
            found.append(
                f"vllm: {host} has no Command Line Tools, which vLLM's source build needs (Apple clang "
                f"{needs['clang']} or newer). Install them (`xcode-select --install`, or Xcode "
                f"{needs['clt']} or newer) and run again"
            )
        else:
            if clt and not at_least(clt, needs["clt"]):
                found.append(
                    f"vllm: the Command Line Tools on {host} are version {'.'.join(map(str, version_tuple(clt, 2)))}; "
                    f"vLLM's source build needs {needs['clt']} or newer. Update them (Software Update, or "
                    f"`softwareupdate --list` then `softwareupdate --install <label>`)"
                )
            if not at_least(clang, needs["clang"]):
                found.append(
                    f"vllm: the compiler on {host} is "
                    + (f"Apple clang {clang}" if clang else f"not Apple clang (developer directory {developer_dir or 'none'})")
                    + f"; vLLM's source build needs Apple clang {needs['clang']} or newer. Update the Command Line "
                    f"Tools or Xcode, and `sudo xcode-select --switch` to them"
                )
    if not bf16:
        bad = [name for name, dtype in sorted(dtypes.items()) if str(dtype) == "bfloat16"]
        if bad:
            found.append(
                f"vllm: {host}'s CPU has no BF16 (an M1), where vLLM's Apple CPU backend computes in float16 and "
                f"float32 only; {', '.join(bad)} asks for bfloat16. Set dtype (or vllm_default_dtype) to auto, "
                f"float16 or float32"
            )
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    _rc, out, _err = module.run_command(["sw_vers"])
    macos = parse_sw_vers(out)
    clt = developer_dir = clang = ""
    if module.params["build"]:
        rc, out, _err = module.run_command(["pkgutil", f"--pkg-info={CLT_PACKAGE}"])
        clt = parse_pkgutil(out) if rc == 0 else ""
        rc, out, _err = module.run_command(["xcode-select", "-p"])
        developer_dir = out.strip() if rc == 0 else ""
        if developer_dir:
            _rc, out, _err = module.run_command(["xcrun", "clang", "--version"])
            clang = parse_clang(out)
    _rc, out, _err = module.run_command(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"])
    bf16 = out.strip() == "1"
    result = {"changed": False, "macos": macos, "clt": clt, "clang": clang, "bf16": bf16}
    found = problems(macos, clt, developer_dir, clang, bf16, module.params["needs"], module.params["build"],
                     module.params["dtypes"], module.params["host"])
    if found:
        module.fail_json(msg=". ".join(found) + ". Nothing was changed.", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
