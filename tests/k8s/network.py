"""Which endpoint may open a connection to which port, by the rendered NetworkPolicies.

A model of NetworkPolicy ingress and egress, enough for medimg's policies: pod selectors
(matchLabels and matchExpressions), namespace selectors on the namespace's name label,
ipBlocks with their exceptions, named and numbered ports, TCP and UDP. An endpoint is a
pod of medimg's namespace (its labels, a mapping), a pod of another namespace (`Pod`), or
an address outside the cluster (`Address`). The rendered policies all live in medimg's
namespace, so they select pods of it only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.policy import selector_matches

Objects = Sequence[Mapping[str, Any]]
NAMESPACE_NAME = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A pod of another namespace (the DNS server, the ingress controller)."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """An address outside the cluster (a PACS on the hospital network)."""

    ip: str


Endpoint = Mapping[str, Any] | Pod | Address


def _types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    # Unset: Ingress always, Egress when the policy has egress rules (the API's default).
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _selects(policy: Mapping[str, Any], direction: str, labels: Mapping[str, Any]) -> bool:
    spec = policy.get("spec") or {}
    return direction in _types(policy) and selector_matches(spec.get("podSelector") or {}, labels)


def _port_matches(
    rule_port: Mapping[str, Any], port: int, protocol: str, named: Mapping[str, int]
) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    wanted = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return named.get(wanted) == port
    end = rule_port.get("endPort", wanted)
    return bool(wanted <= port <= end)


def _peer_matches(peer: Mapping[str, Any], endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        if not isinstance(endpoint, Address):
            return False  # pods are matched by selectors (CNIs differ on ipBlocks of pod IPs)
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(endpoint.ip)
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(c) for c in block.get("except") or [])
    if isinstance(endpoint, Address):
        return False
    if "namespaceSelector" in peer:
        if not isinstance(endpoint, Pod):
            return False  # medimg's pods are not matched through a namespace selector here
        namespace = {NAMESPACE_NAME: endpoint.namespace}
        return selector_matches(peer["namespaceSelector"], namespace) and selector_matches(
            peer.get("podSelector") or {}, endpoint.labels
        )
    if isinstance(endpoint, Pod):
        return False  # a bare podSelector selects pods of the policy's own namespace only
    return selector_matches(peer.get("podSelector") or {}, endpoint)


def _template_ports(template: Mapping[str, Any]) -> dict[str, int]:
    return {
        str(p["name"]): int(p["containerPort"])
        for c in (template.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
        if "name" in p
    }


def _allowed(
    policies: Sequence[Mapping[str, Any]],
    section: str,
    peers_key: str,
    peer: Endpoint,
    port: int,
    protocol: str,
    named: Mapping[str, int],
) -> bool:
    for policy in policies:
        for rule in (policy.get("spec") or {}).get(section) or []:
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            # An empty or missing list matches every peer, or every port.
            if peers and not any(_peer_matches(p, peer) for p in peers):
                continue
            if not ports or any(_port_matches(p, port, protocol, named) for p in ports):
                return True
    return False


def ingress_allowed(
    objects: Objects,
    source: Endpoint,
    target: Mapping[str, Any],
    port: int | str,
    protocol: str = "TCP",
) -> bool:
    """Tells whether source may connect to port of a pod of the template target.

    Only the target's ingress is judged (the source's egress is `egress_allowed`'s). A port
    name is resolved against the target's container ports first; a name it does not
    declare reaches nothing.
    """
    labels = (target.get("metadata") or {}).get("labels") or {}
    named = _template_ports(target)
    number = named.get(port) if isinstance(port, str) else port
    if number is None:
        return False
    policies = [
        obj
        for obj in objects
        if obj.get("kind") == "NetworkPolicy" and _selects(obj, "Ingress", labels)
    ]
    if not policies:
        return True  # a pod no policy selects is open
    return _allowed(policies, "ingress", "from", source, number, protocol, named)


def egress_allowed(
    objects: Objects,
    source: Mapping[str, Any],
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Tells whether a pod of the template source may connect out to destination's port.

    Only the source's egress is judged (the destination's ingress is `ingress_allowed`'s).
    Ports in egress rules are numbers here: a named port would be the destination's.
    """
    labels = (source.get("metadata") or {}).get("labels") or {}
    policies = [
        obj
        for obj in objects
        if obj.get("kind") == "NetworkPolicy" and _selects(obj, "Egress", labels)
    ]
    if not policies:
        return True  # a pod no egress policy selects may reach anything
    return _allowed(policies, "egress", "to", destination, port, protocol, {})


def reaches(
    objects: Objects,
    source: Mapping[str, Any],
    target: Mapping[str, Any],
    port: int | str,
) -> bool:
    """Tells whether a pod of template source reaches port of a pod of template target.

    Both ends must allow it: the source's egress and the target's ingress.
    """
    source_labels = (source.get("metadata") or {}).get("labels") or {}
    number = _template_ports(target).get(port) if isinstance(port, str) else port
    if number is None:
        return False
    target_labels = (target.get("metadata") or {}).get("labels") or {}
    return egress_allowed(objects, source, target_labels, number) and ingress_allowed(
        objects, source_labels, target, number
    )
