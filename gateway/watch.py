"""Configuration applied live: `cemesh up` watches `--config` and every function's `func.yaml`
(watchfiles: inotify on Linux, one Rust thread, no polling) and reloads on SIGHUP.

A change is debounced for `debounce` milliseconds (an editor writes a file in several steps),
then the reconciler loads the files and applies them: within about half a second of the write.
Other files of a function project (its code) are not reloaded: hosting a changed function
again in this process is not safe (its imported modules stay cached), so one line says that it
needs a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from watchfiles import Change, awatch

from gateway.reconciler import Reconciler

log = logging.getLogger(__name__)
logging.getLogger("watchfiles").setLevel(logging.WARNING)  # its "N changes detected" is noise
CONFIG_SUFFIXES: Final = (".yaml", ".yml")
IGNORED_PARTS: Final = frozenset({"__pycache__", "node_modules", ".venv", ".git", ".func"})


class ConfigWatcher:
    def __init__(
        self, reconciler: Reconciler, config: Path, functions: Path, *, debounce: int = 150
    ) -> None:
        self.reconciler = reconciler
        self.config = config.resolve()
        self.functions = functions.resolve()
        self.debounce = debounce
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()

    def relevant(self, change: Change, path: str) -> bool:
        """Files a reload or a restart note is about (editors' temporary files are not)."""
        target = Path(path)
        if any(part in IGNORED_PARTS or part.startswith(".") for part in target.parts[-3:]):
            return False
        if _under(target, self.config):
            return target.suffix in CONFIG_SUFFIXES
        return _under(target, self.functions) and not target.name.endswith(("~", ".swp"))

    async def run(self) -> None:
        paths = [p for p in (self.config, self.functions) if p.is_dir()]
        if not paths:
            return
        async for changes in awatch(
            *paths,
            watch_filter=self.relevant,
            debounce=self.debounce,
            step=25,
            stop_event=self._stop,
            ignore_permission_denied=True,
        ):
            await self._changed(path for _, path in changes)

    async def _changed(self, paths: Iterable[str]) -> None:
        reload: list[str] = []
        for raw in sorted(set(paths)):
            path = Path(raw)
            if _under(path, self.config) or path.name == "func.yaml":
                reload.append(raw)
                continue
            project = path.relative_to(self.functions).parts[0]
            log.warning("function %s changed (%s): restart cemesh up to apply it", project, raw)
        if reload:
            await self.reconciler.reload(", ".join(reload))

    def on_sighup(self) -> None:
        """SIGHUP reloads at once and never stops the process."""
        task = asyncio.get_running_loop().create_task(self.reconciler.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def install_sighup(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_sighup)

    def stop(self) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGHUP)


def _under(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents
