"""Entities of a news item: cashtags (``$AAPL``) and a watchlist of companies with aliases.

Pure standard library (``re``): used on the monitor's hot path for every item.

>>> wl = Watchlist([Company("AAPL", "Apple", aliases=["Apple Inc", "iPhone maker"])])
>>> extract_entities("$TSLA falls; Apple Inc beats estimates", wl)
['TSLA', 'AAPL']
"""

from __future__ import annotations

import re
import string
from dataclasses import asdict, dataclass, field

from tuneforge.errors import ConfigError

_CASHTAG_NAME = r"[A-Za-z][A-Za-z]{0,5}(?:\.[A-Za-z]{1,2})?"
# $AAPL, $BRK.B; not $100 or $5bn (a ticker starts with a letter and is not followed by a digit)
CASHTAG = re.compile(r"(?<![\w$])\$(" + _CASHTAG_NAME + r")(?![\w])")
TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,5}(?:\.[A-Z]{1,2})?$")
# a feed's tag in front of a headline: "$AAPL - ...", "$BRK.B: ..."
LEADING_TAG = re.compile(r"^\$" + _CASHTAG_NAME + r"\s*[-:\u2013]\s*")


def ticker_tag(text: str, rng) -> str:
    """``$XYZ - <text>`` with a random ticker of 2 - 5 letters, the way a feed tags a headline with
    its company; a text that already starts with a tag gets a random ticker in its place.

    The finance task's ``text_augmenter``: which name a feed puts in front says nothing about the
    sentiment, so the model should not learn one from it (``text_augment`` in training).

    >>> import random
    >>> ticker_tag("$AAPL - Apple cut to sell", random.Random(0))
    '$YNBIQ - Apple cut to sell'
    """
    ticker = "".join(rng.choice(string.ascii_uppercase) for _ in range(rng.randint(2, 5)))
    return f"${ticker} - {LEADING_TAG.sub('', text, count=1)}"


@dataclass
class Company:
    """A watched company: its ticker (the entity key), display name and aliases (case-insensitive)."""

    ticker: str
    name: str = ""
    aliases: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.ticker = str(self.ticker).upper().lstrip("$")
        if not TICKER.match(self.ticker):
            raise ConfigError(f"watchlist: {self.ticker!r} is not a ticker (letters/digits, e.g. AAPL or BRK.B)")
        if not isinstance(self.aliases, list) or not all(isinstance(a, str) and a.strip() for a in self.aliases):
            raise ConfigError(f"watchlist {self.ticker}: aliases must be a list of non-empty strings")
        self.name = self.name or self.ticker

    def to_dict(self) -> dict:
        return asdict(self)


class Watchlist:
    """Companies to recognise in text by name or alias, plus (optionally) only these cashtags.

    ``only_listed``: keep cashtags of listed companies only (default: every cashtag is an entity).
    """

    def __init__(self, companies: list[Company] | None = None, *, only_listed: bool = False):
        self.companies = {c.ticker: c for c in companies or []}
        self.only_listed = only_listed
        names: dict[str, str] = {}
        for c in self.companies.values():
            # the name defaults to the ticker: a bare ticker word ("F", "ALL") is too ambiguous to match
            for alias in ([c.name] if c.name != c.ticker else []) + c.aliases:
                names[alias.strip().lower()] = c.ticker
        self._by_alias = names
        # longest first so "Apple Inc" wins over "Apple"; word boundaries on both sides
        alts = sorted(names, key=len, reverse=True)
        self._alias_re = (re.compile(r"(?<!\w)(" + "|".join(re.escape(a) for a in alts) + r")(?!\w)",
                                     re.IGNORECASE) if alts else None)

    @classmethod
    def from_config(cls, data) -> "Watchlist":
        """From TOML: ``[[watchlist.companies]]`` tables (ticker, name, aliases) or a list of them."""
        if data is None:
            return cls()
        if isinstance(data, list):
            data = {"companies": data}
        if not isinstance(data, dict):
            raise ConfigError("watchlist must be a table with a `companies` list")
        unknown = set(data) - {"companies", "only_listed"}
        if unknown:
            raise ConfigError(f"watchlist: unknown key(s) {sorted(unknown)}", hint="use companies, only_listed")
        companies = []
        for i, row in enumerate(data.get("companies", [])):
            if not isinstance(row, dict) or "ticker" not in row:
                raise ConfigError(f"watchlist company #{i + 1} needs a `ticker`")
            extra = set(row) - {"ticker", "name", "aliases"}
            if extra:
                raise ConfigError(f"watchlist company {row.get('ticker')}: unknown key(s) {sorted(extra)}")
            companies.append(Company(row["ticker"], row.get("name", ""), list(row.get("aliases", []))))
        return cls(companies, only_listed=bool(data.get("only_listed", False)))

    def __len__(self) -> int:
        return len(self.companies)

    def name_of(self, ticker: str) -> str:
        c = self.companies.get(ticker)
        return c.name if c else ticker

    def find(self, text: str) -> list[str]:
        """Entity keys (tickers) in ``text``, in order of first mention, no repeats."""
        found: dict[str, None] = {}
        for m in CASHTAG.finditer(text):
            ticker = m.group(1).upper()
            if not self.only_listed or ticker in self.companies:
                found[ticker] = None
        if self._alias_re is not None:
            for m in self._alias_re.finditer(text):
                found[self._by_alias[m.group(1).lower()]] = None
        return list(found)

    def to_dict(self) -> dict:
        return {"only_listed": self.only_listed, "companies": [c.to_dict() for c in self.companies.values()]}


def extract_entities(text: str, watchlist: Watchlist | None = None) -> list[str]:
    """Cashtags and watchlist companies mentioned in ``text`` (tickers, first mention first)."""
    return (watchlist or _EMPTY).find(text)


def normalise_entities(values) -> list[str]:
    """Entities given with an item (``["AAPL", "$tsla"]``) -> upper-case tickers; bad ones raise ValueError."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[,;\s]+", values) if v]
    if not isinstance(values, list):
        raise ValueError("entities must be a list of strings")
    out = []
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise ValueError("entities must be a list of non-empty strings")
        t = v.strip().lstrip("$").upper()
        if not TICKER.match(t):
            raise ValueError(f"entity {v!r} is not a ticker")
        out.append(t)
    return out


_EMPTY = Watchlist()
