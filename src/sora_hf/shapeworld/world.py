"""ShapeWorld v1: vocabulary, scenes and their simulation (see shared/shapeworld.md).

A `Scene` is everything needed to render a clip and everything the analyzer is
measured against: background, objects (shape, size, per-segment colour and
motion), the occluder and the style. `simulate(scene)` turns it into per-frame
`ObjectTrack`s (centre, rotation, colour per frame); `render.py` draws them.

Choices the spec leaves open, written down here:
- Positions are in pixels of the target frame; speeds are given "at 64 px" and
  scaled by min(H, W) / 64, so a clip looks the same at every tier.
- Bounce: gravity 0.25 px/frame^2 at 64 px, the floor is the frame's bottom
  edge; horizontal drift (half of the bouncing objects) reflects off the side
  walls so the bounce stays in view.
- Storyboard clips split at a frame `1 + 4k`, which is a latent-frame boundary
  of the causal VAE (latent frame 0 <- pixel frame 0, latent j <- pixels
  4j-3 .. 4j), so segment masks are exact in latent space.
- Images (1 frame) hold still objects (squares and triangles at a random angle).
- Seeds: the training sampler draws seeds in [0, EVAL_SEED_START); evaluation
  seeds lie in [EVAL_SEED_START, 2**32). Held-out compositions are never
  produced by the training split, including by a storyboard colour change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

# ----------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 50, 50),
    "orange": (245, 150, 40),
    "yellow": (240, 220, 50),
    "green": (60, 180, 75),
    "blue": (50, 100, 230),
    "purple": (150, 70, 210),
    "pink": (245, 130, 190),
    "white": (245, 245, 245),
}
COLOURS = tuple(PALETTE)

# name -> (top RGB, bottom RGB); flat backgrounds have top == bottom.
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "black": ((15, 15, 20), (15, 15, 20)),
    "gray": ((110, 110, 115), (110, 110, 115)),
    "sand": ((225, 205, 160), (225, 205, 160)),
    "sky": ((150, 200, 240), (205, 230, 250)),
    "paper": ((240, 234, 220), (240, 234, 220)),  # only in the sketch style
}
SCENE_BACKGROUNDS = ("black", "gray", "sand", "sky")  # what a scene is sampled on
STYLE_BACKGROUNDS = {"neon": "black", "sketch": "paper"}  # styles that bring their own
OCCLUDER_RGB = (90, 90, 95)
OCCLUDER_WIDTH_FRACTION = 0.10

SHAPES = ("circle", "square", "triangle")
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("ball", "circle", "sphere", "dot"),
    "square": ("square", "box", "block", "cube"),
    "triangle": ("triangle", "pyramid", "wedge"),
}
# radius (centre to farthest point) as a fraction of the shorter frame side
SIZES: dict[str, float] = {"small": 0.12, "medium": 0.17, "large": 0.22}
MOTIONS = ("left", "right", "up", "down", "bounce", "still", "spin")
STYLES = ("none", "stop-motion", "neon", "pixel", "sketch")
# words that switch a style on in a caption (the LoRA trigger phrases)
STYLE_TRIGGERS: dict[str, str] = {
    "none": "",
    "stop-motion": "stop-motion style",
    "neon": "neon glow style",
    "pixel": "pixel art style",
    "sketch": "pencil sketch style",
}

HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("orange", "square"), ("green", "circle")}
)
SPLITS = ("train", "eval")
EVAL_SEED_START = 2**31
MAX_SEED = 2**32

ASPECT_RATIOS: dict[str, tuple[int, int]] = {  # name -> (height, width) at the base tier
    "1:1": (64, 64),
    "16:9": (64, 112),
    "9:16": (112, 64),
}
DURATIONS: dict[str, int] = {"image": 1, "2s": 17, "4s": 33, "8s": 65}
FPS = 8

SPEED_RANGE = (1.5, 3.0)  # px/frame at 64 px, for left/right/up/down
SPIN_RANGE = (10.0, 25.0)  # degrees per frame
RESTITUTION_RANGE = (0.75, 0.9)
GRAVITY = 0.25  # px/frame^2 at 64 px


# ----------------------------------------------------------------------------
# Validation: every public entry point checks names the same way
# ----------------------------------------------------------------------------

def check_choice(argument: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{argument}={value!r} is not allowed; choose one of {sorted(allowed)}")


def check_frame_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 16 or value % 16:
            raise ValueError(f"{name}={value!r} must be a positive multiple of 16 (16, 32, 48, 64, ...)")


def check_num_frames(num_frames: int) -> None:
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames={num_frames!r} must be 1 + 4k (1, 5, 9, 13, 17, ..., 33, 65)")


def colour_allowed(colour: str, background: str, style: str) -> bool:
    """White vanishes on the pale sky and on sketch paper, so it is never put there."""
    return not (colour == "white" and (background in ("sky", "paper") or style == "sketch"))


def motion_allowed(motion: str, shape: str) -> bool:
    """A spinning circle looks still, so circles never spin."""
    return not (motion == "spin" and shape == "circle")


# ----------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------

@dataclass
class MotionSpec:
    """How one object moves during one segment."""

    kind: str  # one of MOTIONS
    speed: float = 0.0  # px/frame at 64 px (left/right/up/down), deg/frame (spin)
    drift: float = 0.0  # horizontal px/frame at 64 px while bouncing (signed)
    restitution: float = 0.0  # bounce only

    def __post_init__(self):
        check_choice("motion", self.kind, MOTIONS)


@dataclass
class SceneObject:
    shape: str
    size: str
    x: float  # starting centre, pixels
    y: float
    angle: float  # starting rotation, degrees (0: square axis-aligned, triangle apex up)
    colours: list[str]  # one per segment
    motions: list[MotionSpec]  # one per segment

    def __post_init__(self):
        check_choice("shape", self.shape, SHAPES)
        check_choice("size", self.size, SIZES)
        for colour in self.colours:
            check_choice("colour", colour, COLOURS)

    @property
    def colour(self) -> str:
        return self.colours[0]

    @property
    def motion(self) -> str:
        return self.motions[0].kind


@dataclass
class Scene:
    height: int
    width: int
    num_frames: int
    background: str
    objects: list[SceneObject]
    occluder_x: Optional[float] = None  # centre of the pole, pixels; None: no pole
    style: str = "none"
    segment_starts: list[int] = field(default_factory=lambda: [0])  # first frame of each segment
    seed: Optional[int] = None
    split: Optional[str] = None

    def __post_init__(self):
        check_frame_size(self.height, self.width)
        check_num_frames(self.num_frames)
        check_choice("background", self.background, BACKGROUNDS)
        check_choice("style", self.style, STYLES)
        required = STYLE_BACKGROUNDS.get(self.style)
        if (required or self.background) != self.background or (not required and self.background == "paper"):
            raise ValueError(f"background={self.background!r} does not go with style={self.style!r}: "
                             f"neon is drawn on 'black', sketch on 'paper', other styles on {list(SCENE_BACKGROUNDS)}")
        if not 1 <= len(self.objects) <= 2:
            raise ValueError(f"objects: a scene holds 1 or 2 objects, got {len(self.objects)}")
        for s in range(len(self.segment_starts)):
            if len({o.colours[s] for o in self.objects}) != len(self.objects):
                raise ValueError("objects: two objects never share a colour")
            for o in self.objects:
                if not colour_allowed(o.colours[s], self.background, self.style):
                    raise ValueError(f"colour='white' is never placed on background={self.background!r} "
                                     f"or in style={self.style!r} (it would be invisible)")

    @property
    def radius_scale(self) -> float:
        return min(self.height, self.width)

    @property
    def speed_scale(self) -> float:
        return min(self.height, self.width) / 64.0

    def radius(self, obj: SceneObject) -> float:
        return SIZES[obj.size] * min(self.height, self.width)

    def segment_ranges(self) -> list[tuple[int, int]]:
        """[(start, end), ...] with `end` exclusive."""
        ends = self.segment_starts[1:] + [self.num_frames]
        return list(zip(self.segment_starts, ends))

    def compositions(self) -> set[tuple[str, str]]:
        return {(c, o.shape) for o in self.objects for c in o.colours}

    def is_held_out(self) -> bool:
        return bool(self.compositions() & HELD_OUT)


@dataclass
class ObjectTrack:
    """Ground truth for one object, per frame."""

    x: np.ndarray  # (F,) centre, pixels
    y: np.ndarray  # (F,)
    angle: np.ndarray  # (F,) degrees
    colour: list[str]  # (F,) palette name
    bounces: list[int]  # frames at which the object hit the floor


def simulate(scene: Scene) -> list[ObjectTrack]:
    """Integrate every object's motion, segment by segment, frame by frame."""
    tracks = []
    ranges = scene.segment_ranges()
    for obj in scene.objects:
        r = scene.radius(obj)
        floor = scene.height - bottom_extent(obj.shape, r)
        x, y, angle = obj.x, obj.y, obj.angle
        xs, ys, angles, colours, bounces = [], [], [], [], []
        previous = None
        for (start, end), motion, colour in zip(ranges, obj.motions, obj.colours):
            if motion != previous:  # a new motion starts from rest; an unchanged one carries on
                vx, vy = motion.drift * scene.speed_scale, 0.0
            previous = motion
            for f in range(start, end):
                if f > 0:  # frame 0 shows the starting pose
                    x, y, angle, vx, vy, bounced = _step(scene, motion, r, floor, x, y, angle, vx, vy)
                    if bounced:
                        bounces.append(f)
                xs.append(x)
                ys.append(y)
                angles.append(angle)
                colours.append(colour)
        tracks.append(ObjectTrack(np.array(xs), np.array(ys), np.array(angles), colours, bounces))
    return tracks


