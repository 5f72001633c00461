"""Every stored number of a run, recomputed independently from its stored predictions.

The runs are made end to end on the tiny boards; this test then reads the predictions and the
frozen manifest with plain DuckDB and pandas, and recomputes each stored clean metric with
scikit-learn or the direct computations of `reference.py`, never with the harness's own
functions. Exact computations must agree to 1e-12.
"""

import io
import json

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from reference import aurc, calibration_errors, pairwise_auroc, patient_loop_resamples, region_aupro, step_auprc
from scipy import ndimage
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from harness.api.protocol import Method, MethodCard, Prediction
from harness.api.registry import register
from harness.results.leaderboard import assemble
from harness.results.store import ResultStore
from harness.run.runner import bench

EXACT = 1e-12


@pytest.fixture(scope="module")
def anomaly_runs(tiny_board, tmp_path_factory):
    db = tmp_path_factory.mktemp("recompute") / "r.duckdb"
    patchcore = bench("patchcore", tiny_board, params={"coreset_ratio": "0.1"}, db=db, device="cpu").run_id
    reference = bench("intensity", tiny_board, db=db, device="cpu").run_id
    with ResultStore(db) as store:
        assemble(store, "tiny-ad")
    return db, patchcore, reference


def _read(db, sql, params):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params).df()


def _manifest(board_path) -> pd.DataFrame:
    text = board_path.read_text()
    name = text.split('split_manifest = "')[1].split('"')[0]
    return pd.read_csv(board_path.parent / name, dtype={"image_id": str, "patient_id": str})


def _condition(predictions, manifest, split, condition="clean", severity=0):
    rows = predictions[
        (predictions["split"] == split)
        & (predictions["condition"] == condition)
        & (predictions["severity"] == severity)
    ].set_index("image_id")
    meta = manifest[manifest["split"] == split].set_index("image_id")
    rows = rows.loc[meta.index]
    assert (rows["label"].to_numpy() == meta["label"].to_numpy()).all()
    return rows, meta


def _stored(db, run_id):
    metrics = _read(db, "SELECT * FROM metrics WHERE run_id = ?", [run_id])
    return {(r.condition, r.severity, r.slice, r.metric): r for r in metrics.itertuples()}


def _calibrators(val_scores, val_labels):
    lo, hi = val_scores.min(), val_scores.max()
    span = hi - lo if hi > lo else 1.0
    mean, std = val_scores.mean(), val_scores.std() or 1.0
    platt = LogisticRegression(C=1e6).fit(((val_scores - mean) / std)[:, None], val_labels)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(val_scores, val_labels)
    return {
        "none": lambda s: np.clip((s - lo) / span, 0.0, 1.0),
        "platt": lambda s: platt.predict_proba(((s - mean) / std)[:, None])[:, 1],
        "isotonic": iso.predict,
    }


def test_clean_metrics_equal_independent_computations(anomaly_runs, tiny_board):
    db, run_id, _ = anomaly_runs
    predictions = _read(db, "SELECT * FROM predictions WHERE run_id = ?", [run_id])
    manifest = _manifest(tiny_board)
    stored = _stored(db, run_id)
    run = _read(db, "SELECT * FROM runs WHERE run_id = ?", [run_id]).iloc[0]

    val, _ = _condition(predictions, manifest, "val")
    vy, vs = val["label"].to_numpy(), val["score"].to_numpy()
    f1s = {}
    for t in np.unique(vs):
        tp, fp = int(((vs >= t) & (vy == 1)).sum()), int(((vs >= t) & (vy == 0)).sum())
        f1s[t] = 2 * tp / (2 * tp + fp + int(vy.sum()) - tp)
    threshold = min(t for t, f in f1s.items() if f == max(f1s.values()))
    assert run["threshold"] == threshold

    test, meta = _condition(predictions, manifest, "test")
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    tp, fp = int(((s >= threshold) & (y == 1)).sum()), int(((s >= threshold) & (y == 0)).sum())
    fn = int(y.sum()) - tp
    negatives = s[y == 0]
    sens = max(
        ((s >= t) & (y == 1)).sum() / y.sum() for t in [*np.unique(s), np.inf] if (negatives >= t).mean() <= 0.05
    )
    positives = s[y == 1]
    spec = max((negatives < t).mean() for t in [*np.unique(s), np.inf] if (positives >= t).mean() >= 0.95)
    f1s = [2 * ((s >= t) & (y == 1)).sum() / (y.sum() + (s >= t).sum()) for t in np.unique(s)]
    expected = {
        "auroc": roc_auc_score(y, s),
        "auprc": step_auprc(y, s),
        "sens@95spec": sens,
        "spec@95sens": spec,
        "f1": 2 * tp / (2 * tp + fp + fn),
        "f1max": max(f1s),
    }
    for metric, value in expected.items():
        assert stored[("clean", 0, "all", metric)].value == pytest.approx(value, abs=EXACT), metric
        assert stored[("clean", 0, "all", metric)].n == len(y) and stored[("clean", 0, "all", metric)].n_pos == y.sum()

    # The AUROC interval from a hand-written patient loop with the board's draws (50 resamples, seed 0).
    groups = meta["patient_id"].to_numpy()
    draws = [pairwise_auroc(y[i], s[i]) for i in patient_loop_resamples(groups, 50, 0) if y[i].min() != y[i].max()]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    auroc_row = stored[("clean", 0, "all", "auroc")]
    assert (auroc_row.ci_low, auroc_row.ci_high) == pytest.approx((lo, hi), abs=EXACT)


