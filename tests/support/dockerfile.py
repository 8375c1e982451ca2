"""A small Dockerfile parser, a .dockerignore matcher, and the image rules as functions.

Each rule takes the parsed stages and returns violations (empty when the rule holds), so that
tests/test_dockerfiles.py can run it on the real Dockerfiles and on broken ones.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medimg_cli.components import Component, discover_plugins

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


# --- the parser -------------------------------------------------------------------------


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


def parse_dockerfile(text: str) -> list[Stage]:
    """Returns the stages; comment lines and blank lines (inside continuations too) dropped."""
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
    stages: list[Stage] = []
    body: list[Instruction] = []
    for line in logical:
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


# --- the rules, each returning violations -----------------------------------------------


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


# --- the OHIF viewer's image: a prebuilt static app on nginx ------------------------------

NGINX_HTML = "/usr/share/nginx/html"
NGINX_TEMPLATES = "/etc/nginx/templates"
NGINX_CONF_D = "/etc/nginx/conf.d"
# A template's ${NAME} and $NAME references (what envsubst would replace).
_TEMPLATE_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def check_static_site_image(
    stages: Sequence[Stage], package: str, version: str, sha512: str, port: int
) -> list[str]:
    """An npm package's prebuilt dist/ on unprivileged nginx, fetched pinned and checked.

    The fetch stage packs exactly package@version and checks the tarball's sha512; the
    bundled app-config.js is removed (the deployment mounts its own); the final stage is
    nginx-unprivileged with the dist at nginx's root, its server from a template under
    /etc/nginx/templates, the image's own entrypoint and command (which render the
    templates), the conf.d folder given to the runtime user, and the port exposed.
    """
    violations = []
    fetch, final = stages[0], stages[-1]
    words = [" ".join(c) for c in commands(fetch)]
    tarball = f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not any(w.startswith("npm pack") and w.endswith(f" {package}@{version}") for w in words):
        violations.append(f"the first stage does not `npm pack {package}@{version}`")
    found = commands(fetch)
    if ["echo", f"{sha512}  {tarball}"] not in found or ["sha512sum", "-c", "-"] not in found:
        violations.append(f"the tarball {tarball} is not checked against its sha512")
    if "rm package/dist/app-config.js" not in words:
        violations.append("the package's own app-config.js (OHIF's demo server) is kept")
    if "nginx-unprivileged" not in final.base:
        violations.append(f"FROM {final.base}: the final stage is not nginx-unprivileged")
    copies = [copy_parts(c) for c in final.all("COPY")]
    if not any(
        flags.get("from") == fetch.name
        and [s.rstrip("/") for s in sources] == ["/fetch/package/dist"]
        and dest.rstrip("/") == NGINX_HTML
        for flags, sources, dest in copies
    ):
        violations.append(f"the final stage does not COPY the package's dist/ to {NGINX_HTML}")
    if not any(
        "from" not in flags
        and dest.startswith(f"{NGINX_TEMPLATES}/")
        and dest.endswith(".template")
        for flags, _, dest in copies
    ):
        violations.append(f"no server template is copied into {NGINX_TEMPLATES}/")
    for keyword in ("ENTRYPOINT", "CMD"):
        if final.all(keyword):
            violations.append(f"{keyword}: nginx's own renders the templates and starts it")
    violations += check_writable_dir(final, NGINX_CONF_D)
    exposed = [w for i in final.all("EXPOSE") for w in i.args.split()]
    if exposed != [str(port)]:
        violations.append(f"EXPOSE {exposed}, not {port}")
    return violations


def check_template_variables(stages: Sequence[Stage], template: str) -> list[str]:
    """The template's environment variables all pass NGINX_ENVSUBST_FILTER; nginx's do not.

    The image's entrypoint substitutes the variables that are set and match the filter, so a
    variable of ours outside it would stay literal, and a filter that matched nginx's own
    ($uri, $host) would blank them whenever the environment had one by that name.
    """
    filter_ = final_env(stages[-1]).get("NGINX_ENVSUBST_FILTER")
    if not filter_:
        return ["NGINX_ENVSUBST_FILTER is not set: every variable in the environment is replaced"]
    pattern = re.compile(filter_)
    body = "\n".join(line.split("#", 1)[0] for line in template.splitlines())
    ours = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", body))
    nginx = set(_TEMPLATE_VARIABLE.findall(body)) - ours
    violations = [
        f"${{{name}}} does not match {filter_}" for name in sorted(ours) if not pattern.search(name)
    ]
    violations += [
        f"${name} of nginx matches {filter_}" for name in sorted(nginx) if pattern.search(name)
    ]
    return violations + ([] if ours else ["the template uses no variable of ours"])


# --- plug-in disease services (`medimg new-service`) -------------------------------------


def plugin_dockerfiles(root: Path) -> tuple[Component, ...]:
    """Returns the plug-ins of the checkout at root that have a docker/<name>.Dockerfile.

    A plug-in is a `<root>/*_service/component.json`, read as `medimg` reads it; a
    malformed one raises medimg_cli.components.ComponentError.
    """
    return tuple(
        plugin
        for plugin in discover_plugins(root)
        if (root / "docker" / f"{plugin.name}.Dockerfile").is_file()
    )


def unknown_dockerfiles(root: Path, built_ins: Sequence[str]) -> list[str]:
    """Returns the names of root's docker/*.Dockerfile that are neither built-in nor plug-in."""
    known = {*built_ins, *(plugin.name for plugin in plugin_dockerfiles(root))}
    names = sorted(
        p.name.removesuffix(".Dockerfile") for p in (root / "docker").glob("*.Dockerfile")
    )
    return [name for name in names if name not in known]


