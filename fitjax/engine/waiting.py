r"""Waiting on the host for a program's result: a short poll, then a sleep.

A call of :func:`~fitjax.fit` reads one array back (the status) as soon as it has
dispatched its program, so it waits for the whole run. ``block_until_ready`` puts the
calling thread to sleep and has the runtime's thread wake it when the run ends. On a
CPU that wake-up is a cost of its own: on a two-core virtual machine it was measured at
about 70 µs (``benchmarks/NOTES.md``, entry 23), as long as a whole fit of one run over
28 points for 200 steps (about 80 µs). A thread that polls ``is_ready`` instead is
running when the result lands, and pays none of it.

Polling holds a core, which a longer program may want for its own threads, so each
poll gives way to any thread waiting to run (``os.sched_yield``), and :func:`wait`
polls only for a program whose previous run on the CPU took under :data:`POLL_UP_TO`
(its caller keeps that in a :class:`LastRun`), and for at most that long; then it
sleeps as before. A program's first call, and any on another platform than the CPU,
sleeps. What is waited for and the values read are the same either way: only when the
host notices changes.

Example:
  >>> import time, jax, jax.numpy as jnp
  >>> from fitjax.engine import waiting
  >>> double = jax.jit(lambda x: 2 * x)
  >>> last = waiting.LastRun()
  >>> for _ in range(2):  # the first call sleeps; its time decides for the second
  ...     out = double(jnp.arange(3.0))
  ...     waiting.wait(out, last, time.perf_counter())
  >>> out.tolist()
  [0.0, 2.0, 4.0]
"""

from __future__ import annotations

import os
import time

import jax

POLL_PLATFORMS = frozenset({"cpu"})
"""The platforms whose results are polled for: the CPU, where the wake-up was measured.
``benchmarks/call_profile.py --poll gpu`` measures what polling would give on a GPU."""

POLL_UP_TO = 1e-3
"""Seconds: a program whose last run took longer is waited for asleep, and no program is
polled for longer. 0 turns polling off."""


_give_way = getattr(os, "sched_yield", lambda: None)
"""Let another runnable thread have the core (returns at once when there is none): a poll
that runs beside other busy processes, the program's own thread among them, does not
take their time."""


class LastRun:
    """How long a program's last run took, in seconds from its dispatch to its result
    (None before its first)."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds: float | None = None


def _polled(array: jax.Array) -> bool:
    """Whether ``array`` lives on :data:`POLL_PLATFORMS` only."""
    try:
        return all(device.platform in POLL_PLATFORMS for device in array.devices())
    except (AttributeError, RuntimeError):  # a tracer, or a deleted array
        return False


def wait(array: jax.Array, last: LastRun, since: float) -> None:
    """Return once ``array``, an output of a program dispatched at ``since``
    (``time.perf_counter()``), is ready; keep in ``last`` how long the run took.

    Polls ``array.is_ready()`` for up to :data:`POLL_UP_TO` seconds from ``since`` when
    ``array`` is on the CPU (:data:`POLL_PLATFORMS`) and the program's last run took
    less; then (or else) sleeps in ``block_until_ready``."""
    seconds = last.seconds
    if seconds is not None and seconds < POLL_UP_TO and _polled(array):
        deadline = since + POLL_UP_TO
        while not array.is_ready() and time.perf_counter() < deadline:  # type: ignore[attr-defined]
            _give_way()  # to a thread that is waiting for this core, as the program's may be
    array.block_until_ready()
    last.seconds = time.perf_counter() - since
