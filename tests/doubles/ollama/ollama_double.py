#!/usr/bin/env python3
"""TEST DOUBLE standing in for Ollama, which cannot be downloaded on this machine.

This file is NOT Ollama. The real Ollama release cannot be downloaded where the
llmfleet tests run (no access to GitHub or ollama.com), so this single stdlib-only
Python program imitates the parts of the `ollama` binary that provisioning relies
on: `ollama serve` (the HTTP API on OLLAMA_HOST, models stored under OLLAMA_MODELS)
and the client subcommands (`--version`, `list`, `pull`, `rm`, `show`, `ps`,
`create`, `cp`, `run`, `stop`). `build_release.py` next to it packages it exactly
like an official release archive (`bin/ollama` + `lib/ollama/`).

It runs no model and downloads nothing: its "registry" is a small built-in catalog
(overridable with OLLAMA_DOUBLE_REGISTRY) and pulled blobs are small placeholder
files whose manifest entries carry the catalog's nominal sizes. See README.md.

Environment read by the double:
  OLLAMA_HOST               bind address (server) / address to call (client)
  OLLAMA_MODELS             models directory, default $HOME/.ollama/models
  OLLAMA_KEEP_ALIVE         default keep-alive of loaded models, default 5m
  OLLAMA_NOPRUNE            do not prune unused blobs at startup or after pulls
  OLLAMA_DEBUG              enables DEBUG log lines
  OLLAMA_DOUBLE_REGISTRY    JSON file with the catalog of pullable models
  OLLAMA_DOUBLE_PULL_DELAY  seconds one model download takes, default 0.2
Every other OLLAMA_* variable is accepted and ignored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import http.server
import json
import math
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Rewritten by build_release.py; keep this exact one-line form.
VERSION = "0.0.0"

DEFAULT_PORT = 11434
DEFAULT_REGISTRY_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
DEFAULT_KEEP_ALIVE = 300.0
CPU_CONTEXT_LENGTH = 4096
MAX_GO_DURATION_NS = 2**63 - 1

MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"

CONNECT_ERROR = "could not connect to ollama server, run 'ollama serve' to start it"
INVALID_NAME = "invalid model name"
MANIFEST_MISSING = "pull model manifest: file does not exist"
CANNED_REPLY = "This is the Ollama test double: it runs no language model, so every answer is this fixed text."


class ApiError(Exception):
    """An error answered as `{"error": message}` with an HTTP status (500 unless given)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class CliError(Exception):
    """A client-side failure printed as `Error: <message>` with exit status 1."""


# ---------------------------------------------------------------------------
# Environment


def env(name: str) -> str:
    """Read a variable the way Ollama does: surrounding spaces, then quotes, trimmed."""
    return os.environ.get(name, "").strip().strip("\"'")


def env_bool(name: str) -> bool:
    """Go strconv.ParseBool semantics, where an unparsable non-empty value counts as true."""
    value = env(name)
    if not value:
        return False
    return value not in ("0", "f", "F", "false", "FALSE", "False")


@dataclass(frozen=True)
class HostAddr:
    """A parsed OLLAMA_HOST value."""

    scheme: str
    host: str
    port: int

    @property
    def is_wildcard(self) -> bool:
        """True when the server should listen on every interface."""
        return self.host in ("", "0.0.0.0", "::")

    def connect_host(self) -> str:
        """The address a client uses: wildcard binds map to loopback."""
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    def hostport(self, host: str | None = None) -> str:
        """`host:port`, with brackets around IPv6 literals."""
        value = self.host if host is None else host
        if ":" in value:
            value = f"[{value}]"
        return f"{value}:{self.port}"

    def url(self) -> str:
        """The base URL, as Ollama prints it in its server config line."""
        return f"{self.scheme}://{self.hostport()}"


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Split `host:port` like Go's net.SplitHostPort; None when it has no port part."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            return None
        return hostport[1:end], hostport[end + 2 :]
    host, sep, port = hostport.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port


def parse_host(raw: str) -> HostAddr:
    """Parse OLLAMA_HOST: `host`, `host:port`, `:port`, `scheme://host[:port][/path]`.

    A missing port means 11434; with an explicit `http://` it means 80 and with
    `https://` 443, as in Ollama's envconfig.Host.
    """
    value = raw.strip().strip("\"'")
    default_port = DEFAULT_PORT
    scheme, sep, hostport = value.partition("://")
    if not sep:
        scheme, hostport = "http", value
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    hostport = hostport.split("/", 1)[0]
    split = _split_host_port(hostport)
    if split is None:
        host, port_text = (hostport.strip("[]") or "127.0.0.1"), str(default_port)
    else:
        host, port_text = split
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError(port_text)
    except ValueError:
        port = default_port
    return HostAddr(scheme=scheme, host=host, port=port)


def models_dir() -> Path:
    """OLLAMA_MODELS, or `$HOME/.ollama/models`."""
    configured = env("OLLAMA_MODELS")
    if configured:
        return Path(configured)
    home = os.environ.get("HOME", "")
    if not home:
        raise CliError("$HOME is not defined")
    return Path(home) / ".ollama" / "models"


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Parse a Go duration (`5m`, `1h30m`, `-1s`, `0`) into seconds."""
    value = text.strip()
    sign = -1.0 if value.startswith("-") else 1.0
    value = value.lstrip("+-")
    if value == "0":
        return 0.0
    if not value:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if match is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNIT[match.group(2)]
        pos = match.end()
    return sign * total


def parse_keep_alive(value: Any, default: float) -> float:
    """Seconds a model stays loaded; negative means forever (returned as inf)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ApiError("json: cannot unmarshal bool into Go value of type api.Duration", 400)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            try:
                seconds = float(value)
            except ValueError as exc:
                raise ApiError(f'time: invalid duration "{value}"', 400) from exc
    else:
        raise ApiError("unsupported type for keep_alive", 400)
    return math.inf if seconds < 0 else seconds


def default_keep_alive() -> float:
    """OLLAMA_KEEP_ALIVE as seconds (Go duration or integer seconds), default 5m."""
    raw = env("OLLAMA_KEEP_ALIVE")
    if not raw:
        return DEFAULT_KEEP_ALIVE
    try:
        return parse_keep_alive(raw, DEFAULT_KEEP_ALIVE)
    except ApiError:
        return DEFAULT_KEEP_ALIVE


# ---------------------------------------------------------------------------
# Formatting in Go's style


def rfc3339(ns: int, *, utc: bool = False) -> str:
    """Go's time.RFC3339Nano for a Unix time in nanoseconds (local zone unless utc)."""
    seconds, frac = divmod(ns, 10**9)
    moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    if not utc:
        moment = moment.astimezone()
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += f".{frac:09d}".rstrip("0")
    return text + _zone(moment)


