"""The real boards, frozen again from the public metadata files that torchxrayvision's wheel
ships, must give the committed manifests and label hashes byte for byte (a reader or split
change that alters a board fails here); their counts are checked against pandas computations
written here from the raw files, independently of the adapters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.boards.files import load_board
from harness.boards.splits import read_manifest, target_matrix
from harness.cli.main import main
from harness.core.fingerprints import file_sha256
from harness.data.adapters.chexpert import read_chexpert
from harness.data.adapters.packaged import FILES, metadata_root

pytest.importorskip("torchxrayvision")

REAL_BOARDS = [
    "nih-ad",
    "nih-cls",
    "nih-3label-cls",
    "nih-loc",
    "rsna-ad",
    "chexpert-ad",
    "chexpert-cls",
    "vindr-ad",
    "nih-to-chexpert-ad",
    "rsna-medianomaly",
    "vindr-medianomaly",
    "chexpert-upd",
    "chexpert-upd-disjoint",
    "siim-ptx-loc",
    "nih-expert-ad",
    "nih-expert-cls",
    "padchest-ad",
    "nih-to-padchest-ad",
]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("packaged")
    return {name: metadata_root(name, folder) for name in FILES}


@pytest.fixture()
def packaged_env(roots, monkeypatch) -> dict[str, Path]:
    for name, root in roots.items():
        monkeypatch.setenv(f"XRBENCH_{name.upper()}_ROOT", str(root))
    return roots


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_a_real_board_freezes_again_to_its_committed_manifest(name, packaged_env, tmp_path):
    board = load_board(name)
    text = board.path.read_text()
    text = re.sub(r'(?m)^split_manifest = ".*"$', f'split_manifest = "{name}.csv"', text)
    text = re.sub(r'(?m)^(split_sha256|labels_sha256) = ".*"$', r'\1 = ""', text)
    text = re.sub(r'(?m)^lists = "(.*)"$', lambda m: f'lists = "{(board.path.parent / m.group(1)).resolve()}"', text)
    (tmp_path / f"{name}.toml").write_text(text)
    main(["split", "freeze", str(tmp_path / f"{name}.toml")])
    assert file_sha256(tmp_path / f"{name}.csv") == board.split_sha256
    again = load_board(tmp_path / f"{name}.toml")
    assert again.labels_sha256 == board.labels_sha256
    root = packaged_env[(board.test_dataset or board.dataset).name]
    for file, sha in (("boxes", "boxes_sha256"), ("masks", "masks_sha256")):
        if board.ground_truth.get(sha):
            assert file_sha256(root / board.ground_truth[file]) == board.ground_truth[sha]


def _manifest(name: str) -> pd.DataFrame:
    board = load_board(name)
    return read_manifest(board.split_manifest, ids_only=True, patient_disjoint=board.patient_disjoint)


def _counts(frame: pd.DataFrame, label: pd.Series) -> dict:
    return frame.assign(label=frame["image_id"].map(label)).groupby(["split", "label"]).size().to_dict()


def test_rsna_ad_counts_from_the_raw_labels(roots):
    raw = pd.read_csv(roots["rsna"] / "stage_2_train_labels.csv")
    target = raw.groupby("patientId")["Target"].max()
    frame = _manifest("rsna-ad")
    assert _counts(frame, target) == {
        ("train", 0): 3851,
        ("val", 0): 500,
        ("val", 1): 500,
        ("test", 0): 1000,
        ("test", 1): 1000,
    }
    assert (frame["patient_id"] == frame["image_id"]).all()


def _chexpert_frontal(roots) -> pd.DataFrame:
    raw = pd.read_csv(roots["chexpert"] / "train.csv")
    raw = raw[raw["Frontal/Lateral"] == "Frontal"]
    return raw.set_index(raw["Path"].str.split("/", n=1).str[1])


def _findings(raw: pd.DataFrame) -> list[str]:
    """The 12 findings of the file's header: after 'No Finding', before 'Support Devices'."""
    columns = list(raw.columns)
    return columns[columns.index("No Finding") + 1 : columns.index("Support Devices")]


