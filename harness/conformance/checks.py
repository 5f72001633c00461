"""Named checks of a method against the contract, as a method author runs them:

    from harness.conformance.checks import check_method
    check_method(MyMethod)                 # every check; raises MethodCheckError naming the first failure

or one pytest case per check and method (what the repository's own tests do):

    @parametrize_with_checks([MyMethod])
    def test_my_method(method, check):
        check(method)

The checks fit and predict the method on a tiny generated board of each task its card lists
(`harness.conformance.tiny`), with the card's smoke-test parameters, through the harness's own
fit and inference path, on the CPU. Checks that need a fitted method share one fit per method
and task. A check that cannot run on a tiny board for a method (one that needs real weights)
is declared on its card, `MethodCard.exceptions`, with the reason; `fits` there stands for every
check that needs a fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.api.protocol import LEARNING, Method, WeightsInfo
from harness.boards.files import load_board
from harness.boards.tasks import TASKS, task_spec
from harness.conformance.tiny import tiny_board
from harness.core.errors import XRBenchError
from harness.core.names import NAME_RULE, is_name
from harness.data.loading import BoardData, load_board_data
from harness.run.batches import split_batches
from harness.run.inference import predict_split
from harness.run.saliency import Explainer
from harness.run.stages import fit_stage

FIT = "fits"
"""The exception name that covers every check needing a fitted method."""


class MethodCheckError(XRBenchError, AssertionError):
    """A method breaks the contract of `harness.api.protocol.Method`."""


@dataclass
class CheckReport:
    """What the checks saw of one task: shapes as the contract states them ((B,) or (B, K)
    scores; (B, h, w) or (B, K, h, w) maps), the weights and the fit time."""

    method: str
    task: str
    scores_shape: tuple[int, ...]
    maps_shape: tuple[int, ...] | None
    weights: WeightsInfo
    fit_seconds: float


@dataclass
class Fitted:
    """A method fitted on a task's tiny board, with its validation and test predictions."""

    method: Method
    data: BoardData
    scores: np.ndarray
    maps: np.ndarray | None  # (M, C, h, w) as the harness keeps them
    seconds: float


# --- fitting, shared by the checks --------------------------------------------------------------

_FITS: dict[tuple, Fitted] = {}


def _key(cls: type[Method], task: str, params: dict[str, Any], seed: int, again: bool) -> tuple:
    return (cls, task, tuple(sorted(params.items())), seed, again)


def fitted(cls: type[Method], task: str, params: dict[str, Any], seed: int = 0, again: bool = False) -> Fitted:
    """The method fitted on the task's tiny board and its predictions (cached per process;
    `again`: a second, independent fit, for the determinism check)."""
    key = _key(cls, task, params, seed, again)
    if key not in _FITS:
        _FITS[key] = fit_and_predict(cls, tiny_board(task), params, seed)
    return _FITS[key]


def fit_and_predict(cls: type[Method], board_path: Any, params: dict[str, Any], seed: int) -> Fitted:
    """Fit on a board's training split and predict its validation and test splits, keeping every
    map, as a run does (on the CPU, in fp32)."""
    board = load_board(board_path)
    data = load_board_data(board)
    method = cls(**params)
    cls.check_params(method.params)
    device = torch.device("cpu")
    fit = fit_stage(method, board, data, seed, device, lambda items, _: items)
    scores, maps = [], []
    for split in ("val", "test"):
        part = data.splits[split]
        ids = part.meta["image_id"].tolist()
        batches = split_batches(part.images, part, board, device)
        out = predict_split(method, task_spec(board), board, batches, ids, split, device, "fp32", set(ids), _all)
        scores.append(out.scores)
        maps.append(out.maps)
    kept = None if maps[0] is None else np.concatenate(maps)
    return Fitted(method, data, np.concatenate(scores), kept, fit.seconds)


def _all(items: Any, _: str) -> Any:
    return items


def _smoke(cls: type[Method], params: dict[str, Any] | None) -> dict[str, Any]:
    return {**cls.card.smoke_params, **(params or {})}