def _step(scene: Scene, motion: MotionSpec, r: float, floor: float, x, y, angle, vx, vy):
    """One frame of motion; returns (x, y, angle, vx, vy, bounced)."""
    k = scene.speed_scale
    bounced = False
    if motion.kind == "left":
        x -= motion.speed * k
    elif motion.kind == "right":
        x += motion.speed * k
    elif motion.kind == "up":
        y -= motion.speed * k
    elif motion.kind == "down":
        y += motion.speed * k
    elif motion.kind == "spin":
        angle = (angle + motion.speed) % 360.0
    elif motion.kind == "bounce":
        vy += GRAVITY * k
        y += vy
        if y > floor:  # reflect the overshoot and lose energy
            y = floor - (y - floor) * motion.restitution
            vy = -abs(vy) * motion.restitution
            bounced = True
        x += vx
        if x < r or x > scene.width - r:  # side walls reflect the drift
            vx = -vx
            x = min(max(x, r), scene.width - r)
    return x, y, angle, vx, vy, bounced


def bottom_extent(shape: str, r: float) -> float:
    """Distance from the centre to the lowest point at angle 0 (how bouncing objects fly)."""
    return {"circle": r, "square": r / math.sqrt(2), "triangle": r / 2}[shape]


# ----------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------

def check_seed(seed: int, split: str) -> None:
    check_choice("split", split, SPLITS)
    lo, hi = (0, EVAL_SEED_START) if split == "train" else (EVAL_SEED_START, MAX_SEED)
    if not isinstance(seed, (int, np.integer)) or not lo <= seed < hi:
        raise ValueError(f"seed={seed!r} is outside the {split!r} range [{lo}, {hi})")


