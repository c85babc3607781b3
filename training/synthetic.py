"""Synthetic captioned images: coloured shapes with known answers.

Every image shows one shape (``SHAPES``) in one colour (``COLOURS``), small or large,
at one of five positions, on one of three backgrounds, slightly rotated, with a little
colour noise. Its caption says so ("a small red circle on the left on a grey
background"). Everything is a pure function of a seed, so tests, benchmarks and the
reference model see the same pictures in every process.

``HELD_OUT`` colour-shape combinations never appear in training data: a model that
classifies them correctly has learnt colour and shape separately, not memorised pairs.

:func:`render_scene` places several shapes on a larger canvas (with distractors) and
returns their boxes, for detection checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Bump when pictures or captions change: the reference model cache is keyed by it.
GENERATOR_VERSION = 2

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 215, 40),
    "purple": (135, 55, 175),
    "orange": (245, 135, 25),
    "pink": (250, 135, 195),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "white": (242, 242, 242),
    "black": (22, 22, 22),
}
SIZES = ("small", "large")
POSITIONS: dict[str, tuple[float, float]] = {  # shape centre as a fraction of the canvas
    "on the left": (0.27, 0.5),
    "on the right": (0.73, 0.5),
    "at the top": (0.5, 0.27),
    "at the bottom": (0.5, 0.73),
    "in the centre": (0.5, 0.5),
}
EMPTY_CAPTIONS = ("a plain {} background", "an empty {} background", "a {} background",
                  "nothing on a {} background")
# One combination per colour, every shape held out at most twice: each colour is still
# seen with five shapes and each shape with five or six colours.
HELD_OUT: frozenset[tuple[str, str]] = frozenset({
    ("red", "triangle"), ("green", "star"), ("blue", "circle"), ("yellow", "square"),
    ("purple", "cross"), ("orange", "diamond"), ("pink", "circle"),
})
ALL_COMBOS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
SEEN_COMBOS = tuple(c for c in ALL_COMBOS if c not in HELD_OUT)
HELD_OUT_COMBOS = tuple(c for c in ALL_COMBOS if c in HELD_OUT)

_SIZE_RANGE = {"small": (0.3, 0.38), "large": (0.5, 0.62)}  # diameter / canvas side
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeSpec:
    """What one synthetic picture shows; ``caption`` says all of it."""

    colour: str
    shape: str
    size: str = "large"
    position: str = "in the centre"
    background: str = "grey"

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def caption(self) -> str:
        return (f"{article(self.size)} {self.size} {self.colour} {self.shape} {self.position} "
                f"on a {self.background} background")


def random_spec(rng: np.random.Generator, combos: Sequence[tuple[str, str]] = SEEN_COMBOS) -> ShapeSpec:
    """A random picture description drawn from ``combos``."""
    colour, shape = combos[int(rng.integers(len(combos)))]
    return ShapeSpec(
        colour, shape,
        size=SIZES[int(rng.integers(len(SIZES)))],
        position=list(POSITIONS)[int(rng.integers(len(POSITIONS)))],
        background=list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))],
    )


def random_caption(spec: ShapeSpec, rng: np.random.Generator) -> str:
    """A caption naming a random subset of what the picture shows: colour and shape each
    with probability 3/4 (at least one of them), size, position and background each with
    probability 1/2. Captions that name the shape without the colour are what force a
    model to see shapes at all (colour alone tells most pictures in a batch apart), and
    naming attributes independently is what lets it compose unseen pairs."""
    colour = rng.random() < 0.75
    shape = rng.random() < 0.75 or not colour
    words = [w for w, keep in ((spec.size, rng.random() < 0.5), (spec.colour, colour)) if keep]
    words.append(spec.shape if shape else "shape")
    text = " ".join([article(words[0]), *words])
    if rng.random() < 0.5:
        text += f" {spec.position}"
    if rng.random() < 0.5:
        text += f" on a {spec.background} background"
    if rng.random() < 0.2:
        text = "a photo of " + text
    return text


def article(word: str) -> str:
    """'a' or 'an' before ``word``."""
    return "an" if word[:1] in "aeiou" else "a"


def render(spec: ShapeSpec, size: int, rng: np.random.Generator) -> Image.Image:
    """Draw ``spec`` on a ``size`` × ``size`` canvas (anti-aliased)."""
    image, _ = _render_on(spec, size, rng)
    return image


def shape_box(spec: ShapeSpec, size: int, rng: np.random.Generator) -> tuple[Image.Image, tuple[float, ...]]:
    """Like :func:`render`, also returning the shape's box ``(xmin, ymin, xmax, ymax)``."""
    return _render_on(spec, size, rng)


