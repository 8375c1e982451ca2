"""Tests of the restart policy, the prefixed output and the supervisor with real children."""

from __future__ import annotations

import asyncio
import io
import os
import sys

import pytest

from medimg_cli.supervisor import (
    ChildSpec,
    LinePrinter,
    RestartPolicy,
    Supervisor,
    colour_wanted,
    decide_restart,
    describe_exit,
    format_line,
)

POLICY = RestartPolicy(
    first_delay_s=0.5, multiplier=2.0, max_delay_s=3.0, stable_after_s=30.0, max_failures=5
)


def test_it_waits_longer_after_each_quick_failure() -> None:
    failures = 0
    delays = []
    for _ in range(4):
        decision = decide_restart(POLICY, failures_in_a_row=failures, uptime_s=1.0)
        failures = decision.failures_in_a_row
        delays.append(decision.delay_s)
    assert delays == [0.5, 1.0, 2.0, 3.0]


def test_it_gives_up_at_the_last_quick_failure() -> None:
    decision = decide_restart(POLICY, failures_in_a_row=4, uptime_s=1.0)
    assert decision.give_up
    assert decision.failures_in_a_row == 5


def test_it_forgives_past_failures_after_a_stable_run() -> None:
    decision = decide_restart(POLICY, failures_in_a_row=4, uptime_s=30.0)
    assert decision == decide_restart(POLICY, failures_in_a_row=0, uptime_s=0.1)
    assert decision.delay_s == 0.5
    assert not decision.give_up


def test_it_describes_exits_and_signals() -> None:
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL"


def test_it_pads_the_prefix_and_colours_it_only_when_asked() -> None:
    assert format_line("web", "GET /", width=7, style=None) == "web     | GET /"
    assert format_line("web", "", width=3, style=None) == "web |"
    assert format_line("web", "hi", width=3, style="36") == "\x1b[36mweb |\x1b[0m hi"


def test_it_colours_only_a_terminal_without_no_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert colour_wanted(Terminal(), {})
    assert not colour_wanted(Terminal(), {"NO_COLOR": "1"})
    assert not colour_wanted(io.StringIO(), {})


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def _wait_for_text(out: io.StringIO, text: str, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while text not in out.getvalue():
            await asyncio.sleep(0.02)


SLEEPER = """
import signal, sys, time
def bye(*_):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
time.sleep(60)
"""

STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


async def test_it_restarts_a_child_that_dies_with_backoff_then_gives_up() -> None:
    out = io.StringIO()
    child = ChildSpec(
        "flaky", _python("import time; print('up', flush=True); time.sleep(0.2)"), os.environ
    )
    policy = RestartPolicy(first_delay_s=0.05, stable_after_s=10.0, max_failures=3)
    supervisor = Supervisor([child], LinePrinter(out, ["flaky"], colour=False), policy=policy)

    outcome = await asyncio.wait_for(supervisor.run(), 15)

    text = out.getvalue()
    assert text.count("flaky  | up") == 3
    assert "medimg | flaky exited with code 0; restarting in 0.05s" in text
    assert "medimg | flaky exited with code 0; restarting in 0.1s" in text
    assert outcome.gave_up_on == "flaky"
    assert "failed 3 times in a row" in outcome.message


async def test_it_stops_a_running_child_with_sigterm() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [ChildSpec("sleeper", _python(SLEEPER), os.environ, grace_s=10.0)],
        LinePrinter(out, ["sleeper"], colour=False),
    )
    run = asyncio.create_task(supervisor.run())
    await _wait_for_text(out, "ready")

    supervisor.stop()
    outcome = await asyncio.wait_for(run, 5)

    assert outcome.clean
    assert "sleeper | got SIGTERM" in out.getvalue()


