"""tuneforge's runtime against what a user would pick instead, side by side in one run.

    make bench-peers                     # builds .venv-peers, then runs this with the defaults
    python bench/peers.py --run RUN --bundle BUNDLE [--bundle-dynamic B] [--student-bundle B]
                          [--encoder-bundle B] --peers-python .venv-peers/bin/python
                          [--rounds 2] [--n1 200] [--n32 3080] [--only SUBSTRING ...]

The peers (PyTorch eager, Hugging Face Optimum on onnxruntime, sentence-transformers' torch,
ONNX and OpenVINO backends, OpenVINO on tuneforge's graph) live in their own venv
(``bench/peers-requirements.txt``: they need ``transformers<4.58`` and the plain ``onnxruntime``
package, which must not sit beside the project's ``onnxruntime-gpu``).  Each contender runs in
its own worker process (its venv's Python) and is driven from here over a pipe, so every one
sees the same texts, threads and model, and the contenders take turns: round after round, each
does its batch-1 pass and then its batch-32 pass while the others sleep.

Texts: the BANKING77 test set (``../shared/data/banking77/test.csv``), max length 64,
tokenisation included.  Batch 1: each of the first ``--n1`` questions alone (p50, p95).  Batch
32: the first ``--n32`` questions (default all 3,080) given in file order; the peers get file-
order chunks of 32 as their documented calls take them (sentence-transformers' ``encode``
sorts by length itself), tuneforge's ``Predictor`` sorts by length itself.

The classifier peers need a Hugging Face ``BertForSequenceClassification`` of the same model:
built once (``prepare``, cached under ``bench/results/peers-work/``) from the run's encoder
weights; HF's head reads the CLS pooler where tuneforge's reads the mean of the tokens, so the
HF classifier is refit by least squares to the tuneforge model's logits on 3,000 training texts
(same encoder, same compute; its accuracy is reported beside the others).  Everything runs
offline (``HF_HUB_OFFLINE=1``).  Results: ``bench/results/peers.json`` + a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("TUNEFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
BANKING = SHARED / "banking77"
RESULTS = HERE / "results"
WORK = RESULTS / "peers-work"
MAX_LEN = 64
BATCH = 32


# -- shared helpers (both venvs) ------------------------------------------------------------
def read_test() -> tuple[list[str], list[str]]:
    with open(BANKING / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def read_train_texts(train_csv: Path, n: int) -> list[str]:
    import random

    with open(train_csv, encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    random.Random(0).shuffle(texts)
    return texts[:n]


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), []))
    except OSError:
        return []
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")
            if f in flags]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        return "?"


def ort_quant_target() -> str:
    """The Optimum / sentence-transformers INT8 preset a user would pick on this CPU."""
    return "avx512_vnni" if "avx512_vnni" in cpu_flags() else "avx2"


# -- prepare (peers venv): HF classifier folder, Optimum graphs, OpenVINO INT8 graphs -----------
def prepare(spec: dict) -> dict:
    """Build every peer artefact once; returns what was built (cached: skipped when present)."""
    WORK.mkdir(parents=True, exist_ok=True)
    done = {}
    hf_dir = WORK / "hf-classifier"
    if not (hf_dir / "config.json").is_file():
        refit = _build_hf_classifier(Path(spec["run"]), hf_dir, Path(spec["train_csv"]))
        (WORK / "hf-classifier-refit.json").write_text(json.dumps(refit))
    if (WORK / "hf-classifier-refit.json").is_file():
        done["hf_classifier_refit"] = json.loads((WORK / "hf-classifier-refit.json").read_text())
    threads = int(spec["threads"])
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig

    plain, o2 = WORK / "optimum-fp32", WORK / "optimum-o2"
    if not (plain / "model.onnx").is_file():
        m = ORTModelForSequenceClassification.from_pretrained(hf_dir, export=True)
        m.save_pretrained(plain)
        _copy_tokenizer(hf_dir, plain)
    if not (o2 / "model_optimized.onnx").is_file():
        m = ORTModelForSequenceClassification.from_pretrained(plain)
        ORTOptimizer.from_pretrained(m).optimize(OptimizationConfig(optimization_level=2), save_dir=o2)
        _copy_tokenizer(hf_dir, o2)
    # Optimum's documented flow: quantise the exported graph.  (Its ORTQuantizer cannot quantise
    # its own O2 graph: shape inference finds no types behind the fused contrib ops.)
    qcfg = getattr(AutoQuantizationConfig, ort_quant_target())(is_static=False, per_channel=True)
    dst = WORK / "optimum-int8"
    if not dst.is_dir() or not list(dst.glob("*quantized.onnx")):
        ORTQuantizer.from_pretrained(plain, file_name="model.onnx").quantize(qcfg, save_dir=dst)
        _copy_tokenizer(hf_dir, dst)
    done["optimum_int8_preset"] = ort_quant_target()
    calib = read_train_texts(Path(spec["train_csv"]), 300)
    ov_cls = WORK / "ov-classifier-int8.xml"
    if not ov_cls.is_file():
        _nncf_int8(Path(spec["bundle"]) / "model.onnx", ov_cls, hf_dir, calib)
    st_dir = WORK / "st-minilm"
    if not (st_dir / "modules.json").is_file():
        _build_st(Path(spec["base_model"]), st_dir, calib, threads)
    done["work"] = str(WORK)
    return done


def _copy_tokenizer(src: Path, dst: Path) -> None:
    import shutil

    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)


def _build_hf_classifier(run: Path, out: Path, train_csv: Path) -> dict:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    enc_dir = run / "model" / "encoder"
    spec = json.loads((run / "model" / "task_model.json").read_text())
    labels = spec["labels"]
    tok = AutoTokenizer.from_pretrained(enc_dir)
    encoder = BertModel.from_pretrained(enc_dir, add_pooling_layer=True).eval()
    head = load_file(str(run / "model" / "head.safetensors"))
    texts = read_train_texts(train_csv, 3000)
    pooled, target = [], []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            b = tok(texts[i:i + 64], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
            hidden = encoder(**b)
            m = b["attention_mask"].unsqueeze(-1).float()
            mean = (hidden.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
            target.append(mean @ head["weight"].T + head["bias"])
            pooled.append(hidden.pooler_output)
    x, y = torch.cat(pooled).double(), torch.cat(target).double()
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    sol = torch.linalg.lstsq(x1, y).solution            # [H + 1, C]
    fit_agree = float(((x1 @ sol).argmax(-1) == y.argmax(-1)).double().mean())
    cfg = BertConfig.from_pretrained(enc_dir, num_labels=len(labels),
                                     id2label=dict(enumerate(labels)),
                                     label2id={lab: i for i, lab in enumerate(labels)})
    model = BertForSequenceClassification(cfg).eval()
    model.bert.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        model.classifier.weight.copy_(sol[:-1].T.float())
        model.classifier.bias.copy_(sol[-1].float())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"refit_rows": len(texts), "refit_label_agreement_on_fit_rows": fit_agree}


def _hf_tokenize(tok, texts, return_tensors="np"):
    return tok(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors=return_tensors)


def _nncf_int8(onnx_path: Path, out: Path, tok_dir: Path, calib: list[str]) -> None:
    """OpenVINO INT8 of an ONNX classifier: NNCF post-training quantisation (transformer preset)."""
    import nncf
    import openvino as ov
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    model = ov.Core().read_model(str(onnx_path))
    names = [i.get_any_name() for i in model.inputs]
    items = []
    for t in calib:
        enc = _hf_tokenize(tok, [t])
        items.append({k: enc[k].astype(np.int64) for k in names})
    q = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=len(items))
    ov.save_model(q, str(out))


def _build_st(base: Path, out: Path, calib: list[str], threads: int) -> None:
    """sentence-transformers folder with ONNX (dynamic INT8) and OpenVINO (FP32 + NNCF INT8)."""
    import shutil

    import nncf
    import openvino as ov
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    shutil.copytree(base, out, dirs_exist_ok=True)
    m = SentenceTransformer(str(out), backend="onnx", device="cpu")   # exports onnx/model.onnx
    m.save(str(out))
    export_dynamic_quantized_onnx_model(m, ort_quant_target(), str(out))
    SentenceTransformer(str(out), backend="openvino", device="cpu").save(str(out))
    xml = out / "openvino" / "openvino_model.xml"
    model = ov.Core().read_model(str(xml))
    names = [i.get_any_name() for i in model.inputs]
    st = SentenceTransformer(str(out), backend="torch", device="cpu")
    items = []
    for t in calib:
        enc = st.tokenizer([t], padding=True, truncation=True, max_length=MAX_LEN, return_tensors="np")
        items.append({k: enc[k].astype(np.int64) for k in names if k in enc})
    q = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                      subset_size=len(items))
    ov.save_model(q, str(out / "openvino" / "openvino_model_qint8_quantized.xml"))


# -- contenders (worker side) -----------------------------------------------------------------
def _ort_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return so


def make_contender(name: str, spec: dict):
    """``fn(texts) -> np.ndarray`` (logits or embeddings) for contender ``name``."""
    threads = int(spec["threads"])
    c = CONTENDERS[name]
    how = c["how"]
    if how.startswith("tf-"):
        from tuneforge.runtime import Predictor
        from tuneforge.runtime.tokenization import BundleTokenizer

        p = Predictor.load(spec[c["bundle"]], variant=c.get("variant"), threads=threads)
        tok = p.manifest.tokenizer
        if tok["max_length"] != MAX_LEN:  # same truncation as the peers
            p.tokenizer = BundleTokenizer(p.root / tok["file"], max_length=MAX_LEN, pad_id=tok.get("pad_id", 0))
        student = p.manifest.run.get("distilled_from") or {}
        info = {"variant": p.variant, "engine": p.engine, "threads": p.threads, "bulk_variant": p.bulk_variant,
                "student_layers": len(student.get("layer_map") or []) or None,
                "int8_candidate": (p.manifest.parity.get("int8") or {}).get("candidate"),
                "openvino_candidate": (p.manifest.parity.get("openvino") or {}).get("candidate")}
        if how == "tf-emb":
            return (lambda texts: p.embed(texts, batch_size=BATCH)), info
        return (lambda texts: p.predict_raw(texts, batch_size=BATCH)), info

    import torch

    torch.set_num_threads(threads)
    if how == "torch-cls":
        from transformers import AutoTokenizer, BertForSequenceClassification

        d = WORK / "hf-classifier"
        tok = AutoTokenizer.from_pretrained(d)
        model = BertForSequenceClassification.from_pretrained(d, attn_implementation="eager").eval()

        def run(texts):
            with torch.inference_mode():
                return model(**_hf_tokenize(tok, texts, "pt")).logits.numpy()
        return _chunked(run), {"torch_threads": torch.get_num_threads()}
    if how == "optimum":
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer

        d = WORK / c["dir"]
        file = c.get("file") or next(p.name for p in d.glob("*quantized.onnx"))
        tok = AutoTokenizer.from_pretrained(d)
        model = ORTModelForSequenceClassification.from_pretrained(
            d, file_name=file, provider="CPUExecutionProvider", session_options=_ort_options(threads))

        def run(texts):
            return model(**_hf_tokenize(tok, texts, "np")).logits
        return _chunked(run, sort=c.get("sorted", False)), {"file": file}
    if how == "ov-cls":
        import openvino as ov
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(WORK / "hf-classifier")
        path = Path(spec["bundle"]) / "model.onnx" if c["file"] == "bundle" else WORK / c["file"]
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads})
        names = [i.get_any_name() for i in compiled.inputs]
        req = compiled.create_infer_request()

        def run(texts):
            enc = _hf_tokenize(tok, texts)
            return req.infer({k: enc[k].astype(np.int64) for k in names})[compiled.outputs[0]].copy()
        return _chunked(run), {"model": str(path)}
    if how == "st":
        from sentence_transformers import SentenceTransformer

        kw = {}
        if c["backend"] == "onnx":
            kw = {"file_name": c["file"], "provider": "CPUExecutionProvider",
                  "session_options": _ort_options(threads)}
        elif c["backend"] == "openvino":
            kw = {"file_name": c["file"], "ov_config": {"INFERENCE_NUM_THREADS": threads}}
        m = SentenceTransformer(str(WORK / "st-minilm"), backend=c["backend"], device="cpu",
                                model_kwargs=kw or None)
        m.max_seq_length = MAX_LEN

        def run(texts):
            return m.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)
        return run, {"backend": c["backend"], "file": c.get("file")}
    raise ValueError(f"unknown contender kind {how!r}")


def _chunked(run, sort: bool = False):
    """File-order chunks of 32 (as a user calls a model); ``sort``: length-sorted chunks."""
    def fn(texts):
        if len(texts) <= BATCH:
            return np.asarray(run(texts))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else list(range(len(texts)))
        outs = [np.asarray(run([texts[i] for i in order[s:s + BATCH]])) for s in range(0, len(order), BATCH)]
        full = np.empty((len(texts), outs[0].shape[1]), dtype=np.float32)
        full[order] = np.concatenate(outs)
        return full
    return fn


# what each contender is: kind (cls/emb), venv (tf/peers), how it is built
CONTENDERS: dict[str, dict] = {
    "PyTorch eager (HF BertForSequenceClassification)": {"kind": "cls", "venv": "peers", "how": "torch-cls"},
    "Optimum ORT O2 (fused FP32)": {"kind": "cls", "venv": "peers", "how": "optimum", "dir": "optimum-o2",
                                    "file": "model_optimized.onnx"},
    "Optimum ORT INT8 (dynamic, per-channel)": {"kind": "cls", "venv": "peers", "how": "optimum",
                                                "dir": "optimum-int8"},
    "Optimum ORT INT8, length-sorted batches (bench sorts)": {"kind": "cls", "venv": "peers", "how": "optimum",
                                                              "dir": "optimum-int8", "sorted": True},
    "OpenVINO FP32 (tuneforge's model.onnx)": {"kind": "cls", "venv": "peers", "how": "ov-cls", "file": "bundle"},
    "OpenVINO INT8 (NNCF, tuneforge's model.onnx)": {"kind": "cls", "venv": "peers", "how": "ov-cls",
                                                     "file": "ov-classifier-int8.xml"},
    "tuneforge FP32 fused": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "bundle",
                             "variant": "fp32_opt"},
    "tuneforge INT8 (export's pick)": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "bundle",
                                       "variant": "int8"},
    "tuneforge INT8 (dynamic bundle)": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "bundle_dynamic",
                                        "variant": "int8"},
    "tuneforge static INT8 (QDQ bundle)": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "bundle_static",
                                           "variant": "int8"},
    "tuneforge OpenVINO variant (export's pick)": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "bundle",
                                                   "variant": "openvino"},
    "tuneforge CPU default (what Predictor.load serves here)": {"kind": "cls", "venv": "tf", "how": "tf-cls",
                                                                "bundle": "bundle"},
    "tuneforge student, CPU default": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "student_bundle"},
    "tuneforge student, INT8": {"kind": "cls", "venv": "tf", "how": "tf-cls", "bundle": "student_bundle",
                                "variant": "int8"},
    "sentence-transformers torch": {"kind": "emb", "venv": "peers", "how": "st", "backend": "torch"},
    "sentence-transformers ONNX INT8": {"kind": "emb", "venv": "peers", "how": "st", "backend": "onnx",
                                        "file": "onnx/model_qint8_{target}.onnx"},
    "sentence-transformers OpenVINO FP32": {"kind": "emb", "venv": "peers", "how": "st", "backend": "openvino",
                                            "file": "openvino/openvino_model.xml"},
    "sentence-transformers OpenVINO INT8 (NNCF)": {"kind": "emb", "venv": "peers", "how": "st",
                                                   "backend": "openvino",
                                                   "file": "openvino/openvino_model_qint8_quantized.xml"},
    "tuneforge embedding bundle, default (what Predictor.load serves here)": {
        "kind": "emb", "venv": "tf", "how": "tf-emb", "bundle": "encoder_bundle"},
    "tuneforge embedding bundle FP32": {"kind": "emb", "venv": "tf", "how": "tf-emb", "bundle": "encoder_bundle",
                                        "variant": "fp32"},
    "tuneforge embedding bundle INT8": {"kind": "emb", "venv": "tf", "how": "tf-emb", "bundle": "encoder_bundle",
                                        "variant": "int8"},
    "tuneforge embedding bundle OpenVINO": {"kind": "emb", "venv": "tf", "how": "tf-emb", "bundle": "encoder_bundle",
                                            "variant": "openvino"},
}
for _c in CONTENDERS.values():
    if "{target}" in _c.get("file", ""):
        _c["file"] = _c["file"].format(target=ort_quant_target())


def worker(name: str, spec: dict) -> None:
    """Serve one contender over stdin/stdout (JSON lines) until told to quit."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the protocol
    texts, _ = read_test()
    try:
        fn, info = make_contender(name, spec)
        fn(texts[:BATCH])
        for t in texts[:5]:
            fn([t])
        reply = {"ok": True, "info": info}
    except Exception as e:  # reported, the run goes on without this contender
        reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(reply), file=out, flush=True)
    if not reply["ok"]:
        return
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            return
        if cmd["cmd"] == "b1":
            lat, answers = [], []
            for t in texts[:cmd["n"]]:
                t0 = time.perf_counter()
                answer = fn([t])
                lat.append(time.perf_counter() - t0)
                answers.append(np.asarray(answer, dtype=np.float32)[0])
            if cmd.get("save"):
                np.save(cmd["save"], np.stack(answers))
            print(json.dumps({"lat": lat}), file=out, flush=True)
        elif cmd["cmd"] == "b32":
            chosen = texts[:cmd["n"]]
            t0 = time.perf_counter()
            res = np.asarray(fn(chosen), dtype=np.float32)
            seconds = time.perf_counter() - t0
            np.save(cmd["save"], res)
            print(json.dumps({"seconds": seconds, "items": len(chosen)}), file=out, flush=True)


