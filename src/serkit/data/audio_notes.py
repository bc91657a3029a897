"""How decoding reports trouble: `AudioError` for unusable input, warnings for what it read anyway.

`AudioError` names the file and the reason; `SilentAudioWarning` (all-zero audio),
`HeaderWarning` (a header that contradicts its data, which was read) and `DecodeWarning` (a
few undecodable packets skipped) are warnings. `notify` issues a decoding warning and also
hands it to an enclosing `collect_notes` block, which is context-local (safe in threads and
asyncio tasks) so that a prediction can carry the notes of its own read; `serkit.data.audio`
re-exports the error and the warnings as part of its public names.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator

__all__ = [
    "AudioError",
    "DecodeWarning",
    "HeaderWarning",
    "SilentAudioWarning",
    "collect_notes",
    "notify",
]


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class SilentAudioWarning(UserWarning):
    """The audio decoded fine but every sample is zero."""


class HeaderWarning(UserWarning):
    """A file's header contradicts its data, and the data was read (e.g. a WAV saying 0 bytes)."""


class DecodeWarning(UserWarning):
    """A compressed stream had a few undecodable packets (skipped) or unreadable trailing bytes."""


#: Warnings about how a file was decoded, for the current thread / task (`collect_notes`).
_NOTES: contextvars.ContextVar[list[tuple[type[Warning], str]] | None] = contextvars.ContextVar(
    "serkit_audio_notes", default=None
)


@contextlib.contextmanager
def collect_notes() -> Iterator[list[tuple[type[Warning], str]]]:
    """Collect the `HeaderWarning` / `DecodeWarning` of reads inside the block, for this thread.

    The warnings are still issued; this also hands them to the caller (as ``(category,
    message)`` pairs), so a prediction can carry them. Context-local, hence safe in threads
    and asyncio tasks, unlike `warnings.catch_warnings`.
    """
    token = _NOTES.set([])
    try:
        yield _NOTES.get()  # type: ignore[misc]
    finally:
        _NOTES.reset(token)


def notify(message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """Issue a decoding warning and record it for an enclosing `collect_notes`."""
    notes = _NOTES.get()
    if notes is not None:
        notes.append((category, message))
    warnings.warn(message, category, stacklevel=stacklevel + 1)

