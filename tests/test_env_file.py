"""The one rule for every environment file llmfleet writes (plugins/module_utils/env_file.py).

Round trips go through a reader written after systemd's own code, whose quirks are pinned by what
systemd 252 (Debian 12) and 257 (Debian 13) did with such a file (the SYSTEMD_READS cases, taken from
a unit that printed its arguments and environment), and through POSIX sh. molecule/vllm checks the
real thing end to end: a JSON argument reaches the running vLLM server whole.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from _modules import load_module
from ansible_collections.llmfleet.llmfleet.plugins.module_utils.env_file import env_file, exec_args, quote, value_errors

_WHITESPACE = " \t\n\r"
_NEWLINE = "\n\r"
_SHELL_NEED_ESCAPE = '"\\`$'


def systemd_env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it: parse_env_file_internal's states, one for one."""
    env: dict[str, str] = {}
    state, key, value = "PRE_KEY", "", None
    value_ws = None  # where the unquoted value's trailing whitespace starts

    def push() -> None:
        env[key.rstrip(_WHITESPACE)] = value or ""

    for c in text:
        if state == "PRE_KEY":
            if c in "#;":
                state = "COMMENT"
            elif c not in _WHITESPACE:
                state, key = "KEY", c
        elif state == "KEY":
            if c in _NEWLINE:
                state, key = "PRE_KEY", ""
            elif c == "=":
                state, value, value_ws = "PRE_VALUE", None, None
            else:
                key += c
        elif state == "PRE_VALUE":
            if c in _NEWLINE:
                push()
                state, key, value = "PRE_KEY", "", None
            elif c == "'":
                state = "SINGLE_QUOTE"
            elif c == '"':
                state = "DOUBLE_QUOTE"
            elif c == "\\":
                state = "VALUE_ESCAPE"
            elif c not in _WHITESPACE:
                state, value = "VALUE", (value or "") + c
        elif state == "VALUE":
            if c in _NEWLINE:
                if value_ws is not None:
                    value = value[:value_ws]
                push()
                state, key, value = "PRE_KEY", "", None
            elif c == "\\":
                state, value_ws = "VALUE_ESCAPE", None
            else:
                value = (value or "") + c
                if c not in _WHITESPACE:
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value) - 1
        elif state == "VALUE_ESCAPE":
            state = "VALUE"
            if c not in _NEWLINE:  # an escaped line break is eaten up
                value = (value or "") + c
        elif state == "SINGLE_QUOTE":
            if c == "'":
                state = "PRE_VALUE"
            else:
                value = (value or "") + c
        elif state == "DOUBLE_QUOTE":
            if c == '"':
                state = "PRE_VALUE"
            elif c == "\\":
                state = "DOUBLE_QUOTE_ESCAPE"
            else:
                value = (value or "") + c
        elif state == "DOUBLE_QUOTE_ESCAPE":
            state = "DOUBLE_QUOTE"
            if c in _SHELL_NEED_ESCAPE:
                value = (value or "") + c
            elif c != "\n":  # a continuation line; any other character keeps its backslash
                value = (value or "") + "\\" + c
        elif state == "COMMENT":
            if c in _NEWLINE:
                state = "PRE_KEY"
    if state not in ("PRE_KEY", "KEY", "COMMENT"):
        if state == "VALUE" and value_ws is not None:
            value = value[:value_ws]
        push()
    return env


def systemd_exec_split(value: str) -> list[str]:
    """`$NAME` in ExecStart=: extract_first_word(WHITESPACE, EXTRACT_UNQUOTE|EXTRACT_RELAX) word by word."""
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in _WHITESPACE:
            i += 1
        if i >= n:
            return words
        word, quote_char = "", ""
        while i < n:
            c = value[i]
            if c == "\\":  # the next character, literally: outside quotes and inside either kind
                i += 1
                if i < n:
                    word += value[i]
            elif quote_char:
                if c == quote_char:
                    quote_char = ""
                else:
                    word += c
            elif c in "'\"":
                quote_char = c
            elif c in _WHITESPACE:
                break
            else:
                word += c
            i += 1
        words.append(word)


# What systemd 252 and 257 did with these lines (probe unit, /root/probe.env): the reader above must agree.
SYSTEMD_READS = [
    ('A="he said \\"hi\\" \\\\ back\\\\slash \\$HOME `cmd` \\q"', {"A": 'he said "hi" \\ back\\slash $HOME `cmd` \\q'}),
    ('B="line1\nline2"', {"B": "line1\nline2"}),
    ('C=""', {"C": ""}),
    ('D="tab\tin"', {"D": "tab\tin"}),
]
SYSTEMD_SPLITS = [
    ("--x '{\"t\": 0.5}' 'it'\\''s' \"d\\\"q\" 'bs\\\\x' 'bs1\\x'", ["--x", '{"t": 0.5}', "it's", 'd"q', "bs\\x", "bs1x"]),
]


