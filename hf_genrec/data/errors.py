"""Exceptions raised by the data pipeline.

Every message follows one pattern so that a user can act on it without reading the code:
*where* (file and line), *what* (field and offending value) and *how to fix it*.
"""

from __future__ import annotations

__all__ = ["DataFormatError", "UnknownItemError"]


class DataFormatError(ValueError):
    """An input file or row does not have the expected format.

    Example message::

        ratings.dat line 17: field 'rating' is 'abc', not a number. Fix: ratings must be numeric (e.g. 1-5 stars).
    """


class UnknownItemError(KeyError):
    """An item id is not in the item vocabulary.

    `KeyError` quotes its argument with `repr` when printed, which turns a long explanation into an
    unreadable one-liner; `__str__` returns the message as written instead.
    """

    def __init__(self, message: str, item_id: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.item_id = item_id

    def __str__(self) -> str:
        return self.message
