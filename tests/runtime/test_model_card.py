"""A model that explains itself: model.json + MODEL.md, carried into the ONNX export."""

import json

import pytest

import localdisc


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_model_card_and_onnx_metadata(tmp_path):
    onnx = pytest.importorskip("onnx")
    ft = localdisc.finetune(data="synthetic-fundus:8:32x32", out=tmp_path / "ft", labels=4, steps=2, image_size=(32, 32),
                            encoder_channels=(4, 8, 8), decoder_channels=(8, 8), batch_size=2)
    info = json.loads((ft / "model.json").read_text())
    for key in ("localdisc_version", "commit", "data", "intensity", "labels", "class_names", "best_val_dice", "n_train"):
        assert info.get(key) is not None, key
    assert "Test Dice**: n/a" in (ft / "MODEL.md").read_text()
    summary = localdisc.evaluate(ft)
    card = (ft / "MODEL.md").read_text()
    assert f"Test Dice**: {summary['metrics']['dice_mean']['mean']:.3f}" in card and "vessel" in card
    model = onnx.load(str(localdisc.export(ft, format="onnx", out=tmp_path / "m.onnx", check=False)))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["class_names"]) == ["background", "vessel"] and "percentile" in meta["intensity"] and "test_dice" in meta
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
