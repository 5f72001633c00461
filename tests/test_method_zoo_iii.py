"""Flows, distillation, f-AnoGAN and AE-U: their losses and maps against independent
computations, and a flow whose likelihood turns non-finite."""

import numpy as np
import pytest
import torch
from torch import nn

from harness.core.errors import MethodFailure
from harness.results.store import ResultStore
from harness.run.runner import bench


def test_stfpm_distance_is_half_the_squared_distance_of_unit_vectors():
    from methods.stfpm import normalised_distance

    t, s = torch.randn(2, 5, 3, 4, dtype=torch.float64), torch.randn(2, 5, 3, 4, dtype=torch.float64)
    tn, sn = t.numpy(), s.numpy()
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    expected = 0.5 * ((unit(tn) - unit(sn)) ** 2).sum(axis=1)
    np.testing.assert_allclose(normalised_distance(t, s).numpy(), expected, rtol=1e-12)
    # equal directions give 0 whatever the lengths; opposite ones give 2
    assert torch.allclose(normalised_distance(t, 3 * t), torch.zeros(2, 3, 4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(normalised_distance(t, -t), torch.full((2, 3, 4), 2.0, dtype=torch.float64))


def test_rd4ad_cosine_distance_and_decoder_shapes():
    from sklearn.metrics.pairwise import cosine_similarity

    from methods.rd4ad import ReverseDistillation, cosine_distance

    t, d = torch.randn(1, 6, 2, 2, dtype=torch.float64), torch.randn(1, 6, 2, 2, dtype=torch.float64)
    tv, dv = t[0].flatten(1).T.numpy(), d[0].flatten(1).T.numpy()  # positions x channels
    expected = 1 - np.diag(cosine_similarity(tv, dv))
    np.testing.assert_allclose(cosine_distance(t, d)[0].flatten().numpy(), expected, rtol=1e-12)
    shapes = [torch.Size((8, 16, 16)), torch.Size((16, 8, 8)), torch.Size((32, 4, 4))]
    model = ReverseDistillation(shapes, width=24)
    out = model([torch.randn(2, *s) for s in shapes])
    assert [o.shape[1:] for o in out] == shapes


def test_fastflow_log_determinant_is_the_jacobians():
    from methods.fastflow import layer_flow, negative_log_likelihood

    torch.manual_seed(0)
    layer = layer_flow(torch.Size((4, 2, 2)), steps=2, hidden_ratio=1.0, clamp=2.0, seed=0).double()
    flow = layer["flow"]
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    z, log_jac = flow(x)
    jacobian = torch.autograd.functional.jacobian(lambda v: flow(v.view(1, 4, 2, 2))[0].flatten(), x.flatten())
    assert torch.allclose(log_jac, torch.linalg.slogdet(jacobian).logabsdet.view(1), atol=1e-9)
    x_back, _ = flow(z, rev=True)
    assert torch.allclose(x_back, x, atol=1e-9)
    assert torch.allclose(negative_log_likelihood(z, log_jac), 0.5 * (z**2).sum() - log_jac)


def test_fastflow_permutations_depend_on_the_seed_alone():
    from methods.fastflow import layer_flow

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = layer_flow(torch.Size((6, 2, 2)), 2, 1.0, 2.0, seed=5).state_dict()
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's global state is left as it was
    np.random.seed(999)
    b = layer_flow(torch.Size((6, 2, 2)), 2, 1.0, 2.0, seed=5).state_dict()
    perms = [k for k in a if "perm" in k]
    assert perms and all(torch.equal(a[k], b[k]) for k in perms)


def test_ae_u_map_and_loss_are_the_gaussian_likelihood_by_hand():
    from methods.ae_u import UncertaintyAE, normalised_error, uncertainty_loss

    x, mean, logvar = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    by_hand = (x - mean) ** 2 / torch.exp(logvar)
    assert torch.allclose(normalised_error(x, mean, logvar), by_hand)
    model = UncertaintyAE(32, latent=4)
    m, lv = model.mean_and_logvar(x.new_ones(2, 1, 32, 32) * 0.5)
    assert m.shape == lv.shape == (2, 1, 32, 32) and 0 <= m.min() and m.max() <= 1
    images = torch.rand(2, 1, 32, 32)
    m, lv = model.mean_and_logvar(images)
    nll = (0.5 * torch.log(2 * torch.pi * lv.exp()) + (images - m) ** 2 / (2 * lv.exp())).mean()
    # the loss is twice the Gaussian negative log-likelihood per pixel, less its constant
    assert torch.allclose(uncertainty_loss(model, images), 2 * nll - np.log(2 * np.pi), atol=1e-5)


def test_fanogan_gradient_penalty_of_a_linear_critic():
    from methods.fanogan import gradient_penalty

    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.full((1, 1, 2, 2), 0.25))

        def forward(self, x):
            return (x * self.w).flatten(1).sum(dim=1), x

    real, fake = torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)
    # the gradient of a linear critic is w everywhere: |w| = 0.5, penalty (0.5 - 1)^2
    penalty = gradient_penalty(Linear(), real, fake, torch.Generator().manual_seed(0))
    assert torch.isclose(penalty, torch.tensor(0.25))


def test_a_flow_whose_likelihood_turns_non_finite_fails_naming_epoch_and_batch(tiny_board, tmp_path, monkeypatch):
    import methods.fastflow as fastflow

    calls = {"n": 0}
    real = fastflow.negative_log_likelihood

    def diverging(z, log_jac):
        calls["n"] += 1
        return real(z, log_jac) * (float("inf") if calls["n"] > 4 else 1.0)

    monkeypatch.setattr(fastflow, "negative_log_likelihood", diverging)
    from harness.core.paths import cache_root

    checkpoints = set(cache_root().rglob("fastflow-*.pth"))
    db = tmp_path / "r.duckdb"
    with pytest.raises(MethodFailure, match=r"fastflow: the training loss is inf at epoch 1, batch \d+; nothing"):
        bench("fastflow", tiny_board, db=db, device="cpu", params={"epochs": 2, "flow_steps": 2, "batch_size": 2})
    with ResultStore(db) as store:
        assert store.query("SELECT status FROM runs")["status"].tolist() == ["failed"]
        assert store.query("SELECT count(*) AS n FROM metrics")["n"][0] == 0
    assert set(cache_root().rglob("fastflow-*.pth")) == checkpoints, "no checkpoint of the failed training is kept"


def test_fastflow_runs_through_every_stage_of_a_run(tiny_board, tmp_path):
    """Latency measurement included: its FLOP counter once failed on FrEIA's parameters."""
    from conftest import check_clean_auroc

    from harness.api.registry import get_method

    db = tmp_path / "r.duckdb"
    smoke = get_method("fastflow").card.smoke_params
    result = bench("fastflow", tiny_board, db=db, device="cpu", corruptions=False, params=smoke)
    check_clean_auroc(db, result.run_id)
    assert not result.latency.empty and (result.latency["p50_ms"] > 0).all()
