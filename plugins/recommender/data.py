"""Interactions and the item catalogue: read from CSV/TSV/JSONL, validated with file:line.

An :class:`Interactions` table holds integer-coded users and items (numpy arrays) plus
the maps back to the original ids; the :class:`Catalogue` holds each item's title,
description and genres/tags.  Implicit feedback: a rating at or above ``threshold``
is a positive; files without a rating column (clicks) are all positives.

Folder layouts understood (auto-detected) by :func:`load_folder`:

* generic: ``interactions.{csv,jsonl}`` (user, item, rating or click, timestamp) and
  ``items.{csv,jsonl}`` (id, title, description, genres/tags);
* MovieLens latest / 20M / 25M: ``ratings.csv`` + ``movies.csv`` (+ ``tags.csv``, folded into item tags);
* MovieLens 1M / 10M (``::`` ``.dat`` files) and 100k (``u.data`` + ``u.item``): see ``movielens``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tuneforge.data import iter_records
from tuneforge.errors import DataError, UsageError

USER_COLUMNS = ("user", "user_id", "userId")
ITEM_COLUMNS = ("item", "item_id", "itemId", "movieId", "id")
RATING_COLUMNS = ("rating", "click", "clicked", "score")
TIME_COLUMNS = ("timestamp", "time", "ts")
TITLE_COLUMNS = ("title", "name")
DESCRIPTION_COLUMNS = ("description", "overview", "text")
GENRE_COLUMNS = ("genres", "tags", "categories")


def _pick(record: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in record:
            return name
    return None


def _split_tags(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    if text.strip() in ("", "(no genres listed)"):
        return []
    return [t.strip() for t in text.replace(",", "|").split("|") if t.strip() and t.strip() != "(no genres listed)"]


@dataclass
class Catalogue:
    """Items in a fixed order: index ``i`` <-> ``ids[i]``."""

    ids: list[str]
    titles: list[str]
    descriptions: list[str] = field(default_factory=list)
    genres: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.ids)
        self.descriptions = self.descriptions or [""] * n
        self.genres = self.genres or [[] for _ in range(n)]
        self.tags = self.tags or [[] for _ in range(n)]
        if not (len(self.titles) == len(self.descriptions) == len(self.genres) == len(self.tags) == n):
            raise UsageError("catalogue columns have different lengths")
        if len(set(self.ids)) != n:
            raise UsageError("catalogue item ids are not unique")
        self._index = {item: i for i, item in enumerate(self.ids)}
        names = sorted({g for gs in self.genres for g in gs})
        self.genre_names = names
        gi = {g: j for j, g in enumerate(names)}
        self.genre_matrix = np.zeros((n, max(len(names), 1)), dtype=np.float32)
        for i, gs in enumerate(self.genres):
            for g in gs:
                self.genre_matrix[i, gi[g]] = 1.0

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, item_id: str) -> int | None:
        return self._index.get(str(item_id))

    def text(self, i: int) -> str:
        """The item's text for the two-tower model: title, genres, tags, description."""
        parts = [self.titles[i]]
        if self.genres[i]:
            parts.append("Genres: " + ", ".join(self.genres[i]))
        if self.tags[i]:
            parts.append("Tags: " + ", ".join(self.tags[i][:8]))
        if self.descriptions[i]:
            parts.append(self.descriptions[i])
        return ". ".join(parts)

    def to_records(self) -> list[dict]:
        return [{"id": self.ids[i], "title": self.titles[i], "description": self.descriptions[i],
                 "genres": self.genres[i], "tags": self.tags[i]} for i in range(len(self))]

    @classmethod
    def from_records(cls, rows: list[dict]) -> Catalogue:
        return cls(ids=[str(r["id"]) for r in rows], titles=[r["title"] for r in rows],
                   descriptions=[r.get("description", "") for r in rows],
                   genres=[list(r.get("genres", [])) for r in rows], tags=[list(r.get("tags", [])) for r in rows])


