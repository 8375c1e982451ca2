"""What a container image's entrypoint can import, followed statically, and what the image lacks.

An image runs `python -m <package>` on the project installed with some extras, from the
package folders its Dockerfile copies. Starting at that module, `reached_modules` follows
every `import` and `from ... import` (at module level and inside functions, read with
`ast`) through the project's own packages, and the modules the project names in strings
(Django's INSTALLED_APPS, ROOT_URLCONF, MIDDLEWARE, `include("web.series.urls")`,
uvicorn's "web.config.asgi:application"), since frameworks import those by name.
`image_violations` then names every module reached that the image would not have: a project
package it does not copy (or leaves out, as `tests`), or a third-party module that no
distribution of the image's dependency closure provides.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.dockerfile import (
    Stage,
    copy_sources,
    exec_form,
    pip_installs,
    project_extras,
    requirements_installed,
)

# A module named in a string: "web.series.urls", "web.config.asgi:application".
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
# Settings-style names whose list holds modules by bare name (INSTALLED_APPS = ["corsheaders"]).
_SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


# --- the project ------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """The checkout's packages, where they live, and what pyproject.toml installs."""

    root: Path
    name: str
    # Top-level package name -> its folder ("medimg" -> <root>/protos/medimg).
    packages: Mapping[str, Path]
    dependencies: tuple[str, ...]
    extras: Mapping[str, tuple[str, ...]]
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @classmethod
    def from_root(cls, root: Path) -> Project:
        """Reads pyproject.toml and finds every top-level package under its `where` folders."""
        pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        project = pyproject["project"]
        find = pyproject["tool"]["setuptools"]["packages"]["find"]
        packages: dict[str, Path] = {}
        for where in find.get("where", ["."]):
            base = (root / where).resolve()
            for folder in sorted(base.iterdir()):
                if (folder / "__init__.py").is_file():
                    packages.setdefault(folder.name, folder)
        return cls(
            root=root.resolve(),
            name=canonicalize_name(project["name"]),
            packages=packages,
            dependencies=tuple(project.get("dependencies", ())),
            extras={k: tuple(v) for k, v in project.get("optional-dependencies", {}).items()},
            include=tuple(find.get("include", ["*"])),
            exclude=tuple(find.get("exclude", ())),
        )

    def installs_package(self, package: str) -> bool:
        """Tells whether a non-editable install carries this dotted package (setuptools' find)."""
        included = any(fnmatch.fnmatchcase(package, p) for p in self.include)
        return included and not any(fnmatch.fnmatchcase(package, p) for p in self.exclude)

    def module_path(self, module: str) -> Path | None:
        """Returns the file of a project module (a package's __init__.py), None if none exists."""
        top, *rest = module.split(".")
        folder = self.packages.get(top)
        if folder is None:
            return None
        target = folder.joinpath(*rest)
        if (target / "__init__.py").is_file():
            return target / "__init__.py"
        if rest and target.with_suffix(".py").is_file():
            return target.with_suffix(".py")
        return None

    def is_package(self, module: str) -> bool:
        path = self.module_path(module)
        return path is not None and path.name == "__init__.py"

    def package_of(self, module: str) -> str:
        """Returns the package a module lives in (a package is its own)."""
        return module if self.is_package(module) else module.rpartition(".")[0]

    def submodules(self, package: str) -> Iterator[str]:
        """Yields every module under a project package, its sub-packages' included."""
        path = self.module_path(package)
        if path is None or path.name != "__init__.py":
            return
        for file in sorted(path.parent.rglob("*.py")):
            parts = file.relative_to(path.parent).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            # \w, not an identifier: Django imports migrations such as 0001_initial by name.
            if all(re.fullmatch(r"\w+", p) for p in parts):
                yield ".".join((package, *parts))

    def requirements(self, extras: Iterable[str]) -> list[Requirement]:
        """Returns the base dependencies plus those of the extras, the project's own expanded."""
        found: list[Requirement] = []
        seen: set[str] = set()
        pending = ["", *extras]
        while pending:
            extra = pending.pop()
            if extra in seen:
                continue
            seen.add(extra)
            specs = self.dependencies if extra == "" else self.extras.get(extra, ())
            for spec in specs:
                requirement = Requirement(spec)
                if canonicalize_name(requirement.name) == self.name:
                    pending.extend(requirement.extras)  # all = ["medimg[web,...]"]
                else:
                    found.append(requirement)
        return found


# --- what an image is -------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """What an image runs and holds: its entrypoint module, copied packages, installs."""

    name: str
    entry_module: str
    copied_packages: frozenset[str]
    extras: frozenset[str]
    requirements: tuple[str, ...]


def python_entry_module(stages: Sequence[Stage]) -> str | None:
    """Returns X of the final stage's `ENTRYPOINT ["python", "-m", X]`, None for another one."""
    entrypoints = stages[-1].all("ENTRYPOINT") if stages else []
    words = exec_form(entrypoints[-1]) if entrypoints else None
    if words is None or len(words) < 3 or words[1] != "-m":
        return None
    return words[2] if re.fullmatch(r"python(3(\.\d+)?)?", words[0].rsplit("/", 1)[-1]) else None


