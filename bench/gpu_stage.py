"""On the lent GPU machine: receive the parts gpu_carry.py made, reassemble, verify, install.

    python3 bench/gpu_stage.py receive .gpu_carry/call2 /root/tf-stage
    python3 bench/gpu_stage.py install /root/tf-stage --site /root/tf-site --model /root/tf-model

``receive`` copies one call's part (and plan.json) into the stage folder, checks its sha256 and
says which parts are still missing.  ``install`` checks that every part is there and intact,
joins them, checks the archive's sha256, unpacks it, checks every file of the onnxruntime-gpu
wheel against the wheel's own RECORD (sha256 per file), puts the wheel's contents in ``--site``
(what ``pip install --target`` would; use it with ``PYTHONPATH=--site``), and widens the FP16
MiniLM weights to FP32 into ``--model`` (a normal Hugging Face folder).  It is idempotent: a
second ``install`` of the same archive does nothing.

Standard library + numpy + safetensors only (all on the machine's image); runs here too (tests).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import shutil
import sys
import tarfile
import time
from pathlib import Path

PLAN = "plan.json"


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_plan(folder: Path) -> dict:
    path = folder / PLAN
    if not path.is_file():
        sys.exit(f"gpu_stage: {path} is missing: carry a folder made by bench/gpu_carry.sh")
    return json.loads(path.read_text())


def part_status(stage: Path, plan: dict) -> tuple[list[str], list[str]]:
    """(intact part names, missing or damaged ones, with why)."""
    ok, bad = [], []
    for part in plan["parts"]:
        path = stage / part["name"]
        if not path.is_file():
            bad.append(f"{part['name']} (missing: call {part['call']})")
        elif path.stat().st_size != part["size"] or sha256(path) != part["sha256"]:
            bad.append(f"{part['name']} (damaged: resend call {part['call']})")
        else:
            ok.append(part["name"])
    return ok, bad


def receive(call_dir: Path, stage: Path) -> int:
    plan = read_plan(call_dir)
    stage.mkdir(parents=True, exist_ok=True)
    if (stage / PLAN).is_file() and read_plan(stage)["archive"]["sha256"] != plan["archive"]["sha256"]:
        for old in stage.glob("payload.part*"):  # parts of another archive: start over
            old.unlink()
    for f in call_dir.iterdir():
        if f.is_file():
            shutil.copyfile(f, stage / f.name)
    ok, bad = part_status(stage, plan)
    print(f"gpu_stage: {stage} holds {len(ok)} of {len(plan['parts'])} parts intact"
          + (f"; still to come: {', '.join(bad)}" if bad else "; ready to install"))
    mine = [p["name"] for p in plan["parts"] if p["call"] == plan_call(call_dir, plan)]
    return 0 if all(n in ok for n in mine) else 1


def plan_call(call_dir: Path, plan: dict) -> int | None:
    names = {f.name for f in call_dir.iterdir()}
    return next((p["call"] for p in plan["parts"] if p["name"] in names), None)


def verify_record(site_pkg_root: Path) -> int:
    """Check every file listed in the wheel's RECORD (``name,sha256=<urlsafe b64>,size``)."""
    records = list(site_pkg_root.glob("*.dist-info/RECORD"))
    if len(records) != 1:
        raise SystemExit(f"gpu_stage: expected one wheel RECORD under {site_pkg_root}, found {len(records)}")
    n = 0
    with open(records[0], newline="", encoding="utf-8") as f:
        for name, digest, size in csv.reader(f):
            if not digest:  # RECORD lists itself without a hash
                continue
            algo, _, want = digest.partition("=")
            path = site_pkg_root / name
            data = path.read_bytes()
            got = base64.urlsafe_b64encode(hashlib.new(algo, data).digest()).rstrip(b"=").decode()
            if got != want or (size and int(size) != len(data)):
                raise SystemExit(f"gpu_stage: {name} does not match the wheel's RECORD")
            n += 1
    return n


