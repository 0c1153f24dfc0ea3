"""Grey-scale pendulum images: thick lines on a supersampled canvas, area-downsampled.

Like the paper, each link is drawn as a thick line on a canvas ``supersample`` times larger than
the output and the canvas is averaged over ``supersample x supersample`` blocks, which
anti-aliases the edges. Links are drawn in chain order, each with its own grey level, so a later
(outer) link covers an earlier one where they cross: occlusion on the quad-link is visible as the
inner link's grey being replaced. The pivot is the image centre; image rows grow downwards and
``theta = 0`` points straight down. Deterministic: no randomness, float32 arithmetic only.

A :class:`CameraView` makes another camera: the pendulum's plane seen from an angle (yaw
foreshortens the horizontal), turned about the optical axis (roll), smaller (scale) and off
centre (offset), with a fixed grey occluder in front. Without one, images are as above.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class RenderParams:
    """Image geometry, in output pixels unless stated."""

    image_size: int = 24                 # output images are image_size x image_size
    supersample: int = 4                 # canvas is supersample x larger per side (1: no AA)
    line_width: float = 2.5              # px in the output image
    margin: float = 0.5                  # px between the stretched chain and the border
    grey_levels: tuple[int, ...] = ()    # one per link (1..255); empty: evenly spaced 255 -> 115

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or not 8 <= self.image_size <= 1024:
            raise ValueError(f"render parameter 'image_size': expected an integer in [8, 1024], "
                             f"received {self.image_size!r}")
        if not isinstance(self.supersample, int) or not 1 <= self.supersample <= 16:
            raise ValueError(f"render parameter 'supersample': expected an integer in [1, 16], "
                             f"received {self.supersample!r}")
        for name in ("line_width", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"render parameter '{name}': expected a number of px, received "
                                 f"{value!r}")
        if not isinstance(self.grey_levels, (list, tuple)) or not all(
                isinstance(g, numbers.Integral) and not isinstance(g, bool)
                for g in self.grey_levels):
            raise ValueError(f"render parameter 'grey_levels': expected a list of integers "
                             f"(one per link), received {self.grey_levels!r}")
        if not (math.isfinite(self.line_width) and 0 < self.line_width < self.image_size / 2):
            raise ValueError(f"render parameter 'line_width': expected 0 < width < image_size/2 "
                             f"px, received {self.line_width!r}")
        if not (math.isfinite(self.margin) and 0 <= self.margin < self.image_size / 4):
            raise ValueError(f"render parameter 'margin': expected 0 <= margin < image_size/4 "
                             f"px, received {self.margin!r}")
        object.__setattr__(self, "grey_levels", tuple(int(g) for g in self.grey_levels))
        if any(not 1 <= g <= 255 for g in self.grey_levels):
            raise ValueError(f"render parameter 'grey_levels': expected values in [1, 255], "
                             f"received {list(self.grey_levels)}")

    def levels(self, links: int) -> np.ndarray:
        """Grey level of each link, ``[links]`` float32 in (0, 1]."""
        if self.grey_levels:
            if len(self.grey_levels) != links:
                raise ValueError(f"render parameter 'grey_levels': expected {links} values (one "
                                 f"per link), received {len(self.grey_levels)}")
            levels = np.asarray(self.grey_levels, dtype=np.float32)
        else:
            levels = np.linspace(255.0, 115.0, links, dtype=np.float32) if links > 1 \
                else np.array([255.0], dtype=np.float32)
        return levels / np.float32(255.0)

    @classmethod
    def quad_link(cls) -> RenderParams:
        """The quad-link images: 48 x 48, 3 px lines, 3x supersampling (4x costs 1.8x more)."""
        return cls(image_size=48, supersample=3, line_width=3.0)

    @classmethod
    def from_dict(cls, values: dict) -> RenderParams:
        """Build from a plain mapping; unknown keys are rejected by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown render parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping for metadata files."""
        return {f.name: (list(getattr(self, f.name)) if f.name == "grey_levels"
                         else getattr(self, f.name)) for f in fields(self)}


MAX_YAW = 1.4  # rad (80 deg): beyond it the plane is seen nearly edge-on


@dataclass(frozen=True)
class CameraView:
    """Where a camera sees the pendulum from, relative to the front view of :func:`render`.

    Applied to the chain in output pixels about the image centre: the horizontal is scaled by
    ``cos(yaw)`` (the plane seen from ``yaw`` rad to the side), then the chain is turned by
    ``roll`` rad (clockwise on the image), scaled by ``scale`` and moved by ``offset`` (x, row;
    fractions of the image side). ``occluder`` (x0, row0, x1, row1; fractions) is a rectangle
    of grey ``occluder_level`` in front of the pendulum; empty: none.
    """

    yaw: float = 0.0
    roll: float = 0.0
    scale: float = 1.0
    offset: tuple[float, ...] = (0.0, 0.0)
    occluder: tuple[float, ...] = ()
    occluder_level: int = 96

    def __post_init__(self) -> None:
        for name in ("yaw", "roll", "scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value):
                raise ValueError(f"camera view '{name}': expected a number, received {value!r}")
        if abs(self.yaw) > MAX_YAW:
            raise ValueError(f"camera view 'yaw': expected |yaw| <= {MAX_YAW} rad, received "
                             f"{self.yaw!r}")
        if not 0.1 <= self.scale <= 1.0:
            raise ValueError(f"camera view 'scale': expected a number in [0.1, 1] (the chain "
                             f"must not outgrow the front view's fit), received {self.scale!r}")
        for name, sizes, low, high in (("offset", (2,), -0.5, 0.5),
                                       ("occluder", (0, 4), 0.0, 1.0)):
            values = getattr(self, name)
            if not (isinstance(values, (list, tuple)) and len(values) in sizes and all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) and low <= v <= high
                    for v in values)):
                raise ValueError(f"camera view '{name}': expected {' or '.join(map(str, sizes))} "
                                 f"numbers in [{low}, {high}], received {values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if self.occluder and not (self.occluder[0] < self.occluder[2]
                                  and self.occluder[1] < self.occluder[3]):
            raise ValueError(f"camera view 'occluder': expected x0 < x1 and row0 < row1, "
                             f"received {list(self.occluder)}")
        if isinstance(self.occluder_level, bool) or not isinstance(self.occluder_level,
                                                                   numbers.Integral) \
                or not 0 <= self.occluder_level <= 255:
            raise ValueError(f"camera view 'occluder_level': expected an integer in [0, 255], "
                             f"received {self.occluder_level!r}")

    @classmethod
    def from_dict(cls, values: dict) -> CameraView:
        """Build from a plain mapping; unknown keys are rejected by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown camera view parameter(s) {unknown}; known: "
                             f"{sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping for metadata files."""
        return {f.name: (list(getattr(self, f.name)) if f.name in ("offset", "occluder")
                         else getattr(self, f.name)) for f in fields(self)}

    def apply(self, points: np.ndarray, image_size: int) -> np.ndarray:
        """Points ``[..., 2]`` (x, row) of the front view seen from this view."""
        centre = image_size / 2.0
        x = (points[..., 0] - centre) * math.cos(self.yaw)
        row = points[..., 1] - centre
        cos_r, sin_r = math.cos(self.roll), math.sin(self.roll)
        out = np.empty_like(points)
        out[..., 0] = centre + self.offset[0] * image_size + self.scale * (cos_r * x - sin_r * row)
        out[..., 1] = centre + self.offset[1] * image_size + self.scale * (sin_r * x + cos_r * row)
        return out

    def occlude(self, images: np.ndarray) -> None:
        """Paint the occluder onto ``uint8 [frames, H, W]`` images in place."""
        if not self.occluder:
            return
        size = images.shape[-1]
        x0, r0, x1, r1 = (round(v * size) for v in self.occluder)
        images[:, r0:r1, x0:x1] = self.occluder_level


