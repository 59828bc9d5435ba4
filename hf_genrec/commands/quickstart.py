"""`hf-genrec quickstart`: the whole pipeline on the embedded synthetic dataset (no download).

generate interactions -> prepare -> pretrain HSTU -> evaluate against a most-popular baseline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data import SequenceCollator, generate_synthetic_interactions, write_movielens_file
from ..data.prepared import load_prepared, prepare_dataset
from ..evaluation import MostPopularRecommender, dataset_subsets, evaluate_ranking, flatten_metrics
from ..evaluation.metrics import (
    SUBSET_HIGH_REWARD_TARGET,
    metric_key,
    ndcg_key,
    ranking_metric_names,
)
from ..utils.io import write_json
from ..workflows.pretrain import pretrain

# A small HSTU that learns the synthetic data in a couple of minutes on 2 CPU cores.
QUICKSTART_RECIPE: dict[str, dict[str, Any]] = {
    "model": {"hidden_size": 32, "attention_dim": 32, "linear_dim": 32, "max_seq_len": 100,
              "max_position_embeddings": 111, "num_negatives": 64},
    "training": {"num_train_epochs": 12, "per_device_train_batch_size": 64, "bf16": True, "seed": 0,
                 "logging_steps": 20},
    "data": {"split": "leave-one-out"},
    "method": {},
}


def format_table(rows: dict[str, dict[str, float]], columns: list[str]) -> str:
    """A Markdown table: one row per model, one column per metric."""
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:.4f}" if isinstance(metrics.get(c), float) else str(metrics.get(c, "")) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quickstart(
    output_dir: str | os.PathLike = "runs/quickstart",
    *,
    num_users: int = 1000,
    num_items: int = 300,
    epochs: float | None = None,
    seed: int = 0,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Run the end-to-end demo and return {"hstu": metrics, "most_popular": metrics, "table": str}."""
    output_dir = Path(output_dir)
    interactions = generate_synthetic_interactions(num_users=num_users, num_items=num_items, seed=seed)
    ratings_file = write_movielens_file(interactions, output_dir / "raw" / "ratings.dat")
    prepare_dataset(ratings_file, output_dir / "data", format="movielens", overwrite=overwrite)

    report = pretrain(output_dir / "data", output_dir / "hstu", recipe=QUICKSTART_RECIPE, epochs=epochs,
                      overwrite=overwrite)

    splits, vocabulary = load_prepared(output_dir / "data")
    popular = MostPopularRecommender.from_dataset(splits["train"], vocabulary.num_items)
    baseline = flatten_metrics(evaluate_ranking(
        popular, splits["test"], SequenceCollator(max_seq_len=QUICKSTART_RECIPE["model"]["max_seq_len"]),
        subsets=dataset_subsets(splits["test"]),
    ))
    columns = [*ranking_metric_names((10, 50)), metric_key(ndcg_key(10), SUBSET_HIGH_REWARD_TARGET)]
    table = format_table({"most popular": baseline, "HSTU (pretrained)": report["test"]}, columns)
    summary = {"hstu": report["test"], "most_popular": baseline, "table": table,
               "seconds_per_epoch": report["seconds_per_epoch"], "best_epoch": report["best_epoch"]}
    write_json(output_dir / "summary.json", summary, allow_nan=True)  # a metric over no users is NaN
    return summary
