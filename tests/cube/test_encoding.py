"""Encoding text pairs through a teacher: the cache makes a second encode free; groups, difficulty and
the quality filter; `cube encode` and `cube train` on a text file."""
import hashlib
import json

import numpy as np
import pytest

from cube.encoding import EmbeddingCache, encode_text_pairs, encode_text_pairs_with_stats
from cube.pairs import PairFileError, load_pairs_file
from cube.textpairs import TextPairs


class CountingTeacher:
    """A deterministic stand-in: a text's vector comes from its hash; counts what it is asked."""

    def __init__(self, name="fake", dim=16):
        self.name, self.dim = name, dim
        self.cache_name = name
        self.calls, self.texts = 0, 0

    def encode(self, texts, batch_size=64):
        self.calls += 1
        self.texts += len(texts)
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out.append(v / np.linalg.norm(v))
        return np.array(out, np.float32)


def text_pairs(n=30, offset=0, groups=True):
    return TextPairs([f"q{i}" for i in range(offset, offset + n)], [f"a{i}" for i in range(offset, offset + n)],
                     [f"c{i // 3}" for i in range(offset, offset + n)] if groups else None)


def test_second_encode_hits_the_cache(tmp_path):
    teacher = CountingTeacher()
    first, stats1 = encode_text_pairs_with_stats(text_pairs(), teacher, tmp_path)
    assert teacher.texts == 60 and stats1.encoded == 60 and stats1.cache_hits == 0
    again = CountingTeacher()
    second, stats2 = encode_text_pairs_with_stats(text_pairs(), again, tmp_path)
    assert again.calls == 0 and stats2.cache_hits == 60
    np.testing.assert_array_equal(first.input, second.input)
    np.testing.assert_array_equal(first.target, second.target)


def test_cache_is_shared_across_datasets_and_keyed_by_teacher(tmp_path):
    encode_text_pairs(text_pairs(30), CountingTeacher(), tmp_path)
    teacher = CountingTeacher()
    encode_text_pairs(text_pairs(30, offset=20), teacher, tmp_path)  # 10 of 30 pairs are known
    assert teacher.texts == 40
    other = CountingTeacher(name="other")
    encode_text_pairs(text_pairs(30), other, tmp_path)  # another teacher's space: recomputed
    assert other.texts == 60
    assert (tmp_path / "embeddings.sqlite").is_file()


def test_repeated_texts_are_encoded_once(tmp_path):
    teacher = CountingTeacher()
    tp = TextPairs([f"q{i % 5}" for i in range(25)], [f"a{i}" for i in range(25)])
    data = encode_text_pairs(tp, teacher, tmp_path)
    assert teacher.texts == 30
    # Without given groups, pairs that share an input share a group (one side of any split).
    assert len(set(data.groups)) == 5
    assert len(set(data.groups[[0, 5, 10]])) == 1


def test_groups_difficulty_and_quality_filter(tmp_path):
    teacher = CountingTeacher()
    tp = text_pairs(40)
    data = encode_text_pairs(tp, teacher, tmp_path)
    assert list(data.groups[:4]) == ["c0", "c0", "c0", "c1"]
    cos = np.sum(data.input * data.target, axis=1)
    np.testing.assert_allclose(data.difficulty, np.clip(1 - cos, 0, 1), atol=1e-5)
    threshold = float(np.quantile(cos, 0.4))
    kept, stats = encode_text_pairs_with_stats(tp, teacher, tmp_path, quality_threshold=threshold, min_pairs=5)
    assert stats.dropped_low_quality == int((cos < threshold).sum()) and len(kept) == stats.pairs_out
    assert np.all(np.sum(kept.input * kept.target, axis=1) >= threshold - 1e-6)
    with pytest.raises(PairFileError, match="after the quality filter"):
        encode_text_pairs(tp, teacher, tmp_path, quality_threshold=0.99)


def test_cache_ignores_vectors_of_another_dim(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put_many("t", ["k"], np.ones((1, 4), np.float32))
    assert cache.get_many("t", 4, ["k"])["k"].shape == (4,)
    assert cache.get_many("t", 8, ["k"]) == {}
    cache.close()


def write_text_file(path, n=40):
    path.write_text("".join(json.dumps({"input": f"How is item {i} today?", "target": f"Item {i} is doing fine, thanks.",
                                        "group": f"chat{i // 2}"}) + "\n" for i in range(n)))
    return path


def test_cube_encode_command_with_minilm(tmp_path, capsys):
    from app.cli import main

    src = write_text_file(tmp_path / "pairs.jsonl")
    out = tmp_path / "pairs.npz"
    assert main(["encode", "--teacher", "minilm", "--data", str(src), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    data = load_pairs_file(out)
    assert data.input.shape == (40, 384) and data.groups[0] == "chat0" and data.difficulty is not None
    np.testing.assert_allclose(np.linalg.norm(data.input, axis=1), 1.0, atol=1e-5)
    assert "wrote 40 pairs" in capsys.readouterr().out
    # The same file again comes entirely from the cache.
    assert main(["encode", "--data", str(src), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "80 from the cache, 0 encoded" in capsys.readouterr().err


def test_cube_encode_reports_errors(tmp_path, capsys):
    from app.cli import main

    src = write_text_file(tmp_path / "pairs.jsonl")
    assert main(["encode", "--teacher", "nope", "--data", str(src), "--out", str(tmp_path / "x.npz")]) == 2
    assert "unknown teacher 'nope'" in capsys.readouterr().err
    src.write_text(src.read_text() + "{broken\n")
    assert main(["encode", "--data", str(src), "--out", str(tmp_path / "x.npz")]) == 2
    assert "line 41: not valid JSON" in capsys.readouterr().err


def test_cube_train_accepts_text_pairs(tmp_path, monkeypatch):
    import cube.teachers
    from app.cli import main

    # The teacher is stubbed so this stays a test of the text path, not of MiniLM (tested above).
    monkeypatch.setattr(cube.teachers, "get_teacher", lambda name, registry=None: CountingTeacher(name, 16))
    src = write_text_file(tmp_path / "pairs.jsonl", 120)
    out = tmp_path / "run"
    assert main(["train", "--data", str(src), "--out", str(out), "--arch", "linear", "--cache-dir", str(tmp_path / "c"),
                 "--set", "n_epochs=1", "--set", "batch_size=32"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["config"]["d_in"] == 16 and sum(report["n"].values()) == 120
