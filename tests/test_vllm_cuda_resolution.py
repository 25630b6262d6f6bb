"""The vllm role's CUDA install resolves, and to a CUDA torch (no GPU here: resolution only).

uv resolves the role's linux_cuda requirement set for Linux x86_64 / Python 3.12 against the package
index this machine is configured for, reading wheel metadata only (no wheel is downloaded).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_requirements_resolve_to_a_cuda_torch(tmp_path: Path) -> None:
    version = yaml.safe_load((ROOT / "roles/vllm/defaults/main.yml").read_text())["vllm_version"]
    packages = yaml.safe_load((ROOT / "roles/vllm/vars/main.yml").read_text())["_vllm_install_by_type"]["linux_cuda"]
    requirements = tmp_path / "requirements.in"
    requirements.write_text("\n".join(p.replace("{{ vllm_version }}", version) for p in packages["packages"]) + "\n")
    uv = Path(sys.executable).parent / "uv"
    proc = subprocess.run(
        [str(uv), "pip", "compile", str(requirements), "--python-version", "3.12",
         "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--no-annotate", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    pins = dict(line.split("==", 1) for line in proc.stdout.splitlines() if "==" in line)
    assert pins["vllm"] == version
    torch = pins["torch"]
    assert "+cpu" not in torch, f"a CPU torch was resolved: {torch}"
    # The CUDA build of torch pulls NVIDIA's runtime libraries; a CPU build has none.
    assert any(re.match(r"nvidia-cuda-runtime", name) for name in pins), sorted(pins)
