r"""The lecture's claims about its optimizers, each turned into a measured statement.

:func:`run` (``fitjax compare --lecture``) measures every claim listed in :data:`CLAIMS`
over many starts (10⁴ by default; fewer for the MLP claims, which say so), with 95%
intervals (Wilson for rates, bootstrap with seed 0 for medians), and gives a verdict:
**holds**, **does not hold**, or **depends on ...** where the answer changes with a
setting. A verdict is decided by the intervals: "A beats B" needs A's interval to lie
entirely on the better side of B's. Claims that are not measured are listed as such.

The settings come from the lecture's companion notebooks where they give them (Gabor:
α = 0.6, β = 0.6, mini-batches of 5 for SGD, momentum and Nesterov; the toy loss:
normalized gradients α = 0.08, Adam α = 0.05, β = 0.9, γ = 0.99).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import fitjax
from fitjax import problems
from fitjax.comparison import measures as m
from fitjax.comparison import report


@dataclasses.dataclass
class Claim:
    """One claim of the lecture, what was measured, and the verdict."""

    claim: str
    setting: str
    measured: str
    verdict: str
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Ctx:
    starts: int
    steps: int
    key: jax.Array

    def key_for(self, name: str) -> jax.Array:
        from fitjax.comparison.study import seed_of

        return jax.random.fold_in(self.key, seed_of("lecture", name))


def _rate(k: int, n: int) -> str:
    lo, hi = m.wilson(k, n)
    return f"{k / n:.3f} [{lo:.3f}, {hi:.3f}]"


def _ci(k: int, n: int) -> tuple[float, float]:
    lo, hi = m.wilson(k, n)
    return float(lo), float(hi)


def _med(x: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    lo, hi = m.bootstrap_median(x, seed=seed)
    return m.median(x), lo, hi


def _fmt_med(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.3g} [{t[1]:.3g}, {t[2]:.3g}]"


def _above(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Interval a lies entirely above interval b."""
    return a[0] > b[1]


# ----------------------------------------------------------------------------- the claims


def convex_line(ctx: _Ctx) -> Claim:
    prob = problems.get("line")
    assert prob.minimum is not None  # the line's least-squares minimum is in the catalogue
    x0 = prob.starts(ctx.key_for("line"), ctx.starts)
    res = fitjax.fit(prob.loss, fitjax.gd(0.02), x0, prob.data, steps=max(ctx.steps, 2000))
    gap = np.asarray(res.loss, np.float64) - prob.minimum
    ok = gap <= 1e-5 * (1 + abs(prob.minimum))
    dist = np.max(np.linalg.norm(np.asarray(res.params, np.float64) - prob.minimisers[0], axis=1))
    verdict = "holds" if bool(ok.all()) and dist < 1e-2 else "does not hold"
    return Claim(
        "The linear model's loss is convex: gradient descent reaches the one minimum from every start.",
        f"line, GD α = 0.02, {max(ctx.steps, 2000)} steps, {ok.size} starts in the notebooks' box",
        f"share within 1e-5 (relative) of the least-squares minimum {_rate(int(ok.sum()), ok.size)}; "
        f"largest distance of an end point from the least-squares solution {dist:.2e}",
        verdict,
    )


def gabor_minima(final: np.ndarray, diverged: np.ndarray, tol: float = 1e-3) -> list[tuple[float, int]]:
    """Distinct final loss values (runs within ``tol`` grouped) and how many runs end at each."""
    v = np.sort(final[~diverged])
    groups: list[list[float]] = []
    for x in v:
        if groups and x - groups[-1][-1] <= tol:
            groups[-1].append(x)
        else:
            groups.append([x])
    return [(float(np.mean(g)), len(g)) for g in groups]


