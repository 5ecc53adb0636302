"""Search the knowledge base: chunk vectors in a FAISS index, persisted and rebuilt incrementally.

``index_dir`` holds ``chunks.jsonl``, ``vectors.npy`` (one unit vector per chunk),
``index.faiss`` and ``manifest.json`` (encoder id, per-document content hashes).
A rebuild re-embeds only documents whose hash changed (or all, if the encoder changed);
small bases use exact search (``IndexFlatIP``), bases over ``hnsw_above`` chunks HNSW.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tuneforge.errors import UsageError
from tuneforge.runtime.postprocess import l2_normalize
from tuneforge.storage import replace_dir, staging_dir

from .knowledge import Chunk, load_documents

Embedder = Callable[[list[str]], np.ndarray]   # texts -> [N, H] unit vectors
HNSW_ABOVE = 10_000


@dataclass
class Hit:
    chunk: Chunk
    score: float   # cosine similarity

    def to_dict(self) -> dict:
        return {"id": self.chunk.id, "source": self.chunk.source, "heading": self.chunk.heading,
                "citation": self.chunk.citation, "score": round(self.score, 4)}


@dataclass
class IndexStats:
    """What a (re)build did."""

    documents: int
    chunks: int
    embedded_docs: list[str]
    reused_docs: list[str]
    removed_docs: list[str]
    kind: str               # "flat" or "hnsw"

    @property
    def changed(self) -> bool:
        return bool(self.embedded_docs or self.removed_docs)

    def to_dict(self) -> dict:
        return asdict(self)


def chunk_input(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading gives the passage its context."""
    return f"{chunk.heading}: {chunk.text}" if chunk.heading else chunk.text


def _faiss_index(vectors: np.ndarray, hnsw_above: int):
    import faiss

    dim = vectors.shape[1]
    if len(vectors) > hnsw_above:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    else:
        index = faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(vectors)
    return index


SMALL_QUERY_BATCH = 16


@functools.cache
def _bulk_threads() -> int:
    """Threads for batch searches: the CPUs this process may use (read once, not per turn)."""
    from tuneforge.runtime.session import available_cpus

    return available_cpus()


class KnowledgeIndex:
    """Chunks + their vectors + a FAISS index over them."""

    def __init__(self, chunks: list[Chunk], vectors: np.ndarray, index, manifest: dict):
        self.chunks, self.vectors, self.index, self.manifest = chunks, vectors, index, manifest

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def kind(self) -> str:
        return "hnsw" if "HNSW" in type(self.index).__name__ else "flat"

    def search(self, query_vectors: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """Top ``k`` chunks per query vector, best first."""
        if not self.chunks:
            return [[] for _ in range(len(query_vectors))]
        import faiss


        # A chat turn searches one vector: one thread is faster, and FAISS's OpenMP workers would
        # otherwise fight onnxruntime's spinning ones (26 ms instead of 3 ms per turn on 2 cores).
        # The setting is per calling thread, so concurrent HTTP workers each make their own.
        faiss.omp_set_num_threads(1 if len(query_vectors) <= SMALL_QUERY_BATCH else _bulk_threads())
        scores, ids = self.index.search(l2_normalize(query_vectors), min(k, len(self.chunks)))
        return [[Hit(self.chunks[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
                for row_s, row_i in zip(scores, ids)]

    # -- persistence -----------------------------------------------------------
    @classmethod
    def load(cls, index_dir: str | Path) -> "KnowledgeIndex":
        import faiss

        d = Path(index_dir)
        if not (d / "manifest.json").is_file():
            raise UsageError(f"no knowledge index in {d}", hint="run `tuneforge support-bot build`")
        manifest = json.loads((d / "manifest.json").read_text())
        chunks = [Chunk(**json.loads(line)) for line in (d / "chunks.jsonl").read_text().splitlines() if line]
        vectors = np.load(d / "vectors.npy")
        return cls(chunks, vectors, faiss.read_index(str(d / "index.faiss")), manifest)

    def save(self, index_dir: str | Path) -> None:
        """Write atomically: a temp folder, then swapped in."""
        import faiss

        d = Path(index_dir)
        tmp = staging_dir(d)
        (tmp / "chunks.jsonl").write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n"
                                                  for c in self.chunks), encoding="utf-8")
        np.save(tmp / "vectors.npy", self.vectors)
        faiss.write_index(self.index, str(tmp / "index.faiss"))
        (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2))
        replace_dir(tmp, d)


def build_index(kb_dir: str | Path, index_dir: str | Path, embed: Embedder, *, encoder_id: str,
                hnsw_above: int = HNSW_ABOVE) -> tuple[KnowledgeIndex, IndexStats]:
    """(Re)build the index for ``kb_dir``, re-embedding only changed documents; saves it."""
    docs = load_documents(kb_dir)
    previous: dict[str, tuple[str, list[Chunk], np.ndarray]] = {}
    index_dir = Path(index_dir)
    if (index_dir / "manifest.json").is_file():
        old = KnowledgeIndex.load(index_dir)
        if old.manifest.get("encoder") == encoder_id:
            for source, doc_hash in old.manifest.get("documents", {}).items():
                rows = [i for i, c in enumerate(old.chunks) if c.source == source]
                previous[source] = (doc_hash, [old.chunks[i] for i in rows], old.vectors[rows])
    chunks: list[Chunk] = []
    parts: list[np.ndarray | None] = []
    embedded, reused = [], []
    for doc in docs:
        prev = previous.get(doc.source)
        if prev is not None and prev[0] == doc.sha256:
            chunks += prev[1]
            parts.append(prev[2])
            reused.append(doc.source)
        else:
            chunks += doc.chunks
            parts.append(None)
            embedded.append(doc.source)
    todo = [c for doc in docs if doc.source in embedded for c in doc.chunks]
    fresh = l2_normalize(embed([chunk_input(c) for c in todo])) if todo else None
    vectors, pos = [], 0
    for doc, part in zip(docs, parts):
        if part is None:
            part = fresh[pos:pos + len(doc.chunks)] if fresh is not None else np.zeros((0, 1), np.float32)
            pos += len(doc.chunks)
        if len(part):
            vectors.append(part)
    if not vectors:
        raise UsageError(f"the knowledge base {kb_dir} has no passages", hint="add .md/.txt/.csv/.jsonl files")
    matrix = np.concatenate(vectors).astype(np.float32)
    manifest = {"encoder": encoder_id, "documents": {d.source: d.sha256 for d in docs},
                "chunks": len(chunks), "dim": int(matrix.shape[1])}
    kidx = KnowledgeIndex(chunks, matrix, _faiss_index(matrix, hnsw_above), manifest)
    kidx.save(index_dir)
    removed = sorted(set(previous) - {d.source for d in docs})
    return kidx, IndexStats(documents=len(docs), chunks=len(chunks), embedded_docs=embedded,
                            reused_docs=reused, removed_docs=removed, kind=kidx.kind)


def kb_changed(kb_dir: str | Path, index_dir: str | Path) -> bool:
    """Whether any document's content hash differs from the saved index (cheap: no embedding)."""
    from .knowledge import sha256_text

    path = Path(index_dir) / "manifest.json"
    if not path.is_file():
        return True
    saved = json.loads(path.read_text()).get("documents", {})
    root = Path(kb_dir)
    from .knowledge import DOC_SUFFIXES

    now = {p.relative_to(root).as_posix(): sha256_text(p.read_text(encoding="utf-8"))
           for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
           and not p.name.startswith(".")}
    return now != saved