def image_spec(name: str, stages: Sequence[Stage], project: Project) -> ImageSpec | None:
    """Returns what the Dockerfile's image runs and holds; None without a Python entrypoint."""
    entry = python_entry_module(stages)
    if entry is None:
        return None
    extras: set[str] = set()
    for args in pip_installs(stages):
        for word in args:
            found = project_extras(word)
            if found is not None:
                extras |= found
    copied = set()
    for source in copy_sources(stages):
        source_dir = (project.root / source).resolve()
        for package, folder in project.packages.items():
            if folder == source_dir or source_dir in folder.parents:
                copied.add(package)
    return ImageSpec(
        name=name,
        entry_module=entry,
        copied_packages=frozenset(copied),
        extras=frozenset(extras),
        requirements=tuple(requirements_installed(stages)),
    )


# --- following imports ------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A module that one project module imports, may import, or names in a string.

    `kind` is "import" (`import a.b`, `from a.b import c`: a.b must exist), "member" (the
    c of `from a.b import c`, a module only if the project has one by that name) or
    "string" (a dotted name in a string, or a bare one in a settings list).
    """

    module: str
    line: int
    kind: str = "import"


class _References(ast.NodeVisitor):
    """Collects a module's imports, skipping those that cannot fail at run time.

    `if TYPE_CHECKING:` bodies never run, and an import inside `try: ... except ImportError`
    is optional by design; both are left out.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self.found: list[Reference] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        if any(_catches_import_error(handler) for handler in node.handlers):
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [Reference(alias.name, node.lineno) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.module or "", node.level)
        self.found.append(Reference(base, node.lineno))
        self.found += [
            Reference(f"{base}.{alias.name}", node.lineno, "member")
            for alias in node.names
            if alias.name != "*"
        ]

    def visit_Assign(self, node: ast.Assign) -> None:
        # INSTALLED_APPS = ["corsheaders", ...]: bare names that Django imports.
        settings_list = any(
            isinstance(t, ast.Name) and _SETTING_NAME.fullmatch(t.id) for t in node.targets
        )
        if settings_list and isinstance(node.value, ast.List | ast.Tuple):
            for element in node.value.elts:
                value = element.value if isinstance(element, ast.Constant) else None
                if isinstance(value, str) and _IDENTIFIER.fullmatch(value):
                    self.found.append(Reference(value, node.lineno, "string"))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _DOTTED.fullmatch(node.value):
            self.found.append(Reference(node.value.partition(":")[0], node.lineno, "string"))

    def _absolute(self, module: str, level: int) -> str:
        if level == 0:
            return module
        parts = self.package.split(".")
        base = parts[: len(parts) - (level - 1)]
        return ".".join([*base, module] if module else base)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    names = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds] if kinds else []
    return any(isinstance(n, ast.Name) and n.id in _IMPORT_ERRORS for n in names)


def _module_references(path: Path, package: str) -> tuple[Reference, ...]:
    return _references_in(path.read_text(encoding="utf-8"), package)


# Keyed by the source text, not the path: a test may edit a file between two checks.
@cache
def _references_in(source: str, package: str) -> tuple[Reference, ...]:
    visitor = _References(package)
    visitor.visit(ast.parse(source))
    return tuple(visitor.found)


Origin = tuple[str, int]  # the module that reached another, and the line


@dataclass
class Reach:
    """The modules reached from an entrypoint, each with where it was reached first."""

    project: Project
    entry: str
    # Project module -> where it was reached; the entrypoint maps to None.
    modules: dict[str, Origin | None] = field(default_factory=dict)
    # Top-level module outside the project -> where it was reached first.
    external: dict[str, Origin] = field(default_factory=dict)
    # Project modules imported that do not exist: (name, where).
    missing: list[tuple[str, Origin]] = field(default_factory=list)

    def chain(self, module: str) -> list[str]:
        """Returns the import chain from the entrypoint down to a reached project module."""
        chain = [module]
        while (origin := self.modules.get(chain[-1])) is not None:
            chain.append(origin[0])
        return chain[::-1]


def reached_modules(project: Project, entry: str, known_external: Iterable[str]) -> Reach:
    """Follows imports from `python -m entry` through the project; see the module docstring.

    `known_external` lists the third-party top-level modules that exist somewhere: a
    module named only in a string counts when it is one of them (so that a file name such
    as "model_card.json" is not taken for a module); an import statement always counts.
    """
    external_names = frozenset(known_external)
    reach = Reach(project, entry)
    queue: deque[str] = deque()

    def add(module: str, origin: Origin | None) -> None:
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
            name = ".".join(parts[:depth])
            if name not in reach.modules:
                reach.modules[name] = origin
                queue.append(name)

    add(entry, None)
    if project.is_package(entry):  # `python -m pkg` imports pkg, then runs pkg.__main__
        add(f"{entry}.__main__", (entry, 0))
    while queue:
        module = queue.popleft()
        path = project.module_path(module)
        if path is None:
            continue
        for ref in _module_references(path, project.package_of(module)):
            origin = (module, ref.line)
            top = ref.module.split(".")[0]
            if top in project.packages:
                _follow_project(project, reach, ref, origin, add)
            elif ref.kind == "import" or (ref.kind == "string" and top in external_names):
                reach.external.setdefault(top, origin)
    return reach


