"""Every MovieLens release read in its own format (no conversion step).

==================  ==========================================================================
release             files
==================  ==========================================================================
100k (``ml-100k``)  ``u.data`` (tab: user item rating timestamp), ``u.item`` (``|``, latin-1:
                    id|title|release date|video release date|IMDb URL|19 genre flags),
                    optional ``u.genre`` (``name|index``; else the release's fixed list)
1M / 10M            ``ratings.dat`` (``user::item::rating::timestamp``), ``movies.dat``
                    (``id::title::a|b``; 1M is latin-1, 10M UTF-8), 10M ``tags.dat``
                    (``user::item::tag::timestamp``)
latest / 20M / 25M  ``ratings.csv``, ``movies.csv``, optional ``tags.csv`` (read by ``data``)
==================  ==========================================================================

:func:`detect` names the layout of a folder; the readers return the same
(:class:`Catalogue`, :class:`Interactions`) as the generic CSV/JSONL reader, and every
malformed line is a :class:`DataError` naming ``file:line``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tuneforge.errors import DataError

from .data import Catalogue, Interactions, interactions_from_lists, with_tag_counts

# u.genre of the 100k release (index order of the 19 flags in u.item)
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")


def detect(folder: Path) -> str | None:
    """``"ml-100k"``, ``"ml-dat"`` (1M / 10M) or None (CSV / generic layouts)."""
    if (folder / "u.data").is_file() or (folder / "u.item").is_file():
        return "ml-100k"
    if (folder / "ratings.dat").is_file() or (folder / "movies.dat").is_file():
        return "ml-dat"
    return None


def _need(folder: Path, names: tuple[str, ...], release: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"looks like MovieLens {release} but {', '.join(missing)} is missing",
                        path=folder, hint=f"a {release} folder holds {' and '.join(names)}")


def _lines(path: Path, encoding: str | None):
    """(line number, text) without the newline; ``encoding`` None: UTF-8, else latin-1 (old releases)."""
    raw = path.read_bytes()
    if encoding is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    else:
        text = raw.decode(encoding)
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield n, line


def _events(path: Path, sep: str, catalogue: Catalogue) -> Interactions:
    users: dict[str, int] = {}
    u, it, r, t = [], [], [], []
    for n, line in _lines(path, "latin-1"):
        parts = line.split(sep)
        if len(parts) < 4:
            raise DataError(f"expected user{sep}item{sep}rating{sep}timestamp, got {len(parts)} field(s)",
                            path=path, line=n)
        idx = catalogue.index(parts[1].strip())
        if idx is None:
            raise DataError(f"item {parts[1].strip()!r} is not in the catalogue", path=path, line=n)
        try:
            rating, ts = float(parts[2]), float(parts[3])
        except ValueError:
            raise DataError("rating and timestamp must be numbers", path=path, line=n) from None
        u.append(users.setdefault(parts[0].strip(), len(users)))
        it.append(idx)
        r.append(rating)
        t.append(ts)
    return interactions_from_lists(u, it, r, t, users, path)


def _catalogue(ids, titles, genres, path: Path) -> Catalogue:
    if not ids:
        raise DataError("the catalogue is empty", path=path)
    return Catalogue(ids=ids, titles=titles, genres=genres)


def read_100k(folder: Path) -> tuple[Catalogue, Interactions]:
    _need(folder, ("u.data", "u.item"), "100k")
    names = list(ML100K_GENRES)
    if (folder / "u.genre").is_file():
        found = {}
        for n, line in _lines(folder / "u.genre", "latin-1"):
            name, _, index = line.partition("|")
            try:
                found[int(index)] = name.strip()
            except ValueError:
                raise DataError("expected name|index", path=folder / "u.genre", line=n) from None
        names = [found.get(i, names[i] if i < len(names) else f"genre {i}") for i in range(max(found) + 1)] \
            if found else names
    ids, titles, genres, seen = [], [], [], set()
    path = folder / "u.item"
    for n, line in _lines(path, "latin-1"):
        parts = line.split("|")
        if len(parts) < 5 + len(names):
            raise DataError(f"expected id|title|release date|video release date|IMDb URL|{len(names)} genre flags, "
                            f"got {len(parts)} field(s)", path=path, line=n)
        item, title = parts[0].strip(), parts[1].strip()
        if not item or not title:
            raise DataError("empty item id or title", path=path, line=n)
        if item in seen:
            raise DataError(f"item {item!r} appears twice", path=path, line=n)
        flags = parts[5:5 + len(names)]
        if any(f.strip() not in ("0", "1") for f in flags):
            raise DataError("genre flags must be 0 or 1", path=path, line=n)
        seen.add(item)
        ids.append(item)
        titles.append(title)
        genres.append([g for g, f in zip(names, flags) if f.strip() == "1" and g != "unknown"])
    catalogue = _catalogue(ids, titles, genres, path)
    return catalogue, _events(folder / "u.data", "\t", catalogue)


def read_dat(folder: Path) -> tuple[Catalogue, Interactions]:
    """1M and 10M: ``::``-separated ``movies.dat`` + ``ratings.dat`` (+ 10M ``tags.dat``)."""
    _need(folder, ("ratings.dat", "movies.dat"), "1M/10M (.dat)")
    ids, titles, genres, seen = [], [], [], set()
    path = folder / "movies.dat"
    for n, line in _lines(path, None):
        parts = line.split("::")
        if len(parts) < 3:
            raise DataError(f"expected id::title::genres, got {len(parts)} field(s)", path=path, line=n)
        item, title = parts[0].strip(), "::".join(parts[1:-1]).strip()
        if not item or not title:
            raise DataError("empty item id or title", path=path, line=n)
        if item in seen:
            raise DataError(f"item {item!r} appears twice", path=path, line=n)
        seen.add(item)
        ids.append(item)
        titles.append(title)
        genres.append([g for g in parts[-1].strip().split("|") if g and g != "(no genres listed)"])
    catalogue = _catalogue(ids, titles, genres, path)
    if (folder / "tags.dat").is_file():
        counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for n, line in _lines(folder / "tags.dat", None):
            parts = line.split("::")
            if len(parts) < 3:
                raise DataError("expected user::item::tag::timestamp", path=folder / "tags.dat", line=n)
            idx, tag = catalogue.index(parts[1].strip()), parts[2].strip().lower()
            if idx is not None and tag:
                counts[idx][tag] += 1
        catalogue = with_tag_counts(catalogue, counts)
    return catalogue, _events(folder / "ratings.dat", "::", catalogue)
