"""The vllm role's CUDA install: the build the host's driver gets, and a torch of that build's CUDA.

No GPU here. The role picks the CUDA build of the pinned release from the driver version nvidia-smi
reports (vars/main.yml's _vllm_cuda_builds through plugins/filter/vllm_gpu.py). Each driver generation
is fed in as an nvidia-smi double's output, parsed by llm_host_probe's own parser, and the role's
decision is checked: the build, its requirement, and uv's --torch-backend of the same CUDA.

What this machine's package index has is then resolved (uv pip compile, wheel metadata only, nothing
downloaded): the PyPI wheel, for Linux x86_64 and aarch64 and Python 3.12. The resolved torch's CUDA
(the version of its nvidia-cuda-runtime pin) must be the build's. The role passes `--torch-backend
cu130` there, which points uv at download.pytorch.org, unreachable here: the test resolves torch from
PyPI instead and checks PyPI's torch is that same CUDA, so the backend changes where torch comes from,
not which CUDA. The variant wheels (the vLLM release's GitHub assets, e.g. +cu129) and PyTorch's other
CUDA indexes cannot be reached here either: for them the decision is checked, not resolved.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _modules import load_module

ROOT = Path(__file__).resolve().parents[1]
GPU = load_module("plugins/filter/vllm_gpu.py")
PROBE = load_module("plugins/modules/llm_host_probe.py")
VARS = yaml.safe_load((ROOT / "roles/vllm/vars/main.yml").read_text())
DEFAULTS = yaml.safe_load((ROOT / "roles/vllm/defaults/main.yml").read_text())
TABLE = VARS["_vllm_cuda_builds"]
PINNED = DEFAULTS["vllm_version"]
WHEELS = DEFAULTS["vllm_cuda_wheel_url"]
# The drivers of the doubles: R590 (CUDA 13), R550 (the llm_host scenario's, CUDA 12.4), R470 (CUDA 11.4).
DOUBLES = {"r590": ROOT / "tests/doubles/nvidia-smi-double-r590",
           "r550": ROOT / "molecule/llm_host/files/nvidia-smi-double",
           "r470": ROOT / "tests/doubles/nvidia-smi-double-r470"}


def _gpus(double: str) -> list[dict[str, Any]]:
    """What llm_host_probe reads from the double: the query it makes, parsed by its parser."""
    out = subprocess.run([str(DOUBLES[double]), PROBE.NVIDIA_QUERY, "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return PROBE.parse_nvidia_csv(out)


def _decide(version: str, double: str | None, choice: str = "auto", arch: str = "amd64") -> dict[str, Any]:
    """The role's decision (vars/main.yml's _vllm_cuda) for `version` on a host with that double's GPUs."""
    release = TABLE.get(version, TABLE["default"])
    return GPU.cuda_build(release["builds"], version, _gpus(double) if double else [], choice, WHEELS, arch, TABLE)


def _label(cuda: str) -> str:
    return "cu" + cuda.replace(".", "")


def test_every_build_installs_a_torch_of_its_own_cuda() -> None:
    # uv's --torch-backend names the CUDA of PyTorch's index; a variant's wheel carries the same label.
    for version, release in TABLE.items():
        for build in release["builds"]:
            assert build["torch_backend"] == _label(build["cuda"]), (version, build)
            assert build["torch_backend"] != "auto"
            assert not build["wheel"] or f"+{_label(build['cuda'])}-" in build["wheel"], (version, build)
        # Newest CUDA first, and the first is the PyPI wheel (no file name).
        cudas = [tuple(map(int, b["cuda"].split("."))) for b in release["builds"]]
        assert cudas == sorted(cudas, reverse=True) and not release["builds"][0]["wheel"], version


@pytest.mark.parametrize(("version", "double", "cuda", "requirement"), [
    # A CUDA 13 driver gets the pinned release's PyPI wheel.
    (PINNED, "r590", "13.0", f"vllm=={PINNED}"),
    # An R550 driver runs CUDA 12.x only: 0.25.1's +cu129 release asset, with PyTorch's cu129 torch.
    ("0.25.1", "r550", "12.9", f"vllm @ {WHEELS}/v0.25.1/vllm-0.25.1+cu129-cp38-abi3-manylinux_2_28_x86_64.whl"),
    ("0.25.1", "r590", "13.0", "vllm==0.25.1"),
    # No driver reported (a host type set in the inventory): the release's default build.
    (PINNED, None, "13.0", f"vllm=={PINNED}"),
])
def test_the_driver_picks_the_build(version: str, double: str | None, cuda: str, requirement: str) -> None:
    build = _decide(version, double)
    assert build["error"] == ""
    assert build["cuda"] == cuda and build["torch_backend"] == _label(cuda)
    assert build["packages"] == [requirement]


