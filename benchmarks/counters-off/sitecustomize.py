"""Benchmark only (benchmarks/overhead.sh): uvhost with its request counters stubbed out.

Python imports `sitecustomize` at start-up in every process whose PYTHONPATH
holds this folder: the supervisor and each worker it spawns. The counters'
clock and per-request bookkeeping become no-ops, so the run beside the normal
build shows what counting costs. Never on the path of a real deployment.
"""

from uvhost.observe import stats


def _count_nothing(self: stats.RouteStats, *ended: object) -> None:
    """What `RouteStats.finish` does with the counters off: nothing."""


stats.RouteStats.finish = _count_nothing  # type: ignore[method-assign]
stats.clock = float  # a C call returning 0.0: the start time is never read
