"""The lecture's experiments as a library (fitjax.lecture.experiments): what each returns, the
settings it states, and the recorded claims table that fitjax demo quotes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fitjax.cli import build_parser
from fitjax.cli.demo import report_markdown
from fitjax.lecture import experiments as ex
from fitjax.lecture import recorded

SMALL = ex.Settings(grid=11, basin_grid=4, basin_steps=30, runs=2, figure_format="svg")
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def results() -> dict[str, ex.Result]:
    done = {}
    for name, run in ex.EXPERIMENTS:
        if name in ("line", "gabor", "normalized_vs_adam"):
            got = run(SMALL)
            assert got is not None
            done[name] = got
    return done


def test_each_result_names_its_figures_and_links_them(results):
    for name, res in results.items():
        assert res.name == name
        names = [f.name for f in res.figures]
        assert len(set(names)) == len(names) > 0
        for fig in res.figures:
            assert f"]({fig.file('svg')})" in res.markdown, (name, fig.name)
        assert res.markdown.startswith("## ")


def test_the_numbers_state_the_settings_defined_once(results):
    assert results["line"].numbers["gd"]["learning_rate"] == ex.LINE_GD.learning_rate
    assert results["line"].numbers["gd"]["steps"] == ex.LINE_GD.steps
    gabor = results["gabor"].numbers
    assert (gabor["learning_rate"], gabor["steps"]) == (ex.GABOR_GD.learning_rate, ex.GABOR_GD.steps)
    assert [tuple(r["start"]) for r in gabor["gd_from_starts"]] == list(ex.GABOR_STARTS)
    assert gabor["basins"]["grid"] == [SMALL.basin_grid] * 2 and gabor["basins"]["steps"] == SMALL.basin_steps
    assert {"normalized", "Adam"} <= set(results["normalized_vs_adam"].numbers)


def test_the_command_line_defaults_are_the_settings():
    args = build_parser().parse_args(["demo"])
    s = ex.Settings()
    assert (args.grid, args.basin_grid, args.basin_steps, args.runs, args.seed, args.format) == (
        s.grid,
        s.basin_grid,
        s.basin_steps,
        s.runs,
        s.seed,
        s.figure_format,
    )


def test_the_gabor_page_states_the_demo_settings():
    page = (DOCS / "lecture" / "gabor.md").read_text()
    stated = re.search(r"from six starts, α = ([\d.]+), (\d+) steps", page)
    assert stated, "docs/lecture/gabor.md no longer states the Gabor runs' settings"
    assert (float(stated.group(1)), int(stated.group(2))) == (ex.GABOR_GD.learning_rate, ex.GABOR_GD.steps)


@pytest.mark.needs_matplotlib
def test_a_figure_draws_into_its_file(tmp_path, results):
    fig = results["line"].figures[1]
    assert fig.draw(tmp_path, "svg") == tmp_path / "line_fit.svg"
    assert (tmp_path / "line_fit.svg").stat().st_size > 0


def test_the_report_quotes_the_recorded_claims_and_says_so():
    table = recorded.recorded_claims()
    assert len(table["claims"]) >= 10 and table["command"].startswith("fitjax compare --lecture")
    text = report_markdown(["## one\n"], 1.0, [], True)
    section = text[text.index("## The lecture's claims, measured") :]
    assert "**recorded**" in section and "not measured again" in section and table["machine"] in section
    assert all(c["claim"] in section for c in table["claims"])


def test_the_recorded_table_is_the_claims_page():
    page = (DOCS / "lecture" / "claims.md").read_text()
    for c in recorded.recorded_claims()["claims"]:
        row = f"| {c['claim']} | {c['setting']} | {c['measured']} | {c['verdict']} |"
        stale = f"docs/lecture/claims.md changed: update fitjax/_data/lecture_claims.json ({c['claim']})"
        assert row in page, stale
