"""Readers that turn interaction files into an `Interactions` log.

Each reader has two paths that give the same result:

- a fast path (pyarrow's multi-threaded CSV parser plus vectorised casts and checks) that reads
  MovieLens-1M's 1M rows in well under a second;
- a per-line path, taken only when the fast path sees anything unusual. It applies every check in
  file order, so the error a user gets is always the FIRST bad line, with its number, the field, the
  offending value and a fix. It also accepts the few spellings the fast path does not (e.g. " 5", "+5").

Plain and gzip files are both accepted; gzip is detected by its magic bytes, not by the suffix.
Fields are split on the separator only: quoting (`"a,b"`) is not supported. Values are checked in the dtype
they are stored in: a rating must be finite as float32 (`1e39` is refused, not stored as `inf`), a timestamp
must fit int64.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from .errors import DataFormatError
from .interactions import Interactions

__all__ = ["check_input_file", "read_movielens", "read_movielens_catalog", "read_delimited"]

logger = logging.getLogger(__name__)

USER, ITEM, RATING, TIMESTAMP = "user", "item", "rating", "timestamp"
ROLES = (USER, ITEM, RATING, TIMESTAMP)
_REQUIRED_ROLES = (USER, ITEM, TIMESTAMP)
_IGNORED = ("_", "")
_GZIP_MAGIC = b"\x1f\x8b"
_INT_PATTERN = re.compile(r"[+-]?[0-9]+")
_CANDIDATE_SEPARATORS = ("::", "\t", ",", ";", "|", " ")
_MAX_SHOWN = 120  # characters of a bad line quoted in a message
# Header names that say which role a column plays, compared after `_header_key` (lower case, letters and
# digits only, a RecBole `:type` suffix dropped: "user_id:token" -> "userid").
_HEADER_NAMES = {
    USER: ("user", "userid", "uid", "reviewerid"),
    ITEM: ("item", "itemid", "iid", "movie", "movieid", "product", "productid", "asin"),
    RATING: ("rating", "ratings", "score", "stars", "overall"),
    TIMESTAMP: ("timestamp", "time", "ts", "unixtime", "unixreviewtime"),
}
_DEFAULT_COLUMNS = (USER, ITEM, RATING, TIMESTAMP)


def read_movielens(
    path: str | os.PathLike,
    *,
    rating_scale: tuple[float, float] | None = (1, 5),
    encoding: str = "utf-8",
) -> Interactions:
    """Reads a MovieLens ratings file (`ratings.dat` of ML-1M / ML-10M): `UserID::MovieID::Rating::Timestamp`.

    Args:
        path: the file, plain or gzip.
        rating_scale: `(low, high)`; a rating outside it is an error. ML-1M uses `(1, 5)`, ML-10M `(0.5, 5)`;
            `None` disables the check.
        encoding: text encoding of the file (ratings files are ASCII).

    Returns:
        `Interactions` in file order; user and item ids are int64.
    """
    return _read_table(
        path,
        sep="::",
        roles=[USER, ITEM, RATING, TIMESTAMP],
        header=False,
        rating_scale=rating_scale,
        encoding=encoding,
    )


def read_movielens_catalog(path: str | os.PathLike, *, encoding: str = "latin-1") -> list[int]:
    """Item ids of a MovieLens `movies.dat` (`MovieID::Title::Genres`, latin-1), in file order.

    The catalogue has items nobody rated (3,883 movies vs 3,706 rated in ML-1M); use it when the item
    vocabulary must cover them too.
    """
    name = os.fspath(path)
    text = _decode(_read_bytes(path), name, encoding)
    ids: list[int] = []
    seen: dict[int, int] = {}
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        movie_id, sep, _ = line.partition("::")
        movie_id = movie_id.strip()
        if not sep:
            raise DataFormatError(
                f"{name} line {line_number}: expected 'MovieID::Title::Genres' but found no '::' separator in "
                f"{_shorten(line)!r}. Fix: pass the MovieLens movies.dat file."
            )
        if not _INT_PATTERN.fullmatch(movie_id):
            raise DataFormatError(
                f"{name} line {line_number}: field 'MovieID' is {movie_id!r}, not an integer. "
                "Fix: pass the MovieLens movies.dat file (MovieID::Title::Genres)."
            )
        value = int(movie_id)
        if value in seen:
            raise DataFormatError(
                f"{name} line {line_number}: field 'MovieID' is {value}, already listed on line {seen[value]}. "
                "Fix: remove the duplicate line."
            )
        seen[value] = line_number
        ids.append(value)
    if not ids:
        raise DataFormatError(f"{name}: no movies found (the file is empty). Fix: check the path.")
    return ids


def read_delimited(
    path: str | os.PathLike,
    *,
    sep: str = ",",
    columns: Sequence[str] | Mapping[str, str] | None = None,
    header: bool = False,
    rating_scale: tuple[float, float] | None = None,
    encoding: str = "utf-8",
) -> Interactions:
    """Reads a delimited text file (CSV, TSV, ...) of interactions, plain or gzip.

    Args:
        path: the file.
        sep: the field separator (one or more characters).
        columns: either, in file order, the role of each column: `"user"`, `"item"`, `"rating"`,
            `"timestamp"`, or `"_"`/`""` for a column to ignore; or, with `header=True`, a mapping
            role -> header name, e.g. `{"user": "reviewerID", "item": "asin", "rating": "overall",
            "timestamp": "unixReviewTime"}`. `user`, `item` and `timestamp` are required; without
            `rating` the data is implicit feedback and every rating is 1.0. `None` (the default): the roles
            the header names (see below), else `("user", "item", "rating", "timestamp")`.
        header: whether the first line is a header (it is skipped; header names are whitespace-stripped).
        rating_scale: `(low, high)`; a rating outside it is an error. `None` disables the check.
        encoding: text encoding of the file.

    Header names and roles: a header name *names a role* when, in lower case with only its letters and
    digits (and a RecBole `:type` suffix dropped), it is one of `_HEADER_NAMES` (e.g. `user`, `userId`,
    `user_id:token` name the user; `item`, `movieId`, `asin` the item; `rating`, `stars` the rating;
    `timestamp`, `time`, `ts` the timestamp). Then:

    - `columns=None`: when the header names user, item and timestamp once each, the columns are taken by
      name, in whatever order the file has them (`item,user,rating,timestamp` reads correctly). A role named
      by two columns is ambiguous and an error; a header that names fewer roles is read in the default order.
    - `columns` in file order: every column whose header names a role must be given that role (or `"_"`), and
      a role must not be put on another column while the header names it elsewhere. A disagreement is an
      error, never a silent swap: give the roles in the header's order, or map them by name.
    - `columns` as a mapping: the header names given are used as they are.

    Returns:
        `Interactions` in file order. Ids that are all canonical integers become int64, otherwise str.
    """
    if not sep:
        raise ValueError("sep must be a non-empty string, e.g. ',' or '\\t'.")
    roles: list[str] | dict[str, str] | None
    if columns is None:
        roles = None
    elif isinstance(columns, Mapping):
        if not header:
            raise ValueError(
                "columns is a mapping role -> header name, which needs header=True. "
                "Fix: pass header=True, or give `columns` as a sequence of roles in file order."
            )
        _check_roles(list(columns), allow_ignored=False)
        roles = {str(role): str(name) for role, name in columns.items()}
    else:
        if isinstance(columns, str):
            raise ValueError(f"columns must be a sequence of roles, not the string {columns!r}.")
        roles = [str(role) for role in columns]
        _check_roles(roles, allow_ignored=True)
    return _read_table(
        path, sep=sep, roles=roles, header=header, rating_scale=rating_scale, encoding=encoding
    )


def check_input_file(path: str | os.PathLike, flag: str | None = None, what: str = "file") -> str:
    """`path` as a string if it is a readable file; else a message that says what it is instead.

    Args:
        path: the file.
        flag: the command-line flag that gave it (e.g. `"--input"`), for the message.
        what: what the file should be, for the message.

    Raises:
        DataFormatError: `path` is a directory.
        FileNotFoundError: nothing is there.
    """
    name = os.fspath(path)
    label = f"{flag} {name!r}" if flag else repr(name)
    if os.path.isdir(name):
        inside = sorted(entry for entry in os.listdir(name) if os.path.isfile(os.path.join(name, entry)))
        ratings = [entry for entry in inside if entry.lower().startswith("ratings")]
        example = os.path.join(name, (ratings or inside or ["ratings.dat"])[0])
        held = f" holding {inside[:5]}" if inside else ""
        raise DataFormatError(
            f"{label} is a directory{held}, not a {what}. Fix: pass the file itself, e.g. {example!r}."
        )
    if not os.path.isfile(name):
        given = f" given to {flag}" if flag else ""
        raise FileNotFoundError(f"Input file {name!r}{given} does not exist. Fix: check the path.")
    return name


# ---------------------------------------------------------------------------------------------------------
# Shared implementation
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """Where each role lives in a split line."""

    num_fields: int
    positions: dict[str, int]  # role -> field index
    names: dict[str, str]  # role -> how messages name it: "field 'rating' (column 'overall')"


def _check_roles(roles: list[str], *, allow_ignored: bool) -> None:
    used = [role for role in roles if not (allow_ignored and role in _IGNORED)]
    unknown = [role for role in used if role not in ROLES]
    if unknown:
        raise ValueError(
            f"unknown column role {unknown[0]!r}. Fix: use one of {list(ROLES)}"
            + (", or '_' for a column to ignore." if allow_ignored else ".")
        )
    duplicated = sorted({role for role in used if used.count(role) > 1})
    if duplicated:
        raise ValueError(f"column role {duplicated[0]!r} is given twice. Fix: give each role one column.")
    missing = [role for role in _REQUIRED_ROLES if role not in used]
    if missing:
        raise ValueError(
            f"columns {roles!r} lack the required role(s) {missing}. Fix: name the columns that hold "
            "the user, the item and the timestamp (the rating is optional: implicit data gets 1.0)."
        )


def _read_bytes(path: str | os.PathLike) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic bytes."""
    name = check_input_file(path)
    with open(name, "rb") as handle:
        data = handle.read()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFormatError(
            f"{name}: cannot decompress it ({error}): the file is truncated or corrupt; re-download it."
        ) from error