def widen(src: Path, dst: Path, expect: dict) -> dict:
    """FP16 safetensors -> FP32 (other dtypes kept), checked against the original's names/shapes/dtypes."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(src))
    out = {}
    for name, want in expect.items():
        if name not in tensors:
            raise SystemExit(f"gpu_stage: tensor {name} is missing from {src}")
        arr = tensors[name]
        arr = arr.astype(np.dtype(want["dtype"])) if arr.dtype != np.dtype(want["dtype"]) else arr
        if list(arr.shape) != want["shape"]:
            raise SystemExit(f"gpu_stage: tensor {name} has shape {list(arr.shape)}, expected {want['shape']}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SystemExit(f"gpu_stage: tensor {name} holds non-finite values")
        out[name] = np.ascontiguousarray(arr)
    if set(tensors) - set(expect):
        raise SystemExit(f"gpu_stage: unexpected tensors in {src}: {sorted(set(tensors) - set(expect))[:3]}")
    save_file(out, str(dst), metadata={"format": "pt"})
    return {"tensors": len(out), "bytes": dst.stat().st_size}


def install(stage: Path, site: Path, model: Path) -> int:
    plan = read_plan(stage)
    marker = site / ".tf-stage.json"
    if marker.is_file() and json.loads(marker.read_text()).get("archive") == plan["archive"]["sha256"] \
            and (model / "config.json").is_file():
        print(f"gpu_stage: already installed ({site}, {model})")
        return 0
    ok, bad = part_status(stage, plan)
    if bad:
        print(f"gpu_stage: cannot install, parts not there: {', '.join(bad)}. The machine keeps them only "
              "while warm (30 s between calls): send the calls again from call 1", file=sys.stderr)
        return 2
    t = time.perf_counter()
    joined = stage / "payload.tar.xz"
    with open(joined, "wb") as out:
        for part in plan["parts"]:
            with open(stage / part["name"], "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    if sha256(joined) != plan["archive"]["sha256"]:
        print("gpu_stage: the joined archive's sha256 differs from plan.json", file=sys.stderr)
        return 2
    unpacked = stage / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(joined, "r:xz") as tar:
        tar.extractall(unpacked, filter="data")
    joined.unlink()
    n = verify_record(unpacked / "site")
    shutil.rmtree(site, ignore_errors=True)
    shutil.move(str(unpacked / "site"), str(site))
    shutil.rmtree(model, ignore_errors=True)
    model.mkdir(parents=True)
    src = unpacked / "model"
    for f in src.rglob("*"):
        if f.is_file() and f.name != plan["model"]["fp16_file"]:
            (model / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, model / f.relative_to(src))
    w = widen(src / plan["model"]["fp16_file"], model / "model.safetensors", plan["model"]["tensors"])
    shutil.rmtree(unpacked)
    marker.write_text(json.dumps({"archive": plan["archive"]["sha256"], "wheel": plan["wheel"]}) + "\n")
    print(f"gpu_stage: installed {plan['wheel']['name']} into {site} ({n} files match its RECORD) and "
          f"widened {w['tensors']} tensors to {model}/model.safetensors ({w['bytes'] / 1e6:.1f} MB) "
          f"in {time.perf_counter() - t:.1f} s")
    requirements(site)
    return 0


def requirements(site: Path) -> None:
    """Say which of the wheel's (non-extra) requirements this Python lacks or has too old."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover
        return
    for meta in site.glob("*.dist-info/METADATA"):
        for line in meta.read_text(encoding="utf-8").splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and "extra" in str(req.marker):
                continue
            try:
                have = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                print(f"gpu_stage: WARNING: {req} is not installed here")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                print(f"gpu_stage: WARNING: {req} wanted, {have} installed")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive", help="copy one call's part into the stage folder and check it")
    r.add_argument("call_dir", type=Path)
    r.add_argument("stage", type=Path)
    i = sub.add_parser("install", help="join, verify and install every part of the stage folder")
    i.add_argument("stage", type=Path)
    i.add_argument("--site", type=Path, default=Path("/root/tf-site"))
    i.add_argument("--model", type=Path, default=Path("/root/tf-model"))
    a = ap.parse_args(argv)
    if a.cmd == "receive":
        return receive(a.call_dir, a.stage)
    return install(a.stage, a.site, a.model)


if __name__ == "__main__":
    sys.exit(main())
