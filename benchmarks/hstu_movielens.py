"""Benchmark: HSTU and HSTU-large pretraining on MovieLens-1M against the HSTU paper's numbers.

Runs `hf-genrec prepare` once, then `hf-genrec pretrain` with each recipe (in a subprocess, so the peak
memory is per run), and prints one table: test HR@10/50/200, NDCG@10/50/200, MRR of the epoch selected
on validation NDCG@10, beside the paper's rows, with seconds per epoch, total training time and peak memory.

    python benchmarks/hstu_movielens.py --data-root ../shared/data --output runs/bench-hstu
    # or: HF_GENREC_DATA=../shared/data python benchmarks/hstu_movielens.py

Protocol (brief section 5): full catalogue (all 3,883 movies.dat ids), items already in the user's
history excluded, leave-one-out (validation = second-to-last event, test = last event).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "HSTU (ours)": REPO_ROOT / "recipes" / "movielens-1m" / "hstu.yaml",
    "HSTU-large (ours)": REPO_ROOT / "recipes" / "movielens-1m" / "hstu-large.yaml",
}
# Full-catalogue, leave-one-out MovieLens-1M rows of the HSTU paper (Table 4) and the RAILS repo.
PAPER_ROWS = {
    "SASRec (HSTU paper)": {"hr@10": 0.2853, "ndcg@10": 0.1603, "hr@50": 0.5474, "hr@200": 0.7528, "ndcg@200": 0.2498},
    "HSTU (paper)": {"hr@10": 0.3097, "ndcg@10": 0.1720, "hr@50": 0.5754, "hr@200": 0.7716, "ndcg@200": 0.2606},
    "HSTU-large (paper)": {"hr@10": 0.3294, "ndcg@10": 0.1893, "hr@50": 0.5935, "hr@200": 0.7839, "ndcg@200": 0.2771},
    "HSTU-large + MoL (RAILS)": {"hr@10": 0.3412, "ndcg@10": 0.1979},
}
COLUMNS = ["hr@10", "ndcg@10", "hr@50", "ndcg@50", "hr@200", "ndcg@200", "mrr"]


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.environ.get("HF_GENREC_DATA"),
                        help="Folder holding ml-1m/ (default: $HF_GENREC_DATA).")
    parser.add_argument("--output", default="runs/bench-hstu", help="Where runs and the table go.")
    parser.add_argument("--only", choices=("hstu", "hstu-large"), default=None, help="Run one recipe only.")
    parser.add_argument("--epochs", type=float, default=None, help="Override the recipes' epochs (smoke runs).")
    parser.add_argument("--reuse", action="store_true", help="Reuse finished runs found in --output.")
    args = parser.parse_args()
    if not args.data_root:
        parser.error("pass --data-root or set HF_GENREC_DATA to the folder holding ml-1m/")
    ratings = Path(args.data_root) / "ml-1m" / "ratings.dat.gz"
    output = Path(args.output)
    data_dir = output / "ml-1m"
    cli = [sys.executable, "-m", "hf_genrec.cli"]
    if not (data_dir / "prepare.json").exists():
        run(cli + ["prepare", "--input", str(ratings), "--format", "movielens", "--output", str(data_dir), "--overwrite"])

    results, wall = {}, {}
    for name, recipe in RECIPES.items():
        if args.only and recipe.stem != args.only:
            continue
        run_dir = output / recipe.stem
        if not (args.reuse and (run_dir / "metrics.json").exists()):
            command = cli + ["pretrain", "--data", str(data_dir), "--output", str(run_dir), "--recipe", str(recipe),
                             "--overwrite"]
            if args.epochs is not None:
                command += ["--epochs", str(args.epochs)]
            start = time.time()
            run(command)
            wall[name] = time.time() - start
        results[name] = json.loads((run_dir / "metrics.json").read_text())

    lines = ["| model | " + " | ".join(COLUMNS) + " | best epoch | s/epoch | train min | peak GB |",
             "|---|" + "---|" * (len(COLUMNS) + 4)]
    for name, row in PAPER_ROWS.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4f}" if c in row else "–" for c in COLUMNS) + " | | | | |")
    for name, report in results.items():
        test = report["test"]
        lines.append(
            f"| {name} | " + " | ".join(f"{test[c]:.4f}" for c in COLUMNS)
            + f" | {report['best_epoch']:.0f} | {report['seconds_per_epoch']:.1f}"
            + f" | {report['train_runtime_s'] / 60:.1f} | {report['peak_memory_mb'] / 1024:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    (output / "table.md").write_text(table + "\n")
    print(f"table written to {output / 'table.md'}")


if __name__ == "__main__":
    main()
