"""Post-train a tiny HSTU for 2 steps with several methods, on 1 process or under a distributed launcher.

Used by `tests/distributed/test_posttrain_data_parallel.py`: 2 processes with per-device batch B must give
the weights of 1 process with batch 2B for the deterministic settings (A-SFT with batch-normalised weights,
DPO with every position a context and every item a candidate, CQL with its extra head), and every method
(PPO included, whose value head is used by the loss outside the model's forward) must keep the ranks in
sync:

    torchrun --nproc_per_node 2 --master_port 29512 tests/scripts/ddp_posttrain.py --output OUT --per-device-batch 2

Writes OUT/result.json: per method, the trained weights (rank 0) and the largest difference between ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trainers"))
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model  # noqa: E402

from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences  # noqa: E402

SETTINGS = {
    "asft": {"baseline": "user_mean", "normalize_weights": True, "temperature": 0.5},
    "dpo": {"contexts_per_sequence": None, "num_candidates": 64},
    "cql": {},
    "ppo": {"ppo_epochs": 2},
}


def training_function(args) -> dict:
    torch.set_num_threads(1)
    interactions = generate_synthetic_interactions(num_users=24, num_items=30, mean_events=20, seed=3)
    rows = split_sequences(build_sequences(interactions)[0], "leave-one-out")["train"].select(range(8))
    result = {}
    for method, settings in SETTINGS.items():
        model = tiny_model(seed=1)
        trainer = posttrain_trainer(
            method, os.path.join(args.output, method), rows, model=model, reward_model=FakeRewardEnsemble(),
            per_device_train_batch_size=args.per_device_batch, max_steps=2, optim="sgd", learning_rate=0.5,
            max_grad_norm=0.0, use_cpu=True, **settings,
        )
        trainer.train()
        flat = torch.cat([p.detach().reshape(-1) for p in trainer.policy.parameters()])
        gathered = trainer.accelerator.gather(flat[None])  # (processes, parameters)
        result[method] = {"weights": flat.tolist(), "rank_difference": (gathered - gathered[0]).abs().max().item(),
                          "world_size": trainer.accelerator.num_processes}
    if int(os.environ.get("RANK", "0")) == 0:
        with open(os.path.join(args.output, "result.json"), "w", encoding="utf-8") as f:
            json.dump(result, f)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--per-device-batch", type=int, default=4)
    training_function(parser.parse_args())
    # Tear the gloo group down before the interpreter exits: left to process exit, its threads can abort a rank
    # ("terminate called without an active exception") after all the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
