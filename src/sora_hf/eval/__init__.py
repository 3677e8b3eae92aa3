"""Evaluation: the ShapeWorld analyzer (what a video shows, from its pixels alone)."""

from .analyzer import (BounceFit, ObjectAnalysis, Permanence, Track, VideoAnalysis, analyze, analyze_segments,
                       classify_shape, classify_size, dominant_object, find_objects, fit_bounce, matches)

__all__ = [
    "BounceFit", "ObjectAnalysis", "Permanence", "Track", "VideoAnalysis", "analyze", "analyze_segments",
    "classify_shape", "classify_size", "dominant_object", "find_objects", "fit_bounce", "matches",
]
