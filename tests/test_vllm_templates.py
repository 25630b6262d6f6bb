"""The vllm role's service files as Ansible renders them: systemd units, env files, launchd plists.

macOS cannot run here, so the plist is checked by parsing it with plistlib.
"""

from __future__ import annotations

import plistlib
from pathlib import Path

from rendering import render
from test_env_file import systemd_env_file, systemd_exec_split

JSON_ARG = '{"temperature": 0.5, "note": "it\'s $HOME \\\\ `x`"}'
MODELS = [
    {"name": "coder", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "port": 8000, "api_key": 'k"ey<&>',
     "extra_args": ["--enable-prefix-caching", "--override-generation-config", JSON_ARG]},
    {"name": "tiny", "model": "/srv/models/tiny", "port": 8001, "tool_call_parser": "", "kv_cache_gb": 2},
]


def _render(tmp_path: Path, system: str, **extra: object) -> Path:
    return render("render_role.yml", tmp_path, **{
        "role": "vllm", "system": system, "architecture": "arm64" if system == "Darwin" else "x86_64",
        "items_var": "_vllm_instances", "vllm_models": MODELS,
        "llm_host_facts": {"type": "macos_arm64" if system == "Darwin" else "linux_cuda"},
        "vllm_hf_token": "hf_secret", **extra})


def test_systemd_unit_and_env_files(tmp_path: Path) -> None:
    out = _render(tmp_path, "Linux", templates=["etc/systemd/system/vllm@.service"],
                  item_templates=["etc/vllm/instance.env"])
    unit = (out / "vllm@.service").read_text()
    assert "EnvironmentFile=/etc/vllm/%i.env" in unit
    assert ("ExecStart=/opt/llmfleet/vllm/current/bin/python -m vllm.entrypoints.openai.api_server $LLMFLEET_VLLM_ARGS"
            in unit)
    directives = [line for line in unit.splitlines() if line and not line.startswith("#")]
    # Sandboxed (README: Service hardening), but the GPUs' device nodes stay reachable.
    for line in ["ProtectSystem=strict", "ReadWritePaths=/var/lib/vllm", "PrivateTmp=true", "UMask=0077",
                 "CapabilityBoundingSet=", "NoNewPrivileges=true", "SystemCallArchitectures=native",
                 "KillMode=mixed"]:
        assert line in directives
    assert not [line for line in directives if line.startswith(("PrivateDevices", "DevicePolicy", "DeviceAllow",
                                                                 "MemoryDenyWriteExecute", "RemoveIPC"))]
    coder = (out / "coder-instance.env").read_text().splitlines()
    args = next(line for line in coder if line.startswith("LLMFLEET_VLLM_ARGS="))
    assert args.startswith('LLMFLEET_VLLM_ARGS="--model Qwen/Qwen2.5-Coder-7B-Instruct --served-model-name coder --host '
                           '127.0.0.1 --port 8000 --max-model-len 16384 --dtype auto --gpu-memory-utilization 0.46 '
                           '--enable-auto-tool-choice --tool-call-parser hermes --enable-prefix-caching '
                           '--override-generation-config \\"{')
    assert 'VLLM_API_KEY="k\\"ey<&>"' in coder and 'HF_TOKEN="hf_secret"' in coder
    assert 'HF_HOME="/var/lib/vllm/huggingface"' in coder and 'VLLM_NO_USAGE_STATS="1"' in coder
    # An argument holding JSON, spaces, quotes, $ and a backslash reaches vLLM whole: through systemd's
    # reading of the file, then ExecStart's split of $LLMFLEET_VLLM_ARGS (both as tests/test_env_file.py reads them).
    env = systemd_env_file("\n".join(coder) + "\n")
    assert systemd_exec_split(env["LLMFLEET_VLLM_ARGS"])[-4:] == ["hermes", "--enable-prefix-caching",
                                                                  "--override-generation-config", JSON_ARG]
    assert env["VLLM_API_KEY"] == 'k"ey<&>'
    tiny = (out / "tiny-instance.env").read_text()
    assert "--tool-call-parser" not in tiny and 'VLLM_CPU_KVCACHE_SPACE="2"' in tiny
    assert "VLLM_API_KEY" not in tiny


