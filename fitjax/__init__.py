"""fitjax: fit models with gradient-based optimizers from many starting points at once.

The public API is flat::

    import fitjax
    loss = fitjax.least_squares(fitjax.Gabor(w=32.0))
    starts = fitjax.inits.uniform(key, 10_000, low=[-10.0, 2.5], high=[10.0, 22.5])
    result = fitjax.fit(loss, fitjax.adam(0.05), starts, fitjax.datasets.gabor(), steps=1000)
"""

from fitjax import comparison, problems
from fitjax._version import __version__ as __version__  # one source for the version
from fitjax.analysis.basins import (
    DIVERGED,
    UNSETTLED,
    BasinMap,
    basin_map,
    convergence_step,
    label_minima,
    settled,
)
from fitjax.analysis.landscape import (
    CriticalPoints,
    Landscape,
    PCAPlane,
    critical_points,
    filter_normalize,
    loss_grid,
    loss_line,
    loss_plane,
    pca_directions,
    project,
    random_directions,
)
from fitjax.comparison import compare
from fitjax.engine.chunked import ChunkedSweep, fit_chunked, iter_chunks, load_chunked
from fitjax.engine.core import FitResult, History, SweepResult, fit, sweep, trace_count
from fitjax.engine.sharding import run_mesh
from fitjax.kernels import fused
from fitjax.numerics.fastmath import platform_math, polynomial_math
from fitjax.optim.linesearch import (
    ArmijoState,
    LineSearchState,
    LossEvaluations,
    SearchResult,
    backtracking_armijo,
    bracket_search,
    gd_line_search,
    loss_evaluations,
)
from fitjax.optim.plateau import PlateauState, reduce_on_plateau
from fitjax.optim.protocol import (
    Hyperparam,
    Optimizer,
    OptState,
    PrecisionWarning,
    Rule,
    build,
    reported_params,
)
from fitjax.optim.rmsprop import RMSPropState, rmsprop
from fitjax.optim.rules import (
    AdamState,
    MomentumState,
    TraceState,
    adam,
    gd,
    momentum,
    nesterov,
    nesterov_classical,
    normalized,
    sgd,
)
from fitjax.problems import datasets, inits
from fitjax.problems.losses import LeastSquares, least_squares, toy_loss
from fitjax.problems.models import GABOR_W_LECTURE, GABOR_W_NOTEBOOK, Gabor, gabor, init_mlp, line, mlp

__all__ = [
    "fused",
    "problems",
    "comparison",
    "compare",
    "DIVERGED",
    "UNSETTLED",
    "BasinMap",
    "CriticalPoints",
    "ChunkedSweep",
    "fit_chunked",
    "iter_chunks",
    "load_chunked",
    "Landscape",
    "PCAPlane",
    "basin_map",
    "convergence_step",
    "critical_points",
    "filter_normalize",
    "label_minima",
    "loss_grid",
    "loss_line",
    "loss_plane",
    "pca_directions",
    "project",
    "random_directions",
    "GABOR_W_LECTURE",
    "GABOR_W_NOTEBOOK",
    "AdamState",
    "ArmijoState",
    "FitResult",
    "Gabor",
    "History",
    "LeastSquares",
    "LineSearchState",
    "LossEvaluations",
    "MomentumState",
    "Hyperparam",
    "OptState",
    "Optimizer",
    "PrecisionWarning",
    "RMSPropState",
    "Rule",
    "TraceState",
    "PlateauState",
    "SearchResult",
    "SweepResult",
    "adam",
    "backtracking_armijo",
    "bracket_search",
    "build",
    "datasets",
    "fit",
    "gabor",
    "gd",
    "gd_line_search",
    "init_mlp",
    "inits",
    "least_squares",
    "line",
    "loss_evaluations",
    "mlp",
    "momentum",
    "nesterov",
    "nesterov_classical",
    "normalized",
    "platform_math",
    "polynomial_math",
    "reduce_on_plateau",
    "reported_params",
    "rmsprop",
    "run_mesh",
    "settled",
    "sgd",
    "sweep",
    "toy_loss",
    "trace_count",
]
