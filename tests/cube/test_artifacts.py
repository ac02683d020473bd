import json

import pytest
import torch
from safetensors import SafetensorError

from cube import ArtifactError, build_model, load_model, save_model

CUBE = {"d_in": 12, "d_out": 10, "grid": [2, 3, 2], "channels": 3, "hidden": 8, "steps": 2}


@pytest.mark.parametrize("arch, config", [("cube", CUBE), ("linear", {"d_in": 12, "d_out": 10}),
                                          ("mlp", {"d_in": 12, "d_out": 10, "hidden": 7}),
                                          ("mlp", {"d_in": 12, "d_out": 10, "hidden": 7, "input_norm": True}),
                                          ("resmlp", {"d_in": 12, "d_out": 10, "hidden": 7})])
def test_round_trip_is_bit_identical(tmp_path, arch, config):
    torch.manual_seed(0)
    model = build_model(arch, config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # not the initial state
    x = torch.randn(9, 12)
    save_model(model, tmp_path, arch, config, metadata={"note": "test"})
    loaded, desc = load_model(tmp_path)
    assert desc["arch"] == arch and desc["metadata"] == {"note": "test"}
    assert torch.equal(model(x), loaded(x))


def test_weights_are_safetensors_not_pickle(tmp_path):
    save_model(build_model("cube", CUBE), tmp_path, "cube", CUBE)
    header_len = int.from_bytes((tmp_path / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert "read_in.weight" in header


def test_missing_directory(tmp_path):
    with pytest.raises(ArtifactError, match="not a model directory"):
        load_model(tmp_path / "nope")


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    save_model(build_model("cube", CUBE), tmp_path, "cube", CUBE)
    desc = json.loads((tmp_path / "model.json").read_text())
    desc["config"]["channels"] = 5
    (tmp_path / "model.json").write_text(json.dumps(desc))
    with pytest.raises(RuntimeError):
        load_model(tmp_path)


class Tripwire:
    """Unpickling this creates `path`: the visible trace of a loader that runs pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_file_is_never_loaded(tmp_path):
    model_dir, marker = tmp_path / "model", tmp_path / "unpickled"
    save_model(build_model("linear", {"d_in": 4, "d_out": 4}), model_dir, "linear", {"d_in": 4, "d_out": 4})
    torch.save({"evil": Tripwire(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)  # the payload is live: a pickle loader runs it
    assert marker.exists()
    marker.unlink()
    (model_dir / "model.safetensors").write_bytes((tmp_path / "evil.pt").read_bytes())  # a pickle where weights should be
    with pytest.raises(SafetensorError, match="deserializing header"):
        load_model(model_dir)
    assert not marker.exists()