async def test_it_kills_a_child_that_ignores_sigterm_after_its_grace() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [ChildSpec("stubborn", _python(STUBBORN), os.environ, grace_s=0.3)],
        LinePrinter(out, ["stubborn"], colour=False),
    )
    run = asyncio.create_task(supervisor.run())
    await _wait_for_text(out, "ready")

    supervisor.stop()
    outcome = await asyncio.wait_for(run, 5)

    assert outcome.clean
    assert "stubborn did not stop within 0.3s; killing it" in out.getvalue()


async def test_a_second_stop_kills_at_once() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [ChildSpec("stubborn", _python(STUBBORN), os.environ, grace_s=60.0)],
        LinePrinter(out, ["stubborn"], colour=False),
    )
    run = asyncio.create_task(supervisor.run())
    await _wait_for_text(out, "ready")

    supervisor.stop()
    await asyncio.sleep(0.1)
    supervisor.stop()
    outcome = await asyncio.wait_for(run, 5)

    assert outcome.clean
    assert "killing everything now" in out.getvalue()


async def test_it_relays_stdout_and_stderr_lines_behind_the_name() -> None:
    out = io.StringIO()
    code = (
        "import sys, time\n"
        "print('hello\\nworld', flush=True)\n"
        "print('oops', file=sys.stderr, flush=True)\n"
        "sys.stdout.write('no newline'); sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor(
        [
            ChildSpec("talker", _python(code), os.environ, grace_s=5.0),
            ChildSpec("web", _python(SLEEPER), os.environ, grace_s=5.0),
        ],
        LinePrinter(out, ["talker", "web"], colour=False),
    )
    run = asyncio.create_task(supervisor.run())
    await _wait_for_text(out, "talker | oops")
    await _wait_for_text(out, "web    | ready")

    supervisor.stop()
    await asyncio.wait_for(run, 5)

    lines = out.getvalue().splitlines()
    assert "talker | hello" in lines
    assert "talker | world" in lines
    assert "talker | no newline" in lines
    assert "web    | got SIGTERM" in lines


async def test_a_child_that_cannot_start_counts_as_a_failure() -> None:
    out = io.StringIO()
    policy = RestartPolicy(first_delay_s=0.01, max_failures=2)
    supervisor = Supervisor(
        [ChildSpec("ghost", ("/nonexistent/medimg-test-binary",), os.environ)],
        LinePrinter(out, ["ghost"], colour=False),
        policy=policy,
    )

    outcome = await asyncio.wait_for(supervisor.run(), 5)

    assert outcome.gave_up_on == "ghost"
    assert "ghost could not be started" in out.getvalue()


@pytest.mark.parametrize("name", ["a", "a-much-longer-name"])
def test_the_supervisor_prefix_is_as_wide_as_the_longest_name(name: str) -> None:
    out = io.StringIO()
    printer = LinePrinter(out, [name], colour=False)
    printer.say("x")
    printer.line(name, "y")
    first, second = out.getvalue().splitlines()
    assert first.index("|") == second.index("|")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
async def test_helpers_a_child_started_do_not_outlive_it() -> None:
    out = io.StringIO()
    # The child leaves a helper behind that holds its output pipe and would run on for 60 s.
    code = (
        "import subprocess, sys\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('helper', helper.pid, flush=True)\n"
    )
    policy = RestartPolicy(first_delay_s=0.01, max_failures=1)
    supervisor = Supervisor(
        [ChildSpec("parent", _python(code), os.environ)],
        LinePrinter(out, ["parent"], colour=False),
        policy=policy,
    )

    outcome = await asyncio.wait_for(supervisor.run(), 5)

    assert outcome.gave_up_on == "parent"
    helper_pid = int(out.getvalue().split("helper ")[1].split()[0])
    # SIGKILL lands asynchronously; give the kernel a moment before calling it a leak.
    async with asyncio.timeout(2):
        while _is_running(helper_pid):
            await asyncio.sleep(0.02)


def _is_running(pid: int) -> bool:
    """Tells whether pid runs; a killed process whose new parent has not reaped it does not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