def test_finding_and_slice_aurocs_and_their_flags(anomaly_runs, tiny_board):
    db, run_id, _ = anomaly_runs
    predictions = _read(db, "SELECT * FROM predictions WHERE run_id = ?", [run_id])
    test, meta = _condition(predictions, _manifest(tiny_board), "test")
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    stored = _stored(db, run_id)
    findings = meta["findings"].str.split("|")
    masks = {}
    for finding in {f for fs in findings for f in fs} - {"No Finding"}:
        masks[f"finding={finding}"] = (y == 0) | findings.map(lambda fs, f=finding: f in fs).to_numpy()
    age = meta["age"].to_numpy()
    bins = np.where(age < 40, "<40", np.where(age < 60, "40-59", "60+"))
    for column, values in {"view": meta["view"], "sex": meta["sex"], "site": meta["site"], "age_bin": bins}.items():
        for value in set(values):
            masks[f"{column}={value}"] = np.asarray(values) == value
    assert {k[2] for k in stored if k[0] == "clean" and k[2] != "all"} == set(masks)
    for name, mask in masks.items():
        row = stored[("clean", 0, name, "auroc")]
        n_pos, n_neg = int(y[mask].sum()), int((y[mask] == 0).sum())
        if min(n_pos, n_neg) < 3:  # the tiny board's min_slice_class
            assert np.isnan(row.value) and row.flag.startswith(f"too few cases: {n_pos} abnormal, {n_neg} normal")
        else:
            assert row.value == pytest.approx(roc_auc_score(y[mask], s[mask]), abs=EXACT), name
            assert row.n == mask.sum() and row.n_pos == n_pos and not isinstance(row.flag, str)


def test_calibration_and_selective_prediction_of_every_calibrator(anomaly_runs, tiny_board):
    db, run_id, _ = anomaly_runs
    predictions = _read(db, "SELECT * FROM predictions WHERE run_id = ?", [run_id])
    manifest = _manifest(tiny_board)
    val, _ = _condition(predictions, manifest, "val")
    stored = _stored(db, run_id)
    calibrators = _calibrators(val["score"].to_numpy(), val["label"].to_numpy())
    conditions = predictions[predictions["split"] == "test"][["condition", "severity"]].drop_duplicates()
    for condition, severity in conditions.itertuples(index=False):
        test, _ = _condition(predictions, manifest, "test", condition, severity)
        y, s = test["label"].to_numpy(), test["score"].to_numpy()
        for kind, calibrate in calibrators.items():
            for metric, value in calibration_errors(y, calibrate(s)).items():
                row = stored[(condition, severity, "all", f"{metric}_{kind}")]
                assert row.value == pytest.approx(value, abs=EXACT), (condition, severity, metric, kind)
                assert row.flag == "calibration measured on 32 images (< 300)"
        assert stored[(condition, severity, "all", "aurc")].value == pytest.approx(
            aurc(y, calibrators["platt"](s)), abs=EXACT
        )


