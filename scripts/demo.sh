#!/usr/bin/env bash
# The main job, fully offline: a synthetic corpus -> manifest -> summary -> cached features.
# Later stages (train, evaluate, report, predict) join as they land.
set -euo pipefail
out=${1:-demo}
serkit=.venv/bin/serkit
mkdir -p "$out"
echo "== 1. synthesise a labelled speech-like corpus (clearly synthetic)"
$serkit synth "$out/corpus" --speakers 6 --per-emotion 8
echo "== 2. prepare its manifest"
$serkit prepare csv "$out/corpus/metadata.csv" -o "$out/manifest.csv"
echo "== 3. summary"
$serkit info "$out/manifest.csv"
echo "== 4. features into the cache (log-mel and eGeMAPS; resumable)"
$serkit extract "$out/manifest.csv" --features logmel --cache "$out/features"
$serkit extract "$out/manifest.csv" --features opensmile --cache "$out/features"
echo "demo finished: manifest $out/manifest.csv, features under $out/features"
