"""Waiting for a program's status: a short poll after a short last run on the CPU, else a sleep.

The poll changes only when the host notices that a program has ended, never what is read:
a fit gives the same numbers bit for bit with it and without it.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import pytest
from _problems import LINE

import fitjax
from fitjax import internal
from fitjax.engine import waiting


class _Device:
    def __init__(self, platform: str) -> None:
        self.platform = platform


class _Array:
    """An array-like that becomes ready after ``ready_after`` polls (never, for None)."""

    def __init__(self, ready_after: int | None, platform: str = "cpu") -> None:
        self.ready_after, self.platform = ready_after, platform
        self.polls, self.blocked = 0, False

    def is_ready(self) -> bool:
        self.polls += 1
        return self.ready_after is not None and self.polls > self.ready_after

    def block_until_ready(self) -> _Array:
        self.blocked = True
        return self

    def devices(self) -> set:
        return {_Device(self.platform)}


def test_a_program_waited_for_the_first_time_sleeps_and_its_run_is_kept():
    last, array = waiting.LastRun(), _Array(ready_after=3)
    waiting.wait(array, last, time.perf_counter())
    assert array.polls == 0 and array.blocked
    assert last.seconds is not None and 0 <= last.seconds < 1


def test_after_a_short_run_the_host_polls_until_the_result_is_ready():
    last, array = waiting.LastRun(), _Array(ready_after=3)
    last.seconds = 1e-5
    waiting.wait(array, last, time.perf_counter())
    assert array.polls == 4  # three not ready, then ready
    assert last.seconds != 1e-5  # this run's time, for the next wait


def test_after_a_long_run_or_with_polling_off_the_host_sleeps(monkeypatch):
    last, array = waiting.LastRun(), _Array(ready_after=3)
    last.seconds = 10 * waiting.POLL_UP_TO
    waiting.wait(array, last, time.perf_counter())
    assert array.polls == 0 and array.blocked
    monkeypatch.setattr(waiting, "POLL_UP_TO", 0.0)
    last.seconds, array = 1e-5, _Array(ready_after=3)
    waiting.wait(array, last, time.perf_counter())
    assert array.polls == 0 and array.blocked


def test_a_poll_stops_at_its_limit_and_sleeps():
    last, array = waiting.LastRun(), _Array(ready_after=None)
    last.seconds = 1e-5
    began = time.perf_counter()
    waiting.wait(array, last, began)
    assert array.blocked and array.polls > 0
    assert time.perf_counter() - began < 1.0  # not the 1 s a bug would spin for
    assert last.seconds >= waiting.POLL_UP_TO


def test_a_result_not_on_the_cpu_is_never_polled_for():
    """The platform is the result's, at each wait: one kept signature may run on the CPU
    and on a GPU (arrays committed to either)."""
    last = waiting.LastRun()
    for platform, polled in [("gpu", False), ("cpu", True), ("gpu", False), ("cpu", True)]:
        array = _Array(ready_after=0, platform=platform)
        waiting.wait(array, last, time.perf_counter())
        assert (array.polls > 0) == polled and array.blocked, platform
        assert last.seconds is not None and last.seconds < 1


def test_fit_keeps_one_last_run_per_kept_signature_and_polls_on_the_next_call(monkeypatch):
    """The second call of a signature waits with the first call's time (the program's
    last run, kept with the problem) and gives the same numbers as a fit that never polls."""
    seen: list[tuple[int, float | None]] = []
    wait = waiting.wait

    def spy(array, last, since):
        seen.append((id(last), last.seconds))
        return wait(array, last, since)

    monkeypatch.setattr(waiting, "wait", spy)
    internal.forget_checked()
    starts = np.float32([[1.6, -0.5], [0.3, 0.8]])
    data = fitjax.datasets.line()
    adam = fitjax.adam(0.05)  # one object: a signature is kept for the optimizer as given
    polled = [fitjax.fit(LINE, adam, starts, data, steps=50) for _ in range(2)]
    assert seen[0][0] == seen[1][0] and seen[1][1] is not None and seen[1][1] > 0
    monkeypatch.setattr(waiting, "POLL_UP_TO", 0.0)
    slept = fitjax.fit(LINE, adam, starts, data, steps=50)
    for res in polled:
        for a, b in zip(jax.tree.leaves(res), jax.tree.leaves(slept), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("jit", [True, False])
def test_a_fit_without_jit_waits_on_a_fresh_last_run(monkeypatch, jit):
    """Op by op, the status is ready when it is read: it is not timed as the compiled program's run."""
    seen: list[float | None] = []
    wait = waiting.wait

    def spy(array, last, since):
        seen.append(last.seconds)
        return wait(array, last, since)

    monkeypatch.setattr(waiting, "wait", spy)
    starts, gd = np.float32([[1.6, -0.5]]), fitjax.gd(0.05)
    for _ in range(2):
        fitjax.fit(LINE, gd, starts, fitjax.datasets.line(), steps=5, jit=jit)
    assert (seen[1] is not None) == jit
