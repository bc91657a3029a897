"""The handlers of the ``serkit`` sub-commands, one module per stage, and what they share.

`serkit.cli` builds the argument parser and runs the chosen handler; each handler here turns the
parsed arguments into calls of the library (`data` for prepare, info, synth and download,
`extract`, `experiment` for run, report and compare, `predict`, `serve` for export and serve)
and prints the outcome. This file holds the pieces several handlers use: `CommandError`, the
user-facing failure that `serkit.cli` prints as one line, ``key=value`` options, and muting
the decoding warnings that each prediction already carries. `serkit.cli` imports a handler's
module only when its command runs, and each handler imports the library it needs inside itself,
so a cold `serkit predict` loads nothing for the other commands.
"""

from __future__ import annotations

__all__ = ["CommandError", "parse_option", "results_carry_decoding_warnings"]


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value); the value is read as `serkit.experiment.config.parse_value` reads ``--set``
    values (TOML syntax: numbers, booleans, lists, quoted strings; a bare word is a string)."""
    from serkit.experiment.config import parse_value

    if "=" not in text:
        raise CommandError(f"option {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    return key.strip().replace("-", "_"), parse_value(raw.strip())


def results_carry_decoding_warnings() -> None:
    """Do not also print decoding warnings as Python warnings: each result carries them (`warnings`)."""
    import warnings

    from serkit.data.audio import DecodeWarning, HeaderWarning

    for category in (HeaderWarning, DecodeWarning):
        warnings.filterwarnings("ignore", category=category)

