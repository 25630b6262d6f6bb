"""What every benchmark shares: the bench fleet (bench/molecule/bench), timed runs, reports.

The fleet is one team server and eleven laptops in podman containers, prepared by molecule/fleet's
prepare.yml (SSH, the Ollama test double's release mirror, the tiny model, a developer per laptop)
and reached over SSH like real hosts. Runs go through `invoke provision` (the users' command) or a
bare `ansible-playbook`, with the fleet's vault password; each run keeps its ansible-runner folder
under .cache/bench/runs/ for its task counts and per-task times.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
INVENTORY = CACHE / "inventory"
RUNS = CACHE / "runs"
RESULTS = CACHE / "results"
VAULT_PASSWORD = ROOT / "molecule" / "fleet" / "vault-password"
VENV_BIN = ROOT / ".venv" / "bin"
SERVER = "bench-server"
LAPTOPS = [f"bench-laptop-{i:02d}" for i in range(11)]


def log(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} bench: {message}", flush=True)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["CONTAINERS_CONF"] = str(ROOT / "testbed" / "containers.conf")
    env["MOLECULE_GLOB"] = "bench/molecule/*/molecule.yml"
    env.update(extra)
    return env


def molecule(*args: str) -> None:
    subprocess.run([str(VENV_BIN / "molecule"), *args, "-s", "bench"], cwd=ROOT, env=_env(), check=True)


def fleet_up(fresh: bool = False) -> None:
    """Create and prepare the bench fleet (from scratch when `fresh`): nothing converged yet."""
    if fresh or not (INVENTORY / "hosts.yml").exists():
        log("creating the bench fleet (1 server, 11 laptops) and preparing it")
        molecule("destroy")
        shutil.rmtree(CACHE / "inventory", ignore_errors=True)
        molecule("create")  # molecule's create runs prepare too
    if not (INVENTORY / "hosts.yml").exists():
        raise SystemExit("bench: prepare did not write the fleet inventory")


def fleet_down() -> None:
    molecule("destroy")
    shutil.rmtree(INVENTORY, ignore_errors=True)


@dataclass
class Run:
    """One timed run: wall time as the user waits for it, and what ansible-runner recorded."""

    label: str
    argv: list[str]
    wall: float
    rc: int
    artifact_dir: Path | None
    summary: dict = field(default_factory=dict)
    # The controller's CPU seconds (user + sys) of the run's whole process tree: every process it
    # waited for (Ansible's workers, Mitogen's brokers, ssh clients). A daemonised ssh ControlPersist
    # master is not waited for, so not counted.
    cpu: float = 0.0

    def hosts(self) -> dict[str, dict[str, int]]:
        return self.summary.get("hosts", {})

    def tasks(self, host: str) -> int:
        """Task results on `host`: ok (changed included) plus skipped, as in the PLAY RECAP."""
        counts = self.hosts()[host]
        return counts["ok"] + counts["skipped"]

    def changed(self) -> int:
        return sum(c["changed"] for c in self.hosts().values())


def _newest_run(folder: Path) -> Path | None:
    runs = sorted(p for p in folder.glob("*/") if p.is_dir())
    return runs[-1] if runs else None


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(label: str, argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `argv` from the project root; its wall time, its process tree's CPU seconds and its output.

    A failed run stops the benchmark. The CPU is what the waited-for children used: runs are timed
    one at a time, so the difference around one run is that run's.
    """
    cpu_before = _children_cpu()
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - started
    cpu = _children_cpu() - cpu_before
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:])
        raise SystemExit(f"bench: {label} exited {proc.returncode}")
    return wall, cpu, proc.stdout


def provision(label: str, limit: str) -> Run:
    """`invoke provision` of site.yml as a user types it, against the bench fleet (`limit`: one host,
    several joined by commas, or "" for all); timed from start to exit."""
    runs = RUNS / label
    argv = [str(VENV_BIN / "invoke"), "provision", "--inventory", str(INVENTORY),
            "--vault-password-file", str(VAULT_PASSWORD)]
    if limit:
        argv += ["--host", limit] if "," not in limit else ["--group", limit]
    wall, cpu, _ = _timed(label, argv, _env(LLMFLEET_RUNS_DIR=str(runs)))
    artifact = _newest_run(runs)
    summary = json.loads((artifact / "summary.json").read_text()) if artifact and (artifact / "summary.json").exists() else {}
    return Run(label, argv, wall, 0, artifact, summary, cpu)


