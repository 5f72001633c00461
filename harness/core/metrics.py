"""Every number xrbench stores or shows by name: what it is called on screen, which way is
better, which tasks report it, whether its patient-bootstrap interval is counted (computed from
resample counts, `harness.scoring.counted`), and where the leaderboard shows it.

The score stage writes these names, the board files rank by them (`primary_metric`), and the
command line, the leaderboard and the site label them from here; a test checks that every
name the scoring writes is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.core.registry import Registry

TASKS = ("anomaly", "multilabel")
CALIBRATORS = {"anomaly": ("none", "platt", "isotonic"), "multilabel": ("none", "temperature")}
"""The calibrators each task fits on validation scores (`none`: min-max scaling or the sigmoid)."""


@dataclass(frozen=True)
class Metric:
    """`group`: ranking, decision, calibration, uncertainty, localization, robustness or cost.
    `leaderboard`: the tasks whose board tables show it as a column (in registration order);
    `labels`: a task's own label where it differs (a macro mean on multi-label boards)."""

    name: str
    label: str
    group: str
    about: str
    lower_is_better: bool = False
    tasks: tuple[str, ...] = TASKS
    counted: bool = False
    leaderboard: tuple[str, ...] = ()
    per_finding: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def label_for(self, task: str | None) -> str:
        return self.labels.get(task or "", self.label)

    @property
    def key(self) -> str:
        """The name as an attribute of a table row (`sens@95spec` -> `sens_at_95spec`)."""
        return column_key(self.name)


def column_key(name: str) -> str:
    """A metric name usable as an attribute name in templates (`iobb@0.25` -> `iobb_at_0_25`)."""
    return name.replace("@", "_at_").replace(".", "_")


METRICS: Registry[Metric] = Registry("metric")


def _add(metric: Metric) -> None:
    METRICS.add(metric.name, metric)


IOBB_LEVELS = (0.1, 0.25, 0.5)
"""Fractions of a map region that must fall inside a ground-truth box for an IoBB hit."""

for _metric in (
    Metric("auroc", "AUROC", "ranking", "Area under the ROC curve: the chance that an abnormal image scores "
           "above a normal one (multi-label: the mean over findings).", counted=True, leaderboard=TASKS,
           per_finding=True, labels={"multilabel": "Macro AUROC"}),
    Metric("auprc", "AUPRC", "ranking", "Area under the precision-recall curve, as average precision: the "
           "number papers call image AP (one metric, two names).",
           counted=True, leaderboard=TASKS, per_finding=True, labels={"multilabel": "Macro AUPRC"}),
    Metric("sens@95spec", "Sens@95%Spec", "ranking", "Sensitivity at the threshold that keeps 95% of normal "
           "images below it.", counted=True, leaderboard=("anomaly",), per_finding=True,
           labels={"multilabel": "Sensitivity at 95% specificity"}),
    Metric("spec@95sens", "Spec@95%Sens", "ranking", "Specificity at the threshold that finds 95% of abnormal "
           "images: the share of normal images a screen would not send for review.", tasks=("anomaly",),
           counted=True),
    Metric("f1@0.5", "F1 at 0.5", "decision", "F1 of deciding 'present' at probability 0.5.",
           tasks=("multilabel",), counted=True, per_finding=True),
    Metric("f1", "F1", "decision", "F1 at the threshold chosen on the validation split (best validation F1).",
           counted=True, per_finding=True),
    Metric("f1max", "F1-max (optimistic)", "decision", "The best F1 over every threshold, chosen on the test set "
           "itself, as MedIAnomaly and anomalib report it: optimistic, since no method could choose that "
           "threshold in advance; F1 takes its threshold from the validation split.", tasks=("anomaly",),
           counted=True),
    Metric("precision@val", "Precision", "decision", "Precision at the validation threshold.",
           tasks=("multilabel",), counted=True, per_finding=True),
    Metric("recall@val", "Recall", "decision", "Recall at the validation threshold.",
           tasks=("multilabel",), counted=True, per_finding=True),
    Metric("threshold", "Threshold (logit)", "decision", "The validation threshold of each finding, as a logit.",
           tasks=("multilabel",), per_finding=True),
    Metric("micro_auroc", "Micro AUROC", "ranking", "AUROC over every (image, finding) pair.",
           tasks=("multilabel",), counted=True),
    Metric("aurc", "AURC", "uncertainty", "Area under the risk-coverage curve: the mean error rate as the least "
           "confident decisions are deferred first.", lower_is_better=True),
    Metric("uncertainty_auroc", "Uncertainty AUROC", "uncertainty", "How well the method's own variance tells its "
           "errors from its correct decisions (AUROC).", tasks=("multilabel",)),
    Metric("aurc_uncertainty", "AURC by uncertainty", "uncertainty", "AURC when the most uncertain decisions "
           "(by the method's variance) are deferred first.", lower_is_better=True, tasks=("multilabel",)),
):  # fmt: skip
    _add(_metric)