def _fit_for(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int, check: str) -> Fitted:
    """The shared fit, its failures reported as this check's."""
    try:
        return fitted(cls, task, _smoke(cls, params), seed)
    except MethodCheckError:
        raise
    except XRBenchError as exc:
        raise MethodCheckError(f"method {cls.card.name}, check '{check}' ({task}): {exc}") from exc


# --- the checks ---------------------------------------------------------------------------------


def check_card(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """Name, tasks, learning and declared exceptions are what the harness knows."""
    card = getattr(cls, "card", None)
    if card is None:
        raise MethodCheckError(f"{cls.__name__} has no `card` (a harness.api.protocol.MethodCard)")
    problems = []
    if not is_name(card.name):
        problems.append(f"name {card.name!r} is not {NAME_RULE}")
    if not card.tasks or set(card.tasks) - set(TASKS):
        problems.append(f"tasks {card.tasks} must be some of {', '.join(TASKS)}")
    if card.learning not in LEARNING:
        problems.append(f"learning {card.learning!r} must be one of {', '.join(LEARNING)}")
    unknown = sorted(set(card.exceptions) - set(CHECKS) - {FIT})
    if unknown:
        problems.append(f"exceptions name no check: {', '.join(unknown)} (checks: {', '.join(CHECKS)}, {FIT})")
    if problems:
        raise MethodCheckError(f"method {card.name}: " + "; ".join(problems))


def check_parameters(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """Every parameter is typed, explained and has a valid default; smoke values are valid."""
    card = cls.card
    try:
        specs = card.params.specs()
        card.params()
        card.params.parse(_smoke(cls, params), card.name)
    except (TypeError, XRBenchError) as exc:
        raise MethodCheckError(f"method {card.name}: its parameters: {exc}") from exc
    unexplained = [s.name for s in specs if not s.help]
    if unexplained:
        raise MethodCheckError(f"method {card.name}: parameters without a help text: {', '.join(unexplained)}")


def check_scores(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """`predict` returns finite scores of the task's shape for every batch (the harness checks
    each batch; a failure is reported here)."""
    run = _fit_for(cls, task, params, seed, "scores")
    expected = task_spec(run.data.board).score_shape(len(run.scores), run.data.board)
    if run.scores.shape != expected or not np.isfinite(run.scores).all():
        raise MethodCheckError(f"method {cls.card.name}: scores of shape {run.scores.shape}, expected {expected}")


def check_determinism(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """Two fits with one seed on the CPU give byte-identical scores and maps."""
    first = _fit_for(cls, task, params, seed, "determinism")
    again = fitted(cls, task, _smoke(cls, params), seed, again=True)
    if first.scores.tobytes() != again.scores.tobytes():
        raise MethodCheckError(
            f"method {cls.card.name}: two fits with seed {seed} on the CPU gave different scores "
            f"(max difference {np.abs(first.scores - again.scores).max():.3g}); seed every random draw from the "
            "FitContext's seed, or a torch.Generator seeded with it"
        )
    if first.maps is not None and again.maps is not None and first.maps.tobytes() != again.maps.tobytes():
        raise MethodCheckError(f"method {cls.card.name}: two fits with seed {seed} gave different maps")


def check_maps(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """Maps come with every batch when the card declares them (their shape and finiteness are
    checked on each batch), and never otherwise."""
    run = _fit_for(cls, task, params, seed, "maps")
    if cls.card.produces_maps and run.maps is None:
        raise MethodCheckError(f"method {cls.card.name}: declares produces_maps but no maps were returned")


def check_weights(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """`weights()` is a WeightsInfo, with the SHA-256 of any weights other than random init."""
    weights = _fit_for(cls, task, params, seed, "weights").method.weights()
    if not isinstance(weights, WeightsInfo):
        raise MethodCheckError(f"method {cls.card.name}: weights() returned {type(weights).__name__}, not WeightsInfo")
    if weights.id != "none" and not (isinstance(weights.sha256, str) and len(weights.sha256) == 64):
        raise MethodCheckError(
            f"method {cls.card.name}: weights {weights.id!r} are reported without their SHA-256 "
            "(harness.api.protocol.file_sha256 or state_sha256)"
        )


def check_explainability(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> None:
    """A method that says it can be explained gives a saliency target whose scores are the
    method's own, and Grad-CAM maps of the right shape from it."""
    run = _fit_for(cls, task, params, seed, "explainability")
    method = run.method
    target = method.saliency_target()
    if not method.explainable():
        if target is not None:
            raise MethodCheckError(f"method {cls.card.name}: gives a saliency target but explainable() is False")
        return
    if target is None:
        raise MethodCheckError(f"method {cls.card.name}: explainable() is True but saliency_target() gives None")
    images = run.data.splits["test"].images[:4].float() / 255.0
    with torch.no_grad():
        explained = target.model(images).float().reshape(len(images), -1).numpy()
    own = run.scores[len(run.data.splits["val"]) :][:4].reshape(len(images), -1)
    spread = max(float(np.ptp(run.scores)), 1e-6)
    if explained.shape != own.shape or np.abs(explained - own).max() > 1e-3 * spread:
        raise MethodCheckError(
            f"method {cls.card.name}: its saliency target's scores differ from predict's "
            f"(shapes {explained.shape} and {own.shape})"
        )
    maps = Explainer("gradcam", target)(images)
    expected = (len(images), target.channels, *images.shape[-2:])
    if tuple(maps.shape) != expected or not torch.isfinite(maps).all():
        raise MethodCheckError(f"method {cls.card.name}: Grad-CAM maps of shape {tuple(maps.shape)}, not {expected}")


Check = Callable[[type[Method], str, "dict[str, Any] | None", int], None]
CHECKS: dict[str, Check] = {
    "card": check_card,
    "parameters": check_parameters,
    "scores": check_scores,
    "determinism": check_determinism,
    "maps": check_maps,
    "weights": check_weights,
    "explainability": check_explainability,
}
NEEDS_FIT = ("scores", "determinism", "maps", "weights", "explainability")


def skipped_because(cls: type[Method], name: str) -> str | None:
    """Why the card excuses the method from a check, or None."""
    exceptions = getattr(getattr(cls, "card", None), "exceptions", {}) or {}
    return exceptions.get(name) or (exceptions.get(FIT) if name in NEEDS_FIT else None)


def run_check(cls: type[Method], name: str, params: dict[str, Any] | None = None, seed: int = 0) -> None:
    """One named check on every task of the card (a no-op for a check the card excuses)."""
    if skipped_because(cls, name) is None:
        for task in cls.card.tasks if name != "card" else ("",):
            CHECKS[name](cls, task, params, seed)


def check_method(cls: type[Method], params: dict[str, Any] | None = None, seed: int = 0) -> list[CheckReport]:
    """Every check, in order (see the module docstring); `params` override the smoke-test ones.
    Returns one report per task; raises `MethodCheckError` at the first failure."""
    for name in CHECKS:
        run_check(cls, name, params, seed)
    if skipped_because(cls, "scores") is not None:
        return []
    return [_report(cls, task, params, seed) for task in cls.card.tasks]


def _report(cls: type[Method], task: str, params: dict[str, Any] | None, seed: int) -> CheckReport:
    run = fitted(cls, task, _smoke(cls, params), seed)
    maps = run.maps
    if maps is not None and task_spec(run.data.board).map_channels(run.data.board) is None:
        maps = maps[:, 0]  # one map per image: (B, h, w), as the contract states it
    shape = None if maps is None else maps.shape
    return CheckReport(cls.card.name, task, run.scores.shape, shape, run.method.weights(), run.seconds)


def parametrize_with_checks(classes: list[type[Method]]) -> Any:
    """A pytest decorator giving a test `(method, check)` for every check of every class, with
    ids like `patchcore-determinism`; an excused check is skipped with the card's reason."""
    import pytest

    cases = []
    for cls in classes:
        for name in CHECKS:
            why = skipped_because(cls, name)
            marks = [pytest.mark.skip(reason=why)] if why else []
            check = _named(name)
            cases.append(pytest.param(cls, check, id=f"{cls.card.name}-{name}", marks=marks))
    return pytest.mark.parametrize(("method", "check"), cases)


def _named(name: str) -> Callable[[type[Method]], None]:
    def check(cls: type[Method]) -> None:
        run_check(cls, name)

    check.__name__ = name
    return check
