"""Real `cratedigger` processes for the tests (workers, bots, CLI runs), each with its own log file."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

CRATEDIGGER = Path(sys.executable).with_name("cratedigger")


def process_env(**settings: object) -> dict[str, str]:
    """The environment of a child process: ours, the repository importable (tests' own task functions),
    and the given settings as CRATEDIGGER_* / DISCORD_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRATEDIGGER_", "DISCORD_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update({name: str(value) for name, value in settings.items()})
    return env


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _logged(self, needle: str, deadline: float) -> bool:
        if needle in self.text():
            return True
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.log.name} exited ({self.popen.returncode}) before logging "
                               f"{needle!r}:\n{self.text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.log.name} did not log {needle!r}:\n{self.text()[-3000:]}")
        return False

    async def wait_for_log(self, needle: str, *, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._logged(needle, deadline):
            await asyncio.sleep(0.1)

    def block_until_logged(self, needle: str, *, timeout: float = 120.0) -> None:
        """`wait_for_log` for synchronous fixtures."""
        deadline = time.monotonic() + timeout
        while not self._logged(needle, deadline):
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the process and its children (its worker pool), as a lost machine would."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.popen.returncode)


def start(args: list[str], env: dict[str, str], log: Path, *, module: str | None = None) -> Process:
    """`cratedigger ARGS...` (or `python -m MODULE ARGS...`) in its own process group."""
    command = [sys.executable, "-m", module, *args] if module else [str(CRATEDIGGER), *args]
    handle = open(log, "wb")
    try:
        popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        handle.close()
    return Process(popen, log)


def start_worker(log: Path, data_dir: Path, broker_url: str, **settings: object) -> Process:
    env = process_env(CRATEDIGGER_BROKER_URL=broker_url, CRATEDIGGER_DATA_DIR=data_dir,
                      CRATEDIGGER_LOG_LEVEL="INFO", **settings)
    return start(["worker"], env, log)
