"""A post-training workspace on disk, shared by the command-line and PEFT tests: a prepared synthetic dataset
(`root/data`), a random tiny pretrained recommender with its vocabulary (`root/pretrained`) and, on request, a
random 2-member reward ensemble (`root/reward`)."""

from pathlib import Path

import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.data import ItemVocabulary, generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.rewards import RewardEnsemble

TINY = dict(hidden_size=16, num_hidden_layers=1, attention_dim=8, linear_dim=8, max_seq_len=12,
            max_position_embeddings=15, num_negatives=8)


def posttrain_workspace(root: Path, *, num_users: int = 40, seed: int = 5, reward: bool = False) -> Path:
    """Write the workspace under `root` and return `root`."""
    ratings = write_movielens_file(generate_synthetic_interactions(num_users=num_users, num_items=30, mean_events=20,
                                                                   seed=seed), root / "raw" / "ratings.dat")
    prepare_dataset(ratings, root / "data", format="movielens")
    vocabulary = ItemVocabulary.from_pretrained(root / "data")
    torch.manual_seed(0)
    HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **TINY)).save_pretrained(root / "pretrained")
    vocabulary.save_pretrained(root / "pretrained")
    if reward:
        members = [HSTUForRewardModeling(HSTUConfig(num_items=vocabulary.num_items, **TINY)) for _ in range(2)]
        RewardEnsemble(members, seeds=[0, 1], vocabulary=vocabulary).save_pretrained(root / "reward")
    return root
