"""Which pod may open a TCP connection to which port, by the rendered NetworkPolicies.

A model of NetworkPolicy ingress within one namespace, enough for medimg's policies: pod
selectors (matchLabels and matchExpressions), named and numbered TCP ports. Peers with a
namespaceSelector or an ipBlock stand for traffic from outside the namespace and never
match a pod of it here. Egress is not modelled (medimg restricts none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tests.k8s.policy import selector_matches

Objects = Sequence[Mapping[str, Any]]


def _selects(policy: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes") or ["Ingress"]
    return "Ingress" in types and selector_matches(spec.get("podSelector") or {}, labels)


def _port_matches(rule_port: Mapping[str, Any], port: int, named: Mapping[str, int]) -> bool:
    if rule_port.get("protocol", "TCP") != "TCP":
        return False
    wanted = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return named.get(wanted) == port
    end = rule_port.get("endPort", wanted)
    return bool(wanted <= port <= end)


def _peer_matches(peer: Mapping[str, Any], source: Mapping[str, Any]) -> bool:
    if "namespaceSelector" in peer or "ipBlock" in peer:
        return False
    return selector_matches(peer.get("podSelector") or {}, source)


def ingress_allowed(
    objects: Objects, source: Mapping[str, Any], target: Mapping[str, Any], port: int | str
) -> bool:
    """Tells whether pods labelled source may connect to port of a pod of the template target.

    A port name is resolved against the target's container ports first; a name it does not
    declare reaches nothing.
    """
    labels = (target.get("metadata") or {}).get("labels") or {}
    named = {
        str(p["name"]): int(p["containerPort"])
        for c in (target.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
        if "name" in p
    }
    number = named.get(port) if isinstance(port, str) else port
    if number is None:
        return False
    policies = [
        obj for obj in objects if obj.get("kind") == "NetworkPolicy" and _selects(obj, labels)
    ]
    if not policies:
        return True  # a pod no policy selects is open
    for policy in policies:
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            peers = rule.get("from")
            ports = rule.get("ports")
            # An empty or missing list matches every source, or every port.
            if peers and not any(_peer_matches(p, source) for p in peers):
                continue
            if not ports or any(_port_matches(p, number, named) for p in ports):
                return True
    return False
