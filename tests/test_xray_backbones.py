"""X-ray backbones and the contamination ledger.

No test can download the published weights, so each loader is exercised on a file of the same
architecture with random values, saved here in the layout its publisher uses (a pickled
torchxrayvision model, a Hugging Face Dinov2Model safetensors file, an open_clip checkpoint).
"""

import logging
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from harness.api.protocol import FitContext, ImageBatches
from harness.api.registry import create_method
from harness.boards.ledger import check_ledger, contamination
from harness.components.backbones import FeatureExtractor, check_backbone
from harness.components.xray_backbones import _timm_vit, _xrv_densenet, _xrv_resnet, dinov2_hf_to_timm
from harness.core import ledger as ledger_module
from harness.core.errors import ParameterError, WeightsUnavailable
from harness.core.fingerprints import file_sha256
from harness.core.ledger import LedgerError, load_ledger, parse_ledger, stored_card
from harness.results.store import ResultStore
from harness.run.runner import bench

CPU = torch.device("cpu")
XRAY_BACKBONES = ["xrv-densenet121-nih", "xrv-resnet50-res512-all", "rad-dino", "biomedclip", "chexzero"]


@pytest.fixture(scope="module")
def densenet_file(tmp_path_factory) -> Path:
    model, _ = _xrv_densenet(seed=7)
    path = tmp_path_factory.mktemp("xrv") / "densenet.pt"
    torch.save(model.state_dict(), path)
    return path


# --- the ledger ------------------------------------------------------------------------------


def test_the_ledger_is_well_formed_and_names_only_known_datasets():
    ledger = check_ledger()
    assert {"random-init", "imagenet", "weights-file"} <= set(ledger.cards)
    xray = ledger.xray_backbones()
    for weights in ("all", "nih", "chex", "mimic_nb", "mimic_ch", "rsna", "pc"):
        assert f"xrv-densenet121-{weights}" in xray
    assert {"xrv-resnet50-res512-all", "rad-dino", "biomedclip", "chexzero"} <= set(xray)
    for name in xray:
        card = ledger.card(name)
        assert card.pretraining and card.get("file") and card.source.startswith("https://"), name


def _ledger_with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "backbones.toml"
    path.write_text(ledger_module.ledger_path().read_text() + extra)
    return path


def test_a_ledger_entry_naming_an_unknown_dataset_is_refused(tmp_path):
    path = _ledger_with(
        tmp_path,
        '\n[backbones.mine]\ntitle = "t"\narchitecture = "a"\nloader = "file"\nsource = "s"\nlicence = "l"\n'
        'pretraining = [{ dataset = "nih-typo", split = "train" }]\n',
    )
    with pytest.raises(LedgerError, match="'mine' names unknown dataset 'nih-typo'"):
        check_ledger(parse_ledger(path))


@pytest.mark.parametrize(
    "entry, message",
    [
        ('title = "t"\nloader = "file"\nsource = "s"\nlicence = "l"\npretraining = []\n', "lacks 'architecture'"),
        ('title = "t"\narchitecture = "a"\nloader = "magic"\nsource = "s"\nlicence = "l"\npretraining = []\n',
         "loader 'magic'"),
        ('title = "t"\narchitecture = "a"\nloader = "file"\nsource = "s"\nlicence = "l"\npretraining = []\n'
         'colour = "red"\n', "unknown key 'colour'"),
        ('title = "t"\narchitecture = "a"\nloader = "file"\nsource = "s"\nlicence = "l"\n'
         'pretraining = [{ dataset = "nih" }]\n', "needs dataset and split"),
    ],
)  # fmt: skip
def test_a_malformed_card_is_refused_naming_it(tmp_path, entry, message):
    path = _ledger_with(tmp_path, "\n[backbones.mine]\n" + entry)
    with pytest.raises(LedgerError, match=message):
        parse_ledger(path)


