"""The lecture's claims as last measured in full, shipped with the package.

``fitjax compare --lecture`` (:func:`fitjax.lecture.claims.run`) measures every claim over
10⁴ starts in about four minutes; even a run with 100 starts takes close to a minute, most
of it compiling. ``fitjax demo`` therefore quotes the table of a full run, stored in
``fitjax/_data/lecture_claims.json`` with the command and the machine it came from.

>>> table = recorded_claims()
>>> table["command"]
'fitjax compare --lecture --out lecture-claims'
>>> sorted(table["claims"][0])
['claim', 'measured', 'setting', 'verdict']
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

RECORDED = "_data/lecture_claims.json"
"""Where the recorded table lives inside the package."""


@functools.lru_cache(maxsize=1)
def recorded_claims() -> dict[str, Any]:
    """The recorded full run: ``command``, ``machine``, ``starts``, ``seconds`` and ``claims``
    (rows of ``claim``, ``setting``, ``measured``, ``verdict``)."""
    return json.loads(resources.files("fitjax").joinpath(RECORDED).read_text())


def claims_markdown() -> str:
    """The demo report's section "The lecture's claims, measured": each claim and its recorded verdict."""
    table = recorded_claims()
    rows = "\n".join(f"| {c['claim']} | {c['verdict']} |" for c in table["claims"])
    return f"""## The lecture's claims, measured

This is the **recorded** table of a full run, not measured again by this demo (the full run
takes about {table["seconds"] / 60:.0f} minutes). It is the output of `{table["command"]}` on
{table["machine"]}; {table["starts"]}. Run `fitjax compare --lecture` to measure the claims on
this machine; `docs/lecture/claims.md` has what was measured for each, with 95% intervals.

| claim | verdict |
|---|---|
{rows}
"""