# -- coordinator (project venv) ------------------------------------------------------------------
class Worker:
    def __init__(self, name: str, python: str, spec: dict):
        self.name = name
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", name,
                                      "--spec", json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(WORK / f"{_slug(name)}.log", "w"),
                                     text=True, env=env)
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "error": f"worker exited (see {WORK / (_slug(self.name) + '.log')})"}
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(cmd="quit")
            except (BrokenPipeError, json.JSONDecodeError):
                pass
            self.proc.wait(timeout=30)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")[:60]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run", help="the fine-tuned BANKING77 run (runs/<id>)")
    ap.add_argument("--bundle", help="its export (exports/<name>/<v>): FP32 fused + the export's INT8 pick")
    ap.add_argument("--bundle-dynamic", help="an export of the same run whose INT8 is dynamic (optional)")
    ap.add_argument("--bundle-static", help="an export of the same run with --int8-method static (optional)")
    ap.add_argument("--student-bundle", help="the distilled student's export (optional)")
    ap.add_argument("--encoder-bundle", help="an embedding bundle of all-MiniLM-L6-v2 (optional)")
    ap.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n1", type=int, default=200)
    ap.add_argument("--n32", type=int, default=None, help="batch-32 rows (default: all 3,080)")
    ap.add_argument("--only", nargs="*", help="contenders whose name contains one of these")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.spec))
        return
    if args.prepare_only:
        print(json.dumps(prepare(json.loads(args.spec))))
        return
    if not (args.run and args.bundle):
        ap.error("--run and --bundle are needed")

    from tuneforge.models import resolve_model_path

    texts, gold = read_test()
    n32 = args.n32 or len(texts)
    run = Path(args.run).resolve()
    run_info = json.loads((run / "run.json").read_text())
    train_csv = Path(run_info["data"]["train"]["path"])
    if not train_csv.is_file():
        train_csv = ROOT / "plugins" / "support_bot" / "data" / "train.csv"
    spec = {"threads": args.threads, "run": str(run), "bundle": str(Path(args.bundle).resolve()),
            "bundle_dynamic": args.bundle_dynamic and str(Path(args.bundle_dynamic).resolve()),
            "bundle_static": args.bundle_static and str(Path(args.bundle_static).resolve()),
            "student_bundle": args.student_bundle and str(Path(args.student_bundle).resolve()),
            "encoder_bundle": args.encoder_bundle and str(Path(args.encoder_bundle).resolve()),
            "train_csv": str(train_csv), "base_model": str(resolve_model_path("all-MiniLM-L6-v2"))}
    WORK.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    print("preparing the peers' models (cached in bench/results/peers-work/) ...", file=sys.stderr)
    t0 = time.perf_counter()
    prep = subprocess.run([args.peers_python, str(Path(__file__).resolve()), "--prepare-only",
                           "--spec", json.dumps(spec)], env=env, capture_output=True, text=True)
    if prep.returncode != 0:
        sys.exit(f"prepare failed:\n{prep.stderr[-4000:]}")
    prepared = json.loads(prep.stdout.strip().splitlines()[-1])
    print(f"prepared in {time.perf_counter() - t0:.0f} s: {prepared}", file=sys.stderr)

    names = [n for n, c in CONTENDERS.items()
             if not c.get("bundle") or spec.get(c["bundle"])]
    if args.only:
        names = [n for n in names if any(s.lower() in n.lower() for s in args.only)]
    workers: dict[str, Worker] = {}
    failed: dict[str, str] = {}
    for n in names:
        python = sys.executable if CONTENDERS[n]["venv"] == "tf" else args.peers_python
        w = Worker(n, python, spec)
        if w.hello.get("ok"):
            workers[n] = w
            print(f"  ready: {n}", file=sys.stderr)
        else:
            failed[n] = w.hello.get("error", "?")
            print(f"  FAILED: {n}: {failed[n]}", file=sys.stderr)
            w.close()
    load_before = os.getloadavg()
    lat = {n: [[] for _ in range(args.rounds)] for n in workers}
    b32 = {n: [] for n in workers}
    outputs, outputs1 = {}, {}
    try:
        for r in range(args.rounds):
            order = list(workers) if r % 2 == 0 else list(reversed(workers))  # drift hits all alike
            for n in order:
                time.sleep(0.3)  # let the last contender's spinning threads go idle
                save1 = WORK / f"out1-{_slug(n)}.npy"
                lat[n][r] = workers[n].ask(cmd="b1", n=args.n1, save=str(save1))["lat"]
                outputs1[n] = save1
                time.sleep(0.3)
                save = WORK / f"out-{_slug(n)}.npy"
                res = workers[n].ask(cmd="b32", n=n32, save=str(save))
                b32[n].append(res["items"] / res["seconds"])
                outputs[n] = save
                print(f"  round {r + 1}: {n}: p50 {_pct(lat[n][r], 50):.2f} ms, "
                      f"{b32[n][-1]:.0f} items/s", file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()
    load_after = os.getloadavg()
    labels = json.loads((Path(args.bundle) / "labels.json").read_text())["labels"]
    gold_ids = np.array([labels.index(g) for g in gold[:n32]])
    results = {}
    emb_ref = next((n for n in workers if CONTENDERS[n]["how"] == "st" and CONTENDERS[n]["backend"] == "torch"),
                   None)
    ref = np.load(outputs[emb_ref]) if emb_ref else None
    for n in workers:
        out = np.load(outputs[n])
        r = {"kind": CONTENDERS[n]["kind"], "info": workers[n].hello.get("info"),
             "batch1_p50_ms": [_pct(x, 50) for x in lat[n]], "batch1_p95_ms": [_pct(x, 95) for x in lat[n]],
             "batch1_p50_ms_all": _pct(sum(lat[n], []), 50), "batch1_p95_ms_all": _pct(sum(lat[n], []), 95),
             "batch32_items_per_s": b32[n], "batch32_items_per_s_mean": statistics.fmean(b32[n])}
        if CONTENDERS[n]["kind"] == "cls":
            r["accuracy"] = float(np.mean(out.argmax(-1) == gold_ids))
        elif ref is not None:
            cos = np.sum(out * ref, -1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(ref, axis=-1) + 1e-12)
            q = min(200, len(out))
            same = (out[:q] @ out.T).argsort(-1)[:, -2] == (ref[:q] @ ref.T).argsort(-1)[:, -2]
            # retrieval as an app does it: each question alone (batch 1) against the index built in
            # bulk (batch 32), its nearest other entry compared with ST torch's
            q1 = np.load(outputs1[n])
            scores = q1 @ out.T
            scores[np.arange(len(q1)), np.arange(len(q1))] = -np.inf
            ref_scores = ref[:len(q1)] @ ref.T
            ref_scores[np.arange(len(q1)), np.arange(len(q1))] = -np.inf
            r.update(mean_cosine_vs_st_torch=float(cos.mean()), min_cosine_vs_st_torch=float(cos.min()),
                     nearest_neighbour_agreement=float(same.mean()),
                     query_vs_index_nn_agreement=float(np.mean(scores.argmax(-1) == ref_scores.argmax(-1))))
        results[n] = r
    report = {"machine": {"cpu": cpu_name(), "flags": cpu_flags(), "cores": os.cpu_count(),
                          "threads": args.threads},
              "load_average_before": load_before, "load_average_after": load_after,
              "rounds": args.rounds, "n_batch1": args.n1, "n_batch32": n32, "max_length": MAX_LEN,
              "prepared": prepared, "failed": failed, "spec": spec, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))