def test_launchd_plists(tmp_path: Path) -> None:
    out = _render(tmp_path, "Darwin", ansible_user="alice", item_templates=["Library/LaunchDaemons/vllm.plist"])
    plist = plistlib.loads((out / "coder-vllm.plist").read_bytes())
    assert plist["Label"] == "com.llmfleet.vllm.coder"
    assert plist["ProgramArguments"][:3] == ["/opt/llmfleet/vllm/current/bin/python", "-m",
                                             "vllm.entrypoints.openai.api_server"]
    assert plist["ProgramArguments"][3:7] == ["--model", "Qwen/Qwen2.5-Coder-7B-Instruct", "--served-model-name",
                                              "coder"]
    # launchd passes each argument as it is: XML-escaped in the plist, never shell-quoted.
    assert plist["ProgramArguments"][-2:] == ["--override-generation-config", JSON_ARG]
    assert plist["UserName"] == "alice"
    env = plist["EnvironmentVariables"]
    assert env["VLLM_API_KEY"] == 'k"ey<&>' and env["HF_HOME"] == "/Users/alice/.cache/huggingface"
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["Umask"] == 0o077 and plist["ExitTimeOut"] == 60 and plist["ThrottleInterval"] == 10


def _env(tmp_path: Path, name: str, system: str = "Linux", **extra: object) -> dict[str, str]:
    """A server's environment as the host gets it: the launchd plist's on macOS, else the settings
    file's lines as written (values still quoted)."""
    (tmp_path / name).mkdir()
    if system == "Darwin":
        out = _render(tmp_path / name, system, ansible_user="alice",
                      item_templates=["Library/LaunchDaemons/vllm.plist"], **extra)
        return plistlib.loads((out / "coder-vllm.plist").read_bytes())["EnvironmentVariables"]
    out = _render(tmp_path / name, system, item_templates=["etc/vllm/instance.env"], **extra)
    lines = (out / "coder-instance.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


TELEMETRY_OFF = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_nothing_phones_home_unless_llm_host_telemetry(tmp_path: Path) -> None:
    def env(name: str, system: str = "Linux", **extra: object) -> dict[str, str]:
        return _env(tmp_path, name, system, **extra)

    # vLLM's usage statistics stop on either of its variables ("1" exactly); the hub client's too.
    quoted = {name: f'"{value}"' for name, value in TELEMETRY_OFF.items()}
    assert {name: value for name, value in env("default").items() if name in TELEMETRY_OFF} == quoted
    assert {name: value for name, value in env("darwin", "Darwin").items() if name in TELEMETRY_OFF} == TELEMETRY_OFF
    on = env("on", llm_host_telemetry=True)
    assert not set(TELEMETRY_OFF) & set(on) and on["HF_HOME"] == '"/var/lib/vllm/huggingface"'


def test_engine_and_workers_stay_on_loopback(tmp_path: Path) -> None:
    # vLLM's workers otherwise listen (torch's gloo, NCCL) on the address the host name resolves to:
    # ports on the team's network that neither the proxy nor the firewall covers (molecule/vllm's
    # verify lists the servers' sockets). macOS calls its loopback interface lo0.
    def env(name: str, system: str, **extra: object) -> dict[str, str]:
        return {key: value.strip('"') for key, value in _env(tmp_path, name, system, **extra).items()}

    loopback = ("VLLM_HOST_IP", "GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
    linux, darwin = env("linux", "Linux"), env("darwin", "Darwin")
    assert [linux[name] for name in loopback] == ["127.0.0.1", "lo", "lo"]
    assert [darwin[name] for name in loopback] == ["127.0.0.1", "lo0", "lo0"]
    # A team that knows better (another interface for NCCL) still has the last word.
    assert env("own", "Linux", vllm_environment={"NCCL_SOCKET_IFNAME": "ib0"})["NCCL_SOCKET_IFNAME"] == "ib0"

def test_offline_fleet_and_hugging_face_mirror(tmp_path: Path) -> None:
    def env(name: str, **extra: object) -> dict[str, str]:
        (tmp_path / name).mkdir()
        out = _render(tmp_path / name, "Linux", item_templates=["etc/vllm/instance.env"], **extra)
        return systemd_env_file((out / "coder-instance.env").read_text())

    online = env("online")
    assert "HF_HUB_OFFLINE" not in online and "HF_ENDPOINT" not in online
    offline = env("offline", llm_host_offline=True, vllm_hf_endpoint="https://hf-mirror.team.lan")
    # The hub client reads only its cache, so a restart never tries the network; downloads (a first
    # start) go to the team's mirror.
    assert offline["HF_HUB_OFFLINE"] == "1" and offline["HF_ENDPOINT"] == "https://hf-mirror.team.lan"
    # An entry's own environment may still let one server download.
    models = [{**MODELS[0], "environment": {"HF_HUB_OFFLINE": "0"}}]
    assert env("override", llm_host_offline=True, vllm_models=models)["HF_HUB_OFFLINE"] == "0"