def _zone(moment: dt.datetime) -> str:
    offset = moment.utcoffset() or dt.timedelta(0)
    if not offset:
        return "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def expiry_ns(expires: float) -> int:
    """Unix nanoseconds of a keep-alive deadline; forever is now + the largest Go duration."""
    if math.isinf(expires):
        return time.time_ns() + MAX_GO_DURATION_NS
    return int(expires * 1e9)


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)

    def frac(value: int, unit: int) -> str:
        whole, part = divmod(value, unit)
        digits = len(str(unit)) - 1
        return f"{whole}.{part:0{digits}d}".rstrip("0") if part else str(whole)

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{frac(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{frac(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = frac(rest, 10**9) + "s"
    if hours:
        text = f"{hours}h{minutes}m{text}"
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def human_bytes(size: int) -> str:
    """Ollama's format.HumanBytes (decimal units)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            value = size / scale
            if value >= 10 or value == math.trunc(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def human_bytes2(size: int) -> str:
    """Ollama's format.HumanBytes2 (binary units, one decimal)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def human_duration(seconds: float) -> str:
    """Ollama's approximate duration wording ("About a minute", "3 days")."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def human_time(ns: int) -> str:
    """`3 minutes ago`, `4 minutes from now` or `Forever`, relative to now."""
    delta = (time.time_ns() - ns) / 1e9
    if delta / 3600 / 24 / 365 < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def memory_info() -> tuple[int, int]:
    """(total, available) bytes from /proc/meminfo; (0, 0) when unreadable."""
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[key] = int(parts[0]) * 1024
    except OSError:
        return 0, 0
    return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))


# ---------------------------------------------------------------------------
# Logging: Go slog text lines on stderr, gin request lines on stdout


class Logger:
    """Writes log lines shaped like Ollama's (slog text handler, gin access log)."""

    def __init__(self, debug: bool = False) -> None:
        self.debug_enabled = debug
        self._lock = threading.Lock()

    @staticmethod
    def _value(value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        if text == "" or any(ch in text for ch in ' ="') or not text.isprintable():
            return json.dumps(text, ensure_ascii=False)
        return text

    def log(self, level: str, source: str, msg: str, **attrs: Any) -> None:
        """One slog line: `time=… level=… source=… msg=… key=value…`."""
        if level == "DEBUG" and not self.debug_enabled:
            return
        now = dt.datetime.now().astimezone()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S") + f".{now.microsecond // 1000:03d}" + _zone(now)
        parts = [f"time={stamp}", f"level={level}", f"source={source}", f"msg={self._value(msg)}"]
        parts += [f"{key}={self._value(val)}" for key, val in attrs.items()]
        with self._lock:
            sys.stderr.write(" ".join(parts) + "\n")
            sys.stderr.flush()

    def info(self, source: str, msg: str, **attrs: Any) -> None:
        """An INFO line."""
        self.log("INFO", source, msg, **attrs)

    def debug(self, source: str, msg: str, **attrs: Any) -> None:
        """A DEBUG line, shown only with OLLAMA_DEBUG."""
        self.log("DEBUG", source, msg, **attrs)

    def request(self, status: int, elapsed_ns: int, client: str, method: str, path: str) -> None:
        """The gin access line printed for every request."""
        stamp = dt.datetime.now().strftime("%Y/%m/%d - %H:%M:%S")
        line = (
            f"[GIN] {stamp} | {status:3d} | {go_duration(elapsed_ns):>13} | {client:>15} | "
            f"{method:<7} {json.dumps(path)}"
        )
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


# ---------------------------------------------------------------------------
# Model names


def _valid_part(kind: str, part: str) -> bool:
    limit = 350 if kind == "host" else 80
    if not 1 <= len(part) <= limit:
        return False
    if not (part[0].isascii() and (part[0].isalnum() or part[0] == "_")):
        return False
    for ch in part[1:]:
        if ch in "_-":
            continue
        if ch == ".":
            if kind == "namespace":
                return False
            continue
        if ch == ":":
            if kind != "host":
                return False
            continue
        if not (ch.isascii() and ch.isalnum()):
            return False
    return True


@dataclass(frozen=True)
class ModelName:
    """`[host/][namespace/]model[:tag]` with Ollama's defaults filled in."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, raw: Any) -> ModelName:
        """Parse and validate a name; invalid names raise ApiError 400 "invalid model name"."""
        if not isinstance(raw, str):
            raise ApiError(INVALID_NAME, 400)
        text = raw.split("@", 1)[0]
        tag = ""
        if text.rfind(":") > text.rfind("/"):
            text, tag = text.rsplit(":", 1)
        pieces = text.split("/")
        model = pieces[-1]
        namespace = pieces[-2] if len(pieces) >= 2 else ""
        host = "/".join(pieces[:-2]) if len(pieces) >= 3 else ""
        if "://" in host:
            host = host.split("://", 1)[1]
        name = cls(host or DEFAULT_REGISTRY_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)
        checks = (("host", name.host), ("namespace", name.namespace), ("model", name.model), ("tag", name.tag))
        if not all(_valid_part(kind, part) for kind, part in checks):
            raise ApiError(INVALID_NAME, 400)
        return name

    def display(self) -> str:
        """Ollama's DisplayShortest: `model:tag`, `ns/model:tag` or `host/ns/model:tag`."""
        if self.host.lower() != DEFAULT_REGISTRY_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def key(self) -> str:
        """Case-insensitive identity (Ollama matches names case-insensitively)."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}".lower()

    def relpath(self) -> Path:
        """Manifest path below `$OLLAMA_MODELS/manifests`."""
        return Path(self.host, self.namespace, self.model, self.tag)


# ---------------------------------------------------------------------------
# The double's remote registry: a catalog of models that can be pulled

_LLAMA3_TEMPLATE = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)
_CHATML_TEMPLATE = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
_LLAMA_STOP = {"stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
_QWEN_STOP = {"stop": ["<|im_start|>", "<|im_end|>"]}


def _entry(size: int, params: str, family: str, **extra: Any) -> dict[str, Any]:
    return {"size": size, "parameter_size": params, "family": family, **extra}


# Nominal sizes and details resemble the public Ollama library; they are catalog data only.
DEFAULT_CATALOG: dict[str, dict[str, Any]] = {
    "llama3.2:latest": _entry(
        2019393189,
        "3.2B",
        "llama",
        capabilities=["completion", "tools"],
        context_length=131072,
        embedding_length=3072,
        template=_LLAMA3_TEMPLATE,
        parameters=_LLAMA_STOP,
        license="LLAMA 3.2 COMMUNITY LICENSE AGREEMENT (placeholder text served by the Ollama test double)",
    ),
    "llama3.2:3b": {"same_as": "llama3.2:latest"},
    "llama3.2:1b": _entry(
        1321098329,
        "1.2B",
        "llama",
        quantization_level="Q8_0",
        capabilities=["completion", "tools"],
        context_length=131072,
        embedding_length=2048,
        template=_LLAMA3_TEMPLATE,
        parameters=_LLAMA_STOP,
    ),
    "qwen2.5-coder:latest": {"same_as": "qwen2.5-coder:7b"},
    "qwen2.5-coder:1.5b": _entry(
        986062089,
        "1.5B",
        "qwen2",
        capabilities=["completion", "tools", "insert"],
        context_length=32768,
        embedding_length=1536,
        template=_CHATML_TEMPLATE,
        parameters=_QWEN_STOP,
    ),
    "qwen2.5-coder:7b": _entry(
        4683087332,
        "7.6B",
        "qwen2",
        capabilities=["completion", "tools", "insert"],
        context_length=32768,
        embedding_length=3584,
        template=_CHATML_TEMPLATE,
        parameters=_QWEN_STOP,
    ),
    # The sizes the default inventories pick by memory (chat 3b/14b, base models for autocomplete).
    "qwen2.5-coder:3b": _entry(
        1929912432,
        "3.1B",
        "qwen2",
        capabilities=["completion", "tools", "insert"],
        context_length=32768,
        embedding_length=2048,
        template=_CHATML_TEMPLATE,
        parameters=_QWEN_STOP,
    ),
    "qwen2.5-coder:14b": _entry(
        8988124069,
        "14.8B",
        "qwen2",
        capabilities=["completion", "tools", "insert"],
        context_length=32768,
        embedding_length=5120,
        template=_CHATML_TEMPLATE,
        parameters=_QWEN_STOP,
    ),
    "qwen2.5-coder:1.5b-base": _entry(
        986061892,
        "1.5B",
        "qwen2",
        capabilities=["completion", "insert"],
        context_length=32768,
        embedding_length=1536,
        template="{{ .Prompt }}",
    ),
    "qwen2.5-coder:7b-base": _entry(
        4683073184,
        "7.6B",
        "qwen2",
        capabilities=["completion", "insert"],
        context_length=32768,
        embedding_length=3584,
        template="{{ .Prompt }}",
    ),
    "qwen2.5-coder:32b": _entry(
        19851349856,
        "32.8B",
        "qwen2",
        capabilities=["completion", "tools", "insert"],
        context_length=32768,
        embedding_length=5120,
        template=_CHATML_TEMPLATE,
        parameters=_QWEN_STOP,
    ),
    "nomic-embed-text:latest": _entry(
        274302450,
        "137M",
        "nomic-bert",
        quantization_level="F16",
        capabilities=["embedding"],
        context_length=2048,
        embedding_length=768,
        template="{{ .Prompt }}",
        parameters={"num_ctx": 8192},
    ),
    "deepseek-r1:latest": {"same_as": "deepseek-r1:8b"},
    "deepseek-r1:8b": _entry(
        5225376047,
        "8.2B",
        "qwen3",
        capabilities=["completion", "thinking"],
        context_length=131072,
        embedding_length=4096,
        template=_CHATML_TEMPLATE,
        parameters={"temperature": 0.6, "top_p": 0.95},
    ),
    "qwen3:latest": {"same_as": "qwen3:8b"},
    "qwen3:0.6b": _entry(
        522653767,
        "751.63M",
        "qwen3",
        capabilities=["completion", "tools", "thinking"],
        context_length=40960,
        embedding_length=1024,
        template=_CHATML_TEMPLATE,
        parameters={"repeat_penalty": 1, "temperature": 0.6, "top_k": 20, "top_p": 0.95},
    ),
    "qwen3:8b": _entry(
        5225388164,
        "8.2B",
        "qwen3",
        capabilities=["completion", "tools", "thinking"],
        context_length=40960,
        embedding_length=4096,
        template=_CHATML_TEMPLATE,
        parameters={"repeat_penalty": 1, "temperature": 0.6, "top_k": 20, "top_p": 0.95},
    ),
    "qwen3:30b": _entry(
        18556701140,
        "30.5B",
        "qwen3moe",
        capabilities=["completion", "tools", "thinking"],
        context_length=262144,
        embedding_length=2048,
        template=_CHATML_TEMPLATE,
        parameters={"repeat_penalty": 1, "temperature": 0.6, "top_k": 20, "top_p": 0.95},
    ),
}


def _parameter_count(parameter_size: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([KMBT]?)", parameter_size.strip(), re.IGNORECASE)
    if not match:
        return 0
    scale = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}[match.group(2).upper()]
    return int(float(match.group(1)) * scale)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class RemoteModel:
    """A model as the catalog serves it: manifest bytes plus the blobs it names."""

    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def layers(self) -> list[dict[str, Any]]:
        """Manifest layers followed by the config, in download order."""
        parsed = json.loads(self.manifest)
        return [*parsed["layers"], parsed["config"]]


def build_remote_model(entry: dict[str, Any]) -> RemoteModel:
    """Deterministically turn a catalog entry into a manifest and small placeholder blobs."""
    family = str(entry.get("family", "llama"))
    capabilities = list(entry.get("capabilities", ["completion"]))
    parameter_size = str(entry.get("parameter_size", "1B"))
    quantization = str(entry.get("quantization_level", "Q4_K_M"))
    kv = {
        "general.architecture": family,
        "general.file_type": quantization,
        "general.parameter_count": int(entry.get("parameter_count") or _parameter_count(parameter_size)),
        "general.quantization_version": 2,
        f"{family}.context_length": int(entry.get("context_length", 4096)),
        f"{family}.embedding_length": int(entry.get("embedding_length", 2048)),
    }
    if "embedding" in capabilities:
        kv[f"{family}.pooling_type"] = 1
    weights = _compact({"ollama_test_double": "placeholder for GGUF weights; no model runs here", "kv": kv})
    blobs: dict[str, bytes] = {_sha256(weights): weights}
    extra: list[tuple[str, bytes]] = []
    if entry.get("template"):
        extra.append((MEDIA_TEMPLATE, str(entry["template"]).encode()))
    if entry.get("system"):
        extra.append((MEDIA_SYSTEM, str(entry["system"]).encode()))
    licenses = entry.get("license") or []
    for text in [licenses] if isinstance(licenses, str) else licenses:
        extra.append((MEDIA_LICENSE, str(text).encode()))
    if entry.get("parameters"):
        extra.append((MEDIA_PARAMS, _compact(entry["parameters"])))
    layers = [{"mediaType": media, "digest": _sha256(data), "size": len(data)} for media, data in extra]
    blobs.update({_sha256(data): data for _, data in extra})
    model_digest = _sha256(weights)
    config = {
        "model_format": str(entry.get("format", "gguf")),
        "model_family": family,
        "model_families": list(entry.get("families", [family])),
        "model_type": parameter_size,
        "file_type": quantization,
        "capabilities": capabilities,
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [model_digest, *(layer["digest"] for layer in layers)]},
    }
    config_bytes = _compact(config)
    blobs[_sha256(config_bytes)] = config_bytes
    rest = sum(layer["size"] for layer in layers) + len(config_bytes)
    nominal = max(int(entry.get("size", len(weights))) - rest, len(weights))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": MEDIA_MODEL, "digest": model_digest, "size": nominal}, *layers],
    }
    return RemoteModel(manifest=_compact(manifest), blobs=blobs)


class Registry:
    """The catalog of pullable models (built in, or from OLLAMA_DOUBLE_REGISTRY)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.catalog()  # fail early on a broken file

    def catalog(self) -> dict[str, dict[str, Any]]:
        """Entries keyed by ModelName.key(); the file is re-read so a test may move a tag."""
        raw: dict[str, Any] = dict(DEFAULT_CATALOG)
        if self.path:
            try:
                loaded = json.loads(Path(self.path).read_text())
            except (OSError, ValueError) as exc:
                raise CliError(f"OLLAMA_DOUBLE_REGISTRY {self.path}: {exc}") from exc
            if not isinstance(loaded, dict):
                raise CliError(f"OLLAMA_DOUBLE_REGISTRY {self.path}: expected a JSON object")
            if "models" in loaded and isinstance(loaded["models"], dict):
                if not loaded.get("include_defaults", True):
                    raw = {}
                raw.update(loaded["models"])
            else:
                raw.update(loaded)
        entries: dict[str, dict[str, Any]] = {}
        for name, entry in raw.items():
            try:
                for _ in range(10):
                    if not (isinstance(entry, dict) and "same_as" in entry):
                        break
                    entry = raw[entry["same_as"]]
                if not isinstance(entry, dict) or "same_as" in entry:
                    raise ValueError("entry must be an object")
                entries[ModelName.parse(name).key()] = dict(entry)
            except (KeyError, ValueError, ApiError) as exc:
                raise CliError(f"model catalog entry {name!r} is invalid: {exc}") from exc
        return entries

    def lookup(self, name: ModelName) -> RemoteModel | None:
        """The remote model for a name, or None when the registry has no such manifest."""
        entry = self.catalog().get(name.key())
        return None if entry is None else build_remote_model(entry)


# ---------------------------------------------------------------------------
# On-disk model store under OLLAMA_MODELS


@dataclass
class LocalModel:
    """A model present in the store, with its manifest and config read."""

    name: ModelName
    manifest: dict[str, Any]
    digest: str
    modified_ns: int
    config: dict[str, Any]

    @property
    def size(self) -> int:
        """Sum of layer sizes plus the config, as /api/tags reports it."""
        return sum(int(layer.get("size", 0)) for layer in self.manifest.get("layers", [])) + int(
            self.manifest.get("config", {}).get("size", 0)
        )

    def layers(self, media: str) -> list[dict[str, Any]]:
        """Manifest layers of one media type."""
        return [layer for layer in self.manifest.get("layers", []) if layer.get("mediaType") == media]

    def details(self, with_parent: bool = True) -> dict[str, Any]:
        """The `details` object of /api/tags, /api/show and /api/ps."""
        parent = ""
        if with_parent:
            parent = next((layer.get("from", "") for layer in self.layers(MEDIA_MODEL)), "")
        family = self.config.get("model_family", "")
        return {
            "parent_model": parent,
            "format": self.config.get("model_format", "gguf"),
            "family": family,
            "families": self.config.get("model_families") or ([family] if family else None),
            "parameter_size": self.config.get("model_type", ""),
            "quantization_level": self.config.get("file_type", ""),
        }

    @property
    def capabilities(self) -> list[str]:
        """Capabilities recorded in the config."""
        return list(self.config.get("capabilities") or ["completion"])


class Store:
    """Manifests and blobs laid out like Ollama's models directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.lock = threading.RLock()
        self._digest_locks: dict[str, threading.Lock] = {}
        self._digest_locks_guard = threading.Lock()

    def ensure(self) -> None:
        """Create the directories (fails like Ollama when the location is not writable)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)

    def digest_lock(self, digest: str) -> threading.Lock:
        """A lock serialising downloads of one blob."""
        with self._digest_locks_guard:
            return self._digest_locks.setdefault(digest, threading.Lock())

    def blob_path(self, digest: str) -> Path:
        """`blobs/sha256-<hex>` for `sha256:<hex>`."""
        if not re.fullmatch(r"sha256[:-][0-9a-f]{64}", digest):
            raise ApiError("invalid digest format", 400)
        return self.blobs / digest.replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        """True when the blob file exists."""
        return self.blob_path(digest).is_file()

    def write_blob(self, digest: str, data: bytes) -> None:
        """Write a blob through a `-partial` file, then rename, as Ollama does."""
        final = self.blob_path(digest)
        partial = final.with_name(final.name + "-partial")
        partial.write_bytes(data)
        os.chmod(partial, 0o644)
        os.replace(partial, final)

    def add_blob(self, data: bytes) -> tuple[str, bool]:
        """Store content, returning (digest, created)."""
        digest = _sha256(data)
        with self.digest_lock(digest):
            if self.has_blob(digest):
                os.utime(self.blob_path(digest))
                return digest, False
            self.write_blob(digest, data)
            return digest, True

    def read_blob(self, digest: str) -> bytes:
        """Blob content."""
        return self.blob_path(digest).read_bytes()

    def verify_blob(self, digest: str) -> None:
        """Raise the digest-mismatch error Ollama raises when content does not hash to its name."""
        actual = _sha256(self.read_blob(digest))
        if actual != digest:
            raise ApiError(f"digest mismatch, file must be downloaded again: want {digest}, got {actual}")

    def manifest_path(self, name: ModelName) -> Path:
        """Path of a model's manifest file."""
        return self.manifests / name.relpath()

    def all_names(self) -> list[ModelName]:
        """Every model with a manifest (host/namespace/model/tag directory depth)."""
        names: list[ModelName] = []
        if not self.manifests.is_dir():
            return names
        for path in self.manifests.glob("*/*/*/*"):
            if not path.is_file() or path.name.startswith("."):
                continue
            host, namespace, model, tag = path.relative_to(self.manifests).parts
            names.append(ModelName(host, namespace, model, tag))
        return names

    def existing(self, name: ModelName) -> ModelName | None:
        """The stored spelling of a name (matched case-insensitively), or None."""
        if self.manifest_path(name).is_file():
            return name
        key = name.key()
        return next((other for other in self.all_names() if other.key() == key), None)

    def load(self, name: ModelName) -> LocalModel | None:
        """Read a model's manifest and config, or None when it is not present."""
        found = self.existing(name)
        if found is None:
            return None
        path = self.manifest_path(found)
        try:
            raw = path.read_bytes()
            stat = path.stat()
        except FileNotFoundError:
            return None
        manifest = json.loads(raw)
        config: dict[str, Any] = {}
        config_digest = manifest.get("config", {}).get("digest", "")
        if config_digest:
            try:
                config = json.loads(self.read_blob(config_digest))
            except (OSError, ValueError):
                config = {}
        return LocalModel(found, manifest, hashlib.sha256(raw).hexdigest(), stat.st_mtime_ns, config)

    def write_manifest(self, name: ModelName, data: bytes) -> None:
        """Atomically write a manifest file."""
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def remove_manifest(self, name: ModelName) -> None:
        """Delete a manifest and the directories it leaves empty."""
        path = self.manifest_path(name)
        path.unlink()
        parent = path.parent
        while parent != self.manifests:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def referenced(self) -> set[str]:
        """Digests named by any manifest."""
        used: set[str] = set()
        for name in self.all_names():
            try:
                manifest = json.loads(self.manifest_path(name).read_bytes())
            except (OSError, ValueError):
                continue
            used.update(layer.get("digest", "") for layer in manifest.get("layers", []))
            used.add(manifest.get("config", {}).get("digest", ""))
        return used

    def remove_unreferenced(self, digests: set[str]) -> int:
        """Delete those of `digests` that no manifest still uses; returns how many went."""
        with self.lock:
            used = self.referenced()
            removed = 0
            for digest in digests - used:
                try:
                    self.blob_path(digest).unlink()
                    removed += 1
                except (FileNotFoundError, ApiError):
                    pass
            return removed

    def prune(self) -> tuple[int, int]:
        """Startup pruning: (total blobs, removed) — unused blobs and partial downloads."""
        with self.lock:
            files = [path for path in self.blobs.iterdir() if path.is_file()]
            used = {digest.replace(":", "-") for digest in self.referenced()}
            removed = 0
            for path in files:
                if path.name not in used:
                    path.unlink(missing_ok=True)
                    removed += 1
            for directory in sorted(self.manifests.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                if directory != self.manifests:
                    try:
                        directory.rmdir()
                    except OSError:
                        pass
            return len(files), removed


# ---------------------------------------------------------------------------
# Server-side operations


def format_param_value(value: Any) -> str:
    """A parameter value the way Go's %#v prints a JSON-decoded value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def parameters_text(params: dict[str, Any]) -> str:
    """/api/show `parameters`: one `name<padding to 30> value` line per value."""
    lines: list[str] = []
    for key in sorted(params):
        values = params[key] if isinstance(params[key], list) else [params[key]]
        lines += [f"{key:<30} {format_param_value(value)}" for value in values]
    return "\n".join(lines)


def _modelfile_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if (" " in value or not value) else value
    return format_param_value(value)


@dataclass
class Loaded:
    """A model the scheduler holds 'in memory' until `expires` (Unix seconds, inf = forever)."""

    name: ModelName
    expires: float


class Ops:
    """The API operations, independent of HTTP. Progress operations are generators."""

    def __init__(self, store: Store, registry: Registry, logger: Logger, pull_delay: float) -> None:
        self.store = store
        self.registry = registry
        self.logger = logger
        self.pull_delay = pull_delay
        self.keep_alive = default_keep_alive()
        self.loaded: dict[str, Loaded] = {}
        self.loaded_lock = threading.Lock()

    # pull -----------------------------------------------------------------

    def pull(self, name: ModelName) -> Iterator[dict[str, Any]]:
        """Ollama's PullModel: manifest, per-layer progress, verify, write, prune, success."""
        name = self.store.existing(name) or name
        old = self.store.load(name)
        delete: set[str] = set()
        if old is not None:
            delete = {layer["digest"] for layer in old.manifest.get("layers", [])}
            delete.add(old.manifest.get("config", {}).get("digest", ""))
        yield {"status": "pulling manifest"}
        remote = self.registry.lookup(name)
        if remote is None:
            raise ApiError(MANIFEST_MISSING)
        skip_verify: dict[str, bool] = {}
        for layer in remote.layers:
            hit = yield from self._download(layer, remote.blobs[layer["digest"]])
            skip_verify[layer["digest"]] = skip_verify.get(layer["digest"], True) and hit
        yield {"status": "verifying sha256 digest"}
        for digest, skip in skip_verify.items():
            if not skip:
                try:
                    self.store.verify_blob(digest)
                except ApiError:
                    self.store.blob_path(digest).unlink(missing_ok=True)
                    raise
        yield {"status": "writing manifest"}
        delete -= set(skip_verify)
        prune = bool(delete) and not env_bool("OLLAMA_NOPRUNE")
        with self.store.lock:
            for layer in remote.layers:  # a concurrent delete may have removed a shared blob
                if not self.store.has_blob(layer["digest"]):
                    self.store.write_blob(layer["digest"], remote.blobs[layer["digest"]])
            self.store.write_manifest(name, remote.manifest)
            if prune:
                self.store.remove_unreferenced(delete)
        if prune:
            yield {"status": "removing unused layers"}
        yield {"status": "success"}

    def _download(self, layer: dict[str, Any], data: bytes) -> Iterator[dict[str, Any]]:
        """Progress for one blob; returns True on a cache hit. Only the weights take time."""
        digest, total = layer["digest"], int(layer["size"])
        status = f"pulling {digest[7:19]}"
        with self.store.digest_lock(digest):
            if self.store.has_blob(digest):
                yield {"status": status, "digest": digest, "total": total, "completed": total}
                return True
            yield {"status": status, "digest": digest, "total": total}
            steps = 4 if layer.get("mediaType") == MEDIA_MODEL else 1
            for step in range(1, steps + 1):
                if steps > 1 and self.pull_delay > 0:
                    time.sleep(self.pull_delay / steps)
                if step == steps:
                    self.store.write_blob(digest, data)
                yield {"status": status, "digest": digest, "total": total, "completed": total * step // steps}
            self.logger.debug("download.go:1", "downloaded blob", digest=digest)
            return False

    # create ---------------------------------------------------------------

    def create(self, req: dict[str, Any], name: ModelName) -> Iterator[dict[str, Any]]:
        """Ollama's CreateHandler for `from` an existing (or pullable) model."""
        name = self.store.existing(name) or name
        old = self.store.load(name)
        source = _expect_str(req, "from", "CreateRequest")
        if not source:
            if req.get("files"):
                raise ApiError("the Ollama test double cannot create models from uploaded files", 400)
            raise ApiError("neither 'from' or 'files' was specified", 400)
        base_name = ModelName.parse(source)
        base = self.store.load(base_name)
        if base is None:  # Ollama pulls a missing base model first
            yield from self.pull(base_name)
            base = self.store.load(base_name)
            if base is None:
                raise ApiError(f"model '{source}' not found", 404)
        if req.get("quantize"):
            quant = str(base.config.get("file_type", "")).upper()
            if quant not in ("F16", "BF16", "F32"):
                raise ApiError("quantization is only supported for F16, BF16 and F32 models", 400)
            raise ApiError("the Ollama test double cannot quantize models", 400)
        requested = req.get("parameters") or {}
        if not isinstance(requested, dict):
            raise ApiError(
                f"json: cannot unmarshal {_go_type(requested)} into Go struct field CreateRequest.parameters "
                "of type map[string]interface {}",
                400,
            )
        with self.store.lock:  # new blobs stay unreferenced until the manifest lands: no pruning meanwhile
            statuses = self._write_created(name, base, req, dict(requested), old)
        for status in statuses:
            yield {"status": status}
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    def _write_created(
        self, name: ModelName, base: LocalModel, req: dict[str, Any], params: dict[str, Any], old: LocalModel | None
    ) -> list[str]:
        """Write the new layers, config and manifest of a created model; returns the layer status lines."""
        base_display = base.name.display()
        layers: list[dict[str, Any]] = [
            {"mediaType": layer["mediaType"], "digest": layer["digest"], "size": layer["size"], "from": base_display}
            for layer in base.manifest.get("layers", [])
        ]
        statuses = {layer["digest"]: f"using existing layer {layer['digest']}" for layer in layers}

        def replace(media: str, payloads: list[bytes]) -> None:
            layers[:] = [layer for layer in layers if layer["mediaType"] != media]
            for payload in payloads:
                digest, created = self.store.add_blob(payload)
                layers.append({"mediaType": media, "digest": digest, "size": len(payload)})
                statuses[digest] = f"{'creating new' if created else 'using existing'} layer {digest}"

        if req.get("template"):
            replace(MEDIA_TEMPLATE, [str(req["template"]).encode()])
        if req.get("system"):
            replace(MEDIA_SYSTEM, [str(req["system"]).encode()])
        license_value = req.get("license")
        if license_value:
            texts = [license_value] if isinstance(license_value, str) else list(license_value)
            replace(MEDIA_LICENSE, [str(text).encode() for text in texts])
        for layer in base.layers(MEDIA_PARAMS):  # the base model's parameters, unless overridden
            for key, value in json.loads(self.store.read_blob(layer["digest"])).items():
                params.setdefault(key, value)
        if params:
            replace(MEDIA_PARAMS, [_compact(params)])
        config = dict(base.config)
        config["rootfs"] = {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}
        config_bytes = _compact(config)
        config_digest, _ = self.store.add_blob(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layers,
        }
        self.store.write_manifest(name, _compact(manifest))
        if old is not None and not env_bool("OLLAMA_NOPRUNE"):
            stale = {layer["digest"] for layer in old.manifest.get("layers", [])}
            stale.add(old.manifest.get("config", {}).get("digest", ""))
            self.store.remove_unreferenced(stale)
        return [statuses[layer["digest"]] for layer in layers]

    # queries --------------------------------------------------------------

    def require(self, raw: str) -> LocalModel:
        """Load a model or raise 404 `model '<raw>' not found` (also for unparsable names)."""
        try:
            found = self.store.load(ModelName.parse(raw))
        except ApiError:
            found = None
        if found is None:
            raise ApiError(f"model '{raw}' not found", 404)
        return found

    def local_models(self) -> list[LocalModel]:
        """Local models, most recently modified first."""
        models = [model for model in map(self.store.load, self.store.all_names()) if model is not None]
        models.sort(key=lambda model: model.modified_ns, reverse=True)
        return models

    def tags(self) -> dict[str, Any]:
        """/api/tags."""
        models = self.local_models()
        return {
            "models": [
                {
                    "name": model.name.display(),
                    "model": model.name.display(),
                    "modified_at": rfc3339(model.modified_ns),
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details(),
                    "capabilities": model.capabilities,
                }
                for model in models
            ]
        }

    def show(self, raw: str) -> dict[str, Any]:
        """/api/show for a local model."""
        name = ModelName.parse(raw)
        model = self.store.load(name)
        if model is None:
            raise ApiError(f"model '{name.display()}' not found", 404)

        def texts(media: str) -> list[str]:
            return [self.store.read_blob(layer["digest"]).decode() for layer in model.layers(media)]

        params: dict[str, Any] = {}
        for text in texts(MEDIA_PARAMS):
            params.update(json.loads(text))
        template = "".join(texts(MEDIA_TEMPLATE))
        system = "".join(texts(MEDIA_SYSTEM))
        licenses = texts(MEDIA_LICENSE)
        kv: dict[str, Any] = {}
        for layer in model.layers(MEDIA_MODEL):
            try:
                kv = dict(json.loads(self.store.read_blob(layer["digest"])).get("kv", {}))
            except (OSError, ValueError, AttributeError):
                kv = {}
        weights = next((layer["digest"] for layer in model.layers(MEDIA_MODEL)), "")
        lines = [
            '# Modelfile generated by "ollama show"',
            "# To build a new Modelfile based on this, replace FROM with:",
            f"# FROM {model.name.display()}",
            "",
            f"FROM {self.store.blob_path(weights) if weights else model.name.display()}",
        ]
        if template:
            lines.append(f'TEMPLATE """{template}"""')
        if system:
            lines.append(f'SYSTEM """{system}"""')
        for key in sorted(params):
            values = params[key] if isinstance(params[key], list) else [params[key]]
            lines += [f"PARAMETER {key} {_modelfile_value(value)}" for value in values]
        lines += [f'LICENSE """{text}"""' for text in licenses]
        response: dict[str, Any] = {}
        if licenses:
            response["license"] = "\n".join(licenses)
        response["modelfile"] = "\n".join(lines) + "\n"
        if params:
            response["parameters"] = parameters_text(params)
        if template:
            response["template"] = template
        if system:
            response["system"] = system
        response["details"] = model.details()
        response["model_info"] = kv
        response["capabilities"] = model.capabilities
        response["modified_at"] = rfc3339(model.modified_ns)
        return response

    # scheduler ------------------------------------------------------------

    def _expire(self) -> None:
        now = time.time()
        with self.loaded_lock:
            for key in [key for key, item in self.loaded.items() if item.expires <= now]:
                del self.loaded[key]

    def schedule(self, model: LocalModel, keep_alive: Any) -> str:
        """Load (or with keep_alive 0 unload) a model; returns the done_reason."""
        seconds = parse_keep_alive(keep_alive, self.keep_alive)
        key = model.name.key()
        with self.loaded_lock:
            if seconds == 0:
                self.loaded.pop(key, None)
                return "unload"
            fresh = key not in self.loaded
            self.loaded[key] = Loaded(model.name, time.time() + seconds)
        if fresh:
            self.logger.info(
                "server.go:1", "loaded model on CPU (Ollama test double, no inference)", model=model.name.display()
            )
        return "load"

    def ps(self) -> dict[str, Any]:
        """/api/ps, longest remaining keep-alive first."""
        self._expire()
        with self.loaded_lock:
            items = list(self.loaded.values())
        rows = []
        for item in sorted(items, key=lambda loaded: loaded.expires, reverse=True):
            model = self.store.load(item.name)
            if model is None:
                continue
            rows.append(
                {
                    "name": model.name.display(),
                    "model": model.name.display(),
                    "size": model.size,
                    "digest": model.digest,
                    "details": model.details(with_parent=False),
                    "expires_at": rfc3339(expiry_ns(item.expires)),
                    "size_vram": 0,
                    "context_length": CPU_CONTEXT_LENGTH,
                }
            )
        return {"models": rows}


# ---------------------------------------------------------------------------
# HTTP front end


def _go_type(value: Any) -> str:
    return {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "value"
    )


def _expect_str(req: dict[str, Any], key: str, struct_name: str) -> str:
    value = req.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(
            f"json: cannot unmarshal {_go_type(value)} into Go struct field {struct_name}.{key} of type string", 400
        )
    return value


def _stream_flag(req: dict[str, Any]) -> bool:
    return req.get("stream") is not False


def _now_utc() -> str:
    return rfc3339(time.time_ns(), utc=True)


def _embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector derived from the text (not a real embedding)."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw += [(byte - 127.5) / 127.5 for byte in digest]
        counter += 1
    vector = raw[:dims]
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [round(value / norm, 6) for value in vector]


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes Ollama's API paths to Ops with Ollama's status codes and bodies."""

    protocol_version = "HTTP/1.1"
    server: DoubleHTTPServer

    ROUTES: dict[str, dict[str, str]] = {
        "/": {"GET": "root", "HEAD": "root"},
        "/api/version": {"GET": "version", "HEAD": "version"},
        "/api/tags": {"GET": "tags", "HEAD": "tags"},
        "/api/pull": {"POST": "pull"},
        "/api/show": {"POST": "show"},
        "/api/delete": {"DELETE": "delete"},
        "/api/create": {"POST": "create"},
        "/api/copy": {"POST": "copy"},
        "/api/ps": {"GET": "ps"},
        "/api/generate": {"POST": "generate"},
        "/api/chat": {"POST": "chat"},
        "/api/embed": {"POST": "embed"},
        "/api/embeddings": {"POST": "embeddings"},
        "/v1/models": {"GET": "v1_models"},
        "/v1/chat/completions": {"POST": "v1_chat_completions"},
    }

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Silence http.server's own access log; gin-style lines are written instead."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Status line and Date only (Go sends no Server header)."""
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())
        self._status = code

    # dispatch -------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        """GET."""
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        """HEAD."""
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        """POST."""
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        """DELETE."""
        self._dispatch("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        """PUT (no route uses it)."""
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        started = time.monotonic_ns()
        self._status = 0
        self._body_cache: bytes | None = None
        path = self.path.split("?", 1)[0]
        try:
            if path.startswith("/api/blobs/"):
                self._blob(method, path[len("/api/blobs/") :])
            elif path in self.ROUTES:
                action = self.ROUTES[path].get(method)
                if action is None:
                    self._drain()
                    self._text(405, "405 method not allowed")
                else:
                    getattr(self, f"h_{action}")()
            else:
                self._drain()
                self._text(404, "404 page not found")
        except ApiError as exc:
            self._drain()
            if not self._status:
                self._json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug must still answer like Go's 500, not drop the connection
            self.server.logger.log("ERROR", "routes.go:1", "request failed", path=path, error=repr(exc))
            self.close_connection = True
            if not self._status:
                self._json(500, {"error": str(exc) or type(exc).__name__})
        finally:
            client = self.client_address[0] if self.client_address else ""
            self.server.logger.request(self._status, time.monotonic_ns() - started, client, method, path)

    # bodies ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self._body_cache is not None:
            return self._body_cache
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError as exc:
                self.close_connection = True
                raise ApiError("invalid Content-Length", 400) from exc
            body = self.rfile.read(length) if length > 0 else b""
        self._body_cache = body
        return body

    def _drain(self) -> None:
        try:
            self._read_body()
        except (ApiError, ValueError, OSError):
            self.close_connection = True

    def _request_json(self) -> dict[str, Any]:
        body = self._read_body()
        if not body.strip():
            raise ApiError("missing request body", 400)
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise ApiError(f"invalid character in request body: {exc.msg}", 400) from exc
        if not isinstance(value, dict):
            raise ApiError(f"json: cannot unmarshal {_go_type(value)} into Go value of type object", 400)
        return value

    # responses ------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, content_type: str = "application/json; charset=utf-8") -> None:
        self._send(status, _compact(obj), content_type)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _empty(self, status: int = 200) -> None:
        self._send(status, b"", None)

    def _progress(self, updates: Iterator[dict[str, Any]], stream: bool) -> None:
        """Ollama's streamResponse / waitForStream over a generator of updates."""
        if not stream:
            latest: dict[str, Any] = {}
            try:
                for update in updates:
                    latest = update
            except ApiError as exc:
                self._json(exc.status, {"error": exc.message}, "application/json")
                return
            self._json(200, latest, "application/json")
            return
        chunked = self.request_version != "HTTP/1.0"
        started = False
        try:
            for update in updates:
                if not started:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    if chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.close_connection = True
                    self.end_headers()
                    started = True
                self._chunk(_compact(update) + b"\n", chunked)
        except ApiError as exc:
            if not started:
                self._json(exc.status, {"error": exc.message}, "application/json")
                return
            self._chunk(_compact({"error": exc.message}) + b"\n", chunked)
        except (BrokenPipeError, ConnectionResetError):
            if hasattr(updates, "close"):
                updates.close()
            raise
        if not started:
            self._json(200, {}, "application/x-ndjson")
            return
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes, chunked: bool) -> None:
        if chunked:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        else:
            self.wfile.write(data)
        self.wfile.flush()

    # handlers -------------------------------------------------------------

    @property
    def ops(self) -> Ops:
        """The server's operations."""
        return self.server.ops

    def h_root(self) -> None:
        """`Ollama is running`."""
        self._text(200, "Ollama is running")

    def h_version(self) -> None:
        """The double's version (the one build_release baked in)."""
        self._json(200, {"version": VERSION})

    def h_tags(self) -> None:
        """Local models."""
        self._json(200, self.ops.tags())

    def h_pull(self) -> None:
        """Pull from the catalog."""
        req = self._request_json()
        raw = _expect_str(req, "model", "PullRequest") or _expect_str(req, "name", "PullRequest")
        name = ModelName.parse(raw)
        self._progress(self.ops.pull(name), _stream_flag(req))

    def h_create(self) -> None:
        """Create a model from a local or pullable base."""
        req = self._request_json()
        raw = _expect_str(req, "model", "CreateRequest") or _expect_str(req, "name", "CreateRequest")
        name = ModelName.parse(raw)
        self._progress(self.ops.create(req, name), _stream_flag(req))

    def h_show(self) -> None:
        """Model definition and details."""
        req = self._request_json()
        raw = _expect_str(req, "model", "ShowRequest") or _expect_str(req, "name", "ShowRequest")
        if not raw:
            raise ApiError("model is required", 400)
        self._json(200, self.ops.show(raw))

    def h_delete(self) -> None:
        """Remove a manifest and the blobs only it used."""
        req = self._request_json()
        raw = _expect_str(req, "model", "DeleteRequest") or _expect_str(req, "name", "DeleteRequest")
        try:
            name = ModelName.parse(raw)
        except ApiError as exc:
            raise ApiError(f"name {json.dumps(raw)} is invalid", 400) from exc
        model = self.ops.store.load(name)
        if model is None:
            raise ApiError(f"model '{raw}' not found", 404)
        with self.ops.store.lock:
            self.ops.store.remove_manifest(model.name)
            digests = {layer["digest"] for layer in model.manifest.get("layers", [])}
            digests.add(model.manifest.get("config", {}).get("digest", ""))
            self.ops.store.remove_unreferenced(digests)
        with self.ops.loaded_lock:
            self.ops.loaded.pop(model.name.key(), None)
        self._empty()

    def h_copy(self) -> None:
        """Copy a manifest to a new name."""
        req = self._request_json()
        source = _expect_str(req, "source", "CopyRequest")
        destination = _expect_str(req, "destination", "CopyRequest")
        try:
            src = ModelName.parse(source)
        except ApiError as exc:
            raise ApiError(f"source {json.dumps(source)} is invalid", 400) from exc
        try:
            dst = ModelName.parse(destination)
        except ApiError as exc:
            raise ApiError(f"destination {json.dumps(destination)} is invalid", 400) from exc
        model = self.ops.store.load(src)
        if model is None:
            raise ApiError(f"model {json.dumps(source)} not found", 404)
        with self.ops.store.lock:
            dst = self.ops.store.existing(dst) or dst
            self.ops.store.write_manifest(dst, self.ops.store.manifest_path(model.name).read_bytes())
        self._empty()

    def h_ps(self) -> None:
        """Loaded models."""
        self._json(200, self.ops.ps())

    def _inference_model(
        self, req: dict[str, Any], struct_name: str, capability: str | None, verb: str
    ) -> tuple[str, LocalModel]:
        raw = _expect_str(req, "model", struct_name)
        model = self.ops.require(raw)
        if capability is not None and capability not in model.capabilities:
            raise ApiError(f'"{model.name.display()}" does not support {verb}', 400)
        return raw, model

    def _is_unload(self, req: dict[str, Any]) -> bool:
        return "keep_alive" in req and parse_keep_alive(req["keep_alive"], self.ops.keep_alive) == 0

    def h_generate(self) -> None:
        """Preload / unload (empty prompt) or a canned completion."""
        req = self._request_json()
        prompt = _expect_str(req, "prompt", "GenerateRequest")
        unload = not prompt and self._is_unload(req)
        raw, model = self._inference_model(req, "GenerateRequest", None if unload else "completion", "generate")
        if not prompt and not req.get("images"):
            reason = self.ops.schedule(model, req.get("keep_alive"))
            self._json(
                200, {"model": raw, "created_at": _now_utc(), "response": "", "done": True, "done_reason": reason}
            )
            return
        self.ops.schedule(model, req.get("keep_alive"))
        self._answer(raw, req, lambda piece, done: {"response": piece}, len(prompt.split()))

    def h_chat(self) -> None:
        """Preload / unload (no messages) or a canned assistant message."""
        req = self._request_json()
        messages = req.get("messages") or []
        unload = not messages and self._is_unload(req)
        raw, model = self._inference_model(req, "ChatRequest", None if unload else "completion", "chat")
        if not messages:
            reason = self.ops.schedule(model, req.get("keep_alive"))
            self._json(
                200,
                {
                    "model": raw,
                    "created_at": _now_utc(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": reason,
                    "done": True,
                },
            )
            return
        self.ops.schedule(model, req.get("keep_alive"))
        words = sum(len(str(message.get("content", "")).split()) for message in messages if isinstance(message, dict))
        self._answer(raw, req, lambda piece, done: {"message": {"role": "assistant", "content": piece}}, words)

    def _answer(self, raw: str, req: dict[str, Any], shape: Any, prompt_tokens: int) -> None:
        pieces = [word + " " for word in CANNED_REPLY.split(" ")]
        pieces[-1] = pieces[-1].rstrip()
        metrics = {
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": max(prompt_tokens, 1),
            "prompt_eval_duration": 100_000,
            "eval_count": len(pieces),
            "eval_duration": 800_000,
        }

        def updates() -> Iterator[dict[str, Any]]:
            for piece in pieces:
                yield {"model": raw, "created_at": _now_utc(), **shape(piece, False), "done": False}
            yield {
                "model": raw,
                "created_at": _now_utc(),
                **shape("", True),
                "done": True,
                "done_reason": "stop",
                **metrics,
            }

        if _stream_flag(req):
            self._progress(updates(), True)
        else:
            final = {"model": raw, "created_at": _now_utc(), **shape("".join(pieces), True)}
            self._json(200, {**final, "done": True, "done_reason": "stop", **metrics})

    def h_embed(self) -> None:
        """Deterministic unit vectors for embedding-capable models."""
        req = self._request_json()
        raw, model = self._inference_model(req, "EmbedRequest", "embedding", "embeddings")
        inputs = req.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(item) for item in inputs]
        self.ops.schedule(model, req.get("keep_alive"))
        dims = int(self._dims(model))
        self._json(
            200,
            {
                "model": raw,
                "embeddings": [_embedding(text, dims) for text in texts],
                "total_duration": 1_000_000,
                "load_duration": 100_000,
                "prompt_eval_count": sum(len(text.split()) for text in texts),
            },
        )

    def h_embeddings(self) -> None:
        """The legacy single-vector endpoint."""
        req = self._request_json()
        _, model = self._inference_model(req, "EmbeddingRequest", "embedding", "embeddings")
        self.ops.schedule(model, req.get("keep_alive"))
        self._json(200, {"embedding": _embedding(_expect_str(req, "prompt", "EmbeddingRequest"), self._dims(model))})

    def _dims(self, model: LocalModel) -> int:
        info = self.ops.show(model.name.display()).get("model_info", {})
        family = model.config.get("model_family", "")
        return int(info.get(f"{family}.embedding_length", 768))

    def h_v1_chat_completions(self) -> None:
        """OpenAI-compatible chat (what Continue's ollama provider calls): the canned reply, as one
        chat.completion or as server-sent chunks ending with `data: [DONE]`."""
        req = self._request_json()
        raw, model = self._inference_model(req, "ChatCompletionRequest", "completion", "chat")
        self.ops.schedule(model, req.get("keep_alive"))
        base = {"id": "chatcmpl-" + secrets.token_hex(4), "created": int(time.time()), "model": raw,
                "system_fingerprint": "fp_ollama"}
        if not req.get("stream"):
            words = len(CANNED_REPLY.split())
            self._json(200, {**base, "object": "chat.completion",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": CANNED_REPLY},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1}})
            return
        pieces = [word + " " for word in CANNED_REPLY.split(" ")]
        pieces[-1] = pieces[-1].rstrip()
        chunks = [(piece, None) for piece in pieces] + [("", "stop")]
        events = [{**base, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": reason}]}
                  for piece, reason in chunks]
        body = b"".join(b"data: " + _compact(event) + b"\n\n" for event in events) + b"data: [DONE]\n\n"
        self._send(200, body, "text/event-stream")

    def h_v1_models(self) -> None:
        """OpenAI-compatible model list."""
        data = [
            {
                "id": model.name.display(),
                "object": "model",
                "created": model.modified_ns // 10**9,
                "owned_by": model.name.namespace,
            }
            for model in self.ops.local_models()
        ]
        self._json(200, {"object": "list", "data": data})

    def _blob(self, method: str, digest: str) -> None:
        if method == "HEAD":
            self._empty(200 if self.ops.store.has_blob(digest) else 404)
            return
        if method != "POST":
            self._drain()
            self._text(405, "405 method not allowed")
            return
        body = self._read_body()
        path = self.ops.store.blob_path(digest)
        if path.is_file():
            self._empty(200)
            return
        if _sha256(body) != digest.replace("-", ":", 1):
            raise ApiError("digest mismatch", 400)
        self.ops.store.add_blob(body)
        self._empty(201)


class DoubleHTTPServer(http.server.ThreadingHTTPServer):
    """Threaded server; with a wildcard bind it listens dual-stack like Go."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, ops: Ops, logger: Logger) -> None:
        self.address_family = family
        self.ops = ops
        self.logger = logger
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        """Allow IPv4 clients on a `::` socket."""
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


# ---------------------------------------------------------------------------
# Keypair (Ollama creates ~/.ollama/id_ed25519 when `serve` starts)

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _recover_x(y: int, sign: int) -> int:
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P:
        x = x * _SQRT_M1 % _P
    return _P - x if x & 1 != sign else x


_BASE_Y = 4 * pow(5, _P - 2, _P) % _P
_BASE_X = _recover_x(_BASE_Y, 0)


def _point_add(p: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def ed25519_public_key(seed: bytes) -> bytes:
    """The Ed25519 public key of a 32-byte seed (RFC 8032 §5.1.5)."""
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    result = (0, 1, 1, 0)
    point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % _P)
    while scalar:
        if scalar & 1:
            result = _point_add(result, point)
        point = _point_add(point, point)
        scalar >>= 1
    x, y, z, _ = result
    inverse = pow(z, _P - 2, _P)
    x, y = x * inverse % _P, y * inverse % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def openssh_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(private key PEM in openssh-key-v1 format, authorized_keys public line)."""
    public = ed25519_public_key(seed)
    public_blob = _ssh_string(b"ssh-ed25519") + _ssh_string(public)
    check = secrets.token_bytes(4)
    private = check + check + _ssh_string(b"ssh-ed25519") + _ssh_string(public)
    private += _ssh_string(seed + public) + _ssh_string(b"")
    private += bytes(range(1, 1 + (-len(private)) % 8))
    blob = b"openssh-key-v1\0" + _ssh_string(b"none") + _ssh_string(b"none") + _ssh_string(b"")
    blob += struct.pack(">I", 1) + _ssh_string(public_blob) + _ssh_string(private)
    encoded = base64.b64encode(blob).decode()
    body = "\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    pem = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n"
    return pem.encode(), b"ssh-ed25519 " + base64.b64encode(public_blob) + b"\n"


def initialize_keypair() -> None:
    """Create `$HOME/.ollama/id_ed25519{,.pub}` when missing, printing what Ollama prints."""
    home = os.environ.get("HOME", "")
    if not home:
        raise CliError("$HOME is not defined")
    private_path = Path(home) / ".ollama" / "id_ed25519"
    if private_path.exists():
        return
    print(f"Couldn't find '{private_path}'. Generating new private key.", flush=True)
    pem, public_line = openssh_keypair(secrets.token_bytes(32))
    try:
        private_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise CliError(f"could not create directory mkdir {exc.filename or private_path.parent}: {reason}") from exc
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public_path = private_path.with_name("id_ed25519.pub")
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(public_line)
    except OSError as exc:
        raise CliError(f"open {exc.filename or private_path}: {(exc.strerror or str(exc)).lower()}") from exc
    print(f"Your new public key is: \n\n{public_line.decode()}", flush=True)


# ---------------------------------------------------------------------------
# serve


def serve() -> int:
    """`ollama serve`: the API until SIGTERM/SIGINT."""
    initialize_keypair()
    logger = Logger(debug=env_bool("OLLAMA_DEBUG"))
    addr = parse_host(env("OLLAMA_HOST"))
    root = models_dir()
    delay_text = os.environ.get("OLLAMA_DOUBLE_PULL_DELAY", "0.2")
    try:
        delay = max(float(delay_text), 0.0)
    except ValueError as exc:
        raise CliError(f"OLLAMA_DOUBLE_PULL_DELAY: not a number of seconds: {delay_text!r}") from exc
    registry = Registry(os.environ.get("OLLAMA_DOUBLE_REGISTRY") or None)
    store = Store(root)

    candidates: list[tuple[socket.AddressFamily, str]]
    if addr.is_wildcard:
        candidates = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
    elif ":" in addr.host:
        candidates = [(socket.AF_INET6, addr.host)]
    else:
        candidates = [(socket.AF_INET, addr.host)]
    ops = Ops(store, registry, logger, delay)
    httpd: DoubleHTTPServer | None = None
    last_error: OSError | None = None
    for family, host in candidates:
        try:
            httpd = DoubleHTTPServer((host, addr.port), family, ops, logger)
            break
        except OSError as exc:
            last_error = exc
            if exc.errno == 98:  # EADDRINUSE: another server is there, do not try other families
                break
    if httpd is None:
        reason = (last_error.strerror or str(last_error)).lower() if last_error else "unknown error"
        raise CliError(f"listen tcp {addr.hostport()}: bind: {reason}")

    env_view = {
        "HTTPS_PROXY": os.environ.get("HTTPS_PROXY", ""),
        "HTTP_PROXY": os.environ.get("HTTP_PROXY", ""),
        "NO_PROXY": os.environ.get("NO_PROXY", ""),
        "OLLAMA_CONTEXT_LENGTH": env("OLLAMA_CONTEXT_LENGTH") or "0",
        "OLLAMA_DEBUG": "DEBUG" if logger.debug_enabled else "INFO",
        "OLLAMA_FLASH_ATTENTION": env("OLLAMA_FLASH_ATTENTION") or "false",
        "OLLAMA_HOST": addr.url(),
        "OLLAMA_KEEP_ALIVE": go_duration(int(ops.keep_alive * 1e9)) if math.isfinite(ops.keep_alive) else "-1ns",
        "OLLAMA_KV_CACHE_TYPE": env("OLLAMA_KV_CACHE_TYPE"),
        "OLLAMA_MAX_LOADED_MODELS": env("OLLAMA_MAX_LOADED_MODELS") or "0",
        "OLLAMA_MAX_QUEUE": env("OLLAMA_MAX_QUEUE") or "512",
        "OLLAMA_MODELS": str(root),
        "OLLAMA_NOPRUNE": str(env_bool("OLLAMA_NOPRUNE")).lower(),
        "OLLAMA_NUM_PARALLEL": env("OLLAMA_NUM_PARALLEL") or "1",
        "OLLAMA_ORIGINS": "[" + " ".join(filter(None, env("OLLAMA_ORIGINS").split(","))) + "]",
    }
    logger.info("routes.go:1", "server config", env="map[" + " ".join(f"{k}:{v}" for k, v in env_view.items()) + "]")
    logger.info("routes.go:1", "Ollama test double: no inference, models come from the built-in catalog")
    try:
        store.ensure()
    except OSError as exc:
        httpd.server_close()
        raise CliError(f"mkdir {exc.filename or root}: {(exc.strerror or str(exc)).lower()}") from exc
    if env_bool("OLLAMA_NOPRUNE"):
        logger.info("images.go:1", "total blobs: %d" % sum(1 for _ in store.blobs.iterdir()))
    else:
        total, removed = store.prune()
        logger.info("images.go:1", f"total blobs: {total}")
        logger.info("images.go:1", f"total unused blobs removed: {removed}")
    bound = httpd.server_address
    shown = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    logger.info("routes.go:1", f"Listening on {shown} (version {VERSION})")
    logger.info("runner.go:1", "discovering available GPUs...")
    total_mem, free_mem = memory_info()
    logger.info(
        "types.go:1",
        "inference compute",
        id="cpu",
        library="cpu",
        compute="",
        name="cpu",
        description="cpu",
        libdirs="ollama",
        driver="",
        pci_id="",
        type="",
        total=human_bytes2(total_mem),
        available=human_bytes2(free_mem),
    )
    logger.info("routes.go:1", "vram-based default context", total_vram="0 B", default_num_ctx=CPU_CONTEXT_LENGTH)

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        httpd.serve_forever(poll_interval=0.1)
    finally:
        httpd.server_close()
    return 0


# ---------------------------------------------------------------------------
# Client


class Client:
    """Calls the server at OLLAMA_HOST like Ollama's api.Client."""

    def __init__(self) -> None:
        self.addr = parse_host(env("OLLAMA_HOST"))

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        host = self.addr.connect_host()
        if self.addr.scheme == "https":
            return http.client.HTTPSConnection(host, self.addr.port, timeout=timeout)
        return http.client.HTTPConnection(host, self.addr.port, timeout=timeout)

    def _open(self, method: str, path: str, body: Any, timeout: float | None) -> http.client.HTTPResponse:
        conn = self._connection(timeout)
        payload = None if body is None else _compact(body)
        headers = {"Accept": "application/x-ndjson", "User-Agent": f"ollama/{VERSION} (linux) Go/go1.24"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            return conn.getresponse()
        except OSError as exc:
            conn.close()
            raise CliError(CONNECT_ERROR) from exc

    @staticmethod
    def _error(status: int, data: bytes) -> CliError:
        try:
            message = json.loads(data).get("error") or ""
        except (ValueError, AttributeError):
            message = data.decode(errors="replace").strip()
        return CliError(message or f"{status} {http.client.responses.get(status, '')}".strip())

    def call(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """One request; JSON result (or None for an empty body). Non-2xx raises CliError."""
        response = self._open(method, path, body, timeout)
        data = response.read()
        if response.status >= 400:
            raise self._error(response.status, data)
        return json.loads(data) if data.strip() else None

    def stream(self, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """NDJSON updates; an in-band `{"error": …}` raises CliError."""
        response = self._open("POST", path, body, None)
        if response.status >= 400:
            raise self._error(response.status, response.read())
        try:
            for line in response:
                if not line.strip():
                    continue
                update = json.loads(line)
                if "error" in update:
                    raise CliError(str(update["error"]))
                yield update
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"unexpected EOF ({exc})") from exc

    def heartbeat(self) -> None:
        """HEAD / or raise the could-not-connect error."""
        self.call("HEAD", "/", timeout=10)


# ---------------------------------------------------------------------------
# CLI

USAGE = """Large language model runner (Ollama test double: no inference, see README.md)

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  create      Create a model
  show        Show information for a model
  run         Run a model
  stop        Stop a running model
  pull        Pull a model from a registry
  list        List models
  ps          List running models
  cp          Copy a model
  rm          Remove a model
  help        Help about any command

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information

Use "ollama [command] --help" for more information about a command.
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by four spaces, as Ollama's tablewriter prints them."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["".join(cell.ljust(width) + "    " for cell, width in zip(row, widths)) for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def _split_flags(
    args: list[str], flags: set[str], valued: frozenset[str] | set[str] = frozenset()
) -> tuple[list[str], dict[str, Any]]:
    positional: list[str] = []
    options: dict[str, Any] = {}
    items = iter(args)
    for arg in items:
        key = arg.split("=", 1)[0]
        if key in valued:
            options[key] = arg.split("=", 1)[1] if "=" in arg else next(items, "")
        elif arg in flags:
            options[arg] = True
        elif arg.startswith("-") and arg != "-":
            raise CliError(f"unknown flag: {arg}")
        else:
            positional.append(arg)
    return positional, options


def _exact_args(args: list[str], count: int) -> None:
    if len(args) != count:
        raise CliError(f"accepts {count} arg(s), received {len(args)}")


def cmd_version() -> int:
    """`ollama --version`."""
    server_version = ""
    try:
        result = Client().call("GET", "/api/version", timeout=10)
        server_version = str((result or {}).get("version", ""))
    except CliError:
        print("Warning: could not connect to a running Ollama instance")
    if server_version:
        print(f"ollama version is {server_version}")
    if server_version != VERSION:
        print(f"Warning: client version is {VERSION}")
    return 0


def cmd_list(args: list[str]) -> int:
    """`ollama list [prefix]`."""
    positional, _ = _split_flags(args, set())
    client = Client()
    client.heartbeat()
    models = client.call("GET", "/api/tags")["models"]
    prefix = positional[0].lower() if positional else ""
    rows = [
        [m["name"], m["digest"][:12], human_bytes(int(m["size"])), human_time(_parse_rfc3339_ns(m["modified_at"]))]
        for m in models
        if m["name"].lower().startswith(prefix)
    ]
    sys.stdout.write(_table(["NAME", "ID", "SIZE", "MODIFIED"], rows))
    return 0


def _parse_rfc3339_ns(text: str) -> int:
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return 0
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    moment = dt.datetime.fromisoformat(match.group(1) + zone)
    fraction = (match.group(2) or "").ljust(9, "0")[:9]
    return int(moment.timestamp()) * 10**9 + int(fraction or 0)


def cmd_ps(args: list[str]) -> int:
    """`ollama ps`."""
    positional, _ = _split_flags(args, set())
    client = Client()
    client.heartbeat()
    rows = []
    for m in client.call("GET", "/api/ps")["models"]:
        if positional and not m["name"].startswith(positional[0]):
            continue
        expires = _parse_rfc3339_ns(m["expires_at"])
        until = "Stopping..." if expires < time.time_ns() else human_time(expires)
        processor = "100% CPU" if not m.get("size_vram") else "100% GPU"
        rows.append(
            [
                m["name"],
                m["digest"][:12],
                human_bytes(int(m["size"])),
                processor,
                str(m.get("context_length", 0)),
                until,
            ]
        )
    sys.stdout.write(_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows))
    return 0


def _render_progress(updates: Iterator[dict[str, Any]]) -> None:
    """Print each status once on stderr; layer lines when a layer completes."""
    last = ""
    for update in updates:
        status = str(update.get("status", ""))
        total, completed = int(update.get("total") or 0), int(update.get("completed") or 0)
        if update.get("digest"):
            if total and completed >= total and status != last:
                sys.stderr.write(f"{status}: 100% ▕{'█' * 18}▏ {human_bytes(total)}\n")
                last = status
            continue
        if status != last:
            sys.stderr.write(status + "\n")
            last = status
        sys.stderr.flush()


def cmd_pull(args: list[str]) -> int:
    """`ollama pull NAME`."""
    positional, options = _split_flags(args, {"--insecure"})
    _exact_args(positional, 1)
    client = Client()
    client.heartbeat()
    _render_progress(client.stream("/api/pull", {"model": positional[0], "insecure": bool(options)}))
    return 0


def cmd_rm(args: list[str]) -> int:
    """`ollama rm NAME...`: unload, then delete."""
    positional, _ = _split_flags(args, set())
    if not positional:
        raise CliError("requires at least 1 arg(s), only received 0")
    client = Client()
    client.heartbeat()
    for name in positional:
        try:
            client.call("POST", "/api/generate", {"model": name, "keep_alive": 0})
        except CliError as exc:
            if "not found" not in str(exc).lower():
                sys.stderr.write(f"Warning: unable to stop model '{name}'\n")
        client.call("DELETE", "/api/delete", {"name": name})
        print(f"deleted '{name}'")
    return 0


def cmd_show(args: list[str]) -> int:
    """`ollama show NAME [--modelfile|--parameters|--template|--system|--license]`."""
    kinds = {"--license", "--modelfile", "--parameters", "--system", "--template"}
    positional, options = _split_flags(args, kinds | {"--verbose", "-v"})
    _exact_args(positional, 1)
    chosen = [flag for flag in options if flag in kinds]
    if len(chosen) > 1:
        raise CliError(
            "only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can be specified"
        )
    client = Client()
    client.heartbeat()
    resp = client.call("POST", "/api/show", {"name": positional[0]})
    if chosen:
        key = chosen[0][2:]
        text = str(resp.get(key, ""))
        sys.stdout.write(text + ("\n" if key in ("license", "modelfile", "parameters") else ""))
        return 0
    details, info = resp.get("details", {}), resp.get("model_info", {})
    arch = info.get("general.architecture", details.get("family", ""))
    model_rows = [["architecture", str(arch)], ["parameters", str(details.get("parameter_size", ""))]]
    for label, key in (("context length", "context_length"), ("embedding length", "embedding_length")):
        if f"{arch}.{key}" in info:
            model_rows.append([label, str(info[f"{arch}.{key}"])])
    model_rows.append(["quantization", str(details.get("quantization_level", ""))])
    sections: list[tuple[str, list[list[str]]]] = [("Model", model_rows)]
    sections.append(("Capabilities", [[cap] for cap in resp.get("capabilities", [])]))
    if resp.get("parameters"):
        rows = []
        for line in str(resp["parameters"]).splitlines():
            key, _, value = line.partition(" ")
            rows.append([key, value.strip()])
        sections.append(("Parameters", rows))
    if resp.get("system"):
        sections.append(("System", [[line] for line in str(resp["system"]).splitlines()[:2]]))
    if resp.get("license"):
        sections.append(("License", [[line] for line in str(resp["license"]).splitlines()[:2]]))
    out = []
    for title, rows in sections:
        out.append(f"  {title}")
        width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
        out += ["    " + "".join(cell.ljust(w) + "    " for cell, w in zip(row, width)) for row in rows]
        out.append("")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def cmd_cp(args: list[str]) -> int:
    """`ollama cp SOURCE DESTINATION`."""
    positional, _ = _split_flags(args, set())
    _exact_args(positional, 2)
    client = Client()
    client.heartbeat()
    client.call("POST", "/api/copy", {"source": positional[0], "destination": positional[1]})
    print(f"copied '{positional[0]}' to '{positional[1]}'")
    return 0


def cmd_stop(args: list[str]) -> int:
    """`ollama stop MODEL`."""
    positional, _ = _split_flags(args, set())
    _exact_args(positional, 1)
    client = Client()
    client.heartbeat()
    running = [m["name"] for m in client.call("GET", "/api/ps")["models"]]
    wanted = ModelName.parse(positional[0]).display() if positional[0] else ""
    if wanted not in running:
        raise CliError(f'couldn\'t find model "{positional[0]}" to stop')
    client.call("POST", "/api/generate", {"model": positional[0], "keep_alive": 0})
    return 0


def cmd_run(args: list[str]) -> int:
    """`ollama run MODEL [PROMPT]`: pulls when missing, prints the canned reply."""
    positional, options = _split_flags(args, {"--verbose", "--nowordwrap", "--insecure"}, {"--keepalive", "--format"})
    if not positional:
        raise CliError("requires at least 1 arg(s), only received 0")
    client = Client()
    client.heartbeat()
    name = positional[0]
    try:
        client.call("POST", "/api/show", {"name": name})
    except CliError as exc:
        if "not found" not in str(exc):
            raise
        _render_progress(client.stream("/api/pull", {"model": name}))
    prompt = " ".join(positional[1:])
    if not prompt and not sys.stdin.isatty():
        prompt = sys.stdin.read()
    body: dict[str, Any] = {"model": name, "prompt": prompt}
    if "--keepalive" in options:
        body["keep_alive"] = options["--keepalive"]
    if not prompt:
        client.call("POST", "/api/generate", body)
        raise CliError("the Ollama test double has no interactive mode; pass a prompt")
    for update in client.stream("/api/generate", body):
        sys.stdout.write(str(update.get("response", "")))
        sys.stdout.flush()
    sys.stdout.write("\n\n")
    return 0


_INT_PARAMS = {
    "num_ctx",
    "num_predict",
    "num_keep",
    "seed",
    "top_k",
    "repeat_last_n",
    "num_batch",
    "num_gpu",
    "num_thread",
    "main_gpu",
    "mirostat",
}
_FLOAT_PARAMS = {
    "temperature",
    "top_p",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "typical_p",
    "tfs_z",
    "mirostat_tau",
    "mirostat_eta",
}
_BOOL_PARAMS = {"penalize_newline", "use_mmap", "numa", "low_vram", "vocab_only", "use_mlock"}


def _typed_parameter(key: str, raw: str) -> Any:
    if key in _INT_PARAMS:
        return int(raw)
    if key in _FLOAT_PARAMS:
        return float(raw)
    if key in _BOOL_PARAMS:
        return raw.lower() in ("true", "1")
    raise CliError(f"unknown parameter '{key}'")


def parse_modelfile(text: str) -> dict[str, Any]:
    """The subset of Modelfile syntax the double understands, as an /api/create body."""
    body: dict[str, Any] = {}
    params: dict[str, Any] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.startswith('"""'):
            value = rest[3:]
            while '"""' not in value:
                if index >= len(lines):
                    raise CliError("unterminated multiline string")
                value += "\n" + lines[index]
                index += 1
            value = value[: value.index('"""')]
        else:
            value = rest
        command = command.upper()
        if command == "FROM":
            body["from"] = value.strip('"')
        elif command in ("SYSTEM", "TEMPLATE", "LICENSE"):
            body[command.lower()] = value
        elif command == "PARAMETER":
            key, _, raw = value.partition(" ")
            raw = raw.strip().strip('"')
            if key == "stop":
                params.setdefault("stop", []).append(raw)
            else:
                params[key] = _typed_parameter(key, raw)
        else:
            raise CliError(
                f"unknown Modelfile command {command!r} (the test double knows FROM, PARAMETER, "
                "SYSTEM, TEMPLATE, LICENSE)"
            )
    if params:
        body["parameters"] = params
    if "from" not in body:
        raise CliError("no FROM line")
    return body


def cmd_create(args: list[str]) -> int:
    """`ollama create NAME [-f Modelfile]`."""
    positional, options = _split_flags(args, set(), {"-f", "--file", "-q", "--quantize"})
    _exact_args(positional, 1)
    path = Path(options.get("-f") or options.get("--file") or "Modelfile")
    try:
        body = parse_modelfile(path.read_text())
    except FileNotFoundError as exc:
        raise CliError(f"open {path}: no such file or directory") from exc
    body["model"] = positional[0]
    quantize = options.get("-q") or options.get("--quantize")
    if quantize:
        body["quantize"] = quantize
    client = Client()
    client.heartbeat()
    sys.stderr.write("gathering model components \n")
    _render_progress(client.stream("/api/create", body))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: dispatch like Ollama's cobra root command."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "list": cmd_list,
        "ls": cmd_list,
        "ps": cmd_ps,
        "pull": cmd_pull,
        "rm": cmd_rm,
        "show": cmd_show,
        "cp": cmd_cp,
        "stop": cmd_stop,
        "run": cmd_run,
        "create": cmd_create,
    }
    try:
        if not args or args[0] in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0
        if args[0] in ("-v", "--version"):
            return cmd_version()
        command, rest = args[0], args[1:]
        if rest and rest[0] in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        if command in ("serve", "start"):
            return serve()
        if command in commands:
            return commands[command](rest)
        raise CliError(f'unknown command "{command}" for "ollama"')
    except CliError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    except ApiError as exc:
        sys.stderr.write(f"Error: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
