"""``tuneforge export``."""

from __future__ import annotations

import click

from .common import echo_json

EXAMPLE = """\b
Examples:
  tuneforge export runs/support-intents-top-k-20261122-101500
  tuneforge export RUN --name support-bot --variants fp32,int8 --max-metric-drop 0.5
  tuneforge export RUN --triton      # also write a Triton model repository
  tuneforge export RUN --sign keys/release.pem   # signed bundle (manifest.sig)

Writes exports/NAME/vN/: ONNX variants that passed the parity gate, tokenizer,
labels, manifest.json (hashes, parity, timings) and a model card."""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.argument("run", type=click.Path(exists=True, file_okay=False))
    @click.option("--name", help="Bundle name (default: the run's task).")
    @click.option("--version", "version", help="Bundle version (default: next vN).")
    @click.option("--out-dir", default="exports", show_default=True, type=click.Path(file_okay=False))
    @click.option("--variants", help="Comma list of fp32, fp32_opt, int8, fp16, openvino (default: all that fit "
                                     "here; openvino where OpenVINO is installed).")
    @click.option("--max-metric-drop", type=float, default=1.0, show_default=True,
                  help="Reject a variant whose task metric drops more than this many points.")
    @click.option("--parity-rows", type=int, default=2000, show_default=True,
                  help="Validation rows the parity gate checks.")
    @click.option("--no-measure", is_flag=True, help="Skip timing the variants on this machine.")
    @click.option("--int8-method", "int8_methods", type=click.Choice(["auto", "dynamic", "static"]),
                  default="auto", show_default=True,
                  help="INT8 candidates: dynamic, static QDQ (calibrated on the run's training texts), or both.")
    @click.option("--triton", is_flag=True, help="Also write a Triton Inference Server model repository.")
    @click.option("--sign", "sign", type=click.Path(dir_okay=False),
                  help="Sign the manifest with this Ed25519 private key (PEM; see `tuneforge keygen`).")
    @click.option("--calibrate/--no-calibrate", default=None,
                  help="Fit a softmax temperature on the validation split and ship it, so class probabilities "
                       "are calibrated (default: what the task asks for, e.g. finance-sentiment).")
    @click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
    def export(run, name, version, out_dir, variants, max_metric_drop, parity_rows, no_measure, triton, sign,
               as_json, int8_methods, calibrate):
        """Export a training run to an ONNX bundle (optimised, INT8, FP16) behind a parity gate."""
        from ..export import export_run

        bundle = export_run(run, out_dir=out_dir, name=name, version=version,
                            variants=variants.split(",") if variants else None,
                            max_metric_drop=max_metric_drop, parity_rows=parity_rows,
                            measure=not no_measure, triton=triton, sign=sign, int8_methods=int8_methods,
                            calibrate=calibrate)
        if as_json:
            import json

            echo_json(json.loads((bundle / "manifest.json").read_text()))
            return
        click.echo(f"bundle: {bundle}")
