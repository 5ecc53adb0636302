"""The knowledge index: persisted, searched, and rebuilt re-embedding only changed documents."""

from __future__ import annotations

import hashlib

import numpy as np

from tuneforge.plugins.support_bot.retrieval import KnowledgeIndex, build_index, kb_changed


class CountingEmbedder:
    """Bag-of-words hashed into 64 dims (deterministic); records every text it embeds."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen += texts
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace(":", " ").split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def write_kb(root):
    root.mkdir(exist_ok=True)
    (root / "fees.md").write_text("# Fees\n## ATM\nWithdrawing cash costs two percent above the allowance.\n")
    (root / "cards.md").write_text("# Cards\n## Delivery\nCards arrive by post within five working days.\n")
    (root / "faq.csv").write_text("question,answer\nCan I close my account?,Yes, in settings.\n")


def test_index_search_returns_passages_with_sources(tmp_path):
    write_kb(tmp_path / "kb")
    embed = CountingEmbedder()
    index, stats = build_index(tmp_path / "kb", tmp_path / "index", embed, encoder_id="enc-1")
    assert stats.kind == "flat" and stats.documents == 3 and stats.chunks == 3
    hits = index.search(embed(["when do cards arrive by post"]), k=2)[0]
    assert hits[0].chunk.source == "cards.md" and hits[0].chunk.heading == "Cards > Delivery"
    assert hits[0].score > hits[1].score
    loaded = KnowledgeIndex.load(tmp_path / "index")
    assert [c.id for c in loaded.chunks] == [c.id for c in index.chunks]
    assert loaded.search(embed(["close my account"]), k=1)[0][0].chunk.source == "faq.csv"


def test_rebuild_reembeds_only_changed_documents(tmp_path):
    kb, idx = tmp_path / "kb", tmp_path / "index"
    write_kb(kb)
    embed = CountingEmbedder()
    build_index(kb, idx, embed, encoder_id="enc-1")
    assert len(embed.seen) == 3 and not kb_changed(kb, idx)

    embed.seen.clear()
    (kb / "fees.md").write_text("# Fees\n## ATM\nWithdrawing cash is free up to 200 pounds a month.\n")
    (kb / "cards.md").unlink()
    (kb / "new.txt").write_text("Savings vaults pay interest monthly.")
    assert kb_changed(kb, idx)
    index, stats = build_index(kb, idx, embed, encoder_id="enc-1")
    assert sorted(stats.embedded_docs) == ["fees.md", "new.txt"] and stats.reused_docs == ["faq.csv"]
    assert stats.removed_docs == ["cards.md"]
    assert len(embed.seen) == 2 and all("close my account" not in t for t in embed.seen)
    assert {c.source for c in index.chunks} == {"fees.md", "faq.csv", "new.txt"}
    assert index.search(embed(["is withdrawing cash free"]), 1)[0][0].chunk.text.startswith("Withdrawing cash is free")

    embed.seen.clear()
    _, stats = build_index(kb, idx, embed, encoder_id="enc-1")
    assert embed.seen == [] and not stats.changed                      # nothing changed: nothing embedded
    _, stats = build_index(kb, idx, embed, encoder_id="enc-2")
    assert len(embed.seen) == 3 and len(stats.embedded_docs) == 3       # a new encoder re-embeds all


def test_large_bases_use_hnsw(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "faq.csv").write_text("question,answer\n" + "".join(f"question {i} about topic {i % 7},answer {i}\n"
                                                              for i in range(40)))
    embed = CountingEmbedder()
    index, stats = build_index(kb, tmp_path / "index", embed, encoder_id="e", hnsw_above=10)
    assert stats.kind == "hnsw" and len(index) == 40
    assert KnowledgeIndex.load(tmp_path / "index").kind == "hnsw"
    assert index.search(embed(["question 12 about topic 5"]), 3)[0][0].chunk.heading == "question 12 about topic 5"