def test_arm64_hosts_get_the_aarch64_variant() -> None:
    build = _decide("0.25.1", "r550", arch="arm64")
    assert build["packages"][0].endswith("/v0.25.1/vllm-0.25.1+cu129-cp38-abi3-manylinux_2_28_aarch64.whl")


def test_vllm_cuda_takes_a_build_of_the_release_or_names_them() -> None:
    assert _decide("0.25.1", "r590", choice="12.9")["torch_backend"] == "cu129"
    assert ("vllm_cuda is '12.6', and vLLM 0.25.1 is built for CUDA 13.0, 12.9"
            in _decide("0.25.1", "r590", "12.6")["error"])
    # A build the driver cannot run is refused all the same.
    assert ("vllm_cuda is '13.0', and CUDA 13.0 needs the NVIDIA driver 580.65.06 or newer, while this host has "
            "550.54.15") in _decide("0.25.1", "r550", "13.0")["error"]


@pytest.mark.parametrize(("version", "double", "expect"), [
    # The pinned release is built for CUDA 13.0 only: an R550 host is told the driver it needs, and the
    # newest release the table has a CUDA 12 build of.
    (PINNED, "r550", (f"the NVIDIA driver 550.54.15 is too old for every CUDA build of vLLM {PINNED} "
                      "(CUDA 13.0 needs 580.65.06 or newer); upgrade the driver to 580.65.06 or newer",
                      'or pin vllm_version: "0.25.1"', "(CUDA 12.9)")),
    # R470 runs no CUDA 12: nothing llmfleet knows fits.
    ("0.25.1", "r470", ("the NVIDIA driver 470.256.02 is too old for every CUDA build of vLLM 0.25.1 "
                        "(CUDA 13.0 needs 580.65.06 or newer, CUDA 12.9 needs 525.60.13 or newer); upgrade the driver "
                        "to 525.60.13 or newer", "no release llmfleet knows has a build for an older one")),
])
def test_a_driver_too_old_for_every_build_is_refused(version: str, double: str, expect: tuple[str, ...]) -> None:
    build = _decide(version, double)
    assert build["packages"] == [] and build["cuda"] == ""
    for text in expect:
        assert text in build["error"]


def _runtime_cuda(pins: dict[str, str]) -> str:
    """major.minor of the CUDA runtime torch pulls (nvidia-cuda-runtime for 13, -cu12 for 12)."""
    version = next(v for name, v in pins.items() if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", name))
    return ".".join(version.split(".")[:2])


@pytest.mark.parametrize(("version", "double", "platform"), [
    (PINNED, "r590", "x86_64-manylinux_2_28"),
    (PINNED, "r590", "aarch64-manylinux_2_28"),
    ("0.25.1", "r590", "x86_64-manylinux_2_28"),
])
def test_the_pypi_build_resolves_to_a_torch_of_its_cuda(tmp_path: Path, version: str, double: str,
                                                        platform: str) -> None:
    build = _decide(version, double, arch="arm64" if platform.startswith("aarch64") else "amd64")
    assert build["packages"] == [f"vllm=={version}"], "only the PyPI wheel is on this machine's index"
    requirements = tmp_path / "requirements.in"
    requirements.write_text("\n".join(build["packages"]) + "\n")
    uv = Path(sys.executable).parent / "uv"
    proc = subprocess.run(
        [str(uv), "pip", "compile", str(requirements), "--python-version", "3.12",
         "--python-platform", platform, "--no-header", "--no-annotate", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    pins = dict(line.split("==", 1) for line in proc.stdout.splitlines() if "==" in line)
    assert pins["vllm"] == version
    assert "+cpu" not in pins["torch"], f"a CPU torch was resolved: {pins['torch']}"
    # torch's CUDA is the vLLM wheel's: a mismatch is the libcudart.so.N error at start-up.
    assert _runtime_cuda(pins) == build["cuda"], sorted(pins)
