"""Fixtures shared by the tests.

Every test runs with JAX's strict dtype promotion and rank promotion raising, so that
fitjax's own code never relies on an implicit promotion (``float32 + float64``,
``int32 + float32``, a ``(n,)`` array added to a ``(n, 1)`` one): such a mix is an error
here, not a silently widened result. A test that exercises promotion on purpose (a user's
loss written loosely) says so with ``@pytest.mark.loose_promotion``. A test that draws
figures says ``@pytest.mark.needs_matplotlib`` and is skipped where matplotlib is missing.
"""

import importlib.util
import os

import jax
import pytest


def pytest_configure(config):
    _share_compiled_programs(config)
    config.addinivalue_line(
        "markers", "loose_promotion: run with JAX's standard dtype and rank promotion (a user's loose code)"
    )
    config.addinivalue_line("markers", "needs_matplotlib: draws figures; skipped when matplotlib is missing")


def pytest_runtest_setup(item):
    """A test that draws figures skips, the same way everywhere, where matplotlib is missing."""
    if item.get_closest_marker("needs_matplotlib") and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("figures need matplotlib: pip install -e '.[plot]'")


@pytest.fixture(autouse=True)
def _strict_promotion(request):
    if request.node.get_closest_marker("loose_promotion"):
        yield
        return
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


@pytest.fixture
def x64():
    """Run the test with float64 enabled."""
    with jax.enable_x64(True):
        yield


def _share_compiled_programs(config):
    """XLA's compiled programs kept on disk (JAX's persistent compilation cache) in
    ``.jax-cache/`` at the repository's root, shared by the test processes, by the
    command-line runs they start and by later runs of the suite: many tests compile the
    same program (the same loss, optimizer and shapes in another test, or in the
    ``fitjax`` command a test drives), and compiling is most of the suite's time on a
    CPU. JAX keys each program by its HLO, the compile options and the jax, jaxlib and
    XLA versions, so a program from another version or setting is never reused. Set
    ``JAX_COMPILATION_CACHE_DIR`` to use another folder (or an empty value for none).
    The folder is not bounded (about 40 MB after one run of the suite): with a bound JAX
    locks the folder and records each program's use, and a run of the suite with a 2 GiB
    bound was still at 84% after 15 minutes, against 11 min 45 s in all without."""
    default = str(config.rootpath / ".jax-cache")
    folder = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", default)
    if not folder:
        return
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
