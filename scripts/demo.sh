#!/usr/bin/env bash
# The main job, fully offline, on a synthetic corpus: synthesise -> prepare -> extract (real
# Whisper tiny.en weights, MFCC, eGeMAPS) -> train the paper's CNN on Whisper frame maps, an SVM
# on Whisper statistics and the handcrafted baselines -> evaluate speaker-independently ->
# report -> predict voices the models never heard with the saved Whisper models.
set -euo pipefail
out=${1:-demo}
serkit=.venv/bin/serkit
recipe=recipes/demo.toml
if [ "$out" != demo ]; then  # the recipe writes under demo/: point it elsewhere
    sets=(--set "corpus.root=$out/corpus/metadata.csv" --set "run.output=$out/runs" --set "run.cache=$out/features")
else
    sets=()
fi
mkdir -p "$out"
echo "== 1. a labelled synthetic speech corpus (clearly synthetic; no download)"
[ -f "$out/corpus/metadata.csv" ] || $serkit synth "$out/corpus" --speakers 6 --per-emotion 8
echo "== 2. its manifest and summary"
$serkit prepare csv "$out/corpus/metadata.csv" -o "$out/manifest.csv"
$serkit info "$out/manifest.csv"
echo "== 3. features, folds, training, evaluation, report (resumable: run again to continue)"
$serkit run "$recipe" "${sets[@]}"
echo "== 4. predict new voices (speakers the models never heard) with the saved Whisper models"
[ -f "$out/unseen/metadata.csv" ] || $serkit synth "$out/unseen" --speakers 2 --per-emotion 1 --seed 99 --speaker-prefix new >/dev/null
echo "-- the paper's CNN on Whisper tiny.en frame maps"
$serkit predict "$out/runs/demo/whisper_cnn/model" "$out/unseen"
echo "-- SVM on Whisper tiny.en statistics"
$serkit predict "$out/runs/demo/whisper_svm/model" "$out/unseen"
echo
echo "demo finished: runs under $out/runs/demo (report.md in each run's report/ folder)"
