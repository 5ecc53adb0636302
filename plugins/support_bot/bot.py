"""A bot folder and the loaded bot: intent model, encoder, knowledge index, templates, thresholds, store.

``<bot_dir>/bot.json`` (:class:`BotConfig`) names the bundles and the knowledge; beside it:
``thresholds.json`` (calibrated), ``index/`` (FAISS, rebuilt incrementally when the
knowledge-base documents change) and ``bot.sqlite`` (transcripts, tickets; masked).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tuneforge.errors import ConfigError, UsageError
from tuneforge.storage import write_json

from .calibrate import Thresholds
from .cascade import Cascade
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
        path = Path(bot_dir) / "bot.json"
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


def resolve(bot_dir: str | Path, path: str) -> Path:
    if path.startswith(PACKAGE_PREFIX):
        return PACKAGE / path[len(PACKAGE_PREFIX):]
    p = Path(path)
    return p if p.is_absolute() else Path(bot_dir) / p


class Bot:
    """Everything needed to answer; build a :class:`Conversation` on top for sessions and storage."""

    def __init__(self, bot_dir: Path, config: BotConfig, intent_predictor, encoder, index: KnowledgeIndex,
                 answers: dict[str, str], thresholds: Thresholds):
        self.dir, self.config = bot_dir, config
        self.intent_predictor, self.encoder, self.index = intent_predictor, encoder, index
        self.answers, self.thresholds = answers, thresholds
        self.cascade = Cascade(self.score_intents, self.retrieve, answers, thresholds, top_k=config.top_k)
        self.router, self.responses = None, {}
        self._vectors: dict[str, np.ndarray] = {}      # the last texts embedded: router and retrieval share one call

    @classmethod
    def load(cls, bot_dir: str | Path = DEFAULT_BOT_DIR, *, intent_predictor=None,
             thresholds: Thresholds | None = None, refresh_index: bool = True, trust=None) -> "Bot":
        """Load a bot folder; ``intent_predictor``: an already loaded intent bundle (``serve``)."""
        from tuneforge.runtime import Predictor

        bot_dir = Path(bot_dir)
        config = BotConfig.load(bot_dir)
        intent = intent_predictor or Predictor.load(resolve(bot_dir, config.intent_bundle), trust=trust)
        if intent.kind != "classification":
            raise UsageError(f"the intent bundle {config.intent_bundle} is a {intent.kind} model",
                             hint="use a support-intents (classification) bundle")
        encoder = Predictor.load(resolve(bot_dir, config.encoder_bundle), trust=trust)
        if encoder.kind != "embedding":
            raise UsageError(f"the encoder bundle {config.encoder_bundle} is a {encoder.kind} model",
                             hint="build one with `tuneforge support-bot build`")
        answers = load_answers(resolve(bot_dir, config.answers), labels=list(intent.manifest.labels))
        if thresholds is None:
            thresholds = Thresholds.load(bot_dir / "thresholds.json")
            made_for = thresholds.calibrated_for
            if made_for is not None and made_for != bundle_identity(intent):
                raise UsageError(f"{bot_dir}: thresholds.json was calibrated for {made_for['model_id']}, but bot.json "
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
        bot = cls(bot_dir, config, intent, encoder, index, answers, thresholds)
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
        return [p.scores or {} for p in self.intent_predictor.predict(texts)]

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
        return {"bot_dir": str(self.dir), "intent_model": self.intent_predictor.manifest.model_id,
                "encoder": self.encoder.manifest.model_id, "chunks": len(self.index),
                "index": self.index.kind, "thresholds": self.thresholds.to_dict()}


def _embed(encoder, texts: list[str]) -> np.ndarray:
    return encoder.embed(texts)
