"""How far can the ShapeWorld analyzer be trusted? Agreement with ground truth.

    .venv/bin/python bench/analyzer_agreement.py                 # the full bench (1,000 clips)
    .venv/bin/python bench/analyzer_agreement.py --num-clips 90 --style-clips 10 --robust-clips 10  # a smoke run

Renders eval-split clips (seeds from EVAL_SEED_START), analyses their frames
and compares with the scenes they were rendered from. Writes
bench/results/analyzer_agreement.json and prints a table.

The clip plan (clip i, deterministic):
- seed EVAL_SEED_START + i; the sampler draws 1-2 objects, background,
  storyboards (25% of clips with >= 9 frames), occluders (25%; forced on for
  every 4th multi-frame clip so permanence has enough cases);
- frame size cycles 64x64, 112x64, 64x112 (W x H); every 10th clip is drawn at
  the doubled tier (128x128, 224x128, 128x224);
- duration cycles 1, 17, 33 frames; style "none".

Ground truth and scoring, written down because they decide the numbers:
- Storyboard clips are scored on segment 0: the analyzer is called with
  frame_range=segment 0 and compared with each object's segment-0 colour and
  motion. (Segment 1 is scored too, separately, as "segment 1".)
- An object is scored when at least 25% of it can be seen in some frame of the
  range (measured by rendering the scene without it); objects hidden for the
  whole range (a small square parked behind the pole) are counted as
  "unscorable" and reported, not scored.
- Matching is by position only, never by the attributes being scored: the cost
  of pairing a true object with an analysed one is the median, over frames
  where both are visible, of the distance between the true centre and the
  analysed centroid, divided by the true radius; pairs are chosen by the
  Hungarian method and accepted when the cost is <= 1.25. A true object left
  without a partner is "missing" and counts as wrong for every attribute;
  analysed objects left without one are reported as extras.
- Degraded = Gaussian blur sigma 1 px (spatial, per frame) + Gaussian noise
  std 8/255, clipped, passed to the analyzer as float32 in [0, 1].
- Bounce physics: detection = true bounce objects (segment >= 9 frames) whose
  fit is judged physical; false positives = true left/right/up/down objects
  judged physical.
- Permanence: genuine = true objects whose centre comes within (pole half
  width + radius) of the pole; holds = the analyzer reports them occluded with
  permanence intact. Corrupted = the same clips with the object painted out
  from the first frame its side reaches the pole ("vanish"), or recoloured from
  the frame its centre reaches the pole ("recolour"); detected = permanence
  False. At most 120 corrupted clips of each kind.
- Per style and robustness tables: smaller sets (--style-clips, --robust-clips)
  of other seeds, clean only; robustness = style none with a colour cast,
  washed-out colour, heavier blur + noise, or exposure flicker.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from sora_hf.eval import analyze
from sora_hf.shapeworld import (COLOURS, EVAL_SEED_START, MOTIONS, SHAPES, SIZES, STYLES, render, render_scene,
                              sample_scene)
from sora_hf.shapeworld.world import OCCLUDER_WIDTH_FRACTION, MotionSpec, colour_allowed

BASE_SIZES = [(64, 64), (64, 112), (112, 64)]  # (H, W): 1:1, 16:9, 9:16
DURATIONS = [1, 17, 33]
MATCH_GATE = 1.25
MIN_VISIBLE = 0.25
AREA_FACTOR = {"circle": math.pi, "square": 2.0, "triangle": 3 * math.sqrt(3) / 4}


# ----------------------------------------------------------------------------
# Clips and their ground truth
# ----------------------------------------------------------------------------

def plan(i: int, style: str = "none") -> dict:
    """Clip i's sampling arguments (deterministic)."""
    h, w = BASE_SIZES[i % 3]
    if i % 10 == 9:
        h, w = 2 * h, 2 * w
    num_frames = DURATIONS[(i // 3) % 3]
    occluder = True if (num_frames > 1 and i % 4 == 0) else None
    return dict(seed=EVAL_SEED_START + i, split="eval", height=h, width=w, num_frames=num_frames,
                style=style, occluder=occluder)


def degrade(frames: np.ndarray, seed: int) -> np.ndarray:
    """Blur sigma 1 px + noise std 8/255, float32 in [0, 1]."""
    x = ndimage.gaussian_filter(frames.astype(np.float32) / 255.0, sigma=(0, 1, 1, 0))
    x += np.random.default_rng(seed).normal(0, 8 / 255, x.shape).astype(np.float32)
    return np.clip(x, 0, 1)


def without(scene, i: int):
    """The scene with object i parked far outside the frame (a scene needs >= 1 object)."""
    gone = replace(scene.objects[i], x=-1e4, y=-1e4, motions=[MotionSpec("still")] * len(scene.segment_starts))
    return replace(scene, objects=[gone if j == i else o for j, o in enumerate(scene.objects)])


def perturbations() -> dict:
    """Imperfections a generated video has beyond blur and noise (informational table)."""
    def shift(f, rng):  # a colour cast: every channel off by up to 15 levels
        return np.clip(f.astype(np.float32) + rng.uniform(-15, 15, 3), 0, 255).astype(np.uint8)

    def washed(f, rng):  # 20% less saturated
        x = f.astype(np.float32)
        grey = x.mean(-1, keepdims=True)
        return np.clip(grey + 0.8 * (x - grey), 0, 255).astype(np.uint8)

    def smeared(f, rng):  # heavier blur sigma 1.5 px + noise std 10/255
        x = ndimage.gaussian_filter(f.astype(np.float32) / 255.0, sigma=(0, 1.5, 1.5, 0))
        return np.clip(x + rng.normal(0, 10 / 255, x.shape), 0, 1).astype(np.float32)

    def flicker(f, rng):  # exposure changing by up to +-10% from frame to frame
        return np.clip(f.astype(np.float32) * rng.uniform(0.9, 1.1, (len(f), 1, 1, 1)), 0, 255).astype(np.uint8)

    return {"colour cast +-15": shift, "saturation -20%": washed, "blur 1.5 + noise 10": smeared,
            "flicker +-10%": flicker}


def visible_fraction(scene, frames: np.ndarray, i: int, start: int, end: int) -> np.ndarray:
    """(end - start,) fraction of object i that can be seen in each frame."""
    without_i = render(without(scene, i)).frames
    diff = np.abs(frames[start:end].astype(np.int16) - without_i[start:end].astype(np.int16)).sum(-1) > 24
    obj = scene.objects[i]
    return diff.reshape(end - start, -1).sum(1) / (AREA_FACTOR[obj.shape] * scene.radius(obj) ** 2)


def match(scene, tracks, analysis, start: int, end: int) -> dict[int, object]:
    """{true object index: analysed object} by track position only (see module docstring)."""
    if not analysis.objects:
        return {}
    cost = np.full((len(scene.objects), len(analysis.objects)), 1e6)
    for i, (obj, tr) in enumerate(zip(scene.objects, tracks)):
        r = scene.radius(obj)
        for j, a in enumerate(analysis.objects):
            vis = a.track.visible
            if not vis.any():
                continue
            d = np.hypot(tr.x[start:end][vis] - a.track.x[vis], tr.y[start:end][vis] - a.track.y[vis]) / r
            cost[i, j] = float(np.median(d))
    rows, cols = linear_sum_assignment(cost)
    return {int(i): analysis.objects[j] for i, j in zip(rows, cols) if cost[i, j] <= MATCH_GATE}


# ----------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------

class Tally:
    """Ground truth vs prediction pairs per attribute, with confusion matrices."""

    def __init__(self):
        self.pairs = defaultdict(list)  # attribute -> [(truth, prediction)]
        self.extra = 0
        self.unscorable = 0

    def add(self, attribute: str, truth: str, prediction: str):
        self.pairs[attribute].append((truth, prediction))

    def accuracy(self, attribute: str) -> float:
        p = self.pairs[attribute]
        return sum(t == q for t, q in p) / max(len(p), 1)

    def count(self, attribute: str) -> int:
        return len(self.pairs[attribute])

    def confusion(self, attribute: str, labels) -> dict:
        c = Counter(self.pairs[attribute])
        columns = list(labels) + ["missing"]
        return {"labels": columns, "rows": {t: [c[(t, q)] for q in columns] for t in labels}}

    def summary(self) -> dict:
        return {a: {"accuracy": self.accuracy(a), "n": self.count(a)} for a in self.pairs} | {
            "extra_objects": self.extra, "unscorable_objects": self.unscorable}


def score_clip(tally: Tally, scene, tracks, frames, analysis, segment: int, vis_cache: dict):
    start, end = scene.segment_ranges()[segment]
    tally.add("background", scene.background, analysis.background)
    matched = match(scene, tracks, analysis, start, end)
    for i, obj in enumerate(scene.objects):
        key = (i, start, end)
        if key not in vis_cache:
            vis_cache[key] = float(visible_fraction(scene, frames, i, start, end).max())
        if vis_cache[key] < MIN_VISIBLE:
            tally.unscorable += 1
            continue
        a = matched.get(i)
        truth = {"colour": obj.colours[segment], "shape": obj.shape, "size": obj.size,
                 "motion": obj.motions[segment].kind}
        for attribute, t in truth.items():
            tally.add(attribute, t, "missing" if a is None else getattr(a, attribute))
    tally.extra += len(analysis.objects) - len(matched)
    return matched


def passes_pole(scene, track, obj, start: int, end: int) -> bool:
    if scene.occluder_x is None:
        return False
    reach = OCCLUDER_WIDTH_FRACTION * scene.width / 2 + scene.radius(obj)
    return bool((np.abs(track.x[start:end] - scene.occluder_x) < reach).any())


def corrupt(scene, frames, tracks, i: int, start: int, end: int, kind: str):
    """A copy of the clip where object i vanishes at the pole ('vanish') or comes out
    recoloured ('recolour'); None when the clip gives the corruption no room."""
    obj, tr = scene.objects[i], tracks[i]
    half = OCCLUDER_WIDTH_FRACTION * scene.width / 2
    if kind == "vanish":  # from the first frame its side reaches the pole (movers are drawn unrotated)
        extent = {"circle": 1.0, "square": 1 / math.sqrt(2), "triangle": math.sqrt(3) / 2}[obj.shape]
        touching = np.nonzero(np.abs(tr.x[start:end] - scene.occluder_x) < half + extent * scene.radius(obj))[0]
        replacement = without(scene, i)
    else:
        touching = np.nonzero(np.abs(tr.x[start:end] - scene.occluder_x) < half)[0]
        used = {c for o in scene.objects for c in o.colours}
        options = [c for c in COLOURS if c not in used and colour_allowed(c, scene.background, scene.style)]
        recoloured = replace(obj, colours=[options[0]] * len(obj.colours))
        replacement = replace(scene, objects=[recoloured if j == i else o for j, o in enumerate(scene.objects)])
    if not len(touching):
        return None
    t0 = start + int(touching[0])
    if t0 == start or end - t0 < 5:
        return None
    out = frames.copy()
    out[t0:end] = render(replacement).frames[t0:end]
    return out


# ----------------------------------------------------------------------------
# The bench
# ----------------------------------------------------------------------------

def run(num_clips: int, style_clips: int, robust_clips: int, verbose: bool, max_corruptions: int = 120) -> dict:
    t_start, cpu_start = time.time(), time.process_time()
    clean, degraded, segment1 = Tally(), Tally(), Tally()
    by_group = defaultdict(Tally)  # "size HxW" / "frames F" -> clean tally
    bounce = {"detected": 0, "bounce_objects": 0, "false_positive": 0, "linear_objects": 0,
              "detected_degraded": 0}
    perm = {"genuine": 0, "holds": 0, "holds_degraded": 0, "crossed_true": 0, "crossed_found": 0,
            "vanish": 0, "vanish_detected": 0, "vanish_detected_degraded": 0, "recolour": 0, "recolour_detected": 0}
    analyze_time, n_analyses = 0.0, 0
    for c in range(num_clips):
        args = plan(c)
        scene = sample_scene(**args)
        clip = render_scene(scene)
        frames, tracks = clip.frames, clip.tracks
        vis_cache: dict = {}
        start, end = scene.segment_ranges()[0]
        t0 = time.time()
        a_clean = analyze(frames, (start, end))
        noisy = degrade(frames, args["seed"])
        a_deg = analyze(noisy, (start, end))
        analyze_time += time.time() - t0
        n_analyses += 2
        m_clean = score_clip(clean, scene, tracks, frames, a_clean, 0, vis_cache)
        m_deg = score_clip(degraded, scene, tracks, frames, a_deg, 0, vis_cache)
        group_tally = [by_group[f"size {args['width']}x{args['height']}"], by_group[f"frames {args['num_frames']}"],
                       by_group[f"objects {len(scene.objects)}"]]
        for g in group_tally:
            score_clip(g, scene, tracks, frames, a_clean, 0, vis_cache)
        if len(scene.segment_starts) > 1:
            score_clip(segment1, scene, tracks, frames, analyze(frames, scene.segment_ranges()[1]), 1, vis_cache)
        for i, obj in enumerate(scene.objects):
            kind = obj.motions[0].kind
            a, b = m_clean.get(i), m_deg.get(i)
            if kind == "bounce" and end - start >= 9:
                bounce["bounce_objects"] += 1
                bounce["detected"] += bool(a and a.bounce and a.bounce.physical)
                bounce["detected_degraded"] += bool(b and b.bounce and b.bounce.physical)
            elif kind in ("left", "right", "up", "down") and end - start >= 9:
                bounce["linear_objects"] += 1
                bounce["false_positive"] += bool(a and a.bounce and a.bounce.physical)
            if passes_pole(scene, tracks[i], obj, start, end) and vis_cache.get((i, start, end), 0) >= MIN_VISIBLE:
                perm["genuine"] += 1
                perm["holds"] += bool(a and a.permanence and a.permanence.occluded and a.permanence.holds)
                perm["holds_degraded"] += bool(b and b.permanence and b.permanence.occluded and b.permanence.holds)
                side = np.sign(tracks[i].x[start:end] - scene.occluder_x)
                if side[0] != side[-1] and side[0] and side[-1]:
                    perm["crossed_true"] += 1
                    perm["crossed_found"] += bool(a and a.permanence and a.permanence.crossed)
                for corruption in ("vanish", "recolour"):
                    if perm[corruption] >= max_corruptions:
                        continue
                    bad = corrupt(scene, frames, tracks, i, start, end, corruption)
                    if bad is None:
                        continue
                    t0 = time.time()
                    found = [o for o in analyze(bad, (start, end)).objects
                             if o.permanence is not None and o.permanence.holds is False]
                    perm[corruption] += 1
                    perm[f"{corruption}_detected"] += bool(found)
                    if corruption == "vanish":
                        found = [o for o in analyze(degrade(bad, args["seed"] + 1), (start, end)).objects
                                 if o.permanence is not None and o.permanence.holds is False]
                        perm["vanish_detected_degraded"] += bool(found)
                    analyze_time += time.time() - t0
        if verbose:
            for i, obj in enumerate(scene.objects):
                a = m_clean.get(i)
                got = None if a is None else (a.colour, a.shape, a.motion)
                want = (obj.colours[0], obj.shape, obj.motions[0].kind)
                if got != want:
                    print(f"  clip {c} seed {args['seed']} {args['width']}x{args['height']}x{args['num_frames']} "
                          f"range {start}-{end} bg {scene.background} pole {scene.occluder_x is not None}: "
                          f"true {want} got {got}", file=sys.stderr)
        if (c + 1) % 100 == 0:
            print(f"  ... {c + 1}/{num_clips} clips, {time.time() - t_start:.0f} s", file=sys.stderr, flush=True)

    styles = {}
    for style in STYLES:
        tally = Tally()
        for c in range(style_clips):
            args = plan(c, style)
            args["seed"] += 100_000
            scene = sample_scene(**args)
            clip = render_scene(scene)
            start, end = scene.segment_ranges()[0]
            score_clip(tally, scene, clip.tracks, clip.frames, analyze(clip.frames, (start, end)), 0, {})
        styles[style] = tally.summary()

    robust = {}
    for name, perturb in perturbations().items():
        tally = Tally()
        for c in range(robust_clips):
            args = plan(c)
            args["seed"] += 200_000
            scene = sample_scene(**args)
            clip = render_scene(scene)
            start, end = scene.segment_ranges()[0]
            frames = perturb(clip.frames, np.random.default_rng(args["seed"]))
            score_clip(tally, scene, clip.tracks, clip.frames, analyze(frames, (start, end)), 0, {})
        robust[name] = tally.summary()

    return {
        "num_clips": num_clips,
        "style_clips": style_clips,
        "robust_clips": robust_clips,
        "seconds": time.time() - t_start,
        "cpu_seconds": time.process_time() - cpu_start,
        "analyze_ms_per_call": 1000 * analyze_time / max(n_analyses, 1),
        "clean": clean.summary(),
        "degraded": degraded.summary(),
        "segment1": segment1.summary(),
        "groups": {k: {a: by_group[k].accuracy(a) for a in ("colour", "shape", "motion", "size")}
                   | {"n": by_group[k].count("colour")} for k in sorted(by_group)},
        "confusion": {
            cond: {"colour": t.confusion("colour", COLOURS), "shape": t.confusion("shape", SHAPES),
                   "motion": t.confusion("motion", MOTIONS), "size": t.confusion("size", tuple(SIZES))}
            for cond, t in (("clean", clean), ("degraded", degraded))},
        "bounce_physics": bounce | {
            "detection_rate": bounce["detected"] / max(bounce["bounce_objects"], 1),
            "detection_rate_degraded": bounce["detected_degraded"] / max(bounce["bounce_objects"], 1),
            "false_positive_rate": bounce["false_positive"] / max(bounce["linear_objects"], 1)},
        "permanence": perm | {
            "holds_rate": perm["holds"] / max(perm["genuine"], 1),
            "holds_rate_degraded": perm["holds_degraded"] / max(perm["genuine"], 1),
            "crossing_rate": perm["crossed_found"] / max(perm["crossed_true"], 1),
            "vanish_detection_rate": perm["vanish_detected"] / max(perm["vanish"], 1),
            "vanish_detection_rate_degraded": perm["vanish_detected_degraded"] / max(perm["vanish"], 1),
            "recolour_detection_rate": perm["recolour_detected"] / max(perm["recolour"], 1)},
        "styles": styles,
        "robustness": robust,
        "thresholds": {"clean": 0.98, "degraded": 0.95},
        "passed": all(clean.accuracy(a) >= 0.98 and degraded.accuracy(a) >= 0.95 for a in ("colour", "shape", "motion")),
    }


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------

def pct(v: float) -> str:
    return f"{100 * v:6.1f}%"


def print_report(r: dict) -> None:
    print(f"\nShapeWorld analyzer agreement: {r['num_clips']} clips (style none); {r['seconds']:.0f} s wall, "
          f"{r['cpu_seconds']:.0f} s CPU, {r['analyze_ms_per_call']:.0f} ms wall per analyze call\n")
    print(f"{'attribute':<12}{'clean':>9}{'degraded':>10}{'segment 1':>11}   n (clean)  required")
    for a in ("colour", "shape", "motion", "size", "background"):
        req = ">= 98% / 95%" if a in ("colour", "shape", "motion") else "(reported)"
        seg = pct(r["segment1"][a]["accuracy"]) if a in r["segment1"] else "    -  "
        print(f"{a:<12}{pct(r['clean'][a]['accuracy']):>9}{pct(r['degraded'][a]['accuracy']):>10}{seg:>11}"
              f"   {r['clean'][a]['n']:>9}  {req}")
    print(f"objects: extra (false) clean {r['clean']['extra_objects']}, degraded {r['degraded']['extra_objects']}; "
          f"unscorable (< {MIN_VISIBLE:.0%} visible) {r['clean']['unscorable_objects']}")
    print(f"verdict: {'PASS' if r['passed'] else 'FAIL'}\n")

    print(f"{'group':<16}{'colour':>9}{'shape':>9}{'motion':>9}{'size':>9}{'n':>7}")
    for k, g in r["groups"].items():
        print(f"{k:<16}{pct(g['colour']):>9}{pct(g['shape']):>9}{pct(g['motion']):>9}{pct(g['size']):>9}{g['n']:>7}")

    for cond in ("clean", "degraded"):
        for attribute in ("colour", "shape", "motion", "size"):
            cm = r["confusion"][cond][attribute]
            labels = cm["labels"]
            width = max(8, max(len(x) for x in labels) + 1)
            print(f"\n{cond} {attribute} confusion (rows: truth, columns: analyzer)")
            print(" " * width + "".join(f"{x[:7]:>8}" for x in labels))
            for t, row in cm["rows"].items():
                print(f"{t:<{width}}" + "".join(f"{v:>8}" for v in row))

    b = r["bounce_physics"]
    print(f"\nbounce physics: {pct(b['detection_rate'])} of {b['bounce_objects']} bouncing objects judged physical "
          f"(degraded {pct(b['detection_rate_degraded'])}); false positives {pct(b['false_positive_rate'])} "
          f"of {b['linear_objects']} constant-velocity objects")
    p = r["permanence"]
    print(f"permanence: genuine pole passages {p['genuine']}: holds {pct(p['holds_rate'])} "
          f"(degraded {pct(p['holds_rate_degraded'])}); crossings found {pct(p['crossing_rate'])} of {p['crossed_true']}")
    print(f"            corrupted: vanish detected {pct(p['vanish_detection_rate'])} of {p['vanish']} "
          f"(degraded {pct(p['vanish_detection_rate_degraded'])}); recolour detected "
          f"{pct(p['recolour_detection_rate'])} of {p['recolour']}")

    _accuracy_table(f"per style ({r['style_clips']} clips each, clean):", "style", 13, r["styles"])
    _accuracy_table(f"robustness, style none ({r['robust_clips']} clips each):", "imperfection", 22, r["robustness"])



def _accuracy_table(title: str, header: str, width: int, groups: dict) -> None:
    print(f"\n{title}")
    print(f"{header:<{width}}{'colour':>9}{'shape':>9}{'motion':>9}{'size':>9}{'bg':>9}{'extra':>7}{'n':>6}")
    for name, s in groups.items():
        print(f"{name:<{width}}" + "".join(f"{pct(s[a]['accuracy']):>9}" for a in ("colour", "shape", "motion",
                                                                                   "size", "background"))
              + f"{s['extra_objects']:>7}{s['colour']['n']:>6}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=1000, help="style-none clips (default 1000)")
    parser.add_argument("--style-clips", type=int, default=60, help="clips per style for the per-style table")
    parser.add_argument("--robust-clips", type=int, default=60, help="clips per extra imperfection (colour cast, ...)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "analyzer_agreement.json"))
    parser.add_argument("--verbose", action="store_true", help="print every disagreement (clean)")
    args = parser.parse_args(argv)
    if args.num_clips < 1 or args.style_clips < 0 or args.robust_clips < 0:
        parser.error("--num-clips must be >= 1, --style-clips and --robust-clips >= 0")
    results = run(args.num_clips, args.style_clips, args.robust_clips, args.verbose)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print_report(results)
    print(f"\nwrote {args.out}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