def test_a_backbone_name_with_no_card_is_refused():
    with pytest.raises(ParameterError, match="xrv-densenet121-nih"):  # the close names are suggested
        check_backbone("xrv-densenet121-nhi")
    with pytest.raises(ParameterError, match=r"has no card in datasets/backbones\.toml"):
        load_ledger().card("xrv-densenet121-nhi")


def test_contamination_marks_the_boards_dataset_and_its_overlaps():
    nih = contamination(stored_card("xrv-densenet121-nih", "x"), "nih-ad", {"nih"})
    assert nih.marks == ("pretraining saw NIH ChestX-ray14",) and "not shown disjoint" in nih.reason
    # The RSNA Pneumonia images are NIH images: an RSNA-pretrained backbone saw nih-ad's dataset.
    rsna = contamination(stored_card("xrv-densenet121-rsna", "x"), "nih-ad", {"nih"})
    assert rsna.marks == ("pretraining saw NIH ChestX-ray14",)
    clean = contamination(stored_card("xrv-densenet121-chex", "x"), "nih-ad", {"nih"})
    assert clean.marks == () and clean.reason is None
    for card in ("random-init", "imagenet"):
        assert not contamination(stored_card(card, "x"), "nih-ad", {"nih"}).possibly_contaminated
    unknown = contamination(stored_card(None, "resnet18:my.pt"), "nih-ad", {"nih"})
    assert unknown.marks == ("pretraining data unknown",) and unknown.possibly_contaminated


def test_a_split_shown_disjoint_keeps_the_mark_but_ranks_normally():
    card = stored_card("xrv-densenet121-nih", "x")
    card["name"] = "not-in-the-ledger"  # judged on the stored card itself
    card["pretraining"][0]["disjoint_boards"] = ["nih-ad"]
    judged = contamination(card, "nih-ad", {"nih"})
    assert judged.marks == ("pretraining saw NIH ChestX-ray14",) and judged.reason is None


# --- loading -----------------------------------------------------------------------------------


def test_xrv_densenet_loads_a_file_maps_inputs_to_its_range_and_hashes_it(densenet_file):
    extractor = FeatureExtractor("xrv-densenet121-nih", str(densenet_file), 0, "auto", CPU, resolution=64)
    assert extractor.weights.sha256 == file_sha256(densenet_file)
    assert extractor.weights.card == "xrv-densenet121-nih"
    seen = {}
    conv = extractor.model.body.stages[0][0]
    conv.register_forward_hook(lambda m, inputs, out: seen.update(x=inputs[0]))
    images = torch.zeros(2, 1, 64, 64)
    images[1] = 1.0
    maps = extractor(images)
    assert seen["x"].shape == (2, 1, 224, 224)  # one channel, at the weights' 224 px
    assert seen["x"][0].unique().tolist() == [-1024.0] and seen["x"][1].unique().tolist() == [1024.0]
    assert [m.shape[1:] for m in maps] == [(512, 28, 28), (1024, 14, 14)]
    model, _ = _xrv_densenet(seed=7)  # the file's weights, not the seed's, are in use
    torch.testing.assert_close(extractor.model.body.stages[0][0].weight, model.features.conv0.weight)


def test_xrv_published_files_are_found_in_torchxrayvisions_folder(tmp_path, monkeypatch):
    """torchxrayvision publishes DenseNets as pickled models; the card's file in its folder is
    what weights=pretrained reads."""
    monkeypatch.setenv("HOME", str(tmp_path))
    card = load_ledger().card("xrv-densenet121-pc")
    folder = Path(str(card.get("folder"))).expanduser()
    folder.mkdir(parents=True)
    model, _ = _xrv_densenet(seed=3)
    torch.save(model, folder / str(card.get("file")))
    extractor = FeatureExtractor("xrv-densenet121-pc", "pretrained", 0, "auto", CPU)
    assert extractor.weights.id == f"xrv-densenet121-pc:{card.get('file')}"


