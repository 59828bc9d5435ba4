# Recommend the next items for a user's history with a saved recommender.
#
# Loads a model directory written by `hf-genrec pretrain` / `posttrain` (or a Hub repo id) together with its
# item vocabulary, and prints the top-k raw item ids the user has not seen yet, best first. Runs on the
# CPU or a GPU (--device cuda).
#   python examples/recommend.py --model runs/quickstart/hstu --history 12,7,31 --k 10
import argparse

from hf_genrec.pipelines import Recommender

DEFAULT_K = 10


def parse_history(text: str) -> list:
    """'12,7,31' -> [12, 7, 31] (ids that look like integers become ints, as in the vocabulary)."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    return [int(i) if i.lstrip("-").isdigit() else i for i in ids]


def recommend(model: str, history: list, k: int, device: str | None = None) -> list:
    """Top-k unseen raw item ids after `history` (oldest first)."""
    recommender = Recommender.from_pretrained(model, device=device)
    return recommender.recommend([history], k=k)[0]


def main():
    parser = argparse.ArgumentParser(description="Top-k next items for one history.")
    parser.add_argument("--model", required=True, help="Model directory or Hub repo id.")
    parser.add_argument("--history", required=True, help="Comma-separated raw item ids, oldest first.")
    parser.add_argument("--k", type=int, default=DEFAULT_K, help="How many items to recommend.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: where the model loads).")
    args = parser.parse_args()
    items = recommend(args.model, parse_history(args.history), args.k, args.device)
    print(f"Top {len(items)} for a history of {len(parse_history(args.history))} items: {items}")


if __name__ == "__main__":
    main()