def link_endpoints(angles: np.ndarray, lengths: tuple[float, ...],
                   render: RenderParams, view: CameraView | None = None) -> np.ndarray:
    """Joint positions in output-pixel coordinates ``[frames, links + 1, 2]`` as (x, row).

    ``angles``: ``[frames, links]`` absolute link angles (rad, 0 = down). The whole chain,
    stretched, reaches ``image_size / 2 - line_width / 2 - margin`` px from the centre (in the
    front view; ``view`` moves it).
    """
    lengths_arr = np.asarray(lengths, dtype=np.float64)
    radius = render.image_size / 2.0 - render.line_width / 2.0 - render.margin
    scale = radius / lengths_arr.sum()
    dx = np.sin(angles) * lengths_arr * scale
    drow = np.cos(angles) * lengths_arr * scale     # rows grow downwards: hanging = +row
    centre = render.image_size / 2.0
    points = np.zeros((angles.shape[0], angles.shape[1] + 1, 2))
    points[:, 0] = centre
    points[:, 1:, 0] = centre + np.cumsum(dx, axis=1)
    points[:, 1:, 1] = centre + np.cumsum(drow, axis=1)
    return points if view is None else view.apply(points, render.image_size)


def render(angles: np.ndarray, lengths: tuple[float, ...], render_params: RenderParams,
           chunk: int = 64, progress: Callable[[int], None] | None = None,
           view: CameraView | None = None) -> np.ndarray:
    """Render ``[frames, links]`` absolute angles to ``uint8 [frames, H, W]`` grey images,
    seen from ``view`` (default: the front view).

    Works in chunks of ``chunk`` frames to bound memory; ``progress(n)`` after each chunk.
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 2 or angles.shape[1] != len(lengths):
        raise ValueError(f"render: 'angles' must be [frames, {len(lengths)}], received "
                         f"{list(angles.shape)}")
    if not np.all(np.isfinite(angles)):
        raise ValueError("render: 'angles' contains NaN or inf")
    size, ss = render_params.image_size, render_params.supersample
    levels = render_params.levels(len(lengths))
    points = link_endpoints(angles, lengths, render_params, view).astype(np.float32)
    # canvas sample centres in output-pixel units
    grid = ((np.arange(size * ss, dtype=np.float32) + np.float32(0.5)) / np.float32(ss))
    half_sq = np.float32((render_params.line_width / 2.0) ** 2)
    # Each link is evaluated only in a window that surely holds it (its length plus the line
    # width, in whole output pixels): on the quad-link that is ~20x fewer samples than the
    # whole canvas, with identical results.
    radius = render_params.image_size / 2.0 - render_params.line_width / 2.0 - render_params.margin
    link_px = np.asarray(lengths) * radius / float(np.sum(lengths))
    windows = [min(size, int(np.ceil(px + render_params.line_width)) + 2) for px in link_px]
    out = np.empty((angles.shape[0], size, size), dtype=np.uint8)
    for start in range(0, angles.shape[0], chunk):
        pts = points[start:start + chunk]
        frames = pts.shape[0]
        canvas = np.zeros((frames, size * ss, size * ss), dtype=np.float32)
        for i, win in enumerate(windows):
            a, b = pts[:, i], pts[:, i + 1]
            low = np.floor(np.minimum(a, b) - render_params.line_width / 2.0) - 1.0
            origin = np.clip(low, 0, size - win).astype(np.int64)           # [f, 2] (x, row)
            offsets = np.arange(win * ss)
            cols = origin[:, 0, None] * ss + offsets                        # [f, w]
            rows = origin[:, 1, None] * ss + offsets                        # [f, w]
            ax, ay = a[:, 0, None, None], a[:, 1, None, None]
            dx, dy = b[:, 0, None, None] - ax, b[:, 1, None, None] - ay
            length = np.maximum(np.sqrt(dx * dx + dy * dy), np.float32(1e-6))
            ux, uy = dx / length, dy / length
            px = grid[cols][:, None, :] - ax          # [f, 1, w]
            py = grid[rows][:, :, None] - ay          # [f, w, 1]
            # capsule distance from the along/across coordinates: the separable products are
            # small [f, 1, w] and [f, w, 1] arrays, so only a few passes touch the full window
            half = length / 2
            along = np.abs((px * ux - half) + py * uy) - half
            np.maximum(along, 0.0, out=along)
            across = px * uy - py * ux
            f, r, c = np.nonzero(along * along + across * across <= half_sq)
            canvas[f, rows[f, r], cols[f, c]] = levels[i]    # later links cover earlier ones
        small = canvas.reshape(-1, size, ss, size, ss).mean(axis=(2, 4))
        out[start:start + chunk] = np.rint(small * np.float32(255.0)).astype(np.uint8)
        if view is not None:
            view.occlude(out[start:start + chunk])
        if progress is not None:
            progress(frames)
    return out