def gd_local_minima(ctx: _Ctx) -> Claim:
    prob = problems.get("gabor32")
    x0 = prob.starts(ctx.key_for("gabor"), ctx.starts)
    res = fitjax.fit(prob.loss, fitjax.gd(0.1), x0, prob.data, steps=max(ctx.steps, 1000))
    final = np.asarray(res.loss, np.float64)
    groups = gabor_minima(final, np.asarray(res.diverged))
    n = final.size
    big = [(v, k) for v, k in groups if k >= max(10, n // 200)]
    glob = min(v for v, _ in groups)
    at_glob = int(np.sum(final <= glob + 1e-3))
    shares = "; ".join(f"loss {v:.3f}: {_rate(k, n)}" for v, k in big[:6])
    glob_ci = _ci(at_glob, n)
    verdict = "holds" if len(big) >= 2 and glob_ci[1] < 1.0 and glob_ci[0] > 0 else "does not hold"
    return Claim(
        "Gradient descent finds a local minimum, and which one depends on the start (Gabor model).",
        f"gabor32, GD α = 0.1, {max(ctx.steps, 1000)} steps, {n} starts uniform in the notebooks' box",
        f"{len(big)} end values each reached by ≥ 0.5% of starts (shares): {shares}; "
        f"share at the best value found ({glob:.4f}) {_rate(at_glob, n)}",
        verdict,
    )


def sgd_escapes(ctx: _Ctx) -> Claim:
    prob = problems.get("gabor32")
    x0 = prob.starts(ctx.key_for("gabor"), ctx.starts)
    steps = max(ctx.steps, 500)
    n = jax.tree.leaves(x0)[0].shape[0]
    finals: dict[tuple[float, str], np.ndarray] = {}
    for lr in (0.1, 0.6):
        gd = fitjax.fit(prob.loss, fitjax.gd(lr), x0, prob.data, steps=steps)
        finals[lr, "GD"] = np.where(np.asarray(gd.diverged), np.inf, np.asarray(gd.loss, np.float64))
        for bs in (5, 10, 15):
            r = fitjax.fit(
                prob.loss,
                fitjax.sgd(lr),
                x0,
                prob.data,
                steps=steps,
                batch_size=bs,
                key=ctx.key_for(f"sgd{bs}"),
            )
            finals[lr, f"SGD B={bs}"] = np.where(
                np.asarray(r.diverged), np.inf, np.asarray(r.loss, np.float64)
            )
    glob = min(float(np.min(f)) for f in finals.values())
    thr = glob + 0.1
    counts = {k: int(np.sum(f <= thr)) for k, f in finals.items()}
    better, worse = [], []
    for (lr, name), c in counts.items():
        if name == "GD":
            continue
        gd_ci = _ci(counts[lr, "GD"], n)
        if _above(_ci(c, n), gd_ci):
            better.append(f"α = {lr}, {name}")
        elif _above(gd_ci, _ci(c, n)):
            worse.append(f"α = {lr}, {name}")
    if better and len(better) == len(counts) - 2:
        verdict = "holds"
    elif better:
        verdict = f"depends on α and the batch size (holds for {'; '.join(better)})"
    else:
        verdict = "does not hold" + (" (SGD ends in the global basin less often)" if worse else "")
    return Claim(
        "SGD can escape local minima: it ends at the global minimum more often than GD.",
        f"gabor32, α = 0.1 and 0.6, {steps} steps, the same {n} starts; "
        "mini-batches of 5, 10, 15 of the 30 points",
        "share ending within 0.1 of the best loss found "
        f"({glob:.3f}): " + "; ".join(f"α = {lr} {k} {_rate(c, n)}" for (lr, k), c in counts.items()),
        verdict,
    )


def _tail_std(hist_loss: np.ndarray, frac: float = 0.2) -> np.ndarray:
    k = max(2, int(hist_loss.shape[1] * frac))
    return np.std(hist_loss[:, -k:], axis=1)


def schedule_settles(ctx: _Ctx) -> Claim:
    prob = problems.get("gabor32")
    x0 = prob.starts(ctx.key_for("gabor"), ctx.starts)
    steps, lr, bs = max(ctx.steps, 500), 0.6, 5
    key = ctx.key_for("sgd-schedule")
    const = fitjax.fit(
        prob.loss, fitjax.sgd(lr), x0, prob.data, steps=steps, batch_size=bs, key=key, record_every=1
    )
    sched = optax.exponential_decay(lr, transition_steps=steps, decay_rate=0.01)
    dec = fitjax.fit(
        prob.loss, fitjax.sgd(sched), x0, prob.data, steps=steps, batch_size=bs, key=key, record_every=1
    )
    assert const.history is not None and dec.history is not None  # both fits record every step
    a = _med(_tail_std(np.asarray(const.history.loss, np.float64)))
    b = _med(_tail_std(np.asarray(dec.history.loss, np.float64)))
    verdict = "holds" if b[2] < a[1] else "does not hold"
    return Claim(
        "A decreasing learning-rate schedule lets SGD settle.",
        f"gabor32, SGD B = {bs}, α = {lr} constant vs decayed exponentially to α/100 over {steps} steps",
        "median over starts of the standard deviation of the full-data loss over the last 20% of steps: "
        f"constant {_fmt_med(a)}, decayed {_fmt_med(b)}",
        verdict,
    )


def reversals(params_hist: np.ndarray) -> np.ndarray:
    """Per run, the share of consecutive steps whose updates point against each other (cosine < 0)."""
    d = np.diff(params_hist, axis=1)  # (runs, R-1, 2)
    dots = np.sum(d[:, 1:] * d[:, :-1], axis=-1)
    return np.mean(dots < 0, axis=1)


def momentum_smooths(ctx: _Ctx) -> tuple[Claim, Claim]:
    prob = problems.get("gabor32")
    x0 = prob.starts(ctx.key_for("gabor"), ctx.starts)
    n = jax.tree.leaves(x0)[0].shape[0]
    steps, lr, beta, bs = 81, 0.6, 0.6, 5
    key = ctx.key_for("momentum")
    out = {}
    for name, opt in (
        ("SGD", fitjax.sgd(lr)),
        ("momentum", fitjax.momentum(lr, beta)),
        ("Nesterov", fitjax.nesterov(lr, beta)),
    ):
        r = fitjax.fit(
            prob.loss,
            opt,
            x0,
            prob.data,
            steps=steps,
            batch_size=bs,
            key=key,
            record_every=1,
            record_params=True,
        )
        assert r.history is not None  # recorded every step
        out[name] = (
            np.asarray(r.history.params, np.float64),
            np.asarray(r.loss, np.float64),
            np.asarray(r.diverged),
        )
    rev = {k: _med(reversals(v[0])) for k, v in out.items()}
    smooth = "holds" if rev["momentum"][2] < rev["SGD"][1] else "does not hold"
    c1 = Claim(
        "Momentum smooths the path: fewer reversals of direction than SGD.",
        f"gabor32, mini-batches of {bs}, α = {lr}, β = {beta}, {steps} steps (the notebook's), {n} starts",
        "median share of steps whose update reverses the previous one (cosine < 0): "
        + "; ".join(f"{k} {_fmt_med(v)}" for k, v in rev.items()),
        smooth,
    )
    glob = min(float(v[1].min()) for v in out.values())
    counts = {k: int(np.sum(v[1] <= glob + 0.1)) for k, v in out.items()}
    gaps = {k: _med(v[1] - glob) for k, v in out.items()}
    nes, mom = _ci(counts["Nesterov"], n), _ci(counts["momentum"], n)
    if _above(nes, mom) and gaps["Nesterov"][2] < gaps["momentum"][1]:
        verdict = "holds"
    elif _above(mom, nes) or gaps["momentum"][2] < gaps["Nesterov"][1]:
        verdict = "does not hold (momentum does better here)"
    elif _above(nes, mom) or gaps["Nesterov"][2] < gaps["momentum"][1]:
        better = "share at the global minimum" if _above(nes, mom) else "median final gap"
        verdict = f"depends on the measure (holds for the {better} only)"
    else:
        verdict = "does not hold (no difference beyond the intervals)"
    c2 = Claim(
        "Nesterov momentum improves on momentum (lecture: final loss 0.80 against 0.96).",
        c1.setting,
        f"share ending within 0.1 of the best loss found ({glob:.3f}): "
        + "; ".join(f"{k} {_rate(c, n)}" for k, c in counts.items())
        + "; median final gap: "
        + "; ".join(f"{k} {_fmt_med(v)}" for k, v in gaps.items()),
        verdict,
    )
    return c1, c2


def normalized_bounces(ctx: _Ctx) -> Claim:
    prob = problems.get("toy")
    x0 = prob.starts(ctx.key_for("toy"), ctx.starts)
    n = jax.tree.leaves(x0)[0].shape[0]
    steps, lr = 200, 0.08
    out = {}
    for name, opt in (("normalized", fitjax.normalized(lr)), ("Adam", fitjax.adam(0.05, 0.9, 0.99))):
        r = fitjax.fit(prob.loss, opt, x0, prob.data, steps=steps, record_every=1, record_params=True)
        assert r.history is not None  # recorded every step
        p = np.asarray(r.history.params, np.float64)
        last_step = np.max(np.abs(p[:, -1] - p[:, -2]), axis=1)
        gap = np.asarray(r.loss, np.float64)
        out[name] = (last_step, gap)
    step_n, gap_n = out["normalized"]
    bouncing = int(np.sum((step_n >= 0.9 * lr) & (gap_n > 1e-6)))
    adam_moving = int(np.sum(out["Adam"][0] >= 0.9 * lr))
    verdict = "holds" if _ci(bouncing, n)[0] > 0.9 else "does not hold"
    return Claim(
        "Normalized gradients make good progress but bounce around the minimum instead of converging.",
        f"toy loss, normalized α = {lr} vs Adam α = 0.05 (β = 0.9, γ = 0.99), {steps} steps, {n} starts",
        "share of runs still stepping ≥ 0.9α per coordinate at the last step with loss above 1e-6: "
        f"normalized {_rate(bouncing, n)} (Adam still stepping that far: {_rate(adam_moving, n)}); "
        f"median final loss: normalized {_fmt_med(_med(gap_n))}, Adam {_fmt_med(_med(out['Adam'][1]))}",
        verdict,
    )


def adam_both_directions(ctx: _Ctx) -> Claim:
    prob = problems.get("toy")
    x0 = prob.starts(ctx.key_for("toy"), ctx.starts)
    n = jax.tree.leaves(x0)[0].shape[0]
    steps = 200
    target = m.targets(0.0, [1e-3])
    rts = {}
    for name, opt in (("GD α=0.08", fitjax.gd(0.08)), ("Adam α=0.05", fitjax.adam(0.05, 0.9, 0.99))):
        r = fitjax.fit(prob.loss, opt, x0, prob.data, steps=steps, record_every=1)
        assert r.history is not None  # recorded every step
        curves = np.concatenate([np.asarray(r.history.loss), np.asarray(r.loss)[:, None]], 1)
        rts[name] = m.runtimes(
            np.arange(steps + 1), curves, target, np.asarray(r.diverged_step), np.arange(steps + 1)
        )[:, 0]
    k = {name: int(np.isfinite(v).sum()) for name, v in rts.items()}
    g, a = _med(rts["GD α=0.08"]), _med(rts["Adam α=0.05"])
    verdict = "holds" if a[2] < g[1] else "does not hold"
    return Claim(
        "Adam makes good progress in both directions where fixed-step gradient descent crawls (toy loss).",
        f"toy loss from {n} starts in [-1, 1]², the notebook's step sizes, {steps} steps",
        "share reaching loss ≤ 1e-3 within the budget: "
        + "; ".join(f"{name} {_rate(v, n)}" for name, v in k.items())
        + "; median steps to it: "
        + "; ".join(f"{name} {_fmt_med(_med(v))}" for name, v in rts.items()),
        verdict,
    )


def adam_insensitive(ctx: _Ctx) -> tuple[Claim, Any]:
    n = min(ctx.starts, 1000)
    lrs = [float(v) for v in np.logspace(-4, 0.5, 8)]
    study = fitjax.compare(
        ["gabor_mlp"],
        {"sgd": "gd", "momentum": "momentum", "adam": "adam"},
        {k: {"learning_rate": lrs} for k in ("sgd", "momentum", "adam")},
        starts=n,
        steps=max(ctx.steps, 1000),
        key=ctx.key_for("mlp"),
        deltas=[0.5, 0.1],
    )
    widths = {o: study.sensitivity("gabor_mlp", o, 0.5)[0] for o in ("sgd", "momentum", "adam")}
    ok = np.isfinite(widths["adam"]) and all(
        widths["adam"] > w for o, w in widths.items() if o != "adam" and np.isfinite(w)
    )
    return (
        Claim(
            "Adam is less sensitive to the initial learning rate.",
            f"gabor_mlp (1-16-1 tanh MLP), full-batch GD, momentum (β = 0.9), Adam; 8 learning rates "
            f"10⁻⁴ … 10⁰·⁵; {max(ctx.steps, 1000)} steps; {n} starts per setting",
            "width in decades of the learning-rate range whose success rate (final loss within 0.5 of the "
            "best found) is within a factor 2 of the optimizer's best: "
            + "; ".join(f"{o} {w:.2f}" for o, w in widths.items()),
            "holds" if ok else "does not hold",
        ),
        study,
    )


def _layer_norms(p0: Any, p1: Any) -> np.ndarray:
    """Per run and layer, the norm of the change of that layer's weights, ``(runs, layers)``."""
    return np.stack(
        [
            np.linalg.norm((np.asarray(b["w"]) - np.asarray(a["w"])).reshape(b["w"].shape[0], -1), axis=1)
            for a, b in zip(p0["layers"], p1["layers"], strict=True)
        ],
        axis=1,
    )


def adam_balances_layers(ctx: _Ctx) -> Claim:
    prob = problems.get("gabor_mlp_deep")
    n = min(ctx.starts, 2000)
    x0 = prob.starts(ctx.key_for("deep"), n)
    steps = 10
    spread = {}
    for name, opt in (("GD α=0.01", fitjax.gd(0.01)), ("Adam α=0.001", fitjax.adam(0.001))):
        r = fitjax.fit(prob.loss, opt, x0, prob.data, steps=steps)
        norms = _layer_norms(x0, r.params)
        spread[name] = np.log10(norms.max(axis=1) / np.maximum(norms.min(axis=1), 1e-30))
    g, a = _med(spread["GD α=0.01"]), _med(spread["Adam α=0.001"])
    verdict = "holds" if a[2] < g[1] else "does not hold"
    return Claim(
        "Adam balances the size of the changes across the layers of a deep network.",
        f"gabor_mlp_deep (6 tanh hidden layers of 8), first {steps} steps, {n} starts",
        "median over starts of log10(largest / smallest per-layer weight change): "
        + "; ".join(f"{k} {_fmt_med(v)}" for k, v in zip(spread, (g, a), strict=True)),
        verdict,
    )


NOT_MEASURED = [
    "Gradient descent can get stuck near a saddle point (Gabor model).",
    "SGD is less computationally expensive and still uses all data equally.",
    "SGD seems to find better solutions (beyond the global-basin share measured above).",
    "Line search evaluates the loss four times per iteration, which is costly.",
]

CLAIMS: dict[str, Callable[[_Ctx], Any]] = {
    "convex_line": convex_line,
    "gd_local_minima": gd_local_minima,
    "sgd_escapes": sgd_escapes,
    "schedule_settles": schedule_settles,
    "momentum": momentum_smooths,
    "normalized_bounces": normalized_bounces,
    "adam_both_directions": adam_both_directions,
    "adam_insensitive": adam_insensitive,
    "adam_balances_layers": adam_balances_layers,
}
"""The measured claims, by name, in the lecture's order."""


def measure(
    starts: int = 10_000,
    steps: int = 0,
    key: jax.Array | None = None,
    only: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Claim], list[Any]]:
    """Measure the claims (``only`` a subset by name); returns the claims and any studies run."""
    ctx = _Ctx(starts, steps, jax.random.key(0) if key is None else key)
    claims, studies = [], []
    for name, fn in CLAIMS.items():
        if only is not None and name not in only:
            continue
        if progress is not None:
            progress(f"lecture claim: {name}")
        t0 = time.perf_counter()
        got = fn(ctx)
        items = got if isinstance(got, tuple) else (got,)
        for item in items:
            if isinstance(item, Claim):
                claims.append(item)
            else:
                studies.append(item)
        per = (time.perf_counter() - t0) / sum(isinstance(i, Claim) for i in items)
        for c in claims[-sum(isinstance(i, Claim) for i in items) :]:
            c.seconds = per
    return claims, studies


def claims_table(claims: list[Claim]) -> list[list[str]]:
    """The claims table's rows: claim, setting, what was measured, verdict."""
    rows = [[c.claim, c.setting, c.measured, c.verdict] for c in claims]
    rows += [[c, "–", "not measured", "not measured"] for c in NOT_MEASURED]
    return rows


def run(
    out: str | Path,
    *,
    starts: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    command: str = "fitjax compare --lecture",
    only: list[str] | None = None,
) -> list[Claim]:
    """Measure the claims and write the report, CSV and figures into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    claims, studies = measure(
        starts or 10_000, steps or 0, jax.random.key(seed), only=only, progress=progress
    )
    total = time.perf_counter() - t0
    rows = claims_table(claims)
    extra: list[report.Block] = [
        ("h2", "The lecture's claims, measured"),
        (
            "p",
            "Rates with Wilson 95% intervals, medians with bootstrap 95% intervals (seed 0). A verdict "
            "'holds' needs the intervals to separate in the claimed direction. "
            f"Measured in {total:.0f} s.",
        ),
        ("table", (["claim", "setting", "measured", "verdict"], rows)),
    ]
    (out / "claims.md").write_text(report.render_markdown(extra))
    if studies:
        report.write_outputs(
            studies[0], out, title="fitjax compare --lecture", command=command, extra=extra, delta=0.5
        )
    else:
        head: list[report.Block] = [
            ("h1", "fitjax compare --lecture"),
            ("p", f"Command: {command}"),
            ("p", f"Machine: {report.machine()}"),
        ]
        (out / "report.md").write_text(report.render_markdown(head + extra))
        (out / "report.html").write_text(report.render_html(head + extra, "fitjax compare --lecture"))
    return claims