def test_missing_published_weights_say_what_to_fetch_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(
        WeightsUnavailable, match=r"does not download.*releases/download/v1/nih-densenet121.*models_data"
    ):
        FeatureExtractor("xrv-densenet121-nih", "pretrained", 0, "auto", CPU)


def test_a_weights_file_of_another_architecture_names_the_file_and_first_mismatched_key(tmp_path, densenet_file):
    resnet, _ = _xrv_resnet(seed=0)
    wrong = tmp_path / "resnet.pt"
    torch.save(resnet.state_dict(), wrong)
    with pytest.raises(
        WeightsUnavailable, match=r"resnet\.pt does not fit xrv-densenet121-nih.*'features\.conv0\.weight'"
    ):
        FeatureExtractor("xrv-densenet121-nih", str(wrong), 0, "auto", CPU)
    state = torch.load(densenet_file)
    del state["features.denseblock2.denselayer3.conv1.weight"]
    partial = tmp_path / "partial.pt"
    torch.save(state, partial)
    with pytest.raises(WeightsUnavailable, match=r"'features\.denseblock2\.denselayer3\.conv1\.weight' \(missing"):
        FeatureExtractor("xrv-densenet121-nih", str(partial), 0, "auto", CPU)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match=r"garbage\.pt: not a readable weights file"):
        FeatureExtractor("xrv-densenet121-nih", str(garbage), 0, "auto", CPU)


def test_xrv_resnet50_runs_at_512_px(tmp_path):
    resnet, _ = _xrv_resnet(seed=0)
    path = tmp_path / "resnet.pt"
    torch.save(resnet.state_dict(), path)
    extractor = FeatureExtractor("xrv-resnet50-res512-all", str(path), 0, "auto", CPU)
    assert [m.shape[1:] for m in extractor(torch.rand(1, 1, 64, 64))] == [(512, 64, 64), (1024, 32, 32)]


def _hf_dinov2_layout(state: dict) -> dict:
    """A timm ViT state dict in Hugging Face Dinov2Model key names (the inverse of the loader's)."""
    out = {"embeddings.mask_token": torch.zeros(1, 768, dtype=torch.float16)}
    for key, value in state.items():
        value = value.half()
        if key.startswith("blocks."):
            _, block, rest = key.split(".", 2)
            prefix = f"encoder.layer.{block}."
            if rest.startswith("attn.qkv."):
                for name, piece in zip(("query", "key", "value"), value.chunk(3), strict=True):
                    out[f"{prefix}attention.attention.{name}.{rest.rsplit('.', 1)[1]}"] = piece.contiguous()
            elif rest.startswith("attn.proj."):
                out[f"{prefix}attention.output.dense.{rest.rsplit('.', 1)[1]}"] = value
            elif rest.startswith("ls"):
                out[f"{prefix}layer_scale{rest[2]}.lambda1"] = value
            else:
                out[prefix + rest] = value
        else:
            renamed = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings"}.get(key)
            if key.startswith("patch_embed.proj."):
                renamed = "embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]
            if key.startswith("norm."):
                renamed = "layernorm." + key.rsplit(".", 1)[1]
            out[renamed] = value
    return out


