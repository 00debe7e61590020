"""LD under DDP (CPU, gloo, 2 processes): one step's loss terms and DDP-averaged gradients equal
one process over the concatenated outputs, for stage 1 and stage 2 (incl. balance prior and
grad_both_sides).

Views are fixed by monkeypatching ``make_views`` (no random crop/jitter/rot90, lam a function of
the image) and the U-Net uses GroupNorm, so every image's outputs depend on that image only.
LD pairs x1 = first half and x2 = second half of each process's batch; the one-process
reference therefore gets the images ordered [x1 of rank 0, x1 of rank 1, x2 of rank 0, x2 of
rank 1], which makes each of its view groups (x1a, x2a, x1b, x2b, m) the rank-order
concatenation of the per-rank groups. (In real runs the only difference left is this pairing:
images are paired within a process, a different random pairing of the global batch.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from localdisc.runtime import distributed as dist

HERE = Path(__file__).resolve()
WORLD, PER_RANK = 2, 4  # images per process -> b = 2 samples per process
CASES = {  # name -> LDConfig overrides
    "stage1": dict(stage="1"),
    "stage2": dict(stage="2"),
    "stage2-both-balance": dict(stage="2", grad_both_sides=True, w_balance=0.5),
}


def _fixed_views(images: torch.Tensor, cfg):
    from localdisc.methods import augment
    from localdisc.methods.ld.views import LDViews

    N = images.shape[0]
    B = N // 2
    ops = [augment.Dihedral(1, (0, 1), ())] * N  # exercises align(): b is rotated, then undone
    b = augment.apply_dihedral(images * 0.8 + 0.1, ops)
    lam = 0.3 + 0.4 * images[:B].flatten(1).mean(1)  # per sample, follows the image
    lam_v = lam.view(B, 1, 1, 1)
    m = lam_v * images[:B] + (1 - lam_v) * images[B:]
    return LDViews(inputs=torch.cat([images, b, m]), lam=lam, ops=ops, B=B, theta=torch.zeros(N, 2, 3))


def _ld_step(images: torch.Tensor, env: dist.DistEnv, case: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    import localdisc.methods.ld.method as ldm
    from localdisc.nets import UNet, UNetConfig

    torch.manual_seed(0)
    unet = UNet(UNetConfig(in_channels=1, encoder_channels=(4, 8), decoder_channels=(4,), norm="group"))
    model = ldm.LocalDiscrimination(unet, ldm.LDConfig(grid=4, embed_dim=8, num_clusters=4, **CASES[case]))
    wrapped = dist.wrap(model, env)  # keep a reference: DDP's backward hooks need it alive
    real, ldm.make_views = ldm.make_views, _fixed_views
    try:
        loss, logs = wrapped(images)
    finally:
        ldm.make_views = real
    loss.backward()
    logs["loss"] = float(loss.detach())
    return logs, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _global_images() -> torch.Tensor:
    return torch.rand(WORLD * PER_RANK, 1, 16, 16, generator=torch.Generator().manual_seed(3))


def _reference_images() -> torch.Tensor:
    """One process's batch whose x1/x2 halves are the rank-order concatenation of the ranks' halves."""
    ranks = _global_images().chunk(WORLD)
    return torch.cat([r[: PER_RANK // 2] for r in ranks] + [r[PER_RANK // 2 :] for r in ranks])


# ---------------------------------------------------------------- worker side
def _worker(argv: list[str]) -> None:
    torch.set_num_threads(1)
    out = Path(argv[0])
    env = dist.init("cpu")
    x = _global_images().chunk(env.world)[env.rank]
    for case in CASES:
        logs, grads = _ld_step(x, env, case)
        torch.save({"logs": logs, "grads": grads}, out / f"{case}-{env.rank}.pt")
    dist.cleanup()


# ---------------------------------------------------------------- test side
@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory, ddp_launch):
    out = tmp_path_factory.mktemp("ddp_ld")
    ddp_launch(HERE, WORLD, [str(out)])
    return {case: [torch.load(out / f"{case}-{r}.pt", weights_only=True) for r in range(WORLD)] for case in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_ld_ddp_step_matches_one_process_over_concatenated_outputs(ddp_results, case):
    ref_logs, ref_grads = _ld_step(_reference_images(), dist.DistEnv(), case)
    res = ddp_results[case]
    expected = {"loss", "loss_pd", "loss_mix"} | ({"loss_ld", "loss_ent"} if case != "stage1" else set()) | ({"loss_balance"} if "balance" in case else set())
    assert set(ref_logs) == expected and set(res[0]["logs"]) == expected
    for name, ref in ref_logs.items():  # (1/W) sum_r L_r == L, term by term
        assert np.mean([r["logs"][name] for r in res]) == pytest.approx(ref, abs=1e-5, rel=1e-5), name
    if "balance" in case:  # a global statistic: the same value on every process
        assert res[0]["logs"]["loss_balance"] == pytest.approx(res[1]["logs"]["loss_balance"], rel=1e-6)
    assert set(res[0]["grads"]) == set(ref_grads)
    assert any(n.startswith("cluster_head.") for n in ref_grads) == (case != "stage1")
    for r in res:  # DDP-averaged gradients == one-process gradients
        for name, g in ref_grads.items():
            torch.testing.assert_close(r["grads"][name], g, atol=1e-5, rtol=1e-4, msg=lambda m: f"{case} {name}: {m}")


def test_ld_without_a_process_group_gathers_nothing(monkeypatch):
    """world=1 takes the one-process code path (no gather calls at all)."""
    calls = []
    monkeypatch.setattr(dist, "all_gather", lambda t: calls.append(t) or t)
    logs, _ = _ld_step(_reference_images(), dist.DistEnv(), "stage2-both-balance")
    assert not calls and np.isfinite(logs["loss"])
