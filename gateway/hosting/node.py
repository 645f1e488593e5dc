"""Functions in other languages: local subprocesses, reached over HTTP like any subscriber.

Why a subprocess: a Node.js function must run in its own runtime, the same Knative
`faas-js-runtime` its image runs, or `cemesh up` would test something else than what deploys.
Each one is started on a free loopback port and its URL registered in
`MeshTransport.remote_functions`, so the dispatcher delivers to it exactly as to a Python
function: binary mode, `Prefer: reply`, a CloudEvent in the answer goes back into the broker.

Why dependencies are installed here too: `node_modules/` is not committed. `make install` runs
`python -m gateway.hosting.node install functions`; when it has not (or package.json changed since),
`cemesh up` runs `npm ci` once, under a lock so that concurrent meshes do not race. When node or
npm is missing, or the install fails (no registry), the function is skipped with one warning
line naming it and the triggers routed to it. Those deliveries then fail as to any unreachable
subscriber (retried, then dead-lettered): reported, never dropped in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import aiohttp

from brokers.triggers import TriggerSpec
from gateway.hosting.python import FunctionProject, discover

log = logging.getLogger(__name__)

SUPPORTED: Final = frozenset({"node"})
RUNTIME_BIN: Final = Path("node_modules/faas-js-runtime/bin/cli.js")
INSTALL_TIMEOUT: Final = 300.0
STARTUP_TIMEOUT: Final = 30.0
STOP_GRACE: Final = 5.0
PR_SET_PDEATHSIG: Final = 1  # <sys/prctl.h>


class Unavailable(Exception):
    """A function cannot run here; the message says why, in one line."""


@dataclass(slots=True)
class RunningFunction:
    project: FunctionProject
    process: asyncio.subprocess.Process
    url: str
    output: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class Tools:
    """The executables a Node.js function needs, found on PATH (None when absent)."""

    node: str | None
    npm: str | None

    @classmethod
    def from_path(cls, path: str | None = None) -> Tools:
        return cls(shutil.which("node", path=path), shutil.which("npm", path=path))


@dataclass
class ProcessHost:
    """Starts, routes and stops the mesh's non-Python functions."""

    projects: Sequence[FunctionProject]
    triggers: Sequence[TriggerSpec] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    env_for: Callable[[FunctionProject], Mapping[str, str]] | None = None
    tools: Tools = field(default_factory=Tools.from_path)
    startup_timeout: float = STARTUP_TIMEOUT
    running: dict[str, RunningFunction] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    async def start(self, routes: MutableMapping[str, str]) -> None:
        """Start every non-Python function; register each URL in `routes` once it is ready."""
        for project in self.projects:
            if project.runtime == "python":
                continue
            try:
                running = await self._start(project)
            except Unavailable as exc:
                self._skip(project, str(exc))
                continue
            self.running[project.name] = running
            routes[project.name] = running.url
            log.info("function %s (%s) runs at %s", project.name, project.runtime, running.url)

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM (faas-js-runtime then calls the function's shutdown), SIGKILL after `grace`."""
        running, self.running = list(self.running.values()), {}
        await asyncio.gather(*(_terminate(item, grace) for item in running))

    def _skip(self, project: FunctionProject, reason: str) -> None:
        self.skipped[project.name] = reason
        routed = [
            t.key
            for t in self.triggers
            if project.name in (t.subscriber.function, _dead_letter_function(t))
        ]
        to = f"; triggers routed to it will fail: {', '.join(routed)}" if routed else ""
        log.warning("function %s (%s) skipped: %s%s", project.name, project.runtime, reason, to)

    async def _start(self, project: FunctionProject) -> RunningFunction:
        if project.runtime not in SUPPORTED:
            raise Unavailable(f"runtime '{project.runtime}' cannot run locally (supported: node)")
        if self.tools.node is None:
            raise Unavailable("node is not on PATH (install Node.js 20 or later)")
        entry = entry_point(project.path)
        await ensure_dependencies(project.path, self.tools)
        port = free_port()
        env = {
            **os.environ,
            **project.spec.envs,
            **self.extra_env,
            "CEMESH_FUNCTION": project.name,
        }
        if self.env_for is not None:
            env.update(self.env_for(project))
        env["FUNC_PORT"] = str(port)  # faas-js-runtime reads it before --port
        process = await asyncio.create_subprocess_exec(
            self.tools.node,
            str(RUNTIME_BIN),
            entry,
            "--port",
            str(port),
            cwd=project.path,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: Ctrl-C reaches the mesh, which drains deliveries, then stops it.
            start_new_session=True,
            # and it ends with the mesh whatever ends the mesh (SIGKILL, a crash): no orphans
            preexec_fn=_die_with_parent,
        )
        running = RunningFunction(project, process, f"http://127.0.0.1:{port}/")
        running.output = asyncio.create_task(_relay(project.name, process))
        try:
            await _wait_ready(running, self.startup_timeout)
        except Unavailable:
            await _terminate(running, 1.0)
            raise
        return running


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started it ends (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def entry_point(directory: Path) -> str:
    """package.json's `main` (faas-js-runtime loads that file), index.js by default."""
    package = directory / "package.json"
    if not package.exists():
        raise Unavailable("package.json is missing")
    try:
        main = json.loads(package.read_text("utf-8")).get("main") or "index.js"
    except (OSError, ValueError) as exc:
        raise Unavailable(f"package.json cannot be read: {exc}") from None
    if not (directory / main).exists():
        raise Unavailable(f"entry point {main} is missing")
    return f"./{main}"


def needs_install(directory: Path) -> bool:
    """True when node_modules is absent or older than package.json / package-lock.json."""
    marker = directory / "node_modules" / ".package-lock.json"
    if not (directory / RUNTIME_BIN).exists() or not marker.exists():
        return True
    installed = marker.stat().st_mtime
    return any(
        (directory / name).exists() and (directory / name).stat().st_mtime > installed
        for name in ("package.json", "package-lock.json")
    )


async def ensure_dependencies(directory: Path, tools: Tools) -> None:
    """`npm ci` (or `npm install` without a lock file) when node_modules is missing or stale."""
    if not needs_install(directory):
        return
    if tools.npm is None:
        raise Unavailable("its node_modules is not installed and npm is not on PATH")
    async with _install_lock(directory):
        if not needs_install(directory):
            return  # another mesh installed it while we waited
        verb = "ci" if (directory / "package-lock.json").exists() else "install"
        log.info("installing npm dependencies of %s (npm %s)", directory, verb)
        command = [
            tools.npm, verb, "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=directory,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), INSTALL_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise Unavailable(f"npm {verb} did not finish in {INSTALL_TIMEOUT:g}s") from None
        if process.returncode != 0:
            raise Unavailable(f"npm {verb} failed: {npm_error(out.decode('utf-8', 'replace'))}")


def npm_error(output: str) -> str:
    """The informative part of npm's error output (`code ENOTFOUND; request to ... failed`)."""
    lines = []
    for line in output.splitlines():
        text = line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        if text and text != line.strip() and "complete log of this run" not in text:
            lines.append(text)
    return "; ".join(lines[:3]) or (output.strip().splitlines() or ["no output"])[-1]


@contextlib.asynccontextmanager
async def _install_lock(directory: Path) -> AsyncIterator[None]:
    handle = await asyncio.to_thread(_open_lock_file, directory)
    with handle:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _open_lock_file(directory: Path) -> IO[str]:
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    return (Path(tempfile.gettempdir()) / f"cemesh-npm-{digest}.lock").open("a")


async def _wait_ready(running: RunningFunction, timeout: float) -> None:
    url = running.url + "health/readiness"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if running.process.returncode is not None:
                raise Unavailable(f"it exited with status {running.process.returncode} on start")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise Unavailable(f"not ready within {timeout:g}s")


async def _relay(name: str, process: asyncio.subprocess.Process) -> None:
    """The function's own output, as log lines naming it."""
    if process.stdout is None:
        return
    async for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            log.info("%s: %s", name, line)


async def _terminate(running: RunningFunction, grace: float) -> None:
    process = running.process
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if running.output is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running.output, 1.0)


def _dead_letter_function(trigger: TriggerSpec) -> str | None:
    sink = trigger.delivery.dead_letter_sink
    return sink.function if sink is not None else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def install_all(functions: Path, tools: Tools | None = None) -> list[str]:
    """Install the npm dependencies of every Node.js function; returns one line per problem."""
    tools = tools or Tools.from_path()
    problems: list[str] = []
    for project in discover(functions):
        if project.runtime not in SUPPORTED:
            continue
        try:
            asyncio.run(ensure_dependencies(project.path, tools))
        except Unavailable as exc:
            problems.append(f"{project.name}: {exc}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m gateway.hosting.node install [FUNCTIONS_DIR]` (what `make install` runs).

    Warns instead of failing: a Python-only user needs neither node nor npm.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "install":
        print("usage: python -m gateway.hosting.node install [FUNCTIONS_DIR]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    directory = Path(args[1] if len(args) > 1 else "functions")
    for line in install_all(directory):
        print(f"cemesh: warning: function {line}; `cemesh up` will skip it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
