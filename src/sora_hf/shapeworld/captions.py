"""Captions for ShapeWorld scenes: what a person types (`short`, <= 8 words) and
what a re-captioning model writes (`long`), per clip and per storyboard segment.

Synonyms are drawn from a generator seeded by the scene's seed, so a clip's
captions are deterministic but the text encoder sees varied words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import SHAPE_WORDS, STYLE_TRIGGERS, Scene, SceneObject

MAX_SHORT_WORDS = 8

SHORT_MOTION = {
    "left": ("moving left", "going left", "sliding left"),
    "right": ("moving right", "going right", "sliding right"),
    "up": ("rising", "moving up", "floating up"),
    "down": ("sinking", "moving down", "sliding down"),
    "bounce": ("bouncing", "hopping"),
    "still": ("resting", "sitting still", "at rest"),
    "spin": ("spinning", "rotating", "twirling"),
}
COMPACT_MOTION = {"left": "leftward", "right": "rightward", "up": "rising", "down": "sinking",
                  "bounce": "bouncing", "still": "resting", "spin": "spinning"}
LONG_MOTION = {
    "left": ("moves steadily from right to left", "slides toward the left edge of the frame"),
    "right": ("moves steadily from left to right", "glides toward the right edge of the frame"),
    "up": ("rises steadily toward the top of the frame", "moves straight upward"),
    "down": ("moves steadily downward", "sinks toward the bottom of the frame"),
    "bounce": ("bounces on the floor", "falls and bounces off the floor"),
    "still": ("stays perfectly still", "rests without moving"),
    "spin": ("spins in place", "rotates in place around its centre"),
}
STYLE_SENTENCES = {
    "none": "",
    "stop-motion": "It is animated in a stop-motion style, each pose held for two frames with a slight jitter.",
    "neon": "It is drawn in a neon glow style: glowing outlines on a black background.",
    "pixel": "It is drawn in a pixel art style with chunky square blocks and a limited palette.",
    "sketch": "It is drawn in a pencil sketch style: coloured pencil outlines and hatching on paper.",
}


@dataclass
class SegmentCaption:
    short: str
    long: str
    start: int  # first frame
    end: int  # one past the last frame


@dataclass
class Captions:
    short: str
    long: str
    segments: list[SegmentCaption]  # one per storyboard segment (one for a plain clip)


def caption(scene: Scene) -> Captions:
    rng = np.random.default_rng([scene.seed or 0, 1])
    words = {id(o): str(rng.choice(SHAPE_WORDS[o.shape])) for o in scene.objects}
    segments = [
        SegmentCaption(_short(scene, words, s, rng), _long(scene, words, s, rng), start, end)
        for s, (start, end) in enumerate(scene.segment_ranges())
    ]
    if len(segments) == 1:
        return Captions(segments[0].short, segments[0].long, segments)
    short, change = _storyboard_change(scene, words, rng)
    first = segments[0].long.split(" The camera")[0]
    long = _with_style(f"{first} Then {change}. The camera is static.", scene.style)
    return Captions(short, long, segments)


# ----------------------------------------------------------------------------

def _short(scene: Scene, words, s: int, rng) -> str:
    image = scene.num_frames == 1

    def phrase(o: SceneObject, article: bool, motion: bool) -> str:
        text = f"{o.colours[s]} {words[id(o)]}"
        if motion and not image:
            text += " " + str(rng.choice(SHORT_MOTION[o.motions[s].kind]))
        return _a(text) if article else text

    trigger = STYLE_TRIGGERS[scene.style]
    tail = f", {trigger}" if trigger else ""
    bg = f" on {scene.background}"
    if len(scene.objects) == 1:
        o = scene.objects[0]
        candidates = [phrase(o, True, True) + bg + tail, phrase(o, True, True) + tail, phrase(o, False, True) + tail]
    else:
        a, b = scene.objects
        candidates = [
            f"{phrase(a, True, True)} and {phrase(b, True, True)}{tail}",
            f"{phrase(a, False, True)}, {phrase(b, False, True)}{tail}",
            f"{phrase(a, False, True)} and {phrase(b, False, False)}{tail}",
            f"{phrase(a, False, False)} and {phrase(b, False, False)}{tail}",
        ]
    return _fit(candidates)


def _fit(candidates: list[str]) -> str:
    """The most detailed candidate that a person would type (<= MAX_SHORT_WORDS words)."""
    return next(c for c in candidates if len(c.split()) <= MAX_SHORT_WORDS)


def _long(scene: Scene, words, s: int, rng) -> str:
    clauses = []
    for i, o in enumerate(scene.objects):
        subject, verb, tail = _describe(scene, o, words[id(o)], s, rng)
        where = f" on a {scene.background} background" if i == 0 else ""
        clauses.append(f"{subject} {verb}{where}{tail}")
    text = (" and " if scene.num_frames == 1 else " while ").join(clauses)
    text = text[0].upper() + text[1:] + "."
    if scene.occluder_x is not None:
        text += " A gray pole stands in front of the scene; whatever passes behind it comes out the other side."
    text += " A still image." if scene.num_frames == 1 else " The camera is static."
    return _with_style(text, scene.style)


def _describe(scene: Scene, o: SceneObject, word: str, s: int, rng) -> tuple[str, str, str]:
    """(subject, verb phrase, trailing clause) of one object in segment s."""
    subject = _a(f"{o.size} {o.colours[s]} {word}")
    where = _region(scene, o)
    if scene.num_frames == 1:
        return subject, f"sits in the {where} of the frame", ""
    m = o.motions[s]
    verb, tail = str(rng.choice(LONG_MOTION[m.kind])), ""
    if m.kind == "bounce":
        if m.drift:
            verb += f" while drifting to the {'right' if m.drift > 0 else 'left'}"
        tail = ", each bounce a little lower than the last"
    elif m.kind == "spin":
        verb += f" {'clockwise' if m.speed > 0 else 'counter-clockwise'}"
    elif m.kind == "still":
        verb += f" in the {where} of the frame"
    return subject, verb, tail


def _a(noun_phrase: str) -> str:
    return ("an " if noun_phrase[0] in "aeiou" else "a ") + noun_phrase


def _region(scene: Scene, o: SceneObject) -> str:
    col = ("left", "center", "right")[min(2, int(3 * o.x / scene.width))]
    row = ("top", "middle", "bottom")[min(2, int(3 * o.y / scene.height))]
    return "center" if (row, col) == ("middle", "center") else f"{row} {col}"


def _storyboard_change(scene: Scene, words, rng) -> tuple[str, str]:
    """(short caption of the whole storyboard, long clause describing the change)."""
    changed = next(o for o in scene.objects if o.colours[0] != o.colours[1] or o.motions[0] != o.motions[1])
    w = words[id(changed)]
    if changed.colours[0] != changed.colours[1]:
        short = _a(f"{changed.colours[0]} {w} turns {changed.colours[1]}")
        long = f"the {w} turns {changed.colours[1]}"
    else:
        m0, m1 = changed.motions[0].kind, changed.motions[1].kind
        short = _a(f"{changed.colours[0]} {w} {SHORT_MOTION[m0][0]}, then {SHORT_MOTION[m1][0]}")
        long = f"the {changed.colours[0]} {w} {LONG_MOTION[m1][0]}"
    trigger = STYLE_TRIGGERS[scene.style]
    if trigger:
        compact = short.split(" ", 1)[1]  # without the article
        if changed.colours[0] == changed.colours[1]:
            compact = f"{changed.colours[0]} {w} {COMPACT_MOTION[m0]} then {COMPACT_MOTION[m1]}"
        short = _fit([f"{short}, {trigger}", f"{short.split(' ', 1)[1]}, {trigger}", f"{compact}, {trigger}"])
    return short, long


def _with_style(text: str, style: str) -> str:
    sentence = STYLE_SENTENCES[style]
    return f"{text} {sentence}" if sentence else text
