"""The anomalib bridge: anomalib's image models under xrbench's protocol, as `anomalib-<name>`.

Each bridged model gets what every method gets: the board's grayscale images replicated to
three channels, at the board's resolution (or `size`), through the model's own anomalib
pre-processor (its resize and normalisation); anomalib's own training (its Lightning module,
run by a Lightning trainer on the board's normal training images, seeded); and its raw scores
and maps, before anomalib's post-processor: xrbench calibrates and thresholds.

Nothing is downloaded. Backbones follow `weights`: `none` is seeded random initialisation,
`imagenet` is timm's weights from the local Hugging Face cache (checked before anything is
built); the hub is set offline and torch's URL downloads are refused while a model is built or
trained. A model that needs something this machine lacks (a texture set, a pretrained teacher
without a random-init switch, a GPU) is registered with the reason, and refused before fitting.

Parameters: `backbone`, `weights`, `epochs`, `batch_size` and `size` are xrbench's; every
other simple constructor argument of the anomalib model (numbers, strings, booleans) is a
parameter of the same name, checked by building the model before fitting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import inspect
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from harness.api.params import NO_SMOKE, Params, param
from harness.api.protocol import (
    FitContext,
    ImageBatches,
    Method,
    MethodCard,
    ParameterError,
    Prediction,
    WeightsInfo,
    WeightsUnavailable,
    XRBenchError,
    state_sha256,
)
from harness.api.registry import register
from harness.components.seeding import host_seeded, seeded

SUPPORTED = ">=2.0,<3"
INSTALL = "pip install 'xrbench[anomalib]' (anomalib 2.x)"
OURS = ("backbone", "weights", "epochs", "batch_size", "size")
NOT_PARAMS = {"self", "pre_trained", "pre_processor", "post_processor", "evaluator", "visualizer", "layers"}


@dataclass(frozen=True)
class Recipe:
    """How one anomalib model is bridged. `needs`: why it cannot run here ('' = it runs)."""

    model: str
    family: str
    reference: str
    backbone: str | None = "resnet18"
    epochs: int = 1
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    smoke: dict[str, Any] = dataclasses.field(default_factory=dict)
    needs: str = ""
    note: str = ""
    maps: bool = True


RANDOM_TEACHER = " With weights=none the teacher is random: a control, not the published method."
RECIPES = {
    "padim": Recipe("Padim", "patch density", "Defard et al., PaDiM, ICPR 2021 Workshops"),
    "patchcore": Recipe("Patchcore", "memory bank", "Roth et al., Towards Total Recall in Industrial Anomaly "
                        "Detection, CVPR 2022", fixed={"coreset_sampling_ratio": 0.05}),
    "fastflow": Recipe("Fastflow", "normalizing flow", "Yu et al., FastFlow, arXiv:2111.07677 (2021)", epochs=10,
                      smoke={"flow_steps": 2}),
    "cflow": Recipe("Cflow", "normalizing flow", "Gudovskiy et al., CFLOW-AD, WACV 2022", epochs=3,
                   smoke={"fiber_batch_size": 2, "coupling_blocks": 2}),
    "reverse-distillation": Recipe(
        "ReverseDistillation", "knowledge distillation", "Deng and Li, Anomaly Detection via Reverse Distillation "
        "from One-Class Embedding, CVPR 2022", epochs=10, note=RANDOM_TEACHER),
    "ganomaly": Recipe("Ganomaly", "generative (GAN)", "Akcay et al., GANomaly, ACCV 2018", backbone=None,
                       epochs=10, maps=False),
    "dfm": Recipe("Dfm", "embedding density", "Ahuja et al., Probabilistic Modeling of Deep Features for "
                  "Out-of-Distribution and Adversarial Detection, arXiv:1909.11786 (2019)", maps=True),
    "dfkde": Recipe("Dfkde", "embedding density", "anomalib's deep-feature kernel density estimation", maps=False),
    "stfpm": Recipe("Stfpm", "knowledge distillation", "Wang et al., STFPM, BMVC 2021", epochs=10,
                    needs="imagenet teacher: anomalib's STFPM has no random-init switch; put timm's resnet18 "
                    "weights in the Hugging Face cache and pass weights=imagenet"),
    "csflow": Recipe("Csflow", "normalizing flow", "Rudolph et al., Fully Convolutional Cross-Scale-Flows, WACV "
                     "2022", backbone=None, needs="EfficientNet-B5 ImageNet weights, which anomalib downloads "
                     "itself"),
    "draem": Recipe("Draem", "synthetic anomalies", "Zavrtanik et al., DRAEM, ICCV 2021", backbone=None,
                    needs="the DTD texture set, which anomalib downloads when the model is built"),
    "dsr": Recipe("Dsr", "synthetic anomalies", "Zavrtanik et al., DSR, ECCV 2022", backbone=None,
                  needs="DSR's pretrained VQ-VAE weights, which anomalib downloads"),
    "efficientad": Recipe("EfficientAd", "knowledge distillation", "Batzner et al., EfficientAD, WACV 2024",
                          backbone=None, needs="the pretrained PDN teacher and the Imagenette set, both downloaded "
                          "by anomalib"),
    "uflow": Recipe("Uflow", "normalizing flow", "Tailanian et al., U-Flow, arXiv:2211.12353 (2022)", backbone=None,
                    needs="a pretrained CaiT or ResNet backbone without a random-init switch"),
    "dinomaly": Recipe("Dinomaly", "knowledge distillation", "Guo et al., Dinomaly, CVPR 2025", backbone=None,
                       needs="DINOv2 weights, which anomalib downloads, and a GPU to train in reasonable time"),
    "supersimplenet": Recipe("Supersimplenet", "synthetic anomalies", "Rolih et al., SuperSimpleNet, ICPR 2024",
                             backbone=None, needs="wide_resnet50_2 ImageNet weights without a random-init switch"),
    "winclip": Recipe("WinClip", "zero-shot vision-language", "Jeong et al., WinCLIP, CVPR 2023", backbone=None,
                      needs="OpenAI CLIP weights, which anomalib downloads (xrbench's clip-zero-shot reads them "
                      "from a local file)"),
    "cfa": Recipe("Cfa", "memory bank", "Lee et al., CFA, IEEE Access 2022",
                  needs="torchvision ImageNet weights, which anomalib downloads from download.pytorch.org"),
}  # fmt: skip


def anomalib_version() -> str | None:
    try:
        return importlib.metadata.version("anomalib")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_anomalib(method: str) -> Any:
    """The `anomalib.models` module, or a one-line refusal with the install command."""
    version = anomalib_version()
    if version is None:
        raise XRBenchError(f"method {method} needs anomalib, which is not installed: {INSTALL}")
    if not version.startswith("2."):
        raise XRBenchError(f"method {method} needs anomalib {SUPPORTED}, found {version}: {INSTALL}")
    with quiet():
        import anomalib.models

    return anomalib.models


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """anomalib and Lightning print tips, warnings and progress: the run's log is xrbench's."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def offline(method: str) -> Iterator[None]:
    """No download while anomalib builds or trains: the hub is offline, torch.hub refuses."""

    def refuse(url: str, *args: Any, **kwargs: Any) -> None:
        raise WeightsUnavailable(f"method {method}: anomalib tried to download {url}; nothing is downloaded")

    import huggingface_hub.constants as hub

    previous, previous_hub = os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub.HF_HUB_OFFLINE = True  # the library reads the variable once, when imported
    saved = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = saved
        hub.HF_HUB_OFFLINE = previous_hub
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


