"""Long-running processes of the local stack (`feedrank stack`): start one in its own process
group with its output in a log file and a pid file beside it, wait until it answers, stop it
and everything it started.

A pid file records the process's start time as well as its pid, so that a pid the kernel has
since given to another process is never mistaken for ours (nor signalled).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StackError(RuntimeError):
    """A service that could not start, answer or stop; the message names it and its port."""


@dataclasses.dataclass(frozen=True)
class Running:
    """What a pid file says about a started service."""

    service: str
    pid: int
    port: int | None
    started: float  # the kernel's start time of the process (clock ticks since boot)
    log: str

    @property
    def alive(self) -> bool:
        return _start_time(self.pid) == self.started


def _start_time(pid: int) -> float | None:
    """The process's start time (field 22 of /proc/<pid>/stat), None when it is gone or a
    zombie; it survives exec (spark-class becomes java), unlike the command line."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] == "Z":  # exited, not yet reaped
        return None
    return float(fields[19])


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on (or holds) host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests and throwaway stacks)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_pid_file(path: Path) -> Running | None:
    try:
        return Running(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def start(
    service: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    pid_file: Path,
    port: int | None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Running:
    """Start `argv` in a new process group (so that stopping it stops what it spawned), its
    stdout and stderr appended to `log`, and record it in `pid_file`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    extra = {"user": user, "group": user, "extra_groups": []} if user else {}
    with log.open("ab") as out:
        out.write(f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} start {service}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **extra,
        )
    started = _start_time(proc.pid)
    running = Running(service, proc.pid, port, started or 0.0, str(log))
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(running)))
    os.replace(tmp, pid_file)
    return running


def wait_until(
    running: Running,
    healthy: Callable[[], bool],
    timeout_s: float,
    what: str,
) -> None:
    """Poll `healthy` until it answers True; raise StackError naming the service, its port and
    the end of its log if the process exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if healthy():
                return
        except Exception:  # not up yet (refused, reset, 503, bad JSON): ask again
            pass
        if not running.alive:
            raise StackError(f"{what} exited while starting{_tail(running.log)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not answer within {timeout_s:.0f} s{_tail(running.log)}")
        time.sleep(0.5)


def _tail(log: str, lines: int = 15) -> str:
    try:
        text = Path(log).read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f" (no log at {log})"
    return f"; the end of {log}:\n" + "\n".join("    " + line for line in text)


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (pid -> child pids)."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _tree(pid: int) -> list[tuple[int, float | None]]:
    """pid and its descendants with their start times (a process that left the group, such
    as a task that started a session of its own, is still found here)."""
    children, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append((p, _start_time(p)))
        todo.extend(children.get(p, []))
    return out


def _reap(pid: int) -> None:
    """Collect the exit of a service this process started itself (a test's, or `up`'s own
    cleanup): an unreaped zombie still counts as a member of its process group."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still a member
        return True
    return True


def stop(running: Running, stop_signal: int = signal.SIGTERM, timeout_s: float = 30) -> None:
    """Stop a started service: `stop_signal` to it, then (past `timeout_s`) SIGKILL to its
    process group and to every descendant; returns once none of them is left."""
    if not running.alive:
        _kill_group(running.pid, signal.SIGKILL)  # leftovers of a service that died
        return
    tree = _tree(running.pid)
    os.kill(running.pid, stop_signal)
    if stop_signal != signal.SIGINT:  # postgres: its postmaster stops its own children
        _kill_group(running.pid, stop_signal)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (group_alive(running.pid) or _any_alive(tree[1:])):
        time.sleep(0.2)
    _kill_group(running.pid, signal.SIGKILL)
    for pid, began in tree[1:]:
        if began is not None and _start_time(pid) == began:  # not a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_alive(running.pid):
        time.sleep(0.1)


def _any_alive(tree: list[tuple[int, float | None]]) -> bool:
    return any(began is not None and _start_time(pid) == began for pid, began in tree)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
