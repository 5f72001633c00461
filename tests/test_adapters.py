"""Metadata readers on small fake trees in each dataset's published layout."""

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.cli.main import main
from harness.core.errors import XRBenchError
from harness.core.paths import REPO_ROOT
from harness.data.adapters.base import NIH_COLUMNS
from harness.data.adapters.chexpert import read_chexpert
from harness.data.adapters.chexpert_labels import OBSERVATIONS, anomaly_labels
from harness.data.adapters.mimic import image_path, read_mimic
from harness.data.adapters.nih import read_bbox_list, read_nih
from harness.data.datasets import read_entries
from harness.data.local import check_files


def _png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def _observations(**values) -> dict:
    return {name: values.get(name.replace(" ", "_"), "") for name in OBSERVATIONS}


def test_uncertainty_policies():
    rows = pd.DataFrame(
        [
            _observations(No_Finding=1.0),
            _observations(Cardiomegaly=1.0, Edema=-1.0),
            _observations(Edema=-1.0),
            _observations(Support_Devices=1.0),
            _observations(No_Finding="", Pneumothorax=0.0),
        ]
    )
    label, findings = anomaly_labels(rows, "ignore")
    assert label.tolist()[:2] == [0.0, 1.0] and np.isnan(label.tolist()[2:]).all()
    assert findings.tolist()[:2] == ["No Finding", "Cardiomegaly"]
    assert (
        anomaly_labels(rows, "ones")[0].tolist()[2] == 1.0
        and anomaly_labels(rows, "ones")[1][1] == "Cardiomegaly|Edema"
    )
    assert findings.tolist()[2:] == ["", "", ""]  # unlabelled images name no finding
    zeros_label, zeros_findings = anomaly_labels(rows, "zeros")
    # Under zeros an uncertain-only report reads as normal; a report saying nothing stays unlabelled.
    assert zeros_label.tolist()[:3] == [0.0, 1.0, 0.0] and np.isnan(zeros_label.tolist()[3:]).all()
    assert zeros_findings.tolist() == ["No Finding", "Cardiomegaly", "No Finding", "", ""]
    assert anomaly_labels(rows, "ones")[0].tolist()[:3] == [0.0, 1.0, 1.0]
    # U-Ones for Edema only: uncertain Edema is Edema whatever the policy.
    mixed_label, mixed_findings = anomaly_labels(rows, "zeros", uncertain_positive=("Edema",))
    assert mixed_label.tolist()[:3] == [0.0, 1.0, 1.0] and mixed_findings[1] == "Cardiomegaly|Edema"
    with pytest.raises(XRBenchError, match="'Edemaa'"):
        anomaly_labels(rows, "zeros", uncertain_positive=("Edemaa",))
    with pytest.raises(XRBenchError, match="policy"):
        anomaly_labels(rows, "maybe")
    with pytest.raises(XRBenchError, match="'2'"):
        anomaly_labels(pd.DataFrame([_observations(Edema="2")]), "ignore")


def _chexpert_tree(root):
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS]
    rows = [
        [
            "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
            "Male",
            68,
            "Frontal",
            "AP",
            *_observations(No_Finding=1.0).values(),
        ],
        [
            "CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg",
            "Male",
            68,
            "Lateral",
            "",
            *_observations(No_Finding=1.0).values(),
        ],
        [
            "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg",
            "Female",
            40,
            "Frontal",
            "PA",
            *_observations(Pleural_Effusion=1.0, Edema=-1.0).values(),
        ],
    ]
    pd.DataFrame(rows, columns=header).to_csv(root / "train.csv", index=False)
    valid = [
        [
            "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
            "Female",
            55,
            "Frontal",
            "AP",
            *_observations(Edema=-1.0).values(),
        ]
    ]
    pd.DataFrame(valid, columns=header).to_csv(root / "valid.csv", index=False)


def test_chexpert_reader(tmp_path):
    _chexpert_tree(tmp_path)
    entries = read_chexpert(tmp_path)
    assert entries["image_id"].tolist()[0] == "train/patient00001/study1/view1_frontal.jpg"
    assert len(entries) == 3  # lateral view left out
    assert entries["patient_id"].tolist() == ["chexpert-00001", "chexpert-00002", "chexpert-64541"]
    assert entries["label"].tolist()[:2] == [0.0, 1.0] and np.isnan(entries["label"].iloc[2])
    assert entries["official_split"].tolist() == ["train", "train", "valid"]
    assert entries["view"].tolist() == ["AP", "PA", "AP"] and entries["sex"].tolist() == ["M", "F", "F"]
    assert len(read_chexpert(tmp_path, frontal_only=False)) == 4