def test_robustness_and_mce(anomaly_runs, tiny_board):
    db, run_id, reference_id = anomaly_runs
    manifest = _manifest(tiny_board)

    def aurocs(run):
        predictions = _read(db, "SELECT * FROM predictions WHERE run_id = ?", [run])
        out = {}
        for condition, severity in (
            predictions[predictions["split"] == "test"][["condition", "severity"]]
            .drop_duplicates()
            .itertuples(index=False)
        ):
            test, _ = _condition(predictions, manifest, "test", condition, severity)
            out[(condition, severity)] = roc_auc_score(test["label"], test["score"])
        return out

    mine, ref = aurocs(run_id), aurocs(reference_id)
    corrupted = {k: v for k, v in mine.items() if k[0] != "clean"}
    assert len(corrupted) == 14
    stored = _stored(db, run_id)
    for (condition, severity), value in mine.items():
        assert stored[(condition, severity, "all", "auroc")].value == pytest.approx(value, abs=EXACT)
    robustness = _read(db, "SELECT * FROM robustness WHERE run_id = ?", [run_id]).iloc[0]
    worst = min(corrupted, key=corrupted.get)
    assert robustness["mean_corrupted_auroc"] == pytest.approx(np.mean(list(corrupted.values())), abs=EXACT)
    assert (robustness["worst_condition"], robustness["worst_severity"]) == worst
    assert robustness["worst_auroc"] == pytest.approx(corrupted[worst], abs=EXACT)
    assert robustness["auroc_drop"] == pytest.approx(mine[("clean", 0)] - robustness["mean_corrupted_auroc"], abs=EXACT)
    names = sorted({k[0] for k in corrupted})
    assert all(sum(1 - ref[(n, s)] for s in (1, 2)) > 0 for n in names)
    ce = [sum(1 - mine[(n, s)] for s in (1, 2)) / sum(1 - ref[(n, s)] for s in (1, 2)) for n in names]
    increase = {n: sum(ref[("clean", 0)] - ref[(n, s)] for s in (1, 2)) for n in names}
    rel = [sum(mine[("clean", 0)] - mine[(n, s)] for s in (1, 2)) / increase[n] for n in names if increase[n] > 0]
    entry = _read(db, "SELECT * FROM leaderboard WHERE run_id = ?", [run_id]).iloc[0]
    assert entry["reference_run_id"] == reference_id
    assert entry["mce"] == pytest.approx(np.mean(ce), abs=EXACT)
    if len(rel) == len(names):
        assert entry["relative_mce"] == pytest.approx(np.mean(rel), abs=EXACT)
    else:
        assert pd.isna(entry["relative_mce"])  # undefined when the reference does not degrade


def _stored_maps(db, run_id, split):
    rows = _read(db, "SELECT * FROM maps WHERE run_id = ? AND split = ? AND condition = 'clean'", [run_id, split])
    return {
        r.image_id: np.frombuffer(bytes(r.data), "<f2").astype(np.float32).reshape(r.channels, r.height, r.width)[0]
        * r.scale
        for r in rows.itertuples()
    }


