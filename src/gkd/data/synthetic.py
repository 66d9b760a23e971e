"""The embedded `synthetic` benchmark: procedurally drawn street scenes with exact labels.

Every scene is a perspective street canyon (road, sidewalks, facades, trees, sky, cars, people,
poles) whose *geometry* is drawn from one distribution shared by all domains. A domain only changes
the *appearance*: palette, texture, lighting and weather. That is exactly the shift domain
generalisation measures: a model trained on `sim` labels is evaluated on domains it never saw.

Domains
- ``sim``: the labelled source (clean, saturated, flat "game" shading).
- ``city``, ``night``, ``fog``, ``rain``, ``snow``: unseen targets.
- ``generic``: an unlabelled-in-spirit stream with *randomised* palettes, textures, lighting and
  weather mixtures, standing in for web-scale VFM pretraining data. Its random settings are drawn so
  that they never coincide with a target domain's fixed settings (e.g. its darkest lighting is far
  brighter than ``night``, its haze far thinner than ``fog``).

Everything is a pure function of ``(domain, seed, size)``: the same arguments give the same bytes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gkd.config import BenchmarkConfig
from gkd.data.adapters import register_adapter
from gkd.data.prepared import png_bytes
from gkd.errors import ConfigError

CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(CLASSES))
SOURCE_DOMAIN = "sim"
TARGET_DOMAINS = ("city", "night", "fog", "rain", "snow")
DOMAINS = (SOURCE_DOMAIN, *TARGET_DOMAINS, "generic")
# Colours used to *show* labels (Cityscapes colours for the shared classes).
LABEL_COLOURS = np.array(
    [(128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180), (0, 0, 142),
     (220, 20, 60), (153, 153, 153)], dtype=np.uint8)

# Per-domain base colours (RGB, 0..1) of each class, in CLASSES order.
_PALETTES = {
    "sim": [(0.35, 0.33, 0.42), (0.95, 0.55, 0.75), (0.85, 0.45, 0.20), (0.15, 0.85, 0.20),
            (0.30, 0.70, 1.00), (0.95, 0.10, 0.10), (1.00, 0.85, 0.10), (0.60, 0.60, 0.65)],
    "city": [(0.42, 0.42, 0.40), (0.62, 0.60, 0.56), (0.58, 0.52, 0.46), (0.25, 0.35, 0.18),
             (0.78, 0.82, 0.86), (0.20, 0.25, 0.40), (0.30, 0.22, 0.25), (0.35, 0.35, 0.33)],
}


def _scene_geometry(rng: np.random.Generator, size: int):
    """Label map, depth map and the light-source positions of one scene (appearance-free)."""
    s = size
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    label = np.full((s, s), SKY, np.uint8)
    depth = np.full((s, s), 60.0, np.float32)  # sky is far away

    horizon = s * rng.uniform(0.36, 0.50)
    vanish_x = s * rng.uniform(0.38, 0.62)
    bottom_centre = vanish_x + s * rng.uniform(-0.15, 0.15)
    road_half = s * rng.uniform(0.30, 0.50)  # half width of the road at the bottom row
    walk_frac = rng.uniform(0.35, 0.70)      # sidewalk width relative to road half width

    t = np.clip((ys - horizon) / (s - horizon), 0.0, 1.0)  # 0 at horizon, 1 at the bottom row
    centre = vanish_x + t * (bottom_centre - vanish_x)
    off = np.abs(xs - centre)
    ground = ys > horizon
    road = ground & (off < t * road_half)
    walk = ground & ~road & (off < t * road_half * (1 + walk_frac))
    depth_ground = 1.0 / np.maximum(t, 0.02)

    # Facades: everything beyond the sidewalks, up to a skyline that is higher near the image sides.
    outer = ground & ~road & ~walk
    side_dist = np.abs(xs - vanish_x) / (s / 2)  # 0 at the vanishing point, ~1 at the sides
    skyline = np.full(s, horizon, np.float32)
    for lo, hi in ((0, int(vanish_x)), (int(vanish_x), s)):
        x = lo
        while x < hi:
            width = int(rng.integers(max(3, s // 14), max(4, s // 4)))
            height = rng.uniform(0.15, 0.9) * horizon
            cols = slice(x, min(hi, x + width))
            skyline[cols] = horizon - height * np.clip(side_dist[0, cols] * 1.3, 0.15, 1.0)
            x += width
    gap_centre = vanish_x + rng.uniform(-0.04, 0.04) * s  # the street's far end stays open
    facade = (ys >= skyline[None, :]) & ~ground & (np.abs(xs - gap_centre) > s * 0.03)
    building = outer | facade
    label[building] = BUILDING
    depth[building] = 1.0 / np.maximum(side_dist[building], 0.04)
    label[road] = ROAD
    label[walk] = SIDEWALK
    depth[road | walk] = depth_ground[road | walk]

    # Trees: a trunk and a crown of a few discs, standing on the sidewalk's outer edge.
    for _ in range(int(rng.integers(0, 5))):
        tb = rng.uniform(0.15, 1.0)
        yb = horizon + tb * (s - horizon)
        side = rng.choice((-1.0, 1.0))
        cb = vanish_x + tb * (bottom_centre - vanish_x)
        xb = cb + side * tb * road_half * (1 + walk_frac) * rng.uniform(0.9, 1.1)
        scale = tb * s
        trunk = (np.abs(xs - xb) < max(0.6, 0.012 * scale)) & (ys < yb) & (ys > yb - 0.45 * scale)
        crown = np.zeros_like(trunk)
        for _ in range(int(rng.integers(2, 5))):
            cx = xb + rng.normal(0, 0.08) * scale
            cy = yb - 0.5 * scale + rng.normal(0, 0.06) * scale
            crown |= (xs - cx) ** 2 + (ys - cy) ** 2 < (rng.uniform(0.08, 0.16) * scale) ** 2
        tree = trunk | crown
        label[tree] = VEGETATION
        depth[tree] = 1.0 / max(tb, 0.02)

    # Things, far to near (painter's order): cars on the road, people and poles on the sidewalks.
    things = []
    for _ in range(int(rng.integers(0, 5))):
        things.append((rng.uniform(0.1, 1.0), CAR))
    for _ in range(int(rng.integers(0, 5))):
        things.append((rng.uniform(0.4, 1.0), PERSON))
    for _ in range(int(rng.integers(1, 5))):
        things.append((rng.uniform(0.35, 1.0), POLE))
    lights: list[tuple[float, float, float, str]] = []  # (x, y, radius, kind) for night scenes
    for tb, kind in sorted(things):
        yb = horizon + tb * (s - horizon)
        cb = vanish_x + tb * (bottom_centre - vanish_x)
        half = tb * road_half
        scale = tb * s
        if kind == CAR:
            xc = cb + rng.uniform(-0.6, 0.6) * half
            w, h = 0.42 * scale * rng.uniform(0.8, 1.1), 0.2 * scale * rng.uniform(0.8, 1.2)
            body = (np.abs(xs - xc) < w / 2) & (ys < yb) & (ys > yb - h)
            cabin = (np.abs(xs - xc) < w * 0.32) & (ys <= yb - h) & (ys > yb - 1.7 * h)
            mask = body | cabin
            lights += [(xc - 0.35 * w, yb - 0.5 * h, 0.05 * scale, "car"),
                       (xc + 0.35 * w, yb - 0.5 * h, 0.05 * scale, "car")]
        else:
            side = rng.choice((-1.0, 1.0))
            xc = cb + side * half * (1 + walk_frac * rng.uniform(0.2, 0.9))
            if kind == PERSON:
                h = 0.6 * scale * rng.uniform(0.85, 1.15)
                body = ((xs - xc) / (0.2 * h)) ** 2 + ((ys - (yb - 0.42 * h)) / (0.42 * h)) ** 2 < 1
                head = (xs - xc) ** 2 + (ys - (yb - 0.9 * h)) ** 2 < (0.11 * h) ** 2
                mask = body | head
            else:
                h = 0.75 * scale * rng.uniform(0.8, 1.2)
                mask = (np.abs(xs - xc) < max(1.5, 0.045 * scale)) & (ys < yb) & (ys > yb - h)
                lights.append((xc, yb - h, 0.09 * scale, "lamp"))
        label[mask] = kind
        depth[mask] = 1.0 / max(tb, 0.02)
    return label, depth, lights, horizon, centre


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1, 1, (cells + 1, cells + 1)).astype(np.float32)
    pos = np.linspace(0, cells, size, dtype=np.float32)
    i0 = np.minimum(pos.astype(int), cells - 1)
    f = pos - i0
    rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def _style(domain: str, rng: np.random.Generator) -> dict:
    """Appearance settings of one image: fixed per target domain, random for ``generic``."""
    if domain == "generic":
        palette = rng.uniform(0.05, 0.95, (len(CLASSES), 3))
        mix = rng.uniform(0.0, 0.6, (len(CLASSES), 1))   # pull towards grey: varied saturation
        palette = palette * (1 - mix) + palette.mean(1, keepdims=True) * mix
        return dict(palette=palette, texture=rng.uniform(0.02, 0.2), windows=rng.random() < 0.6,
                    brightness=rng.uniform(0.5, 1.3), tint=rng.uniform(0.85, 1.15, 3),
                    haze=rng.uniform(0.0, 0.07) if rng.random() < 0.5 else 0.0,
                    streaks=int(rng.integers(0, 25)) if rng.random() < 0.3 else 0,
                    noise=rng.uniform(0.0, 0.05), cover=0.0, lights=False, contrast=rng.uniform(0.8, 1.2))
    base = dict(palette=np.array(_PALETTES["city"]), texture=0.12, windows=True, brightness=1.0,
                tint=np.ones(3), haze=0.0, streaks=0, noise=0.02, cover=0.0, lights=False, contrast=1.0)
    if domain == "sim":
        base.update(palette=np.array(_PALETTES["sim"]), texture=0.02, windows=False, noise=0.0)
    elif domain == "night":
        base.update(brightness=0.22, tint=np.array([0.8, 0.85, 1.25]), lights=True, noise=0.04)
    elif domain == "fog":
        base.update(haze=0.22, contrast=0.9)
    elif domain == "rain":
        base.update(brightness=0.62, tint=np.array([0.92, 0.97, 1.05]), streaks=60, noise=0.03)
    elif domain == "snow":
        base.update(cover=0.8, contrast=0.7, brightness=1.1, streaks=0, noise=0.03)
    elif domain != "city":
        raise ValueError(f"unknown synthetic domain {domain!r}; valid: {', '.join(DOMAINS)}")
    return base


def render(domain: str, key: Sequence[int], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one scene: (image uint8 H×W×3, label uint8 H×W with values in range(len(CLASSES))).

    ``key`` (e.g. ``(seed, split_code, index)``) seeds the scene; the same key in two domains gives the
    same geometry and labels under two appearances.
    """
    if domain not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {domain!r}; valid: {', '.join(DOMAINS)}")
    # Geometry and appearance use separate streams so geometry statistics never depend on domain.
    geo_rng = np.random.default_rng([*key, 0])
    app_rng = np.random.default_rng([*key, 1 + DOMAINS.index(domain)])
    label, depth, lights, horizon, centre = _scene_geometry(geo_rng, size)
    st = _style(domain, app_rng)
    s = size
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)

    img = st["palette"][label].astype(np.float32)  # H×W×3
    # Texture: low-frequency blotches plus fine grain, stronger on "rough" classes.
    rough = np.array([1.0, 0.8, 1.0, 1.6, 0.4, 0.5, 0.6, 0.5], np.float32)[label]
    tex = 0.6 * _smooth_noise(app_rng, s, 6) + 0.4 * app_rng.uniform(-1, 1, (s, s)).astype(np.float32)
    img *= (1 + st["texture"] * rough * tex)[..., None]
    # Vertical shading of the sky, darker facades towards the ground.
    sky_grad = np.clip(1.15 - 0.5 * ys / max(horizon, 1), 0.6, 1.2)
    img[label == SKY] *= sky_grad[label == SKY][:, None]
    if st["windows"]:
        win = ((xs % 5) < 2.5) & ((ys % 6) < 3) & (label == BUILDING) & (ys < horizon + 0.2 * s)
        img[win] *= 0.6
    # Lane markings: dashes along the road's centre line (appearance only; label stays road).
    lane = (label == ROAD) & (np.abs(xs + 0.5 - centre) < 0.6) & ((ys // 4) % 2 == 0)
    img[lane] = img[lane] * 0.3 + 0.7 * np.array([0.95, 0.95, 0.9])

    if st["cover"] > 0:  # snow lies on the ground and on the tops of things
        white = np.array([0.93, 0.94, 0.97])
        patchy = 0.5 + 0.5 * _smooth_noise(app_rng, s, 10)
        amount = np.where(np.isin(label, (ROAD, SIDEWALK, VEGETATION)), st["cover"] * patchy, 0.15 * patchy)
        tracks = (label == ROAD) & (np.abs(((xs - centre) % 9) - 4.5) < 1.0)
        amount[tracks] *= 0.3
        img = img * (1 - amount[..., None]) + white * amount[..., None]
        img[label == SKY] = img[label == SKY] * 0.3 + 0.7 * np.array([0.85, 0.86, 0.88])

    img = img * st["brightness"] * st["tint"]
    img = (img - img.mean()) * st["contrast"] + img.mean()

    if st["lights"]:  # lit windows, street lamps and headlights
        lit = (label == BUILDING) & (app_rng.uniform(0, 1, (s, s)) < 0.08) & (ys < horizon + 0.15 * s)
        img[lit] = np.array([0.9, 0.75, 0.35])
        for x, y, r, kind in lights:
            glow = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * max(r, 0.8) ** 2))
            colour = np.array([1.0, 0.85, 0.5]) if kind == "lamp" else np.array([1.0, 1.0, 0.9])
            img += 0.9 * glow[..., None] * colour
        img[label == SKY] *= 0.3
    if st["haze"] > 0:  # Koschmieder's law: transmission falls exponentially with depth
        trans = np.exp(-st["haze"] * depth)[..., None]
        img = img * trans + np.array([0.78, 0.8, 0.82]) * (1 - trans)
    if st["streaks"]:
        streak = np.zeros((s, s), np.float32)
        for _ in range(st["streaks"]):
            x0, y0 = app_rng.uniform(0, s), app_rng.uniform(0, s)
            length = app_rng.uniform(0.08, 0.2) * s
            tt = np.linspace(0, 1, int(length) + 2)
            px = np.clip((x0 + 0.25 * length * tt).astype(int), 0, s - 1)
            py = np.clip((y0 + length * tt).astype(int), 0, s - 1)
            streak[py, px] = 0.35
        img = img + streak[..., None]
        wet = label == ROAD  # wet road mirrors the sky: darker with bright vertical smears
        img[wet] = img[wet] * 0.7 + 0.15 * (0.5 + 0.5 * np.sin(xs[wet] * 1.3))[:, None]
    if st["noise"] > 0:
        img = img + app_rng.normal(0, st["noise"], img.shape)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, label


