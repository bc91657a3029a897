"""The ``serkit extract`` command: fill the feature cache of a manifest.

It builds the extractors (one feature configuration, or every extractor of a recipe exactly as
`serkit run` builds them), joins torchrun's process group when started by it so that several
ranks share the work, runs `serkit.features.extract.extract_manifest` for each and reports what
was computed, already cached, or failed (exit status 1 when an utterance failed).
"""

from __future__ import annotations

import argparse
import json
import sys

from serkit.commands import CommandError, parse_option

__all__ = ["cmd_extract"]


def cmd_extract(args: argparse.Namespace) -> int:
    from serkit.data.schema import read_manifest

    from serkit.features.extract import distributed_env

    manifest = read_manifest(args.manifest)
    extractors = _extractors_for(args)
    rank, world, local_rank = distributed_env()
    dist = _init_distributed(world, local_rank)
    status, documents = 0, []
    for extractor in extractors:
        if len(extractors) > 1 and not args.json and rank == 0:
            print(f"== {extractor.name}: {extractor.fingerprint()}", flush=True)
        code, document = _extract_one(args, manifest, extractor, rank, world, dist)
        status, documents = max(status, code), documents + [document]
    if args.json and rank == 0:
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    return status


def _extractors_for(args: argparse.Namespace) -> list:
    """The extractors `serkit extract` fills the cache for: a recipe's (as `serkit run` builds them) or one."""
    from serkit.experiment.runner import is_recipe, recipe_cache, recipe_extractors
    from serkit.features import build_extractor
    from serkit.features.extract import load_feature_config

    if is_recipe(args.features):
        if getattr(args, "cache", None) is None:  # the cache the recipe's runs read
            args.cache = recipe_cache(args.features, args.set)
        return recipe_extractors(args.features, args.set, args.variant)
    if args.variant:
        raise CommandError(f"--variant needs a recipe; {args.features} is not one")
    return [build_extractor(load_feature_config(args.features, [parse_option(o) for o in args.set]))]


def _extract_one(args: argparse.Namespace, manifest, extractor, rank: int, world: int, dist) -> tuple[int, dict]:
    """Fill the cache of one extractor; the exit status and (rank 0) what was done, for --json."""
    from serkit.features.extract import extract_manifest, finish_run

    result = extract_manifest(
        manifest, extractor, args.cache, batch_size=args.batch_size, rank=rank, world_size=world,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if dist is not None:
        dist.barrier()
    if rank != 0:
        return 0, {}
    failed = finish_run(result.cache_dir, extractor)
    document = {**result.to_dict(), "failed_in_cache": len(failed)}
    if not args.json:
        rate = result.computed / result.seconds if result.seconds else 0.0
        print(f"features: {result.cache_dir}")
        scope = f" on rank 0 of {world}" if world > 1 else ""
        print(f"  {result.total} utterances{scope}, {result.already_cached} already cached, "
              f"{result.computed} computed in {result.seconds:.1f} s ({rate:.2f} files/s)")
        if result.by_others:
            print(f"  {result.by_others} done by other processes sharing the cache meanwhile")
    if failed:
        print(f"{len(failed)} utterance(s) failed; see {result.cache_dir / 'errors.csv'}", file=sys.stderr)
        for item in failed[:10]:
            print(f"  {item['utt_id']} ({item['path']}): {item['reason']}", file=sys.stderr)
        return 1, document
    return 0, document


def _init_distributed(world: int, local_rank: int):
    """Join torchrun's process group (gloo on CPU, NCCL on GPUs); None for one process."""
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return dist
