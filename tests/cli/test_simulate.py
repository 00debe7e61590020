import numpy as np
from PIL import Image

from localdisc.cli.main import main


def test_simulate_shapes_writes_n_pngs(tmp_path):
    out = tmp_path / "priors"
    assert main(["simulate-shapes", "--kind", "vessels", "--num-images", "3", "--image-size", "40", "48", "--out", str(out), "--seed", "1",
                 "--thickness", "1", "3", "--depth", "3"]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 3
    arr = np.asarray(Image.open(files[0]))
    assert arr.shape == (40, 48) and set(np.unique(arr)) == {0, 255}


def test_simulate_shapes_lungs_and_tubes(tmp_path):
    assert main(["simulate-shapes", "--kind", "lungs", "--num-images", "2", "--image-size", "48", "48", "--out", str(tmp_path / "l")]) == 0
    assert len(list((tmp_path / "l").glob("*.png"))) == 2
    assert main(["simulate-shapes", "--kind", "tubes3d", "--num-images", "1", "--image-size", "12", "16", "16", "--out", str(tmp_path / "t")]) == 0
    assert len(list((tmp_path / "t").glob("*.nii.gz"))) == 1


def test_simulate_shapes_retina_writes_fov_clipped_vessel_masks(tmp_path):
    import numpy as np
    from PIL import Image

    assert main(["simulate-shapes", "--kind", "retina", "--num-images", "2", "--image-size", "64", "64", "--out", str(tmp_path)]) == 0
    masks = [np.asarray(Image.open(f)) > 0 for f in sorted(tmp_path.glob("retina_*.png"))]
    assert len(masks) == 2 and all(0 < m.mean() < 0.3 for m in masks)
    assert not any(m[0].any() or m[:, 0].any() for m in masks)  # the circular field of view leaves the border empty
    assert main(["simulate-shapes", "--kind", "retina", "--n-roots", "3", "--out", str(tmp_path)]) == 2  # no tree knobs


def test_simulate_shapes_bad_options(tmp_path, capsys):
    assert main(["simulate-shapes", "--kind", "disc", "--image-size", "32", "32", "32", "--out", str(tmp_path)]) == 2
    assert main(["simulate-shapes", "--kind", "disc", "--depth", "3", "--out", str(tmp_path)]) == 2
    assert "does not apply" in capsys.readouterr().err