def test_localization_metrics_equal_independent_computations(anomaly_runs, tiny_board):
    """Pixel AUROC (scikit-learn, and its interval from the patient loop), AUPRO (region by
    region), best Dice, the pointing game and IoBB hits from the stored maps and the dataset's
    own mask and box files (64 px masks, 64 px maps: no resizing)."""
    from harness.conformance.tiny import TINY_DATASET
    from harness.data.adapters.synthetic import dataset_folder

    db, run_id, _ = anomaly_runs
    manifest, stored = _manifest(tiny_board), _stored(db, run_id)
    folder = dataset_folder(TINY_DATASET)
    with np.load(folder / "masks.npz") as archive:
        masks = {tuple(key.rsplit("|", 1)): archive[key] for key in archive.files}
    boxes = pd.read_csv(folder / "BBox_List_2017.csv").iloc[:, :6]
    boxes.columns = ["image_id", "finding", "x", "y", "w", "h"]

    test = manifest[manifest["split"] == "test"]
    maps = _stored_maps(db, run_id, "test")
    scores = [maps[i].astype(np.float64) for i in test["image_id"]]
    truth = [
        np.any([m for (image, _), m in masks.items() if image == i] or [np.zeros((64, 64), bool)], axis=0)
        for i in test["image_id"]
    ]
    s, t = np.concatenate([x.ravel() for x in scores]), np.concatenate([x.ravel() for x in truth])
    dice = max(2 * ((s >= th) & t).sum() / ((s >= th).sum() + t.sum()) for th in np.unique(s))
    expected = {"pixel_auroc": roc_auc_score(t, s), "aupro": region_aupro(scores, truth), "dice": dice}
    for metric, value in expected.items():
        row = stored[("clean", 0, "all", metric)]
        assert row.value == pytest.approx(value, abs=EXACT), metric
        assert (row.n, row.n_pos) == (len(test), sum(x.any() for x in truth))
    groups = test["patient_id"].to_numpy()
    draws = []
    for i in patient_loop_resamples(groups, 50, 0):
        ts = np.concatenate([truth[k].ravel() for k in i])
        draws.append(roc_auc_score(ts, np.concatenate([scores[k].ravel() for k in i])))
    row = stored[("clean", 0, "all", "pixel_auroc")]
    assert (row.ci_low, row.ci_high) == pytest.approx(tuple(np.quantile(draws, [0.025, 0.975])), abs=EXACT)

    # Boxes: the level is the 95th percentile of the normal validation images' pixels.
    val = manifest[(manifest["split"] == "val") & (manifest["label"] == 0)]
    val_maps = _stored_maps(db, run_id, "val")
    level = np.quantile(np.stack([val_maps[i] for i in val["image_id"]]).astype(np.float64), 0.95)
    run = _read(db, "SELECT map_level FROM runs WHERE run_id = ?", [run_id]).iloc[0]
    assert run["map_level"] == pytest.approx(level, abs=EXACT)
    hits = {"pointing_game": [], "iobb@0.1": [], "iobb@0.25": [], "iobb@0.5": []}
    for image_id, score in zip(test["image_id"], scores, strict=True):
        mine = boxes[boxes["image_id"] == image_id]
        if mine.empty:
            continue
        r, c = divmod(int(np.argmax(score)), score.shape[1])
        hits["pointing_game"].append(
            any(b.x <= c + 0.5 <= b.x + b.w and b.y <= r + 0.5 <= b.y + b.h for b in mine.itertuples())
        )
        labels, n = ndimage.label(score >= level, structure=np.ones((3, 3)))
        best = 0.0
        for k in range(1, n + 1):
            rows, cols = np.nonzero(labels == k)
            if len(rows) < max(1, round(0.01 * score.size)):
                continue  # speckle: fewer than 1% of the map's pixels
            x1, y1, x2, y2 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
            for b in mine.itertuples():
                inter = max(0, min(x2, b.x + b.w) - max(x1, b.x)) * max(0, min(y2, b.y + b.h) - max(y1, b.y))
                best = max(best, inter / ((x2 - x1) * (y2 - y1)))
        for threshold in (0.1, 0.25, 0.5):
            hits[f"iobb@{threshold}"].append(best >= threshold)
    assert len(hits["pointing_game"]) > 5
    for metric, values in hits.items():
        row = stored[("clean", 0, "all", metric)]
        assert row.value == pytest.approx(np.mean(values), abs=EXACT), metric
        assert row.n == len(values)


def test_gallery_holds_the_largest_errors_at_the_threshold_and_the_case_study(anomaly_runs, tiny_board):
    from PIL import Image

    from harness.boards.files import load_board
    from harness.conformance.tiny import TINY_DATASET
    from harness.data.adapters.synthetic import dataset_folder
    from harness.data.loading import load_board_data

    db, run_id, _ = anomaly_runs
    manifest = _manifest(tiny_board)
    predictions = _read(db, "SELECT * FROM predictions WHERE run_id = ?", [run_id])
    gallery = _read(db, "SELECT * FROM gallery WHERE run_id = ?", [run_id])
    run = _read(db, "SELECT * FROM runs WHERE run_id = ?", [run_id]).iloc[0]
    test, meta = _condition(predictions, manifest, "test")
    margin = test["score"] - run["threshold"]
    fp = margin[(test["label"] == 0) & (margin >= 0)].sort_values(ascending=False, kind="stable")
    fn = (-margin)[(test["label"] == 1) & (margin < 0)].sort_values(ascending=False, kind="stable")
    for kind, expected in (("false positive", fp), ("false negative", fn)):
        shown = gallery[gallery["kind"] == kind].sort_values("rank")
        assert shown["image_id"].tolist() == expected.index[:4].tolist(), kind
        assert shown["margin"].to_numpy() == pytest.approx(expected.to_numpy()[:4], abs=EXACT)

    case = gallery[gallery["kind"] == "case study"].sort_values("rank")
    first_abnormal = meta.index[meta["label"] == 1][0]
    robustness = _read(db, "SELECT * FROM robustness WHERE run_id = ?", [run_id]).iloc[0]
    worst = robustness["worst_condition"]
    highest = predictions.query("condition == @worst")["severity"].max()
    assert case["image_id"].tolist() == [first_abnormal] * 2
    assert list(zip(case["condition"], case["severity"], strict=True)) == [("clean", 0), (worst, highest)]

    # What the site draws: the input at the board's resolution and the image's masks.
    images = load_board_data(load_board(tiny_board)).splits["test"]
    ids = images.meta["image_id"].tolist()
    with np.load(dataset_folder(TINY_DATASET) / "masks.npz") as archive:
        masks = {key: archive[key] for key in archive.files}
    for row in gallery[gallery["condition"] == "clean"].itertuples():
        shown = np.asarray(Image.open(io.BytesIO(row.image)))
        assert (shown == images.images[ids.index(row.image_id), 0].numpy()).all()
        own = [m for key, m in masks.items() if key.startswith(f"{row.image_id}|")]
        if own:
            assert (np.asarray(Image.open(io.BytesIO(row.mask))) > 0).tolist() == np.any(own, axis=0).tolist()
        else:
            assert pd.isna(row.mask)