def test_rad_dino_reads_the_hugging_face_layout_from_the_cache(tmp_path, monkeypatch):
    vit = _timm_vit("vit_base_patch14_dinov2", 518, seed=5).half().float()
    hf = _hf_dinov2_layout(vit.state_dict())
    assert set(dinov2_hf_to_timm(hf)) == set(vit.state_dict())
    snapshot = tmp_path / "hub" / "models--microsoft--rad-dino" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(hf, str(snapshot / "model.safetensors"))
    (tmp_path / "hub" / "models--microsoft--rad-dino" / "refs").mkdir()
    (tmp_path / "hub" / "models--microsoft--rad-dino" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    extractor = FeatureExtractor("rad-dino", "pretrained", 0, "auto", CPU)
    assert extractor.weights.card == "rad-dino"
    images = torch.rand(1, 1, 64, 64)
    maps = extractor(images)
    assert [m.shape[1:] for m in maps] == [(768, 37, 37), (768, 37, 37)]
    x = F.interpolate(images.expand(-1, 3, -1, -1), size=(518, 518), mode="bilinear", antialias=True)
    expected = vit.forward_intermediates(
        (x - 0.5307) / 0.2583, indices=[-1], output_fmt="NCHW", intermediates_only=True
    )
    torch.testing.assert_close(maps[-1], expected[0], atol=1e-4, rtol=1e-4)


def test_biomedclip_uses_the_image_tower_of_an_open_clip_checkpoint(tmp_path):
    trunk = _timm_vit("vit_base_patch16_224", 224, seed=2)
    state = {f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}
    state["visual.head.proj.weight"] = torch.zeros(512, 768)
    state["text.transformer.embeddings.word_embeddings.weight"] = torch.zeros(8, 768)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(state, path)
    extractor = FeatureExtractor("biomedclip", str(path), 0, "auto", CPU)
    assert extractor.layers == (-4, -1)
    assert [m.shape[1:] for m in extractor(torch.rand(2, 1, 32, 32))] == [(768, 14, 14), (768, 14, 14)]


def test_chexzero_loads_an_openai_layout_clip_checkpoint(tmp_path):
    import open_clip

    model = open_clip.create_model("ViT-B-32-quickgelu")
    path = tmp_path / "chexzero.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    extractor = FeatureExtractor("chexzero", str(path), 0, "auto", CPU)
    (embedding,) = extractor(torch.rand(2, 1, 64, 64))
    assert embedding.shape == (2, 512, 1, 1) and extractor.weights.card == "chexzero"


# --- through the methods, and on the leaderboard --------------------------------------------


@pytest.fixture(scope="module")
def backbone_files(tmp_path_factory, densenet_file) -> dict[str, Path]:
    """A weights file of every X-ray backbone's architecture (random values, publisher's layout)."""
    import open_clip

    folder = tmp_path_factory.mktemp("backbones")
    files = {"xrv-densenet121-nih": densenet_file}
    resnet, _ = _xrv_resnet(seed=0)
    torch.save(resnet.state_dict(), files.setdefault("xrv-resnet50-res512-all", folder / "resnet.pt"))
    dino = _timm_vit("vit_base_patch14_dinov2", 518, seed=5)
    save_file(_hf_dinov2_layout(dino.state_dict()), str(files.setdefault("rad-dino", folder / "model.safetensors")))
    trunk = _timm_vit("vit_base_patch16_224", 224, seed=2).state_dict()
    torch.save(
        {f"visual.trunk.{k}": v.half() for k, v in trunk.items()}, files.setdefault("biomedclip", folder / "b.bin")
    )
    clip = open_clip.create_model("ViT-B-32-quickgelu").state_dict()
    torch.save({k: v.half() for k, v in clip.items()}, files.setdefault("chexzero", folder / "chexzero.pt"))
    return files


@pytest.mark.parametrize("backbone", XRAY_BACKBONES)
@pytest.mark.parametrize("method", ["patchcore", "knn", "padim"])
def test_backbone_methods_fit_and_predict_on_every_xray_backbone(method, backbone, tmp_path, backbone_files):
    """Each backbone method on a few images (the whole protocol runs in the browser test below)."""
    instance = create_method(method, {"backbone": backbone, "weights": str(backbone_files[backbone])})
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(5, 1, 64, 64, generator=generator) * 255  # ImageBatches hold 0-255 values
    train = ImageBatches(images, torch.zeros(5, dtype=torch.long), 5, CPU)  # knn's k = 5
    ctx = FitContext(seed=0, device=CPU, cache_dir=tmp_path, log=logging.getLogger("test"), resolution=64)
    instance.fit(train, train, ctx)
    prediction = instance.predict(torch.rand(2, 1, 64, 64, generator=generator))
    assert prediction.scores.shape == (2,) and torch.isfinite(prediction.scores).all()
    assert prediction.maps is None or prediction.maps.shape[0] == 2
    assert instance.weights().card == backbone


def test_a_distillation_method_takes_an_xray_backbone_as_its_teacher(tmp_path, densenet_file):
    instance = create_method("stfpm", {"backbone": "xrv-densenet121-nih", "weights": str(densenet_file), "epochs": 1})
    images = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    train = ImageBatches(images, torch.zeros(4, dtype=torch.long), 2, CPU)
    ctx = FitContext(seed=0, device=CPU, cache_dir=tmp_path, log=logging.getLogger("test"), resolution=64)
    instance.fit(train, train, ctx)
    assert torch.isfinite(instance.predict(images[:2] / 255).scores).all()
    assert instance.weights().card == "xrv-densenet121-nih"


def test_methods_that_fine_tune_a_timm_model_refuse_an_xray_backbone(densenet_file):
    params = {"backbone": "xrv-densenet121-nih", "weights": str(densenet_file)}
    with pytest.raises(ParameterError, match="'xrv-densenet121-nih' is a frozen feature extractor"):
        create_method("supervised", params)


@pytest.fixture
def ledger_seeing_synth_cxr(tmp_path, monkeypatch) -> Path:
    """The ledger with the NIH DenseNet card claiming the synthetic chest X-rays too."""
    text = ledger_module.ledger_path().read_text()
    text = text.replace(
        'pretraining = [{ dataset = "nih", split = "torchxrayvision random split, seed 0" }]',
        'pretraining = [{ dataset = "nih", split = "torchxrayvision random split, seed 0" }, '
        '{ dataset = "synth-cxr", split = "every image" }]',
    )
    path = tmp_path / "backbones.toml"
    path.write_text(text)
    monkeypatch.setattr(ledger_module, "ledger_path", lambda: path)
    return path


def test_a_contaminated_run_is_ranked_apart_with_its_mark_in_a_real_browser(
    tiny_board, tmp_path, densenet_file, ledger_seeing_synth_cxr
):
    from conftest import publish
    from selenium.webdriver.common.by import By
    from test_site import _board_page, _browser

    db = tmp_path / "r.duckdb"
    params = {"backbone": "xrv-densenet121-nih", "weights": str(densenet_file)}
    knn = bench("knn", tiny_board, params=params, db=db, device="cpu", corruptions=False)
    bench("intensity", tiny_board, db=db, device="cpu", corruptions=False)
    with ResultStore(db) as store:
        card = store.run(knn.run_id)["weights_card"]
    assert '"name": "xrv-densenet121-nih"' in card and '"dataset": "synth-cxr"' in card
    out = tmp_path / "site"
    publish(db, out)
    browser = _browser()
    try:
        for width in (1400, 390):
            browser.set_window_size(width, 1200)
            browser.get(_board_page(out).as_uri())
            ranked = browser.find_element(By.ID, "leaderboard").text
            assert "intensity" in ranked and "knn" not in ranked
            apart = browser.find_element(By.ID, "contaminated")
            mark = apart.find_element(By.CSS_SELECTOR, ".pretraining")
            assert mark.is_displayed() and mark.text == "pretraining saw Synthetic chest X-ray phantoms"
            assert "knn" in apart.text and "not shown disjoint from this board's test split" in apart.text
            rank = apart.find_element(By.CSS_SELECTOR, "tbody td").text
            assert rank == "1"  # ranked among the possibly contaminated runs only
        browser.get((out / "backbones.html").as_uri())
        assert "xrv-densenet121-nih" in browser.find_element(By.ID, "backbones").text
    finally:
        browser.quit()
    shutil.rmtree(out)
