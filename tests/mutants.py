"""`make mutants`: deliberate bugs in the statistics and metric code, each of which the tests
must catch. For every mutation the source line is changed, the fast statistical tests run, and
the file is restored; a mutation that no test fails on is a hole in the tests. Exits 1 when
any mutation survives.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/test_statistics.py",
    "tests/test_metrics.py",
    "tests/test_compare.py",
    "tests/test_calibration.py",
    "tests/test_multilabel.py",
    "tests/test_neighbors.py",
]
# (name, file, original text, mutated text): each original must occur exactly once.
# fmt: off
MUTATIONS = [
    ("DeLong without the covariance term", "harness/scoring/significance.py",
     "cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]", "cov[0, 0] + cov[1, 1]"),
    ("DeLong with m and n swapped", "harness/scoring/significance.py",
     "np.cov(np.array(v10))) / m + np.atleast_2d(np.cov(np.array(v01))) / n",
     "np.cov(np.array(v10))) / n + np.atleast_2d(np.cov(np.array(v01))) / m"),
    ("AUROC rank offset off by one", "harness/scoring/metrics.py",
     "n_pos * (n_pos + 1) / 2", "n_pos * (n_pos - 1) / 2"),
    ("counted bootstrap AUROC counts tied negatives as above", "harness/scoring/counted.py",
     "both += cumulative[np.searchsorted(bounds, at_or_below)]", "both += cumulative[np.searchsorted(bounds, below)]"),
    ("counted bootstrap F1 with predicted positives for positives", "harness/scoring/metrics.py",
     '(total["true"] + total["pred"])', '(2 * total["pred"])'),
    ("counted AUPRC with the recall step taken from the lower threshold", "harness/scoring/counted.py",
     "previous[1:] = recall[:-1]", "previous[:-1] = recall[1:]"),
    ("counted sensitivity dropping points where only one count bends", "harness/scoring/counted.py",
     "!= 0) | (tps[2:]", "!= 0) & (tps[2:]"),
    ("counted sensitivity with a strict inequality", "harness/scoring/counted.py",
     "(fpr <= 1.0 - specificity + 1e-12)", "(fpr < 1.0 - specificity - 1e-12)"),
    ("coreset shortcut skipping rows within reach", "harness/components/coreset.py",
     "< 4 * self.min_dist.index_select(0, candidates)", "< self.min_dist.index_select(0, candidates)"),
    ("image-level instead of patient-level draws", "harness/scoring/resampling.py",
     "rng.integers(0, n_patients, n_patients)", "rng.integers(0, n_patients, len(inverse))"),
    ("percentile interval at 5% instead of 2.5%", "harness/scoring/metrics.py",
     "alpha: float = 0.05", "alpha: float = 0.1"),
    ("bootstrap p-value without the +1", "harness/scoring/significance.py",
     "(np.sum(d <= 0) + 1) / (len(d) + 1)", "np.sum(d <= 0) / len(d)"),
    ("difference interval at 5%", "harness/scoring/significance.py",
     "np.quantile(d, [0.025, 0.975])", "np.quantile(d, [0.05, 0.975])"),
    ("sensitivity at specificity with a strict inequality", "harness/scoring/metrics.py",
     "fpr <= 1.0 - specificity + 1e-12", "fpr < 1.0 - specificity - 1e-12"),
    ("F1 threshold shifted by one", "harness/scoring/metrics.py",
     "np.argmax(f1[:-1])", "np.argmax(f1[1:])"),
    ("reliability bin edge on the other side", "harness/scoring/calibration.py",
     "np.searchsorted(edges[1:-1], probs)", "np.searchsorted(edges[1:-1], probs, side='right')"),
    ("ECE unweighted by bin size", "harness/scoring/calibration.py",
     "b.count / total * abs(", "1 / len(bins) * abs("),
    ("adaptive ECE on equal-width bins", "harness/scoring/calibration.py",
     "edges = np.quantile(probs, np.linspace(0, 1, n_bins + 1))", "edges = np.linspace(0.0, 1.0, n_bins + 1)"),
    ("NLL clipped at 1e-3", "harness/scoring/calibration.py",
     "np.clip(probs, 1e-7, 1 - 1e-7)", "np.clip(probs, 1e-3, 1 - 1e-3)"),
    ("risk-coverage least confident first", "harness/scoring/selective.py",
     "np.argsort(-confidence, kind=\"stable\")", "np.argsort(confidence, kind=\"stable\")"),
    ("worst condition is the best one", "harness/scoring/robustness.py",
     "worst = min(corrupted, key=lambda k: corrupted[k])", "worst = max(corrupted, key=lambda k: corrupted[k])"),
    ("mCE divided by the reference AUROC instead of its error", "harness/scoring/robustness.py",
     "ref_err = sum(1 - reference[k] for k in keys)", "ref_err = sum(reference[k] for k in keys)"),
    ("relative mCE with the reference's increase reversed", "harness/scoring/robustness.py",
     "ref_increase = sum(reference[(\"clean\", 0)] - reference[k] for k in keys)",
     "ref_increase = sum(reference[k] - reference[(\"clean\", 0)] for k in keys)"),
    ("age bins closed on the right", "harness/boards/slices.py",
     "right=False", "right=True"),
    ("per-finding slices without the normal images", "harness/scoring/anomaly.py",
     "(truth == 0) | findings.apply", "findings.apply"),
    ("slice flag from the larger class", "harness/scoring/anomaly.py",
     "if min(n_pos, n_neg) < board.min_slice_class:", "if max(n_pos, n_neg) < board.min_slice_class:"),
    ("macro AUROC over every finding, rare ones included", "harness/scoring/multilabel.py",
     "enough = (n_pos >= min_class) & (n_neg >= min_class)", "enough = (n_pos >= 1) & (n_neg >= 1)"),
    ("multi-label precision over the true positives", "harness/scoring/multilabel.py",
     '"precision@val": (total["tp"], total["pred"])', '"precision@val": (total["tp"], total["true"])'),
    ("F1 at 0.5 taken at the validation thresholds", "harness/scoring/multilabel.py",
     'np.zeros_like(thresholds) if metric == "f1@0.5" else thresholds', 'thresholds'),
    ("case complexity counting No Finding as a finding", "harness/boards/slices.py",
     'sum(f not in ("", NO_FINDING) for f in fs)', 'sum(f != "" for f in fs)'),
    ("deferring the most certain first", "harness/scoring/uncertainty.py",
     'np.argsort(spread, kind="stable")', 'np.argsort(-spread, kind="stable")'),
    ("temperature not fitted", "harness/scoring/multilabel.py",
     "\"temperature\": lambda s: expit(s / temperature)", "\"temperature\": lambda s: expit(s)"),
]
# fmt: on


def run_tests() -> bool:
    """True when the tests pass (the mutant survives)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


def main() -> int:
    if not run_tests():
        print("the tests fail without any mutation; fix them first")
        return 2
    survivors = []
    for name, file, original, mutated in MUTATIONS:
        path = ROOT / file
        source = path.read_text()
        if source.count(original) != 1:
            print(f"cannot apply {name!r}: the original text occurs {source.count(original)} times in {file}")
            return 2
        start = time.perf_counter()
        try:
            path.write_text(source.replace(original, mutated))
            survived = run_tests()
        finally:
            path.write_text(source)
        print(f"{'SURVIVED' if survived else 'killed  '}  {name} ({file}, {time.perf_counter() - start:.0f} s)")
        if survived:
            survivors.append(name)
    killed = len(MUTATIONS) - len(survivors)
    print(f"kill rate: {killed}/{len(MUTATIONS)} ({killed / len(MUTATIONS):.0%})")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