def test_chexpert_uncertainty_semantics_on_the_real_file(roots):
    raw = _chexpert_frontal(roots)
    values = raw[_findings(raw)]
    positive, uncertain = (values == 1).any(axis=1), (values == -1).any(axis=1)
    said_normal = raw["No Finding"] == 1
    uncertain_only = uncertain & ~positive
    nothing_said = ~positive & ~uncertain & ~said_normal
    assert int(nothing_said.sum()) == 4184  # reports neither normal nor abnormal (the card gives this count)
    for policy, normal, unlabelled in (
        ("ignore", said_normal, uncertain_only | nothing_said),
        ("zeros", said_normal | uncertain_only, nothing_said),
        ("ones", said_normal, nothing_said),
    ):
        entries = read_chexpert(roots["chexpert"], uncertainty=policy).set_index("image_id")
        assert int((entries["label"] == 0).sum()) == int(normal.sum()), policy
        assert int(entries["label"].isna().sum()) == int(unlabelled.sum()), policy
        assert (entries.loc[entries["label"].isna(), "findings"] == "").all()
        assert (entries.loc[entries["label"] == 0, "findings"] == "No Finding").all()
    # `zeros` is no longer the same as `ignore`: the uncertain-only reports become normal.
    assert int(uncertain_only.sum()) == 8860


def test_chexpert_ad_counts_from_the_raw_table(roots):
    raw = _chexpert_frontal(roots)
    raw = raw[(raw["AP/PA"] == "AP") & ~raw["Support Devices"].isin([1, -1])]
    abnormal = (raw[_findings(raw)] == 1).any(axis=1)
    label = pd.Series(np.where(abnormal, 1, np.where(raw["No Finding"] == 1, 0, -1)), index=raw.index)
    frame = _manifest("chexpert-ad")
    assert frame["image_id"].isin(label.index).all() and (frame["image_id"].map(label) >= 0).all()
    assert _counts(frame, label) == {
        ("train", 0): 3500,
        ("val", 0): 500,
        ("val", 1): 500,
        ("test", 0): 1000,
        ("test", 1): 1000,
    }


def test_chexpert_cls_labels_from_the_raw_table(roots):
    raw = _chexpert_frontal(roots)
    targets = load_board("chexpert-cls").targets
    mapped = raw[list(targets)].fillna(0).replace(-1, np.nan)
    ones = {"Atelectasis", "Edema"}
    for finding in targets:
        mapped[finding] = mapped[finding].fillna(1 if finding in ones else 0)
    frame = _manifest("chexpert-cls")
    entries = read_chexpert(roots["chexpert"], uncertainty="zeros", uncertain_positive=sorted(ones)).set_index(
        "image_id"
    )
    ours = target_matrix(entries.loc[frame["image_id"], "findings"].reset_index(drop=True), targets)
    theirs = mapped.loc[frame["image_id"], list(targets)].to_numpy().astype(np.int64)
    np.testing.assert_array_equal(ours, theirs)
    # Every frontal image is on the board except the reports that say nothing.
    values = raw[_findings(raw)]
    nothing_said = ~(values == 1).any(axis=1) & ~(values == -1).any(axis=1) & (raw["No Finding"] != 1)
    assert len(frame) == len(raw) - int(nothing_said.sum())
    shares = frame["split"].value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.01 and abs(shares["test"] - 0.2) < 0.01


def test_vindr_ad_counts_from_the_raw_annotations(roots):
    raw = pd.read_csv(roots["vindr"] / "train.csv")
    votes = raw[raw["class_name"] != "No finding"].groupby(["image_id", "class_name"])["rad_id"].nunique()
    majority = set(votes[votes >= 2].index.get_level_values(0))
    all_none = raw.groupby("image_id")["class_name"].agg(lambda c: (c == "No finding").all())
    label = pd.Series(np.where(all_none, 0, -1), index=all_none.index)
    label[label.index.isin(majority)] = 1
    assert (label == 0).sum() == 10606  # VinDr-CXR's published count of normal training images
    frame = _manifest("vindr-ad")
    assert (frame["image_id"].map(label) >= 0).all()
    assert _counts(frame, label) == {
        ("train", 0): 6000,
        ("val", 0): 500,
        ("val", 1): 500,
        ("test", 0): 1500,
        ("test", 1): 1500,
    }


