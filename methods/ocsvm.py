"""One-class SVM on the global embedding."""

from __future__ import annotations

from harness.embedding import EmbeddingMethod
from harness.errors import ParameterError
from harness.features import EXTRACTOR_DEFAULTS, EXTRACTOR_SMOKE
from harness.protocol import MethodCard
from harness.registry import register
from harness.scorers import OneClassSVMScorer, Scorer


@register
class OCSVM(EmbeddingMethod):
    card = MethodCard(
        name="ocsvm",
        family="embedding boundary",
        description="RBF one-class SVM (scikit-learn) on standardised pooled embeddings",
        reference="Schölkopf et al., Estimating the Support of a High-Dimensional Distribution, "
        "Neural Computation 2001",
        license="Apache-2.0",
        tasks=("anomaly",),
        smoke_params=EXTRACTOR_SMOKE,
        defaults={**EXTRACTOR_DEFAULTS, "nu": 0.1, "gamma": "scale"},
    )

    def make_scorer(self) -> Scorer:
        gamma = self.params["gamma"]
        if gamma not in ("scale", "auto"):
            try:
                gamma = float(gamma)
            except ValueError:
                raise ParameterError(f"gamma must be scale, auto or a number, not {gamma!r}") from None
        return OneClassSVMScorer(nu=self.params["nu"], gamma=gamma)
