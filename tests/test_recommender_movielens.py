"""Every MovieLens release read natively from small fixtures written here (never the real data):
100k (u.data / u.item latin-1 / u.genre), 1M (.dat latin-1), 10M (.dat + tags.dat), latest CSV."""

from __future__ import annotations

import pytest

from tuneforge.errors import DataError, UsageError
from tuneforge.plugins.recommender.data import load_folder
from tuneforge.plugins.recommender.movielens import ML100K_GENRES, detect


def _flags(*names):
    return "|".join("1" if g in names else "0" for g in ML100K_GENRES)


def write_100k(folder, with_genre_file=True):
    folder.mkdir(parents=True, exist_ok=True)
    items = [f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags('Animation', 'Children', 'Comedy')}",
             f"2|Cité des enfants perdus, La (1995)|01-Jan-1995||http://y|{_flags('Sci-Fi', 'Adventure')}",
             f"3|unknown|||http://z|{_flags('unknown')}"]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.data").write_text("196\t1\t3\t881250949\n196\t2\t5\t881250950\n22\t2\t4\t881250000\n"
                                   "22\t3\t1\t881250001\n")
    if with_genre_file:
        (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n")
    return folder


def test_100k_latin1_items_genre_flags_and_tab_ratings(tmp_path):
    for with_genre in (True, False):
        folder = write_100k(tmp_path / f"ml-100k-{with_genre}", with_genre)
        assert detect(folder) == "ml-100k"
        catalogue, inter = load_folder(folder)
        assert catalogue.ids == ["1", "2", "3"]
        assert catalogue.titles[1] == "Cité des enfants perdus, La (1995)"  # latin-1 decoded
        assert catalogue.genres[0] == ["Animation", "Comedy"] and catalogue.genres[1] == ["Adventure", "Sci-Fi"]
        assert catalogue.genres[2] == []                                     # "unknown" is no genre
        assert inter.user_ids == ["196", "22"] and len(inter) == 4
        assert inter.rating.tolist() == [3, 5, 4, 1] and inter.time[0] == 881250949
        assert catalogue.ids[inter.item[3]] == "3"


def test_100k_parent_folder_and_errors(tmp_path):
    write_100k(tmp_path / "download" / "ml-100k")
    catalogue, _ = load_folder(tmp_path / "download")  # the one release folder inside is found
    assert len(catalogue) == 3
    bad = write_100k(tmp_path / "bad")
    (bad / "u.data").write_text("196\t1\t3\t881250949\n196\t99\t5\t1\n")
    with pytest.raises(DataError, match=r"u.data:2: item '99' is not in the catalogue"):
        load_folder(bad)
    (bad / "u.data").write_text("196 1 3 881250949\n")
    with pytest.raises(DataError, match=r"u.data:1: expected user\titem"):
        load_folder(bad)
    (bad / "u.data").unlink()
    with pytest.raises(DataError, match="looks like MovieLens 100k but u.data is missing"):
        load_folder(bad)
    short = write_100k(tmp_path / "short")
    (short / "u.item").write_bytes(b"1|Toy Story (1995)|01-Jan-1995\n")
    with pytest.raises(DataError, match=r"u.item:1: expected id\|title"):
        load_folder(short)


def test_1m_dat_latin1(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Children's|Comedy\n"
                                        "2::Ménage (1986)::Comedy|Drama\n".encode("latin-1"))
    (folder / "ratings.dat").write_text("1::1::5::978300760\n1::2::3::978302109\n2::2::4::978301968\n")
    (folder / "users.dat").write_text("1::F::1::10::48067\n")
    assert detect(folder) == "ml-dat"
    catalogue, inter = load_folder(folder)
    assert catalogue.titles[1] == "Ménage (1986)" and catalogue.genres[0] == ["Animation", "Children's", "Comedy"]
    assert len(inter) == 3 and inter.user_ids == ["1", "2"] and inter.rating.tolist() == [5, 3, 4]
    assert catalogue.tags == [[], []]


def test_10m_dat_utf8_with_tags(tmp_path):
    folder = tmp_path / "ml-10M100K"
    folder.mkdir()
    (folder / "movies.dat").write_text("1::Toy Story (1995)::Adventure|Animation\n"
                                       "5::Amélie (2001)::(no genres listed)\n", encoding="utf-8")
    (folder / "ratings.dat").write_text("5::1::4.5::838985046\n5::5::3.5::838983525\n")
    (folder / "tags.dat").write_text("15::1::Pixar::1138537770\n20::1::pixar::1138537771\n"
                                     "20::1::toys::1138537772\n20::404::ghost::1\n")
    catalogue, inter = load_folder(folder)
    assert catalogue.titles[1] == "Amélie (2001)" and catalogue.genres[1] == []
    assert catalogue.tags[0] == ["pixar", "toys"]            # most frequent first; unknown items ignored
    assert inter.rating.tolist() == [4.5, 3.5]
    (folder / "ratings.dat").write_text("5::1::4.5\n")
    with pytest.raises(DataError, match=r"ratings.dat:1: expected user::item::rating::timestamp"):
        load_folder(folder)
    (folder / "ratings.dat").unlink()
    with pytest.raises(DataError, match="ratings.dat is missing"):
        load_folder(folder)


def test_latest_csv_and_unknown_layout(tmp_path):
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "movies.csv").write_text('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
                                       '2,"Jumanji, The (1995)",Adventure\n')
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,5.0,964982704\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,funny,1\n")
    catalogue, inter = load_folder(folder)
    assert detect(folder) is None and catalogue.titles[1] == "Jumanji, The (1995)"
    assert catalogue.tags[0] == ["funny"] and len(inter) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(UsageError, match="no items file; layouts understood: generic"):
        load_folder(empty)


