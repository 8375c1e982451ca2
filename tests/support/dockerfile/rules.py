"""The image rules, each taking the parsed stages and returning violations (empty when it holds)."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path

from tests.support.dockerfile.parser import (
    CPU_TORCH_INDEX,
    PENDING_SOURCES,
    PIP_VALUE_OPTIONS,
    RUNTIME_USER,
    TORCH,
    VENV,
    Stage,
    commands,
    copy_parts,
    exec_form,
    final_env,
    pip_installs,
    project_extras,
)


def check_multi_stage(stages: Sequence[Stage]) -> list[str]:
    return [] if len(stages) >= 2 else [f"{len(stages)} stage(s): build in one, ship another"]


def check_pinned_bases(stages: Sequence[Stage]) -> list[str]:
    violations = []
    for index, stage in enumerate(stages):
        if stage.base in {s.name for s in stages[:index]} or "@sha256:" in stage.base:
            continue
        last = stage.base.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if "$" in stage.base or not re.search(r"\d+\.\d+\.\d+", tag):
            violations.append(f"FROM {stage.base}: pin an exact version tag (x.y.z) or a digest")
    return violations


def check_runs_as_non_root(stages: Sequence[Stage]) -> list[str]:
    users = stages[-1].all("USER")
    if not users:
        return ["the final stage has no USER: it would run as root"]
    user = users[-1].args
    if {"root", "0"} & set(user.split(":")):
        return [f"USER {user}: root"]
    return [] if user == RUNTIME_USER else [f"USER {user}: the conventions' is {RUNTIME_USER}"]


def check_no_healthcheck(stages: Sequence[Stage]) -> list[str]:
    found = [i for s in stages for i in s.all("HEALTHCHECK")]
    return ["HEALTHCHECK: Kubernetes probes the container"] if found else []


def check_installs_only(stages: Sequence[Stage], extras: set[str]) -> list[str]:
    """Every pip install has --no-cache-dir, none is editable, the project's extras are these."""
    violations = []
    project = 0
    for args in pip_installs(stages):
        if "--no-cache-dir" not in args:
            violations.append(f"pip install {' '.join(args)}: without --no-cache-dir")
        if {"-e", "--editable"} & set(args):
            violations.append(f"pip install {' '.join(args)}: editable")
        for word in args:
            found = project_extras(word)
            if found is not None:
                project += 1
                if found != extras:
                    violations.append(f"installs the project with {sorted(found)}, not {extras}")
    return violations + ([] if project else ["never installs the project"])


def check_entrypoint(stages: Sequence[Stage], module: str) -> list[str]:
    entrypoints = stages[-1].all("ENTRYPOINT")
    words = exec_form(entrypoints[-1]) if entrypoints else None
    expected = ["python", "-m", module]
    return [] if words == expected else [f"ENTRYPOINT should be {json.dumps(expected)}"]


def check_cpu_torch(stages: Sequence[Stage], pin: str) -> list[str]:
    """torch, pinned, comes from PyTorch's CPU index alone, before the project's install."""
    installs = pip_installs(stages)
    torch_at = [i for i, args in enumerate(installs) if any(TORCH.fullmatch(a) for a in args)]
    if not torch_at:
        return ["torch is not installed on its own from the CPU index"]
    first_project = min(
        (i for i, args in enumerate(installs) if any(project_extras(a) is not None for a in args)),
        default=len(installs),
    )
    violations = []
    for i in torch_at:
        args = installs[i]
        if f"torch=={pin}" not in args:
            violations.append(f"pip install {' '.join(args)}: torch not pinned to {pin}")
        if "--index-url" not in args or args[args.index("--index-url") + 1] != CPU_TORCH_INDEX:
            violations.append(f"pip install {' '.join(args)}: not --index-url {CPU_TORCH_INDEX}")
        if i >= first_project:
            violations.append("torch is installed with or after the project: PyPI's CUDA build")
    return violations


def check_runtime_copies_only_venv(stages: Sequence[Stage]) -> list[str]:
    build, final = stages[0], stages[-1]
    violations = [] if build.base == final.base else ["build and runtime bases differ"]
    for copy in final.all("COPY") + final.all("ADD"):
        flags, sources, dest = copy_parts(copy)
        if flags.get("from") != build.name or [s.rstrip("/") for s in sources] != [VENV]:
            violations.append(f"{copy.keyword} {copy.args}: the runtime takes {VENV} only")
        elif dest.rstrip("/") != VENV:
            violations.append(f"COPY {copy.args}: {VENV} must keep its path")
    return violations


def check_container_env(
    stages: Sequence[Stage], prefix: str, port: int, host_variable: str = "HOST"
) -> list[str]:
    """The final stage listens on every interface, on port, and writes no bytecode.

    host_variable is the listen address's name after the prefix: HOST for servicekit's
    services, BIND_ADDRESS for the DICOM receiver.
    """
    env = final_env(stages[-1])
    expected = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        f"{prefix}{host_variable}": "0.0.0.0",
        f"{prefix}PORT": str(port),
    }
    violations = [f"ENV {k}={v} missing" for k, v in expected.items() if env.get(k) != v]
    exposed = [w for i in stages[-1].all("EXPOSE") for w in i.args.split()]
    return violations + ([] if exposed == [str(port)] else [f"EXPOSE {exposed}, not {port}"])