def test_chexpert_missing_columns_are_named(tmp_path):
    pd.DataFrame({"Path": ["x"]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(XRBenchError, match="lacks the CheXpert columns"):
        read_chexpert(tmp_path)


def _mimic_tree(root):
    meta = pd.DataFrame(
        {
            "dicom_id": ["d1", "d2", "d3", "d4"],
            "subject_id": [10000032, 10000032, 10000764, 10000898],
            "study_id": [50414267, 50414267, 57375967, 50771383],
            "ViewPosition": ["PA", "LATERAL", "AP", "PA"],
            "Rows": 1,
            "Columns": 1,
        }
    )
    labels = pd.DataFrame(
        [
            {"subject_id": 10000032, "study_id": 50414267, **_observations(No_Finding=1.0)},
            {"subject_id": 10000764, "study_id": 57375967, **_observations(Consolidation=1.0)},
        ]
    )
    split = meta[["dicom_id", "study_id", "subject_id"]].assign(split=["train", "train", "test", "validate"])
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt") as f:
        meta.to_csv(f, index=False)
    labels.to_csv(root / "mimic-cxr-2.0.0-chexpert.csv", index=False)
    split.to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)


def test_mimic_reader(tmp_path):
    _mimic_tree(tmp_path)
    entries = read_mimic(tmp_path).set_index("image_id")
    first = image_path(10000032, 50414267, "d1")
    assert first == "files/p10/p10000032/s50414267/d1.jpg"
    assert list(entries.index) == ["d1", "d3", "d4"]
    assert entries["path"].tolist() == [
        first,
        image_path(10000764, 57375967, "d3"),
        image_path(10000898, 50771383, "d4"),
    ]
    assert entries["label"].tolist()[:2] == [0.0, 1.0]
    assert np.isnan(entries["label"].iloc[2])  # study without labels: kept, labelled NaN
    assert entries["official_split"].tolist() == ["train", "test", "validate"]
    with pytest.raises(XRBenchError, match="negbio"):
        read_mimic(tmp_path, labeler="negbio")


def _nih_tree(root):
    rows = [
        ["00000001_000.png", "Cardiomegaly|Effusion", 0, 1, 58, "M", "PA", 2682, 2749, 0.143, 0.143],
        ["00000002_000.png", "No Finding", 0, 2, 81, "M", "AP", 2500, 2048, 0.171, 0.171],
        ["00000003_000.png", "Hernia", 0, 3, 74, "F", "PA", 2500, 2048, 0.168, 0.168],
    ]
    pd.DataFrame(rows, columns=NIH_COLUMNS).to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    _png(root / "images_001" / "images" / "00000001_000.png")
    _png(root / "images_002" / "images" / "00000002_000.png")
    (root / "images_002" / "images" / "00000003_000.png").write_bytes(b"not a png")
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000002_000.png\n")
    (root / "test_list.txt").write_text("00000003_000.png\n")


def test_nih_reader_finds_images_and_the_official_split(tmp_path):
    _nih_tree(tmp_path)
    entries = read_nih(tmp_path)
    assert entries["image_id"].tolist() == ["00000001_000.png", "00000002_000.png", "00000003_000.png"]
    assert entries["path"].tolist() == [
        "images_001/images/00000001_000.png",
        "images_002/images/00000002_000.png",
        "images_002/images/00000003_000.png",
    ]
    assert entries["official_split"].tolist() == ["train_val", "train_val", "test"]
    assert entries["label"].tolist() == [1, 0, 1]
    report = check_files(tmp_path, [*entries["path"], "images/missing.png"])
    assert report.present == 2 and list(report.unreadable) == ["images_002/images/00000003_000.png"]
    assert report.missing == ["images/missing.png"]


def test_nih_expert_labels_replace_the_text_mined_ones_and_bad_rows_are_named(tmp_path):
    _nih_tree(tmp_path)
    header = "Image Index,Fracture,Pneumothorax,Airspace opacity,Nodule or mass,Set Id\n"
    path = tmp_path / "google2019_nih-chest-xray-labels.csv"
    with pytest.raises(XRBenchError, match=r"google2019_nih-chest-xray-labels.csv is missing: the combined expert"):
        read_nih(tmp_path, labels="experts")
    path.write_text(header + "00000001_000.png,NO,NO,NO,NO,test\n00000002_000.png,NO,YES,NO,YES,val\n")
    entries = read_nih(tmp_path, labels="experts").set_index("image_id")
    assert entries["label"].tolist() == [0, 1, 1] and entries["official_split"].tolist() == ["test", "val", ""]
    assert entries["findings"].tolist() == ["No Finding", "Pneumothorax|Nodule or mass", "Hernia"]
    assert entries["nih_agrees"].tolist() == ["differs", "differs", ""]
    path.write_text(header + "00000001_000.png,NO,MAYBE,NO,NO,test\n")
    with pytest.raises(XRBenchError, match=r"labels.csv, line 2: findings must be YES or NO"):
        read_nih(tmp_path, labels="experts")
    path.write_text(header + "99999999_000.png,NO,NO,NO,NO,test\n")
    with pytest.raises(XRBenchError, match=r"1 images are not in the NIH table \(first: 99999999_000.png\)"):
        read_nih(tmp_path, labels="experts")
    with pytest.raises(XRBenchError, match=r"nih option labels = 'radiologists'"):
        read_nih(tmp_path, labels="radiologists")


def test_nih_boxes(tmp_path):
    (tmp_path / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n00013118_008.png,Atelectasis,225.08,547.02,86.79,79.18\n"
    )
    boxes = read_bbox_list(tmp_path / "BBox_List_2017.csv")
    assert boxes.iloc[0].to_dict() == {
        "image_id": "00013118_008.png",
        "finding": "Atelectasis",
        "x": 225.08,
        "y": 547.02,
        "w": 86.79,
        "h": 79.18,
    }


def test_the_real_nih_box_list_is_read_in_1024_pixel_space_with_data_entry_names(tmp_path):
    """NIH's own BBox_List_2017.csv (shipped in torchxrayvision's wheel): 984 boxes on 880
    images, 'Infiltrate' read as Data_Entry's 'Infiltration', every box inside the 1024 x 1024
    PNGs, and the file the nih boards were frozen with."""
    import tomllib

    import torchxrayvision

    from harness.core.fingerprints import file_sha256
    from harness.data.groundtruth import check_inside, scale_boxes

    packed = Path(torchxrayvision.__file__).parent / "data" / "BBox_List_2017.csv.gz"
    path = tmp_path / "BBox_List_2017.csv"
    path.write_bytes(gzip.decompress(packed.read_bytes()))
    boxes = read_bbox_list(path)
    assert len(boxes) == 984 and boxes["image_id"].nunique() == 880
    boards = {b: tomllib.loads((REPO_ROOT / "leaderboards" / f"{b}.toml").read_text()) for b in ("nih-ad", "nih-cls")}
    assert set(boxes["finding"]) <= set(boards["nih-cls"]["targets"]) and "Infiltration" in set(boxes["finding"])
    assert (pd.read_csv(path)["Finding Label"] == "Infiltrate").sum() == (boxes["finding"] == "Infiltration").sum()
    check_inside(boxes, (1024, 1024), path)
    assert boxes[["x", "y"]].to_numpy().max() > 512  # not in a smaller space
    for board in boards.values():
        frozen = board["ground_truth"]
        assert frozen["boxes_sha256"] == file_sha256(path) and frozen["box_space"] == [1024, 1024]
    xywh = ["x", "y", "w", "h"]
    at_224 = scale_boxes(boxes, (1024, 1024), (224, 224))
    np.testing.assert_allclose(at_224[xywh].to_numpy(), boxes[xywh].to_numpy() * 224 / 1024)


def test_data_check_command_reports_and_fails_on_unusable_images(tmp_path, capsys):
    _nih_tree(tmp_path)
    assert main(["data", "check", "nih", "--root", str(tmp_path)]) != 0
    out = capsys.readouterr()
    assert "images_002/images/00000003_000.png: not a PNG, JPEG or DICOM file" in out.out
    # A PNG cut short starts like a PNG: only decoding finds it, and --quick says it does not decode.
    broken = tmp_path / "images_002" / "images" / "00000003_000.png"
    _png(broken)
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])
    assert main(["data", "check", "nih", "--root", str(tmp_path), "--quick"]) == 0
    assert "presence and file signatures checked only" in capsys.readouterr().out
    assert main(["data", "check", "nih", "--root", str(tmp_path)]) != 0
    assert "00000003_000.png: unreadable" in capsys.readouterr().out
    _png(broken)
    assert main(["data", "check", "nih", "--root", str(tmp_path)]) == 0
    with pytest.raises(XRBenchError, match="unknown dataset"):
        read_entries("openi", tmp_path)


