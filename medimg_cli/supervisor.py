"""Runs child processes side by side: relays their output, restarts them, stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

SUPERVISOR_NAME = "medimg"

# A line longer than this is relayed in pieces rather than held in memory whole.
_MAX_LINE_BYTES = 64 * 1024
# How long a dead child's output may still trickle in before it is dropped.
_DRAIN_S = 2.0


@dataclass(frozen=True)
class RestartPolicy:
    """When a child that died is started again, and when the supervisor gives up on it.

    Delays grow as first_delay_s * multiplier ** (n - 1) for the n-th failure in a row,
    capped at max_delay_s. A child that stayed up for stable_after_s counts as healthy:
    its next failure is the first of a new row. At max_failures in a row the supervisor
    gives up and stops everything, since a stack with a component missing only looks up.
    """

    first_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 10.0
    stable_after_s: float = 30.0
    max_failures: int = 5


@dataclass(frozen=True)
class RestartDecision:
    """What to do about one exit: the failures in a row so far, and the delay or None."""

    failures_in_a_row: int
    delay_s: float | None

    @property
    def give_up(self) -> bool:
        """Tells whether the child should stay dead."""
        return self.delay_s is None


def decide_restart(
    policy: RestartPolicy, *, failures_in_a_row: int, uptime_s: float
) -> RestartDecision:
    """Returns what to do after a child that ran for uptime_s died."""
    failures = 1 if uptime_s >= policy.stable_after_s else failures_in_a_row + 1
    if failures >= policy.max_failures:
        return RestartDecision(failures, None)
    delay = policy.first_delay_s * policy.multiplier ** (failures - 1)
    return RestartDecision(failures, min(policy.max_delay_s, delay))


def describe_exit(returncode: int) -> str:
    """Returns "exited with code 1" or "was killed by SIGSEGV"."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


_PALETTE = ("36", "33", "35", "32", "34", "96", "93", "95")
_SUPERVISOR_STYLE = "1"


def format_line(name: str, text: str, *, width: int, style: str | None) -> str:
    """Returns text behind its padded name: "gateway | text", the name styled when asked."""
    prefix = f"{name:<{width}} |"
    if style is not None:
        prefix = f"\x1b[{style}m{prefix}\x1b[0m"
    return f"{prefix} {text}" if text else prefix


class LinePrinter:
    """Writes lines prefixed by the name of the program that wrote them."""

    def __init__(self, stream: TextIO, names: Iterable[str], *, colour: bool) -> None:
        self._stream = stream
        known = [SUPERVISOR_NAME, *names]
        self._width = max(len(name) for name in known)
        self._styles: dict[str, str] = {}
        if colour:
            self._styles = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(known[1:])}
            self._styles[SUPERVISOR_NAME] = _SUPERVISOR_STYLE
        self._broken = False

    def line(self, name: str, text: str) -> None:
        """Writes one line of name's output."""
        if self._broken:
            return
        styled = format_line(name, text, width=self._width, style=self._styles.get(name))
        try:
            self._stream.write(styled + "\n")
            self._stream.flush()
        except BrokenPipeError:
            # Whoever read our output (`medimg up | head`) is gone; the stack keeps running.
            self._broken = True

    def say(self, text: str) -> None:
        """Writes one line of the supervisor's own."""
        self.line(SUPERVISOR_NAME, text)


