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
import pyarrow as pa
import pyarrow.compute as pc

from .interactions import Interactions

__all__ = [
    "MIN_EVENTS_PER_USER",
    "generate_scale_log",
    "generate_synthetic_interactions",
    "write_movielens_file",
]

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


# The scale log (`generate_scale_log`): MovieLens-20M's shape (median 68, mean 144 events per user, at least 20).
_SCALE_ACTIVITY_SIGMA = 1.4  # log-normal spread of per-user activity above the minimum: mean/median ~ 2.7
_SCALE_POPULARITY_ROUNDS = 16  # redraws of repeated items by popularity before uniform redraws finish the job
_SCALE_RATING_BASE, _SCALE_USER_STD, _SCALE_RATING_NOISE = 3.5, 0.4, 0.8


def generate_scale_log(
    num_events: int,
    num_users: int,
    num_items: int,
    seed: int = 0,
    start_timestamp: int = 978_300_000,
) -> Interactions:
    """Generates a large synthetic log fast (vectorised, O(num_events log num_events)), for scale benchmarks.

    Unlike `generate_synthetic_interactions` (a world model whose cost grows with users x items), this log has
    no sequential structure to learn; it has the statistics that drive cost: a Zipf-like item popularity, a
    log-normal spread of events per user (every user has at least 20, none more than `num_items // 2`), no
    repeated item within a user, timestamps that increase per user (gaps from a minute to four weeks), and
    ratings 1..5 with an item and a user effect.

    Args:
        num_events (`int`): exact number of events, between `20 * num_users` and `num_users * (num_items // 2)`.
        num_users (`int`): number of users, ids 1..num_users.
        num_items (`int`): catalogue size, ids 1..num_items (>= 40); some rare items may get no event.
        seed (`int`, defaults to 0): seed of the `numpy.random.Generator`; the same seed gives the same log.
        start_timestamp (`int`, defaults to 978_300_000): Unix time of the earliest possible event.

    Returns:
        `Interactions` with int64 user and item ids, integer ratings 1..5 (float32) and int64 timestamps,
        ordered by user then time.
    """
    max_per_user = num_items // 2
    if num_users < 1:
        raise ValueError(f"num_users must be >= 1, got {num_users}.")
    if max_per_user < MIN_EVENTS_PER_USER:
        raise ValueError(f"num_items must be >= {2 * MIN_EVENTS_PER_USER}, got {num_items}.")
    if not MIN_EVENTS_PER_USER * num_users <= num_events <= max_per_user * num_users:
        raise ValueError(
            f"num_events={num_events} does not fit {num_users} users with {MIN_EVENTS_PER_USER} to "
            f"{max_per_user} (num_items // 2) events each. Fix: pass num_events between "
            f"{MIN_EVENTS_PER_USER * num_users} and {max_per_user * num_users}, or change num_users."
        )
    rng = np.random.default_rng(seed)
    lengths = _scale_lengths(rng, num_events, num_users, max_per_user)
    users = np.repeat(np.arange(num_users, dtype=np.int64), lengths)  # (E,) grouped by user
    items = _distinct_items(rng, users, num_items)

    quality = rng.normal(0.0, _QUALITY_STD, num_items)
    user_bias = rng.normal(0.0, _SCALE_USER_STD, num_users)
    noise = rng.normal(0.0, _SCALE_RATING_NOISE, num_events)
    ratings = np.clip(np.round(_SCALE_RATING_BASE + quality[items] + user_bias[users] + noise), 1, 5)

    gaps = np.clip(rng.lognormal(np.log(_MEDIAN_GAP), _GAP_SIGMA, num_events), _MIN_GAP, _MAX_GAP)
    elapsed = np.cumsum(gaps.astype(np.int64))
    first = np.zeros(num_users, dtype=np.int64)
    np.cumsum(lengths[:-1], out=first[1:])
    starts = start_timestamp + rng.integers(0, _START_SPREAD, num_users)
    # A user's clock starts at its first event: subtract the running total reached there.
    timestamps = (starts - elapsed[first])[users] + elapsed
    return Interactions(
        user_ids=users + 1,
        item_ids=items + 1,
        ratings=ratings.astype(np.float32),
        timestamps=timestamps,
        source=f"scale_log(seed={seed})",
    )


