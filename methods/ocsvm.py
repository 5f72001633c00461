"""One-class SVM on the global embedding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.api.protocol import MethodCard, ParameterError, Params, param
from harness.api.registry import register
from harness.components.embedding import EmbeddingMethod
from harness.components.features import ExtractorParams
from harness.components.scorers import OneClassSVMScorer, Scorer


@dataclass(frozen=True)
class OCSVMParams(ExtractorParams):
    nu: float = param(0.1, low=1e-6, high=1.0, weights=False, help="upper bound on the share of training outliers")
    gamma: str = param(
        "scale", weights=False, help="RBF kernel width: scale, auto (scikit-learn's) or a positive number"
    )


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
        params=OCSVMParams,
    )

    @classmethod
    def check_params(cls, params: Params) -> None:
        super().check_params(params)
        gamma(params)

    def make_scorer(self) -> Scorer:
        return OneClassSVMScorer(nu=self.params["nu"], gamma=gamma(self.params))


def gamma(params: dict[str, Any]) -> str | float:
    """The RBF kernel width: scikit-learn's 'scale' or 'auto', or a positive number."""
    value = params["gamma"]
    if value in ("scale", "auto"):
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise ParameterError(f"method ocsvm: gamma must be scale, auto or a positive number, not {value!r}")
    return number