def table(report: dict) -> str:
    res = report["results"]
    lines = [f"CPU: {report['machine']['cpu']} ({', '.join(report['machine']['flags'])}), "
             f"{report['machine']['threads']} threads; load average before "
             f"{report['load_average_before'][0]:.2f}, after {report['load_average_after'][0]:.2f}", ""]
    for kind, title in (("cls", "BANKING77 intent classifier"), ("emb", "all-MiniLM-L6-v2 embeddings")):
        names = [n for n in res if res[n]["kind"] == kind]
        if not names:
            continue
        fastest_b1 = min((n for n in names if not n.startswith("tuneforge")),
                         key=lambda n: res[n]["batch1_p50_ms_all"], default=None)
        fastest_b32 = max((n for n in names if not n.startswith("tuneforge")),
                          key=lambda n: res[n]["batch32_items_per_s_mean"], default=None)
        quality = "test accuracy" if kind == "cls" else \
            "vs ST torch: mean cosine / NN agreement (bulk) / NN agreement (b1 questions vs bulk index)"
        lines += [f"### {title}", "", f"| contender ({report['rounds']} rounds) | b1 p50 ms | b1 p95 ms | "
                  f"b32 items/s | × fastest peer b1 | × fastest peer b32 | {quality} |",
                  "|---|---|---|---|---|---|---|"]
        for n in names:
            r = res[n]
            x1 = res[fastest_b1]["batch1_p50_ms_all"] / r["batch1_p50_ms_all"] if fastest_b1 else float("nan")
            x32 = r["batch32_items_per_s_mean"] / res[fastest_b32]["batch32_items_per_s_mean"] \
                if fastest_b32 else float("nan")
            q = f"{r['accuracy']:.4f}" if kind == "cls" else (
                f"{r['mean_cosine_vs_st_torch']:.4f} / {r['nearest_neighbour_agreement']:.3f} / "
                f"{r.get('query_vs_index_nn_agreement', float('nan')):.3f}"
                if "mean_cosine_vs_st_torch" in r else "-")
            lines.append(f"| {n} | {' / '.join(f'{v:.2f}' for v in r['batch1_p50_ms'])} | "
                         f"{' / '.join(f'{v:.1f}' for v in r['batch1_p95_ms'])} | "
                         f"{' / '.join(f'{v:.0f}' for v in r['batch32_items_per_s'])} | {x1:.2f} | {x32:.2f} | {q} |")
        lines += ["", f"Fastest peer at batch 1: {fastest_b1}; at batch 32: {fastest_b32} "
                      "(ratios use all rounds pooled: p50 over every request, mean items/s).", ""]
    if report["failed"]:
        lines += ["Not measured: " + "; ".join(f"{k}: {v}" for k, v in report["failed"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