@contextlib.contextmanager
def all_seeded(seed: int) -> Iterator[None]:
    """torch's, numpy's and Python's global generators seeded for the block, restored after
    (anomalib's models draw from all three)."""
    with seeded(seed), host_seeded(seed):
        yield


def constructor_params(model: str) -> dict[str, inspect.Parameter]:
    """The anomalib model's simple constructor arguments (numbers, strings, booleans)."""
    version = anomalib_version()
    if version is None or not version.startswith("2."):
        return {}
    cls = getattr(require_anomalib(f"anomalib-{model.lower()}"), model)
    out = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in NOT_PARAMS or name in OURS or type(p.default) not in (bool, int, float, str):
            continue
        out[name] = p
    return out


def make_params(name: str, recipe: Recipe) -> type[Params]:
    """The typed parameters of `anomalib-<name>`: xrbench's, then the model's own."""
    fields: list[tuple[str, type, Any]] = []
    if recipe.backbone is not None:
        fields.append(("backbone", str, param(recipe.backbone, help="timm backbone anomalib builds")))
        fields.append(("weights", str, param("none", choices=("none", "imagenet"),
                                             help="none (seeded random init) or imagenet (from the local Hugging "
                                             "Face cache)")))  # fmt: skip
    fields += [
        ("epochs", int, param(recipe.epochs, low=1, smoke=1, help="training epochs of anomalib's training step")),
        ("batch_size", int, param(16, low=2, smoke=4, help="training batch size")),
        ("size", int, param(0, low=0, high=1024, help="input side given to the model (0: the board's resolution)")),
    ]
    for arg, p in constructor_params(recipe.model).items():
        default = recipe.fixed.get(arg, p.default)
        smoke = recipe.smoke.get(arg, NO_SMOKE)
        fields.append((arg, type(p.default), param(default, smoke=smoke, help=f"anomalib's {recipe.model}({arg}=...)")))
    cls_name = "".join(part.capitalize() for part in name.split("-")) + "Params"
    return dataclasses.make_dataclass(cls_name, fields, bases=(Params,), frozen=True)


