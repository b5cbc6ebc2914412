"""Keyed state behind one small protocol: where the feature engine keeps every per-key table.

``KeyedStore`` is get/put/delete/items with a bound on the number of keys (least recently written goes
first) and an optional time to live in event time (a key not written for ``ttl_ms`` is dropped by
``expire``). ``get`` only reads: it neither refreshes the key's age nor its place in the LRU order; ``put``
does both. Two implementations:

* ``MemoryStore``: an ordered dict, for tests, benchmarks, replay and the per-conveyance join in a worker;
* ``ChangelogStore``: a ``MemoryStore`` that also records which keys changed since the last
  ``drain_changes()`` and returns their snapshots as plain dicts (``None`` for a key that was deleted or
  evicted), which the worker writes to its changelog after each batch and ``restore`` loads back.

Pure: no I/O, event time passed in.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeyedStore(Protocol[K, V]):
    """Bounded per-key state: ``max_keys`` keys at most, ``ttl_ms`` of event time without a write."""

    max_keys: int
    ttl_ms: int | None

    def get(self, key: K) -> V | None: ...

    def put(self, key: K, value: V, ts_ms: int) -> None: ...

    def delete(self, key: K) -> None: ...

    def items(self) -> Iterator[tuple[K, V]]: ...

    def expire(self, now_ms: int, keep: Callable[[V], bool] | None = None) -> list[K]: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...


class MemoryStore(Generic[K, V]):
    """In memory, least recently written first. ``put`` stamps the key with the latest event time written."""

    __slots__ = ("_data", "_stamp", "evicted", "get", "max_keys", "ttl_ms")

    def __init__(self, max_keys: int, ttl_ms: int | None = None) -> None:
        if max_keys <= 0:
            raise ValueError("max_keys must be positive")
        self.max_keys = max_keys
        self.ttl_ms = ttl_ms
        self._data: OrderedDict[K, V] = OrderedDict()
        self._stamp: dict[K, int] = {}
        self.evicted = 0  # keys dropped because the store was full
        # the value of a key, or None; reading neither refreshes its age nor its LRU place (a bound C method:
        # this is on the per-GPS-point path)
        self.get: Callable[[K], V | None] = self._data.get

    def put(self, key: K, value: V, ts_ms: int) -> None:
        data = self._data
        if key in data:
            data.move_to_end(key)
            data[key] = value
            if ts_ms > self._stamp[key]:
                self._stamp[key] = ts_ms
            return
        data[key] = value
        self._stamp[key] = ts_ms
        if len(data) > self.max_keys:
            old, _ = data.popitem(last=False)
            del self._stamp[old]
            self.evicted += 1
            self._dropped(old)

    def delete(self, key: K) -> None:
        if key in self._data:
            del self._data[key]
            del self._stamp[key]
            self._dropped(key)

    def _dropped(self, key: K) -> None:
        """Hook: a key left the store (deleted, evicted or expired)."""

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._data.items()))

    def expire(self, now_ms: int, keep: Callable[[V], bool] | None = None) -> list[K]:
        """Drop keys not written for ``ttl_ms``, oldest first, stopping at the first one that is still live
        or that ``keep`` holds on to (its state is still needed). Returns the keys dropped."""
        if self.ttl_ms is None:
            return []
        cutoff = now_ms - self.ttl_ms
        out: list[K] = []
        data, stamp = self._data, self._stamp
        while data:
            key = next(iter(data))
            if stamp[key] >= cutoff or (keep is not None and keep(data[key])):
                break
            del data[key]
            del stamp[key]
            out.append(key)
            self._dropped(key)
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> MemoryStore[K, V]:
        """A copy with its own data: ``get`` is bound to the data it reads, so it is bound again (a copied
        bound method would still read the original's)."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for cls in type(self).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if slot != "get" and hasattr(self, slot):
                    setattr(new, slot, copy.deepcopy(getattr(self, slot), memo))
        new.get = new._data.get
        return new

    def stamp(self, key: K) -> int | None:
        """The latest event time written to ``key``."""
        return self._stamp.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class ChangelogStore(MemoryStore[K, V]):
    """A ``MemoryStore`` whose changes can be drained as plain-dict snapshots, and restored from them."""

    __slots__ = ("_changed", "from_dict", "to_dict")

    def __init__(
        self,
        max_keys: int,
        ttl_ms: int | None,
        to_dict: Callable[[V], dict[str, Any]],
        from_dict: Callable[[dict[str, Any]], V],
    ) -> None:
        super().__init__(max_keys, ttl_ms)
        self.to_dict = to_dict
        self.from_dict = from_dict
        self._changed: set[K] = set()

    def put(self, key: K, value: V, ts_ms: int) -> None:
        self._changed.add(key)
        data = self._data
        if key in data:  # the per-GPS-point path: the base class's put, inlined
            data.move_to_end(key)
            data[key] = value
            if ts_ms > self._stamp[key]:
                self._stamp[key] = ts_ms
            return
        MemoryStore.put(self, key, value, ts_ms)

    def _dropped(self, key: K) -> None:
        self._changed.add(key)

    def drain_changes(self) -> dict[K, dict[str, Any] | None]:
        """Every key changed since the last call: its snapshot, or ``None`` if it is gone."""
        data, to_dict = self._data, self.to_dict
        out: dict[K, dict[str, Any] | None] = {}
        for key in self._changed:
            v = data.get(key)
            out[key] = None if v is None else to_dict(v)
        self._changed.clear()
        return out

    def mark(self, key: K) -> None:
        """``key``'s value was changed in place: drain it, without refreshing its age or LRU place."""
        if key in self._data:
            self._changed.add(key)

    def rewrite(self, key: K, ts_ms: int) -> None:
        """``put(key, <its value>, ts_ms)`` for the key written last (already changed, already the most
        recent in the LRU order): only its age moves on. The run of one conveyance's GPS points."""
        if ts_ms > self._stamp[key]:
            self._stamp[key] = ts_ms

    def restore(self, key: K, value: V, ts_ms: int) -> None:
        """Load one key's restored value (not a change: it is not drained again)."""
        MemoryStore.put(self, key, value, ts_ms)
