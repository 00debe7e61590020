"""End to end on real images (a few PH2 dermoscopy and chest X-ray images): fine-tune a few
steps, evaluate, and check per_image.csv against MONAI's DiceMetric computed independently from
the saved prediction files and the original masks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.tasks.evaluate import evaluate
from localdisc.train.finetune import FinetuneConfig, finetune

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


def _monai_dice(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    from monai.metrics import DiceMetric

    onehot = lambda a: torch.nn.functional.one_hot(torch.as_tensor(a, dtype=torch.long), num_classes).permute(2, 0, 1)[None].float()  # noqa: E731
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    return metric(onehot(pred), onehot(truth))[0].numpy()


@pytest.mark.parametrize("name,spec,channels,num_classes", [("PH2", "ph2", 3, 2), ("CXR", "cxr", 1, 4)])
def test_finetune_evaluate_and_dice_from_saved_predictions(tmp_path, shared_data, monkeypatch, name, spec, channels, num_classes):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    cfg = FinetuneConfig(data=f"{spec}:{shared_data / name}", out=str(tmp_path / "run"), labels=2, val_fraction=2, steps=10, batch_size=2, lr=1e-2,
                         image_size=(48, 48), eval_every=5, checkpoint_every=10, log_every=1, **TINY)
    run = finetune(cfg)
    summary = evaluate(run, split="test", overlays=False, save_predictions=True, max_images=3)
    assert summary["n_images"] == 3 and summary["class_names"][0] == "background" and len(summary["class_names"]) == num_classes
    with open(run / "eval-test" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    from localdisc.data.records import load_sample_mask
    from localdisc.data.sources import resolve_source

    samples = {s.id: s for s in resolve_source(cfg.data)}
    scores = []
    for row in rows:
        s = samples[row["id"]]
        assert s.split == "test"
        pred = np.asarray(Image.open(run / "eval-test" / "predictions" / f"{row['id']}.png"))
        if num_classes == 2:  # binary predictions are saved as 0/255; PH2 masks are plain 0/255 files
            pred = (pred > 127).astype(np.int64)
            truth = (np.asarray(Image.open(s.mask).convert("L")) > 127).astype(np.int64)
        else:  # class indices; the chest X-ray masks are composed from per-structure crops by the layout
            truth = np.asarray(load_sample_mask(s, num_classes))
        assert pred.shape == truth.shape  # scored at the original resolution
        want = _monai_dice(pred, truth, num_classes)
        got = np.array([float(row[f"dice_{c}"]) for c in summary["class_names"][1:]])
        np.testing.assert_allclose(got, want, atol=1e-5)
        scores += want.tolist()
        assert float(row["dice_mean"]) == pytest.approx(float(want.mean()), abs=1e-5)
    assert any(0 < d < 1 for d in scores), f"degenerate check: every Dice is 0 or 1 ({scores})"