@dataclass
class Interactions:
    """Coded interactions: ``user``/``item`` indices, ``rating`` (1.0 for clicks), ``time`` (seconds)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    time: np.ndarray
    user_ids: list[str]

    def __post_init__(self):
        n = len(self.user)
        if not (len(self.item) == len(self.rating) == len(self.time) == n):
            raise UsageError("interaction columns have different lengths")
        self._uindex = {u: i for i, u in enumerate(self.user_ids)}

    def __len__(self) -> int:
        return len(self.user)

    def user_index(self, user_id: str) -> int | None:
        return self._uindex.get(str(user_id))

    def positives(self, threshold: float | None) -> Interactions:
        keep = np.ones(len(self), dtype=bool) if threshold is None else self.rating >= threshold
        return Interactions(self.user[keep], self.item[keep], self.rating[keep], self.time[keep], self.user_ids)


def load_catalogue(path: str | Path) -> Catalogue:
    """Read items: id, title, optional description and genres/tags (``a|b`` or a JSON list)."""
    ids, titles, descs, genres = [], [], [], []
    cols = None
    seen: set[str] = set()
    for line, rec in iter_records(path):
        if cols is None:
            cols = {"id": _pick(rec, ITEM_COLUMNS), "title": _pick(rec, TITLE_COLUMNS),
                    "desc": _pick(rec, DESCRIPTION_COLUMNS), "genres": _pick(rec, GENRE_COLUMNS)}
            for role in ("id", "title"):
                if cols[role] is None:
                    raise DataError(f"no {role} column (expected one of "
                                    f"{ITEM_COLUMNS if role == 'id' else TITLE_COLUMNS})", path=path, line=line)
        item = str(rec.get(cols["id"]) or "").strip()
        title = str(rec.get(cols["title"]) or "").strip()
        if not item:
            raise DataError("empty item id", path=path, line=line)
        if not title:
            raise DataError(f"item {item!r} has an empty title", path=path, line=line)
        if item in seen:
            raise DataError(f"item {item!r} appears twice", path=path, line=line)
        seen.add(item)
        ids.append(item)
        titles.append(title)
        descs.append(str(rec.get(cols["desc"]) or "").strip() if cols["desc"] else "")
        genres.append(_split_tags(rec.get(cols["genres"])) if cols["genres"] else [])
    if not ids:
        raise DataError("the catalogue is empty", path=path)
    return Catalogue(ids=ids, titles=titles, descriptions=descs, genres=genres)


def load_interactions(path: str | Path, catalogue: Catalogue) -> Interactions:
    """Read user-item events; items must be in ``catalogue`` (else a file:line error)."""
    users: dict[str, int] = {}
    u, it, r, t = [], [], [], []
    cols = None
    for line, rec in iter_records(path):
        if cols is None:
            cols = {"user": _pick(rec, USER_COLUMNS), "item": _pick(rec, ITEM_COLUMNS),
                    "rating": _pick(rec, RATING_COLUMNS), "time": _pick(rec, TIME_COLUMNS)}
            for role, names in (("user", USER_COLUMNS), ("item", ITEM_COLUMNS), ("time", TIME_COLUMNS)):
                if cols[role] is None:
                    raise DataError(f"no {role} column (expected one of {', '.join(names)})", path=path, line=line)
        user = str(rec.get(cols["user"]) or "").strip()
        item = str(rec.get(cols["item"]) or "").strip()
        if not user or not item:
            raise DataError("empty user or item id", path=path, line=line)
        idx = catalogue.index(item)
        if idx is None:
            raise DataError(f"item {item!r} is not in the catalogue", path=path, line=line)
        try:
            rating = float(rec[cols["rating"]]) if cols["rating"] else 1.0
            ts = float(rec[cols["time"]])
        except (TypeError, ValueError):
            raise DataError("rating and timestamp must be numbers", path=path, line=line) from None
        u.append(users.setdefault(user, len(users)))
        it.append(idx)
        r.append(rating)
        t.append(ts)
    return interactions_from_lists(u, it, r, t, users, path)


def interactions_from_lists(u: list, it: list, r: list, t: list, users: dict, path) -> Interactions:
    """The :class:`Interactions` a reader collected row by row (an empty file is an error)."""
    if not u:
        raise DataError("no interactions", path=path)
    return Interactions(np.asarray(u, dtype=np.int32), np.asarray(it, dtype=np.int32),
                        np.asarray(r, dtype=np.float32), np.asarray(t, dtype=np.int64), list(users))


def _find(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for ext in (".csv", ".jsonl", ".tsv"):
            if (folder / (stem + ext)).is_file():
                return folder / (stem + ext)
    return None


LAYOUTS = ("generic: interactions.{csv,jsonl,tsv} + items.{csv,jsonl,tsv}; "
           "MovieLens latest/20M/25M: ratings.csv + movies.csv (+ tags.csv); "
           "MovieLens 1M/10M: ratings.dat + movies.dat (+ tags.dat); MovieLens 100k: u.data + u.item (+ u.genre)")


def _release_folder(folder: Path) -> Path:
    """``folder`` itself, or its only sub-folder holding a known layout (``data/`` -> ``data/ml-100k``)."""
    def known(f: Path) -> bool:
        from .movielens import detect

        return detect(f) is not None or (_find(f, ("items", "movies", "catalogue")) is not None
                                         and _find(f, ("interactions", "ratings", "clicks")) is not None)

    if known(folder):
        return folder
    subs = [f for f in sorted(folder.iterdir()) if f.is_dir() and known(f)]
    return subs[0] if len(subs) == 1 else folder


def load_folder(folder: str | Path) -> tuple[Catalogue, Interactions]:
    """A data folder (generic, MovieLens CSV, 1M/10M ``.dat`` or 100k ``u.*``; auto-detected) ->
    (catalogue, interactions)."""
    from . import movielens

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"data folder {folder} does not exist",
                         hint="pass --data with interactions + items files (or a MovieLens folder)")
    folder = _release_folder(folder)
    layout = movielens.detect(folder)
    if layout == "ml-100k":
        return movielens.read_100k(folder)
    if layout == "ml-dat":
        return movielens.read_dat(folder)
    items = _find(folder, ("items", "movies", "catalogue"))
    events = _find(folder, ("interactions", "ratings", "clicks"))
    if items is None or events is None:
        missing = "items" if items is None else "interactions"
        raise UsageError(f"{folder}: no {missing} file; layouts understood: {LAYOUTS}",
                         hint="point --data at the folder that holds the files")
    catalogue = load_catalogue(items)
    tags_file = folder / "tags.csv"
    if tags_file.is_file():
        catalogue = _with_tags(catalogue, tags_file)
    return catalogue, load_interactions(events, catalogue)


def with_tag_counts(catalogue: Catalogue, counts: dict[int, dict[str, int]], top: int = 8) -> Catalogue:
    """Each item's ``top`` most frequent user tags become its ``tags``."""
    tags = [sorted(counts[i], key=lambda t: (-counts[i][t], t))[:top] if i in counts else []
            for i in range(len(catalogue))]
    return Catalogue(ids=catalogue.ids, titles=catalogue.titles, descriptions=catalogue.descriptions,
                     genres=catalogue.genres, tags=tags)


def _with_tags(catalogue: Catalogue, path: Path) -> Catalogue:
    """MovieLens tags.csv: each item's most frequent user tags become its ``tags``."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, rec in iter_records(path):
        idx = catalogue.index(str(rec.get("movieId", rec.get("item", ""))))
        tag = str(rec.get("tag", "")).strip().lower()
        if idx is not None and tag:
            counts[idx][tag] += 1
    return with_tag_counts(catalogue, counts)
