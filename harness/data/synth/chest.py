"""Procedural chest radiograph phantoms.

A phantom is rendered from three things: the patient's anatomy (stable across follow-ups),
the acquisition (view, site, exposure: varies per image) and a list of findings named as in
NIH ChestX-ray14. Everything is computed in float64 with a `numpy.random.Generator` seeded by
the caller, so the same inputs give the same bytes; float64 keeps the final rounding to uint8
stable across CPUs whose vectorised `exp` or `sin` differ in the last bit.

Display convention is the radiologist's: attenuating structures (bone, heart, fluid) are
bright, aerated lung is dark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

FINDINGS = ("Nodule", "Mass", "Effusion", "Cardiomegaly", "Pneumothorax", "Consolidation")


@dataclass(frozen=True)
class Anatomy:
    """Patient-level shape parameters, drawn once per patient."""

    thorax_width: float  # fraction of the image width
    thorax_height: float
    lung_width: float  # of one lung, fraction of thorax half-width
    heart_ctr: float  # cardiothoracic ratio in a PA view
    heart_shift: float  # to the patient's left (image right), fraction of width
    dome_right: float  # diaphragm height, fraction of image height
    dome_left: float
    rib_spacing: float
    rib_tilt: float
    bone_density: float
    breast: float  # soft-tissue shadow over the lower lungs (0 for male patients)
    vessel_seed: int


@dataclass(frozen=True)
class Acquisition:
    """Per-image acquisition parameters."""

    view: str  # "PA" or "AP"
    site: str  # "A" or "B"
    exposure: float
    rotation_deg: float
    shift_x: float
    shift_y: float
    noise_seed: int


@dataclass(frozen=True)
class Finding:
    name: str
    params: dict = field(default_factory=dict)


SITES = {
    # noise std, gamma, detector blur sigma (pixels at 256), collimation border (fraction)
    "A": {"noise": 0.008, "gamma": 1.0, "blur": 0.6, "collimation": (0.0, 0.0)},
    "B": {"noise": 0.014, "gamma": 1.25, "blur": 1.0, "collimation": (0.04, 0.05)},
}


def draw_anatomy(rng: np.random.Generator, sex: str, age: int) -> Anatomy:
    male = sex == "M"
    return Anatomy(
        thorax_width=rng.uniform(0.70, 0.84) * (1.03 if male else 0.97),
        thorax_height=rng.uniform(0.62, 0.74),
        lung_width=rng.uniform(0.76, 0.86),
        heart_ctr=float(np.clip(rng.normal(0.45, 0.035) + 0.0008 * (age - 50), 0.36, 0.53)),
        heart_shift=rng.uniform(0.015, 0.04),
        dome_right=rng.uniform(0.66, 0.72),
        dome_left=rng.uniform(0.69, 0.75),
        rib_spacing=rng.uniform(0.054, 0.064),
        rib_tilt=rng.uniform(0.30, 0.45),
        bone_density=float(np.clip(1.15 - 0.006 * age + rng.normal(0, 0.05), 0.55, 1.1)),
        breast=0.0 if male else rng.uniform(0.05, 0.11),
        vessel_seed=int(rng.integers(0, 2**31)),
    )


def draw_acquisition(rng: np.random.Generator, view: str, site: str) -> Acquisition:
    return Acquisition(
        view=view,
        site=site,
        exposure=rng.uniform(0.88, 1.12),
        rotation_deg=rng.normal(0.0, 2.0),
        shift_x=rng.normal(0.0, 0.015),
        shift_y=rng.normal(0.0, 0.015),
        noise_seed=int(rng.integers(0, 2**31)),
    )


def _focal_opacity(rng: np.random.Generator, name: str, side: float, u: tuple, v: tuple, radius: tuple) -> Finding:
    """A Mass or Consolidation: a centre in lung-relative (u, v), a radius, a contrast, a texture seed."""
    return Finding(
        name,
        {
            "side": side,
            "u": rng.uniform(*u),
            "v": rng.uniform(*v),
            "radius": rng.uniform(*radius),
            "contrast": rng.uniform(0.16, 0.24),
            "seed": int(rng.integers(0, 2**31)),
        },
    )


def draw_finding(rng: np.random.Generator, name: str) -> Finding:
    """Draw the location and size of one finding, in lung-relative coordinates."""
    side = rng.choice([-1.0, 1.0])
    if name == "Nodule":
        count = int(rng.integers(1, 4))
        spots = [
            (
                rng.choice([-1.0, 1.0]),
                rng.uniform(0.25, 0.85),
                rng.uniform(0.2, 0.85),
                rng.uniform(0.028, 0.045),
                rng.uniform(0.16, 0.24),
            )
            for _ in range(count)
        ]
        return Finding(name, {"spots": spots})
    if name == "Mass":
        return _focal_opacity(rng, name, side, (0.3, 0.8), (0.25, 0.75), (0.05, 0.08))
    if name == "Effusion":
        sides = [side] if rng.uniform() < 0.75 else [-1.0, 1.0]
        return Finding(name, {"sides": sides, "level": rng.uniform(0.07, 0.16), "contrast": rng.uniform(0.18, 0.3)})
    if name == "Cardiomegaly":
        return Finding(name, {"ctr": rng.uniform(0.55, 0.60)})
    if name == "Pneumothorax":
        return Finding(name, {"side": side, "depth": rng.uniform(0.2, 0.35)})
    if name == "Consolidation":
        return _focal_opacity(rng, name, side, (0.35, 0.75), (0.35, 0.85), (0.08, 0.12))
    raise ValueError(f"unknown finding {name!r}; known: {', '.join(FINDINGS)}")


def _smooth_step(x: np.ndarray, width: float) -> np.ndarray:
    """0 for x << 0, 1 for x >> 0, a logistic ramp of the given width in between."""
    return 0.5 * (1.0 + np.tanh(x / width))


def _pow_2_5(a: np.ndarray) -> np.ndarray:
    """a ** 2.5 for a >= 0, several times faster than a general power."""
    return a * a * np.sqrt(a)


def _band_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return noise / (noise.std() + 1e-12)


def render_chest(anatomy: Anatomy, acq: Acquisition, findings: list[Finding], size: int = 256) -> np.ndarray:
    """Render one phantom as a (size, size) uint8 image."""
    img = acquire(attenuation(anatomy, acq, findings, size), acq, size)
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def finding_masks(anatomy: Anatomy, acq: Acquisition, findings: list[Finding], size: int = 256) -> list[np.ndarray]:
    """Where each finding is, from the shape it is rendered with: one (size, size) bool mask
    per finding, in order (see `attenuation`)."""
    supports: dict[int, np.ndarray] = {}
    attenuation(anatomy, acq, findings, size, supports)
    return [supports[i] for i in range(len(findings))]


def _coordinates(acq: Acquisition, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x0, y0): pixel centres in [0, 1]; (x, y): patient coordinates after positioning."""
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size
    y0, x0 = np.meshgrid(coords, coords, indexing="ij")
    # Patient positioning: small rotation and shift about the image centre.
    theta = np.deg2rad(acq.rotation_deg)
    xc, yc = x0 - 0.5 - acq.shift_x, y0 - 0.5 - acq.shift_y
    x = np.cos(theta) * xc - np.sin(theta) * yc
    y = np.sin(theta) * xc + np.cos(theta) * yc + 0.5  # y from the top, x from the centre
    return x0, y0, x, y


