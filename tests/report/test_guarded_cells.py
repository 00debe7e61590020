"""The benchmark's guarded rows: per (budget, seed), the pretrained or the random-init cell by
validation Dice alone, with that cell's own per-image test rows."""

from localdisc.report.selection import guarded_cells, length_choice


def _cells():
    records, per_image = [], []
    val = {("ld", "2", 0): 0.60, ("random", "2", 0): 0.70, ("ld", "2", 1): 0.80, ("random", "2", 1): 0.80,
           ("ld", "5", 0): 0.90, ("random", "5", 0): 0.85, ("genesis", "2", 0): 0.99}
    for (m, b, s), v in val.items():
        records.append({"method": m, "budget": b, "seed": s, "best_val_dice": v, "n_labels": int(b)})
        # test Dice unrelated to validation Dice: the choice must not look at it
        per_image += [{"method": m, "budget": b, "seed": s, "id": f"i{i}", "dice_mean": (hash((m, b, s)) % 100) / 100 + i} for i in range(3)]
    return records, per_image


def test_choice_follows_validation_and_copies_the_chosen_cells_rows():
    records, per_image = _cells()
    recs, rows = guarded_cells(records, per_image)
    kept = {(r["budget"], r["seed"]): r["kept"] for r in recs}
    assert kept == {("2", 0): "random", ("2", 1): "ld", ("5", 0): "ld"}  # a tie keeps the pretrained cell
    assert all(r["method"] == "ld-guarded" for r in recs + rows)
    for (b, s), k in kept.items():
        source = "random" if k == "random" else "ld"
        want = [r["dice_mean"] for r in per_image if (r["method"], r["budget"], r["seed"]) == (source, b, s)]
        assert [r["dice_mean"] for r in rows if (r["budget"], r["seed"]) == (b, s)] == want


def test_a_cell_without_its_random_twin_is_left_out():
    records, per_image = _cells()
    recs, _ = guarded_cells(records, per_image, pretrained="genesis", name="g")
    assert [(r["budget"], r["seed"], r["kept"]) for r in recs] == [("2", 0, "genesis")]
    recs, _ = guarded_cells([r for r in records if r["method"] != "random"], per_image)
    assert recs == []


def test_length_choice_follows_validation_with_the_shorter_on_ties():
    def cells(vals, shift):
        recs = [{"method": m, "budget": "2", "seed": s, "best_val_dice": v} for (m, s), v in vals.items()]
        rows = [{"method": m, "budget": "2", "seed": s, "id": "i0", "dice_mean": shift + s} for (m, s) in vals]
        return recs, rows
    short = cells({("ld", 0): 0.7, ("ld", 1): 0.8, ("random", 0): 0.6}, 0.0)
    long = cells({("ld", 0): 0.75, ("ld", 1): 0.8, ("random", 0): 0.5, ("random", 1): 0.9}, 10.0)
    recs, rows = length_choice({200: short, 400: long})
    assert {(r["method"], r["seed"]): r["steps"] for r in recs} == {("ld", 0): 400, ("ld", 1): 200, ("random", 0): 200}
    assert sorted((r["method"], r["seed"], r["dice_mean"]) for r in rows) == [("ld", 0, 10.0), ("ld", 1, 1.0), ("random", 0, 0.0)]
