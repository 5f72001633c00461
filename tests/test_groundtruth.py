"""The phantoms' ground truth: each finding's mask marks where its rendering changes the
image most, the box file holds one box per connected region of those masks, and both are
the files the boards were frozen with."""

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from harness.core.fingerprints import file_sha256
from harness.data.groundtruth import masks_sha256
from harness.data.synth import chest, cohort, dental, dental_cohort


def _changes(render, masks, scene, findings):
    """(finding, |image with it - image without it|, its mask) for each finding alone."""
    for finding in findings:
        change = np.abs(render(*scene, [finding]) - render(*scene, []))
        yield finding, change, masks(*scene, [finding])[0]


def test_each_chest_finding_mask_holds_its_largest_change():
    records = [r for r in cohort.draw_cohort(3, 70) if r.findings]
    seen = set()
    for record in records[:25]:
        anatomy, acquisition, findings = cohort.scene(record, 3)
        scene = (anatomy, acquisition)
        for finding, change, mask in _changes(
            lambda *a: chest.attenuation(*a, 64), lambda *a: chest.finding_masks(*a, 64), scene, findings
        ):
            seen.add(finding.name)
            assert mask.any(), finding.name
            assert mask.flat[np.argmax(change)], finding.name
            assert change[mask].mean() > 1.5 * change[~mask].mean(), finding.name
    assert seen == {"Nodule", "Mass", "Effusion", "Cardiomegaly", "Pneumothorax", "Consolidation"}


def test_each_dental_finding_mask_holds_its_largest_change():
    records = [r for r in dental_cohort.draw_cohort(0, 60) if r.findings]
    seen = set()
    for record in records[:15]:
        patient, acquisition, findings = dental_cohort.scene(record, 0)
        for finding, change, mask in _changes(
            lambda *a: dental.panoramic_signal(*a, 96), lambda *a: dental.finding_masks(*a, 96),
            (patient, acquisition), findings,
        ):  # fmt: skip
            seen.add(finding["name"])
            assert mask.any() and mask.flat[np.argmax(change)], finding["name"]
            assert change[mask].sum() > 0.5 * change.sum(), finding["name"]
    assert seen == {"Caries", "Periapical lesion", "Cyst"}


def _boxes(path):
    frame = pd.read_csv(path).iloc[:, :6]
    frame.columns = ["image_id", "finding", "x", "y", "w", "h"]
    return frame


@pytest.mark.parametrize("board", ["tiny_board", "tiny_dental_board"])
def test_boxes_are_the_connected_regions_of_the_masks_and_the_board_holds_their_hashes(request, board):
    """On the reduced boards, generated here by the same code as the shipped ones (whose
    files are checked against their frozen hashes whenever a run loads them)."""
    from harness.boards.files import load_board
    from harness.data.loading import load_manifest

    board = load_board(request.getfixturevalue(board))
    spec = board.ground_truth
    root = load_manifest(board).source.root
    with np.load(root / spec["masks"]) as archive:  # read here, not by the harness
        masks = {key: archive[key] for key in archive.files}
    assert masks and masks_sha256(masks) == spec["masks_sha256"]
    assert file_sha256(root / spec["boxes"]) == spec["boxes_sha256"]
    expected = []
    for key, mask in masks.items():
        image_id, finding = key.rsplit("|", 1)
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
        for rows, cols in ndimage.find_objects(labels):
            expected.append((image_id, finding, cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start))
    assert sorted(map(tuple, _boxes(root / spec["boxes"]).itertuples(index=False))) == sorted(expected)
    height, width = next(iter(masks.values())).shape
    assert list(spec["box_space"]) == [width, height]
