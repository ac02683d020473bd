"""Over-long text is cut at the teacher's max_length only when the caller lets it (truncate, default
true as in TEI); truncate=false refuses it naming the input. Text requests report the tokens read."""
from __future__ import annotations

import numpy as np
import pytest

from cube.pairs import save_pairs_npz
from cube.synthetic import nonlinear_pairs
from cube.teachers import get_teacher
from tests.conftest import make_version

LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)  # about 360 MiniLM tokens
SHORT = "How do I reset my password?"


@pytest.fixture
def text_model(client, settings, tmp_path):
    c, _ = client
    save_pairs_npz(tmp_path / "qa.npz", nonlinear_pairs(n=40, d_in=384, d_out=16))
    ds = c.post("/v1/datasets", files={"file": ("p.npz", (tmp_path / "qa.npz").read_bytes())},
                data={"kind": "embedding_pairs"}).json()["id"]
    make_version(c, settings, ds, model="qa", architecture={"kind": "linear"}, teacher="minilm")
    return c


def embed(c, route: str, **body):
    return c.post(route, json={"model": "qa" if route == "/v1/transform" else "qa:1", **body})


@pytest.mark.parametrize("route", ["/v1/transform", "/v1/embeddings"])
def test_a_text_longer_than_the_teacher_reads_is_cut_by_default_and_refused_on_request(text_model, route):
    c = text_model
    minilm = get_teacher("minilm")
    assert minilm.token_lengths([LONG])[0] > minilm.spec.max_length
    cut = embed(c, route, input=[SHORT, LONG], encoding_format="float")
    assert cut.status_code == 200, cut.text
    # Cut means: the model sees the teacher's embedding of the text's first max_length tokens.
    first_tokens = minilm.encode([LONG])  # the teacher cuts at max_length itself
    via_vector = embed(c, route, input=first_tokens.tolist(), encoding_format="float").json()["data"][0]["embedding"]
    assert np.allclose(cut.json()["data"][1]["embedding"], via_vector, atol=1e-5)
    said = embed(c, route, input=[LONG], truncate=True, encoding_format="float").json()["data"][0]["embedding"]
    assert np.allclose(said, via_vector, atol=1e-5)
    refused = embed(c, route, input=[SHORT, LONG], truncate=False)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["param"] == "input[1]" and error["code"] == "input_too_long" and "at most 256" in error["message"]
    assert embed(c, route, input=[SHORT], truncate=False).status_code == 200  # short texts pass either way


def test_transform_reports_the_tokens_of_text_input_and_only_vectors_otherwise(text_model):
    c = text_model
    tokens = get_teacher("minilm").count_tokens([SHORT, LONG])
    usage = embed(c, "/v1/transform", input=[SHORT, LONG]).json()["usage"]
    assert usage == {"vectors": 2, "tokens": tokens} and tokens == get_teacher("minilm").token_lengths([SHORT])[0] + 256
    vectors = embed(c, "/v1/transform", input=np.zeros((2, 384)).tolist()).json()["usage"]
    assert vectors == {"vectors": 2}
