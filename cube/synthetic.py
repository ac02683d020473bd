"""Synthetic pairs with a known nonlinear answer, for tests and demos.

y = normalise(tanh(s * A x) * (B x) + 0.1 * noise): a product of projections, so no linear map
recovers it well, while a network with a nonlinearity can.
"""
from __future__ import annotations

import numpy as np

from cube.pairs import PairData


def nonlinear_pairs(n: int = 4000, d_in: int = 32, d_out: int = 32, seed: int = 0, noise: float = 0.1) -> PairData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a = rng.standard_normal((d_in, d_out))
    b = rng.standard_normal((d_in, d_out))
    y = np.tanh(2.0 * x @ a) * (x @ b) + noise * rng.standard_normal((n, d_out)) / np.sqrt(d_out)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return PairData(x.astype(np.float32), y.astype(np.float32))