@pytest.mark.parametrize(("line", "env"), SYSTEMD_READS)
def test_the_reader_reads_as_systemd_did(line: str, env: dict[str, str]) -> None:
    assert systemd_env_file(f"# probe\n{line}\n") == env


@pytest.mark.parametrize(("value", "words"), SYSTEMD_SPLITS)
def test_the_splitter_splits_as_systemd_did(value: str, words: list[str]) -> None:
    assert systemd_exec_split(value) == words


VALUES = ["", " ", "plain", 'say "hi"', "it's", "back\\slash", "trailing\\", "\\", "$HOME", "${HOME}", "`cmd`",
          "a\\$b", "two\nlines", "ends with a line break\n", "backslash before a break\\\nx", "\ttab", "  spaces  ",
          "#not a comment", ";semi", "x=y", '{"temperature": 0.5}', "ünïcödé ✓", "%i %%", "'", '"', '\\"', "\\'",
          "--k=v w"]
ENVIRONMENT = {f"V{index}": value for index, value in enumerate(VALUES)}


def test_every_value_reads_back_exactly_as_systemd_reads_it() -> None:
    text = "# {{ ansible_managed }}\n" + env_file(ENVIRONMENT)
    assert systemd_env_file(text) == ENVIRONMENT


def test_every_value_reads_back_exactly_as_sh_sources_it(tmp_path: Path) -> None:
    # Open WebUI's launcher on macOS sources its secrets file with `set -a; . file`.
    path = tmp_path / "secrets.env"
    path.write_text(env_file(ENVIRONMENT), encoding="utf-8")
    printed = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; exec "$2" -c "$3"', "sh", str(path), sys.executable,
         "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('V')}))"],
        capture_output=True, text=True, check=True).stdout
    assert json.loads(printed) == ENVIRONMENT


def test_quotes_backslashes_dollars_and_backquotes_are_escaped_in_double_quotes() -> None:
    assert quote('say "hi" \\ $HOME `x`') == '"say \\"hi\\" \\\\ \\$HOME \\`x\\`"'
    # A line break is written as itself: systemd and sh keep it inside double quotes. A backslash
    # before it is the value's own, written doubled, so the lines are never joined.
    assert quote("a\\\nb") == '"a\\\\\nb"'


def test_a_file_is_sorted_lines_and_none_leaves_a_variable_out() -> None:
    assert env_file({"B": "it's", "A": True, "D": 3, "C": False, "E": None, "F": ""}) == (
        'A="true"\nB="it\'s"\nC="false"\nD="3"\nF=""\n')
    assert env_file({}) == ""


@pytest.mark.parametrize("bad", ["nul\x00", "carriage\rreturn", "escape\x1b[0m", "bom\ufeff", "non\uffff",
                                 "plane\U0010fffe", "non\ufdd0"])
def test_what_systemd_drops_or_cannot_read_is_refused_by_name_never_by_value(bad: str) -> None:
    with pytest.raises(ValueError) as refused:
        env_file({"TOKEN": f"s3cr3t-{bad}"})
    assert "TOKEN" in str(refused.value) and "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize("name", ["1A", "A-B", "A B", "", "Ä"])
def test_names_systemd_and_sh_cannot_take_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        env_file({name: "x"})
    assert value_errors(name, "x")


ARGUMENTS = ["--model", "/srv/models/tiny", "--override-generation-config", '{"temperature": 0.5, "stop": ["a b"]}',
             "--served-model-name", "it's", "", "a b", "\ttab", "two\nlines", "back\\slash", "trailing\\", '"', "'",
             "$HOME", "${HOME}", "`x`", "%i", "--k=v w", ";", "ünïcödé", "--enforce-eager", "0.92", "-tp"]


def test_each_argument_arrives_whole_through_the_file_and_execstart() -> None:
    # EnvironmentFile= first, then `$LLMFLEET_VLLM_ARGS` in ExecStart= splits the value.
    text = env_file({"LLMFLEET_VLLM_ARGS": exec_args(ARGUMENTS)})
    assert systemd_exec_split(systemd_env_file(text)["LLMFLEET_VLLM_ARGS"]) == ARGUMENTS


def test_arguments_are_quoted_only_where_needed_and_read_alike_by_shlex() -> None:
    assert exec_args(["--model", "Qwen/Qwen2.5-7B", "--port", 8000, "--gpu-memory-utilization", 0.46]) == (
        "--model Qwen/Qwen2.5-7B --port 8000 --gpu-memory-utilization 0.46")
    assert exec_args(["--x", '{"t": 0.5}', "", "it's", "a\\b"]) == "--x '{\"t\": 0.5}' '' \"it's\" \"a\\\\b\""
    # `invoke status` reads the arguments back with shlex (src/llmfleet/status.py).
    assert shlex.split(exec_args(ARGUMENTS)) == ARGUMENTS
    assert exec_args([]) == ""


def test_the_filters_are_the_shared_functions() -> None:
    filters = load_module("plugins/filter/env_file.py").FilterModule().filters()
    assert filters["env_file"] is env_file and filters["systemd_exec_args"] is exec_args