def test_official_test_list_split_keeps_the_release_test_set(tmp_path):
    from harness.boards.splits import official_test_split

    rows = [
        [f"{p:08d}_{i:03d}.png", "No Finding" if p % 3 else "Mass", i, p, 50, "F", "PA", 1, 1, 0.1, 0.1]
        for p in range(1, 41)
        for i in range(2)
    ]
    pd.DataFrame(rows, columns=NIH_COLUMNS).to_csv(tmp_path / "Data_Entry_2017_v2020.csv", index=False)
    (tmp_path / "train_val_list.txt").write_text("".join(f"{r[0]}\n" for r in rows if r[3] <= 30))
    (tmp_path / "test_list.txt").write_text("".join(f"{r[0]}\n" for r in rows if r[3] > 30))
    entries = read_nih(tmp_path)
    frame = official_test_split(entries, val_fraction=0.2, seed=0)
    assert sorted(frame.loc[frame["split"] == "test", "image_id"]) == [r[0] for r in rows if r[3] > 30]
    assert (frame["split"] == "val").sum() == 12 and (frame["split"] == "train").sum() == 48
    assert frame.groupby("patient_id")["split"].nunique().max() == 1
    (tmp_path / "test_list.txt").unlink()
    (tmp_path / "train_val_list.txt").unlink()
    with pytest.raises(XRBenchError, match="official split lists"):
        official_test_split(read_nih(tmp_path), val_fraction=0.2, seed=0)


