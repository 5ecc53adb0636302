"""`tuneforge eval` on a run (PyTorch) and on its bundle (onnxruntime) agree."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tuneforge.cli import cli
from tuneforge.export import export_run
from tuneforge.train import config_for_task, train


def test_eval_of_a_bundle_matches_eval_of_its_run(tmp_path, tiny_encoder_dir):
    data = tmp_path / "d.csv"
    data.write_text("text,label\n" + "".join(f"{w} thing {i} here,{w}\n"
                                             for i in range(20) for w in ("red", "blue", "green")))
    run = train(config_for_task("text-classification", data=str(data), base_model=tiny_encoder_dir, epochs=2,
                                learning_rate=3e-3, output_dir=str(tmp_path / "runs")), progress=False)
    bundle = export_run(run.run_dir, out_dir=tmp_path / "exports", variants=["fp32"], measure=False)
    by_run = json.loads(CliRunner().invoke(cli, ["eval", str(run.run_dir), "--data", str(data), "--json"]).output)
    result = CliRunner().invoke(cli, ["eval", str(bundle), "--data", str(data), "--json"])
    by_bundle = json.loads(result.output)
    assert by_bundle["variant"] == "fp32" and by_bundle["provider"] == "CPUExecutionProvider"
    assert by_bundle["metrics"]["n"] == by_run["metrics"]["n"] == 60
    assert by_bundle["metrics"]["accuracy"] == by_run["metrics"]["accuracy"]
    assert by_bundle["metrics"]["confusion_matrix"] == by_run["metrics"]["confusion_matrix"]
    plain = CliRunner().invoke(cli, ["eval", str(bundle), "--data", str(data)])
    assert plain.exit_code == 0 and "accuracy: " in plain.output
