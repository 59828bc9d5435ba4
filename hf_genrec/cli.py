"""The `hf-genrec` command line. Each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import __version__

logger = logging.getLogger("hf_genrec")


def _rating_scale(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--rating-scale takes 'MIN,MAX' (e.g. 1,5), got {text!r}") from error
    return low, high


def _add_prepare(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="Turn a ratings file into a sequence dataset and an item vocabulary.",
        description="Read interactions (user, item, rating, timestamp), sort each user's events by time "
        "(stable for ties) and write DIR/sequences (datasets.save_to_disk), DIR/item_vocabulary.json and "
        "DIR/prepare.json.",
    )
    p.add_argument("--input", required=True, help="Ratings file: MovieLens '::' (plain or .gz) or delimited text.")
    p.add_argument("--format", choices=("movielens", "csv"), default="movielens", help="Input format.")
    p.add_argument("--sep", default=None, help="Field separator for --format csv (default ',').")
    p.add_argument(
        "--columns",
        default=None,
        help="csv columns in file order, e.g. 'user,item,rating,timestamp' ('_' skips one), or with "
        "--header 'user=reviewerID,item=asin,rating=overall,timestamp=unixReviewTime'.",
    )
    p.add_argument("--header", action="store_true", help="The csv file's first line is a header.")
    p.add_argument("--catalog", default=None, help="MovieLens movies.dat listing every catalogue item "
                   "(default: movies.dat beside --input, if any).")
    p.add_argument("--rating-scale", type=_rating_scale, default=None, help="MIN,MAX; ratings outside fail.")
    p.add_argument("--duplicates", choices=("keep", "drop", "error"), default="keep",
                   help="Repeated (user, item, timestamp) rows: keep them, drop repeats, or fail.")
    p.add_argument("--output", required=True, help="Output directory.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output directory.")


def _add_hub_flags(p) -> None:
    """`--push-to-hub REPO_ID`, shared by every command that writes a run directory."""
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                   help="Upload the finished run (model, vocabulary, card, recipe, metrics; no checkpoints) to "
                   "this Hub repo. The token comes from HF_TOKEN or `hf auth login`.")
    p.add_argument("--hub-private", action="store_true", help="Create the Hub repo as private.")


def _add_pretrain(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="Pretrain an HSTU recommender by next-item prediction.",
        description="Train on the training split, evaluate on validation every epoch, keep the epoch with "
        "the best validation NDCG@10, then write the model, its vocabulary and metrics.json (validation and "
        "test metrics of that epoch).",
    )
    p.add_argument("--data", required=True, help="Directory written by `hf-genrec prepare`.")
    p.add_argument("--output", required=True, help="Output directory for the model and metrics.json.")
    p.add_argument("--recipe", default=None, help="YAML recipe (e.g. recipes/movielens-1m/hstu.yaml).")
    p.add_argument("--epochs", type=float, default=None, help="Override the recipe's num_train_epochs.")
    p.add_argument("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
    p.add_argument("--seed", type=int, default=None, help="Override the recipe's seed.")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in OUTPUT/checkpoints.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output directory.")
    p.add_argument("--no-bf16", action="store_true", help="Train in fp32 even if the recipe asks for bf16.")
    _add_hub_flags(p)


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Full-catalogue ranking metrics (HR@k, NDCG@k, MRR) of a saved model.",
        description="Rank each evaluation case's held-out item among all catalogue items, excluding the "
        "items already in the user's history, and write the metrics as a flat JSON object.",
    )
    p.add_argument("--model", required=True, help="Model directory (or Hub repo id).")
    p.add_argument("--data", required=True, help="Directory written by `hf-genrec prepare`.")
    p.add_argument("--split", default="test", choices=("validation", "test"), help="Which split to rank.")
    p.add_argument("--subset", default="all", choices=("all", "high_reward_target", "high_reward_trajectory"),
                   help="Evaluation subset.")
    p.add_argument("--split-method", default="leave-one-out", choices=("leave-one-out", "temporal"),
                   help="How the prepared sequences are split.")
    p.add_argument("--batch-size", type=int, default=256, help="Histories per batch.")
    p.add_argument("--output", required=True, help="JSON file for the metrics.")


def _add_quickstart(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="End-to-end demo on generated data: prepare, pretrain, evaluate (a few minutes on CPU).",
    )
    p.add_argument("--output", default="runs/quickstart", help="Output directory.")
    p.add_argument("--epochs", type=float, default=None, help="Override the number of epochs.")
    p.add_argument("--users", type=int, default=1000, help="Synthetic users.")
    p.add_argument("--items", type=int, default=300, help="Synthetic items.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the generated data.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-genrec",
        description="Pretrain, post-train and evaluate generative recommenders (HSTU) on Hugging Face.",
    )
    parser.add_argument("--version", action="version", version=f"hf_genrec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_prepare(subparsers)
    _add_pretrain(subparsers)
    _add_evaluate(subparsers)
    _add_quickstart(subparsers)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "prepare":
        from .commands.prepare import prepare_dataset

        manifest = prepare_dataset(
            args.input, args.output, format=args.format, sep=args.sep, columns=args.columns, header=args.header,
            catalog=args.catalog, rating_scale=args.rating_scale, duplicates=args.duplicates,
            overwrite=args.overwrite,
        )
        print(json.dumps(manifest, indent=2))
        print(f"Prepared dataset written to {args.output}")
    elif args.command == "pretrain":
        from .commands.pretrain import pretrain

        report = pretrain(
            args.data, args.output, recipe=args.recipe, epochs=args.epochs, seed=args.seed,
            max_steps=args.max_steps, resume=args.resume, overwrite=args.overwrite,
            training_overrides={"bf16": False} if args.no_bf16 else None,
            push_to_hub=args.push_to_hub, hub_private=args.hub_private,
        )
        print(json.dumps({"validation": report["validation"], "test": report["test"],
                          "best_epoch": report["best_epoch"], "seconds_per_epoch": report["seconds_per_epoch"]},
                         indent=2))
        print(f"Model, vocabulary, model card, recipe.yaml and metrics.json written to {args.output}")
        if report.get("hub_commit_url"):
            print(f"Pushed to the Hub: {report['hub_commit_url']}")
    elif args.command == "evaluate":
        from .commands.evaluate import evaluate_model

        metrics = evaluate_model(args.model, args.data, split=args.split, subset=args.subset,
                                 split_method=args.split_method, batch_size=args.batch_size, output=args.output)
        print(json.dumps(metrics, indent=2))
        print(f"Metrics written to {args.output}")
    elif args.command == "quickstart":
        from .commands.quickstart import quickstart

        summary = quickstart(args.output, num_users=args.users, num_items=args.items, epochs=args.epochs,
                             seed=args.seed)
        print(summary["table"])
        print(f"Outputs written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        # Input problems: a clear message, not a stack trace from deep inside the library.
        message = str(error) if not isinstance(error, KeyError) or not error.args else str(error.args[0])
        print(f"hf-genrec {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
