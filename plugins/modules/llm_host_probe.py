#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Probe a host's accelerators, memory and CPUs in one round trip and classify the llmfleet host type."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import sys

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llm_host_probe
short_description: Report the target's GPUs, memory and CPUs, and its llmfleet host type
description:
  - >-
    Reads NVIDIA GPUs from C(nvidia-smi --query-gpu), AMD GPUs from sysfs (amdgpu devices, and only when
    C(/dev/kfd) exists) and Apple silicon from the platform, then classifies the host as V(macos_arm64),
    V(linux_cuda), V(linux_rocm) or V(linux_cpu) (V(unsupported) for anything else).
  - >-
    Also reports the total memory and the CPU count, as the hardware fact subset would, without its slow
    survey of mounts and devices, and the version of each interpreter of O(pythons).
  - Reads only.
author:
  - llmfleet maintainers
options:
  nvidia_smi:
    description:
      - Name or path of the nvidia-smi program.
    type: str
    default: nvidia-smi
  pythons:
    description:
      - >-
        Interpreters whose major.minor version to report in RV(pythons), for example C(/usr/bin/python3)
        for the roles that build virtualenvs on it. The one running this module is read without starting
        another.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.read_only
  - llmfleet.llmfleet.attributes.posix
notes:
  - >-
    An nvidia-smi that is installed but lists no GPU gives a warning (RV(nvidia_smi_error)); the host then
    counts as having no NVIDIA GPU, which the inventory's C(llm_host_type) can override.
"""

EXAMPLES = r"""
- name: Probe the accelerators and the Pythons the virtualenvs are built on
  llmfleet.llmfleet.llm_host_probe:
    nvidia_smi: /usr/bin/nvidia-smi
    pythons: [/usr/bin/python3]
  register: __llm_host_probe
"""

RETURN = r"""
system:
  description: The operating system, V(Linux) or V(Darwin).
  type: str
  returned: always
  sample: Linux
arch:
  description: V(amd64) or V(arm64); other machine names pass through unchanged.
  type: str
  returned: always
  sample: amd64
gpu_vendor:
  description: V(nvidia), V(amd), V(apple) or V(none).
  type: str
  returned: always
  sample: nvidia
gpus:
  description: One mapping per GPU, with C(index), C(name), C(vram_mb) and C(driver_version).
  type: list
  elements: dict
  returned: always
  sample: [{index: 0, name: NVIDIA L4, vram_mb: 23034, driver_version: "550.127.08"}]
vram_mb:
  description: The GPUs' memory in MiB, summed (0 for none, and for Apple silicon's unified memory).
  type: int
  returned: always
nvidia_smi_error:
  description: Why an nvidia-smi that is there gave no GPU; empty otherwise.
  type: str
  returned: always
detected_type:
  description: The host type, or V(unsupported).
  type: str
  returned: always
  sample: linux_cuda
ram_mb:
  description: Total memory in MiB, as the C(memtotal_mb) fact gives it (0 when it cannot be read).
  type: int
  returned: always
cpu_count:
  description: The machine's logical CPUs, as the C(processor_vcpus) fact gives them.
  type: int
  returned: always
pythons:
  description: >-
    Per interpreter of O(pythons), C(version) (major.minor, empty when it cannot run) and C(error).
  type: dict
  returned: always
  sample: {/usr/bin/python3: {version: "3.11", error: ""}}
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
    "pythons": {"type": "list", "elements": "str", "default": []},
}

NVIDIA_QUERY = "--query-gpu=index,name,memory.total,driver_version"
ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def normalise_arch(machine: str) -> str:
    """Map uname's machine to the names release archives use."""
    return ARCH_NAMES.get(machine.lower(), machine.lower())


def parse_nvidia_csv(text: str) -> list[dict]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        index, name, memory, driver = fields
        try:
            vram_mb = int(float(memory))
        except ValueError:  # "[N/A]" on some virtual GPUs
            vram_mb = 0
        gpus.append({"index": int(index), "name": name, "vram_mb": vram_mb, "driver_version": driver})
    return gpus


def classify(system: str, arch: str, gpu_vendor: str) -> str:
    """Decide the host type from the platform and the GPU vendor that actually answered."""
    if system == "Darwin":
        return "macos_arm64" if arch == "arm64" else "unsupported"
    if system != "Linux" or arch not in ("amd64", "arm64"):
        return "unsupported"
    return {"nvidia": "linux_cuda", "amd": "linux_rocm"}.get(gpu_vendor, "linux_cpu")