def _follow_project(
    project: Project,
    reach: Reach,
    ref: Reference,
    origin: Origin,
    add: Callable[[str, Origin | None], None],
) -> None:
    """Adds the project module that ref names, and for a name in a string its package."""
    if ref.kind == "import":
        if project.module_path(ref.module) is None:
            reach.missing.append((ref.module, origin))
        else:
            add(ref.module, origin)
        return
    if ref.kind == "member":
        if project.module_path(ref.module) is not None:
            add(ref.module, origin)
        return
    # "web.series.apps.SeriesConfig" names web.series.apps (and a class in it).
    parts = ref.module.split(".")
    prefixes = (".".join(parts[:n]) for n in range(len(parts), 1, -1))
    found = next((m for m in prefixes if project.module_path(m) is not None), None)
    if found is None:
        return  # not a module of ours: a host name, a file name
    add(found, origin)
    if not project.is_package(found):
        return
    # A package named by name is an app (INSTALLED_APPS = ["web.series"]): Django imports
    # its models, admin, migrations, templatetags and commands by convention, so all of
    # its installed modules count as reached.
    for module in project.submodules(found):
        if project.installs_package(project.package_of(module)):
            add(module, origin)


# --- the image's dependency closure -----------------------------------------------------


@dataclass(frozen=True)
class Closure:
    """The distributions an image installs (canonical names), and what none of them provides."""

    distributions: frozenset[str]
    not_installed_here: tuple[str, ...]  # in the closure but absent from this environment


def dependency_closure(requirements: Iterable[Requirement]) -> Closure:
    """Returns every distribution the requirements pull in, transitively, per this environment.

    Markers are evaluated for this interpreter and for the extras asked of each
    distribution; versions are not compared (pip resolved them when it installed these).
    """
    found: set[str] = set()
    absent: list[str] = []
    pending = deque((r, frozenset(r.extras)) for r in requirements)
    asked: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extras = pending.popleft()
        name = canonicalize_name(requirement.name)
        if (name, extras) in asked:
            continue
        asked.add((name, extras))
        found.add(name)
        try:
            requires = metadata.requires(requirement.name) or []
        except metadata.PackageNotFoundError:
            absent.append(name)
            continue
        for spec in requires:
            child = Requirement(spec)
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                pending.append((child, frozenset(child.extras)))
    return Closure(frozenset(found), tuple(sorted(set(absent))))


@cache
def top_level_providers() -> Mapping[str, frozenset[str]]:
    """Returns each importable top-level module of this environment -> its distributions."""
    return {
        module: frozenset(canonicalize_name(d) for d in dists)
        for module, dists in metadata.packages_distributions().items()
    }


# --- the verdict ------------------------------------------------------------------------


def image_violations(spec: ImageSpec, project: Project) -> list[str]:
    """Returns every module the image's entrypoint can reach that the image would not hold."""
    providers = {
        module: dists - {project.name}
        for module, dists in top_level_providers().items()
        if dists - {project.name}
    }
    reach = reached_modules(project, spec.entry_module, providers)
    requirements = project.requirements(spec.extras) + [Requirement(r) for r in spec.requirements]
    closure = dependency_closure(requirements)
    violations = [
        f"{spec.name}: {name} is not a module of the project ({where}:{line})"
        for name, (where, line) in reach.missing
    ]
    violations += [
        f"{spec.name}: the closure holds {name}, which this environment lacks: install it to judge"
        for name in closure.not_installed_here
    ]
    for module in sorted(reach.modules):
        top = module.split(".")[0]
        if project.module_path(module) is None:
            continue
        why = ""
        if top not in spec.copied_packages:
            why = f"the image does not COPY {top}/"
        elif not project.installs_package(project.package_of(module)):
            why = "pyproject.toml does not install it (tests are left out)"
        if why:
            violations.append(
                f"{spec.name}: reaches {module}: {why} ({' -> '.join(reach.chain(module))})"
            )
    for top, (where, line) in sorted(reach.external.items()):
        if top in sys.stdlib_module_names or top == "__main__":
            continue
        if providers.get(top, frozenset()) & closure.distributions:
            continue
        offered = ", ".join(sorted(providers.get(top, ()))) or "no installed distribution"
        violations.append(
            f"{spec.name}: {where}:{line} imports {top}, which the image does not install"
            f" (provided by {offered}; the image has the project with extras"
            f" {sorted(spec.extras) or 'none'} and {list(spec.requirements) or 'nothing else'})"
            f" ({' -> '.join(reach.chain(where))})"
        )
    return violations
