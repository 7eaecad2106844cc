"""Progress on stderr, and the work thread that lets Ctrl-C stop a compiled program at once."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import jax


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        del n

    def set_description_str(self, text: str) -> None:
        del text

    def close(self) -> None:
        pass


def _shows_progress(quiet: bool) -> bool:
    """Progress is drawn when not ``--quiet`` and both stdout and stderr are terminals."""
    if quiet:
        return False
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return (
        f"{seconds // 60:d}:{seconds % 60:02d}"
        if seconds < 3600
        else f"{seconds // 3600:d}h{seconds % 3600 // 60:02d}"
    )


class _Bar:
    """One line of progress on stderr, redrawn in place at most every 0.2 s:
    ``desc: 42% 2520/6001 step [0:03 elapsed, 0:04 left]`` (the time left from the rate so far)."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = max(1, total), desc, unit
        self.n = 0
        self.start = time.perf_counter()
        self.last = 0.0
        self.width = 0

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        elapsed = now - self.start
        left = "?" if self.n == 0 else _clock(elapsed * (self.total - self.n) / self.n)
        line = (
            f"{self.desc}: {100 * self.n / self.total:3.0f}% {self.n}/{self.total} {self.unit} "
            f"[{_clock(elapsed)} elapsed, {left} left]"
        )
        columns = shutil.get_terminal_size((100, 24)).columns
        line = line[: max(columns - 1, 40)]
        sys.stderr.write("\r" + line + " " * max(0, self.width - len(line)))
        sys.stderr.flush()
        self.width = len(line)

    def update(self, n: int = 1) -> None:
        self.n = min(self.total, self.n + n)
        self._draw()

    def set_description_str(self, text: str) -> None:
        self.desc = text

    def close(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _progress(total: int, desc: str, unit: str = "it", quiet: bool = False) -> Any:
    """A progress line on stderr (see :func:`_shows_progress`), or a stand-in that draws nothing."""
    if not _shows_progress(quiet):
        return _NoBar()
    return _Bar(total, desc, unit)


class _Ticks:
    """A count of loss evaluations made by compiled programs, read by the thread that draws progress."""

    def __init__(self) -> None:
        self.n = 0

    def tick(self) -> None:
        self.n += 1


def _counted(loss: Callable[[Any, Any], jax.Array], ticks: _Ticks) -> Callable[[Any, Any], jax.Array]:
    """``loss`` that also counts its evaluations on the host.

    The callback takes no batched argument, so a program fitting every run at once
    calls it once per step (and once for the final loss), whatever the number of runs;
    it changes no value. Build it once per command: a new function compiles anew.
    """

    def loss_counted(params: Any, batch: Any) -> jax.Array:
        jax.debug.callback(ticks.tick)
        return loss(params, batch)

    return loss_counted


_WORKER = "fitjax-work"


def _in_background(work: Callable[[], Any], poll: Callable[[], None] | None = None) -> Any:
    """Run ``work`` in a daemon thread and return its result, calling ``poll`` every 0.2 s.

    The main thread only waits, so Ctrl-C reaches it at once (a compiled program would
    otherwise hold it until the program ends); :func:`main` then keeps what finished
    and ends the process, program and all.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as err:  # handed to the main thread
            box["error"] = err

    thread = threading.Thread(target=target, name=_WORKER, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        if poll is not None:
            poll()
    if "error" in box:
        raise box["error"]
    return box.get("value")
