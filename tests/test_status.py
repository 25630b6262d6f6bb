"""`invoke status`: the report built from playbooks/status.yml's per-host data."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

from ansible_collections.llmfleet.llmfleet.plugins.module_utils.env_file import env_file, exec_args
import yaml
from rich.console import Console

from llmfleet.report import ExitCode
from llmfleet.status import render_status, status_rows, vllm_placement
from test_runner import LOCAL_HOST, run, write_inventory

SERVER = {
    "type": "linux_cuda",
    "services": {"ollama": "running", "open-webui": "stopped", "vllm@coder": "running"},
    "versions": {"ollama": {"installed": "0.32.15", "pinned": "0.32.16"},
                 "open_webui": {"installed": "0.12.4", "pinned": "0.12.4"},
                 "vllm": {"installed": "0.33.0", "pinned": "0.33.0"}},
    "models": {"declared": ["qwen3:8b", "llama3.2:latest"], "present": ["qwen3:8b"], "missing": ["llama3.2:latest"],
               "skipped": []},
}
LAPTOP = {
    "type": "macos_arm64", "services": {},
    "versions": {"ollama": {"installed": "0.32.15", "pinned": "0.32.15"}, "open_webui": {}, "vllm": {}},
    "models": {"declared": ["qwen3:8b", "qwen3:30b"], "present": ["qwen3:8b"], "missing": [], "skipped": ["qwen3:30b"]},
}


def _render(status: dict) -> tuple[bool, str]:
    out = io.StringIO()
    clean = render_status(status, Console(file=out, width=200, color_system=None))
    return clean, out.getvalue()


def test_rows_compare_installed_with_pinned_and_name_stopped_services() -> None:
    assert status_rows({"team-gpu": SERVER}) == [
        ("team-gpu", "ollama", "running", "0.32.15", "0.32.16", "pinned 0.32.16: run provision"),
        ("team-gpu", "open_webui", "stopped", "0.12.4", "0.12.4", "not running"),
        ("team-gpu", "vllm", "vllm@coder: running", "0.33.0", "0.33.0", ""),
    ]


def test_a_host_that_matches_its_inventory_is_clean() -> None:
    clean, text = _render({"alice-mbp": LAPTOP})
    assert clean
    assert "alice-mbp: 1 model(s) present, 2 declared; skipped (too big for this host) qwen3:30b" in text


def test_differences_are_reported() -> None:
    clean, text = _render({"team-gpu": SERVER, "alice-mbp": LAPTOP})
    assert not clean
    assert "missing llama3.2:latest" in text and "pinned 0.32.16: run provision" in text


def test_status_playbook_reports_a_bare_host(tmp_path: Path, project_dir: Path, runs_dir: Path) -> None:
    inventory = write_inventory(tmp_path / "inv", {"localhost": {**LOCAL_HOST, "ansible_become": False}})
    playbook = Path(__file__).resolve().parents[1] / "playbooks/status.yml"
    result = run(str(playbook.with_suffix("")), inventory, project_dir, runs_dir)
    assert result.exit_code == ExitCode.OK
    report = result.custom_stats["llmfleet_status"]["localhost"]
    assert report["versions"]["ollama"]["pinned"] == "0.32.15"
    assert set(report) == {"type", "services", "versions", "models", "vllm_servers", "proxy", "pull"}
    assert report["proxy"] == {}
    assert report["vllm_servers"] == []
    # Not enrolled in pull mode: no run to report.
    assert report["pull"] == {}


def test_a_mirror_is_not_held_to_the_fleet_s_model_list(tmp_path: Path, project_dir: Path, runs_dir: Path) -> None:
    # group_vars/all's ollama_models reach the team's mirror too; it runs no Ollama, so it declares none
    # (the laptop, which runs one, declares them and misses them here).
    inventory = tmp_path / "inv"
    inventory.mkdir()
    host = {**LOCAL_HOST, "ansible_become": False}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ollama_models": ["qwen2.5-coder:1.5b"]},
        "children": {"llm_mirrors": {"hosts": {"mirror": host}}, "dev_laptops": {"hosts": {"laptop": host}}}}}))
    playbook = Path(__file__).resolve().parents[1] / "playbooks/status.yml"
    result = run(str(playbook.with_suffix("")), inventory, project_dir, runs_dir)
    status = result.custom_stats["llmfleet_status"]
    assert status["mirror"]["models"]["declared"] == []
    assert status["laptop"]["models"]["declared"] == ["qwen2.5-coder:1.5b"]
    clean, text = _render({"mirror": status["mirror"]})
    assert clean, text


def test_the_last_pull_run_is_shown_and_a_failed_one_is_a_difference() -> None:
    # What playbooks/status.yml reads from the newest summary.json of a laptop in pull mode.
    good = {"started": "2026-12-05T11:00:02+00:00", "commit": "0123456789abcdef0123", "version": "main",
            "state": "changed", "reason": "all 1 host(s) ok", "fetch_error": None}
    clean, text = _render({"alice-mbp": {**LAPTOP, "pull": good}})
    assert clean
    assert "alice-mbp: last pull 2026-12-05T11:00:02+00:00, commit 0123456789ab (main), changed" in text
    failed = {**good, "state": "failed", "reason": "failed on alice-mbp"}
    clean, text = _render({"alice-mbp": {**LAPTOP, "pull": failed}})
    assert not clean and "commit 0123456789ab (main), failed: failed on alice-mbp" in text
    offline = {**good, "state": "ok", "fetch_error": "git fetch failed (128): could not resolve host"}
    clean, text = _render({"alice-mbp": {**LAPTOP, "pull": offline}})
    assert clean and "the fetch failed, it converged the checkout it had: git fetch failed (128)" in text


def test_the_vllm_template_unit_is_not_a_server() -> None:
    # systemd lists the template vllm@.service itself (state unknown) next to its instances.
    server = {**SERVER, "services": {**SERVER["services"], "open-webui": "running", "vllm@": "unknown"}}
    rows = status_rows({"team-gpu": server})
    assert ("team-gpu", "vllm", "vllm@coder: running", "0.33.0", "0.33.0", "") in rows


def test_each_vllm_server_shows_where_it_runs() -> None:
    # What playbooks/status.yml reads from /etc/vllm/*.env (those three keys only, never the API key).
    server = {**SERVER, "services": {**SERVER["services"], "vllm@rerank": "running", "vllm@big": "running"},
              "vllm_servers": [
                  '/etc/vllm/coder.env:LLMFLEET_VLLM_ARGS="--model Qwen/Qwen2.5-Coder-32B-Instruct --port 8000 '
                  '--gpu-memory-utilization 0.46 --enable-auto-tool-choice"',
                  '/etc/vllm/rerank.env:LLMFLEET_VLLM_ARGS="--model BAAI/bge-reranker-v2-m3 '
                  '--gpu-memory-utilization 0.92"',
                  '/etc/vllm/rerank.env:CUDA_VISIBLE_DEVICES="1"',
                  '/etc/vllm/big.env:LLMFLEET_VLLM_ARGS="--model m --tensor-parallel-size 2 '
                  '--gpu-memory-utilization 0.46"']}
    rows = status_rows({"team-gpu": server})
    assert ("team-gpu", "vllm", "vllm@big: running on GPUs 0,1 (0.46), vllm@coder: running on GPU 0 (0.46), "
            "vllm@rerank: running on GPU 1 (0.92)", "0.33.0", "0.33.0", "") in rows
    laptop = {**SERVER, "services": {"vllm@tiny": "failed"},
              "vllm_servers": ['/etc/vllm/tiny.env:LLMFLEET_VLLM_ARGS="--model /srv/tiny --dtype float32"',
                               '/etc/vllm/tiny.env:VLLM_CPU_KVCACHE_SPACE="4"']}
    assert (("box", "vllm", "vllm@tiny: failed on CPU, KV cache 4 GiB", "0.33.0", "0.33.0", "not running")
            in status_rows({"box": laptop}))



def test_quoted_vllm_arguments_are_read_as_the_server_gets_them() -> None:
    # The settings files as the vllm role writes them: each argument quoted for systemd (JSON, spaces,
    # quotes, $), inside the file's own double quotes.
    args = ["--model", "m", "--override-generation-config", '{"temperature": 0.5}', "--note", "it's $HOME \\ `x`",
            "--tensor-parallel-size", "2"]
    multi = ["--model", "m", "--tensor-parallel-size", "4", "--note", "two\nlines"]
    lines = [f"/etc/vllm/{name}.env:{line}"
             for name, argv in (("json", args), ("multi", multi))
             for line in env_file({"LLMFLEET_VLLM_ARGS": exec_args(argv)}).splitlines()
             if line.startswith("LLMFLEET_VLLM_ARGS=")]  # grep's lines: an argument's first line only
    assert vllm_placement(lines) == {"json": "GPUs 0,1", "multi": "GPUs 0,1,2,3"}


def test_the_proxy_shows_nginx_and_a_certificate_due_for_renewal() -> None:
    # What playbooks/status.yml reports where llmfleet configured nginx (openssl's -enddate, the renewal window).
    now = datetime(2026, 12, 5, tzinfo=timezone.utc)
    server = {**SERVER, "services": {**SERVER["services"], "open-webui": "running", "nginx": "running"},
              "proxy": {"certificate_end": "Jan  4 10:00:00 2028 GMT", "renew_days": 30}}
    assert ("team-gpu", "proxy", "running", "-", "-", "") in status_rows({"team-gpu": server}, now)
    soon = {**server, "proxy": {"certificate_end": "Dec 20 10:00:00 2026 GMT", "renew_days": 30}}
    assert (("team-gpu", "proxy", "running", "-", "-", "certificate ends 2026-12-20 (15 days): run provision")
            in status_rows({"team-gpu": soon}, now))
    ended = {**server, "services": {**server["services"], "nginx": "stopped"},
             "proxy": {"certificate_end": "Dec  1 10:00:00 2026 GMT", "renew_days": 30}}
    assert (("team-gpu", "proxy", "stopped", "-", "-", "not running, certificate ended 2026-12-01: run provision")
            in status_rows({"team-gpu": ended}, now))
    # No proxy configured by llmfleet: no row, whatever nginx the host runs for itself.
    assert not [row for row in status_rows({"team-gpu": {**SERVER, "proxy": {}}}, now) if row[1] == "proxy"]
