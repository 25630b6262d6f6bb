"""The llm_host probe module's parsing and classification, without a GPU."""

from __future__ import annotations

from types import ModuleType

import pytest
from _modules import load_module


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_module("plugins/modules/llm_host_probe.py")


def test_parses_nvidia_smi_csv(probe: ModuleType) -> None:
    text = "0, NVIDIA RTX A6000, 49140, 550.54.15\n1, NVIDIA GeForce RTX 4090, 24564, 550.54.15\n"
    assert probe.parse_nvidia_csv(text) == [
        {"index": 0, "name": "NVIDIA RTX A6000", "vram_mb": 49140, "driver_version": "550.54.15"},
        {"index": 1, "name": "NVIDIA GeForce RTX 4090", "vram_mb": 24564, "driver_version": "550.54.15"},
    ]


def test_nvidia_memory_not_available_counts_as_zero(probe: ModuleType) -> None:
    assert probe.parse_nvidia_csv("0, GRID T4-4Q, [N/A], 535.1")[0]["vram_mb"] == 0


def test_ignores_lines_that_are_not_gpu_rows(probe: ModuleType) -> None:
    text = "No devices were found\n\n0, NVIDIA L4, 23034, 560.1\n"
    assert [gpu["name"] for gpu in probe.parse_nvidia_csv(text)] == ["NVIDIA L4"]


@pytest.mark.parametrize(
    ("system", "arch", "vendor", "expected"),
    [
        ("Darwin", "arm64", "apple", "macos_arm64"),
        ("Darwin", "amd64", "none", "unsupported"),
        ("Linux", "amd64", "nvidia", "linux_cuda"),
        ("Linux", "arm64", "nvidia", "linux_cuda"),
        ("Linux", "amd64", "amd", "linux_rocm"),
        ("Linux", "amd64", "none", "linux_cpu"),
        ("Linux", "riscv64", "none", "unsupported"),
        ("FreeBSD", "amd64", "none", "unsupported"),
    ],
)
def test_classifies_host_types(probe: ModuleType, system: str, arch: str, vendor: str, expected: str) -> None:
    assert probe.classify(system, arch, vendor) == expected


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("arm64", "arm64")])
def test_normalises_architectures(probe: ModuleType, machine: str, arch: str) -> None:
    assert probe.normalise_arch(machine) == arch


def test_missing_nvidia_smi_is_no_gpu_and_no_error(probe: ModuleType) -> None:
    assert probe.probe_nvidia("nvidia-smi-that-does-not-exist") == ([], "")


def test_failing_nvidia_smi_is_reported(probe: ModuleType, tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2\nexit 9\n")
    fake.chmod(0o755)
    gpus, error = probe.probe_nvidia(str(fake))
    assert gpus == []
    assert "exited 9" in error and "could not communicate" in error


def test_memory_comes_from_meminfo_in_mib(probe: ModuleType) -> None:
    text = "MemFree:         1000 kB\nMemTotal:       24684384 kB\nBuffers: 5 kB\n"
    assert probe.parse_meminfo(text) == 24684384 // 1024


def test_memory_without_a_total_is_zero(probe: ModuleType) -> None:
    assert probe.parse_meminfo("MemFree: 1000 kB\n") == 0


def test_memory_of_this_machine_matches_the_kernel(probe: ModuleType) -> None:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    assert probe.memory_mb("Linux") == kib // 1024 > 0
