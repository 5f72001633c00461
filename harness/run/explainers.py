"""The saliency explainers a run can ask for (`--explain`), by name: Grad-CAM and Grad-CAM++ of
`pytorch_grad_cam`, loaded only when a run uses one (`harness.run.saliency`)."""

from __future__ import annotations

from harness.core.registry import Ref, Registry

EXPLAINERS: Registry[Ref] = Registry("explainer")
EXPLAINERS.add("gradcam", Ref("pytorch_grad_cam:GradCAM"))
EXPLAINERS.add("gradcam++", Ref("pytorch_grad_cam:GradCAMPlusPlus"))