def _render_on(spec: ShapeSpec, size: int, rng: np.random.Generator) -> tuple[Image.Image, tuple[float, ...]]:
    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), _jitter(BACKGROUNDS[spec.background], rng, 8))
    lo, hi = _SIZE_RANGE[spec.size]
    diameter = big * float(rng.uniform(lo, hi))
    fx, fy = POSITIONS[spec.position]
    cx = big * fx + float(rng.normal(0, 0.03)) * big
    cy = big * fy + float(rng.normal(0, 0.03)) * big
    box = draw_shape(canvas, spec.shape, COLOURS[spec.colour], (cx, cy), diameter, rng)
    image = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return image, tuple(v / _SUPERSAMPLE for v in box)


def draw_shape(canvas: Image.Image, shape: str, rgb: tuple[int, int, int], centre: tuple[float, float],
               diameter: float, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Draw one shape onto ``canvas``; returns its box clipped to the canvas."""
    draw = ImageDraw.Draw(canvas)
    colour = _jitter(rgb, rng, 14)
    cx, cy = centre
    r = diameter / 2
    angle = float(rng.uniform(-15, 15)) * math.pi / 180
    if shape == "circle":
        points = [(cx + r * math.cos(t), cy + r * math.sin(t))
                  for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    else:
        points = [_rotate(p, angle, cx, cy, r) for p in _OUTLINES[shape]]
    draw.polygon(points, fill=colour)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    w, h = canvas.size
    return (max(0.0, min(xs)), max(0.0, min(ys)), min(float(w), max(xs)), min(float(h), max(ys)))


def _rotate(p: tuple[float, float], angle: float, cx: float, cy: float, r: float) -> tuple[float, float]:
    x, y = p
    ca, sa = math.cos(angle), math.sin(angle)
    return (cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca))


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for i in range(points * 2):
        rad = 1.0 if i % 2 == 0 else inner
        t = -math.pi / 2 + i * math.pi / points
        out.append((rad * math.cos(t), rad * math.sin(t)))
    return out


# Unit outlines (radius 1, centred on 0); y grows downwards as in images.
_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)],
    "star": _star(),
    "cross": [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1),
              (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)],
    "diamond": [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)],
}


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, int, int]:
    noise = rng.integers(-amount, amount + 1, 3)
    r, g, b = (int(np.clip(c + n, 0, 255)) for c, n in zip(rgb, noise, strict=True))
    return (r, g, b)


def render_scene(
    objects: Sequence[tuple[str, str]],
    canvas_size: int | tuple[int, int],
    rng: np.random.Generator,
    background: str = "grey",
    object_size: tuple[float, float] = (0.18, 0.26),
) -> tuple[Image.Image, list[tuple[str, tuple[float, float, float, float]]]]:
    """Place ``objects`` ((colour, shape) pairs) on one canvas without overlap.

    Returns the image and ``(label, (xmin, ymin, xmax, ymax))`` per object in pixels,
    label as "red circle". ``object_size`` is each shape's diameter as a fraction of the
    canvas's short side. Raises ``ValueError`` when the shapes do not fit.
    """
    w, h = (canvas_size, canvas_size) if isinstance(canvas_size, int) else canvas_size
    big_w, big_h = w * _SUPERSAMPLE, h * _SUPERSAMPLE
    canvas = Image.new("RGB", (big_w, big_h), _jitter(BACKGROUNDS[background], rng, 8))
    placed: list[tuple[float, float, float]] = []
    out: list[tuple[str, tuple[float, float, float, float]]] = []
    for colour, shape in objects:
        diameter = min(big_w, big_h) * float(rng.uniform(*object_size))
        centre = _free_spot(placed, diameter / 2, big_w, big_h, rng)
        placed.append((centre[0], centre[1], diameter / 2))
        box = draw_shape(canvas, shape, COLOURS[colour], centre, diameter, rng)
        out.append((f"{colour} {shape}", tuple(v / _SUPERSAMPLE for v in box)))  # type: ignore[misc]
    return canvas.resize((w, h), Image.Resampling.LANCZOS), out


def _render_pair(objects: Sequence[tuple[str, str]], size: int, background: str,
                 rng: np.random.Generator) -> Image.Image:
    """Two shapes side by side (or one above the other): always fits, even at 32 px."""
    big = size * _SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), _jitter(BACKGROUNDS[background], rng, 8))
    across = rng.random() < 0.5
    for (colour, shape), where in zip(objects, (0.27, 0.73), strict=True):
        along = big * float(rng.uniform(0.3, 0.7))
        centre = (big * where, along) if across else (along, big * where)
        draw_shape(canvas, shape, COLOURS[colour], centre, big * float(rng.uniform(0.3, 0.42)), rng)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def _free_spot(placed: list[tuple[float, float, float]], r: float, w: int, h: int,
               rng: np.random.Generator) -> tuple[float, float]:
    margin = r * 1.05
    for _ in range(500):
        x = float(rng.uniform(margin, w - margin))
        y = float(rng.uniform(margin, h - margin))
        if all(math.hypot(x - px, y - py) > (r + pr) * 1.15 for px, py, pr in placed):
            return x, y
    raise ValueError("the shapes do not fit on the canvas; use fewer or smaller objects")


class ShapesDataset:
    """``(image, caption)`` pairs of random shapes. Image ``i`` is a pure function of
    ``(seed, i)``; its caption also of the epoch (:meth:`set_epoch`, which the trainer
    calls), so each epoch words the same pictures differently and the trainer may cache
    the pictures. ``random_captions=False`` gives the full caption.

    ``group > 1`` makes runs of ``group`` consecutive pictures share colour, background
    and size: hard negatives for contrastive training, where a batch then can only be
    told apart by shape and position (colour, background and size are learnt in a few
    steps and otherwise drown the slower spatial cues). The pictures are already in
    random order, so such a dataset asks the trainer not to shuffle (``ordered``)."""

    def __init__(self, n: int, seed: int = 0, size: int = 64,
                 combos: Sequence[tuple[str, str]] = SEEN_COMBOS, random_captions: bool = True,
                 group: int = 1, empty: float = 0.0, pairs: float = 0.0) -> None:
        self.n, self.seed, self.size = n, seed, size
        self.combos = tuple(combos)
        self.random_captions = random_captions
        self.group = max(1, group)
        self.ordered = self.group > 1
        self.empty, self.pairs = empty, pairs
        self.epoch = 0

    def kind(self, i: int) -> str:
        """``single`` (one shape, described by :meth:`spec`), ``empty`` (background only:
        teaches "nothing here") or ``pair`` (the spec's shape and another one)."""
        draw = np.random.default_rng([self.seed, i, 3]).random()
        return "empty" if draw < self.empty else "pair" if draw < self.empty + self.pairs else "single"

    def _spec(self, i: int, rng: np.random.Generator) -> ShapeSpec:
        if self.group == 1:
            return random_spec(rng, self.combos)
        shared = random_spec(np.random.default_rng([self.seed, i // self.group, 7]), self.combos)
        shapes = [s for c, s in self.combos if c == shared.colour]
        return ShapeSpec(shared.colour, shapes[int(rng.integers(len(shapes)))], shared.size,
                         list(POSITIONS)[int(rng.integers(len(POSITIONS)))], shared.background)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def spec(self, i: int) -> ShapeSpec:
        return self._spec(i, np.random.default_rng([self.seed, i]))

    def image(self, i: int) -> Image.Image:
        rng = np.random.default_rng([self.seed, i])
        spec, kind = self._spec(i, rng), self.kind(i)
        if kind == "empty":
            return Image.new("RGB", (self.size, self.size), _jitter(BACKGROUNDS[spec.background], rng, 8))
        if kind == "pair":
            return _render_pair([(spec.colour, spec.shape), self._partner(i)], self.size,
                                spec.background, rng)
        return render(spec, self.size, rng)

    def _partner(self, i: int) -> tuple[str, str]:
        return self.combos[int(np.random.default_rng([self.seed, i, 4]).integers(len(self.combos)))]

    def caption(self, i: int) -> str:
        spec, kind = self.spec(i), self.kind(i)
        rng = np.random.default_rng([self.seed, i, self.epoch, 1])
        if kind == "empty":
            words = EMPTY_CAPTIONS[int(rng.integers(len(EMPTY_CAPTIONS)))]
            return words.format(spec.background)
        if kind == "pair":
            first, second = spec.label, " ".join(self._partner(i))
            if first == second:
                return f"two {first}s" if not first.endswith("s") else f"two {first}es"
            if rng.random() < 0.5:
                first, second = second, first
            return f"{article(first)} {first} and {article(second)} {second}"
        if not self.random_captions:
            return spec.caption
        return random_caption(spec, rng)

    def __getitem__(self, i: int) -> tuple[Image.Image, str]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.image(i), self.caption(i)
