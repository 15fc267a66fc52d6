"""The optimizer shared by the MAP fit and the local guide: Adam, optionally decaying.

A constant learning rate (the tutorial's) leaves Adam oscillating around the optimum at an
amplitude ~ learning_rate; `final_learning_rate` decays it exponentially over the steps so the
iterates converge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SpecError

if TYPE_CHECKING:
    import optax

__all__ = ["adam", "check_optimizer"]


def adam(lr, b1, b2, final_lr, steps: int) -> optax.GradientTransformation:
    """Adam whose learning rate goes from `lr` to `final_lr` (traced values) over `steps`."""
    import optax  # lazy: only tracing needs it (bayesmix._jit)

    schedule = lambda i: lr * (final_lr / lr) ** (i / steps)  # noqa: E731
    return optax.adam(schedule, b1=b1, b2=b2)


def check_optimizer(
    steps: object,
    learning_rate: float,
    betas: tuple[float, float],
    final_learning_rate: float | None,
) -> tuple[int, float, float, float, float]:
    """Validate the settings; return (steps, lr, b1, b2, final_lr)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SpecError(f"steps must be a whole number >= 1, got {steps!r}")
    final = learning_rate if final_learning_rate is None else final_learning_rate
    if not (learning_rate > 0 and final > 0):
        raise SpecError("learning_rate and final_learning_rate must be > 0")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise SpecError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return steps, float(learning_rate), float(betas[0]), float(betas[1]), float(final)
