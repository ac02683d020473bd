"""Bad NPZ pair files give an error that names the array and the row."""
import io

import numpy as np
import pytest

from cube import PairFileError, load_pairs_npz, split_pairs
from cube.config import SplitConfig
from cube.pairs import PairData


def write(tmp_path, **arrays):
    path = tmp_path / "pairs.npz"
    np.savez(path, **arrays)
    return path


def good(n=50, d_in=8, d_out=6):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d_in)).astype(np.float32), rng.standard_normal((n, d_out)).astype(np.float32)


def test_good_file_loads_as_float32(tmp_path):
    x, y = good()
    data = load_pairs_npz(write(tmp_path, input=x.astype(np.float16), target=y))
    assert data.input.dtype == np.float32 and data.input.shape == (50, 8) and data.dim_out == 6


def expect(path, field, match, row=None):
    with pytest.raises(PairFileError, match=match) as info:
        load_pairs_npz(path)
    assert info.value.field == field
    assert info.value.row == row
    return info.value


def test_missing_target(tmp_path):
    x, _ = good()
    expect(write(tmp_path, input=x), "target", "missing array 'target'")


def test_integer_dtype(tmp_path):
    x, y = good()
    expect(write(tmp_path, input=x.astype(np.int32), target=y), "input", "float16/float32/float64")


def test_wrong_rank(tmp_path):
    x, y = good()
    expect(write(tmp_path, input=x.reshape(-1), target=y), "input", "must be 2-D")


def test_nan_names_the_row(tmp_path):
    x, y = good()
    y[17, 2] = np.nan
    expect(write(tmp_path, input=x, target=y), "target", "row 17 contains NaN or Inf", row=17)


def test_inf_names_the_row(tmp_path):
    x, y = good()
    x[3, 0] = np.inf
    expect(write(tmp_path, input=x, target=y), "input", "row 3", row=3)


def test_mismatched_rows(tmp_path):
    x, y = good()
    expect(write(tmp_path, input=x, target=y[:40]), "target", "50 rows but 'target' has 40")


def test_too_few_pairs(tmp_path):
    x, y = good(n=5)
    expect(write(tmp_path, input=x, target=y), "input", "at least 20 pairs")


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    x, y = good()
    ragged = np.empty(50, dtype=object)
    ragged[:] = [np.zeros(3)] * 50
    expect(write(tmp_path, input=ragged, target=y), "input", "without pickle")


def test_not_a_zip(tmp_path):
    path = tmp_path / "pairs.npz"
    path.write_bytes(b"hello, not an npz")
    expect(path, "file", "not a readable NPZ")


def test_empty_file(tmp_path):
    path = tmp_path / "pairs.npz"
    path.write_bytes(b"")
    expect(path, "file", "not a readable NPZ")


def test_split_never_puts_a_group_in_two_splits():
    x, y = good(n=400)
    groups = np.array([f"conv{i // 7}" for i in range(400)])
    split = split_pairs(PairData(x, y, groups), SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=4))
    sets = [set(groups[idx]) for idx in (split.train, split.val, split.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sorted(np.concatenate([split.train, split.val, split.test]).tolist()) == list(range(400))
    assert 60 <= len(split.test) <= 100


def test_split_without_groups_keeps_repeated_inputs_together():
    x, y = good(n=200)
    x[100:] = x[:100]  # every input twice, with different targets
    split = split_pairs(PairData(x, y), SplitConfig(seed=1))
    test_inputs = {x[i].tobytes() for i in split.test}
    assert not any(x[i].tobytes() in test_inputs for i in split.train)


def test_split_is_deterministic_for_a_seed():
    x, y = good(n=300)
    a = split_pairs(PairData(x, y), SplitConfig(seed=2))
    b = split_pairs(PairData(x, y), SplitConfig(seed=2))
    c = split_pairs(PairData(x, y), SplitConfig(seed=3))
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
