"""The timed LD step of benchmarks/ld_speed.py: the fast training step equals loss_terms on the
same views, and every mode runs a forward and a backward."""

import torch

from localdisc.tasks.ld_speed import child_parser, ld_step, table


def test_the_fast_step_is_the_spec_path_and_every_mode_backpropagates():
    torch.manual_seed(0)
    step, same_terms = ld_step("ld", (32, 32), 1, 0.0)
    logs = step()
    assert {"loss_pd", "loss_mix", "loss_ld", "loss_ent"} <= set(logs)
    assert same_terms() < 1e-4
    for mode in ("bare", "heads"):
        step, _ = ld_step(mode, (32, 32), 1, 0.0)
        assert step() == {}


def test_child_options_and_table():
    a = child_parser().parse_args(["--child", "bare", "--size", "32", "32", "--pairs", "1"])
    assert (a.child, a.size, a.pairs, a.shift) == ("bare", [32, 32], 1, 0.0)
    row = {"config": "32x32:1", "modes": {"ld": {"seconds_per_step": 2.0, "peak_rss_mb": 300}, "bare": {"seconds_per_step": 1.0, "peak_rss_mb": 200}},
           "ld_over_bare": 2.0, "heads_over_bare": None, "reference_over_ld": None, "ld_over_reference_memory": None, "max_abs_diff_vs_loss_terms": 1e-7}
    text = "\n".join(table([row]))
    assert "| 32x32:1 | 2" in text and "1.0e-07" in text