def test_committed_nih_cls_manifest_matches_its_board():
    from harness.boards.files import load_board
    from harness.boards.splits import read_manifest, target_matrix, verify_manifest

    board = load_board("nih-cls")
    verify_manifest(board.split_manifest, board.split_sha256)
    manifest = read_manifest(board.split_manifest)
    assert len(manifest) == 112_120 and set(manifest["view"]) == {"PA", "AP"}
    positives = target_matrix(manifest.loc[manifest["split"] == "test", "findings"], board.targets).sum(axis=0)
    assert positives.min() >= board.min_slice_class  # every finding measurable on test (Hernia: 69)


def _rsna_tree(root, headers_table: bool):
    import pydicom
    from pydicom.data import get_testdata_file

    rows = [
        ["a1", "", "", "", "", 0],
        ["b2", 10, 20, 100, 200, 1],
        ["b2", 500, 20, 100, 200, 1],
        ["c3", "", "", "", "", 0],
    ]
    pd.DataFrame(rows, columns=["patientId", "x", "y", "width", "height", "Target"]).to_csv(
        root / "stage_2_train_labels.csv", index=False
    )
    (root / "stage_2_train_images").mkdir()
    for image_id, age, sex, view in (("a1", "051Y", "F", "PA"), ("b2", "007Y", "M", "AP")):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.PatientID, ds.PatientAge, ds.PatientSex, ds.ViewPosition = image_id, age, sex, view
        ds.save_as(root / "stage_2_train_images" / f"{image_id}.dcm")
    if headers_table:
        table = [["a1", 51, "F", "PA"], ["b2", 7, "M", "AP"], ["c3", 60, "M", "PA"]]
        pd.DataFrame(table, columns=["PatientID", "PatientAge", "PatientSex", "ViewPosition"]).to_csv(
            root / "stage_2_train_images_dicom_headers.csv"
        )


