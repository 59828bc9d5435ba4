# Load a recommender shared on the Hugging Face Hub and recommend from it.
#
# Everything a run needs travels in the repo: weights and config (`from_pretrained`), the item vocabulary
# (`item_vocabulary.json`), the model card and the recipe that trained it. Share a run with
#   hf-genrec pretrain ... --push-to-hub USER/NAME     (or hf_genrec.hub.push_run_to_hub(dir, "USER/NAME"))
# and load it anywhere with
#   python examples/load_from_hub.py --repo-id USER/NAME --history 12,7,31
# Private repos need a token (HF_TOKEN or `hf auth login`).
import argparse

import yaml
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from hf_genrec import AutoModelForNextItemPrediction
from hf_genrec.data import ItemVocabulary
from hf_genrec.pipelines import Recommender

DEFAULT_K = 10


def load(repo_id: str, revision: str | None = None) -> Recommender:
    """The model and its vocabulary, downloaded (and cached) by repo id."""
    model = AutoModelForNextItemPrediction.from_pretrained(repo_id, revision=revision)
    vocabulary = ItemVocabulary.from_pretrained(repo_id, revision=revision)
    return Recommender(model, vocabulary)


def training_recipe(repo_id: str, revision: str | None = None) -> dict | None:
    """The recipe the run was trained with (`hf-genrec pretrain --recipe` reproduces it), if it was pushed."""
    try:
        path = hf_hub_download(repo_id, "recipe.yaml", revision=revision)
    except EntryNotFoundError:
        return None
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def main():
    parser = argparse.ArgumentParser(description="Recommend with a model from the Hub.")
    parser.add_argument("--repo-id", required=True, help="Hub repo id, e.g. user/hstu-ml1m.")
    parser.add_argument("--revision", default=None, help="Branch, tag or commit (default: main).")
    parser.add_argument("--history", required=True, help="Comma-separated raw item ids, oldest first.")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="How many items to recommend.")
    args = parser.parse_args()

    recommender = load(args.repo_id, args.revision)
    recipe = training_recipe(args.repo_id, args.revision)
    config = recommender.model.config
    trained = f"trained with seed {recipe['training'].get('seed')}" if recipe else "no recipe.yaml in the repo"
    print(f"{args.repo_id}: {config.num_items} items, {config.num_hidden_layers} layers, {trained}")
    history = [int(i) if i.strip().isdigit() else i.strip() for i in args.history.split(",")]
    print(f"Top {args.k}: {recommender.recommend([history], k=args.k)[0]}")


if __name__ == "__main__":
    main()