def colour_wanted(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Tells whether to colour prefixes: only on a terminal, and never with NO_COLOR set."""
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


@dataclass(frozen=True)
class ChildSpec:
    """One program to keep running: its command line, its whole environment, its grace."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    grace_s: float = 10.0


@dataclass(frozen=True)
class Outcome:
    """How a supervisor's run ended: a requested stop, or a child it gave up on."""

    gave_up_on: str | None
    message: str

    @property
    def clean(self) -> bool:
        """Tells whether the run ended because a stop was asked for."""
        return self.gave_up_on is None


class Supervisor:
    """Keeps children running until `stop()`; see RestartPolicy for what happens on a death."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        printer: LinePrinter,
        *,
        policy: RestartPolicy | None = None,
    ) -> None:
        self._children = tuple(children)
        self._printer = printer
        self._policy = policy or RestartPolicy()
        self._stopping = asyncio.Event()
        self._killing = asyncio.Event()
        self._gave_up: Outcome | None = None

    def stop(self) -> None:
        """Asks every child to stop (SIGTERM, then SIGKILL after its grace); again: kill now."""
        if self._stopping.is_set():
            if not self._killing.is_set():
                self._printer.say("killing everything now")
            self._killing.set()
            return
        self._stopping.set()

    async def run(self) -> Outcome:
        """Runs the children until stop() or until one keeps failing; returns how it ended."""
        tasks = [asyncio.create_task(self._keep_running(child)) for child in self._children]
        try:
            await asyncio.gather(*tasks)
        finally:
            # A bug in one child's task must not leave the other children orphaned.
            self._stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._gave_up is not None:
            return self._gave_up
        return Outcome(None, "stopped")

    async def _keep_running(self, child: ChildSpec) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping.is_set():
            started = loop.time()
            returncode = await self._run_once(child)
            if returncode is None:
                return
            decision = decide_restart(
                self._policy, failures_in_a_row=failures, uptime_s=loop.time() - started
            )
            failures = decision.failures_in_a_row
            if decision.delay_s is None:
                self._give_up(child, returncode, failures)
                return
            self._printer.say(
                f"{child.name} {describe_exit(returncode)}; restarting in {decision.delay_s:g}s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), decision.delay_s)

    def _give_up(self, child: ChildSpec, returncode: int, failures: int) -> None:
        times = "once" if failures == 1 else f"{failures} times in a row"
        message = (
            f"{child.name} {describe_exit(returncode)}; it failed {times} within "
            f"{self._policy.stable_after_s:g}s of starting, so medimg gives up on it "
            f"(its output is above) and stops everything"
        )
        self._printer.say(message)
        if self._gave_up is None:
            self._gave_up = Outcome(child.name, message)
        self._stopping.set()

    async def _run_once(self, child: ChildSpec) -> int | None:
        """Runs child once; returns its exit code, or None when it was stopped on request."""
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _ChildProtocol(child.name, self._printer),
                *child.argv,
                env=dict(child.env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Its own process group: Ctrl-C in the terminal reaches only the supervisor,
                # which then stops each child the same way, and a child's helpers stop with it.
                process_group=0,
            )
        except OSError as exc:
            self._printer.say(f"{child.name} could not be started: {exc}")
            return 127
        pid = transport.get_pid()
        try:
            stop_asked = asyncio.create_task(self._stopping.wait())
            first: set[asyncio.Future[Any]] = {protocol.exited, stop_asked}
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            stop_asked.cancel()
            stopped = self._stopping.is_set()
            if stopped and not protocol.exited.done():
                await self._terminate(child, pid, protocol.exited)
            # Helpers the child started would otherwise outlive it, holding its port and pipe.
            _signal_group(pid, signal.SIGKILL)
            await asyncio.wait({protocol.output_closed}, timeout=_DRAIN_S)
        finally:
            transport.close()
        returncode = transport.get_returncode()
        return None if stopped or returncode is None else returncode

    async def _terminate(self, child: ChildSpec, pid: int, exited: asyncio.Future[None]) -> None:
        _signal_group(pid, signal.SIGTERM)
        kill_asked = asyncio.create_task(self._killing.wait())
        first: set[asyncio.Future[Any]] = {exited, kill_asked}
        await asyncio.wait(first, timeout=child.grace_s, return_when=asyncio.FIRST_COMPLETED)
        kill_asked.cancel()
        if not exited.done():
            if not self._killing.is_set():
                self._printer.say(
                    f"{child.name} did not stop within {child.grace_s:g}s; killing it"
                )
            _signal_group(pid, signal.SIGKILL)
            await exited


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Relays one child's output line by line and tells when the child has exited.

    Process.wait() is not used: on Python 3.11 it returns only once every pipe is
    closed, which a helper process that inherited the pipe can delay forever.
    """

    def __init__(self, name: str, printer: LinePrinter) -> None:
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.output_closed: asyncio.Future[None] = loop.create_future()
        self._name = name
        self._printer = printer
        self._pending = b""

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        """Prints every complete line; a very long one is printed in pieces."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._printer.line(self._name, _decode(line))
        if len(self._pending) >= _MAX_LINE_BYTES:
            self._flush()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        """Prints a last line that had no newline."""
        self._flush()

    def process_exited(self) -> None:
        """Marks the child as exited, whether or not its output is closed yet."""
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """Marks the output as closed: the child exited and every pipe reached its end."""
        if not self.output_closed.done():
            self.output_closed.set_result(None)

    def _flush(self) -> None:
        if self._pending:
            self._printer.line(self._name, _decode(self._pending))
            self._pending = b""


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
