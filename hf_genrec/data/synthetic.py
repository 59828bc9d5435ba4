"""The embedded default dataset: a synthetic interaction log with learnable structure, no download needed.

The generator is a small world model, so that the models have something real to learn:

- items belong to latent genres (contiguous id blocks) and have a Zipf-like popularity and a quality;
- each user has a preference over genres that drifts slowly (a random walk);
- the next item follows the last one: often the "follow-up" of the last item (item i -> i + 1 in the
  same genre, like the next episode of a series) or another item of the same genre; otherwise a genre
  drawn from the user's current preference, or explored at random. Within a genre, items are drawn by
  popularity. A user never sees the same item twice;
- rating = clip(round(2.8 + 1.5 * affinity(user, genre) + quality(item) + noise), 1, 5), with
  affinity = tanh(preference) in (-1, 1): a reward model that reads the history can beat the user's
  and the item's mean rating, but only a bit, as on real data;
- timestamps increase per user with gaps from a minute to four weeks (log-normal, median 6 hours).

A sequence model therefore beats a most-popular ranking (genre persistence, follow-ups, preferences).
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from .interactions import Interactions

__all__ = ["MIN_EVENTS_PER_USER", "generate_synthetic_interactions", "write_movielens_file"]

MIN_EVENTS_PER_USER = 20  # as in MovieLens, every user has at least 20 events
_NUM_GENRES = 12
_ZIPF_EXPONENT = 0.9
_FOLLOW_UP, _SAME_GENRE, _EXPLORE = 0.25, 0.30, 0.10  # next-item modes; the rest follows the preference
_PREFERENCE_SHARPNESS = 1.5  # genre logits = sharpness * preference
_DRIFT = 0.08  # std of the preference's random-walk step per event
_RATING_BASE, _RATING_AFFINITY, _QUALITY_STD, _RATING_NOISE = 2.8, 1.5, 0.5, 0.6
_MEDIAN_GAP, _GAP_SIGMA, _MIN_GAP, _MAX_GAP = 6 * 3600, 2.0, 60, 28 * 86400  # seconds
_START_SPREAD = 2 * 365 * 86400  # users join over two years


def generate_synthetic_interactions(
    num_users: int = 1000,
    num_items: int = 300,
    mean_events: int = 60,
    seed: int = 0,
    start_timestamp: int = 978_300_000,
) -> Interactions:
    """Generates a deterministic synthetic interaction log (see the module docstring for the model).

    Args:
        num_users (`int`, defaults to 1000): number of users, ids 1..num_users.
        num_items (`int`, defaults to 300): catalogue size, ids 1..num_items (must be >= 20).
        mean_events (`int`, defaults to 60): mean events per user; each user has between 20 and
            min(3 * mean_events, num_items) events.
        seed (`int`, defaults to 0): seed of the `numpy.random.Generator`; the same seed gives the same log.
        start_timestamp (`int`, defaults to 978_300_000): Unix time of the earliest possible event.

    Returns:
        `Interactions` with int64 user and item ids, integer ratings 1..5 (float32) and int64 timestamps,
        ordered by user then time (about num_users * mean_events events).
    """
    if num_users < 1:
        raise ValueError(f"num_users must be >= 1, got {num_users}.")
    if num_items < MIN_EVENTS_PER_USER:
        raise ValueError(
            f"num_items must be >= {MIN_EVENTS_PER_USER} (each user has at least {MIN_EVENTS_PER_USER} distinct "
            f"items), got {num_items}."
        )
    if mean_events < MIN_EVENTS_PER_USER:
        raise ValueError(f"mean_events must be >= {MIN_EVENTS_PER_USER}, got {mean_events}.")
    rng = np.random.default_rng(seed)
    num_genres = min(_NUM_GENRES, num_items)

    # Items: genre blocks, Zipf-like popularity over a random rank order, and a quality offset.
    genre_of = (np.arange(num_items) * num_genres) // num_items  # (I,)
    log_popularity = -_ZIPF_EXPONENT * np.log(rng.permutation(num_items) + 1.0)  # (I,)
    quality = rng.normal(0.0, _QUALITY_STD, num_items)  # (I,)
    genre_penalty = np.where(genre_of[None, :] == np.arange(num_genres)[:, None], 0.0, -1e4)  # (G, I)

    # Users: number of events, initial preference, start time.
    max_events = min(3 * mean_events, num_items)
    extra = rng.exponential(max(mean_events - MIN_EVENTS_PER_USER, 1e-9), num_users)
    lengths = np.clip(MIN_EVENTS_PER_USER + np.round(extra).astype(np.int64), MIN_EVENTS_PER_USER, max_events)
    preference = rng.normal(0.0, 1.0, (num_users, num_genres))  # (U, G)
    seen = np.zeros((num_users, num_items), dtype=bool)  # (U, I)
    last = np.full(num_users, -1, dtype=np.int64)

    steps = int(lengths.max())
    items = np.zeros((num_users, steps), dtype=np.int64)  # (U, S) item index per step
    ratings = np.zeros((num_users, steps), dtype=np.float32)
    # Simulate all users in lock-step: one vectorised step per event position, no per-event Python.
    for step in range(steps):
        users = np.flatnonzero(lengths > step)  # (A,) users still active
        active = len(users)
        preference[users] += rng.normal(0.0, _DRIFT, (active, num_genres))
        mode = rng.random(active)
        preferred = np.argmax(
            _PREFERENCE_SHARPNESS * preference[users] + rng.gumbel(size=(active, num_genres)), 1
        )
        explored = rng.integers(0, num_genres, active)
        genre = np.where(mode < 1.0 - _EXPLORE, preferred, explored)
        previous = last[users]
        has_previous = previous >= 0
        stay = has_previous & (mode < _FOLLOW_UP + _SAME_GENRE)
        genre = np.where(stay, genre_of[np.maximum(previous, 0)], genre)
        # Popularity-weighted draw inside the genre (Gumbel-max); other genres only if it is exhausted.
        scores = log_popularity[None, :] + rng.gumbel(size=(active, num_items)) + genre_penalty[genre]
        scores[seen[users]] = -np.inf
        chosen = np.argmax(scores, axis=1)
        follow_up = previous + 1
        can_follow = (
            has_previous
            & (mode < _FOLLOW_UP)
            & (follow_up < num_items)
            & (genre_of[np.minimum(follow_up, num_items - 1)] == genre_of[np.maximum(previous, 0)])
        )
        can_follow &= ~seen[users, np.minimum(follow_up, num_items - 1)]
        chosen = np.where(can_follow, follow_up, chosen)

        affinity = np.tanh(preference[users, genre_of[chosen]])
        noise = rng.normal(0.0, _RATING_NOISE, active)
        rating = np.clip(np.round(_RATING_BASE + _RATING_AFFINITY * affinity + quality[chosen] + noise), 1, 5)
        seen[users, chosen] = True
        last[users] = chosen
        items[users, step] = chosen
        ratings[users, step] = rating

    gaps = np.clip(rng.lognormal(np.log(_MEDIAN_GAP), _GAP_SIGMA, (num_users, steps)), _MIN_GAP, _MAX_GAP)
    starts = start_timestamp + rng.integers(0, _START_SPREAD, num_users)
    times = starts[:, None] + np.cumsum(gaps.astype(np.int64), axis=1) - gaps.astype(np.int64)[:, :1]

    valid = np.arange(steps)[None, :] < lengths[:, None]  # (U, S); row-major flattening = user, then time
    user_ids = np.broadcast_to(np.arange(1, num_users + 1, dtype=np.int64)[:, None], valid.shape)[valid]
    return Interactions(
        user_ids=user_ids,
        item_ids=items[valid] + 1,  # raw ids 1..num_items
        ratings=ratings[valid],
        timestamps=times[valid].astype(np.int64),
        source=f"synthetic(seed={seed})",
    )


def write_movielens_file(interactions: Interactions, path: str | os.PathLike) -> str:
    """Writes `interactions` in the MovieLens `user::item::rating::timestamp` format (gzip if `path`
    ends in `.gz`), readable by `read_movielens` and `hf-genrec prepare --format movielens`.

    Integral ratings are written without decimals (`5`, not `5.0`). Returns the path written.
    """
    path = os.fspath(path)
    for column, values in (("user", interactions.user_ids), ("item", interactions.item_ids)):
        if values.dtype.kind == "O":
            bad = [value for value in values.tolist() if "::" in value or "\n" in value or not value.strip()]
            if bad:
                raise ValueError(
                    f"{column} id {bad[0]!r} cannot be written in the MovieLens format (it is empty or holds "
                    "'::' or a newline). Fix: map the ids to integers first."
                )
    ratings = interactions.ratings
    integral = bool(np.all(ratings == np.round(ratings)))
    rating_text = (
        ratings.astype(np.int64).tolist()
        if integral
        else [np.format_float_positional(value, trim="-") for value in ratings]
    )
    text = "".join(
        f"{user}::{item}::{rating}::{timestamp}\n"
        for user, item, rating, timestamp in zip(
            interactions.user_ids.tolist(),
            interactions.item_ids.tolist(),
            rating_text,
            interactions.timestamps.tolist(),
        )
    )
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    data = text.encode("utf-8")
    if path.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same log always gives the same bytes
    with open(path, "wb") as handle:
        handle.write(data)
    return path
