"""Load a bundle and predict: onnxruntime + tokenizers + numpy, never torch."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import BundleError, UsageError
from ..export.bundle import BundleManifest, load_manifest, resolve_bundle_dir, verify_bundle
from ..export.planner import (
    BULK_ROWS,
    GPU_PROVIDERS,
    NOT_RECOMMENDED,
    OK,
    OPENVINO,
    bulk_default,
    check_combo,
    check_variant_name,
    support,
)
from .postprocess import Postprocessor, Prediction, l2_normalize, sigmoid
from .session import Runner, available_cpus, choose_providers, open_runner
from .tokenization import BundleTokenizer, check_texts

log = logging.getLogger(__name__)

class Predictor:
    """A loaded bundle: ``predict`` gives :class:`Prediction` objects, ``predict_raw`` arrays.

    Attributes worth reading: ``variant``, ``provider`` (the one the session really
    uses), ``providers`` (its full list), ``threads``, ``fallback_reason`` (why a
    wanted GPU provider is not in use, else ``None``), ``bulk_variant`` (the variant that
    answers calls of :data:`BULK_ROWS` texts or more, else ``None``), ``manifest``.
    """

    def __init__(self, root: Path, manifest: BundleManifest, post: dict, tokenizer: BundleTokenizer,
                 runner: Runner, variant: str, threads: int, fallback_reason: str | None,
                 bulk_variant: str | None = None):
        self.root, self.manifest, self.tokenizer = root, manifest, tokenizer
        self.postprocess_config = post
        self.postprocessor = Postprocessor(post)
        self.runner, self.variant, self.threads = runner, variant, threads
        self.provider = runner.provider
        self.providers = runner.providers
        self.engine = runner.engine       # "onnxruntime", or "openvino" for that variant
        self.fallback_reason = fallback_reason
        self.inputs = runner.input_names
        self.needs_pairs = bool(post.get("pairs"))
        self.bulk_variant = bulk_variant
        self._bulk_runner = None          # opened on the first bulk call
        self._bulk_lock = threading.Lock()

    # -- loading -------------------------------------------------------------
    @classmethod
    def load(cls, bundle_dir, variant: str | None = None, providers=None, threads: int | None = None,
             *, verify: bool = True, trust=None, bulk_variant: str | None = "auto") -> "Predictor":
        """Load ``bundle_dir`` (``exports/<name>/<version>``, or ``exports/<name>`` for the newest).

        ``variant``: one of the shipped variants; default: the manifest's choice for
        the provider in use.  ``providers``: e.g. ``["CUDAExecutionProvider"]``;
        default TensorRT -> CUDA -> CPU, whichever can start here.  ``threads``:
        intra-op threads; default the CPUs this process may use.  ``verify``: check
        every file's sha256 against the manifest and refuse files it does not list
        (BundleError).  ``trust``: an Ed25519 public key (PEM file path, PEM bytes, raw 32
        bytes, or a list of them): the bundle must be signed by one of them (``manifest.sig``);
        an unsigned or differently signed bundle is refused.

        ``bulk_variant``: the variant for calls of :data:`BULK_ROWS` texts or more.  ``"auto"``
        (default, only when ``variant`` is not given): the one the export measured fastest at
        batch 32 on this provider, where that is not the batch-1 default, measured at least
        10 % more items/s (``planner.BULK_MIN_GAIN``), passed the same parity gate and can run here
        (e.g. ``openvino`` for bulk embedding, ``int8`` for single questions); ``None``: every
        call on one variant; a variant name: that one for bulk calls.
        """
        root = resolve_bundle_dir(bundle_dir)
        if trust is not None and not verify:
            raise UsageError("trust needs verify=True: a signature vouches for the hashes, "
                             "which must then be checked")
        manifest = verify_bundle(root, trust=trust) if verify else load_manifest(root)
        if threads is None:
            threads = available_cpus()
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise UsageError(f"threads must be a positive integer, got {threads!r}")
        choice = choose_providers(providers)
        if variant is not None:
            variant = check_variant_name(variant)
            if variant not in manifest.variants:
                why = manifest.rejected.get(variant, "it was not built")
                raise BundleError(f"bundle {manifest.model_id} has no {variant!r} variant: {why}",
                                  hint="shipped: " + ", ".join(manifest.variants))
            if choice.explicit:
                for p in choice.wanted:
                    check_combo(variant, p)
            choice.usable = [p for p in choice.usable if support(variant, p).runnable]
        chosen = variant or _default_variant(manifest, choice.usable[0])
        runner = _open(root, manifest, chosen, choice.usable, threads)
        used = runner.provider
        fallback = None
        gpu_wanted = [p for p in choice.wanted if p in GPU_PROVIDERS]
        if gpu_wanted and used not in GPU_PROVIDERS:
            reasons = [f"{p}: {choice.problems[p]}" for p in gpu_wanted if p in choice.problems]
            fallback = ("; ".join(reasons) if reasons else
                        f"onnxruntime did not start {' or '.join(gpu_wanted)} (see its log)")
            fallback = f"running on {used}: " + fallback
            if choice.explicit:
                warnings.warn(fallback, RuntimeWarning, stacklevel=2)
            else:
                log.info(fallback)
            if variant is None and _default_variant(manifest, used) != chosen:
                chosen = _default_variant(manifest, used)
                runner = _open(root, manifest, chosen, [used], threads)
        elif used in gpu_wanted and gpu_wanted.index(used) > 0:
            # a preferred GPU provider (TensorRT, without its libraries) was dropped for the next one
            fallback = f"running on {used}: " + "; ".join(
                f"{p}: {choice.problems.get(p, 'onnxruntime did not start it (see its log)')}"
                for p in gpu_wanted[:gpu_wanted.index(used)])
            if choice.explicit:
                warnings.warn(fallback, RuntimeWarning, stacklevel=2)
            else:
                log.info(fallback)
        if support(chosen, used).level == NOT_RECOMMENDED:
            warnings.warn(f"variant {chosen!r} on {used} is not recommended: "
                          f"{support(chosen, used).reason}", RuntimeWarning, stacklevel=2)
        post = _read_json(root / "postprocess.json")
        tok = manifest.tokenizer
        tokenizer = BundleTokenizer(root / tok["file"], max_length=tok["max_length"],
                                    pad_id=tok.get("pad_id", 0))
        bulk = _bulk_variant(manifest, bulk_variant, chosen, used, explicit=variant is not None)
        return cls(root, manifest, post, tokenizer, runner, chosen, threads, fallback, bulk)

    # -- predicting ----------------------------------------------------------
    def predict(self, texts: list[str], text_pairs: list[str] | None = None,
                batch_size: int = 32) -> list[Prediction]:
        """One :class:`Prediction` per text, in input order."""
        texts = check_texts(texts, "texts")
        raw, encodings = self._run(texts, text_pairs, batch_size, checked=True)
        if not encodings:
            return []
        return self.postprocessor(raw, texts, encodings)

    def predict_raw(self, texts: list[str], text_pairs: list[str] | None = None,
                    batch_size: int = 32):
        """Model outputs in input order: ``[N, C]`` logits, ``[N]`` pair scores, ``[N, H]``
        embeddings; for token tasks a list of ``[tokens_i, C]`` arrays (padding removed)."""
        return self._run(texts, text_pairs, batch_size)[0]

    def probabilities(self, texts: list[str], text_pairs: list[str] | None = None,
                      batch_size: int = 32) -> np.ndarray:
        """``[N, C]`` class probabilities in ``manifest.labels`` order: softmax for
        classification (with the bundle's fitted temperature, if any), per-label sigmoid for
        multilabel."""
        if self.manifest.kind not in ("classification", "multilabel"):
            raise UsageError(f"{self.manifest.model_id} is a {self.manifest.kind} model: it has no class "
                             "probabilities", hint="use predict() or embed()")
        logits = np.asarray(self.predict_raw(texts, text_pairs, batch_size), dtype=np.float32)
        if self.manifest.kind == "multilabel":
            return sigmoid(logits)
        return self.postprocessor.class_probabilities(logits).astype(np.float32)

    def embed(self, texts: list[str], batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """``[N, H]`` text embeddings of an embedding bundle, unit length unless ``normalize=False``."""
        if self.manifest.kind != "embedding":
            raise UsageError(f"{self.manifest.model_id} is a {self.manifest.kind} model, not an embedding model",
                             hint="export an embedding run (task kind 'embedding')")
        if not texts:
            return np.zeros((0, int(self.manifest.output["shape"][-1])), dtype=np.float32)
        vectors = np.asarray(self.predict_raw(list(texts), batch_size=batch_size), dtype=np.float32)
        return l2_normalize(vectors) if normalize else vectors

    def _run(self, texts, text_pairs, batch_size, checked: bool = False):
        if self.needs_pairs and text_pairs is None:
            raise UsageError(f"{self.manifest.model_id} was trained on text pairs",
                             hint="pass text_pairs (one per text)")
        if checked and len(texts) == 1 and self.manifest.kind != "token" \
                and isinstance(batch_size, int) and batch_size >= 1:
            # the latency path: one text -> one feed -> one run, nothing to sort or scatter back
            # (the texts were checked by the caller; pairs are checked by encode)
            encodings = self.tokenizer.encode_checked(texts, text_pairs)
            result = self.runner(self.tokenizer.pad(encodings, self.inputs))
            return np.asarray(result, dtype=np.float32), encodings
        runner = self._bulk() if self.bulk_variant and len(texts) >= BULK_ROWS else self.runner
        batches = self.tokenizer.batches(texts, text_pairs, inputs=self.inputs,
                                         batch_size=batch_size)
        n = sum(len(b.index) for b in batches)
        encodings: list = [None] * n
        if self.manifest.kind == "token":
            out: list | np.ndarray = [None] * n
        else:
            shape = [d if isinstance(d, int) else 0 for d in self.manifest.output["shape"][1:]]
            out = np.zeros([n, *shape], dtype=np.float32)
        for b in batches:
            result = runner(b.feed)
            for j, i in enumerate(b.index):
                encodings[i] = b.encodings[j]
                if self.manifest.kind == "token":
                    out[i] = result[j, :len(b.encodings[j].ids)]
            if self.manifest.kind != "token":
                out[b.index] = result
        return out, encodings

    def _bulk(self):
        """The bulk variant's runner, opened once (thread-safe) on the first bulk call."""
        if self._bulk_runner is None:
            with self._bulk_lock:
                if self._bulk_runner is None:
                    self._bulk_runner = _open(self.root, self.manifest, self.bulk_variant,
                                              [self.provider], self.threads)
        return self._bulk_runner

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def info(self) -> dict:
        m = self.manifest
        return {"model": m.model_id, "name": m.name, "version": m.version, "task": m.task,
                "kind": m.kind, "variant": self.variant, "engine": self.engine, "provider": self.provider,
                "providers": self.providers, "threads": self.threads,
                "bulk_variant": self.bulk_variant, "bulk_rows": BULK_ROWS if self.bulk_variant else None,
                "fallback_reason": self.fallback_reason, "labels": len(m.labels)}

    def __repr__(self) -> str:
        bulk = f", bulk_variant={self.bulk_variant}" if self.bulk_variant else ""
        return (f"Predictor({self.manifest.model_id}, variant={self.variant}{bulk}, "
                f"provider={self.provider}, threads={self.threads})")


def _open(root: Path, manifest: BundleManifest, variant: str, providers: list[str], threads: int):
    """The runner for ``variant``: an onnxruntime session (with the session settings the variant
    was checked and timed with, its ``session`` entry), or OpenVINO for the openvino variant (at
    the inference precision its parity gate saw, where this CPU has it)."""
    checked = (manifest.parity.get(OPENVINO) or {}).get("inference_precision") if variant == OPENVINO else None
    session = manifest.variants[variant].get("session") or {}
    return open_runner(root / manifest.variant_file(variant), threads, providers, precision=checked,
                       disabled_optimizers=tuple(session.get("disabled_optimizers") or ()))


def _default_variant(manifest: BundleManifest, provider: str) -> str:
    chosen = manifest.defaults.get(provider)
    if chosen == OPENVINO and chosen in manifest.variants:
        from .ov_runner import unavailable

        reason = unavailable()
        if reason is None:
            return chosen
        chosen = _fastest_onnxruntime_variant(manifest, provider)
        log.info("bundle %s: its default %s variant is openvino, but %s; running %s (the fastest "
                 "onnxruntime variant the export measured) instead", manifest.model_id, provider,
                 reason, chosen)
    if chosen in manifest.variants:
        return chosen
    for v in manifest.variants:
        if support(v, provider).level == OK and v != OPENVINO:
            return v
    return "fp32" if "fp32" in manifest.variants else next(iter(manifest.variants))


def _bulk_variant(manifest: BundleManifest, asked: str | None, chosen: str, provider: str, *,
                  explicit: bool) -> str | None:
    """The variant for bulk calls, or ``None`` (see ``Predictor.load(bulk_variant=...)``)."""
    if asked is None or (asked == "auto" and explicit):
        return None
    if asked != "auto":
        asked = check_variant_name(asked)
        if asked not in manifest.variants:
            raise BundleError(f"bundle {manifest.model_id} has no {asked!r} variant for bulk calls: "
                              f"{manifest.rejected.get(asked, 'it was not built')}",
                              hint="shipped: " + ", ".join(manifest.variants))
        if asked == OPENVINO:
            from .ov_runner import require

            require()
        return None if asked == chosen else asked
    fastest = bulk_default(manifest.measurements, manifest.variants, chosen, provider)
    if fastest is None:
        return None
    if fastest == OPENVINO:
        from .ov_runner import unavailable

        if unavailable():
            return None
    return fastest


def _fastest_onnxruntime_variant(manifest: BundleManifest, provider: str) -> str | None:
    timed = (manifest.measurements or {}).get(provider) or {}
    usable = {v: t for v, t in timed.items() if v in manifest.variants and v != OPENVINO
              and isinstance(t, dict) and t.get("batch1_p50_ms") and support(v, provider).level == OK}
    if usable:
        return min(usable, key=lambda v: usable[v]["batch1_p50_ms"])
    return next((v for v in ("int8", "fp32_opt", "fp32") if v in manifest.variants), None)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} cannot be read: {e}", hint="re-export the run") from None


__all__ = ["Predictor", "Prediction"]