@pytest.mark.parametrize("headers_table", [False, True])
def test_rsna_adapter_reads_labels_boxes_and_headers(tmp_path, headers_table):
    from harness.data.adapters.rsna import read_boxes
    from harness.data.datasets import read_entries

    _rsna_tree(tmp_path, headers_table)
    entries = read_entries("rsna", tmp_path).set_index("image_id")
    assert entries["label"].to_dict() == {"a1": 0, "b2": 1, "c3": 0}
    assert entries.loc["b2", "findings"] == "Lung Opacity" and entries.loc["a1", "findings"] == "No Finding"
    assert entries.loc["b2", "path"] == "stage_2_train_images/b2.dcm" and entries.loc["b2", "patient_id"] == "b2"
    assert entries.loc["a1", ["age", "sex", "view"]].tolist() == [51, "F", "PA"]
    # c3 has no DICOM file: its header is unknown unless the headers table gives it.
    assert entries.loc["c3", "age"] == (60 if headers_table else -1)
    boxes = read_boxes(tmp_path / "stage_2_train_labels.csv")
    assert boxes[["image_id", "x", "w"]].values.tolist() == [["b2", 10.0, 100.0], ["b2", 500.0, 100.0]]
    bad = pd.read_csv(tmp_path / "stage_2_train_labels.csv")
    bad.loc[2, "width"] = np.nan
    bad.to_csv(tmp_path / "stage_2_train_labels.csv", index=False)
    with pytest.raises(XRBenchError, match=r"stage_2_train_labels.csv, line 4: Target must be 0 or 1, with a box"):
        read_entries("rsna", tmp_path)


def test_vindr_adapter_takes_the_majority_of_readers_in_either_layout(tmp_path):
    from harness.data.adapters.vindr import read_boxes
    from harness.data.datasets import read_entries

    rows = [
        *[["n", "No finding", f"R{r}", "", "", "", ""] for r in (1, 2, 3)],
        ["a", "Nodule/Mass", "R1", 1, 2, 11, 12],
        ["a", "Nodule/Mass", "R2", 3, 4, 13, 14],
        ["a", "Cardiomegaly", "R3", 5, 5, 50, 50],
        ["a", "No finding", "R3", "", "", "", ""],
        ["m", "Cardiomegaly", "R1", 5, 5, 50, 50],
        ["m", "No finding", "R2", "", "", "", ""],
        ["m", "No finding", "R3", "", "", "", ""],
    ]
    table = pd.DataFrame(rows, columns=["image_id", "class_name", "rad_id", "x_min", "y_min", "x_max", "y_max"])
    (tmp_path / "annotations").mkdir()
    table.to_csv(tmp_path / "annotations" / "annotations_train.csv", index=False)
    entries = read_entries("vindr", tmp_path).set_index("image_id")
    assert entries.loc["n", "label"] == 0 and entries.loc["n", "findings"] == "No Finding"
    assert entries.loc["a", "label"] == 1 and entries.loc["a", "findings"] == "Nodule/Mass"  # one reader: not a finding
    assert np.isnan(entries.loc["m", "label"]) and entries.loc["m", "findings"] == ""
    assert entries.loc["a", "path"] == "train/a.dicom"
    boxes = read_boxes(tmp_path / "annotations" / "annotations_train.csv")
    assert boxes[["image_id", "finding", "x", "w"]].values.tolist() == [
        ["a", "Nodule/Mass", 1, 10],
        ["a", "Nodule/Mass", 3, 10],
    ]
    (tmp_path / "annotations" / "annotations_train.csv").rename(tmp_path / "train.csv")  # the Kaggle layout
    assert read_entries("vindr", tmp_path)["label"].notna().sum() == 2
    table.loc[3, "x_max"] = np.nan
    table.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(XRBenchError, match=r"train.csv, line 5: finding 'Nodule/Mass' without a box"):
        read_entries("vindr", tmp_path)


def test_an_unknown_dataset_option_is_refused_naming_the_options(tmp_path):
    from harness.data.datasets import read_entries

    with pytest.raises(XRBenchError, match=r"dataset chexpert has no option 'uncertanity' \(its options: uncertainty"):
        read_entries("chexpert", tmp_path, uncertanity="zeros")
    with pytest.raises(XRBenchError, match=r"chexpert option views must be a list, such as \['AP'\], not 'AP'"):
        read_entries("chexpert", tmp_path, views="AP")


