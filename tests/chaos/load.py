"""Callers that keep the gateway busy and count how every call ended."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc


@dataclass
class Outcomes:
    """How the calls of a load ended: status code name -> count, and the latencies of OK."""

    codes: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, code: str, latency_s: float) -> None:
        with self.lock:
            self.codes[code] += 1
            if code == "OK":
                self.latencies_s.append(latency_s)

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    def describe(self) -> str:
        return ", ".join(f"{count} x {code}" for code, count in self.codes.most_common())


def diagnose_once(stub: pb_grpc.DiagnosisServiceStub, image: bytes, timeout_s: float) -> str:
    """Returns the status code name of one Diagnose call through the gateway."""
    try:
        stub.Diagnose(pb.DiagnoseRequest(disease="skin", image=image), timeout=timeout_s)
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def run_load(
    address: str,
    image: bytes,
    *,
    clients: int,
    until: Callable[[], bool],
    timeout_s: float = 30.0,
) -> Outcomes:
    """Calls Diagnose from `clients` threads, one call after another, until `until()` is true."""
    outcomes = Outcomes()

    def client() -> None:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.DiagnosisServiceStub(channel)
            while not until():
                started = time.monotonic()
                outcomes.add(diagnose_once(stub, image, timeout_s), time.monotonic() - started)

    with ThreadPoolExecutor(clients) as pool:
        for running in [pool.submit(client) for _ in range(clients)]:
            running.result()
    return outcomes
