"""A fast-adapting memory of hit rates per feature bin, with optimism for bins that have few labels.

The linear model learns smooth, global weights and moves slowly (that is what keeps it stable). A new
typology shows up as facts in a region the labels have never covered (a self-drive car crossing 8 times a
day, a new HS heading, a new origin). This memory keeps, per encoded key and value bin, the weighted count
of labels and of violations, and gives each declaration a lift in log-odds:

    rate(bin)  = (violations + m * base) / (labels + m)            (Beta-smoothed towards the base rate)
    lift(bin)  = log(rate(bin) / base), positive part, only once a bin has ``min_labels`` labels
    bonus      = ``explore`` log-odds for a bin with fewer than ``min_labels`` labels whose key the model has
                 never seen labelled at that magnitude (optimism in the face of uncertainty)

The declaration's lift is the largest over its bins. A region that keeps being inspected and found clean
loses its bonus after ``min_labels`` labels; a region that turns out bad keeps a high lift at once (a few
labels are enough), long before the linear weights catch up. Bounded: at most ``max_bins`` bins, least
recently updated first out.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

BINS_PER_UNIT = 4


BinKey = tuple[str, int]


def bin_keys(x: Mapping[str, float]) -> list[BinKey]:
    """One bin per encoded key: ``(key, int(value * BINS_PER_UNIT))`` (categorical keys have value 1)."""
    return [(k, int(v * BINS_PER_UNIT)) for k, v in x.items()]


_UNSEEN = -1.0  # cached marker: fewer than min_labels labels, the explore bonus applies


class BinMemory:
    def __init__(
        self,
        prior_labels: float = 4.0,
        min_labels: float = 3.0,
        explore: float = 2.0,
        max_lift: float = 4.0,
        max_bins: int = 50_000,
        warm_labels: float = 100.0,
        refresh_every: int = 1000,
    ) -> None:
        self.prior_labels = prior_labels
        self.min_labels = min_labels
        self.explore = explore
        self.max_lift = max_lift
        self.max_bins = max_bins
        self.warm_labels = warm_labels  # no exploration bonus before the memory has this many labels
        self.refresh_every = refresh_every
        self.bins: OrderedDict[BinKey, list[float]] = OrderedDict()
        # lift per bin, kept up to date on learn, so scoring is one nested dict lookup per key
        self.lifts: dict[str, dict[int, float]] = {}
        self.pos = 1.0
        self.n = 30.0  # start near a 3% base rate
        self._since_refresh = 0

    @property
    def base(self) -> float:
        return self.pos / self.n

    def _bin_lift(self, st: list[float]) -> float:
        if st[1] < self.min_labels:
            return _UNSEEN
        base = self.pos / self.n
        rate = (st[0] + self.prior_labels * base) / (st[1] + self.prior_labels)
        return min(max(math.log(rate / base), 0.0), self.max_lift)

    def lift(self, x: Mapping[str, float]) -> tuple[float, BinKey | None]:
        """The largest lift over the declaration's bins, and the bin it came from."""
        explore = self.explore if self.n > self.warm_labels else 0.0
        best, where = 0.0, None
        lifts = self.lifts
        for k, v in x.items():
            d = lifts.get(k)
            b = int(v * BINS_PER_UNIT)
            lift = d.get(b, _UNSEEN) if d is not None else _UNSEEN
            if lift == _UNSEEN:
                lift = explore
            if lift > best:
                best, where = lift, (k, b)
        return min(best, self.max_lift), where

    def learn(self, x: Mapping[str, float], label: bool, weight: float = 1.0) -> None:
        y = weight if label else 0.0
        self.pos += y
        self.n += weight
        bins = self.bins
        for key in bin_keys(x):
            st = bins.get(key)
            if st is None:
                st = bins[key] = [0.0, 0.0]
                if len(bins) > self.max_bins:
                    (k, b), _ = bins.popitem(last=False)
                    self.lifts.get(k, {}).pop(b, None)
            else:
                bins.move_to_end(key)
            st[0] += y
            st[1] += weight
            self.lifts.setdefault(key[0], {})[key[1]] = self._bin_lift(st)
        self._since_refresh += 1
        if self._since_refresh >= self.refresh_every:  # the base rate moved: re-derive every cached lift
            self._since_refresh = 0
            for (k, b), st in bins.items():
                self.lifts[k][b] = self._bin_lift(st)

    def state(self) -> dict[str, Any]:
        return {"pos": self.pos, "n": self.n, "bins": [[k, b, *v] for (k, b), v in self.bins.items()]}
