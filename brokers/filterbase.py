"""What every filter module shares: the compiled form of a check, and the error of a bad filter.

Its own module so brokers/filters.py (the dialects) and brokers/datafilter.py (the `data`
dialect, loaded by filters.py only when a trigger uses it) both import it and not each other.
"""

from __future__ import annotations

from collections.abc import Callable

from brokers.errors import BrokerError
from brokers.event import Event

Predicate = Callable[[Event], bool]
"""A compiled check: True when the event matches. Never raises, allocates nothing per event."""


class FilterError(BrokerError, ValueError):
    """A filter cannot be used; the message says which part and why.

    A `ValueError` too, as it was before it joined the `BrokerError` tree: config loading
    catches both alike and names the file and trigger (brokers/triggers.py).
    """
