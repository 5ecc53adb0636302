"""What the bot knows: answer templates per intent and knowledge-base documents cut into chunks.

Documents: Markdown (cut at headings, then paragraphs), plain text (paragraphs),
CSV / JSONL FAQ files (one chunk per question-answer pair).  Every chunk keeps its
source file, its heading and the hash of the document it came from.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneforge.errors import DataError

DOC_SUFFIXES = (".md", ".markdown", ".txt", ".csv", ".jsonl")
MAX_CHUNK_CHARS = 700
_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
_PLACEHOLDER = re.compile(r"\{(\w+)(?:\|([^{}]*))?\}")


@dataclass
class Chunk:
    """A passage the retriever can return, with where it came from."""

    id: str            # "<source>#<n>"
    source: str        # file name relative to the knowledge-base folder
    heading: str       # section title ("" when none)
    text: str
    doc_hash: str      # sha256 of the whole source document

    @property
    def citation(self) -> str:
        return f"{self.source} § {self.heading}" if self.heading else self.source

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Document:
    source: str
    sha256: str
    chunks: list[Chunk] = field(default_factory=list)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _paragraphs(text: str) -> list[str]:
    parts = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    out: list[str] = []
    for p in parts:
        if not p:
            continue
        if out and len(out[-1]) + len(p) + 1 <= MAX_CHUNK_CHARS // 2:
            out[-1] += "\n" + p         # glue short paragraphs (lists, one-liners) together
        else:
            out.append(p)
    return out


def _markdown_sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body) per section; the heading path joins nested titles with ' > '."""
    sections, stack, body = [], [], []

    def flush():
        content = "\n".join(body).strip()
        if content:
            sections.append((" > ".join(t for _, t in stack), content))
        body.clear()

    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            flush()
            level = len(m.group(1))
            stack[:] = [(lv, t) for lv, t in stack if lv < level] + [(level, m.group(2))]
        else:
            body.append(line)
    flush()
    return sections


def _faq_pairs(path: Path, text: str) -> list[tuple[str, str]]:
    pairs = []
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"question", "answer"} <= set(reader.fieldnames):
            raise DataError("a FAQ CSV needs 'question' and 'answer' columns", path=path)
        rows = [(i + 2, r) for i, r in enumerate(reader)]
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON: {e.msg}", path=path, line=i) from None
    for line, row in rows:
        q, a = (str(row.get("question") or "").strip(), str(row.get("answer") or "").strip())
        if not q or not a:
            raise DataError("a FAQ row needs a non-empty question and answer", path=path, line=line)
        pairs.append((q, a))
    return pairs


def chunk_document(path: Path, source: str) -> Document:
    """Read one knowledge-base file and cut it into chunks (see module doc)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read knowledge-base file: {e}", path=path) from None
    doc = Document(source=source, sha256=sha256_text(text))
    if path.suffix in (".csv", ".jsonl"):
        pieces = [(q, f"{q}\n{a}") for q, a in _faq_pairs(path, text)]
    elif path.suffix in (".md", ".markdown"):
        pieces = [(h, p) for h, body in _markdown_sections(text) for p in _paragraphs(body)]
    else:
        pieces = [("", p) for p in _paragraphs(text)]
    doc.chunks = [Chunk(id=f"{source}#{i}", source=source, heading=h, text=p[:MAX_CHUNK_CHARS * 2],
                        doc_hash=doc.sha256) for i, (h, p) in enumerate(pieces)]
    return doc


def load_documents(kb_dir: str | Path) -> list[Document]:
    """Every supported file under ``kb_dir`` (sorted), chunked."""
    root = Path(kb_dir)
    if not root.is_dir():
        raise DataError("knowledge-base folder not found", path=root,
                        hint="point the bot at a folder of .md/.txt/.csv/.jsonl files")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES
                   and not p.name.startswith("."))
    return [chunk_document(p, p.relative_to(root).as_posix()) for p in files]


# -- answer templates ------------------------------------------------------------
def render(template: str, context: dict) -> str:
    """Fill ``{name}`` / ``{name|default}`` placeholders from ``context``; unknown ones use the default."""
    def fill(m: re.Match) -> str:
        value = context.get(m.group(1))
        if value in (None, ""):
            return m.group(2) if m.group(2) is not None else ""
        return str(value)

    return _PLACEHOLDER.sub(fill, template)


def humanize(intent: str | None) -> str:
    return (intent or "").rstrip("?").replace("_", " ").lower()


def load_answers(path: str | Path, labels: list[str] | None = None) -> dict[str, str]:
    """Answer templates from YAML (``intent: template``); every label in ``labels`` needs one."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"cannot read answer templates: {' '.join(str(e).split())}", path=path) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise DataError("answers must be a mapping of intent name to a non-empty template", path=path)
    answers = {str(k): v.strip() for k, v in data.items()}
    missing = sorted(set(labels or []) - set(answers))
    if missing:
        raise DataError(f"no answer template for {len(missing)} intent(s): {', '.join(missing[:5])}",
                        path=path, hint="add one entry per intent")
    return answers
