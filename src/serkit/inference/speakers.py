"""Which speaker statistics normalise a prediction, for a model saved with ``speaker_norm``.

Such a model (`serkit.models.transforms.SpeakerNorm`) normalises each input's features by the
statistics of its speaker: a training speaker's (stored in the model) or one added with
`Predictor.enroll` (kept in ``Predictor.enrolled``). An input with no speaker, or one the model
does not know, is normalised with the training rows' global statistics instead: `statistics_for`
logs that once per name, and `speaker_findings` adds a ``no_speaker_statistics`` finding to each
such prediction. These functions read the transform and the enrolled statistics they are given;
the `Predictor` holds both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from serkit.data.quality import QualityWarning

__all__ = ["known_speakers", "speaker_findings", "statistics_for"]

logger = logging.getLogger(__name__)


def statistics_for(
    transform: Any, enrolled: dict[str, Any], warned: set[str | None], speakers: Sequence[str | None]
) -> dict[str, Any]:
    """Statistics of each named speaker; unknown ones get the global statistics (warned once).

    Args:
        transform: The model's `SpeakerNorm`.
        enrolled: Speaker -> statistics added by enrolment.
        warned: Speakers already warned about; names warned about now are added.
        speakers: The speaker of each input (None: not given).

    Returns:
        Speaker name (``""`` for None) -> the statistics that normalise its inputs.
    """
    known = {**transform.speakers_, **enrolled}
    chosen: dict[str, Any] = {}
    for speaker in set(speakers):
        stats = known.get(speaker) if speaker else None
        if stats is None:
            if speaker not in warned:
                warned.add(speaker)
                who = f"speaker {speaker!r} is not known" if speaker else "no speaker given"
                logger.warning("%s: normalising with the training rows' global statistics; "
                               "enroll the speaker for better predictions", who)
            stats = transform.global_
        chosen[speaker or ""] = stats
    return chosen


def speaker_findings(transform: Any, enrolled: dict[str, Any], speaker: str | None) -> list[QualityWarning]:
    """A ``no_speaker_statistics`` finding when a speaker_norm model fell back to global statistics."""
    if transform is None or (speaker and (speaker in enrolled or speaker in transform.speakers_)):
        return []
    who = f"speaker {speaker!r} is not known" if speaker else "no speaker was given"
    return [QualityWarning("no_speaker_statistics", f"{who}: normalised with the training speakers' global "
                           "statistics; enrol the speaker (a few recordings) for better predictions")]


def known_speakers(transform: Any, enrolled: dict[str, Any]) -> list[str]:
    """Speakers whose statistics a model can use (training speakers and enrolled ones); none without a transform."""
    if transform is None:
        return []
    return sorted({*transform.speakers_, *enrolled})
