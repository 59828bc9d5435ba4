"""Post-training under sharding: the frozen models follow the trainer's distributed setup (`prepare_frozen_model`,
TRL's `prepare_deepspeed` / `prepare_fsdp`), the policy's item scores come out of the model's forward
(`logits_mask`), and a DPO step on a policy and reference sharded with FSDP2 (`fully_shard`, 2 CPU processes on
gloo) equals the same step on one process.

Accelerate 1.16 runs no FSDP on CPU (`accelerate launch --cpu --use_fsdp` is refused, and an FSDP config with
`use_cpu: true` gives `DistributedType.MULTI_CPU`, i.e. DDP), so the 2-process check shards with torch's own
`fully_shard` around the trainer's `compute_loss`; `benchmarks/gpu_fsdp_check.sh` runs the whole `Trainer` loop on
a GPU. Run as a script (`torchrun --nproc_per_node 2 THIS --worker OUT`), this file is that 2-process worker.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model  # noqa: E402

from hf_genrec import HSTUForNextItemPrediction  # noqa: E402
from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences  # noqa: E402
from hf_genrec.trainers import policy as policy_module  # noqa: E402

ROWS = 8  # training rows of the step (4 per process under 2 processes)
LEARNING_RATE = 0.5
# Deterministic DPO: every supervised position is a context and every item a candidate.
DPO_SETTINGS = {"contexts_per_sequence": None, "num_candidates": 64, "use_cpu": True}
LAUNCH_TIMEOUT_S = 50


def training_rows():
    interactions = generate_synthetic_interactions(num_users=24, num_items=30, mean_events=20, seed=3)
    return split_sequences(build_sequences(interactions)[0], "leave-one-out")["train"].select(range(ROWS))


def sgd_step(trainer, rows) -> float:
    """One DPO step through `trainer.compute_loss` (the reference is queried in it) and a plain SGD update."""
    model = trainer.model
    model.train()
    batch = trainer.data_collator([rows[i] for i in range(len(rows))])
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= LEARNING_RATE * parameter.grad
    return loss.item()


# ---------------------------------------------------------------------------------------- unit tests
def fake_trainer(deepspeed: bool = False, fsdp: bool = False):
    return SimpleNamespace(is_deepspeed_enabled=deepspeed, is_fsdp_enabled=fsdp,
                           accelerator=SimpleNamespace(device=torch.device("cpu")))


@pytest.mark.parametrize("deepspeed, fsdp, expected", [(True, False, "deepspeed"), (False, True, "fsdp")])
def test_prepare_frozen_model_uses_trl_under_sharding(monkeypatch, deepspeed, fsdp, expected):
    calls = []
    monkeypatch.setattr(policy_module, "prepare_deepspeed", lambda m, acc: calls.append(("deepspeed", m, acc)) or m)
    monkeypatch.setattr(policy_module, "prepare_fsdp", lambda m, acc: calls.append(("fsdp", m, acc)) or m)
    model, trainer = tiny_model(), fake_trainer(deepspeed, fsdp)
    assert policy_module.prepare_frozen_model(model, trainer) is model
    assert calls == [(expected, model, trainer.accelerator)]


def test_prepare_frozen_model_moves_to_the_device_otherwise(monkeypatch):
    monkeypatch.setattr(policy_module, "prepare_fsdp", lambda m, acc: pytest.fail("FSDP path taken"))
    monkeypatch.setattr(policy_module, "prepare_deepspeed", lambda m, acc: pytest.fail("DeepSpeed path taken"))
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = policy_module.prepare_frozen_model(model, fake_trainer())
    assert prepared is model and all(torch.equal(before[k], v) for k, v in prepared.state_dict().items())


def test_trainer_prepares_its_reference_with_the_helper(monkeypatch, tmp_path):
    prepared = []
    original = policy_module.prepare_frozen_model
    monkeypatch.setattr(policy_module, "prepare_frozen_model", lambda m, t: prepared.append(m) or original(m, t))
    trainer = posttrain_trainer("dpo", tmp_path, training_rows(), reward_model=FakeRewardEnsemble(), use_cpu=True)
    assert prepared == [trainer.ref_model] and trainer.ref_model is not trainer.model


def test_forward_scores_the_catalogue_at_the_masked_positions():
    model = tiny_model(seed=2).eval()
    item_ids = torch.randint(1, 31, (3, 7))
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, 2] = mask[0, 6] = mask[2, 4] = True
    with torch.no_grad():
        out = model(item_ids=item_ids, logits_mask=mask)
        expected = model.item_logits(out.user_embeddings[mask])  # (3, V + 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(item_ids=item_ids, logits_mask=mask)
        cosines = model(item_ids=item_ids, logits_mask=mask, logits_temperature=1.0).logits
    assert out.logits.shape == (3, 31) and torch.equal(out.logits, expected)
    assert out_bf16.logits.dtype == torch.float32  # scored with autocast off
    assert torch.equal(cosines[:, 1:], (out.user_embeddings[mask] @ model.normalized_item_embeddings().T)[:, 1:])
    with pytest.raises(ValueError, match="output_logits"):
        model(item_ids=item_ids, logits_mask=mask, output_logits=True)


# ----------------------------------------------------------------------------------- 2 processes, FSDP2
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dpo_step_under_fsdp2_on_two_cpu_processes(tmp_path):
    """2 gloo processes, policy and reference sharded with FSDP2 (the reference by TRL's `prepare_fsdp` through
    `prepare_frozen_model`), 4 rows each = 1 unsharded process with the 8 rows; the saved model loads."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), __file__, "--worker", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun did not finish in {LAUNCH_TIMEOUT_S} s:\n{(error.stderr or '')[-3000:]}")
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["item_table"] == "DTensor" and result["reference_item_table"] == "DTensor"

    rows = training_rows()
    trainer = posttrain_trainer("dpo", tmp_path / "single", rows, model=tiny_model(seed=1),
                                reward_model=FakeRewardEnsemble(), per_device_train_batch_size=ROWS, **DPO_SETTINGS)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss = sgd_step(trainer, rows)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)

    sharded = HSTUForNextItemPrediction.from_pretrained(tmp_path / "model")
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(sharded.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert max((sharded.state_dict()[k] - v).abs().max().item() for k, v in initial.items()) > 1e-3  # it trained


def fsdp_worker(output: str) -> None:
    """One rank of `test_dpo_step_under_fsdp2_on_two_cpu_processes` (under `torchrun --nproc_per_node 2`)."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    rows = training_rows().select(range(4 * rank, 4 * rank + 4))
    trainer = posttrain_trainer("dpo", os.path.join(output, f"rank{rank}"), rows, model=tiny_model(seed=1),
                                reward_model=FakeRewardEnsemble(), **DPO_SETTINGS)
    # Accelerate gives CPU processes no FSDP state: the trainer's reference is (re)prepared as it would be under
    # FSDP2, and the policy sharded as `recipes/accelerate/fsdp.yaml` does (one unit per HSTU layer, then the root).
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True)
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), device=torch.device("cpu"))
    fsdp_trainer = SimpleNamespace(is_deepspeed_enabled=False, is_fsdp_enabled=True, accelerator=accelerator)
    trainer.ref_model = policy_module.prepare_frozen_model(trainer.ref_model, fsdp_trainer)
    mesh = init_device_mesh("cpu", (2,))
    for layer in trainer.model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(trainer.model, mesh=mesh)
    tables = [type(m.model.item_embeddings.weight).__name__ for m in (trainer.model, trainer.ref_model)]

    loss = sgd_step(trainer, rows)
    losses = trainer.accelerator.gather(torch.tensor([loss]))  # each rank's share of the step's loss
    state = {name: value.full_tensor() for name, value in trainer.model.state_dict().items()}
    if rank == 0:
        recommender = tiny_model(seed=1)
        recommender.save_pretrained(os.path.join(output, "model"), state_dict=state)
        with open(os.path.join(output, "result.json"), "w", encoding="utf-8") as f:
            json.dump({"loss": losses.sum().item() / 2, "item_table": tables[0], "reference_item_table": tables[1]}, f)


if __name__ == "__main__" and "--worker" in sys.argv:
    fsdp_worker(sys.argv[sys.argv.index("--worker") + 1])
    # Tear the gloo group down before exit (left to process exit, its threads can abort a rank).
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