def framework_of(package_dir: Path) -> str | None:
    """Returns the framework a plug-in's package imports (tests aside); None for none or both."""
    sources = [
        path.read_text(encoding="utf-8")
        for path in sorted(package_dir.rglob("*.py"))
        if "tests" not in path.relative_to(package_dir).parts
    ]
    found = [
        name for name, imports in _FRAMEWORK_IMPORTS.items() if any(map(imports.search, sources))
    ]
    return found[0] if len(found) == 1 else None


def framework_pins(pyproject: Mapping[str, object], framework: str) -> tuple[str, ...]:
    """Returns the framework's pins ("torch==2.13.0", ...) as the extra it follows has them."""
    extra, packages = PLUGIN_FRAMEWORKS[framework]
    project = pyproject["project"]
    assert isinstance(project, dict)
    requirements: list[str] = project["optional-dependencies"][extra]
    pins = []
    for package in packages:
        found = [r for r in requirements if r.startswith(f"{package}==")]
        assert len(found) == 1, f"pyproject's {extra} extra should pin {package} once"
        pins.append(found[0])
    return tuple(pins)


def check_plugin_image(
    stages: Sequence[Stage], plugin: Component, framework: str, pins: Sequence[str]
) -> list[str]:
    """Every rule of a component image, for a plug-in: the project bare plus its framework."""
    violations = [
        *check_multi_stage(stages),
        *check_pinned_bases(stages),
        *check_runs_as_non_root(stages),
        *check_no_healthcheck(stages),
        *check_installs_only(stages, set()),
        *check_installs_exactly(stages, pins),
        *check_copies_only(stages, SHARED_SOURCES | {plugin.module}),
        *check_entrypoint(stages, plugin.module),
        *check_runtime_copies_only_venv(stages),
        *check_container_env(stages, plugin.env_prefix, plugin.default_port),
    ]
    if framework == "torch":
        (torch,) = (pin for pin in pins if pin.startswith("torch=="))
        violations += check_cpu_torch(stages, torch.partition("==")[2])
    return violations


def plugin_image_violations(root: Path, plugin: Component) -> list[str]:
    """Returns what breaks the rules in a plug-in's docker/<name>.Dockerfile in the checkout.

    The framework is the one the package imports; the pins are root's pyproject.toml's; the
    COPY sources must exist under root and be kept by its .dockerignore.
    """
    assert plugin.package_dir is not None
    framework = framework_of(plugin.package_dir)
    if framework is None:
        return [f"{plugin.module} imports neither torch nor keras alone"]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    stages = parse_dockerfile((root / "docker" / f"{plugin.name}.Dockerfile").read_text())
    return [
        *check_plugin_image(stages, plugin, framework, framework_pins(pyproject, framework)),
        *check_copy_sources_exist(stages, root),
        *check_copy_sources_kept(stages, (root / ".dockerignore").read_text()),
    ]