_CALIBRATION = {
    "ece": ("ECE", "Expected calibration error: the bin-weighted gap between confidence and accuracy."),
    "adaptive_ece": ("Adaptive ECE", "ECE over bins of equal size."),
    "mce": ("MCE (calibration)", "Maximum calibration error: the largest gap of any bin."),
    "brier": ("Brier score", "Mean squared error of the probabilities."),
    "nll": ("NLL", "Mean negative log-likelihood of the probabilities."),
}
_CALIBRATOR_NAMES = {"none": "before", "platt": "after (Platt)", "isotonic": "after (isotonic)",
                     "temperature": "after (temperature)"}  # fmt: skip
for _calibrator in ("none", "platt", "isotonic", "temperature"):
    _tasks = tuple(t for t in TASKS if _calibrator in CALIBRATORS[t])
    for _base, (_label, _about) in _CALIBRATION.items():
        _shown = ("anomaly",) if _calibrator == "platt" else ("multilabel",) if _calibrator == "temperature" else ()
        _add(
            Metric(
                f"{_base}_{_calibrator}",
                f"{_label} {_CALIBRATOR_NAMES[_calibrator]}",
                "calibration",
                _about,
                lower_is_better=True,
                tasks=_tasks,
                leaderboard=(TASKS if _calibrator == "none" else _shown) if _base == "ece" else (),
            )
        )

for _metric in (
    Metric("pixel_auroc", "Pixel AUROC", "localization", "AUROC of map pixels against the ground-truth masks.",
           leaderboard=TASKS),
    Metric("aupro", "AUPRO", "localization", "Area under the per-region overlap curve up to 30% false positive "
           "pixels.", leaderboard=TASKS),
    Metric("dice", "Best Dice", "localization", "Dice of the thresholded map with the masks, at the best threshold.",
           leaderboard=TASKS),
    Metric("aupimo", "AUPIMO", "localization", "Per-image overlap with the ground truth, averaged over abnormal "
           "images, while between 1e-5 and 1e-4 of normal images' pixels fire (log scale)."),
    Metric("pointing_game", "Pointing game", "localization", "Share of images whose map maximum falls in a "
           "ground-truth box.", leaderboard=TASKS),
    *(Metric(f"iobb@{level}", f"IoBB≥{level}", "localization", f"Share of boxed findings with a map region at least "
             f"{level:.0%} inside the box.", leaderboard=TASKS if level == 0.25 else ()) for level in IOBB_LEVELS),
    Metric("mean_corrupted_auroc", "Mean corrupted AUROC", "robustness", "AUROC averaged over every corruption "
           "and severity of the board's stress suite.", leaderboard=TASKS),
    Metric("worst_auroc", "Worst-case AUROC", "robustness", "The lowest AUROC under any corruption and severity.",
           leaderboard=TASKS),
    Metric("mce", "mCE", "robustness", "Mean corruption error: corrupted error (1 - AUROC) relative to the board's "
           "reference method, averaged over corruptions (100 = as the reference).", lower_is_better=True,
           leaderboard=TASKS),
    Metric("p50_ms", "p50 latency (ms, batch 1)", "cost", "Median time of one predict call on one image.",
           lower_is_better=True, leaderboard=TASKS),
    Metric("throughput_ips", "Throughput (img/s, batch 32)", "cost", "Images per second predicted in batches of 32.",
           leaderboard=TASKS),
    Metric("param_count", "Parameters", "cost", "Parameters of the modules predict runs.", lower_is_better=True,
           leaderboard=TASKS),
):  # fmt: skip
    _add(_metric)


def leaderboard_metrics(task: str, groups: tuple[str, ...]) -> list[Metric]:
    """The metrics a board of `task` shows as columns, of the given groups, in registration order."""
    return [m for _, m in METRICS.items() if task in m.leaderboard and m.group in groups]


def names(group: str, task: str | None = None) -> tuple[str, ...]:
    """The metric names of a group (and task)."""
    return tuple(n for n, m in METRICS.items() if m.group == group and (task is None or task in m.tasks))