def _decode(data: bytes, name: str, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line_number = data.count(b"\n", 0, error.start) + 1
        raise DataFormatError(
            f"{name} line {line_number}: byte {data[error.start : error.start + 1]!r} is not valid {encoding}. "
            f"Fix: pass the file's encoding (e.g. encoding='latin-1')."
        ) from error


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _header_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.split(":", 1)[0].lower())


def _header_roles(found: list[str]) -> list[str | None]:
    """The role each header name names (`_HEADER_NAMES`), or `None`."""
    by_key = {key: role for role, keys in _HEADER_NAMES.items() for key in keys}
    return [by_key.get(_header_key(column)) for column in found]


def _roles_from_header(found: list[str], named: list[str | None], name: str) -> dict[str, str] | None:
    """role -> header name when the header names every required role once; `None` when it names too few."""
    for role in ROLES:
        columns = [found[i] for i, named_role in enumerate(named) if named_role == role]
        if len(columns) > 1:
            raise DataFormatError(
                f"{name} line 1: the header columns {columns} all look like the {role}; which one is meant is "
                f"ambiguous. Fix: say it with columns as role=name (--columns {role}={columns[0]},...)."
            )
    if not all(role in named for role in _REQUIRED_ROLES):
        return None
    return {role: found[named.index(role)] for role in ROLES if role in named}


