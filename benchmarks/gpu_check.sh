#!/usr/bin/env bash
# GPU readiness check for hf_genrec: pretrain a few hundred steps in bf16, evaluate, train a small reward
# ensemble, post-train with A-SFT, all on generated data, printing the device and the wall time of each
# step; then, with 2+ GPUs, the same pretraining under DDP and FSDP through `accelerate launch`.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]          # default runs/gpu_check; about 5-10 min on one GPU
#   STEPS=100 USERS=2000 bash benchmarks/gpu_check.sh  # shorter
#   ALLOW_CPU=1 STEPS=3 POST_STEPS=2 USERS=60 ITEMS=40 bash benchmarks/gpu_check.sh /tmp/x  # dry run on a CPU
#
# Nothing here is CPU-specific: the same commands run on a CPU box (slowly). A step fails loudly (set -e).
set -euo pipefail

OUT=${1:-runs/gpu_check}
STEPS=${STEPS:-300}
USERS=${USERS:-6000}
ITEMS=${ITEMS:-3700}
POST_STEPS=${POST_STEPS:-100}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"

timed() {  # timed LABEL COMMAND...: run, print the wall time
  local label=$1; shift
  local start
  start=$(date +%s.%N)
  "$@"
  awk -v s="$start" -v e="$(date +%s.%N)" -v l="$label" 'BEGIN { printf "\n== %-28s %7.1f s\n\n", l, e - s }'
}

echo "== environment"
python - <<'PY'
import os, torch, transformers, accelerate
from hf_genrec.trainers import PretrainConfig
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"accelerate {accelerate.__version__}")
print(f"GPUs: {torch.cuda.device_count()}", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
args = PretrainConfig("/tmp/gpu_check_args", bf16=True)
print(f"PretrainConfig(bf16=True): device={args.device}, use_cpu={args.use_cpu}, bf16={args.bf16}")
if os.environ.get("ALLOW_CPU") != "1":
    assert torch.cuda.is_available() and args.device.type == "cuda" and not args.use_cpu, "training would not use the GPU"
PY

cat > "$OUT/recipe.yaml" <<YAML
description: GPU check, HSTU (ML-1M reference size) on generated data, bf16.
model: {hidden_size: 50, num_hidden_layers: 2, num_attention_heads: 1, attention_dim: 50, linear_dim: 50,
        max_seq_len: 200, max_position_embeddings: 211, loss_type: sampled_softmax, num_negatives: 128}
training: {per_device_train_batch_size: 128, per_device_eval_batch_size: 512, learning_rate: 1.0e-3,
           adam_beta2: 0.98, bf16: true, seed: 42, logging_steps: 50, eval_strategy: "no", save_strategy: "no",
           load_best_model_at_end: false}
data: {split: leave-one-out}
YAML

timed "generate + prepare" python - "$OUT" "$USERS" "$ITEMS" <<'PY'
import sys
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
out, users, items = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = generate_synthetic_interactions(num_users=users, num_items=items, mean_events=150, seed=0)
print(prepare_dataset(write_movielens_file(log, f"{out}/raw/ratings.dat"), f"{out}/data", overwrite=True))
PY

timed "pretrain $STEPS steps (bf16)" hf-genrec pretrain --data "$OUT/data" --output "$OUT/pretrain" \
  --recipe "$OUT/recipe.yaml" --max-steps "$STEPS" --overwrite
python -c "import json; m = json.load(open('$OUT/pretrain/metrics.json')); print({k: m[k] for k in ('train_runtime_s', 'num_processes', 'peak_memory_mb')}, 'test', {k: m['test'][k] for k in ('hr@10', 'ndcg@10')})"

timed "evaluate (test)" hf-genrec evaluate --model "$OUT/pretrain" --data "$OUT/data" --output "$OUT/eval.json"

timed "reward ensemble K=2" hf-genrec reward --data "$OUT/data" --model "$OUT/pretrain" --output "$OUT/reward" \
  --ensemble 2 --max-steps "$POST_STEPS" --overwrite

timed "A-SFT $POST_STEPS steps (bf16)" hf-genrec posttrain --recipe recipes/movielens-1m/asft.yaml \
  --data "$OUT/data" --model "$OUT/pretrain" --reward-model "$OUT/reward" --output "$OUT/asft" \
  --max-steps "$POST_STEPS" --overwrite

NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  timed "pretrain DDP x2" accelerate launch --config_file recipes/accelerate/multi_gpu_ddp.yaml \
    --num_processes 2 -m hf_genrec.cli pretrain --data "$OUT/data" --output "$OUT/pretrain_ddp" \
    --recipe "$OUT/recipe.yaml" --max-steps "$STEPS" --overwrite
  timed "pretrain FSDP x2" accelerate launch --config_file recipes/accelerate/fsdp.yaml \
    --num_processes 2 -m hf_genrec.cli pretrain --data "$OUT/data" --output "$OUT/pretrain_fsdp" \
    --recipe "$OUT/recipe.yaml" --max-steps "$STEPS" --overwrite
  timed "A-SFT DDP x2" accelerate launch --config_file recipes/accelerate/multi_gpu_ddp.yaml \
    --num_processes 2 -m hf_genrec.cli posttrain --recipe recipes/movielens-1m/asft.yaml \
    --data "$OUT/data" --model "$OUT/pretrain" --reward-model "$OUT/reward" --output "$OUT/asft_ddp" \
    --max-steps "$POST_STEPS" --overwrite
else
  echo "== one GPU: DDP / FSDP checks skipped"
fi
echo "== GPU check passed; outputs in $OUT"
