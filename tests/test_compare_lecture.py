"""``fitjax compare --lecture`` on a few cheap claims at a tiny size: a verdict per claim, the
claims not measured listed, and the report written."""

from __future__ import annotations

import numpy as np

from fitjax.lecture import claims as lecture


def test_lecture_claims_small(tmp_path):
    claims = lecture.run(tmp_path, starts=40, only=["convex_line", "normalized_bounces"])
    assert [c.verdict for c in claims] == ["holds", "holds"]
    text = (tmp_path / "claims.md").read_text()
    assert "not measured" in text and "convex" in text
    assert (tmp_path / "report.html").read_text().count("<tr>") >= 2 + len(lecture.NOT_MEASURED)


def test_reversal_and_minima_helpers():
    zigzag = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]])
    straight = np.array([[[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]])
    assert lecture.reversals(zigzag)[0] == 1.0 and lecture.reversals(straight)[0] == 0.0
    groups = lecture.gabor_minima(np.array([1.0, 1.0005, 3.0, 3.0002, 3.0001]), np.zeros(5, bool))
    assert [k for _, k in groups] == [2, 3]
