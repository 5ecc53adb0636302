"""A bot folder and the loaded bot: intent model, encoder, knowledge index, templates, thresholds, store.

A bot folder holds ``bot.sqlite`` (transcripts, tickets; masked) and the bot's *generations*:
``generations/<name>/`` with ``bot.json`` (:class:`BotConfig`: the bundles and the knowledge),
``thresholds.json`` (calibrated for that intent bundle), ``index/`` (FAISS, rebuilt
incrementally when the knowledge-base documents change) and ``router/`` (the conversation
layer).  ``CURRENT`` names the generation in use; a build or retrain writes a new generation
aside and switches the pointer only when every part is written (:class:`tuneforge.storage.Generations`),
so an interrupted rebuild never mixes one model with another's thresholds.  A folder built before
generations (``bot.json`` at its top) still loads.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from tuneforge.errors import ConfigError, UsageError
from tuneforge.runtime.session import available_cpus
from tuneforge.storage import Generations, write_json

from .calibrate import Thresholds
from .cascade import KB_INTENT, Cascade
from .knowledge import load_answers
from .retrieval import HNSW_ABOVE, KnowledgeIndex, build_index, kb_changed

log = logging.getLogger(__name__)
DEFAULT_BOT_DIR = "bots/support-bot"


@dataclass
class BotConfig:
    """``bot.json``: relative paths are relative to the bot folder."""

    intent_bundle: str
    encoder_bundle: str
    kb_dir: str = "package:kb"
    answers: str = "package:data/answers.yaml"
    responses: str = "package:data/conversation/responses.yaml"
    top_k: int = 5
    hnsw_above: int = HNSW_ABOVE
    previous_intent_bundles: list | None = None

    def __post_init__(self):
        if not self.intent_bundle or not self.encoder_bundle:
            raise ConfigError("bot.json needs intent_bundle and encoder_bundle")
        if not 1 <= self.top_k <= 50:
            raise ConfigError(f"top_k must be in 1..50, got {self.top_k}")
        if self.hnsw_above < 1:
            raise ConfigError(f"hnsw_above must be >= 1, got {self.hnsw_above}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, bot_dir: str | Path) -> "BotConfig":
        path = artefacts(bot_dir) / "bot.json"
        if not path.is_file():
            raise UsageError(f"{bot_dir} is not a bot folder (no bot.json)",
                             hint="build one: tuneforge support-bot build --intent-bundle exports/support-intents")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, bot_dir: str | Path) -> None:
        write_json(Path(bot_dir) / "bot.json", self.to_dict())


PACKAGE = Path(__file__).resolve().parent
PACKAGE_PREFIX = "package:"


def portable(path: str | Path, bot_dir: str | Path) -> str:
    """How ``bot.json`` records ``path``: ``package:<rel>`` for the plugin's own files (the bundled
    knowledge base and answers), else relative to the bot folder -- so a moved project keeps working."""
    import os

    path = Path(path).resolve()
    if path.is_relative_to(PACKAGE):
        return PACKAGE_PREFIX + path.relative_to(PACKAGE).as_posix()
    return os.path.relpath(path, Path(bot_dir).resolve())


def bundle_identity(predictor) -> dict:
    """What a calibration records about the bundle it was made for."""
    from tuneforge.runinfo import sha256_file

    return {"model_id": predictor.manifest.model_id,
            "manifest_sha256": sha256_file(Path(predictor.root) / "manifest.json")}


def artefacts(bot_dir: str | Path) -> Path:
    """The folder with ``bot.json``, ``thresholds.json``, ``index/`` and ``router/``: the generation
    ``CURRENT`` names, or the bot folder itself (built before generations, or a generation folder)."""
    return Generations(bot_dir).current() or Path(bot_dir)


PATH_FIELDS = ("intent_bundle", "encoder_bundle", "kb_dir", "answers", "responses")
PARTS = ("thresholds.json", "index", "router")


@contextmanager
def next_generation(bot_dir: str | Path, *, seed: tuple[str, ...] = PARTS) -> Iterator[Path]:
    """A new generation of the bot in ``bot_dir``, seeded with the current one's ``bot.json`` and
    ``seed`` parts; ``CURRENT`` switches to it only when the block succeeds."""
    root = Path(bot_dir)
    source = artefacts(root)
    old = BotConfig.load(source) if (source / "bot.json").is_file() else None
    with Generations(root).new() as gen:
        if old is not None:
            moved = {f: portable(resolve(source, getattr(old, f)), gen) for f in PATH_FIELDS}
            if old.previous_intent_bundles:
                moved["previous_intent_bundles"] = [portable(resolve(source, p), gen)
                                                    for p in old.previous_intent_bundles]
            replace(old, **moved).save(gen)
        for part in seed:
            if (source / part).is_dir():
                shutil.copytree(source / part, gen / part)
            elif (source / part).is_file():
                shutil.copy2(source / part, gen / part)
        yield gen


def resolve(bot_dir: str | Path, path: str) -> Path:
    """A path from ``bot.json``: ``package:`` paths, absolute ones, else relative to its generation."""
    if path.startswith(PACKAGE_PREFIX):
        return PACKAGE / path[len(PACKAGE_PREFIX):]
    p = Path(path)
    return p if p.is_absolute() else artefacts(bot_dir) / p


class Bot:
    """Everything needed to answer; build a :class:`Conversation` on top for sessions and storage."""

    def __init__(self, bot_dir: Path, config: BotConfig, intent_predictor, encoder, index: KnowledgeIndex,
                 answers: dict[str, str], thresholds: Thresholds, root: Path | None = None,
                 parallel: bool = False):
        self.dir, self.config = bot_dir, config          # dir: the generation; root: the bot folder (store)
        self.root = root or bot_dir
        self.intent_predictor, self.encoder, self.index = intent_predictor, encoder, index
        self.answers, self.thresholds = answers, thresholds
        self.cascade = Cascade(self.score_intents, self.retrieve, answers, thresholds, top_k=config.top_k)
        self.router, self.responses = None, {}
        self._vectors: dict[str, np.ndarray] = {}      # the last texts embedded: router and retrieval share one call
        self._scores: dict[str, dict[str, float]] = {}  # the last texts scored by the intent model
        self._pool = None                               # runs the intent model beside the encoder (see prepare)
        if parallel:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=available_cpus(), thread_name_prefix="bot-intent")

    @classmethod
    def load(cls, bot_dir: str | Path = DEFAULT_BOT_DIR, *, intent_predictor=None,
             thresholds: Thresholds | None = None, refresh_index: bool = True, trust=None,
             threads: int | None = None) -> "Bot":
        """Load a bot folder; ``intent_predictor``: an already loaded intent bundle.

        ``threads``: intra-op threads of each model.  By default, on a machine with two or more
        CPUs, each model gets one thread and a turn runs the encoder (routing, retrieval) and the
        intent model at the same time, each on its own core: at batch 1 that is nearly twice as
        fast as the two one after the other with two threads each.
        """
        from tuneforge.runtime import Predictor

        root = Path(bot_dir)
        bot_dir = artefacts(root)
        config = BotConfig.load(bot_dir)
        parallel = threads is None and available_cpus() >= 2
        threads = 1 if parallel else threads
        intent = intent_predictor or Predictor.load(resolve(bot_dir, config.intent_bundle), trust=trust,
                                                    threads=threads)
        if intent.kind != "classification":
            raise UsageError(f"the intent bundle {config.intent_bundle} is a {intent.kind} model",
                             hint="use a support-intents (classification) bundle")
        encoder = Predictor.load(resolve(bot_dir, config.encoder_bundle), trust=trust, threads=threads)
        if encoder.kind != "embedding":
            raise UsageError(f"the encoder bundle {config.encoder_bundle} is a {encoder.kind} model",
                             hint="build one with `tuneforge support-bot build`")
        answers = load_answers(resolve(bot_dir, config.answers),
                               labels=[x for x in intent.manifest.labels if x != KB_INTENT])
        if thresholds is None:
            thresholds = Thresholds.load(bot_dir / "thresholds.json")
            made_for = thresholds.calibrated_for
            if made_for is not None and made_for != bundle_identity(intent):
                raise UsageError(f"{root}: thresholds.json was calibrated for {made_for['model_id']}, but bot.json "
                                 f"points to {intent.manifest.model_id} (an interrupted rebuild?)",
                                 hint="run `tuneforge support-bot build` again, or `tuneforge support-bot calibrate`")
        kb, index_dir = resolve(bot_dir, config.kb_dir), bot_dir / "index"
        embed = lambda texts: _embed(encoder, texts)  # noqa: E731
        if refresh_index and kb_changed(kb, index_dir):
            index, stats = build_index(kb, index_dir, embed, encoder_id=encoder.manifest.model_id,
                                       hnsw_above=config.hnsw_above)
            log.info("knowledge index rebuilt: %s", stats.to_dict())
        else:
            index = KnowledgeIndex.load(index_dir)
        bot = cls(bot_dir, config, intent, encoder, index, answers, thresholds, root=root,
                  parallel=parallel and intent_predictor is None)
        if (bot_dir / "router" / "router.json").is_file():
            from .router import Router
            from .smalltalk import load_responses

            bot.router = Router.load(bot_dir / "router")
            bot.responses = load_responses(resolve(bot_dir, config.responses))
        else:
            log.warning("%s has no conversation router (built by an older tuneforge): small talk and off-topic "
                        "requests go through the banking cascade; rebuild the bot", bot_dir)
        return bot

    # -- the cascade's two scorers ----------------------------------------------
    def score_intents(self, texts: list[str]) -> list[dict[str, float]]:
        if len(texts) == 1 and texts[0] in self._scores:
            return [self._scores[texts[0]]]
        return [p.scores or {} for p in self.intent_predictor.predict(texts)]

    def prepare(self, text: str) -> None:
        """Embed ``text`` and score its intents at once (two threads, one model each), so the
        router, the cascade and the knowledge search of this turn find both ready."""
        if self._pool is None or text in self._scores:
            return
        future = self._pool.submit(lambda: (self.intent_predictor.predict([text])[0].scores or {}))
        self.embed([text])
        scores = future.result()
        if len(self._scores) >= 256:
            self._scores.clear()
        self._scores[text] = scores

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``; a single text embedded a moment ago is not embedded again
        (the router and the knowledge search of one turn share the call)."""
        if len(texts) == 1 and texts[0] in self._vectors:
            return self._vectors[texts[0]]
        vectors = _embed(self.encoder, texts)
        if len(texts) == 1:
            if len(self._vectors) >= 256:
                self._vectors.clear()
            self._vectors[texts[0]] = vectors
        return vectors

    def retrieve(self, texts: list[str], k: int = 5):
        return self.index.search(self.embed(texts), k)

    def info(self) -> dict:
        return {"bot_dir": str(self.root), "generation": self.dir.name if self.dir != self.root else None,
                "intent_model": self.intent_predictor.manifest.model_id,
                "encoder": self.encoder.manifest.model_id, "chunks": len(self.index),
                "index": self.index.kind, "thresholds": self.thresholds.to_dict()}


def _embed(encoder, texts: list[str]) -> np.ndarray:
    return encoder.embed(texts)
