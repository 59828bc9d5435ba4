# Post-train a pretrained recommender with A-SFT (advantage-weighted SFT), from Python.
#
# Each logged next item is imitated with weight w = min(exp((r - b(x)) / λ), 20): r is its rating, b(x) the
# reward ensemble's value estimate (--reward-model, from `hf-genrec reward`) or, without one, the user's
# mean past rating. Runs as is on a CPU or GPU, and on several processes:
#   python examples/posttrain_asft.py --model runs/example-pretrain --output runs/example-asft
#   accelerate launch --multi_gpu --num_processes 2 examples/posttrain_asft.py --model ... --output ...
# Data: the same generated log as examples/pretrain.py (or --ratings ml-1m/ratings.dat), encoded with the
# model's own item vocabulary.
import argparse

from hf_genrec import AutoModelForNextItemPrediction
from hf_genrec.data import (
    ItemVocabulary,
    build_sequences,
    generate_synthetic_interactions,
    read_movielens,
    split_sequences,
)
from hf_genrec.rewards import RewardEnsemble
from hf_genrec.trainers import ASFTConfig, ASFTTrainer

SEED = 0  # the seed examples/pretrain.py generated its data with


def get_splits(args, vocabulary):
    """Leave-one-out splits of the log, indexed with the pretrained model's vocabulary."""
    interactions = read_movielens(args.ratings) if args.ratings else generate_synthetic_interactions(
        num_users=args.users, num_items=args.items, seed=SEED)
    sequences, _ = build_sequences(interactions, vocabulary)
    return split_sequences(sequences, "leave-one-out")


def training_function(args, peft_config=None):
    model = AutoModelForNextItemPrediction.from_pretrained(args.model)
    vocabulary = ItemVocabulary.from_pretrained(args.model)
    splits = get_splits(args, vocabulary)
    reward_model = RewardEnsemble.from_pretrained(args.reward_model) if args.reward_model else None
    config = ASFTConfig(
        output_dir=f"{args.output}/checkpoints", temperature=args.temperature,
        baseline="value" if reward_model is not None else "user_mean",
        num_train_epochs=args.epochs, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=SEED,
    )
    trainer = ASFTTrainer(model=model, reward_model=reward_model, args=config, train_dataset=splits["train"],
                          processing_class=vocabulary, peft_config=peft_config)
    trainer.train()
    metrics = trainer.evaluate(splits["test"], metric_key_prefix="test")
    trainer.save_model(args.output)  # model (merged, with LoRA), vocabulary and model card
    if trainer.is_world_process_zero():
        print(f"A-SFT test NDCG@10 {metrics['test_ndcg@10']:.4f}, HR@10 {metrics['test_hr@10']:.4f}; saved to {args.output}")


def parse_args(argv=None, description="Post-train a recommender with A-SFT."):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", required=True, help="Pretrained model directory or Hub repo id.")
    parser.add_argument("--output", default="runs/example-asft", help="Where the post-trained model is saved.")
    parser.add_argument("--reward-model", default=None, help="Reward ensemble directory (value baseline).")
    parser.add_argument("--ratings", default=None, help="MovieLens ratings.dat (default: synthetic data).")
    parser.add_argument("--users", type=int, default=1000, help="Synthetic users (as for the pretraining).")
    parser.add_argument("--items", type=int, default=300, help="Synthetic items (as for the pretraining).")
    parser.add_argument("--temperature", type=float, default=1.0, help="λ: small = greedier towards high rewards.")
    parser.add_argument("--epochs", type=float, default=1, help="Training epochs.")
    parser.add_argument("--max-steps", type=int, default=-1, help="Stop after this many steps (-1: epochs decide).")
    parser.add_argument("--batch-size", type=int, default=64, help="Histories per device and step.")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate.")
    return parser.parse_args(argv)


def main():
    training_function(parse_args())


if __name__ == "__main__":
    main()
