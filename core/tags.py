"""Which of the front-end's MSD tags a clip clearly has: the "sounds like: 90s · alternative rock · guitar"
line of a genre answer.

The front-end scores 50 last.fm tags per 3-s segment (core.frontend.TAGS); a clip's score for a tag is the
mean over its segments. A tag is shown only if `models/tags.json` gives it a threshold, chosen on labelled
audio so that the tag is right at least 80 % of the times it is shown (core.training.tag_thresholds, which
also says how); tags nothing labels (decades, voices, instruments) have none and are never shown. At most
MAX_SHOWN tags, the clearest first: by how far the score is over the threshold in log-odds, a measure that
does not favour the tags whose scores are small (sad, happy and mellow fire at probabilities of 0.004-0.02).
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.frontend import TAGS

log = logging.getLogger(__name__)

ARTEFACT = "tags.json"
KIND = "msd-tag-thresholds"
MAX_SHOWN = 3
DISPLAY = {"Hip-Hop": "hip-hop", "Mellow": "mellow", "rnb": "R&B", "House": "house",
           "Progressive rock": "progressive rock"}
"""last.fm's spellings, as a member would write them."""


@lru_cache(maxsize=4)
def thresholds(models_dir: Path) -> dict[str, float]:
    """Tag -> lowest clip score at which it is shown; empty (no tags shown) without the artefact."""
    path = models_dir / ARTEFACT
    if not path.is_file():
        log.info("no %s: no tags will be shown", path)
        return {}
    doc = json.loads(path.read_text())
    if doc.get("kind") != KIND:
        raise ValueError(f"{path} is not a {KIND} file")
    unknown = set(doc["thresholds"]) - set(TAGS)
    if unknown:
        raise ValueError(f"{path} names tags the front-end does not score: {sorted(unknown)}")
    return {tag: float(t) for tag, t in doc["thresholds"].items()}


def clear_tags(segment_tags: np.ndarray, table: dict[str, float]) -> list[str]:
    """(segments, 50) tag probabilities -> the display names of the tags over their thresholds, clearest
    first, at most MAX_SHOWN."""
    if not len(segment_tags) or not table:
        return []
    scores = np.clip(np.asarray(segment_tags, np.float64).mean(axis=0), 1e-6, 1 - 1e-6)
    logit = np.log(scores / (1 - scores))
    over = [(logit[TAGS.index(tag)] - np.log(max(t, 1e-6) / (1 - min(t, 1 - 1e-6))), tag)
            for tag, t in table.items() if scores[TAGS.index(tag)] >= t]
    return [DISPLAY.get(tag, tag) for _, tag in sorted(over, reverse=True)[:MAX_SHOWN]]