def _check_against_header(roles: Sequence[str], found: list[str], named: list[str | None], name: str) -> None:
    """Positional roles must not contradict the roles the header names."""
    for index, role in enumerate(roles):
        header_role = named[index]
        if header_role is not None and role not in (header_role, *_IGNORED):
            conflict = (
                f"column {index + 1} is {found[index]!r} (the {header_role}) but `columns` reads it as the {role}"
            )
        elif role not in _IGNORED and header_role != role and named.count(role) == 1:
            other = named.index(role)
            conflict = (
                f"`columns` reads column {index + 1} ({found[index]!r}) as the {role} but the header names "
                f"column {other + 1} ({found[other]!r}) the {role}"
            )
        else:
            continue
        order = "the roles in the header's order"
        if None not in named:
            order += f" (--columns {','.join(named)})"
        raise DataFormatError(
            f"{name} line 1: {conflict}, so users, items or times would be read swapped (columns {list(roles)}, "
            f"header {found}). Fix: give {order}, or map roles to header names (--columns user=NAME,item=NAME,...)."
        )


def _resolve_layout(
    roles: Sequence[str] | Mapping[str, str] | None, header_line: str | None, sep: str, name: str
) -> _Layout:
    """Maps each role to its field index, checking the header against `roles` when there is one."""
    if header_line is None:
        roles = _DEFAULT_COLUMNS if roles is None else roles
        positions = {role: index for index, role in enumerate(roles) if role not in _IGNORED}
        return _Layout(len(roles), positions, {role: f"field '{role}'" for role in positions})
    found = [field.strip() for field in header_line.rstrip("\r").split(sep)]
    guess = _guess_separator(header_line, sep) if len(found) == 1 else None
    separator_hint = f" The header contains {guess!r}: pass sep={guess!r} (--sep {guess!r})." if guess else ""
    named = _header_roles(found)
    if roles is None:
        roles = _roles_from_header(found, named, name) or _DEFAULT_COLUMNS
    if isinstance(roles, Mapping):
        positions, names = {}, {}
        for role, column in roles.items():
            if column not in found:
                raise DataFormatError(
                    f"{name} line 1: the header has no column {column!r} (for field '{role}'); columns found: "
                    f"{found} (split on sep={sep!r}). Fix: map '{role}' to one of the columns found, or pass "
                    f"the separator the file uses.{separator_hint}"
                )
            positions[role] = found.index(column)
            names[role] = f"field '{role}' (column '{column}')"
        return _Layout(len(found), positions, names)
    if len(found) != len(roles):
        raise DataFormatError(
            f"{name} line 1: the header has {len(found)} column(s) {found} (split on sep={sep!r}) but `columns` "
            f"gives {len(roles)} roles {list(roles)}. Fix: give one role per column ('_' to ignore one), "
            f"map roles to header names with a dict, or pass the separator the file uses.{separator_hint}"
        )
    _check_against_header(roles, found, named, name)
    positions = {role: index for index, role in enumerate(roles) if role not in _IGNORED}
    return _Layout(
        len(roles),
        positions,
        {role: f"field '{role}' (column '{found[i]}')" for role, i in positions.items()},
    )