def test_one_data_set_reads_the_same_in_every_release_layout(tmp_path):
    """The same small data written in the latest CSV, 1M ``.dat`` and 100k ``u.*`` layouts (a converter
    fixture: no real data) reads back as the same catalogue and interactions, so a build on any
    release goes through the same code after the reader."""
    films = [("10", "Heat (1995)", ["Action", "Crime"]), ("20", "Fargo (1996)", ["Comedy", "Drama"]),
             ("30", "Alien (1979)", ["Horror", "Sci-Fi"])]
    ratings = [("7", "10", 4, 100), ("7", "30", 5, 160), ("9", "20", 3, 120), ("9", "10", 5, 130)]
    latest = tmp_path / "latest"
    latest.mkdir()
    (latest / "movies.csv").write_text("movieId,title,genres\n" + "".join(
        f'{i},"{t}",{"|".join(g)}\n' for i, t, g in films))
    (latest / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{u},{i},{r}.0,{t}\n" for u, i, r, t in ratings))
    dat = tmp_path / "ml-1m"
    dat.mkdir()
    (dat / "movies.dat").write_bytes("".join(f"{i}::{t}::{'|'.join(g)}\n" for i, t, g in films).encode("latin-1"))
    (dat / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings))
    k100 = tmp_path / "ml-100k"
    k100.mkdir()
    (k100 / "u.item").write_bytes("".join(f"{i}|{t}|01-Jan-1995||http://x|{_flags(*g)}\n"
                                          for i, t, g in films).encode("latin-1"))
    (k100 / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    read = [load_folder(f) for f in (latest, dat, k100)]
    assert [detect(f) for f in (dat, k100)] == ["ml-dat", "ml-100k"]
    for catalogue, inter in read:
        assert catalogue.ids == ["10", "20", "30"] and catalogue.titles == [t for _, t, _ in films]
        assert [sorted(g) for g in catalogue.genres] == [sorted(g) for _, _, g in films]
        assert inter.user_ids == ["7", "9"]
        assert [catalogue.ids[i] for i in inter.item] == [i for _, i, _, _ in ratings]
        assert inter.rating.tolist() == [r for *_, r, _ in ratings] and inter.time.tolist() == [100, 160, 120, 130]
        assert len(inter.positives(4.0)) == 3