def test_rsna_boxes_are_a_board_s_ground_truth_at_its_resolution(tmp_path):
    from harness.data.groundtruth import load_ground_truth

    _rsna_tree(tmp_path, headers_table=True)
    images = pd.DataFrame({"image_id": ["a1", "b2"], "findings": ["No Finding", "Lung Opacity"]})
    spec = {"boxes": "stage_2_train_labels.csv", "box_format": "rsna", "box_space": [1024, 1024]}
    truth = load_ground_truth(spec, tmp_path, images, {"a1", "b2", "c3"}, 256, "board rsna-test")
    assert truth.boxes[["image_id", "finding", "x", "y", "w", "h"]].values.tolist() == [
        ["b2", "Lung Opacity", 2.5, 5.0, 25.0, 50.0],
        ["b2", "Lung Opacity", 125.0, 5.0, 25.0, 50.0],
    ]
    from harness.boards.datasets import box_formats
    from harness.data.groundtruth import box_reader

    assert all(callable(box_reader({"box_format": name})) for name in box_formats())  # every format the board allows


def _dentex_tree(root) -> None:
    folder = root / "training_data" / "quadrant_enumeration_disease"
    (folder / "xrays").mkdir(parents=True)
    images = []
    for n in range(12):
        pixels = np.zeros((100, 200), np.uint8)
        pixels[:50, 100:] = 200  # quadrant 2: the image's upper-right quarter
        Image.fromarray(pixels).save(folder / "xrays" / f"train_{n}.png")
        images.append({"id": n, "file_name": f"train_{n}.png", "width": 200, "height": 100})
    # Image n has an abnormal tooth in quadrant 1 + n % 4 (index n % 4), and image 0 one more in quadrant 3.
    annotations = [
        {"image_id": n, "category_id_1": n % 4, "category_id_2": 5, "category_id_3": n % 4, "bbox": [10, 10, 20, 30]}
        for n in range(12)
    ]
    annotations.append(
        {"image_id": 0, "category_id_1": 2, "category_id_2": 1, "category_id_3": 1, "bbox": [90, 60, 20, 20]}
    )
    data = {
        "images": images,
        "annotations": annotations,
        "categories_1": [{"id": i, "name": str(i + 1)} for i in range(4)],
        "categories_2": [{"id": i, "name": str(i + 1)} for i in range(8)],
        "categories_3": [
            {"id": 0, "name": "Impacted"},
            {"id": 1, "name": "Caries"},
            {"id": 2, "name": "Periapical Lesion"},
            {"id": 3, "name": "Deep Caries"},
        ],
    }
    (folder / "train_quadrant_enumeration_disease.json").write_text(json.dumps(data))


def test_dentex_quadrants_are_entries_cropped_from_their_xray(tmp_path):
    from harness.data.adapters.base import DatasetSource
    from harness.data.adapters.dentex import read_boxes
    from harness.data.cache import decode_all
    from harness.data.datasets import read_entries
    from harness.data.local import entry_crops

    _dentex_tree(tmp_path)
    entries = read_entries("dentex", tmp_path)
    assert len(entries) == 48 and entries["patient_id"].nunique() == 12
    first = entries[entries["patient_id"] == "train_0.png"].set_index("image_id")
    assert first["label"].to_dict() == {
        "train_0.png#q1": 1,
        "train_0.png#q2": 0,
        "train_0.png#q3": 1,
        "train_0.png#q4": 0,
    }
    assert (
        first.loc["train_0.png#q1", "findings"] == "Impacted"
        and first.loc["train_0.png#q2", "findings"] == "No Finding"
    )
    assert first.loc["train_0.png#q3", "findings"] == "Caries"
    source = DatasetSource(
        "dentex",
        tmp_path,
        entries,
        tmp_path,
        paths=dict(zip(entries["image_id"], entries["path"], strict=True)),
        crops=entry_crops(entries),
    )
    array, failures = decode_all(source, ["train_1.png#q2", "train_1.png#q1"], 16)
    assert not failures and (array[0] == 200).all() and (array[1] == 0).all()
    boxes = read_boxes(tmp_path / "training_data/quadrant_enumeration_disease/train_quadrant_enumeration_disease.json")
    q3 = boxes[boxes["image_id"] == "train_0.png#q3"].iloc[0]
    # (90, 60, 20, 20) in a 200 x 100 image; quadrant 3 is x 100-200, y 50-100: clipped at x = 100.
    assert [q3["x"], q3["y"], q3["w"], q3["h"]] == [0.0, 0.2, 0.1, 0.4]


