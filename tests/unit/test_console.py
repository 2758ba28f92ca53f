"""The console policy: library chatter is held back, anything that explains a failure is not."""

from __future__ import annotations

import threading
import types

import pytest

from leader import console


def test_captured_stdout_holds_chatter_and_replays_it_on_failure(capsys, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    with console.captured_stdout():
        print("DeepSpeed op built successfully")
    assert capsys.readouterr().out == ""
    with pytest.raises(RuntimeError), console.captured_stdout():
        print("ninja: build stopped")
        raise RuntimeError("build failed")
    assert "ninja: build stopped" in capsys.readouterr().out


def test_verbose_keeps_library_output(capsys, monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    with console.captured_stdout():
        print("DeepSpeed op built successfully")
    assert "built successfully" in capsys.readouterr().out
    assert console.quiet_env() == {}


def test_shutdown_exit_is_dropped_other_unraisables_are_not():
    seen = []
    hook = console._drop_exit_at_shutdown(seen.append)
    hook(types.SimpleNamespace(exc_value=SystemExit(1)))
    assert seen == []
    err = types.SimpleNamespace(exc_value=ValueError("real"))
    hook(err)
    assert seen == [err]


def test_ray_monitor_thread_crash_is_one_line_other_threads_keep_their_traceback(capsys):
    seen = []
    hook = console._one_line_for_ray_threads(seen.append)
    pgc = types.SimpleNamespace(
        thread=threading.Thread(name="PlacementGroupCleanerMonitor"),
        exc_type=TimeoutError,
        exc_value=TimeoutError("GCS"),
    )
    hook(pgc)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "TimeoutError: GCS" in out and seen == []
    thread = threading.Thread(name="feature-loader")
    mine = types.SimpleNamespace(thread=thread, exc_type=KeyError, exc_value=KeyError())
    hook(mine)
    assert seen == [mine]
