"""llm_host_venv: whether a virtualenv llmfleet installed is still the one it installed (its Python, the
package's version, the distributions it was installed with, its entry points), and the record that
says so. The virtualenvs here are laid out by hand as an installer leaves them (the module only reads
the file system); through real Ansible for the record's changed, check mode and diff."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"version": "1.2.0", "torch_backend": "cpu", "constraints": []}
SCRIPT = b"#!/opt/venv/bin/python\nfrom webapp.cli import main\nmain()\n"


def _venv(root: Path, dists: dict[str, str], python: str = sys.executable) -> Path:
    """A virtualenv with `dists` (name -> version) and webapp's entry point bin/webapp, as uv leaves it."""
    (root / "bin").mkdir(parents=True)
    (root / "bin/python").symlink_to(python)
    site = root / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    for name, version in dists.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    script = root / "bin/webapp"
    script.write_bytes(SCRIPT)
    script.chmod(0o755)
    digest = base64.urlsafe_b64encode(hashlib.sha256(SCRIPT).digest()).rstrip(b"=").decode()
    webapp = next(site.glob("webapp-*.dist-info"))
    (webapp / "RECORD").write_text(f"webapp/__init__.py,sha256=abc,1\n../../../bin/webapp,sha256={digest},{len(SCRIPT)}\n")
    return root


def _run(venv: Path, *flags: str, **args: Any) -> dict[str, Any]:
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    module_args = {"path": str(venv), "package": "webapp", "spec": SPEC, "entry_points": ["webapp"], **args}
    run = subprocess.run(
        [str(bindir / "ansible-playbook"), "-i", "localhost,", str(ROOT / "tests/playbooks/llm_host_venv.yml"),
         "-e", json.dumps({"module_args": module_args}), *flags],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_a_finished_install_is_recorded_once_then_clean(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "1.2.0", {"webapp": "1.2.0", "fastapi": "0.115.0", "typing_extensions": "4.12.2"})
    fresh = _run(venv, version="1.2.0")
    assert fresh["install_needed"] is True and fresh["problems"] == ["no record of a finished install"]
    assert fresh["usable"] is True and fresh["version"] == "1.2.0" and fresh["pins"] == []

    dry = _run(venv, "--check", "--diff", state="recorded")
    assert dry["changed"] is True and not (venv / ".llmfleet-install.json").exists()
    assert _run(venv, state="recorded")["changed"] is True
    record = json.loads((venv / ".llmfleet-install.json").read_text())
    assert record == dict(SPEC, dists=["fastapi==0.115.0", "typing_extensions==4.12.2", "webapp==1.2.0"])
    assert _run(venv, state="recorded")["changed"] is False

    clean = _run(venv, version="1.2.0", link=str(tmp_path / "current"))
    assert clean["install_needed"] is False and clean["problems"] == [] and clean["link_target"] == "none"
    assert clean["pins"] == record["dists"] and clean["reinstall"] == []


def test_every_drift_is_a_problem_and_says_how_to_repair(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "1.2.0", {"webapp": "1.2.0", "fastapi": "0.115.0", "typing_extensions": "4.12.2"})
    _run(venv, state="recorded")
    site = venv / "lib/python3.11/site-packages"
    (site / "fastapi-0.115.0.dist-info").rename(site / "fastapi-0.116.1.dist-info")  # pip install fastapi==0.116.1
    for entry in (site / "typing_extensions-4.12.2.dist-info").iterdir():  # pip uninstall typing_extensions
        entry.unlink()
    (site / "typing_extensions-4.12.2.dist-info").rmdir()
    (site / "httpx-0.28.1.dist-info").mkdir()  # installed by hand since: not a problem
    (venv / "bin/webapp").chmod(0o644)  # chmod -x
    result = _run(venv, version="1.2.0")
    assert result["problems"] == ["fastapi is 0.116.1, was installed as 0.115.0", "typing_extensions 4.12.2 is missing",
                                  "bin/webapp is not executable"]
    assert result["install_needed"] is True and result["usable"] is True
    assert "fastapi==0.115.0" in result["pins"] and result["reinstall"] == ["webapp"]

    (venv / "bin/webapp").chmod(0o755)
    with (venv / "bin/webapp").open("ab") as script:
        script.write(b"# edited\n")
    assert "bin/webapp differs from what was installed" in _run(venv)["problems"]


def test_another_version_or_spec_or_a_lost_python_is_installed_again_from_scratch(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "1.2.0", {"webapp": "1.2.0"})
    _run(venv, state="recorded")
    site = venv / "lib/python3.11/site-packages"
    (site / "webapp-1.2.0.dist-info").rename(site / "webapp-1.1.0.dist-info")  # pip install webapp==1.1.0
    other = _run(venv, version="1.2.0")
    assert other["usable"] is False and "webapp is 1.1.0, not 1.2.0" in other["problems"]

    respec = _run(venv, spec=dict(SPEC, torch_backend="cu126"))
    assert respec["problems"][-1] == "installed with other settings (torch_backend)" and respec["pins"] == []

    lost = _venv(tmp_path / "lost", {"webapp": "1.2.0"}, python=str(tmp_path / "python3.11-removed"))
    result = _run(lost)
    assert result["usable"] is False and result["problems"][0].startswith("its Python is missing or cannot run")

    gone = _run(tmp_path / "deleted")
    assert gone["problems"] == [f"{tmp_path / 'deleted'} is missing"] and gone["usable"] is False


def test_an_older_record_without_the_distributions_is_completed(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "1.2.0", {"webapp": "1.2.0"})
    (venv / ".llmfleet-install.json").write_text(json.dumps(SPEC, indent=2) + "\n")
    older = _run(venv, version="1.2.0")
    assert older["install_needed"] is False and older["record_needed"] is True
    _run(venv, state="recorded")
    assert _run(venv, version="1.2.0")["record_needed"] is False
