"""The ``serkit predict`` command: emotions of audio files with a saved model.

It gathers the inputs (files as given, folders searched for audio, what is left out reported
with its reason), loads the model with `serkit.inference.predictor.Predictor`, normalises by a
known or enrolled speaker when asked, and writes the predictions as a table, JSON or CSV. It runs
on every cold start of the console script, so it imports the predictor and nothing else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from serkit.commands import CommandError, results_carry_decoding_warnings

__all__ = ["cmd_predict"]


def _audio_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files as given; directories searched recursively for audio files (a missing path stays, to be reported).

    Returns:
        ``(files, left_out)``: what to predict, and the audio-looking files found in
        directories that are not used (unknown extension, Git LFS pointer), as
        ``{"path", "reason"}``.
    """
    from serkit.data.audio import display_name

    files: list[Path] = []
    left_out: list[dict[str, str]] = []
    for path in paths:
        if path.is_dir():
            from serkit.data.datasets._common import scan_audio  # imports pandas: only for folders

            found, skipped = scan_audio(path)
            if not found and not skipped:
                raise CommandError(f"{display_name(path)}: no audio files found in this directory")
            files.extend(found)
            left_out.extend(skipped)
        else:
            files.append(path)
    return files, left_out


def _printable(text: str) -> str:
    """`text` with file-name bytes that are not UTF-8 shown as ``\\xe9``, so it can be printed and saved."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _speaker_for(predictor, args: argparse.Namespace) -> str | None:
    """The speaker whose statistics normalise the inputs (``--speaker`` / ``--enroll``), if any."""
    if not (args.enroll or args.speaker):
        return None
    if predictor.transform is None:
        raise CommandError(f"{args.model}: --speaker/--enroll need a model trained with speaker_norm; this one has none")
    if args.enroll:
        enroll, left_out = _audio_inputs(args.enroll)
        if left_out or not enroll:
            _report_left_out(left_out)
            raise CommandError("--enroll: every enrolment recording must be readable audio")
        predictor.enroll(args.speaker or "enrolled", enroll)  # an unreadable one: AudioError, named
        return args.speaker or "enrolled"
    if args.speaker not in predictor.known_speakers():
        raise CommandError(f"--speaker {args.speaker!r}: the model has no statistics for this speaker; "
                           f"known: {predictor.known_speakers()[:10]} (or give --enroll FILES)")
    return args.speaker


def cmd_predict(args: argparse.Namespace) -> int:
    from serkit.inference.formatting import format_predictions
    from serkit.inference.predictor import Predictor

    results_carry_decoding_warnings()

    files, left_out = _audio_inputs(args.inputs)
    if not files:
        _report_left_out(left_out)
        return 1
    if args.max_duration is not None and not args.max_duration > 0:
        raise CommandError("--max-duration must be positive")
    predictor = Predictor.load(args.model, backend=args.backend, window=args.window, hop=args.hop)
    if args.max_duration is not None:  # the reading limit only: the features' own spec is unchanged
        import dataclasses

        spec = predictor.audio_spec
        predictor.audio_spec = dataclasses.replace(
            spec, max_duration=args.max_duration, min_duration=min(spec.min_duration, args.max_duration / 2)
        )
    speaker = _speaker_for(predictor, args)
    progress = len(files) >= 8 and not args.no_progress and sys.stderr.isatty()
    predictions = predictor.predict_files(files, segments=args.segments, progress=progress, speaker=speaker)
    for prediction in predictions:  # names that are not UTF-8 (surrogate escapes) shown as \xe9
        prediction.source = _printable(prediction.source)
    info = {"model": str(args.model), "backend": predictor.backend}
    text = _printable(format_predictions(predictions, predictor.labels, args.format, segments=args.segments, info=info))
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} file(s) could not be predicted:", file=sys.stderr)
        for p in failed[:20]:
            print(f"  {_printable(p.error)}", file=sys.stderr)
    _report_left_out(left_out)
    return 1 if failed or left_out else 0


def _report_left_out(left_out: list[dict[str, str]]) -> None:
    """Print the audio-looking files of the input folders that were not predicted, with reasons."""
    if not left_out:
        return
    print(f"{len(left_out)} audio-looking file(s) in the folders were not predicted:", file=sys.stderr)
    for item in left_out[:20]:
        print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
    if len(left_out) > 20:
        print(f"  ... and {len(left_out) - 20} more", file=sys.stderr)
