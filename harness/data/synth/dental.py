"""Procedural dental panoramic radiograph phantoms, written as real DICOM files.

A phantom is a density map (soft tissue, maxilla with sinuses, mandible with its canal and
rami, a blurred spine shadow, 32 tooth positions with enamel crowns, dentine roots and pulp
canals), turned into 12-bit detector values by an exposure curve, with noise. Normal images
vary in anatomy, positioning, exposure, missing teeth and metal fillings; abnormal images add
one or two of the `FINDINGS`. Bright = dense, as radiologists read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FINDINGS = ("Periapical lesion", "Caries", "Cyst")
# Tooth widths (fraction of the half-width) from the midline outwards: incisors, canine,
# premolars, molars.
TOOTH_WIDTHS = (0.062, 0.056, 0.06, 0.064, 0.064, 0.086, 0.084, 0.078)
ROOTS = (1, 1, 1, 1, 1, 2, 2, 2)


@dataclass(frozen=True)
class Tooth:
    x: float  # centre, in [-1, 1] across the image
    width: float
    upper: bool
    crown: float  # heights as fractions of image height
    root: float
    roots: int
    tilt: float
    filling: float  # 0 or the relative size of a metal filling


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return (x + 0.5) / w * 2 - 1, (y + 0.5) / h


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """1 inside (d < 0), 0 outside, with a smooth edge of about `width`."""
    return 0.5 - 0.5 * np.tanh(d / width)


def draw_patient(rng: np.random.Generator) -> dict:
    scale = rng.uniform(0.92, 1.08)
    missing = set(rng.choice(32, size=int(rng.integers(0, 4)), replace=False).tolist())
    teeth = []
    for upper in (True, False):
        for side in (-1, 1):
            x = 0.0
            for i, width in enumerate(TOOTH_WIDTHS):
                w = width * scale * rng.uniform(0.93, 1.07)
                centre = side * (x + w / 2 + 0.004)
                x += w + 0.006
                index = (0 if upper else 16) + (0 if side < 0 else 8) + i
                if index in missing and i >= 3:
                    continue
                teeth.append(
                    Tooth(
                        x=centre,
                        width=w * 0.92,
                        upper=upper,
                        crown=rng.uniform(0.075, 0.095) * (1.1 if i >= 5 else 1.0),
                        root=rng.uniform(0.15, 0.2) * (0.8 if i >= 5 else 1.0),
                        roots=ROOTS[i],
                        tilt=side * (0.05 + 0.02 * i) * rng.uniform(0.5, 1.5),
                        filling=rng.uniform(0.3, 0.6) if (i >= 3 and rng.uniform() < 0.12) else 0.0,
                    )
                )
    return {
        "teeth": teeth,
        "curve": rng.uniform(0.05, 0.11),  # smile curvature of the occlusal plane
        "occlusal": rng.uniform(0.5, 0.54),
        "jaw_depth": rng.uniform(0.3, 0.36),
        "bone": rng.uniform(0.85, 1.15),
        "sinus": rng.uniform(0.8, 1.2),
    }


def draw_acquisition(rng: np.random.Generator) -> dict:
    return {
        "exposure": rng.uniform(0.85, 1.15),
        "shift": rng.normal(0, 0.015, size=2),
        "tilt": rng.normal(0, 0.02),
        "noise": rng.uniform(0.008, 0.016),
        "seed": int(rng.integers(2**31)),
    }


def draw_finding(rng: np.random.Generator, name: str, n_teeth: int) -> dict:
    return {
        "name": name,
        "tooth": int(rng.integers(n_teeth)),
        "size": rng.uniform(0.6, 1.0),
        "offset": rng.uniform(-0.3, 0.3),
        "cyst_x": rng.uniform(0.15, 0.5) * rng.choice([-1, 1]),
    }


def _occlusal_y(x: np.ndarray | float, patient: dict, acq: dict) -> np.ndarray | float:
    return patient["occlusal"] + acq["shift"][1] - patient["curve"] * (1 - np.asarray(x) ** 2) + acq["tilt"] * x


def _tooth(density: np.ndarray, xs: np.ndarray, ys: np.ndarray, t: Tooth, patient: dict, acq: dict, w: int) -> dict:
    """Add one tooth (inside its bounding box only); returns where its crown and root apex are."""
    cx = t.x + acq["shift"][0]
    base = float(_occlusal_y(cx, patient, acq))
    direction = -1.0 if t.upper else 1.0
    h = density.shape[0]
    aspect = w / h / 2  # y units per x unit
    reach = t.crown + t.root + 0.03
    x0, x1 = (
        (
            np.array(
                [
                    cx - t.width - reach * abs(np.sin(t.tilt)) / aspect,
                    cx + t.width + reach * abs(np.sin(t.tilt)) / aspect,
                ]
            )
            + 1
        )
        / 2
        * w
    )
    y0, y1 = sorted((base - direction * 0.03, base + direction * reach))
    rows = slice(max(0, int(y0 * h)), min(h, int(np.ceil(y1 * h)) + 1))
    cols = slice(max(0, int(x0)), min(w, int(np.ceil(x1)) + 1))
    density, xs, ys = density[rows, cols], xs[rows, cols], ys[rows, cols]
    # Local coordinates: u across the tooth (x units), v along its axis away from the occlusal plane.
    u = (xs - cx) * np.cos(t.tilt) - (ys - base) / aspect * np.sin(t.tilt) * direction
    v = direction * (ys - base) + (xs - cx) * aspect * np.sin(t.tilt) * direction
    half = t.width / 2
    edge = 0.004
    crown = _soft(np.abs(u) - half * (1 - 0.25 * (np.clip(-v / 0.02, 0, 1)) ** 2), edge) * _soft(-v - 0.01, 0.004)
    crown *= _soft(v - t.crown, 0.004)
    along = np.clip((v - t.crown) / t.root, 0, 1)
    root_half = half * (0.8 - 0.6 * along)
    root = _soft(np.abs(u) - root_half, edge) * _soft(t.crown - v, 0.004) * _soft(v - t.crown - t.root, 0.006)
    if t.roots == 2:
        root *= 1 - _soft(np.abs(u) - half * 0.15 * along * 2, edge) * (along > 0.35)
    pulp = _soft(np.abs(u) - half * (0.28 - 0.2 * along), 0.003) * _soft(0.3 * t.crown - v, 0.005)
    pulp *= _soft(v - t.crown - 0.9 * t.root, 0.005)
    enamel = crown * _soft(t.crown * 0.55 - v, 0.01)
    density += 0.9 * crown + 0.5 * enamel + 0.85 * root - 0.5 * pulp
    if t.filling:
        filling = _soft(np.hypot(u / (half * t.filling), (v - 0.02) / 0.025) - 1, 0.05)
        density += 2.0 * filling
    apex_v = t.crown + t.root
    apex = (cx + direction * apex_v * np.sin(t.tilt) / aspect, base + direction * apex_v)
    crown_centre = (cx, base + direction * t.crown * 0.35)
    return {"apex": apex, "crown": crown_centre, "half": half, "direction": direction}


def render_panoramic(patient: dict, acq: dict, findings: list[dict], height: int = 192) -> np.ndarray:
    """12-bit detector values (uint16, H x 2H): larger = more attenuation."""
    return np.clip(np.round(panoramic_signal(patient, acq, findings, height) * 4095), 0, 4095).astype(np.uint16)


def finding_masks(patient: dict, acq: dict, findings: list[dict], height: int = 192) -> list[np.ndarray]:
    """Where each finding is, from the shape it is rendered with: one (H, 2H) bool mask per
    finding, in order (see `panoramic_signal`)."""
    supports: dict[int, np.ndarray] = {}
    panoramic_signal(patient, acq, findings, height, supports)
    return [supports[i] for i in range(len(findings))]


def panoramic_signal(
    patient: dict, acq: dict, findings: list[dict], height: int = 192, supports: dict[int, np.ndarray] | None = None
) -> np.ndarray:
    """Detector signal in float64 (1 = full attenuation), before 12-bit rounding. With
    `supports`, each finding's own shape (its lucency or cavity past half) is recorded there by
    its index, without changing the signal."""
    supports = {} if supports is None else supports
    h, w = height, 2 * height
    xs, ys = _grid(h, w)
    sx, sy = acq["shift"]
    occ = _occlusal_y(xs, patient, acq)
    jaw_bottom = occ + patient["jaw_depth"] - 0.3 * xs**2
    density = 0.25 + 0.1 * (1 - xs**2)  # soft tissue
    maxilla = _soft(ys - occ, 0.01) * _soft(0.1 + sy - ys, 0.04)
    density += 0.45 * patient["bone"] * maxilla * _soft(np.abs(xs) - 0.8, 0.05)
    for side in (-1, 1):
        sinus = np.hypot((xs - side * 0.38 - sx) / 0.22, (ys - 0.25 - sy) / 0.1)
        density -= 0.25 * patient["sinus"] * _soft(sinus - 1, 0.08)
    mandible = _soft(occ - ys, 0.01) * _soft(ys - jaw_bottom, 0.02) * _soft(np.abs(xs) - 0.86, 0.03)
    ramus = _soft(np.abs(np.abs(xs - sx) - 0.8) - 0.09, 0.03) * _soft(ys - jaw_bottom, 0.03) * (ys > 0.2)
    density += 0.55 * patient["bone"] * np.maximum(mandible, ramus)
    cortex = np.exp(-(((ys - jaw_bottom + 0.015) / 0.012) ** 2)) * _soft(np.abs(xs) - 0.86, 0.03)
    density += 0.35 * cortex
    canal = np.exp(-(((ys - (occ + patient["jaw_depth"] * 0.62 - 0.06 * xs**2)) / 0.008) ** 2))
    density -= 0.15 * canal * _soft(np.abs(xs) - 0.8, 0.04) * (np.abs(xs) > 0.15)
    density += 0.3 * np.exp(-(((xs - sx) / 0.09) ** 2)) * _soft(0.55 - ys, 0.1)  # spine ghost
    sites = [_tooth(density, xs, ys, t, patient, acq, w) for t in patient["teeth"]]
    for i, f in enumerate(findings):
        site = sites[f["tooth"] % len(sites)]
        if f["name"] == "Periapical lesion":
            ax, ay = site["apex"]
            r = 0.028 * f["size"]
            lucency = _soft(np.hypot((xs - ax) / r, (ys - ay) / (r * 2)) - 1, 0.25)
            density -= 0.55 * lucency
            supports[i] = lucency > 0.5
        elif f["name"] == "Caries":
            cx, cy = site["crown"]
            cx += f["offset"] * site["half"]
            r = 0.012 * f["size"] + 0.006
            cavity = _soft(np.hypot((xs - cx) / r, (ys - cy) / (r * 2)) - 1, 0.3)
            density -= 1.0 * cavity
            supports[i] = cavity > 0.5
        elif f["name"] == "Cyst":
            cx = f["cyst_x"] + sx
            cy = float(np.mean([_occlusal_y(cx, patient, acq) + patient["jaw_depth"] * 0.55]))
            rx, ry = 0.09 * f["size"], 0.06 * f["size"]
            d = np.hypot((xs - cx) / rx, (ys - cy) / ry) - 1
            density += -0.45 * _soft(d, 0.05) + 0.2 * np.exp(-((d / 0.08) ** 2))
            supports[i] = d < 0
    density = ndimage.gaussian_filter(density, 0.8)
    signal = 1 - np.exp(-acq["exposure"] * np.clip(density, 0, None) * 1.1)
    noise_rng = np.random.default_rng(acq["seed"])
    signal += noise_rng.normal(0, acq["noise"], size=signal.shape)
    return signal
