"""One comparison for every task: a feature's values on two sets, as Yang & Lerch (2018) compare them.

Each set's values are smoothed into a density with a Gaussian KDE (the density `scipy.stats.gaussian_kde`
gives, Scott's bandwidth, evaluated directly as a mixture: scipy's evaluate is ten times slower here); the
overlapping area (OA) is the integral of the smaller of the two densities on a common grid (1: the same
distribution, 0: disjoint), and the KL divergence KL(samples || reference) is integrated on the
same grid. A set whose values are all equal has no spread to estimate a bandwidth from: it gets a Gaussian
as wide as the other set's kernel (or, when neither has spread, a thousandth of their distance), so that
"always 0" still compares.
"""

import numpy as np

from lm_music.errors import UserError

GRID_POINTS = 1000


def _bandwidth(values: np.ndarray) -> float:
    """The kernel's standard deviation `scipy.stats.gaussian_kde` chooses by default (Scott's rule in one
    dimension: the sample standard deviation times n ** -1/5); 0 with no spread."""
    return float(np.std(values, ddof=1) * len(values) ** -0.2) if np.ptp(values) > 0 else 0.0


def kde_density(values: np.ndarray, fallback: float):
    """The Gaussian KDE of `values` as a callable, evaluated as the mixture it is (in one dimension this
    is what `gaussian_kde.evaluate` computes, without its triangular solves); with no spread, one Gaussian
    `fallback` wide."""
    sigma = _bandwidth(values) or fallback

    def density(x: np.ndarray) -> np.ndarray:
        z = (x[:, None] - values[None, :]) / sigma
        return np.exp(-0.5 * z**2).mean(1) / (sigma * np.sqrt(2 * np.pi))

    return density


def compare(samples: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """OA and KL of two sets of one feature's values (NaNs left out), and their means; NaN where either set
    has fewer than two values to estimate a density from."""
    a = np.asarray(samples, dtype=float)
    b = np.asarray(reference, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    result = {
        "mean_samples": float(a.mean()) if len(a) else float("nan"),
        "mean_reference": float(b.mean()) if len(b) else float("nan"),
        "n_samples": len(a),
        "n_reference": len(b),
        "oa": float("nan"),
        "kl": float("nan"),
    }
    if len(a) < 2 or len(b) < 2:
        return result
    both = np.concatenate([a, b])
    spread = float(np.ptp(both)) or 1.0
    # a set with no spread borrows the other set's bandwidth (all 1.0 against mostly 1.0 overlaps well);
    # two sets with none get a thousandth of their spread (equal: OA 1, apart: OA 0)
    narrow = max(_bandwidth(a), _bandwidth(b)) or 1e-3 * spread
    p_of, q_of = kde_density(a, narrow), kde_density(b, narrow)
    margin = 3 * max(both.std(), narrow) + narrow * 5
    grid = np.linspace(both.min() - margin, both.max() + margin, GRID_POINTS)
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # a narrow Gaussian needs grid points around its centre
        centres = np.unique(
            np.concatenate([a[:1] if np.ptp(a) == 0 else [], b[:1] if np.ptp(b) == 0 else []])
        )
        grid = np.union1d(grid, np.concatenate([centres + d * narrow for d in np.linspace(-4, 4, 33)]))
    p, q = np.maximum(p_of(grid), 0), np.maximum(q_of(grid), 0)
    p, q = p / np.trapezoid(p, grid), q / np.trapezoid(q, grid)
    result["oa"] = float(np.clip(np.trapezoid(np.minimum(p, q), grid), 0, 1))
    eps = 1e-12
    result["kl"] = float(max(np.trapezoid(p * np.log((p + eps) / (q + eps)), grid), 0.0))
    return result


def compare_sets(samples: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, dict]:
    """`compare` for every feature the two sets share: name -> OA, KL, means."""
    return {name: compare(samples[name], reference[name]) for name in samples if name in reference}


def mean_oa(comparisons: dict[str, dict]) -> float:
    """The summary: the mean OA over the features that have one."""
    values = [c["oa"] for c in comparisons.values() if np.isfinite(c["oa"])]
    return float(np.mean(values)) if values else float("nan")


def check_reference(n: int, what: str) -> None:
    """A density needs at least two pieces: one line saying so for a smaller reference set."""
    if n < 2:
        raise UserError(
            f"{what} holds {n} piece{'s' if n != 1 else ''}: a distribution cannot be estimated from fewer "
            "than two; give a larger reference set"
        )