def _scale_lengths(rng: np.random.Generator, num_events: int, num_users: int, max_per_user: int) -> np.ndarray:
    """(num_users,) events per user, summing to `num_events`: 20 each plus a log-normal share of the rest."""
    extra_total = num_events - MIN_EVENTS_PER_USER * num_users
    room = max_per_user - MIN_EVENTS_PER_USER
    weights = rng.lognormal(0.0, _SCALE_ACTIVITY_SIGMA, num_users)
    extra = np.minimum(np.floor(weights * (extra_total / weights.sum())).astype(np.int64), room)
    missing = extra_total - int(extra.sum())
    while missing > 0:  # the rounding remainder, and what the cap cut off, one event each to users with room
        open_users = np.flatnonzero(extra < room)
        chosen = rng.choice(open_users, size=min(missing, len(open_users)), replace=False)
        extra[chosen] += 1
        missing -= len(chosen)
    return MIN_EVENTS_PER_USER + extra


def _distinct_items(rng: np.random.Generator, users: np.ndarray, num_items: int) -> np.ndarray:
    """(E,) 0-based items drawn by Zipf-like popularity, never the same item twice for one user.

    All events are drawn at once; the repeats (found by one sort of user * num_items + item) are redrawn,
    checked against what the user already has, until none is left: by popularity first, then uniformly, which
    always ends because a user has at most half the catalogue.
    """
    popularity = np.exp(-_ZIPF_EXPONENT * np.log(rng.permutation(num_items) + 1.0))
    cdf = np.cumsum(popularity / popularity.sum())
    items = np.minimum(np.searchsorted(cdf, rng.random(len(users)), side="right"), num_items - 1)
    keys = users * num_items + items
    order = np.argsort(keys, kind="stable")
    taken = keys[order]
    same = taken[1:] == taken[:-1]
    repeated = np.zeros(len(keys), dtype=bool)
    repeated[order[1:][same]] = True
    taken = taken[1:][~same]  # the (user, item) pairs already held, sorted (np.unique would hash 20M keys)
    taken = np.concatenate([keys[order[:1]], taken])
    pending = np.flatnonzero(repeated)
    added = np.empty(0, dtype=np.int64)  # pairs accepted by redraws, sorted
    redraw = 0
    while pending.size:
        if redraw < _SCALE_POPULARITY_ROUNDS:
            new = np.minimum(np.searchsorted(cdf, rng.random(pending.size), side="right"), num_items - 1)
        else:
            new = rng.integers(0, num_items, pending.size)
        new_keys = users[pending] * num_items + new
        accept = np.zeros(pending.size, dtype=bool)
        accept[np.unique(new_keys, return_index=True)[1]] = True  # one of two equal redraws
        accept &= ~_contains(taken, new_keys) & ~_contains(added, new_keys)
        items[pending[accept]] = new[accept]
        added = np.sort(np.concatenate([added, new_keys[accept]]))
        pending = pending[~accept]
        redraw += 1
    return items


def _contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each of `values` is in `sorted_values` (binary search)."""
    if sorted_values.size == 0:
        return np.zeros(values.shape, dtype=bool)
    positions = np.minimum(np.searchsorted(sorted_values, values), sorted_values.size - 1)
    return sorted_values[positions] == values


_WRITE_CHUNK = 1 << 20  # events formatted at a time: bounded memory for a 20M-event log


def _movielens_lines(interactions: Interactions, start: int, stop: int) -> bytes:
    """`user::item::rating::timestamp\\n` lines of events `start:stop`, formatted by Arrow, not per event in Python."""
    ratings = interactions.ratings[start:stop]
    if np.all(ratings == np.round(ratings)):
        rating_text = pa.array(ratings.astype(np.int64)).cast(pa.string())
    else:  # numpy's shortest float32 text ("3.5"), as the ids and ratings have always been written
        rating_text = pa.array([np.format_float_positional(value, trim="-") for value in ratings], pa.string())
    fields = [
        pa.array(values[start:stop]).cast(pa.string())
        for values in (interactions.user_ids, interactions.item_ids, interactions.timestamps)
    ]
    lines = pc.binary_join_element_wise(fields[0], fields[1], rating_text, fields[2], "::")
    lines = pc.binary_join_element_wise(lines, "", "\n").cast(pa.large_string())
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    return lines.buffers()[2][int(offsets[0]) : int(offsets[-1])].to_pybytes()


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
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    chunks = (_movielens_lines(interactions, start, start + _WRITE_CHUNK)
              for start in range(0, len(interactions), _WRITE_CHUNK))
    if path.endswith(".gz"):
        data = gzip.compress(b"".join(chunks), mtime=0)  # mtime=0: the same log always gives the same bytes
        with open(path, "wb") as handle:
            handle.write(data)
        return path
    with open(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return path