def test_nih_to_chexpert_ad_tests_on_chexpert_ad_test_split():
    cross, own = _manifest("nih-to-chexpert-ad"), _manifest("chexpert-ad")
    test_ids = set(cross.loc[cross["split"] == "test", "image_id"])
    assert test_ids == set(own.loc[own["split"] == "test", "image_id"])
    assert not any(i.startswith("train/patient") for i in cross.loc[cross["split"] != "test", "image_id"])


def _published(name: str) -> dict[str, set[str]]:
    """MedIAnomaly's lists as its JSON file holds them, ids without the `.jpg` it appends."""
    raw = json.loads((Path(__file__).parents[1] / "datasets" / "medianomaly" / name).read_text())
    flat = {"train/0": raw["train"]["0"], "test/0": raw["test"]["0"], "test/1": raw["test"]["1"]}
    flat |= {f"pool/{k}": v for k, v in (raw["train"].get("unlabeled") or {"1": raw["train"]["1"]}).items()}
    return {key: {i.removesuffix(".jpg") for i in ids} for key, ids in flat.items()}


def _ids(frame: pd.DataFrame, split: str) -> set[str]:
    return set(frame.loc[frame["split"] == split, "image_id"])


def test_rsna_medianomaly_is_the_published_lists(roots):
    lists, frame = _published("rsna.json"), _manifest("rsna-medianomaly")
    assert _ids(frame, "train") == lists["train/0"] and len(lists["train/0"]) == 3851
    assert _ids(frame, "test") == lists["test/0"] | lists["test/1"]
    val = _ids(frame, "val")
    assert len(val & lists["pool/0"]) == 500 and len(val & lists["pool/1"]) == 500 and len(val) == 1000
    target = pd.read_csv(roots["rsna"] / "stage_2_train_labels.csv").groupby("patientId")["Target"].max()
    assert _counts(frame, target) == {("train", 0): 3851, ("val", 0): 500, ("val", 1): 500, ("test", 0): 1000,
                                      ("test", 1): 1000}  # fmt: skip
    assert load_board("rsna-medianomaly").resolution == 64


def test_vindr_medianomaly_is_the_published_lists_less_a_drawn_validation_split(roots):
    lists, frame = _published("vincxr.json"), _manifest("vindr-medianomaly")
    assert _ids(frame, "test") == lists["test/0"] | lists["test/1"]
    train, val = _ids(frame, "train"), _ids(frame, "val")
    assert train | (val & lists["train/0"]) == lists["train/0"] and len(train) == 9606 - 500
    assert len(val & lists["pool/1"]) == 500
    raw = pd.read_csv(roots["vindr"] / "train.csv")
    every_reader_none = raw.groupby("image_id")["class_name"].agg(lambda c: (c == "No finding").all())
    normal = set(every_reader_none[every_reader_none].index)
    assert train <= normal and lists["test/0"] <= normal and not (lists["test/1"] | lists["pool/1"]) & normal


