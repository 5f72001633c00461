"""Anomaly scorers on embeddings, fitted on normal training vectors: higher score = more anomalous."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from harness.components.neighbors import NearestNeighbors
from harness.core.errors import ParameterError


class Scorer:
    def fit(self, normal: np.ndarray) -> Scorer:
        raise NotImplementedError

    def score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        return 0


class KNNScorer(Scorer):
    """Mean Euclidean distance to the k nearest normal vectors (exact faiss search)."""

    def __init__(self, k: int = 5):
        self.k = k

    def fit(self, normal: np.ndarray) -> KNNScorer:
        if self.k > len(normal):
            raise ParameterError(
                f"k={self.k} nearest neighbours, but only {len(normal)} normal training images; k must be at most "
                f"{len(normal)}"
            )
        self.index = NearestNeighbors(normal)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.index.distances(x, k=self.k).mean(axis=1)

    def torch_score(self, x: torch.Tensor) -> torch.Tensor:
        """The same score, differentiable (for saliency maps)."""
        bank = torch.from_numpy(self.index.vectors()).to(x)
        return torch.cdist(x, bank).topk(self.k, dim=1, largest=False).values.mean(dim=1)

    @property
    def nbytes(self) -> int:
        return self.index.nbytes


class GaussianScorer(Scorer):
    """Mahalanobis distance to a Gaussian fitted with Ledoit-Wolf shrinkage, which keeps the
    covariance invertible when there are fewer normal images than feature dimensions."""

    def fit(self, normal: np.ndarray) -> GaussianScorer:
        normal = normal.astype(np.float64)
        self.model = LedoitWolf().fit(normal)
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.model.mahalanobis(x.astype(np.float64)), 0.0))

    def torch_score(self, x: torch.Tensor) -> torch.Tensor:
        """The same score, differentiable (for saliency maps)."""
        diff = x.double() - torch.from_numpy(self.model.location_).to(x.device)
        precision = torch.from_numpy(self.model.precision_).to(x.device)
        return torch.einsum("bi,ij,bj->b", diff, precision, diff).clamp_min(1e-12).sqrt().float()

    @property
    def nbytes(self) -> int:
        return self.model.precision_.nbytes + self.model.location_.nbytes


class OneClassSVMScorer(Scorer):
    """scikit-learn's RBF one-class SVM on standardised vectors; score = minus the decision value."""

    def __init__(self, nu: float = 0.1, gamma: str | float = "scale"):
        self.nu, self.gamma = nu, gamma

    def fit(self, normal: np.ndarray) -> OneClassSVMScorer:
        self.scaler = StandardScaler().fit(normal)
        self.model = OneClassSVM(nu=self.nu, gamma=self.gamma).fit(self.scaler.transform(normal))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.model.decision_function(self.scaler.transform(x))

    @property
    def nbytes(self) -> int:
        return self.model.support_vectors_.nbytes


class Standardiser:
    """z = (score - mean) / std of the validation normals' scores: puts scorers on one scale."""

    def fit(self, normal_scores: np.ndarray) -> Standardiser:
        self.mean = float(np.mean(normal_scores))
        self.std = float(np.std(normal_scores)) or 1.0
        return self

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return (scores - self.mean) / self.std
