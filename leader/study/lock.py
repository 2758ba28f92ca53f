"""One driver per study folder. The lock names its owner (pid, host) and carries a heartbeat,
so a stage left "running" by a driver that was killed is recognised as abandoned and resumed,
while a live driver (here or on another host) is never run over."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from leader.errors import ConfigError

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0  # a heartbeat older than this means the owner is gone (any host)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_state(info: dict, now: float | None = None) -> str:
    """'live' or why the recorded owner is gone ('dead pid ...', 'no heartbeat for ...')."""
    now = time.time() if now is None else now
    age = now - float(info.get("heartbeat", 0))
    if info.get("host") == socket.gethostname():
        if not _alive(int(info.get("pid", -1))):
            return f"its driver (pid {info.get('pid')} on {info.get('host')}) is dead"
        if int(info.get("pid", -1)) == os.getpid():
            return "live"
    if age > STALE_AFTER_S:
        return f"its driver (pid {info.get('pid')} on {info.get('host')}) sent no heartbeat for {age:.0f} s"
    return "live"


class StudyLock:
    """Context manager: take the lock (refusing a live owner), heartbeat while held, release."""

    def __init__(self, study_dir: Path, echo=print):
        self.path = Path(study_dir) / "driver.lock"
        self.echo = echo
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(
            json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "started": self.started, "heartbeat": time.time()}
            )
        )
        os.replace(tmp, self.path)

    def acquire(self) -> None:
        if self.path.is_file():
            try:
                info = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError):
                info = {}
            st = owner_state(info)
            if st == "live":
                raise ConfigError(
                    f"{self.path.parent}: the study is being run by pid {info.get('pid')} on "
                    f"{info.get('host')} (heartbeat {time.time() - info.get('heartbeat', 0):.0f} s ago); "
                    f"wait for it or stop it (remove {self.path} only if that host is gone)"
                )
            self.echo(f"  stale lock: {st}; its unfinished stages are resumed")
        self.started = time.time()
        self._write()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="study-lock-heartbeat")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        try:
            info = json.loads(self.path.read_text())
            if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
                self.path.unlink()
        except (OSError, json.JSONDecodeError):
            pass

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