def _upd_draw(train_csv: Path) -> dict[str, list[str]]:
    """UPD's default CheXpert split, rebuilt here from the rules in the splits README with the
    csv module and torch's global seed, as UPD's code draws it (not with harness.boards.recipes)."""
    import csv

    import torch

    with open(train_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    others = ("Enlarged Cardiomediastinum", "Lung Opacity", "Fracture", "Pleural Other", "Pneumothorax")

    def listed(sex: str, effusion: bool) -> list[str]:
        out = []
        for r in rows:
            kept = r["Frontal/Lateral"] == "Frontal" and r["Age"] > "18" and r["Sex"] == sex
            kept = kept and r["AP/PA"] == "AP" and r["Support Devices"] != "1.0"
            if effusion:
                kept = kept and r["Pleural Effusion"] == "1.0" and all(r[c] != "1.0" for c in others)
            else:
                kept = kept and r["No Finding"] == "1.0"
            if kept:
                out.append(r["Path"].split("/", 1)[1])
        return out

    paths1, paths2 = listed("Female", False), listed("Male", False)
    assert (len(paths1), len(paths2)) == (2446, 3000)  # the line counts of UPD's list files
    effusion1, effusion2 = listed("Female", True), listed("Male", True)
    assert (len(effusion1), len(effusion2)) == (3419, 4036)
    n = min(len(paths1), len(paths2))
    paths1, paths2 = paths1[:n], paths2[:n]
    pool = paths1[200:] + paths2[200:]
    torch.manual_seed(42)
    order = torch.randperm(len(pool))
    cut = int(len(pool) * 0.95)
    normals = paths1[:200] + paths2[:200]
    m = min(len(effusion1), len(effusion2))
    anomalies = (effusion1[:m] + effusion2[:m])[:400]
    torch.manual_seed(42)
    normal_order, anomaly_order = torch.randperm(400), torch.randperm(400)
    normals = [normals[k] for k in normal_order]
    anomalies = [anomalies[k] for k in anomaly_order]
    return {"train": [pool[k] for k in order[:cut]], "val_pool": [pool[k] for k in order[cut:]],
            "test_normal": normals[:360], "test_effusion": anomalies[:360],
            "val_normal": normals[360:], "val_effusion": anomalies[360:]}  # fmt: skip


def test_chexpert_upd_is_the_split_upds_code_draws(roots):
    draw, frame = _upd_draw(roots["chexpert"] / "train.csv"), _manifest("chexpert-upd")
    assert len(draw["train"]) == 4267 and len(draw["val_pool"]) == 225
    assert _ids(frame, "train") == set(draw["train"])
    assert _ids(frame, "test") == set(draw["test_normal"]) | set(draw["test_effusion"])
    assert _ids(frame, "val") == set(draw["val_pool"]) | set(draw["val_normal"]) | set(draw["val_effusion"])
    raw = _chexpert_frontal(roots)
    assert (raw.loc[draw["test_effusion"], "Sex"] == "Female").all()
    assert (raw.loc[draw["test_effusion"], "Pleural Effusion"] == 1).all()
    assert (raw.loc[draw["train"] + draw["test_normal"], "No Finding"] == 1).all()
    board = load_board("chexpert-upd")
    assert (board.resolution, board.resample, board.patient_disjoint) == (128, "lanczos", False)
    # The crossing patients the board file counts: test effusions of patients with training normals.
    patient = lambda ids: {i.split("/")[1] for i in ids}  # noqa: E731
    train_patients = patient(draw["train"])
    assert sum(i.split("/")[1] in train_patients for i in draw["test_effusion"]) == 14
    assert not patient(draw["test_normal"]) & train_patients
    # The card's counts: images of each split that share a patient with another split.
    frame = _manifest("chexpert-upd")
    crossing = frame.groupby("patient_id")["split"].transform("nunique") > 1
    assert crossing.groupby(frame["split"]).sum().to_dict() == {"train": 60, "val": 63, "test": 49}


def test_chexpert_upd_disjoint_keeps_the_test_set_and_drops_crossing_patients():
    upd, disjoint = _manifest("chexpert-upd"), _manifest("chexpert-upd-disjoint")
    assert _ids(disjoint, "test") == _ids(upd, "test")
    assert disjoint.groupby("patient_id")["split"].nunique().max() == 1
    test_patients = set(upd.loc[upd["split"] == "test", "patient_id"])
    upd_train = upd[upd["split"] == "train"]
    assert _ids(disjoint, "train") == set(upd_train.loc[~upd_train["patient_id"].isin(test_patients), "image_id"])
    assert len(_ids(disjoint, "train")) == 4256 and len(_ids(disjoint, "val")) == 242
    assert _ids(disjoint, "val") <= _ids(upd, "val")
    assert load_board("chexpert-upd-disjoint").patient_disjoint


def test_siim_ptx_loc_counts_from_the_raw_run_lengths(roots):
    raw = pd.read_csv(roots["siim"] / "train-rle.csv", dtype=str, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    outlined = (raw["EncodedPixels"].str.strip() != "-1").groupby(raw["ImageId"]).any().astype(int)
    frame = _manifest("siim-ptx-loc")
    assert _counts(frame, outlined) == {("train", 0): 5000, ("val", 0): 500, ("val", 1): 500, ("test", 0): 1500,
                                        ("test", 1): 1500}  # fmt: skip
    assert (frame["patient_id"] == frame["image_id"]).all()


def test_nih_expert_boards_are_googles_sets_with_googles_labels(roots):
    """Validation and test are Google's sets; each image's label, read here from the raw file,
    is 1 when any of the four findings is YES; nih_agrees compares it with NIH's text mining."""
    raw = pd.read_csv(roots["nih"] / "google2019_nih-chest-xray-labels.csv", dtype={"Patient ID": str})
    four = ["Fracture", "Pneumothorax", "Airspace opacity", "Nodule or mass"]
    expert = (raw[four] == "YES").any(axis=1).astype(int).set_axis(raw["Image Index"])
    sets = raw.groupby("Set Id")["Image Index"].agg(set)
    anomaly, multilabel = _manifest("nih-expert-ad"), _manifest("nih-expert-cls")
    assert _ids(anomaly, "test") == sets["test"] == _ids(multilabel, "test") and _ids(anomaly, "val") == sets["val"]
    assert _ids(multilabel, "train") | _ids(multilabel, "val") == sets["val"]
    assert _counts(anomaly[anomaly["split"] != "train"], expert) == {("val", 0): 1217, ("val", 1): 1197,
                                                                     ("test", 0): 660, ("test", 1): 1302}  # fmt: skip
    nih = pd.read_csv(roots["nih"] / "Data_Entry_2017_v2020.csv", dtype={"Patient ID": str}).set_index("Image Index")
    train = anomaly[anomaly["split"] == "train"]
    assert len(train) == 8000 and (nih.loc[train["image_id"], "Finding Labels"] == "No Finding").all()
    assert not set(train["patient_id"]) & set(raw["Patient ID"])
    test = raw[raw["Set Id"] == "test"]
    nih_abnormal = (nih.loc[test["Image Index"], "Finding Labels"] != "No Finding").to_numpy()
    assert int((nih_abnormal == expert[test["Image Index"]].to_numpy().astype(bool)).sum()) == 1366  # the card's count


def test_nih_expert_labels_in_the_adapter(roots):
    from harness.data.adapters.nih import read_nih

    entries = read_nih(roots["nih"], labels="experts").set_index("image_id")
    assert entries.loc["00000013_026.png", "findings"] == "Pneumothorax"  # NIH: Cardiomegaly|Emphysema
    assert entries.loc["00000013_026.png", "nih_findings"] == "Cardiomegaly|Emphysema"
    assert entries.loc["00000013_008.png", ["findings", "nih_agrees"]].tolist() == ["Airspace opacity", "differs"]
    assert (entries["official_split"] != "").sum() == 4376


def test_padchest_boards_from_the_raw_table(roots):
    """Labels rebuilt here from the raw table: physicians' reports, normal when the only label
    is "normal", abnormal when any label is outside the notes and devices the card lists."""
    import ast

    from harness.data.adapters.padchest import DEVICES, NOT_FINDINGS

    raw = pd.read_csv(roots["padchest"] / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", low_memory=False)
    raw = raw[raw["MethodLabel"] == "Physician"]
    names = raw["Labels"].map(lambda t: set(map(str.strip, ast.literal_eval(t))) if isinstance(t, str) else set())
    finding = names.map(lambda n: bool(n - NOT_FINDINGS - DEVICES - {"normal", "exclude", "suboptimal study"}))
    usable = ~names.map(lambda n: bool(n & {"exclude", "suboptimal study"}) or ("normal" in n and n != {"normal"}))
    label = pd.Series(np.where(finding, 1.0, np.where(names.map(lambda n: n == {"normal"}), 0.0, np.nan)),
                      index=raw["ImageID"]).where(usable.to_numpy())  # fmt: skip
    frame, cross = _manifest("padchest-ad"), _manifest("nih-to-padchest-ad")
    assert _counts(frame, label) == {("train", 0.0): 5000, ("val", 0.0): 500, ("val", 1.0): 500,
                                     ("test", 0.0): 2000, ("test", 1.0): 2000}  # fmt: skip
    assert (raw.set_index("ImageID").loc[frame["image_id"], "Projection"] == "PA").all()
    assert _ids(cross, "test") == _ids(frame, "test") and not _ids(cross, "train") & set(raw["ImageID"])