@register
class CentredNoise(Method):
    """Seeded N(-2, 1) logits: a finite best temperature (uniform random logits have none)."""

    card = MethodCard("test-centred-noise", "test", "-", "-", "-", tasks=("multilabel",), learning="none")

    def fit(self, train, val, ctx):
        self.generator, self.k = torch.Generator().manual_seed(ctx.seed), len(ctx.targets)

    def predict(self, batch):
        return Prediction(scores=torch.randn(len(batch), self.k, generator=self.generator) - 2)


def test_multilabel_values_equal_independent_computations(tiny_multilabel_board, tmp_path):
    db = tmp_path / "r.duckdb"
    run_id = bench("test-centred-noise", tiny_multilabel_board, db=db, device="cpu", corruptions=False).run_id
    predictions = _read(db, "SELECT * FROM predictions WHERE run_id = ?", [run_id])
    manifest = _manifest(tiny_multilabel_board)
    run = _read(db, "SELECT * FROM runs WHERE run_id = ?", [run_id]).iloc[0]
    targets = json.loads(run["targets"])
    stored = _stored(db, run_id)
    test, meta = _condition(predictions, manifest, "test")
    truth = np.array([[t in f.split("|") for t in targets] for f in meta["findings"]], dtype=int)
    assert (np.stack(test["target_labels"].to_numpy()) == truth).all()
    logits = np.stack(test["scores"].to_numpy())
    usable = [k for k in range(len(targets)) if min(truth[:, k].sum(), (1 - truth[:, k]).sum()) >= 2]
    per_finding = {k: roc_auc_score(truth[:, k], logits[:, k]) for k in usable}
    assert stored[("clean", 0, "all", "auroc")].value == pytest.approx(np.mean(list(per_finding.values())), abs=EXACT)
    for k, value in per_finding.items():
        assert stored[("clean", 0, f"finding={targets[k]}", "auroc")].value == pytest.approx(value, abs=EXACT)
        auprc = stored[("clean", 0, f"finding={targets[k]}", "auprc")].value
        assert auprc == pytest.approx(step_auprc(truth[:, k], logits[:, k]), abs=EXACT)
    # Temperature: minimise the validation BCE over T with scipy; then the pooled calibration errors.
    val, val_meta = _condition(predictions, manifest, "val")
    vt = np.array([[t in f.split("|") for t in targets] for f in val_meta["findings"]], dtype=float)
    vl = np.stack(val["scores"].to_numpy())

    def bce(log_t):
        p = np.clip(expit(vl / np.exp(log_t)), 1e-15, 1 - 1e-15)
        return -np.mean(vt * np.log(p) + (1 - vt) * np.log(1 - p))

    best = np.exp(minimize_scalar(bce, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10}).x)
    assert run["temperature"] == pytest.approx(best, rel=1e-6)
    for kind, probs in (("none", expit(logits)), ("temperature", expit(logits / run["temperature"]))):
        for metric, value in calibration_errors(truth.ravel(), probs.ravel()).items():
            assert stored[("clean", 0, "all", f"{metric}_{kind}")].value == pytest.approx(value, abs=EXACT)
