"""Training from a stream of the prepared Arrow files (`hf_genrec.data.streaming.stream_split`), on 1 and 2 processes.

- One process: a stream that fits in one bucketing chunk is batched exactly as the map-style split is (the same
  rows in the same order per step), so the same run from either gives bit-identical weights and losses (compared:
  every tensor of the final state dict with `torch.equal`, and the logged losses with `==`); a stream bigger than a
  chunk trains (its loss goes down); SFT, A-SFT post-train from a stream too.
- Two processes (`accelerate launch --config_file recipes/accelerate/multi_gpu_ddp.yaml`, gloo on CPU): each rank reads the stream and keeps its own per-device slice of every
  global batch, so the ranks see disjoint users whose union is the users one process sees, and 2 processes with
  per-device batch 4 train like 1 process with batch 8 (same global batches, and the loss is the mean over the
  step's positions over both ranks: losses to rel 1e-5, weights to 1e-5, the float sums being split differently).

This file is also the script the launcher runs: `accelerate launch ... tests/distributed/test_streamed_training.py
--data DIR --output OUT --per-device-batch 4`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import set_seed

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import (  # exported by the data package
    LengthBucketedStream,
    SequenceCollator,
    generate_synthetic_interactions,
    stream_split,
    write_movielens_file,
)
from hf_genrec.data.prepared import load_prepared, prepare_dataset
from hf_genrec.trainers import PretrainConfig, PretrainTrainer

NUM_USERS = 64
NUM_ITEMS = 50
MAX_SEQ_LEN = 20
STEPS = 10  # 10 steps of 8 rows: the runs cross an epoch boundary (64 training rows)
ACCELERATE_CONFIG = Path(__file__).resolve().parents[2] / "recipes" / "accelerate" / "multi_gpu_ddp.yaml"
LAUNCH_TIMEOUT_S = 420  # two interpreters importing torch + transformers on a busy 2-core machine


def prepare(data_dir: Path, num_users: int = NUM_USERS) -> Path:
    """A tiny prepared folder (`hf-genrec prepare` of the embedded synthetic log)."""
    interactions = generate_synthetic_interactions(num_users=num_users, num_items=NUM_ITEMS, mean_events=25, seed=7)
    ratings = write_movielens_file(interactions, data_dir.parent / f"{data_dir.name}-ratings.dat")
    prepare_dataset(ratings, data_dir, format="movielens")
    return data_dir


@dataclass
class RecordingCollator(SequenceCollator):
    """`SequenceCollator` that also records the users of every batch it collates (which rows a rank saw)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.users: list[list[str]] = []

    def __call__(self, features):
        self.users.append([row["user_id"] for row in features])
        return super().__call__(features)


def train(data_dir: Path, output: Path, per_device_batch: int, streamed: bool, *, steps: int = STEPS,
          bucket_batches: int = 2, learning_rate: float = 1e-2) -> dict:
    """Pretrain a tiny HSTU (dropout 0, full softmax, seed 0) for `steps` steps from the prepared folder."""
    vocabulary = load_prepared(data_dir)[1]
    train_dataset = stream_split(data_dir, num_shards=4) if streamed else load_prepared(data_dir)[0]["train"]
    set_seed(0)
    config = HSTUConfig(
        num_items=vocabulary.num_items, hidden_size=16, num_attention_heads=2, attention_dim=8, linear_dim=8,
        max_seq_len=MAX_SEQ_LEN, max_position_embeddings=MAX_SEQ_LEN + 1, input_dropout=0.0, linear_dropout=0.0,
        loss_type="full_softmax",
    )
    model = HSTUForNextItemPrediction(config)
    args = PretrainConfig(
        output_dir=str(output / "checkpoints"), per_device_train_batch_size=per_device_batch, max_steps=steps,
        learning_rate=learning_rate, lr_scheduler_type="constant", eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, logging_steps=1, bucket_by_length=True, bucket_batches=bucket_batches, seed=0,
        use_cpu=True, ddp_find_unused_parameters=False, disable_tqdm=True, report_to="none",
    )
    collator = RecordingCollator(max_seq_len=MAX_SEQ_LEN)
    trainer = PretrainTrainer(model=model, args=args, data_collator=collator, train_dataset=train_dataset,
                              processing_class=vocabulary)
    trainer.train()
    result = {
        "world_size": trainer.args.world_size,
        "rank": trainer.args.process_index,
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        "users": collator.users,
    }
    if trainer.is_world_process_zero():
        trainer.save_model(str(output / "model"))
    (output / f"result-{result['rank']}.json").write_text(json.dumps(result))
    return result


