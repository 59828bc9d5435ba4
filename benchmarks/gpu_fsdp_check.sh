#!/usr/bin/env bash
# Sharded post-training check on 1 GPU (docs/trl.md, "Sharded post-training"): a tiny DPO (sampled pairs, a
# random reward ensemble) for a few steps through the whole `Trainer` loop under FSDP2 (`recipes/accelerate/fsdp.yaml`)
# and, when deepspeed is importable, DeepSpeed ZeRO-3; each run checks that the trainer is sharded, that the
# reference went through TRL's prepare_fsdp / prepare_deepspeed, and that the saved model loads with changed weights.
# CPUs cannot run it: accelerate gives CPU processes no FSDP/DeepSpeed state (they run DDP instead).
#
#   bash benchmarks/gpu_fsdp_check.sh [OUTPUT_DIR]      # default runs/gpu_fsdp_check; about a minute
set -euo pipefail
OUT=${1:-runs/gpu_fsdp_check}; cd "$(dirname "$0")/.."; mkdir -p "$OUT"
cat > "$OUT/driver.py" <<'PY'
import sys, torch
from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences
from hf_genrec.rewards import RewardEnsemble
from hf_genrec.trainers import DPOConfig, DPOTrainer
out, mode = sys.argv[1], sys.argv[2]
cfg = dict(num_items=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=1, attention_dim=8, linear_dim=8,
           max_seq_len=12, max_position_embeddings=15, num_negatives=8)
log = generate_synthetic_interactions(num_users=48, num_items=30, mean_events=20, seed=3)
rows = split_sequences(build_sequences(log)[0], "leave-one-out")["train"]
torch.manual_seed(0)
model, ensemble = HSTUForNextItemPrediction(HSTUConfig(**cfg)), RewardEnsemble([HSTUForRewardModeling(HSTUConfig(**cfg))] * 1)
initial = {k: v.clone() for k, v in model.state_dict().items()}
args = DPOConfig(out, per_device_train_batch_size=8, max_steps=4, learning_rate=1e-2, logging_steps=1, disable_tqdm=True)
trainer = DPOTrainer(model=model, reward_model=ensemble, args=args, train_dataset=rows)
sharded = trainer.is_fsdp_enabled if mode == "fsdp" else trainer.is_deepspeed_enabled
assert sharded, f"{mode} is not enabled (accelerate chose {trainer.accelerator.distributed_type}): run on a GPU"
print(f"== {mode}: reference is a {type(trainer.ref_model).__name__}, device {trainer.accelerator.device}")
trainer.train()
trainer.save_model(out)
if trainer.accelerator.is_main_process:
    saved = HSTUForNextItemPrediction.from_pretrained(out).state_dict()
    change = max((saved[k].float() - v.float()).abs().max().item() for k, v in initial.items())
    assert change > 0, "the saved weights did not change"
    print(f"== {mode}: trained {trainer.state.global_step} steps, saved model loads, max weight change {change:.3g}")
PY
accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 1 "$OUT/driver.py" "$OUT/fsdp2" fsdp
if python -c "import deepspeed" 2>/dev/null; then
  accelerate launch --num_processes 1 --use_deepspeed --zero_stage 3 --zero3_init_flag false \
    "$OUT/driver.py" "$OUT/zero3" deepspeed
else
  echo "== deepspeed is not importable: ZeRO-3 check skipped (pip install deepspeed)"
fi
