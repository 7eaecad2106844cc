"""Peak memory of one measured call: host RSS, and device memory where JAX reports it.

Host. Linux keeps the peak resident set size of a process (``VmHWM`` in
``/proc/self/status``, the same figure as ``resource.getrusage(...).ru_maxrss``) and
lets the process reset it to the current size by writing ``5`` to
``/proc/self/clear_refs``. :func:`measure` resets it before the call, so the peak it
reports belongs to that call alone (compile, warm-up and timed runs); it is given as
the growth over the resident size before the call. Where the reset is not allowed the
process-lifetime ``ru_maxrss`` is reported instead, and flagged: it then only says
"at most this much".

Device. ``jax.devices()[0].memory_stats()`` (GPU and TPU backends) gives
``peak_bytes_in_use``, which cannot be reset: it is the process's peak so far, so the
call's own peak is known only when the call raised it. :func:`measure` reports the
peak after the call and whether the call raised it.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


@dataclass
class Peak:
    """What :func:`measure` found; filled in when the ``with`` block ends.

    Attributes:
      host_bytes: peak resident set size during the call minus the size before it.
      host_exact: True when the peak was reset before the call (so it is the call's own).
      device_bytes: the device's ``peak_bytes_in_use`` after the call (None without stats).
      device_raised: whether the call raised that peak (if not, its own peak was lower).
    """

    host_bytes: int | None = None
    host_exact: bool = False
    device_bytes: int | None = None
    device_raised: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_host_peak() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def device_stats() -> dict[str, int] | None:
    """The default device's memory statistics, or None where the backend has none (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without statistics raise or return None
        return None
    return dict(stats) if stats else None


@contextlib.contextmanager
def measure() -> Iterator[Peak]:
    """Peak host and device memory of the code in the ``with`` block.

    Example::

        with measure() as peak:
            run()
        print(peak.host_bytes, peak.device_bytes)
    """
    peak = Peak()
    exact = _reset_host_peak()
    rss_before = _status_kib("VmRSS")
    before = device_stats() or {}
    try:
        yield peak
    finally:
        hwm = _status_kib("VmHWM")
        if exact and hwm is not None and rss_before is not None:
            # the kernel updates both counters lazily, so a call that allocated nothing may read -1 page
            peak.host_bytes, peak.host_exact = max(hwm - rss_before, 0) * 1024, True
        else:
            peak.host_bytes = _maxrss_bytes()
        after = device_stats() or {}
        if "peak_bytes_in_use" in after:
            peak.device_bytes = int(after["peak_bytes_in_use"])
            peak.device_raised = peak.device_bytes > int(before.get("peak_bytes_in_use", 0))
