# Quick starts in TRL's shape, one function per hf_genrec trainer: config -> trainer -> `train()`.
#
# Each function is what TRL's docs show for its trainer (`DPOConfig(...)`, `DPOTrainer(model=..., args=...,
# train_dataset=...)`, `trainer.train()`), on a tiny generated log so that every one runs in seconds on a CPU.
# docs/trl.md says, class by class, what is the same as TRL and what differs.
#   python examples/trl_quickstarts.py --output runs/quickstarts                  # every trainer, in order
#   python examples/trl_quickstarts.py --output runs/quickstarts --trainer dpo    # pretrain, then DPO
# The post-training quick starts start from the model `pretrain` saves; `dpo` (sampled pairs) and `ppo` also
# need the reward ensemble `reward` returns. Real runs: drop `max_steps` and use more data and a larger model.
import argparse

from transformers import set_seed

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences
from hf_genrec.data.preferences import build_preference_dataset
from hf_genrec.rewards import RewardEnsemble
from hf_genrec.trainers import (
    ASFTConfig,
    ASFTTrainer,
    CQLConfig,
    CQLTrainer,
    DPOConfig,
    DPOTrainer,
    PPOConfig,
    PPOTrainer,
    PretrainConfig,
    PretrainTrainer,
    RewardConfig,
    RewardTrainer,
    SFTConfig,
    SFTTrainer,
)

SEED = 0
# A few optimizer steps of a few histories: enough to show each trainer run, not to train anything well.
TINY_RUN = dict(max_steps=2, per_device_train_batch_size=8, logging_steps=1, disable_tqdm=True, seed=SEED)


def get_splits(num_users: int = 40, num_items: int = 30):
    """Leave-one-out splits of a generated rating log (train rows: `item_ids`, `ratings`, `timestamps`) and
    the item vocabulary."""
    interactions = generate_synthetic_interactions(num_users=num_users, num_items=num_items, seed=SEED)
    sequences, vocabulary = build_sequences(interactions)
    return split_sequences(sequences, "leave-one-out"), vocabulary


def pretrain(splits, vocabulary, output_dir: str) -> str:
    """Next-item pretraining (TRL: `SFTTrainer` on text). Returns the directory the recommender is saved to."""
    set_seed(SEED)  # before building the model, so the seed also fixes its initial weights
    model = HSTUForNextItemPrediction(HSTUConfig(
        num_items=vocabulary.num_items, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
        attention_dim=8, linear_dim=8, max_seq_len=20, max_position_embeddings=24, num_negatives=8,
    ))
    # No per-epoch evaluation or checkpoints: the validation-best epoch needs more than two steps.
    args = PretrainConfig(output_dir=output_dir, eval_strategy="no", save_strategy="no",
                          load_best_model_at_end=False, **TINY_RUN)
    trainer = PretrainTrainer(model=model, args=args, train_dataset=splits["train"], processing_class=vocabulary)
    trainer.train()
    trainer.save_model(output_dir)  # model + config + item_vocabulary.json
    return output_dir


def reward(model_dir: str, splits, vocabulary, output_dir: str) -> RewardEnsemble:
    """A reward model: rating regression at every position (TRL: pairwise `RewardTrainer`). Returns it as a
    one-member `RewardEnsemble` (`hf_genrec.workflows.reward.train_reward_ensemble` trains K members)."""
    set_seed(SEED)
    model = HSTUForRewardModeling.from_pretrained(model_dir)  # pretrained backbone, new reward and value heads
    args = RewardConfig(output_dir=output_dir, eval_strategy="no", save_strategy="no",
                        load_best_model_at_end=False, **TINY_RUN)
    trainer = RewardTrainer(model=model, args=args, train_dataset=splits["train"], processing_class=vocabulary)
    trainer.train()
    return RewardEnsemble([trainer.model], seeds=[SEED], vocabulary=vocabulary)


def sft(model_dir: str, splits, vocabulary, output_dir: str) -> SFTTrainer:
    """SFT: next-item cross-entropy over the catalogue on the logged next items."""
    args = SFTConfig(output_dir=output_dir, **TINY_RUN)
    trainer = SFTTrainer(model=model_dir, args=args, train_dataset=splits["train"], processing_class=vocabulary)
    trainer.train()
    return trainer


