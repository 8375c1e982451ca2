"""The Dockerfile parser: stages, instructions, their exec forms, copies, env and pip installs."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
RUNTIME_USER = "10001:10001"
VENV = "/opt/venv"
# COPY sources that another issue is writing (none now: the web tier has landed).
PENDING_SOURCES: tuple[str, ...] = ()
# A torch requirement (not torch-model-archiver, not torchvision).
TORCH = re.compile(r"torch(\[[^\]]*\])?([=<>~!].*)?")
# What every component image copies besides its own package: the project's metadata, the
# generated contracts, the service kit and the `medimg` command (the project's entry point).
SHARED_SOURCES = frozenset({"pyproject.toml", "README.md", "protos", "servicekit", "medimg_cli"})
# A plug-in has no extra: its image installs the project bare plus its framework, pinned as
# in the extra of the built-in service of the same framework (what the scaffolder reads).
PLUGIN_FRAMEWORKS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("mri", ("torch",)),
    "keras": ("skin", ("tensorflow", "keras")),
}
# pip options whose next word is a value, not a requirement.
PIP_VALUE_OPTIONS = frozenset({"--index-url", "-i", "--extra-index-url", "--find-links", "-f"})
_FRAMEWORK_IMPORTS = {
    "torch": re.compile(r"(?m)^\s*(import|from) torch\b"),
    "keras": re.compile(r"(?m)^\s*(import|from) (keras|tensorflow)\b"),
}


@dataclass(frozen=True)
class Instruction:
    """One instruction: upper-case keyword and its arguments, continuations joined."""

    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    """One FROM and the instructions under it."""

    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def logical_lines(text: str) -> list[str]:
    """Returns the instructions' lines, continuations joined, comments and blanks dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        logical.append(pending)
        pending = ""
    if pending:
        logical.append(pending)
    return logical


def parse_dockerfile(text: str) -> list[Stage]:
    """Returns the stages; comment lines and blank lines (inside continuations too) dropped."""
    stages: list[Stage] = []
    body: list[Instruction] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            if stages:
                stages[-1] = Stage(stages[-1].base, stages[-1].name, tuple(body))
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name, ()))
            body = []
        elif stages:
            body.append(instruction)
        elif instruction.keyword != "ARG":
            raise ValueError(f"{instruction.keyword} before the first FROM")
    if stages:
        stages[-1] = Stage(stages[-1].base, stages[-1].name, tuple(body))
    return stages


def exec_form(instruction: Instruction) -> list[str] | None:
    """Returns the JSON (exec) form's words, None for the shell form."""
    if not instruction.args.startswith("["):
        return None
    words: list[str] = json.loads(instruction.args)
    return words


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """Returns a COPY's flags, sources and destination."""
    words = exec_form(instruction) or shlex.split(instruction.args)
    flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def final_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        words = shlex.split(instruction.args)
        if "=" not in words[0]:  # the legacy `ENV KEY value` form
            env[words[0]] = " ".join(words[1:])
            continue
        env.update(w.partition("=")[::2] for w in words)
    return env


def commands(stage: Stage) -> list[list[str]]:
    """Returns every simple command of the stage's RUNs, split on shell operators."""
    found: list[list[str]] = []
    for run in stage.all("RUN"):
        lexer = shlex.shlex(run.args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in {"&&", "||", ";", "|", "&"}:
                found.append(current)
                current = []
            else:
                current.append(token)
        found.append(current)
    return [c for c in found if c]


def pip_installs(stages: Sequence[Stage]) -> list[list[str]]:
    """Returns the arguments of every `pip install`, in order."""
    installs = []
    for stage in stages:
        for command in commands(stage):
            for i in range(len(command) - 1):
                if command[i] == "pip" and command[i + 1] == "install":
                    installs.append(command[i + 2 :])
                    break
    return installs


def project_extras(word: str) -> set[str] | None:
    """Returns the extras of a project reference (`.`, `.[a,b]`); None for anything else."""
    match = re.fullmatch(r"\.(?:\[([^\]]*)\])?", word)
    if match is None:
        return None
    return {e.strip() for e in (match.group(1) or "").split(",") if e.strip()}