def test_the_dentex_board_definition_freezes_on_a_copy_in_the_published_layout(tmp_path, monkeypatch):
    import re

    from harness.boards.files import load_board

    _dentex_tree(tmp_path)
    monkeypatch.setenv("XRBENCH_DENTEX_ROOT", str(tmp_path))
    text = (REPO_ROOT / "datasets" / "dentex" / "dentex-ad.toml").read_text()
    text = re.sub(r'(?m)^split_manifest = ".*"$', 'split_manifest = "dentex-ad.csv"', text)
    for key, value in (
        ("n_train", 8),
        ("n_val_normal", 4),
        ("n_val_abnormal", 4),
        ("n_test_normal", 4),
        ("n_test_abnormal", 4),
    ):
        text = re.sub(rf"(?m)^{key} = \d+$", f"{key} = {value}", text)
    (tmp_path / "dentex-ad.toml").write_text(text)
    main(["split", "freeze", str(tmp_path / "dentex-ad.toml")])
    board = load_board(tmp_path / "dentex-ad.toml")
    frame = pd.read_csv(tmp_path / "dentex-ad.csv")
    assert list(frame.columns) == ["image_id", "patient_id", "split"] and len(board.labels_sha256) == 64
    assert frame.groupby("patient_id")["split"].nunique().max() == 1  # an X-ray's quadrants share a split


def test_padchest_labels_devices_notes_and_16_bit_images(tmp_path):
    """Normal only when "normal" is the only label; devices and notes are not findings; the
    network's labels are left out by default; a malformed Labels cell is named; 16-bit PNGs are
    scaled from their own range (Pillow alone would clip them at 255)."""
    from harness.data.adapters.padchest import LABELS, read_padchest
    from harness.data.cache import read_pixels

    header = ",ImageID,ImageDir,PatientID,PatientBirth,PatientSex_DICOM,StudyDate_DICOM,Projection,MethodLabel,Labels"
    rows = [
        "0,a.png,1,p1,1950.0,F,20100102,PA,Physician,\"['normal']\"",
        "1,b.png,1,p2,1960.0,M,20120304,PA,Physician,\"['pacemaker', ' unchanged']\"",  # devices and notes only
        "2,c.png,2,p3,1940.0,M,20110506,PA,Physician,\"['pleural effusion', 'NSG tube']\"",
        "3,d.png,2,p3,1940.0,M,20110506,L,Physician,\"['normal', 'cardiomegaly']\"",  # contradiction
        "4,e.png,3,p4,,O,20130708,PA,RNN_model,\"['normal']\"",
        "5,f.png,3,p5,1970.0,F,20140910,PA,Physician,\"['exclude']\"",
    ]
    (tmp_path / LABELS).write_text("\n".join([header, *rows]) + "\n")
    entries = read_padchest(tmp_path).set_index("image_id")
    assert list(entries.index) == ["a.png", "b.png", "c.png", "d.png", "f.png"]
    assert entries.loc["a.png", ["label", "findings", "age", "path"]].tolist() == [0.0, "No Finding", 60, "1/a.png"]
    assert np.isnan(entries.loc["b.png", "label"]) and np.isnan(entries.loc["d.png", "label"])
    assert entries.loc["c.png", ["label", "findings", "patient_id"]].tolist() == [
        1.0,
        "pleural effusion",
        "padchest-p3",
    ]
    assert np.isnan(entries.loc["f.png", "label"])
    both = read_padchest(tmp_path, label_method="any").set_index("image_id")
    assert both.loc["e.png", ["label", "sex", "age"]].tolist() == [0.0, "", -1]
    (tmp_path / LABELS).write_text(header + '\n0,a.png,1,p1,1950.0,F,20100102,PA,Physician,"normal"\n')
    with pytest.raises(XRBenchError, match=r"image a.png: Labels 'normal' is not a list of findings"):
        read_padchest(tmp_path)
    with pytest.raises(XRBenchError, match=r"label_method = 'robot'"):
        read_padchest(tmp_path, label_method="robot")

    deep = np.linspace(1000, 4095, 64 * 48).reshape(48, 64).astype(np.uint16)  # 12 bits stored in 16
    Image.fromarray(deep).save(tmp_path / "deep.png")
    pixels = read_pixels(tmp_path / "deep.png")
    assert pixels.dtype == np.uint8 and (pixels.min(), pixels.max()) == (0, 255)
    assert np.array_equal(pixels, np.round((deep - 1000.0) / 3095.0 * 255).astype(np.uint8))