def weights(output: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(output / "model" / "model.safetensors")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return prepare(tmp_path_factory.mktemp("streamed") / "prepared")


@pytest.fixture(scope="module")
def one_process_streamed(data_dir, tmp_path_factory) -> tuple[dict, Path]:
    output = tmp_path_factory.mktemp("one_streamed")
    return train(data_dir, output, per_device_batch=8, streamed=True), output


# ------------------------------------------------------------------------------------------ one process
def test_stream_split_streams_the_prepared_split(data_dir):
    split = load_prepared(data_dir)[0]["train"]
    stream = stream_split(data_dir, num_shards=4)
    assert not hasattr(stream, "__len__") and stream.n_shards == 4
    assert [row["item_ids"] for row in stream] == split["item_ids"]  # every row, in file order
    with pytest.raises(ValueError, match="part 'valid'.*Fix"):
        stream_split(data_dir, part="valid")


def test_bucketed_stream_is_the_sampler_order_chunk_by_chunk():
    """Each chunk of `batch_size x bucket_batches` rows is permuted within itself into length-sorted batches;
    the first chunk's order is the map-style sampler's on the same rows."""
    from hf_genrec.data.sampling import LengthBucketSampler

    rows = [{"item_ids": list(range(n))} for n in torch.randint(1, 50, (37,), generator=torch.Generator().manual_seed(0))]
    stream = LengthBucketedStream(rows, batch_size=4, bucket_batches=3, seed=5)
    stream.set_epoch(2)
    out = list(stream)
    sampler = LengthBucketSampler([len(r["item_ids"]) for r in rows[:12]], batch_size=4, bucket_batches=3, seed=5)
    sampler.set_epoch(2)
    assert [id(r) for r in out[:12]] == [id(rows[i]) for i in sampler]
    for start in range(0, 37, 12):  # every chunk holds exactly its own rows
        assert sorted(map(id, out[start:start + 12])) == sorted(map(id, rows[start:start + 12]))
    for start in range(0, 36, 4):  # each full batch is one of its chunk's length-sorted batches
        batch = [len(r["item_ids"]) for r in out[start:start + 4]]
        chunk = sorted((len(r["item_ids"]) for r in out[start - start % 12:start - start % 12 + 12]), reverse=True)
        assert batch in [chunk[i:i + 4] for i in range(0, 12, 4)], start


def test_streamed_training_equals_the_map_style_path_when_the_order_is_the_same(data_dir, tmp_path):
    """64 rows, global batch 8 x 8 bucket batches = one chunk: the stream is batched as the sampler batches the
    split, epoch after epoch, so both runs compute the same thing: bit-identical weights and losses."""
    streamed = train(data_dir, tmp_path / "streamed", 8, streamed=True, bucket_batches=8)
    mapped = train(data_dir, tmp_path / "mapped", 8, streamed=False, bucket_batches=8)
    assert streamed["users"] == mapped["users"]  # the same rows in the same order, each step
    assert streamed["losses"] == mapped["losses"]
    a, b = weights(tmp_path / "streamed"), weights(tmp_path / "mapped")
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_streamed_training_trains(one_process_streamed):
    result, _ = one_process_streamed
    assert len(result["losses"]) == STEPS
    # 4-batch means: the stream's rows vary in length, so single steps are noisy
    assert sum(result["losses"][-4:]) < sum(result["losses"][:4])
    seen = [user for batch in result["users"] for user in batch]
    assert len(set(seen[:NUM_USERS])) == NUM_USERS  # the first epoch reads every training row once


@pytest.mark.parametrize("method", ["sft", "asft"])
def test_post_training_from_a_stream_equals_the_map_style_path(data_dir, tmp_path, method):
    """SFT and A-SFT (value-free: the user's mean rating as baseline) from the stream: the same batches as from the
    split (one bucketing chunk), so bit-identical trained weights, and they moved."""
    from hf_genrec import trainers

    vocabulary = load_prepared(data_dir)[1]
    config_class, trainer_class, settings = {
        "sft": (trainers.SFTConfig, trainers.SFTTrainer, {}),
        "asft": (trainers.ASFTConfig, trainers.ASFTTrainer, {"baseline": "user_mean"}),
    }[method]
    trained = {}
    for streamed in (True, False):
        train_dataset = stream_split(data_dir, num_shards=2) if streamed else load_prepared(data_dir)[0]["train"]
        set_seed(0)
        model = HSTUForNextItemPrediction(HSTUConfig(
            num_items=vocabulary.num_items, hidden_size=16, num_attention_heads=2, attention_dim=8, linear_dim=8,
            max_seq_len=MAX_SEQ_LEN, max_position_embeddings=MAX_SEQ_LEN + 1, input_dropout=0.0, linear_dropout=0.0))
        start = {name: p.detach().clone() for name, p in model.named_parameters()}
        args = config_class(str(tmp_path / f"{method}-{streamed}"), per_device_train_batch_size=8, max_steps=4,
                            bucket_batches=8, learning_rate=1e-2, disable_tqdm=True, report_to="none", seed=0,
                            **settings)
        trainer_class(model=model, args=args, train_dataset=train_dataset, processing_class=vocabulary).train()
        trained[streamed] = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert all(torch.equal(trained[True][name], trained[False][name]) for name in start)
    assert max((trained[True][name] - start[name]).abs().max().item() for name in start) > 1e-3


def untrained_model(vocabulary) -> HSTUForNextItemPrediction:
    """A tiny HSTU for the tests that only build a trainer (they fail before any step)."""
    return HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, hidden_size=16, num_attention_heads=2,
                                                attention_dim=8, linear_dim=8, max_seq_len=MAX_SEQ_LEN))


