"""fitjax's benchmarks: speed and accuracy against the alternatives, and profiles of the engine.

Run each script from the repository root as a module, for example
``python -m benchmarks.run_contenders --quick``; ``bash benchmarks/gpu.sh`` runs them
all on a GPU. ``FITJAX_BENCH_TINY=1 bash benchmarks/gpu.sh`` (and
``tests/test_benchmarks.py``) runs them at tiny sizes, which checks the scripts, not
the speed. ``benchmarks/NOTES.md`` is the log of what each change was predicted to
gain and what it gained.
"""
