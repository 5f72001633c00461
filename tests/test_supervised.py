"""The supervised classifiers' training and prediction options: each changes the weights and
is kept apart by the checkpoint cache; gradient accumulation, input resolution, CLAHE; MC-dropout
and test-time augmentation with their stored, evaluated and verified variances."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import publish

from harness.api.protocol import FitContext, ImageBatches, Method, MethodCard, Prediction
from harness.api.registry import register
from harness.boards.files import load_board
from harness.core.errors import MethodOutputError, XRBenchError
from harness.results.store import ResultStore
from harness.run.runner import bench

FAST_SUPERVISED = {"epochs": "1", "augment": "0"}


def test_supervised_training_options_train_different_weights_kept_apart_by_the_cache(tiny_multilabel_board, tmp_path):
    """Each option changes training, and the checkpoint cache keeps the settings apart: ten
    settings, ten weights; a setting run again finds its own checkpoint."""
    db = tmp_path / "r.duckdb"
    settings = [
        {}, {"loss": "bce-weighted"}, {"loss": "focal", "gamma": "1.0"}, {"dropout": "0.3"}, {"clahe": "true"},
        {"noise": "0.05"}, {"loss": "focal-weighted"}, {"accumulate": "2"}, {"batch_size": "8"},
        {"resolution": "48"},
    ]  # fmt: skip
    weights = []
    for extra in [*settings, settings[2]]:
        result = bench(
            "supervised", tiny_multilabel_board, params=FAST_SUPERVISED | extra, db=db, device="cpu", corruptions=False
        )
        with ResultStore(db) as store:
            weights.append(store.run(result.run_id)["weights_sha256"])
    assert len(set(weights[:10])) == 10  # every setting trained other weights
    assert weights[10] == weights[2]  # the same setting again: its checkpoint


def test_clahe_is_kornias_equalisation_before_the_backbone_input():
    import kornia

    from harness.api.registry import create_method
    from harness.components.backbones import to_backbone_input

    gen = torch.Generator().manual_seed(0)
    images = 0.4 + 0.1 * torch.rand(2, 1, 64, 64, generator=gen)  # low contrast
    plain = create_method("supervised").model_input(images)
    equalised = create_method("supervised", {"clahe": "true", "clahe_clip": "3", "clahe_grid": "4"}).model_input(images)
    torch.testing.assert_close(plain, to_backbone_input(images))
    expected = to_backbone_input(kornia.enhance.equalize_clahe(images, clip_limit=3.0, grid_size=(4, 4)))
    torch.testing.assert_close(equalised, expected)
    assert equalised.std() > 2 * plain.std()  # contrast stretched


def test_gradient_accumulation_equals_one_batch_as_large():
    """Two batches of 8 accumulated make the same AdamW step as one batch of 16."""
    from harness.components.training import Precision, SingleLoss

    gen = torch.Generator().manual_seed(0)
    images, targets = torch.randn(16, 6, generator=gen), torch.randn(16, 1, generator=gen)

    def trained(accumulate: int) -> torch.Tensor:
        torch.manual_seed(1)
        model = torch.nn.Linear(6, 1)
        objective = SingleLoss(
            model, lambda x, y, _g, _p: ((model(x) - y) ** 2).mean(), 0.1, cosine_steps=4, accumulate=accumulate
        )
        objective.precision = Precision(torch.device("cpu"), "fp32")
        size = 16 // accumulate
        for _ in range(2):  # two epochs
            for start in range(0, 16, size):
                objective.step(images[start : start + size], targets[start : start + size], gen, 0.0)
            objective.end_epoch()
        return torch.cat([model.weight.flatten(), model.bias, torch.tensor(objective.schedule.last_epoch)[None]])

    torch.testing.assert_close(trained(2), trained(1))


def test_resolution_resizes_the_model_input():
    from harness.api.registry import create_method

    images = torch.rand(2, 1, 64, 64)
    assert create_method("supervised", {"resolution": "96"}).model_input(images).shape == (2, 3, 96, 96)
    assert create_method("supervised").model_input(images).shape == (2, 3, 64, 64)


def test_mc_dropout_and_tta_store_variances_that_are_evaluated_rescored_and_verified(tiny_multilabel_board, tmp_path):
    """Mean logits and variances over dropout samples and test-time views: stored, the same on a
    second run, evaluated as the AUROC of the variance for the errors at the validation
    thresholds (checked against scikit-learn on the stored rows), rescored identically, and
    carried through a submission bundle that verifies."""
    from sklearn.metrics import roc_auc_score

    from harness.results.rescore import rescore_run
    from harness.submissions.bundles import write_bundle
    from harness.submissions.verify import verify_bundle

    db = tmp_path / "r.duckdb"
    params = FAST_SUPERVISED | {"dropout": "0.3", "mc_dropout": "3", "tta": "2"}
    runs = [bench("supervised", tiny_multilabel_board, params=params, db=db, device="cpu", corruptions=False)]
    runs.append(bench("supervised", tiny_multilabel_board, params=params, db=db, device="cpu", corruptions=False))
    with ResultStore(db) as store:
        hashes = {store.run(r.run_id)["predictions_sha256"] for r in runs}
        assert len(hashes) == 1  # byte-identical predictions
        rows = store.predictions(runs[0].run_id)
        metrics = store.query("SELECT * FROM metrics WHERE run_id = ?", [runs[0].run_id])
        curves = store.query("SELECT * FROM risk_coverage WHERE run_id = ?", [runs[0].run_id])
        assert rescore_run(store, runs[0].run_id, tiny_multilabel_board).identical
        bundle = write_bundle(store, runs[0].run_id, tmp_path / "bundle")
    assert rows["variances"].notna().all() and np.stack(rows["variances"].to_numpy()).min() >= 0
    test = rows[(rows["split"] == "test") & (rows["condition"] == "clean")]
    targets, logits = np.stack(test["target_labels"].to_numpy()), np.stack(test["scores"].to_numpy())
    variances = np.stack(test["variances"].to_numpy())
    board = load_board(tiny_multilabel_board)
    by_metric = metrics.set_index(["slice", "metric"])["value"]
    thresholds = np.array([by_metric[(f"finding={t}", "threshold")] for t in board.targets])
    errors = (logits >= thresholds) != (targets == 1)
    expected = roc_auc_score(errors.ravel(), variances.ravel())
    assert by_metric[("all", "uncertainty_auroc")] == pytest.approx(expected)
    assert set(curves["abstain_by"].fillna("confidence")) == {"confidence", "uncertainty"}
    v = verify_bundle(bundle, boards={board.name: tiny_multilabel_board})
    assert v.ok, v.summary()
    assert not v.comparison["differs"].any()
    # The run page: the per-finding table with intervals, per-finding curves, both risk curves.
    from harness.site.render import slug

    out = tmp_path / "site"
    publish(db, out)
    html = (out / "runs" / f"{slug(runs[0].run_id)}.html").read_text()
    assert 'id="findings"' in html and "AUROC of the uncertainty for the errors" in html
    assert all(f'<td data-value="{t}">{t}</td>' in html for t in board.targets)
    findings = pd.read_csv(next((out / "data").glob("*-findings.csv")))
    assert set(findings["metric"]) >= {"auroc", "auprc", "f1@0.5", "f1", "sens@95spec", "precision@val", "recall@val"}
    risk_svg = next((out / "plots").glob("*-risk-coverage.svg")).read_text()
    assert "defer by confidence" in risk_svg and "defer by uncertainty" in risk_svg
    assert list((out / "plots").glob("*-findings-roc-pr.svg"))


def test_mc_dropout_without_dropout_is_refused(tiny_multilabel_board, tmp_path):
    with pytest.raises(XRBenchError, match="mc_dropout=2 needs dropout > 0"):
        bench(
            "supervised", tiny_multilabel_board, params=FAST_SUPERVISED | {"mc_dropout": "2"}, db=tmp_path / "r.duckdb"
        )


def test_tta_views_are_seeded_small_and_never_flipped():
    from harness.components.augment import tta_view

    images = torch.zeros(4, 1, 64, 64)
    images[:, :, :, :20] = 1.0  # a bright left third
    views = [tta_view(images, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    torch.testing.assert_close(views[0], views[1])
    assert not torch.equal(views[0], views[2])
    left, right = views[2][..., :32].mean(), views[2][..., 32:].mean()
    assert left > 0.5 and right < 0.05  # the bright side stays on the left


@pytest.mark.parametrize("backbone", ["resnet18", "densenet121", "convnext_tiny"])
def test_mc_dropout_samples_the_head_whatever_form_its_dropout_takes(backbone):
    """ResNet applies dropout functionally, DenseNet and ConvNeXt as modules: every form must be
    sampled, the same samples on a second call, the model left in eval mode."""
    from harness.api.registry import create_method
    from harness.components.backbones import create_timm_model

    method = create_method("supervised", {"dropout": "0.5", "mc_dropout": "6"})
    method.model, _ = create_timm_model(backbone, "none", 0, 64, num_classes=3, drop_rate=0.5)
    method.model.eval()
    method.seed = 0
    images = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first, second = method.predict(images), method.predict(images)
        plain = method.model(method.model_input(images))
    assert (first.variance > 0).all()
    torch.testing.assert_close(first.scores, second.scores)
    torch.testing.assert_close(first.variance, second.variance)
    assert not method.model.training  # back in eval mode
    no_passes = create_method("supervised", {"dropout": "0.5"})
    no_passes.model, no_passes.seed = method.model, 0
    with torch.no_grad():
        torch.testing.assert_close(no_passes.predict(images).scores, plain)  # without passes: the plain logits


@register
class VarianceLater(Method):
    """Reports a variance from its second batch of a split on: an inconsistent method."""

    card = MethodCard("test-variance-later", "test", "variance on later batches only", "-", "-", ("multilabel",))

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        self.batches, self.width = 0, len(ctx.targets)

    def predict(self, batch: torch.Tensor) -> Prediction:
        self.batches += 1
        scores = batch.mean(dim=(1, 2, 3))[:, None].expand(-1, self.width).clone()
        return Prediction(scores=scores, variance=torch.ones_like(scores) if self.batches > 1 else None)


def test_a_variance_on_some_batches_only_is_refused_and_nothing_stored(tiny_multilabel_board, tmp_path):
    db = tmp_path / "r.duckdb"
    with pytest.raises(MethodOutputError, match="returned a variance for this batch but none for the split's first"):
        bench("test-variance-later", tiny_multilabel_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        assert store.query("SELECT count(*) AS n FROM predictions")["n"].iloc[0] == 0