def probe_nvidia(binary: str) -> tuple[list[dict], str]:
    """Return the NVIDIA GPUs, or an explanation when nvidia-smi exists but does not answer."""
    path = shutil.which(binary)
    if path is None:
        return [], ""
    try:
        proc = subprocess.run(
            [path, NVIDIA_QUERY, "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"{path}: {exc}"
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        return [], f"{path} exited {proc.returncode}: {message[0] if message else 'no output'}"
    gpus = parse_nvidia_csv(proc.stdout)
    return gpus, "" if gpus else f"{path} listed no GPUs"


def probe_amd(sysfs: str = "/sys/class/drm") -> list[dict]:
    """AMD GPUs that ROCm can use: amdgpu devices in sysfs, and only when /dev/kfd exists."""
    if not os.path.exists("/dev/kfd"):
        return []
    gpus = []
    for card in sorted(glob.glob(os.path.join(sysfs, "card[0-9]*", "device"))):
        vendor = _read(os.path.join(card, "vendor"))
        if vendor != "0x1002":
            continue
        vram = _read(os.path.join(card, "mem_info_vram_total"))
        name = _read(os.path.join(card, "product_name")) or "AMD GPU " + _read(os.path.join(card, "device"))
        gpus.append({
            "index": len(gpus),
            "name": name,
            "vram_mb": int(vram) // (1024 * 1024) if vram.isdigit() else 0,
            "driver_version": _read("/sys/module/amdgpu/version"),
        })
    return gpus


def probe_apple(system: str, arch: str) -> list[dict]:
    """Apple Silicon's GPU shares system memory, so no separate VRAM is reported."""
    if system != "Darwin" or arch != "arm64":
        return []
    try:
        brand = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except OSError:
        brand = ""
    return [{"index": 0, "name": brand or "Apple Silicon", "vram_mb": 0, "driver_version": ""}]


def parse_meminfo(text: str) -> int:
    """MemTotal of /proc/meminfo in MiB (the kernel gives kB), 0 when absent."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemTotal" and value.split():
            return int(value.split()[0]) // 1024
    return 0


def memory_mb(system: str) -> int:
    """Total memory in MiB: /proc/meminfo on Linux, sysctl hw.memsize (bytes) on macOS."""
    if system == "Linux":
        return parse_meminfo(_read("/proc/meminfo"))
    try:
        out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=10,
                             check=False).stdout.strip()
    except OSError:
        return 0
    return int(out) // (1024 * 1024) if out.isdigit() else 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


def python_version(path: str) -> dict[str, str]:
    """An interpreter's major.minor version, or why there is none."""
    try:
        if os.path.realpath(path) == os.path.realpath(sys.executable):
            return {"version": "%d.%d" % sys.version_info[:2], "error": ""}
        proc = subprocess.run([path, "-c", PYTHON_VERSION], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"version": "", "error": str(exc)}
    out = proc.stdout.strip()
    if proc.returncode == 0 and out.replace(".", "").isdigit():
        return {"version": out, "error": ""}
    message = (proc.stderr or proc.stdout).strip().splitlines()
    return {"version": "", "error": f"{path} exited {proc.returncode}: {message[-1] if message else 'no output'}"}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    system = platform.system()
    arch = normalise_arch(platform.machine())
    error = ""
    gpus, vendor = [], "none"
    if system == "Linux":
        gpus, error = probe_nvidia(module.params["nvidia_smi"])
        vendor = "nvidia" if gpus else "none"
        if not gpus:
            gpus = probe_amd()
            vendor = "amd" if gpus else "none"
    elif system == "Darwin":
        gpus = probe_apple(system, arch)
        vendor = "apple" if gpus else "none"
    if error:
        module.warn(f"NVIDIA: {error}. The host counts as having no NVIDIA GPU; set llm_host_type to override.")
    module.exit_json(
        changed=False,
        system=system,
        arch=arch,
        gpu_vendor=vendor,
        gpus=gpus,
        vram_mb=sum(gpu["vram_mb"] for gpu in gpus),
        nvidia_smi_error=error,
        detected_type=classify(system, arch, vendor),
        ram_mb=memory_mb(system),
        cpu_count=os.cpu_count() or 0,
        pythons={path: python_version(path) for path in module.params["pythons"]},
    )


if __name__ == "__main__":
    main()