def sample_scene(
    seed: int,
    split: str = "train",
    height: int = 64,
    width: int = 64,
    num_frames: int = 17,
    style: str = "none",
    num_objects: Optional[int] = None,
    storyboard: Optional[bool] = None,
    occluder: Optional[bool] = None,
    colour: Optional[str] = None,
    shape: Optional[str] = None,
    motion: Optional[str] = None,
    background: Optional[str] = None,
) -> Scene:
    """A random scene, deterministic in (seed, arguments).

    Optional arguments pin a property (the first object's colour/shape/motion);
    None leaves it random. The train split never yields a held-out composition.
    """
    check_seed(seed, split)
    check_frame_size(height, width)
    check_num_frames(num_frames)
    check_choice("style", style, STYLES)
    for name, value, allowed in (("colour", colour, COLOURS), ("shape", shape, SHAPES),
                                 ("motion", motion, MOTIONS), ("background", background, BACKGROUNDS)):
        if value is not None:
            check_choice(name, value, allowed)
    if split == "train" and colour is not None and shape is not None and (colour, shape) in HELD_OUT:
        raise ValueError(f"colour={colour!r} with shape={shape!r} is held out: it exists only in split='eval'")
    if not motion_allowed(motion, shape):
        raise ValueError("motion='spin' needs shape='square' or 'triangle' (a spinning circle looks still)")
    if num_frames == 1 and motion not in (None, "still"):
        raise ValueError(f"motion={motion!r} needs num_frames > 1; an image (num_frames=1) is 'still'")
    if storyboard and num_frames < 9:
        raise ValueError(f"storyboard=True needs num_frames >= 9, got {num_frames}")

    rng = np.random.default_rng(seed)
    n_objects = num_objects if num_objects is not None else int(rng.choice([1, 2], p=[0.6, 0.4]))
    if n_objects not in (1, 2):
        raise ValueError(f"num_objects={num_objects!r}; allowed: 1 or 2")
    if storyboard is None:
        storyboard = num_frames >= 9 and rng.random() < 0.25
    has_occluder = occluder if occluder is not None else (num_frames > 1 and rng.random() < 0.25)
    n_segments = 2 if storyboard else 1
    segment_starts = [0]
    if storyboard:  # split at a latent-frame boundary 1 + 4k, away from the ends
        k_max = (num_frames - 1) // 4
        segment_starts.append(1 + 4 * int(rng.integers(max(1, k_max // 4), max(2, k_max - k_max // 4))))

    if background is not None and style in STYLE_BACKGROUNDS and background != STYLE_BACKGROUNDS[style]:
        raise ValueError(f"background={background!r} does not go with style={style!r}, "
                         f"which is drawn on {STYLE_BACKGROUNDS[style]!r}")
    candidates = [b for b in SCENE_BACKGROUNDS if colour is None or colour_allowed(colour, b, style)] or ["black"]
    bg = STYLE_BACKGROUNDS.get(style) or background or str(rng.choice(candidates))
    if colour is not None and not colour_allowed(colour, bg, style):
        raise ValueError(f"colour={colour!r} is never placed on background={bg!r} in style={style!r} "
                         "(it would be invisible)")
    objects: list[SceneObject] = []
    used_colours: set[str] = set()
    for i in range(n_objects):
        pinned = i == 0
        for _ in range(100):  # rejection sampling over compositions
            obj_shape = (shape if pinned and shape else str(rng.choice(SHAPES)))
            obj_colour = (colour if pinned and colour else str(rng.choice(COLOURS)))
            if obj_colour in used_colours or not colour_allowed(obj_colour, bg, style):
                continue
            if split == "train" and (obj_colour, obj_shape) in HELD_OUT:
                continue
            break
        size = str(rng.choice(list(SIZES)))
        motions = []
        for s in range(n_segments):
            kind = motion if (pinned and motion and s == 0) else _sample_motion(rng, obj_shape, num_frames)
            motions.append(_sample_motion_spec(rng, kind))
        objects.append(SceneObject(obj_shape, size, 0.0, 0.0, 0.0, [obj_colour] * n_segments, motions))
        used_colours.add(obj_colour)

    if storyboard:  # in the second segment, one object changes motion or colour
        changed = objects[int(rng.integers(len(objects)))]
        if rng.random() < 0.5:
            options = [c for c in COLOURS if c not in used_colours and colour_allowed(c, bg, style)
                       and not (split == "train" and (c, changed.shape) in HELD_OUT)]
            changed.colours[1] = str(rng.choice(options))
            changed.motions[1] = replace(changed.motions[0])
        else:
            kinds = [m for m in MOTIONS if m != changed.motions[0].kind and motion_allowed(m, changed.shape)]
            changed.motions[1] = _sample_motion_spec(rng, str(rng.choice(kinds)))
        for other in objects:  # the others keep doing what they did
            if other is not changed:
                other.motions[1] = replace(other.motions[0])

    scene = Scene(height, width, num_frames, bg, objects, None, style, segment_starts, seed, split)
    _place(scene, rng)
    if has_occluder:
        scene.occluder_x = _occluder_position(scene, rng)
    return scene


def _sample_motion(rng, shape: str, num_frames: int) -> str:
    if num_frames == 1:
        return "still"
    kinds = [m for m in MOTIONS if motion_allowed(m, shape)]
    return str(rng.choice(kinds))


def _sample_motion_spec(rng, kind: str) -> MotionSpec:
    if kind in ("left", "right", "up", "down"):
        return MotionSpec(kind, speed=float(rng.uniform(*SPEED_RANGE)))
    if kind == "spin":
        return MotionSpec(kind, speed=float(rng.uniform(*SPIN_RANGE)) * float(rng.choice([-1, 1])))
    if kind == "bounce":
        drift = float(rng.uniform(0.4, 1.2)) * float(rng.choice([-1, 1])) if rng.random() < 0.5 else 0.0
        return MotionSpec(kind, drift=drift, restitution=float(rng.uniform(*RESTITUTION_RANGE)))
    return MotionSpec(kind)


def _place(scene: Scene, rng) -> None:
    """Starting positions: fully in frame, moving objects start on the side they
    move away from; two objects are placed apart when they can be."""
    H, W = scene.height, scene.width
    for i, obj in enumerate(scene.objects):
        r = scene.radius(obj)
        m = obj.motions[0]
        best = None
        for _ in range(20):
            x = float(rng.uniform(r, max(r, W - r)))
            y = float(rng.uniform(r, max(r, H - r)))
            if m.kind == "right":
                x = float(rng.uniform(r, max(r, W * 0.45)))
            elif m.kind == "left":
                x = float(rng.uniform(min(W - r, W * 0.55), W - r))
            elif m.kind == "down":
                y = float(rng.uniform(r, max(r, H * 0.45)))
            elif m.kind == "up":
                y = float(rng.uniform(min(H - r, H * 0.55), H - r))
            elif m.kind == "bounce":
                y = float(rng.uniform(r, max(r, H * 0.4)))
            gap = min((math.hypot(x - o.x, y - o.y) - r - scene.radius(o) for o in scene.objects[:i]), default=1e9)
            if best is None or gap > best[0]:
                best = (gap, x, y)
            if gap > 2:
                break
        _, obj.x, obj.y = best
        obj.angle = float(rng.uniform(0, 360)) if obj.shape != "circle" and m.kind in ("spin", "still") else 0.0


def _occluder_position(scene: Scene, rng) -> float:
    """Put the pole where a horizontally moving object will pass behind it, and never where it
    would hide an object that stays in place (a small square is narrower than the pole at 16:9)."""
    W = scene.width
    half_pole = OCCLUDER_WIDTH_FRACTION * W / 2
    lo, hi = W * 0.3, W * 0.7
    movers = [o for o in scene.objects if o.motions[0].kind in ("left", "right")]
    if movers:
        obj = movers[0]
        travel = obj.motions[0].speed * scene.speed_scale * (scene.num_frames - 1)
        end = obj.x + (travel if obj.motions[0].kind == "right" else -travel)
        a, b = sorted((obj.x, end))
        a, b = max(a + scene.radius(obj), W * 0.2), min(b - scene.radius(obj), W * 0.8)
        if a < b:
            lo, hi = a, b
    stayers = [o for o in scene.objects if o.motions[0].kind not in ("left", "right")]
    x = float(rng.uniform(lo, hi))
    for _ in range(20):
        if all(abs(x - o.x) > half_pole + 0.5 * scene.radius(o) for o in stayers):
            break
        x = float(rng.uniform(W * 0.1, W * 0.9))
    return x


# ----------------------------------------------------------------------------
# Counterfactuals: the same scene with one thing changed
# ----------------------------------------------------------------------------

COUNTERFACTUAL_ATTRIBUTES = ("colour", "shape", "motion", "background")


def counterfactual(scene: Scene, attribute: str, rng: np.random.Generator) -> Optional[Scene]:
    """The scene with one `attribute` changed to another allowed value (of one object, drawn at random where
    there are two; from the first segment on), or None where no other value is allowed (an image's motion, a
    neon or sketch background). Its caption is a hard negative for the original clip: right in every other
    detail. A train-split scene never gets a held-out composition this way."""
    check_choice("attribute", attribute, COUNTERFACTUAL_ATTRIBUTES)
    k = int(rng.integers(len(scene.objects))) if attribute != "background" and len(scene.objects) > 1 else 0
    obj, others = scene.objects[k], [o for i, o in enumerate(scene.objects) if i != k]

    def with_object(changed: SceneObject) -> Scene:
        return replace(scene, objects=[changed if i == k else o for i, o in enumerate(scene.objects)])

    if attribute == "background":
        if scene.style in STYLE_BACKGROUNDS:  # neon and sketch bring their own
            return None
        options = [replace(scene, background=b) for b in SCENE_BACKGROUNDS if b != scene.background
                   and all(colour_allowed(c, b, scene.style) for o in scene.objects for c in o.colours)]
    elif attribute == "colour":
        options = [with_object(replace(obj, colours=[c, *obj.colours[1:]])) for c in COLOURS
                   if c not in obj.colours and colour_allowed(c, scene.background, scene.style)
                   and all(c != o.colours[0] for o in others)]
    elif attribute == "shape":
        options = [with_object(replace(obj, shape=s)) for s in SHAPES
                   if s != obj.shape and all(motion_allowed(m.kind, s) for m in obj.motions)]
    else:
        if scene.num_frames == 1:  # an image has no motion to get wrong
            return None
        options = [with_object(replace(obj, motions=[replace(obj.motions[0], kind=m), *obj.motions[1:]]))
                   for m in MOTIONS if m != obj.motions[0].kind and motion_allowed(m, obj.shape)]
    if scene.split == "train":  # an object's new colour or shape may make a held-out composition
        options = [o for o in options if not o.is_held_out()]
    return options[int(rng.integers(len(options)))] if options else None
