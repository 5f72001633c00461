"""Saliency maps (`--explain`) and `xrbench explain`: Grad-CAM explains the very score the
method reports, its maps equal a Grad-CAM computed here by hand, and they are stored and
scored like native maps."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from harness.api.registry import get_method
from harness.boards.files import load_board
from harness.cli.main import main
from harness.conformance.checks import fit_and_predict
from harness.core.errors import XRBenchError
from harness.data.loading import load_board_data
from harness.results.store import ResultStore
from harness.run.runner import bench
from harness.run.saliency import Explainer


def _fitted(name, board, **params):
    cls = get_method(name)
    method = fit_and_predict(cls, board, {**cls.card.smoke_params, **params}, 0).method
    return method, load_board_data(load_board(board)).splits["test"].images[:6].float() / 255


@pytest.mark.parametrize(
    ("name", "board"), [("knn", "tiny_board"), ("mahalanobis", "tiny_board"), ("supervised", "tiny_multilabel_board")]
)
def test_the_explained_score_is_the_score_the_method_reports(request, name, board):
    method, images = _fitted(name, request.getfixturevalue(board))
    target = method.saliency_target()
    with torch.no_grad():
        explained = target.model(images)
    with torch.no_grad():
        reported = method.predict(images).scores
    assert explained.shape == (len(images), target.channels)
    np.testing.assert_allclose(explained.numpy(), reported.reshape(len(images), -1).numpy(), rtol=1e-4)


def _grad_cam_by_hand(target, images: torch.Tensor, k: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al.): the layer's activations weighted by the spatial mean of the
    score's gradient, summed over channels, ReLU, upsampled to the image, scaled to [0, 1]."""
    saved = {}
    hook = target.layer.register_forward_hook(lambda _m, _i, out: saved.update(a=out))
    images = images.clone().requires_grad_(True)
    score = target.model(images)[:, k].sum()
    hook.remove()
    grad = torch.autograd.grad(score, saved["a"])[0]
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * saved["a"]).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0].numpy()
    low = cam.min(axis=(1, 2), keepdims=True)
    return (cam - low) / (cam.max(axis=(1, 2), keepdims=True) - low + 1e-7)


def test_gradcam_maps_equal_a_computation_by_hand(tiny_multilabel_board):
    method, images = _fitted("supervised", tiny_multilabel_board)
    # At the tiny board's 32 px the last stage is 1 x 1 (a flat map): explain layer 1's 8 x 8.
    target = dataclasses.replace(method.saliency_target(), layer=method.model.layer1)
    maps = Explainer("gradcam", target)(images).numpy()
    assert maps.shape == (len(images), target.channels, *images.shape[-2:]) and target.channels == 3
    for k in range(target.channels):
        expected = _grad_cam_by_hand(target, images, k)
        assert np.abs(maps[:, k] - expected).max() < 0.05  # the package resizes with OpenCV
        assert np.corrcoef(maps[:, k].ravel(), expected.ravel())[0, 1] > 0.99


def test_a_method_explained_with_gradcam_has_its_maps_stored_and_scored(tiny_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run = bench("knn", tiny_board, db=db, device="cpu", corruptions=False, explain="gradcam++").run_id
    with ResultStore(db) as store:
        assert store.run(run)["explain"] == "gradcam++"
        maps = store.maps(run)
        metrics = store.query("SELECT * FROM metrics WHERE run_id = ? AND slice = 'all'", [run])
    assert len(maps) == 20 + 32 and (maps[["channels", "height", "width"]].to_numpy() == [1, 64, 64]).all()
    values = {r.metric: r.value for r in metrics.itertuples()}
    assert 0 <= values["pixel_auroc"] <= 1 and 0 <= values["pointing_game"] <= 1


def test_a_method_without_a_differentiable_score_is_refused_before_fitting(tiny_board, tmp_path):
    with pytest.raises(XRBenchError, match="method ocsvm has no differentiable score to explain with gradcam; it gets"):
        bench("ocsvm", tiny_board, db=tmp_path / "r.duckdb", device="cpu", explain="gradcam")
    assert not (tmp_path / "r.duckdb").exists()


def test_explain_draws_the_image_its_map_and_its_ground_truth(tiny_board, tmp_path, capsys):
    db = tmp_path / "r.duckdb"
    patchcore = bench("patchcore", tiny_board, db=db, device="cpu", corruptions=False).run_id
    intensity = bench("intensity", tiny_board, db=db, device="cpu", corruptions=False).run_id
    with ResultStore(db) as store:
        tests = store.predictions(patchcore).query("split == 'test' and label == 1")["image_id"]
    image = tests.iloc[0]
    out = tmp_path / "figure.png"
    argv = ["explain", patchcore, image, "--board", str(tiny_board), "--db", str(db), "--out", str(out)]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    figure = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert max(figure.shape[:2]) <= 256
    red = (figure[..., 0] > 200) & (figure[..., 1] < 80) & (figure[..., 2] < 80)  # the mask's outline
    assert red.sum() > 10
    assert main(["explain", intensity, image, "--board", str(tiny_board), "--db", str(db), "--out", str(out)]) == 0
    assert "the run kept no map for this image" in capsys.readouterr().out
    assert main(["explain", patchcore, "nosuch.png", "--board", str(tiny_board), "--db", str(db)]) != 0
    assert "image 'nosuch.png' is not in the validation or test split of board tiny-ad" in capsys.readouterr().err