class AnomalibMethod(Method):
    """One anomalib model under the protocol (see the module docstring); `recipe` says which."""

    recipe: Recipe

    @classmethod
    def libraries(cls) -> dict[str, str]:
        return {"anomalib": anomalib_version() or "not installed"}

    @classmethod
    def check_params(cls, params: Any) -> None:
        name = cls.card.name
        require_anomalib(name)
        if cls.recipe.needs and not (cls.recipe.model == "Stfpm" and params["weights"] == "imagenet"):
            raise WeightsUnavailable(f"method {name} cannot run here: it needs {cls.recipe.needs}")
        if cls.recipe.backbone is not None and params["weights"] == "imagenet":
            from harness.components.weights import resolve_weights

            resolve_weights(params["backbone"], "imagenet")
        cls.build(params, 64, seed=0, check=True)

    @classmethod
    def build(cls, params: Any, size: int, seed: int, check: bool = False) -> Any:
        """The anomalib Lightning module, pre-processor for `size`, no post-processor. With
        `check`, a constructor error names the parameter that causes it."""
        models = require_anomalib(cls.card.name)
        model_cls = getattr(models, cls.recipe.model)
        own = {k: params[k] for k in constructor_params(cls.recipe.model)}
        if cls.recipe.backbone is not None:
            own["backbone"] = params["backbone"]
            if "pre_trained" in inspect.signature(model_cls.__init__).parameters:
                own["pre_trained"] = params["weights"] == "imagenet"
        extra = {"pre_processor": model_cls.configure_pre_processor((size, size)), "post_processor": False,
                 "evaluator": False, "visualizer": False}  # fmt: skip
        try:
            with quiet(), offline(cls.card.name), all_seeded(seed):
                return model_cls(**own, **extra)
        except XRBenchError:
            raise
        except Exception as exc:
            if not check:
                raise
            raise ParameterError(f"method {cls.card.name}: {cls.culprit(model_cls, own, extra)}: {exc}") from None

    @classmethod
    def culprit(cls, model_cls: Any, own: dict[str, Any], extra: dict[str, Any]) -> str:
        """The first changed parameter that alone makes the constructor fail, as 'name=value'."""
        defaults = {k: p.default for k, p in inspect.signature(model_cls.__init__).parameters.items()}
        changed = [k for k, v in own.items() if k not in ("backbone", "pre_trained") and v != defaults.get(k, v)]
        base = {k: defaults[k] if k in changed else v for k, v in own.items()}
        for key in changed:
            try:
                with quiet(), offline(cls.card.name):
                    model_cls(**{**base, key: own[key]}, **extra)
            except Exception:
                return f"anomalib rejects {key}={own[key]!r}"
        return "anomalib rejects these parameters together"

    def fit(self, train: ImageBatches, val: ImageBatches, ctx: FitContext) -> None:
        from lightning.pytorch import Trainer

        self.size = self.params["size"] or ctx.resolution
        self.model = self.build(self.params, self.size, ctx.seed)
        loader = self.loader(train, ctx.seed)
        settings = {**self.model.trainer_arguments, "max_epochs": self.params["epochs"]}
        settings.update(
            accelerator="gpu" if ctx.device.type == "cuda" else "cpu", devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tempfile.mkdtemp(prefix="xrbench-anomalib-"),
        )  # fmt: skip
        ctx.log.info("anomalib %s %s at %d px, %d epochs", anomalib_version(), self.recipe.model, self.size,
                     self.params["epochs"])  # fmt: skip
        with quiet(), offline(self.card.name), all_seeded(ctx.seed + 1), contextlib.redirect_stderr(io.StringIO()):
            Trainer(**settings).fit(self.model, train_dataloaders=loader)  # its own progress bars silenced
        self.sha256 = state_sha256(self.model)
        self.model.to(ctx.device).eval()

    def loader(self, train: ImageBatches, seed: int) -> torch.utils.data.DataLoader:
        """The normal training images as anomalib batches, shuffled by a seeded generator."""
        from anomalib.data import ImageBatch

        images = torch.cat(list(train))
        labels = torch.zeros(len(images), dtype=torch.long)

        def collate(index: list[int]) -> Any:
            picked = torch.tensor(index)
            return ImageBatch(image=images[picked].expand(-1, 3, -1, -1).contiguous(), gt_label=labels[picked])

        gen = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            list(range(len(images))), batch_size=self.params["batch_size"], shuffle=True, generator=gen,
            collate_fn=collate, drop_last=len(images) > self.params["batch_size"],
        )  # fmt: skip

    @torch.no_grad()
    def predict(self, batch: torch.Tensor) -> Prediction:
        x = self.model.pre_processor(batch.expand(-1, 3, -1, -1))
        with quiet():
            out = self.model.model(x)
        scores = out.pred_score.reshape(len(batch)).float().cpu()
        maps = None
        if self.card.produces_maps and out.anomaly_map is not None:
            maps = out.anomaly_map.reshape(len(batch), *out.anomaly_map.shape[-2:]).float().cpu()
        return Prediction(scores=scores, maps=maps)

    def weights(self) -> WeightsInfo:
        """The trained state's hash (it holds the backbone's weights, random or pretrained)."""
        weights = self.params["weights"] if self.recipe.backbone is not None else "none"
        card = "imagenet" if weights == "imagenet" else "random-init" if weights == "none" else "weights-file"
        return WeightsInfo(id=f"{self.card.name}:{weights}+trained", sha256=self.sha256, card=card)

    def diagnostics(self) -> dict[str, Any]:
        return {"anomalib": anomalib_version(), "model": self.recipe.model, "input_size": self.size}

    def torch_modules(self) -> list[torch.nn.Module]:
        return [self.model.model]


def bridge(name: str, recipe: Recipe) -> type[Method]:
    """Register `anomalib-<name>`."""
    runs = "" if not recipe.needs else f" Refused here: needs {recipe.needs}."
    card = MethodCard(
        name=f"anomalib-{name}",
        family=recipe.family,
        description=f"anomalib's {recipe.model}, trained and scored by anomalib under xrbench's protocol (raw scores "
        f"and maps, no post-processing).{recipe.note}{runs}",
        reference=recipe.reference,
        license="Apache-2.0 (anomalib)",
        tasks=("anomaly",),
        produces_maps=recipe.maps,
        params=make_params(name, recipe),
        exceptions={"fits": f"cannot run here: needs {recipe.needs}"} if recipe.needs else {},
    )
    class_name = "Anomalib" + "".join(part.capitalize() for part in name.split("-"))
    return register(type(class_name, (AnomalibMethod,), {"card": card, "recipe": recipe, "__module__": __name__}))


for _name, _recipe in RECIPES.items():
    bridge(_name, _recipe)
