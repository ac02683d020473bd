"""Text-pair files: valid JSONL and CSV load; every user error names its line and field."""
import json

import numpy as np
import pytest

from cube.pairs import PairData, PairFileError, split_pairs
from cube.config import SplitConfig
from cube.textpairs import load_text_pairs


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n=25, group=True):
    return [{"input": f"question {i}?", "target": f"answer number {i}", **({"group": f"c{i // 3}"} if group else {})}
            for i in range(n)]


def test_jsonl_loads_with_groups_and_drops_duplicates(tmp_path):
    data = rows() + [rows()[0], rows()[1]]
    tp = load_text_pairs(write_jsonl(tmp_path / "p.jsonl", data + [""]))  # a trailing blank line is fine
    assert len(tp) == 25 and tp.duplicates_dropped == 2
    assert tp.inputs[3] == "question 3?" and tp.targets[3] == "answer number 3" and tp.groups[3] == "c1"


def test_jsonl_without_groups(tmp_path):
    tp = load_text_pairs(write_jsonl(tmp_path / "p.jsonl", rows(group=False)))
    assert tp.groups is None and tp.duplicates_dropped == 0


def test_csv_loads_including_quoted_multiline_cells(tmp_path):
    lines = ["input,target,group"] + [f"q{i}?,a {i},g{i % 5}" for i in range(24)] + ['"multi\nline?","a, with comma",g9']
    tp = load_text_pairs((tmp_path / "p.csv").write_text("\n".join(lines) + "\n") and tmp_path / "p.csv")
    assert len(tp) == 25 and tp.inputs[-1] == "multi\nline?" and tp.targets[-1] == "a, with comma"


@pytest.mark.parametrize("bad_line, field, fragment", [
    ("{not json", "line", "not valid JSON"),
    ('["input", "target"]', "line", "JSON object"),
    ('{"target": "x"}', "input", "missing field 'input'"),
    ('{"input": "q", "target": "   "}', "target", "'target' is empty"),
    ('{"input": "q", "target": 5}', "target", "must be a string"),
    ('{"input": ["q"], "target": "a"}', "input", "must be a string"),
    ('{"input": "q", "target": "a", "group": true}', "group", "must be a string"),
])
def test_jsonl_errors_name_line_and_field(tmp_path, bad_line, field, fragment):
    data = rows()[:3] + [bad_line] + rows()[3:]
    with pytest.raises(PairFileError) as info:
        load_text_pairs(write_jsonl(tmp_path / "p.jsonl", data))
    assert info.value.line == 4 and info.value.field == field
    assert fragment in str(info.value) and "line 4" in str(info.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, rows())
    raw = path.read_bytes().split(b"\n")
    raw[5] = raw[5].replace(b"question", b"qu\xff\xfestion")
    path.write_bytes(b"\n".join(raw))
    with pytest.raises(PairFileError, match="line 6: not valid UTF-8") as info:
        load_text_pairs(path)
    assert info.value.line == 6 and info.value.field == "file"


def test_group_on_some_rows_only(tmp_path):
    data = rows()
    del data[7]["group"]
    with pytest.raises(PairFileError, match="every row or on none") as info:
        load_text_pairs(write_jsonl(tmp_path / "p.jsonl", data))
    assert info.value.line == 8 and info.value.field == "group"


def test_too_few_pairs_and_empty_file(tmp_path):
    with pytest.raises(PairFileError, match="at least 20 pairs, found 5 distinct"):
        load_text_pairs(write_jsonl(tmp_path / "p.jsonl", rows(5)))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(PairFileError, match="found no pairs"):
        load_text_pairs(tmp_path / "e.jsonl")
    assert len(load_text_pairs(write_jsonl(tmp_path / "p.jsonl", rows(5)), min_pairs=5)) == 5


def test_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_text("question,target\nq,a\n")
    with pytest.raises(PairFileError, match="no column 'input'") as info:
        load_text_pairs(tmp_path / "a.csv")
    assert info.value.line == 1 and info.value.field == "input"
    (tmp_path / "b.csv").write_text("input,target\n" + "".join(f"q{i},a{i}\n" for i in range(22)) + "q,,\n")
    with pytest.raises(PairFileError) as info:
        load_text_pairs(tmp_path / "b.csv")
    assert info.value.line == 24
    (tmp_path / "c.csv").write_text("input,target\n" + "".join(f"q{i},a{i}\n" for i in range(22)) + "q,\n")
    with pytest.raises(PairFileError, match="'target' is empty") as info:
        load_text_pairs(tmp_path / "c.csv")
    assert info.value.line == 24 and info.value.field == "target"


def test_unknown_suffix_and_explicit_format(tmp_path):
    path = write_jsonl(tmp_path / "pairs.txt", rows())
    with pytest.raises(PairFileError, match="cannot tell the format"):
        load_text_pairs(path)
    assert len(load_text_pairs(path, fmt="jsonl")) == 25


def test_split_by_group_never_leaks():
    # 600 pairs in 100 conversations of uneven size: no conversation in two splits.
    rng = np.random.default_rng(0)
    groups = np.array([f"conv{g}" for g in rng.integers(0, 100, 600)])
    data = PairData(rng.standard_normal((600, 8)).astype(np.float32), rng.standard_normal((600, 8)).astype(np.float32), groups)
    split = split_pairs(data, SplitConfig(val_fraction=0.1, test_fraction=0.2, seed=3))
    parts = [set(groups[idx]) for idx in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(map(len, (split.train, split.val, split.test))) == 600
    assert 0.1 < len(split.test) / 600 < 0.3


def test_split_without_groups_keeps_a_repeated_input_on_one_side():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    x = np.repeat(x, 4, axis=0)  # each question has four answers
    data = PairData(x, rng.standard_normal((200, 8)).astype(np.float32))
    split = split_pairs(data, SplitConfig(seed=0))
    sides = [{row.tobytes() for row in x[idx]} for idx in (split.train, split.val, split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])


def test_question_flag_from_jsonl_and_csv(tmp_path):
    flagged = [{**r, "question": i % 2 == 0} for i, r in enumerate(rows())]
    tp = load_text_pairs(write_jsonl(tmp_path / "q.jsonl", flagged))
    assert tp.question == [i % 2 == 0 for i in range(25)]
    assert load_text_pairs(write_jsonl(tmp_path / "n.jsonl", rows())).question is None
    csv = "input,target,question\n" + "".join(f"q{i}?,answer {i},{['true', '0', 'FALSE', '1'][i % 4]}\n" for i in range(25))
    (tmp_path / "q.csv").write_text(csv)
    assert load_text_pairs(tmp_path / "q.csv").question == [i % 4 in (0, 3) for i in range(25)]


@pytest.mark.parametrize("value, fragment", [("yes", "must be true or false"), (1, "must be true or false")])
def test_question_flag_errors_name_the_line(tmp_path, value, fragment):
    bad = rows()
    bad = [{**r, "question": True} for r in bad]
    bad[4]["question"] = value
    with pytest.raises(PairFileError, match=fragment) as exc:
        load_text_pairs(write_jsonl(tmp_path / "b.jsonl", bad))
    assert exc.value.line == 5 and exc.value.field == "question"
    half = rows()
    half[0]["question"] = True
    with pytest.raises(PairFileError, match="every row or on none") as exc:
        load_text_pairs(write_jsonl(tmp_path / "h.jsonl", half))
    assert exc.value.line == 2 and exc.value.field == "question"
