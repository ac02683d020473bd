"""Embedding-pair files in NPZ, Parquet and JSONL: one loader, the same validation, precise errors."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cube.pairs import PairData, PairFileError, load_pairs_file, save_pairs_npz

N, D_IN, D_OUT = 24, 6, 4


def pairs(seed=0):
    rng = np.random.default_rng(seed)
    return PairData(rng.standard_normal((N, D_IN)).astype(np.float32), rng.standard_normal((N, D_OUT)).astype(np.float32),
                    np.array([f"g{i // 2}" for i in range(N)]), rng.random(N).astype(np.float32))


def write_jsonl(path, data: PairData, mutate=None):
    lines = []
    for i in range(len(data)):
        row = {"input": data.input[i].tolist(), "target": data.target[i].tolist(), "group": str(data.groups[i])}
        lines.append(json.dumps(row))
    if mutate:
        mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_parquet(path, columns):
    pq.write_table(pa.table(columns), path)
    return path


def parquet_columns(data: PairData):
    return {"input": data.input.tolist(), "target": data.target.tolist(), "group": data.groups.tolist()}


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".jsonl"])
def test_every_format_round_trips(tmp_path, suffix):
    data = pairs()
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".npz":
        save_pairs_npz(path, data)
    elif suffix == ".parquet":
        write_parquet(path, parquet_columns(data))
    else:
        write_jsonl(path, data)
    got = load_pairs_file(path)
    np.testing.assert_allclose(got.input, data.input, rtol=1e-6)
    np.testing.assert_allclose(got.target, data.target, rtol=1e-6)
    assert got.input.dtype == np.float32 and list(got.groups) == list(data.groups)


def test_format_from_argument_and_unknown_suffix(tmp_path):
    path = write_jsonl(tmp_path / "pairs.data", pairs())
    with pytest.raises(PairFileError, match="cannot tell the format") as info:
        load_pairs_file(path)
    assert info.value.field == "file"
    assert len(load_pairs_file(path, fmt="jsonl")) == N


def jsonl_error(tmp_path, mutate):
    with pytest.raises(PairFileError) as info:
        load_pairs_file(write_jsonl(tmp_path / "p.jsonl", pairs(), mutate))
    return info.value


@pytest.mark.parametrize("mutate, line, field, fragment", [
    (lambda ls: ls.__setitem__(4, "{oops"), 5, "line", "not valid JSON"),
    (lambda ls: ls.__setitem__(4, "[1, 2]"), 5, "line", "JSON object"),
    (lambda ls: ls.__setitem__(4, json.dumps({"input": [1.0] * D_IN})), 5, "target", "missing field 'target'"),
    (lambda ls: ls.__setitem__(4, json.dumps({"input": "text", "target": [1.0] * D_OUT, "group": "g"})), 5, "input", "list of numbers"),
    (lambda ls: ls.__setitem__(4, json.dumps({"input": [1.0] * D_IN, "target": [1.0, "x", 0, 0], "group": "g"})), 5, "target", "only numbers"),
    (lambda ls: ls.__setitem__(4, '{"input": [NaN, 0, 0, 0, 0, 0], "target": [1, 0, 0, 0], "group": "g"}'), 5, "input", "NaN or Inf"),
    (lambda ls: ls.__setitem__(4, json.dumps({"input": [1.0] * (D_IN + 1), "target": [1.0] * D_OUT, "group": "g"})), 5, "input", "earlier lines have 6"),
    (lambda ls: ls.__setitem__(4, json.dumps({"input": [1.0] * D_IN, "target": [1.0] * D_OUT})), 5, "group", "every line or on none"),
])
def test_jsonl_errors_name_line_and_field(tmp_path, mutate, line, field, fragment):
    err = jsonl_error(tmp_path, mutate)
    assert (err.line, err.field) == (line, field) and fragment in err.message


def test_jsonl_not_utf8_empty_and_too_few(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, pairs())
    path.write_bytes(path.read_bytes().replace(b'"g1"', b'"g\xff"', 1))
    with pytest.raises(PairFileError, match="not valid UTF-8") as info:
        load_pairs_file(path)
    assert info.value.line == 3
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(PairFileError, match="no pairs"):
        load_pairs_file(tmp_path / "e.jsonl")
    with pytest.raises(PairFileError, match="at least 20 pairs, got 3"):
        load_pairs_file(write_jsonl(tmp_path / "few.jsonl", pairs(), lambda ls: ls.__delitem__(slice(3, None))))


def test_parquet_errors(tmp_path):
    data = pairs()
    cols = parquet_columns(data)
    ragged = dict(cols, input=[r if i != 7 else r[:-1] for i, r in enumerate(cols["input"])])
    with pytest.raises(PairFileError, match="row 7 has 5 numbers") as info:
        load_pairs_file(write_parquet(tmp_path / "a.parquet", ragged))
    assert (info.value.field, info.value.row) == ("input", 7)

    with pytest.raises(PairFileError, match="missing column 'target'"):
        load_pairs_file(write_parquet(tmp_path / "b.parquet", {"input": cols["input"]}))

    nulls = dict(cols, target=[r if i != 3 else None for i, r in enumerate(cols["target"])])
    with pytest.raises(PairFileError, match="row 3 is null") as info:
        load_pairs_file(write_parquet(tmp_path / "c.parquet", nulls))
    assert (info.value.field, info.value.row) == ("target", 3)

    nan = dict(cols, target=[r if i != 9 else [float("nan")] * D_OUT for i, r in enumerate(cols["target"])])
    with pytest.raises(PairFileError, match="row 9 contains NaN") as info:
        load_pairs_file(write_parquet(tmp_path / "d.parquet", nan))
    assert info.value.row == 9

    strings = dict(cols, input=[str(r) for r in cols["input"]])
    with pytest.raises(PairFileError, match="must be a list of floats") as info:
        load_pairs_file(write_parquet(tmp_path / "e.parquet", strings))
    assert info.value.field == "input"

    (tmp_path / "f.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PairFileError, match="not a readable Parquet file"):
        load_pairs_file(tmp_path / "f.parquet")

    few = {k: v[:5] for k, v in cols.items()}
    with pytest.raises(PairFileError, match="at least 20 pairs"):
        load_pairs_file(write_parquet(tmp_path / "g.parquet", few))


def test_npz_goes_through_the_existing_loader(tmp_path):
    np.savez(tmp_path / "p.npz", input=np.zeros((N, 3), np.float32))
    with pytest.raises(PairFileError, match="missing array 'target'"):
        load_pairs_file(tmp_path / "p.npz")