def test_a_stream_without_max_steps_names_the_field_and_the_fix(data_dir, tmp_path):
    vocabulary = load_prepared(data_dir)[1]
    model = untrained_model(vocabulary)
    args = PretrainConfig(output_dir=str(tmp_path), num_train_epochs=1, use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match=r"train_dataset is a stream.*max_steps is -1\. Fix: set max_steps"):
        PretrainTrainer(model=model, args=args, train_dataset=stream_split(data_dir), processing_class=vocabulary)


@pytest.mark.parametrize("trainer_name", ["CQLTrainer", "PPOTrainer"])
def test_trainers_that_index_their_rows_refuse_a_stream(data_dir, tmp_path, trainer_name):
    from hf_genrec import trainers

    trainer_class = getattr(trainers, trainer_name)
    config_class = getattr(trainers, trainer_name.replace("Trainer", "Config"))
    vocabulary = load_prepared(data_dir)[1]
    model = untrained_model(vocabulary)
    args = config_class(output_dir=str(tmp_path), max_steps=2, use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match=rf"{trainer_name} reads its training rows by index.*Fix: pass the map-style"):
        trainer_class(model=model, args=args, train_dataset=stream_split(data_dir), processing_class=vocabulary)


# ------------------------------------------------------------------------------------------ two processes
def test_two_processes_read_disjoint_rows_and_train_like_one(data_dir, one_process_streamed, tmp_path):
    single, single_dir = one_process_streamed
    # docs/multi-node.md's command on one machine: the DDP config file, 2 processes (gloo on a CPU machine).
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIG),
               "--num_processes", "2", "--num_machines", "1", "--machine_rank", "0", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(free_port()), __file__, "--data", str(data_dir), "--output", str(tmp_path),
               "--per-device-batch", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"accelerate launch did not finish in {LAUNCH_TIMEOUT_S} s:\n{(error.stderr or '')[-3000:]}")
    assert done.returncode == 0, f"accelerate launch failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    ranks = [json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # Data: at every step the ranks hold disjoint halves of the one-process batch. (A rank may collate one batch
    # past the last step: accelerate's loader reads one ahead to know which batch is the last.)
    assert min(len(ranks[0]["users"]), len(ranks[1]["users"]), len(single["users"])) >= STEPS
    steps = zip(ranks[0]["users"][:STEPS], ranks[1]["users"][:STEPS], single["users"][:STEPS])
    for step, (mine, theirs, whole) in enumerate(steps):
        assert not set(mine) & set(theirs), step
        assert mine + theirs == whole, step  # rank 0 the first per-device slice, rank 1 the second

    # Training: the same global batches and the same step mean, so the same losses and weights. The gradients'
    # float sums are split differently (per rank, then averaged), and Adam's g / sqrt(v) magnifies the rounding of
    # near-zero gradient coordinates: 10 steps at lr 1e-2 end within 1e-4 (1% of one step; measured: 3e-5).
    assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    two, one = weights(tmp_path), weights(single_dir)
    assert two.keys() == one.keys()
    for name in one:
        assert (two[name] - one[name]).abs().max().item() < 1e-4, name


def main() -> None:
    parser = argparse.ArgumentParser(description="Streamed pretraining of a tiny HSTU (run under accelerate launch).")
    parser.add_argument("--data", required=True, help="A prepared folder.")
    parser.add_argument("--output", required=True, help="Directory for result-RANK.json and the model.")
    parser.add_argument("--per-device-batch", type=int, default=4)
    parser.add_argument("--map-style", action="store_true", help="Train from the map-style split instead.")
    args = parser.parse_args()
    torch.set_num_threads(1)  # two ranks on a 2-core machine
    train(Path(args.data), Path(args.output), args.per_device_batch, streamed=not args.map_style)
    if torch.distributed.is_initialized():  # tear the group down before exit (see tests/scripts/ddp_posttrain.py)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
