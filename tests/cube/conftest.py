import pytest

from cube.synthetic import nonlinear_pairs


@pytest.fixture(scope="session")
def synthetic():
    """A small nonlinear task: 16d -> 16d, 1200 pairs."""
    return nonlinear_pairs(n=1200, d_in=16, d_out=16, seed=0)