def _read_table(
    path: str | os.PathLike,
    *,
    sep: str,
    roles: Sequence[str] | Mapping[str, str] | None,
    header: bool,
    rating_scale: tuple[float, float] | None,
    encoding: str,
) -> Interactions:
    name = os.fspath(path)
    if rating_scale is not None:
        low, high = (float(bound) for bound in rating_scale)
        if not low <= high:
            raise ValueError(f"rating_scale {rating_scale!r} must be (low, high) with low <= high.")
        rating_scale = (low, high)
    data = _read_bytes(path)
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig") and data.startswith(
        b"\xef\xbb\xbf"
    ):
        data = data[3:]  # a UTF-8 byte-order mark would otherwise stick to the first field
    if not data or data.isspace():  # not `data.strip()`: that copies the whole file (550 MB at 20M events)
        raise DataFormatError(
            f"{name}: no data rows (the file is empty). Fix: check the path, and that the download finished."
        )
    header_line = None
    if header:
        header_line = _decode(data.split(b"\n", 1)[0], name, encoding)
    layout = _resolve_layout(roles, header_line, sep, name)
    columns = _fast_parse(data, name, sep, layout, header, rating_scale, encoding)
    # Arrow's allocator keeps the parse's freed temporaries (GBs at 20M events) until asked to return them.
    pa.default_memory_pool().release_unused()
    if columns is None:
        columns = _slow_parse(data, name, sep, layout, header, rating_scale, encoding)
    user_ids, item_ids, ratings, timestamps = columns
    logger.info("Read %d interactions from %s.", len(user_ids), name)
    return Interactions(user_ids, item_ids, ratings, timestamps, source=name)


_Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _fast_parse(
    data: bytes,
    name: str,
    sep: str,
    layout: _Layout,
    header: bool,
    rating_scale: tuple[float, float] | None,
    encoding: str,
) -> _Columns | None:
    """pyarrow parse + vectorised checks; `None` whenever anything is off (the slow path then explains)."""
    if sep == "\r":
        return None
    split = _single_character_split(data, sep, encoding)
    if split is None:
        return None
    data, delimiter, stride = split
    # With `stride` > 1 (see `_single_character_split`), field f of a line is column f * stride.
    names = [f"f{index}" for index in range((layout.num_fields - 1) * stride + 1)]
    wanted = {role: names[index * stride] for role, index in layout.positions.items()}
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(
                column_names=names, skip_rows=1 if header else 0, encoding=encoding
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                double_quote=False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=True,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(wanted.values(), pa.string()),
                include_columns=list(wanted.values()),
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, LookupError, ValueError):
        return None
    num_rows = table.num_rows
    if num_rows == 0:
        return None
    text = {role: pc.utf8_trim_whitespace(table.column(column)) for role, column in wanted.items()}
    del table  # the untrimmed text: a file-sized copy not needed any more
    try:
        ids = []
        for role in (USER, ITEM):
            if pc.any(pc.equal(text[role], "")).as_py():
                return None
            ids.append(_fast_ids(text[role]))
        if RATING in text:
            ratings = pc.cast(text[RATING], pa.float64()).to_numpy()
            if not np.isfinite(_as_float32(ratings)).all():
                return None
            if rating_scale is not None and ((ratings < rating_scale[0]) | (ratings > rating_scale[1])).any():
                return None
        else:
            ratings = np.ones(num_rows, dtype=np.float64)
        try:
            timestamps = pc.cast(text[TIMESTAMP], pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            as_float = pc.cast(text[TIMESTAMP], pa.float64()).to_numpy()
            if not (np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()):
                return None
            if np.abs(as_float).max() >= 2.0**53:
                return None
            timestamps = as_float.astype(np.int64)
        if (timestamps < 0).any():
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return ids[0], ids[1], ratings.astype(np.float32), timestamps.astype(np.int64)


def _single_character_split(data: bytes, sep: str, encoding: str) -> tuple[bytes, str, int] | None:
    """`(data, delimiter, stride)` for pyarrow, which splits on one character; `None` when it cannot.

    A separator made of one ASCII character repeated (MovieLens' `::`) is split on that character, with
    `stride` = its length: every run of that character in the file must then be a whole number of separators
    (counted without copying the file), so that the fields between two separators are empty and a line splits
    into the same fields either way. Any other separator is swapped for a byte the file does not contain (a copy
    of the file).
    """
    if len(sep) == 1:
        return data, sep, 1
    try:
        encoded = sep.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return None
    if sep == sep[0] * len(sep) and sep.isascii() and encoded == sep.encode("ascii") and sep[0] not in "\r\n":
        if data.count(encoded) * len(sep) == data.count(encoded[:1]):
            return data, sep[0], len(sep)
    delimiter = next((c for c in ("\x1f", "\x1e", "\x1d", "\x1c") if c.encode() not in data), None)
    if delimiter is None:
        return None
    return data.replace(encoded, delimiter.encode()), delimiter, 1


def _as_float32(values: np.ndarray | float) -> np.ndarray:
    """`values` as the float32 ratings are stored in; a value beyond float32's range becomes inf (no warning)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32)


def _fast_ids(column: pa.ChunkedArray) -> np.ndarray:
    """int64 when every id is a canonical integer ("7", not "07" or "+7"), else an object array of str."""
    try:
        as_int = pc.cast(column, pa.int64())
        if pc.all(pc.equal(pc.cast(as_int, pa.string()), column)).as_py():
            return as_int.to_numpy()
    except pa.ArrowInvalid:
        pass
    return np.asarray(column.to_pylist(), dtype=object)


def _guess_separator(line: str, sep: str) -> str | None:
    for candidate in _CANDIDATE_SEPARATORS:
        if candidate != sep and candidate in line.strip():
            return candidate
    return None


def _slow_parse(
    data: bytes,
    name: str,
    sep: str,
    layout: _Layout,
    header: bool,
    rating_scale: tuple[float, float] | None,
    encoding: str,
) -> _Columns:
    """Per-line parse that raises a `DataFormatError` on the first bad line."""
    text = _decode(data, name, encoding)
    lines = text.split("\n")  # not splitlines(): it also splits on \x1c, \x85, ... and shifts line numbers
    first = 1 if header else 0
    positions = layout.positions
    user_at, item_at, time_at = positions[USER], positions[ITEM], positions[TIMESTAMP]
    rating_at = positions.get(RATING)
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    timestamps: list[int] = []
    for line_number, line in enumerate(lines[first:], start=first + 1):
        line = line.rstrip("\r")
        if not line.strip() and sep not in line:
            continue  # blank lines (e.g. the final newline) are not rows
        fields = line.split(sep)
        if len(fields) != layout.num_fields:
            raise _malformed(name, line_number, line, sep, layout.num_fields, len(fields))
        fields = [field.strip() for field in fields]
        for role, position in ((USER, user_at), (ITEM, item_at)):
            if not fields[position]:
                raise DataFormatError(
                    f"{name} line {line_number}: {layout.names[role]} is empty in {_shorten(line)!r}. "
                    f"Fix: every event needs a {role} id; complete or remove this line."
                )
        rating = 1.0
        if rating_at is not None:
            rating = _parse_rating(fields[rating_at], name, line_number, layout.names[RATING], rating_scale)
        timestamps.append(_parse_timestamp(fields[time_at], name, line_number, layout.names[TIMESTAMP]))
        users.append(fields[user_at])
        items.append(fields[item_at])
        ratings.append(rating)
    if not users:
        where = " apart from its header" if header else ""
        raise DataFormatError(
            f"{name}: no data rows (the file is empty{where}). Fix: check the path, and that the download finished."
        )
    return (
        _slow_ids(users),
        _slow_ids(items),
        np.asarray(ratings, dtype=np.float32),
        np.asarray(timestamps, dtype=np.int64),
    )


def _slow_ids(values: list[str]) -> np.ndarray:
    # Same rule as `_fast_ids`: int64 only if every id round-trips through int unchanged.
    try:
        as_int = [int(value) for value in values]
    except ValueError:
        return np.asarray(values, dtype=object)
    if all(str(number) == value for number, value in zip(as_int, values)) and all(
        -(2**63) <= number < 2**63 for number in as_int
    ):
        return np.asarray(as_int, dtype=np.int64)
    return np.asarray(values, dtype=object)


def _malformed(
    name: str, line_number: int, line: str, sep: str, expected: int, found: int
) -> DataFormatError:
    message = (
        f"{name} line {line_number}: expected {expected} fields separated by {sep!r}, found {found} "
        f"in {_shorten(line)!r}."
    )
    guess = _guess_separator(line, sep) if found == 1 else None
    if guess is not None:
        message += (
            f" The line has no {sep!r} but contains {guess!r}: the file seems to use another separator. "
            f"Fix: pass the file's separator (--sep {guess!r} on the command line, sep={guess!r} in Python)."
        )
    elif found == 1:
        message += f" Fix: the line has no {sep!r}; pass the file's separator with --sep (sep=...)."
    else:
        message += (
            f" Fix: every line needs exactly {expected} fields; complete or remove this line, or pass the "
            "file's separator (--sep on the command line, sep=... in Python)."
        )
    return DataFormatError(message)


def _parse_rating(
    value: str, name: str, line_number: int, field: str, rating_scale: tuple[float, float] | None
) -> float:
    try:
        if "_" in value:  # float() accepts "1_0"; a rating file should not
            raise ValueError(value)
        rating = float(value)
    except ValueError:
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, not a number. "
            "Fix: ratings must be numeric (e.g. 1-5 stars); for implicit data without ratings, "
            "leave the rating column out of `columns`."
        ) from None
    if not math.isfinite(rating):
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, not a finite number. "
            "Fix: give the event a real rating, or remove the line."
        )
    if not np.isfinite(_as_float32(rating)):
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, beyond the float32 range ratings are stored in "
            f"(|rating| <= {float(np.finfo(np.float32).max):.4g}). Fix: correct the rating, or remove the line."
        )
    if rating_scale is not None and not rating_scale[0] <= rating <= rating_scale[1]:
        low, high = (f"{bound:g}" for bound in rating_scale)
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, outside the rating scale [{low}, {high}]. "
            "Fix: correct the rating, or pass the data's scale as rating_scale=(low, high) "
            "(e.g. (0.5, 5) for half stars; None disables the check)."
        )
    return rating


def _parse_timestamp(value: str, name: str, line_number: int, field: str) -> int:
    timestamp: int | None = None
    if _INT_PATTERN.fullmatch(value):
        timestamp = int(value)
    else:
        try:
            as_float = float(value) if "_" not in value else math.nan
        except ValueError:
            as_float = math.nan
        # "978300760.0" is an integer written as a float (RecBole's atomic files do this).
        if math.isfinite(as_float) and as_float == round(as_float) and abs(as_float) < 2.0**53:
            timestamp = int(as_float)
    if timestamp is None:
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, not an integer. "
            "Fix: timestamps must be whole Unix seconds (e.g. 978300760); convert dates to Unix time first."
        )
    if timestamp < 0:
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, a negative time. "
            "Fix: timestamps must be Unix seconds >= 0; correct or remove this line."
        )
    if timestamp >= 2**63:
        raise DataFormatError(
            f"{name} line {line_number}: {field} is {value!r}, too large for int64. "
            "Fix: timestamps must be Unix seconds."
        )
    return timestamp
