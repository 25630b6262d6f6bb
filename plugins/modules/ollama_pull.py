#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Pull several models into a running Ollama server at once, retrying the pulls that fail."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: ollama_pull
short_description: Pull models into the local Ollama server, all at once
description:
  - >-
    Sends one C(POST /api/pull) (not streamed) per model, all models in parallel, and waits for every
    pull to end. A pull that fails is retried up to O(retries) times, O(delay) seconds apart, when the
    failure may pass: no answer, a timeout, or a status of 408, 429 or 5xx. Any other answer is final.
  - >-
    The caller decides what to pull (the role pulls only the missing models), so every model pulled is a
    change. After all pulls have ended, the module fails naming each model that could not be pulled and
    why.
  - >-
    It runs on the host in one task, instead of an async task per model and a polling task: there is no
    polling delay, and no async job for a connection plugin to look after.
author:
  - llmfleet maintainers
options:
  url:
    description:
      - Base URL of the Ollama API, for example C(http://127.0.0.1:11434). Reached without a proxy.
    type: str
    required: true
  models:
    description:
      - The models to pull, as C(ollama pull) takes them. A model given twice is pulled once.
    type: list
    elements: str
    required: true
  timeout:
    description:
      - Seconds one attempt at a pull may take (at least 1).
    type: int
    default: 7200
  retries:
    description:
      - Further attempts after a pull failed in a way that may pass.
    type: int
    default: 2
  delay:
    description:
      - Seconds between two attempts.
    type: int
    default: 10
attributes:
  check_mode:
    description: Reports every model as to be pulled (changed) and pulls nothing.
    support: full
extends_documentation_fragment:
  - llmfleet.llmfleet.attributes.no_diff
"""

EXAMPLES = r"""
- name: Pull the missing models
  llmfleet.llmfleet.ollama_pull:
    url: http://127.0.0.1:11434
    models: [qwen2.5-coder:7b, nomic-embed-text]
    timeout: 3600
    retries: 3
    delay: 30
"""

RETURN = r"""
pulled:
  description: The models that were pulled (in check mode, all of O(models)).
  type: list
  elements: str
  returned: always
  sample: [qwen2.5-coder:7b]
failed_models:
  description: The models that could not be pulled.
  type: list
  elements: str
  returned: always
  sample: []
results:
  description: >-
    Per model, in the order given, C(model), C(status) (the HTTP status, 0 without an answer), C(error)
    and C(attempts). Empty in check mode.
  type: list
  elements: dict
  returned: always
  sample: [{model: "qwen2.5-coder:7b", status: 200, error: "", attempts: 1}]
"""

# The options as AnsibleModule takes them; DOCUMENTATION's options say the same (tests/test_module_docs.py).
ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "models": {"type": "list", "elements": "str", "required": True},
    "timeout": {"type": "int", "default": 7200},
    "retries": {"type": "int", "default": 2},
    "delay": {"type": "int", "default": 10},
}

_RETRYABLE = {408, 429}


def _post_pull(url: str, model: str, timeout: int) -> tuple[int, str]:
    """One attempt: (HTTP status or 0, error text or "")."""
    body = json.dumps({"model": model, "stream": False}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/api/pull", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    # The API is on this host: an HTTP(S)_PROXY of the environment must not carry the request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = _json_or_text(response.read())
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        answer = _json_or_text(exc.read())
        status = int(exc.code)
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return 0, str(getattr(exc, "reason", exc)) or type(exc).__name__
    if status == 200 and not (isinstance(answer, dict) and answer.get("error")):
        return 200, ""
    error = answer.get("error") if isinstance(answer, dict) else None
    return (status if status != 200 else 500), str(error or answer or f"HTTP {status}")


def _json_or_text(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace").strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _may_pass(status: int) -> bool:
    return status == 0 or status >= 500 or status in _RETRYABLE


def pull_one(
    url: str, model: str, timeout: int, retries: int, delay: int, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    """Pull one model with its retries; the last attempt's outcome."""
    attempts = 0
    while True:
        attempts += 1
        status, error = _post_pull(url, model, timeout)
        if status == 200 or not _may_pass(status) or attempts > retries:
            return {"model": model, "status": status, "error": error, "attempts": attempts}
        sleep(delay)


def pull_all(
    url: str, models: list[str], timeout: int, retries: int, delay: int, sleep: Callable[[float], None] = time.sleep
) -> list[dict[str, Any]]:
    """Every model pulled in parallel; results in the order of `models`."""
    unique = list(dict.fromkeys(models))
    if not unique:
        return []
    with ThreadPoolExecutor(max_workers=len(unique)) as pool:
        return list(pool.map(lambda model: pull_one(url, model, timeout, retries, delay, sleep), unique))


def failure_message(results: list[dict[str, Any]]) -> str:
    """`could not pull a (why), b (why)` for the failed results."""
    failed = [f"{r['model']} ({r['error'] or 'no answer'})" for r in results if r["status"] != 200]
    return "could not pull " + ", ".join(failed)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = module.params
    for name in ("timeout", "retries", "delay"):
        if params[name] < (1 if name == "timeout" else 0):
            module.fail_json(msg=f"ollama_pull: {name} is {params[name]}, which is out of range")
    if module.check_mode:
        models = list(dict.fromkeys(params["models"]))
        module.exit_json(changed=bool(models), pulled=models, failed_models=[], results=[])
    results = pull_all(params["url"], params["models"], params["timeout"], params["retries"], params["delay"])
    pulled = [r["model"] for r in results if r["status"] == 200]
    failed = [r["model"] for r in results if r["status"] != 200]
    outcome = {"changed": bool(pulled), "pulled": pulled, "failed_models": failed, "results": results}
    if failed:
        module.fail_json(msg=failure_message(results), **outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