def asft(model_dir: str, splits, vocabulary, output_dir: str, reward_model=None) -> ASFTTrainer:
    """A-SFT: advantage-weighted SFT (no TRL counterpart); without a reward model the baseline is the user's
    mean past rating."""
    args = ASFTConfig(output_dir=output_dir, temperature=1.0,
                      baseline="value" if reward_model is not None else "user_mean", **TINY_RUN)
    trainer = ASFTTrainer(model=model_dir, reward_model=reward_model, args=args, train_dataset=splits["train"],
                          processing_class=vocabulary)
    trainer.train()
    return trainer


def dpo(model_dir: str, splits, vocabulary, output_dir: str, reward_model) -> DPOTrainer:
    """RS-DPO: per context, candidates drawn from the reference policy, the pair chosen by the reward ensemble."""
    args = DPOConfig(output_dir=output_dir, beta=0.1, loss_type=["sigmoid"], num_candidates=8, **TINY_RUN)
    trainer = DPOTrainer(model=model_dir, reward_model=reward_model, args=args, train_dataset=splits["train"],
                         processing_class=vocabulary)
    trainer.train()
    return trainer


def dpo_offline(model_dir: str, splits, vocabulary, output_dir: str) -> DPOTrainer:
    """DPO on a preference dataset (`history`, `chosen`, `rejected` item columns), as TRL's DPO on
    (prompt, chosen, rejected) text; here built from logged ratings, with TRL's loss mix and TR-DPO."""
    pairs = build_preference_dataset(splits["train"], high_rating=4.0, low_rating=2.0)
    args = DPOConfig(output_dir=output_dir, beta=0.1, loss_type=["sigmoid", "robust"], loss_weights=[1.0, 0.5],
                     label_smoothing=0.1, sync_ref_model=True, ref_model_sync_steps=1, **TINY_RUN)
    trainer = DPOTrainer(model=model_dir, args=args, train_dataset=pairs, processing_class=vocabulary)
    trainer.train()
    return trainer


def ppo(model_dir: str, splits, vocabulary, output_dir: str, reward_model) -> PPOTrainer:
    """One-step (bandit) PPO against the reward ensemble, with the exact KL to the reference over the catalogue."""
    args = PPOConfig(output_dir=output_dir, ppo_epochs=2, kl_coef=0.05, samples_per_context=4, **TINY_RUN)
    trainer = PPOTrainer(model=model_dir, reward_model=reward_model, args=args, train_dataset=splits["train"],
                         processing_class=vocabulary)
    trainer.train()
    return trainer


def cql(model_dir: str, splits, vocabulary, output_dir: str) -> CQLTrainer:
    """CQL: a conservative Q function over the catalogue from the logged ratings (no TRL counterpart)."""
    args = CQLConfig(output_dir=output_dir, alpha=1.0, **TINY_RUN)
    trainer = CQLTrainer(model=model_dir, args=args, train_dataset=splits["train"], processing_class=vocabulary)
    trainer.train()
    return trainer


POST_TRAINERS = ("sft", "asft", "dpo", "dpo_offline", "ppo", "cql")
NEEDS_REWARD_MODEL = ("dpo", "ppo")


def main():
    parser = argparse.ArgumentParser(description="Run hf_genrec's TRL-style quick starts on a tiny generated log.")
    parser.add_argument("--output", default="runs/quickstarts", help="Folder of the runs (one sub-folder each).")
    parser.add_argument("--trainer", default="all", choices=("all", "pretrain", "reward", *POST_TRAINERS),
                        help="Which quick start to run (pretraining, and the reward model where needed, run first).")
    args = parser.parse_args()
    splits, vocabulary = get_splits()
    model_dir = pretrain(splits, vocabulary, f"{args.output}/pretrain")
    print(f"pretrain: saved to {model_dir}")
    reward_model = None
    if args.trainer in ("all", "reward", *NEEDS_REWARD_MODEL):
        reward_model = reward(model_dir, splits, vocabulary, f"{args.output}/reward")
        print(f"reward: {reward_model.num_members} member(s)")
    runs = {"sft": sft, "asft": asft, "dpo": dpo, "dpo_offline": dpo_offline, "ppo": ppo, "cql": cql}
    for name in POST_TRAINERS if args.trainer == "all" else [args.trainer] if args.trainer in runs else []:
        extra = {"reward_model": reward_model} if name in NEEDS_REWARD_MODEL else {}
        trainer = runs[name](model_dir, splits, vocabulary, f"{args.output}/{name}", **extra)
        print(f"{name}: {trainer.state.global_step} steps, train loss {trainer.state.log_history[-1]['train_loss']:.4f}")


if __name__ == "__main__":
    main()