def playbook(label: str, limit: str) -> Run:
    """The same run as a bare `ansible-playbook` of site.yml, no wrapper: the baseline for the wrapper's overhead."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), "--vault-password-file",
            str(VAULT_PASSWORD), "--limit", limit, str(ROOT / "playbooks" / "site.yml")]
    wall, cpu, stdout = _timed(label, argv, _env())
    return Run(label, argv, wall, 0, None, {"recap": _recap(stdout)}, cpu)


REFERENCE_TASKS = 20


def reference(label: str, limit: str) -> Run:
    """Ansible's floor on `limit` (bench/playbooks/reference.yml: 20 no-op stat tasks, facts off), over
    the same inventory, connection and strategy as the no-op runs; a bare ansible-playbook."""
    # The inventory's vault is read even for a play that uses none of its secrets.
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASSWORD),
            "--limit", limit, str(ROOT / "bench" / "playbooks" / "reference.yml")]
    wall, cpu, stdout = _timed(label, argv, _env())
    run = Run(label, argv, wall, 0, None, {"hosts": _recap(stdout)}, cpu)
    if run.hosts().get(limit, {}).get("ok") != REFERENCE_TASKS:
        raise SystemExit(f"bench: the reference run on {limit} did not run its {REFERENCE_TASKS} tasks: {run.hosts()}")
    return run


def _recap(stdout: str) -> dict[str, dict[str, int]]:
    hosts: dict[str, dict[str, int]] = {}
    lines = stdout.splitlines()
    if "PLAY RECAP" not in stdout:
        return hosts
    for line in lines[next(i for i, l in enumerate(lines) if l.startswith("PLAY RECAP")) + 1:]:
        if ":" not in line:
            continue
        name, _, counts = line.partition(":")
        hosts[name.strip()] = {k: int(v) for k, v in (p.split("=") for p in counts.split())}
    return hosts


def task_profile(run: Run, top: int = 15) -> list[tuple[float, str, str]]:
    """The slowest tasks of a run (seconds, summed over hosts; name; file:line), from its job events."""
    if run.artifact_dir is None:
        return []
    spent: dict[tuple[str, str], float] = defaultdict(float)
    for path in (run.artifact_dir / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event", "").startswith("runner_on_") and "duration" in data:
            spent[(data.get("task", ""), data.get("task_path", ""))] += float(data["duration"] or 0)
    ranked = sorted(((seconds, task, where) for (task, where), seconds in spent.items()), reverse=True)
    return ranked[:top]


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def vault_values(*names: str) -> dict[str, str]:
    """Values of the fleet's vault (molecule/fleet's, which the bench fleet uses), read with ansible-vault."""
    vault = ROOT / "molecule" / "fleet" / "inventory" / "group_vars" / "all" / "vault.yml"
    out = subprocess.run([str(VENV_BIN / "ansible-vault"), "view", "--vault-password-file", str(VAULT_PASSWORD),
                          str(vault)], env=_env(), check=True, stdout=subprocess.PIPE, text=True).stdout
    values = yaml.safe_load(out)
    return {name: str(values[name]) for name in names}


def container_exec(name: str, *argv: str) -> str:
    proc = subprocess.run(["podman", "exec", name, *argv], env=_env(), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc.stdout


def _loop() -> None:
    total = 0
    for i in range(10_000_000):
        total += i * i


def machine_speed(runs: int = 3) -> float:
    """Seconds a fixed pure-Python loop takes on this machine now (the fastest of `runs`).

    This machine's speed drifts: the same loop has taken twice as long as half an hour before, with
    nothing else running here. Each result records it before and after its runs, so figures taken
    at different speeds are not compared as if they were alike.
    """
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        _loop()
        best = min(best, time.perf_counter() - start)
    return best


_SPEED_AT_START: list[float] = []


def note_speed() -> float:
    """Measure and remember the machine's speed at the start of a benchmark."""
    speed = machine_speed()
    _SPEED_AT_START.append(speed)
    log(f"machine speed: a fixed Python loop takes {speed:.3f} s (lower is faster)")
    return speed


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    end = machine_speed()
    log(f"machine speed: a fixed Python loop takes {end:.3f} s at the end")
    data = {"bench": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["bench/run", *sys.argv[1:]]),
            "machine_speed_s": {"start": _SPEED_AT_START[-1] if _SPEED_AT_START else None, "end": end}, **data}
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    log(f"results in {out.relative_to(ROOT)}")
    return out


def table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    headers = list(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# Bytes a host receives as replies to connections it opened itself (downloads), counted by nftables
# in the host's network namespace with this machine's nft. Traffic the host did not ask for (the
# controller's SSH, laptops calling the server's APIs) and traffic between its own processes are not
# downloads; the Ollama release mirror prepare.yml serves on the host's loopback is counted apart.
_COUNTERS = """
table inet llmbench
delete table inet llmbench
table inet llmbench {
    counter network {}
    counter mirror {}
    counter dns {}
    chain input {
        type filter hook input priority -400; policy accept;
        iifname "lo" tcp sport 8765 ct direction reply counter name "mirror" return
        iifname "lo" return
        udp sport 53 ct direction reply counter name "dns" return
        ct direction reply counter name "network"
    }
}
"""


def _netns(host: str) -> list[str]:
    pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", host], env=_env(), check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    return ["nsenter", "-t", pid, "-n"]


def counters_reset(host: str) -> None:
    subprocess.run([*_netns(host), "nft", "-f", "-"], input=_COUNTERS, text=True, check=True)


def counters_read(host: str) -> dict[str, int]:
    out = subprocess.run([*_netns(host), "nft", "-j", "list", "counters", "table", "inet", "llmbench"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    counted = {}
    for item in json.loads(out)["nftables"]:
        if "counter" in item:
            counted[item["counter"]["name"]] = int(item["counter"]["bytes"])
    return counted


def ollama_pulls(host: str, since: str) -> int:
    """Model pulls Ollama served since `since` (UTC): its access log's POST /api/pull lines."""
    journal = container_exec(host, "journalctl", "-u", "ollama", "--since", since, "--utc", "-o", "cat")
    return sum(1 for line in journal.splitlines() if "/api/pull" in line and "POST" in line)
