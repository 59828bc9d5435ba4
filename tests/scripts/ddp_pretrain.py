"""Pretrain a tiny HSTU for a few steps on generated data, on 1 process or under a distributed launcher.

Used by `tests/distributed/test_data_parallel.py` to check that 2 processes with per-device batch B give
the same weights as 1 process with batch 2B, and that evaluation ranks every user, not one shard:

    python tests/scripts/ddp_pretrain.py --output OUT --per-device-batch 8
    torchrun --nproc_per_node 2 --master_port 29512 tests/scripts/ddp_pretrain.py --output OUT --per-device-batch 4

Everything random is switched off so the two runs can agree to float tolerance: dropout 0, full softmax
(no sampled negatives), a fixed seed for the initial weights, and the same global batch order (the
length-bucketed sampler orders `per_device_batch x accumulation x processes` rows per step, and
Accelerate hands consecutive per-device batches of that order to consecutive ranks).

Writes OUT/result.json (world size, ranking metrics before and after training, training losses) and the
trained model to OUT/model (rank 0 only).
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from transformers import set_seed

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import build_sequences, generate_synthetic_interactions, leave_one_out_split
from hf_genrec.trainers import PretrainConfig, PretrainTrainer

# 64 training rows = 8 full steps of 8 rows (a short last batch would be padded with repeated rows on 2
# ranks, as DistributedSampler does); 64 validation rows are not a multiple of 2 ranks x 5, so the ranks
# get uneven evaluation shards and `gather_for_metrics` must drop the repeats.
NUM_USERS = 64
NUM_ITEMS = 50
MAX_SEQ_LEN = 20  # histories are 18-60 events, so windows (and supervised positions per row) differ


def get_splits():
    """Tiny leave-one-out splits of the embedded synthetic log (deterministic)."""
    interactions = generate_synthetic_interactions(num_users=NUM_USERS, num_items=NUM_ITEMS, mean_events=25, seed=7)
    sequences, vocabulary = build_sequences(interactions)
    return leave_one_out_split(sequences), vocabulary


def training_function(args: argparse.Namespace) -> dict:
    splits, vocabulary = get_splits()
    # Seed before building the model so the seed also fixes its initial weights on every rank.
    set_seed(0)
    config = HSTUConfig(
        num_items=vocabulary.num_items, hidden_size=16, num_attention_heads=2, attention_dim=8, linear_dim=8,
        max_seq_len=MAX_SEQ_LEN, max_position_embeddings=MAX_SEQ_LEN + 1, input_dropout=0.0, linear_dropout=0.0,
        loss_type="full_softmax",
    )
    model = HSTUForNextItemPrediction(config)
    training_args = PretrainConfig(
        output_dir=os.path.join(args.output, "checkpoints"),
        per_device_train_batch_size=args.per_device_batch,
        gradient_accumulation_steps=args.accumulation,
        per_device_eval_batch_size=5,
        max_steps=args.steps,  # 10 steps of 8 rows: the run crosses an epoch boundary
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=1,
        bucket_by_length=True,
        bucket_batches=2,
        seed=0,
        use_cpu=True,
        # Every parameter reaches the next-item loss, so DDP needs no unused-parameter search.
        ddp_find_unused_parameters=False,
        disable_tqdm=True,
        report_to="none",
    )
    trainer = PretrainTrainer(
        model=model, args=training_args, train_dataset=splits["train"], eval_dataset=splits["validation"],
        processing_class=vocabulary,
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    result = {
        "world_size": trainer.args.world_size,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "before": before,
        "after": after,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }
    if trainer.is_world_process_zero():
        trainer.save_model(os.path.join(args.output, "model"))
        with open(os.path.join(args.output, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="Directory for result.json and the model.")
    parser.add_argument("--per-device-batch", type=int, default=8, help="Training rows per process and step.")
    parser.add_argument("--accumulation", type=int, default=1, help="Gradient accumulation steps.")
    parser.add_argument("--steps", type=int, default=10, help="Optimiser steps.")
    args = parser.parse_args()
    torch.set_num_threads(1)  # two ranks on a 2-core machine
    training_function(args)
    if torch.distributed.is_initialized():  # see ddp_posttrain.py: tear the group down before exit
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
