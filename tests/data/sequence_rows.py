"""Hand-written sequence datasets for the split tests."""

from datasets import Dataset

from hf_genrec.data import SEQUENCE_FEATURES


def sequences_from_rows(rows: dict) -> Dataset:
    """rows: {user: [(item, rating, timestamp), ...]} in chronological order -> a sequence dataset."""
    return Dataset.from_dict(
        {
            "user_id": list(rows),
            "item_ids": [[e[0] for e in events] for events in rows.values()],
            "ratings": [[e[1] for e in events] for events in rows.values()],
            "timestamps": [[e[2] for e in events] for events in rows.values()],
        },
        features=SEQUENCE_FEATURES,
    )
