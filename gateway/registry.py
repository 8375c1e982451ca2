"""Routes from disease names to upstream services: parsing, validation, merging, persistence."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml

from gateway.errors import RouteLearned, RouteNotRemovable
from servicekit.diseases import DISEASE_RULE, is_disease_name
from servicekit.errors import UnknownDisease

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_ROUTE_KEYS = frozenset({"disease", "kind", "addresses"})


class RouteError(ValueError):
    """A route is malformed; callers prefix the message with where it came from."""


class RouteKind(StrEnum):
    """Contract an upstream serves, which decides the calls it can take."""

    IMAGE = "image"
    SERIES = "series"
    # The teachable machine's TrainerService: not a disease, so never listed or diagnosed.
    TRAINER = "trainer"


_KIND_WORDS = ", ".join(kind.value for kind in RouteKind)


@dataclass(frozen=True)
class Route:
    """Where the calls for one disease go: its contract and its replica addresses."""

    disease: str
    kind: RouteKind
    addresses: tuple[str, ...]


def validate_disease(disease: str) -> str:
    """Returns the disease name, or raises RouteError when it breaks the naming rule."""
    if not is_disease_name(disease):
        raise RouteError(f"disease {disease!r} must be {DISEASE_RULE}")
    return disease


def validate_address(address: str) -> str:
    """Returns a "host:port" address, or raises RouteError naming what is wrong with it."""
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise RouteError(f"address {address!r} must be host:port")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RouteError(f"address {address!r} needs a port between 1 and 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise RouteError(f"address {address!r} has an invalid IPv6 host") from None
    elif len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise RouteError(f"address {address!r} has an invalid host (IPv6 goes in brackets)")
    return address


def parse_kind(kind: str) -> RouteKind:
    """Returns the kind named by text ("image", "series" or "trainer")."""
    try:
        return RouteKind(kind)
    except ValueError:
        raise RouteError(f"kind {kind!r} must be one of: {_KIND_WORDS}") from None


def make_route(disease: str, kind: RouteKind | str, addresses: Iterable[str]) -> Route:
    """Returns a validated route; raises RouteError for a bad name, kind or address list."""
    validate_disease(disease)
    route_kind = kind if isinstance(kind, RouteKind) else parse_kind(kind)
    checked = tuple(validate_address(address) for address in addresses)
    if not checked:
        raise RouteError(f"disease {disease!r} needs at least one address")
    if len(set(checked)) != len(checked):
        raise RouteError(f"disease {disease!r} lists the same address twice")
    return Route(disease=disease, kind=route_kind, addresses=checked)


def parse_routes_spec(spec: str) -> dict[str, Route]:
    """Parses "skin=image@h1:p1,h2:p2;mri=series@h3:p3" into routes keyed by disease."""
    routes: dict[str, Route] = {}
    for part in (piece.strip() for piece in spec.split(";")):
        if not part:
            continue
        disease, equals, target = part.partition("=")
        kind, at, addresses = target.partition("@")
        if not equals or not at:
            raise RouteError(f"{part!r} must look like disease=kind@host:port[,host:port...]")
        route = make_route(
            disease.strip(),
            kind.strip(),
            (address.strip() for address in addresses.split(",") if address.strip()),
        )
        _add_unique(routes, route)
    check_one_trainer(routes.values())
    return routes


def check_one_trainer(routes: Iterable[Route]) -> None:
    """Raises RouteError when more than one route is of the trainer kind.

    The gateway sends every TrainerService call to the one trainer; two would leave
    it guessing which one owns a project.
    """
    trainers = sorted(route.disease for route in routes if route.kind is RouteKind.TRAINER)
    if len(trainers) > 1:
        raise RouteError(
            f"at most one route may be of kind trainer; found {', '.join(map(repr, trainers))}"
        )


def parse_routes_document(document: object) -> dict[str, Route]:
    """Parses a loaded registry document, {"models": [{disease, kind, addresses}, ...]}."""
    if document is None:
        return {}
    if not isinstance(document, dict) or set(document) - {"models"}:
        raise RouteError("expected a mapping with one key, 'models', holding a list")
    models = document.get("models") or []
    if not isinstance(models, list):
        raise RouteError("'models' must be a list")
    routes: dict[str, Route] = {}
    for index, item in enumerate(models):
        try:
            _add_unique(routes, _route_from_item(item))
        except RouteError as exc:
            raise RouteError(f"models[{index}]: {exc}") from None
    check_one_trainer(routes.values())
    return routes


def load_registry_file(path: Path) -> dict[str, Route]:
    """Reads a YAML registry file; raises RouteError when it cannot be read or is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RouteError(f"cannot read the file ({exc})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RouteError(f"not valid YAML ({exc})") from None
    return parse_routes_document(document)


def dump_routes(routes: Iterable[Route]) -> str:
    """Returns routes as the JSON document parse_routes_document reads back."""
    models = [
        {"disease": route.disease, "kind": route.kind.value, "addresses": list(route.addresses)}
        for route in sorted(routes, key=lambda route: route.disease)
    ]
    return json.dumps({"models": models}, indent=2) + "\n"


def _route_from_item(item: object) -> Route:
    if not isinstance(item, dict):
        raise RouteError("must be a mapping with disease, kind and addresses")
    unknown = set(item) - _ROUTE_KEYS
    if unknown:
        raise RouteError(f"unknown keys {sorted(map(str, unknown))}; use disease, kind, addresses")
    disease, kind, addresses = item.get("disease"), item.get("kind"), item.get("addresses")
    if not isinstance(disease, str):
        raise RouteError("'disease' must be a string")
    if not isinstance(kind, str):
        raise RouteError(f"disease {disease!r}: 'kind' must be one of: {_KIND_WORDS}")
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise RouteError(f"disease {disease!r}: 'addresses' must be a list of host:port strings")
    return make_route(disease, kind, addresses)


def _add_unique(routes: dict[str, Route], route: Route) -> None:
    if route.disease in routes:
        raise RouteError(f"disease {route.disease!r} is listed twice")
    routes[route.disease] = route


class StateStore:
    """The file that keeps routes added at run time across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Route]:
        """Returns the saved routes, none when the file does not exist yet."""
        if not self.path.exists():
            return {}
        try:
            text = self.path.read_text(encoding="utf-8")
            return parse_routes_document(json.loads(text))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RouteError(f"cannot read the file ({exc})") from None

    def save(self, routes: Iterable[Route]) -> None:
        """Replaces the file atomically, so a crash leaves the old or the new routes, whole."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".routes-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(dump_routes(routes))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


class RouteTable:
    """The routes in force, in three layers, later ones winning disease by disease.

    1. Learned: the trainer's published models, as image routes to the trainer, from
       its ListPublishedModels (gateway/published.py). Never saved: the trainer is their
       source of truth, and every gateway replica asks it for itself.
    2. Configured: the file, then the environment.
    3. Runtime: added by RegisterModel (an operator's tool) and saved in the state file.

    A learned route never replaces a configured one (`learn` leaves those out and the
    layers' order would anyway). Runtime routes win over configured ones, which matters
    only for a route saved before the configuration gained the same disease (the Router
    refuses new registrations over configured routes); removing the runtime route
    brings the configured one back. Configured routes cannot be removed at run time
    (FAILED_PRECONDITION): their source is the deployment's config; learned ones go when
    the trainer stops listing them. At most one route is of the trainer kind.
    """

    def __init__(self, configured: Mapping[str, Route], store: StateStore) -> None:
        self._configured = dict(configured)
        self._store = store
        self._learned: dict[str, Route] = {}
        self._runtime = store.load()
        self._effective = self._layered(self._learned, self._runtime)
        check_one_trainer(self._effective.values())

    def get(self, disease: str) -> Route | None:
        """Returns the route of a disease, None when the disease is not routed."""
        return self._effective.get(disease)

    def routes(self) -> list[Route]:
        """Returns every route in force, sorted by disease."""
        return [self._effective[name] for name in sorted(self._effective)]

    def model_routes(self) -> list[Route]:
        """Returns the routes to models (every kind but trainer), sorted by disease."""
        return [route for route in self.routes() if route.kind is not RouteKind.TRAINER]

    def trainer(self) -> Route | None:
        """Returns the route of the trainer, None when none is configured."""
        return next((r for r in self._effective.values() if r.kind is RouteKind.TRAINER), None)

    def diseases(self, kind: RouteKind | None = None) -> list[str]:
        """Returns the routed disease names, of one kind when given, sorted."""
        return sorted(r.disease for r in self._effective.values() if kind in (None, r.kind))

    def is_runtime(self, disease: str) -> bool:
        """Returns True when the disease's route was added at run time."""
        return disease in self._runtime

    def runtime_route(self, disease: str) -> Route | None:
        """Returns the route RegisterModel added for the disease, None when there is none."""
        return self._runtime.get(disease)

    def is_configured(self, disease: str) -> bool:
        """Returns True when the file or the environment routes the disease."""
        return disease in self._configured

    def is_learned(self, disease: str) -> bool:
        """Returns True when the disease is one of the trainer's published models."""
        return disease in self._learned

    def learned(self) -> dict[str, Route]:
        """Returns the routes learned from the trainer, keyed by disease."""
        return dict(self._learned)

    def learn(self, routes: Mapping[str, Route]) -> None:
        """Replaces the learned routes, leaving out configured diseases; nothing is saved."""
        learned = {d: r for d, r in routes.items() if d not in self._configured}
        # One assignment each, so a reader on the event loop never sees a half-made table.
        self._learned = learned
        self._effective = self._layered(learned, self._runtime)

    def register(self, route: Route) -> None:
        """Adds or replaces a runtime route, saved before it takes effect."""
        runtime = {**self._runtime, route.disease: route}
        self._store.save(runtime.values())
        self._apply(runtime)

    def unregister(self, disease: str) -> None:
        """Removes a runtime route; raises UnknownDisease, RouteNotRemovable or RouteLearned."""
        if disease not in self._runtime:
            if disease in self._configured:
                raise RouteNotRemovable(
                    f"the route of {disease!r} comes from the gateway's configuration "
                    "(GATEWAY_REGISTRY_FILE or GATEWAY_ROUTES); change it there"
                )
            if disease in self._learned:
                raise RouteLearned(
                    f"{disease!r} is a model the trainer publishes; the gateway routes it "
                    "for as long as the trainer lists it"
                )
            raise UnknownDisease(
                f"no route was registered for {disease!r}; runtime routes: "
                f"{', '.join(sorted(self._runtime)) or 'none'}"
            )
        runtime = {name: r for name, r in self._runtime.items() if name != disease}
        self._store.save(runtime.values())
        self._apply(runtime)

    def _apply(self, runtime: dict[str, Route]) -> None:
        # One assignment each, so a reader on the event loop never sees a half-made table.
        self._runtime = runtime
        self._effective = self._layered(self._learned, runtime)

    def _layered(self, learned: Mapping[str, Route], runtime: Mapping[str, Route]) -> (
        dict[str, Route]
    ):  # fmt: skip
        return {**learned, **self._configured, **runtime}