def render_png(domain: str, key: Sequence[int], size: int) -> tuple[bytes, bytes]:
    """``render``, PNG-encoded (what the prepare stage stores), so worker processes do the encoding."""
    image, label = render(domain, key, size)
    return png_bytes(image), png_bytes(label)


def splits(source_count: int, val_count: int, target_count: int, generic_count: int,
           generic_val_count: int = 0) -> list[tuple[str, str, int, int]]:
    """(domain, split, count, split_code) of the benchmark; split codes keep scene seeds disjoint."""
    out = [(SOURCE_DOMAIN, "train", source_count, 1), (SOURCE_DOMAIN, "val", val_count, 2)]
    out += [(d, "test", target_count, 10 + i) for i, d in enumerate(TARGET_DOMAINS)]
    if generic_count:
        out.append(("generic", "train", generic_count, 3))
    if generic_val_count:
        out.append(("generic", "val", generic_val_count, 4))
    return out


@register_adapter("synthetic")
def synthetic_adapter(bench: BenchmarkConfig, seed: int, datasets: dict[str, str]):
    """The benchmark's records, generated on the fly: there are no raw folders, so ``datasets`` is unused."""
    if bench.source != SOURCE_DOMAIN or any(t not in TARGET_DOMAINS for t in bench.targets):
        raise ConfigError(f"synthetic benchmark: source must be {SOURCE_DOMAIN!r} and targets a subset of "
                          f"{', '.join(TARGET_DOMAINS)}; got source={bench.source!r}, targets={bench.targets}")
    info = dict(classes=list(CLASSES), palette=LABEL_COLOURS.tolist())

    def records():
        import os
        from concurrent.futures import ProcessPoolExecutor
        workers = max(1, len(os.sched_getaffinity(0)))
        with ProcessPoolExecutor(workers) as pool:  # scenes are independent: render them on every core
            for domain, split, count, code in splits(bench.train_images, bench.val_images, bench.target_images,
                                                     bench.generic_images, bench.generic_val_images):
                if domain not in (bench.source, "generic") and domain not in bench.targets:
                    continue
                keys = [(seed, code, i) for i in range(count)]
                scenes = pool.map(render_png, [domain] * count, keys, [bench.image_size] * count,
                                  chunksize=64)  # PNG-encoded in the workers too
                yield domain, split, count, ((f"{domain}_{split}_{i:06d}", *scene) for i, scene in enumerate(scenes))
    return info, records()
