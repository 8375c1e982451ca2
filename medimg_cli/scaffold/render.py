"""Renders the scaffold's templates: `{{key}}` placeholders, then first-party imports in order."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from medimg_cli.scaffold.spec import ServiceSpec

TEMPLATE_SUFFIX = ".tmpl"
LINE_LENGTH = 100  # ruff's, in pyproject.toml
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_FROM_IMPORT = re.compile(r"from ([\w.]+) import ")


class TemplateError(Exception):
    """A template names a placeholder that has no value: a bug in the scaffold itself."""


def values(spec: ServiceSpec) -> dict[str, str]:
    """Returns the value of every placeholder for one service."""
    return {
        "name": spec.name,
        "Name": spec.name.capitalize(),
        "module": spec.module,
        "PREFIX": spec.prefix,
        "port": str(spec.port),
        "framework": spec.framework,
        # torch's convolutions read (channels, height, width); Keras reads channels last.
        "channels_first": str(spec.framework == "torch"),
        "labels_py": labels_assignment(spec.labels),
        "labels_text": ", ".join(spec.labels),
        "labels_csv": ",".join(spec.labels),
        "first_label": spec.labels[0],
    }


def labels_assignment(labels: tuple[str, ...]) -> str:
    """Returns the LABELS line(s) of domain.py: one line if it fits, else one label a line.

    ruff format keeps a collection with a magic trailing comma exploded, and joins one
    that fits in a line without it, so the text is formatted whatever the labels.
    """
    one_line = "LABELS: tuple[str, ...] = (" + ", ".join(f'"{label}"' for label in labels) + ")"
    if len(one_line) <= LINE_LENGTH:
        return one_line
    lines = ["LABELS: tuple[str, ...] = ("]
    lines += [f'    "{label}",' for label in labels]
    lines.append(")")
    return "\n".join(lines)


def render(text: str, mapping: Mapping[str, str], *, source: str) -> str:
    """Returns text with every `{{key}}` replaced; raises TemplateError for an unknown key."""

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in mapping:
            raise TemplateError(f"{source}: unknown placeholder {{{{{key}}}}}")
        return mapping[key]

    return _PLACEHOLDER.sub(substitute, text)


def sort_first_party_imports(text: str, first_party: tuple[str, ...]) -> str:
    """Returns text with each run of top-level first-party `from` imports sorted by module.

    The service's own package sorts before or after `servicekit` depending on its name,
    as isort (ruff's `I` rules) orders them; templates cannot know which, so the run is
    sorted here. A run is a block of consecutive `from <first party> import` statements,
    each one line or a parenthesised block.
    """
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        statements: list[list[str]] = []
        while index < len(lines) and _is_first_party(lines[index], first_party):
            end = index
            if lines[index].rstrip().endswith("("):
                while lines[end] != ")":
                    end += 1
            statements.append(lines[index : end + 1])
            index = end + 1
        if statements:
            statements.sort(key=_module_of)
            out.extend(line for statement in statements for line in statement)
            continue
        out.append(lines[index])
        index += 1
    return "\n".join(out)


def _is_first_party(line: str, first_party: tuple[str, ...]) -> bool:
    match = _FROM_IMPORT.match(line)
    return match is not None and match.group(1).split(".")[0] in first_party


def _module_of(statement: list[str]) -> str:
    match = _FROM_IMPORT.match(statement[0])
    return match.group(1) if match else ""


def templates(folder: str) -> Iterator[tuple[PurePosixPath, Traversable]]:
    """Yields (path relative to folder, without .tmpl; the template) for one template folder."""
    base = resources.files("medimg_cli.scaffold").joinpath("templates", *folder.split("/"))
    yield from _walk(base, PurePosixPath())


def _walk(
    node: Traversable, relative: PurePosixPath
) -> Iterator[tuple[PurePosixPath, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda item: item.name):
        if child.is_dir():
            yield from _walk(child, relative / child.name)
        elif child.name.endswith(TEMPLATE_SUFFIX):
            yield relative / child.name.removesuffix(TEMPLATE_SUFFIX), child


def render_service(spec: ServiceSpec) -> dict[PurePosixPath, str]:
    """Returns the files of the service package, by path inside it.

    The framework's templates are laid over the common ones; a Python file's own
    imports are then put in isort's order.
    """
    mapping = values(spec)
    files: dict[PurePosixPath, str] = {}
    for folder in ("service/common", f"service/{spec.framework}"):
        for path, template in templates(folder):
            text = render(template.read_text(encoding="utf-8"), mapping, source=f"{folder}/{path}")
            if path.suffix == ".py":
                text = sort_first_party_imports(text, ("servicekit", spec.module))
            files[path] = text
    return files


def render_one(template: str, spec: ServiceSpec, extra: Mapping[str, str] | None = None) -> str:
    """Returns one template of the templates folder (such as "k8s/service.yaml"), rendered.

    extra adds placeholders to the service's own values (a Dockerfile's pins and version).
    """
    node = resources.files("medimg_cli.scaffold").joinpath(
        "templates", *f"{template}{TEMPLATE_SUFFIX}".split("/")
    )
    mapping = {**values(spec), **(extra or {})}
    return render(node.read_text(encoding="utf-8"), mapping, source=template)