def check_writable_dir(stage: Stage, path: str) -> list[str]:
    """The stage's RUNs create path and give it to the runtime user (the rest stays root's)."""
    if not path.startswith("/"):
        return [f"{path!r} is not an absolute path"]
    found = commands(stage)
    made = any(c[:2] == ["mkdir", "-p"] and path in c[2:] for c in found)
    owned = any(c[:2] == ["chown", RUNTIME_USER] and path in c[2:] for c in found)
    return ([] if made else [f"no `mkdir -p {path}`"]) + (
        [] if owned else [f"no `chown {RUNTIME_USER} {path}`"]
    )


def check_artifact_image(stages: Sequence[Stage], holds: str, target: str) -> list[str]:
    """The final stage copies `holds` whole from a stage, and its command copies it to target."""
    final = stages[-1]
    copies = [copy_parts(c) for c in final.all("COPY")]
    violations = []
    if not any(
        "from" in f and [s.rstrip("/") for s in src] == [holds] and dest.rstrip("/") == holds
        for f, src, dest in copies
    ):
        violations.append(f"the final stage does not COPY --from=<stage> {holds} {holds}")
    cmds = final.all("CMD")
    words = exec_form(cmds[-1]) if cmds else None
    if words is None or not (holds in words[-1] and target in words[-1]):
        violations.append(f"CMD (exec form) should copy {holds} into {target}")
    return violations


def check_skin_layout(stages: Sequence[Stage]) -> list[str]:
    for stage in stages:
        for copy in stage.all("COPY"):
            _, sources, dest = copy_parts(copy)
            if [s.rstrip("/") for s in sources] == ["skin_service/models/skin-demo/1"] and (
                dest.rstrip("/") == "/artifacts/skin/1"
            ):
                return []
    return ["skin_service/models/skin-demo/1 is not copied to /artifacts/skin/1"]


def check_mri_archives(stages: Sequence[Stage], archives: Sequence[str]) -> list[str]:
    words = [w for stage in stages for command in commands(stage) for w in command]
    text = " ".join(words)
    violations = []
    if "python -m mri_service.archive" not in text or "--out /artifacts/model-store" not in text:
        violations.append("no `python -m mri_service.archive ... --out /artifacts/model-store`")
    if "--prefix" in words:
        violations.append("--prefix renames the archives the conventions name")
    violations += [f"{name} is not checked" for name in archives if f"/{name}" not in text]
    return violations


def requirements_installed(stages: Sequence[Stage]) -> list[str]:
    """Returns every requirement of every pip install, in order: neither options nor `.`."""
    found = []
    for args in pip_installs(stages):
        value_next = False
        for word in args:
            if value_next:
                value_next = False
            elif word in PIP_VALUE_OPTIONS:
                value_next = True
            elif not word.startswith("-") and project_extras(word) is None:
                found.append(word)
    return found


def check_installs_exactly(stages: Sequence[Stage], requirements: Sequence[str]) -> list[str]:
    """Besides the project, the pip installs take these requirements, each once, nothing else."""
    installed = requirements_installed(stages)
    return (
        [
            f"installs {r}: not one of {list(requirements)}"
            for r in installed
            if r not in requirements
        ]
        + [f"installs {r} more than once" for r in requirements if installed.count(r) > 1]
        + [f"never installs {r}" for r in requirements if r not in installed]
    )


def check_archiver_only(stages: Sequence[Stage], archiver: str) -> list[str]:
    """The archive stage installs the project and the pinned archiver, neither torch nor TS."""
    violations = []
    for args in pip_installs(stages):
        names = [a for a in args if not a.startswith("-") and project_extras(a) is None]
        if names != [archiver]:
            violations.append(f"pip install {' '.join(args)}: only {archiver} besides the project")
    return violations


def copy_sources(stages: Sequence[Stage]) -> list[str]:
    return [
        source.rstrip("/")
        for stage in stages
        for flags, sources, _ in map(copy_parts, stage.all("COPY") + stage.all("ADD"))
        if "from" not in flags
        for source in sources
    ]


def check_copies_only(stages: Sequence[Stage], allowed: Collection[str]) -> list[str]:
    """The context paths copied are these (another component's package stays out)."""
    return [
        f"COPY {s}: not one of {sorted(allowed)}" for s in copy_sources(stages) if s not in allowed
    ]


def check_copy_sources_exist(stages: Sequence[Stage], root: Path) -> list[str]:
    return [
        f"COPY {source}: not in the repository"
        for source in copy_sources(stages)
        if source.split("/")[0] not in PENDING_SOURCES and not (root / source).exists()
    ]


def ignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """Returns .dockerignore's rules in order: (negated, regex)."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", lambda m: f"[{m.group(1)}]", regex)
        rules.append((negated, re.compile(regex)))
    return rules


def is_ignored(path: str, rules: Sequence[tuple[bool, re.Pattern[str]]]) -> bool:
    """Tells whether the context leaves path out (last matching rule wins; parents count)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def check_copy_sources_kept(stages: Sequence[Stage], dockerignore: str) -> list[str]:
    rules = ignore_rules(dockerignore)
    return [
        f"COPY {s}: left out by .dockerignore" for s in copy_sources(stages) if is_ignored(s, rules)
    ]