def attenuation(
    anatomy: Anatomy,
    acq: Acquisition,
    findings: list[Finding],
    size: int = 256,
    supports: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """The phantom's attenuation map in float64 (anatomy, findings and positioning). With
    `supports`, each finding's own shape is recorded there by its index (where its rendered
    profile is past half: the collapsed lung, the enlarged heart, the spots, the mass, the
    consolidated lung, the fluid), without changing the map."""
    supports = {} if supports is None else supports
    _, _, x, y = _coordinates(acq, size)
    ap = acq.view == "AP"
    magnify = 1.12 if ap else 1.0
    top = 0.5 - anatomy.thorax_height / 2
    half_w = anatomy.thorax_width / 2

    # Soft tissue: a thorax that thins towards its edges, on top of air.
    vertical = ((y - 0.55) / 0.62) ** 2
    body = _smooth_step(1.0 - (x / (half_w * 1.12)) ** 2 - vertical * vertical, 0.05)
    att = 0.30 * body + 0.18 * body * (1 - (x / (half_w * 1.12)) ** 2).clip(0, 1)

    # Diaphragm domes: the lungs stop above them, the abdomen below is dense.
    dome_y = np.where(x < 0, anatomy.dome_right, anatomy.dome_left) - 0.05 * (
        1 - (np.abs(x) / half_w - 0.5) ** 2 * 4
    ).clip(0, 1)
    below = _smooth_step(y - dome_y, 0.012)

    # Lungs: two rounded fields, medial edge at the mediastinum, apex rounded.
    lungs = np.zeros_like(x)
    lung_masks = {}
    for s in (-1.0, 1.0):
        inner, outer = 0.06 * magnify, half_w * anatomy.lung_width
        cx = s * (inner + outer) / 2
        rx = (outer - inner) / 2
        ry = (dome_y - top) * 0.55
        cy = top + 0.04 + ry
        # Narrow apex, wide base: the half-width grows from the top of the lung downwards.
        widen = 0.85 + 0.3 * np.clip((y - (cy - ry)) / (2 * ry), 0, 1)
        shape = 1.0 - _pow_2_5(np.abs((x - cx) / (rx * widen))) - _pow_2_5(np.abs((y - cy) / ry))
        mask = _smooth_step(shape, 0.06) * (1 - below)
        lung_masks[s] = (mask, cx, rx, cy, ry)
        lungs = np.maximum(lungs, mask)

    # Vessel markings: ridges of band-passed noise, strongest at the hila and fading outwards.
    vrng = np.random.default_rng(anatomy.vessel_seed)
    ridges = np.exp(-((_band_noise(vrng, size, 2.2 * size / 256) / 0.35) ** 2))
    ridges += 0.6 * np.exp(-((_band_noise(vrng, size, 4.5 * size / 256) / 0.3) ** 2))
    hilar = np.exp(-((np.abs(x) - 0.09) ** 2) / 0.03) * np.exp(-((y - 0.45) ** 2) / 0.05)
    vessels = ridges * (0.35 + 0.9 * hilar)

    lung_att = lungs * (-0.26 + 0.05 * vessels)

    # Findings that change the lung fields themselves.
    for i, f in enumerate(findings):
        if f.name == "Pneumothorax":
            mask, cx, rx, cy, ry = lung_masks[f.params["side"]]
            # Distance inwards from the lung's lateral and apical edge, in lung-relative units.
            rel = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 * 0.7)
            collapsed = _smooth_step(rel - (1.0 - f.params["depth"]), 0.01) * mask * (y < cy + 0.6 * ry)
            supports[i] = collapsed > 0.5
            pleural_line = np.exp(-(((rel - (1.0 - f.params["depth"])) / 0.012) ** 2)) * mask * (y < cy + 0.6 * ry)
            lung_att = lung_att - collapsed * (0.07 * vessels * lungs + 0.05) + 0.12 * pleural_line
    att = att + lung_att

    # Heart: a rounded shape low in the mediastinum, shifted to the patient's left.
    ctr = next((f.params["ctr"] for f in findings if f.name == "Cardiomegaly"), anatomy.heart_ctr)
    heart_half = ctr * anatomy.thorax_width / 2 * magnify
    hx = x - anatomy.heart_shift - 0.01
    hy_centre = dome_y.min() - heart_half * 0.55
    heart = _smooth_step(1.0 - (hx / heart_half) ** 2 - ((y - hy_centre) / (heart_half * 0.8)) ** 2, 0.08)
    heart = heart * (1 - below * 0.5)
    supports |= {i: heart > 0.5 for i, f in enumerate(findings) if f.name == "Cardiomegaly"}
    mediastinum = _smooth_step(1.0 - (x / (0.055 * magnify)) ** 2, 0.2) * _smooth_step(y - top, 0.02) * (y < hy_centre)
    att = att + 0.22 * np.maximum(heart, mediastinum * 0.9) + 0.20 * below * body

    # Spine, with vertebral bodies.
    spine = _smooth_step(1.0 - (x / 0.032) ** 2, 0.2) * _smooth_step(y - (top - 0.05), 0.02)
    vertebrae = 0.75 + 0.25 * np.cos(2 * np.pi * (y - top) / (anatomy.rib_spacing * 0.95))
    att = att + 0.07 * anatomy.bone_density * spine * vertebrae

    # Posterior ribs: ten evenly spaced bands running laterally and downwards from the spine,
    # drawn in one pass through a periodic profile of the distance to the nearest rib centre.
    ax = np.abs(x)
    phase = (y - top - 0.02 - anatomy.rib_tilt * 0.8 * ax + 0.9 * ax**2) / anatomy.rib_spacing
    nearest = np.clip(np.round(phase), 0, 9)
    width = 0.011 + 0.0015 * nearest
    d = (phase - nearest) * anatomy.rib_spacing / width
    ribs = np.exp(-(d**2)) * (0.6 + 0.4 * np.exp(-((np.abs(d) - 1.0) ** 2) * 4))
    rib_region = _smooth_step(half_w * 0.98 - np.abs(x), 0.01) * (np.abs(x) > 0.03) * (1 - below)
    att = att + 0.11 * anatomy.bone_density * np.clip(ribs, 0, 1.4) * rib_region

    # Clavicles: higher and flatter in AP views.
    clav_y = top + (0.0 if ap else 0.03)
    clav = np.exp(
        -(((y - clav_y - (0.02 if ap else 0.06) * np.abs(x) / half_w - 0.02 * np.sin(6 * np.abs(x))) / 0.012) ** 2)
    )
    clav *= (np.abs(x) > 0.04) * (np.abs(x) < half_w * 0.85)
    att = att + 0.1 * anatomy.bone_density * clav

    # Breast shadows over the lower lung fields.
    if anatomy.breast > 0:
        for s in (-1.0, 1.0):
            bx, by = s * half_w * 0.55, dome_y.min() - 0.03
            att = att + anatomy.breast * _smooth_step(1 - ((x - bx) / 0.2) ** 2 - ((y - by) / 0.12) ** 2, 0.3)

    # Findings that add opacity.
    for i, f in enumerate(findings):
        p = f.params
        if f.name == "Nodule":
            supports[i] = np.zeros_like(x, dtype=bool)
            for side, u, v, radius, contrast in p["spots"]:
                _, cx, rx, cy, ry = lung_masks[side]
                nx, ny = cx + side * (u - 0.5) * rx * 1.6, cy + (v - 0.5) * ry * 1.6
                r2 = ((x - nx) ** 2 + (y - ny) ** 2) / radius**2
                att = att + contrast * np.exp(-(r2**1.5))
                supports[i] |= r2 <= 1
        elif f.name in ("Mass", "Consolidation"):
            side = p["side"]
            _, cx, rx, cy, ry = lung_masks[side]
            mx, my = cx + side * (p["u"] - 0.5) * rx * 1.4, cy + (p["v"] - 0.5) * ry * 1.4
            r = np.sqrt((x - mx) ** 2 + (y - my) ** 2) / p["radius"]
            lrng = np.random.default_rng(p["seed"])
            if f.name == "Mass":
                lobes = 1 + 0.15 * _band_noise(lrng, size, 6 * size / 256)
                att = att + p["contrast"] * _smooth_step(lobes - r, 0.12)
                supports[i] = lobes > r
            else:
                patches = _smooth_step(_band_noise(lrng, size, 3 * size / 256) + 0.3, 0.5)
                region = np.exp(-(r**2))
                att = att + p["contrast"] * region * patches * lungs
                supports[i] = (region > 0.5) & (patches > 0.5) & (lungs > 0.5)
        elif f.name == "Effusion":
            supports[i] = np.zeros_like(x, dtype=bool)
            for side in p["sides"]:
                mask, cx, rx, cy, ry = lung_masks[side]
                dome = anatomy.dome_right if side < 0 else anatomy.dome_left
                lateral = np.clip(side * (x - cx) / rx, -1, 1)
                # Meniscus: the fluid level climbs towards the lateral chest wall.
                level = dome - p["level"] * (1.0 + 0.8 * np.clip(lateral, 0, 1) ** 2)
                fluid = _smooth_step(y - level, 0.008) * _smooth_step(mask - 0.02, 0.05)
                att = att + p["contrast"] * fluid
                supports[i] |= fluid > 0.5

    return att


def acquire(att: np.ndarray, acq: Acquisition, size: int = 256) -> np.ndarray:
    """Display intensity in float64 from an attenuation map: exposure, AP contrast loss, site
    gamma, detector blur and noise, collimation."""
    x0, y0, _, _ = _coordinates(acq, size)
    ap = acq.view == "AP"
    site = SITES[acq.site]
    img = 0.12 + att * acq.exposure
    if ap:
        img = img.mean() + 0.86 * (img - img.mean())
    img = np.clip(img, 0.0, 1.0) ** site["gamma"]
    img = ndimage.gaussian_filter(img, site["blur"] * size / 256)
    nrng = np.random.default_rng(acq.noise_seed)
    img = img + site["noise"] * nrng.standard_normal(img.shape) * np.sqrt(0.3 + img)
    lo, hi = site["collimation"]
    if hi > 0:
        border = nrng.uniform(lo, hi, size=3)
        collimated = (x0 < border[0]) | (x0 > 1 - border[1]) | (y0 < border[2])
        img = np.where(collimated, 0.92 + 0.02 * nrng.standard_normal(img.shape), img)
    return img
