"""Patient-level (cluster) bootstrap resamples, listed or counted.

Patients are drawn with replacement, as many as there are, and a drawn patient brings all of
their images: images of one patient are correlated, and resampling images would make intervals
too narrow. Every bootstrap in xrbench draws through `patient_draws`, so a seed gives the same
resamples whether they are copied (`patient_resamples`) or counted (`Resamples`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def patient_draws(groups: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(patient index of each image, the drawn patient indices of each resample)."""
    _, inverse = np.unique(groups, return_inverse=True)
    n_patients = int(inverse.max()) + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    return inverse, (rng.integers(0, n_patients, n_patients) for _ in range(n_resamples))


def resample_counts(groups: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(patient index of each image, how often each resample drew each patient as a
    (resamples, patients) float array): `patient_draws` counted instead of listed."""
    inverse, draws = patient_draws(groups, n_resamples, seed)
    n_patients = int(inverse.max()) + 1 if len(inverse) else 0
    counts = [np.bincount(d, minlength=n_patients) for d in draws]
    return inverse, np.array(counts, dtype=np.float64).reshape(n_resamples, n_patients)


def patient_resamples(groups: np.ndarray, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Index arrays of patient-level bootstrap resamples: each drawn patient with all of their
    images."""
    inverse, draws = patient_draws(groups, n_resamples, seed)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
    for drawn in draws:
        yield np.concatenate([members[g] for g in drawn])


def cluster_resamples(labels: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Patient-level resamples (`patient_resamples`) holding both classes; the others are skipped."""
    for idx in patient_resamples(groups, n_resamples, seed):
        if labels[idx].min() != labels[idx].max():
            yield idx


@dataclass(frozen=True)
class Resamples:
    """The resamples in which every column of the targets keeps both classes, counted: a
    patient drawn c times weighs c. `patient` is each image's patient index, `counts` is
    (resamples kept, patients)."""

    patient: np.ndarray
    counts: np.ndarray

    @classmethod
    def keeping_both_classes(cls, targets: np.ndarray, groups: np.ndarray, n_resamples: int, seed: int) -> Resamples:
        """`targets` is (n,) or (n, K) binary; a resample is kept when each column has a
        positive and a negative image, as the copying loops skip the others."""
        patient, counts = resample_counts(groups, n_resamples, seed)
        if not len(patient):
            return cls(patient, counts[:0])
        n_pos, n_neg = class_totals(patient, counts, targets)
        return cls(patient, counts[((n_pos > 0) & (n_neg > 0)).all(axis=1)])

    def class_totals(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative images of each column in each resample, each (resamples, K)."""
        return class_totals(self.patient, self.counts, targets)

    @cached_property
    def largest(self) -> float:
        """The most images any kept resample holds."""
        sizes = self.counts @ np.bincount(self.patient, minlength=self.counts.shape[1])
        return float(sizes.max(initial=0))


def class_totals(patient: np.ndarray, counts: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) of each column of the binary `targets` ((n,) or (n, K)) in each
    resample of `counts` (resamples, patients), each (resamples, K)."""
    positive = targets.reshape(len(targets), -1).astype(bool)
    pos_per_patient = np.zeros((counts.shape[1], positive.shape[1]))
    np.add.at(pos_per_patient, patient, positive)
    neg_per_patient = np.bincount(patient, minlength=counts.shape[1])[:, None] - pos_per_patient
    return counts @ pos_per_patient, counts @ neg_per_patient
