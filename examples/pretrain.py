# Pretrain an HSTU recommender by next-item prediction, from Python, and save it with its vocabulary.
#
# Runs as is on a CPU, one GPU, or several GPUs / processes with the same file:
#   python examples/pretrain.py --output runs/example-pretrain
#   accelerate launch --multi_gpu --num_processes 2 examples/pretrain.py --output runs/example-pretrain
#   torchrun --nproc_per_node 2 examples/pretrain.py --output runs/example-pretrain
# Mixed precision: add --bf16 (on a CPU, or a GPU that supports it).
# Data: MovieLens ratings with --ratings ml-1m/ratings.dat, else the embedded synthetic log.
import argparse

from transformers import set_seed

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import build_sequences, generate_synthetic_interactions, read_movielens, split_sequences
from hf_genrec.trainers import PretrainConfig, PretrainTrainer

MAX_SEQ_LEN = 50
SEED = 0


def get_splits(args):
    """Leave-one-out train / validation / test splits and the item vocabulary."""
    if args.ratings:
        interactions = read_movielens(args.ratings)
    else:
        interactions = generate_synthetic_interactions(num_users=args.users, num_items=args.items, seed=SEED)
    sequences, vocabulary = build_sequences(interactions)
    return split_sequences(sequences, "leave-one-out"), vocabulary


def training_function(args):
    splits, vocabulary = get_splits(args)
    # Seed before building the model, so the seed also fixes its initial weights.
    set_seed(SEED)
    model = HSTUForNextItemPrediction(HSTUConfig(
        num_items=vocabulary.num_items, hidden_size=32, attention_dim=32, linear_dim=32,
        max_seq_len=MAX_SEQ_LEN, max_position_embeddings=MAX_SEQ_LEN + 1, num_negatives=64,
    ))
    config = PretrainConfig(
        output_dir=f"{args.output}/checkpoints", num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, bf16=args.bf16, seed=SEED,
        # The validation-best epoch is kept (PretrainConfig's default is to evaluate and save every epoch).
    )
    trainer = PretrainTrainer(model=model, args=config, train_dataset=splits["train"],
                              eval_dataset=splits["validation"], processing_class=vocabulary)
    trainer.train()
    metrics = trainer.evaluate(splits["test"], metric_key_prefix="test")
    trainer.save_model(args.output)  # model + config + item_vocabulary.json, on the main process
    if trainer.is_world_process_zero():
        print(f"test NDCG@10 {metrics['test_ndcg@10']:.4f}, HR@10 {metrics['test_hr@10']:.4f}; saved to {args.output}")


def main():
    parser = argparse.ArgumentParser(description="Pretrain HSTU on MovieLens or generated data.")
    parser.add_argument("--output", default="runs/example-pretrain", help="Where the model is saved.")
    parser.add_argument("--ratings", default=None, help="MovieLens ratings.dat (default: synthetic data).")
    parser.add_argument("--users", type=int, default=1000, help="Synthetic users.")
    parser.add_argument("--items", type=int, default=300, help="Synthetic items.")
    parser.add_argument("--epochs", type=float, default=10, help="Training epochs.")
    parser.add_argument("--max-steps", type=int, default=-1, help="Stop after this many steps (-1: epochs decide).")
    parser.add_argument("--batch-size", type=int, default=64, help="Histories per device and step.")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision.")
    training_function(parser.parse_args())


if __name__ == "__main__":
    main()
