"""The commands that ship a saved model: ``serkit export`` (ONNX) and ``serkit serve`` (HTTP).

`export` writes the ONNX files of a model folder through `serkit.inference.export`; `serve` checks
the server limits given on the command line and starts `serkit.serving` (the ``serve`` extra),
saying how to install it when it is missing.
"""

from __future__ import annotations

import argparse

from serkit.commands import CommandError, results_carry_decoding_warnings

__all__ = ["cmd_export", "cmd_serve"]


def cmd_export(args: argparse.Namespace) -> int:
    from serkit.inference.export import export_onnx

    if not args.onnx:
        raise CommandError("choose an export format: --onnx (the only one so far)")
    for path in export_onnx(args.model, encoder=args.encoder, opset=args.opset):
        print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    results_carry_decoding_warnings()
    try:
        from serkit.serving import run
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise CommandError(f"serve needs the serve extra (pip install 'serkit[serve]'): {exc}") from None
    if args.max_upload_mb <= 0 or args.max_concurrency < 1:
        raise CommandError("--max-upload-mb must be positive and --max-concurrency at least 1")
    if min(args.read_timeout, args.header_timeout, args.keep_alive) <= 0 or min(args.max_uploads, args.max_uploads_per_client) < 1:
        raise CommandError("the timeouts must be positive and --max-uploads, --max-uploads-per-client at least 1")
    if args.feature_workers is not None and args.feature_workers < 0:
        raise CommandError("--feature-workers must be 0 or more")
    run(args.model, host=args.host, port=args.port, backend=args.backend,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_concurrency=args.max_concurrency,
        read_timeout_s=args.read_timeout, max_uploads=args.max_uploads, max_uploads_per_client=args.max_uploads_per_client,
        header_timeout_s=args.header_timeout, keep_alive_s=args.keep_alive, feature_workers=args.feature_workers)
    return 0
