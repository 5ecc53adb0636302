"""Distillation: a shallower student from a trained run, through the engine's loop, exported like any run."""

from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner

from tuneforge.errors import ConfigError, UsageError
from tuneforge.train import config_for_task, train
from tuneforge.train.distill import DistillConfig, build_student, distill, evenly_spaced
from tuneforge.train.loop import distillation_loss

WORDS = {"pos": ["great", "good", "excellent", "love", "nice"],
         "neg": ["bad", "awful", "terrible", "hate", "poor"],
         "mid": ["okay", "average", "fine", "normal", "plain"]}
FILLER = ["the", "service", "was", "today", "and", "it", "my", "order", "felt", "really"]


@pytest.fixture(scope="module")
def deep_encoder_dir(tmp_path_factory):
    """A 4-layer, 32-wide BERT with MiniLM's tokenizer (random weights, built from a config)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tuneforge.models import resolve_model_path

    out = tmp_path_factory.mktemp("tiny-bert-4")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def teacher_run(deep_encoder_dir, tmp_path_factory):
    rng = random.Random(0)
    d = tmp_path_factory.mktemp("data")
    labels = list(WORDS)
    with open(d / "cls.csv", "w") as f:
        f.write("text,label\n")
        for i in range(180):
            words = rng.sample(FILLER, 4) + rng.sample(WORDS[labels[i % 3]], 2)
            rng.shuffle(words)
            f.write(f"{' '.join(words)},{labels[i % 3]}\n")
    cfg = config_for_task("text-classification", data=str(d / "cls.csv"), base_model=deep_encoder_dir,
                          epochs=4, batch_size=16, learning_rate=3e-3, max_length=32,
                          early_stopping_patience=0, output_dir=str(tmp_path_factory.mktemp("runs")))
    return train(cfg, progress=False)


def test_student_layers_are_evenly_spaced_from_the_bottom():
    assert evenly_spaced(6, 3) == [0, 2, 4]
    assert evenly_spaced(6, 2) == [0, 3]
    assert evenly_spaced(6, 4) == [0, 1, 3, 4]
    assert evenly_spaced(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="cannot come from a 6-layer teacher"):
        evenly_spaced(6, 7)


def test_layers_follow_the_layer_map_unless_given():
    assert DistillConfig(teacher="runs/x").layers == 3
    assert DistillConfig(teacher="runs/x", layer_map=[0, 5]).layers == 2


@pytest.mark.parametrize("settings, message", [
    ({"layers": 0}, "layers must be a positive integer"),
    ({"layers": 3, "layer_map": [0, 2]}, "layer_map names 2 layers but layers is 3"),
    ({"layers": 2, "layer_map": [3, 1]}, "increasing teacher layer indices"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"alpha": 1.5}, "alpha must be in [0, 1]"),
])
def test_bad_distill_settings_fail_with_one_clear_message(settings, message):
    with pytest.raises(ConfigError) as err:
        DistillConfig(teacher="runs/x", **settings)
    assert message in err.value.one_line()


def test_the_student_copies_the_chosen_teacher_layers_and_leaves_the_teacher_whole(teacher_run):
    from tuneforge.modeling import TaskModel

    teacher = TaskModel.load(teacher_run.run_dir / "model")
    student = build_student(teacher, [1, 3])
    assert len(teacher.encoder.encoder.layer) == 4 and teacher.encoder.config.num_hidden_layers == 4
    assert len(student.encoder.encoder.layer) == 2 and student.encoder.config.num_hidden_layers == 2
    for s, t in zip(student.encoder.encoder.layer, [teacher.encoder.encoder.layer[i] for i in (1, 3)]):
        for (name, a), (_, b) in zip(s.state_dict().items(), t.state_dict().items()):
            assert torch.equal(a, b), name
        assert s.attention.self.query.weight.data_ptr() != t.attention.self.query.weight.data_ptr()
    assert torch.equal(student.head.weight, teacher.head.weight)
    ids = torch.tensor([[101, 2204, 2326, 102]])
    assert student(ids, torch.ones_like(ids)).shape == (1, 3)


def test_distillation_loss_mixes_kl_to_the_teacher_with_the_label_loss():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    hard = torch.nn.functional.cross_entropy(student, torch.arange(8) % 5)
    assert torch.allclose(distillation_loss(student, teacher, hard, 2.0, 0.0), hard)
    assert distillation_loss(teacher, teacher, hard, 2.0, 1.0).abs() < 1e-6   # KL(p || p) = 0
    kl = distillation_loss(student, teacher, hard, 2.0, 1.0)
    p = torch.softmax(teacher / 2, -1)
    expected = (p * (p.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    assert torch.allclose(kl, expected, atol=1e-5)


def test_distill_writes_a_normal_run_that_exports_and_predicts(teacher_run, tmp_path):
    from tuneforge.export import export_run
    from tuneforge.runtime import Predictor

    result = distill(DistillConfig(teacher=str(teacher_run.run_dir), layers=2, epochs=6,
                                   learning_rate=3e-3, output_dir=str(tmp_path / "runs"),
                                   run_name="student"), progress=False)
    run = result.run_dir
    assert run.name == "student"
    config = json.loads((run / "config.json").read_text())
    info = json.loads((run / "run.json").read_text())
    assert config["mode"] == "full" and config["task"] == "text-classification"
    assert info["status"] == "complete"
    assert info["distill"]["layer_map"] == [0, 2] and info["distill"]["teacher_layers"] == 4
    assert json.loads((run / "model" / "encoder" / "config.json").read_text())["num_hidden_layers"] == 2
    assert not (run / "checkpoint.pt").exists()
    teacher_acc = teacher_run.metrics["test"]["accuracy"]
    assert teacher_acc >= 0.9   # the keyword task is learnable: the comparison below means something
    assert result.metrics["test"]["accuracy"] >= teacher_acc - 0.15
    bundle = export_run(run, out_dir=tmp_path / "exports", variants=["fp32", "int8"], measure=False)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["run"]["id"] == "student" and "int8" in manifest["variants"]
    # the manifest and the model card say what it was distilled from and what that cost
    student = manifest["run"]["distilled_from"]
    assert student["layer_map"] == [0, 2] and student["teacher_layers"] == 4
    vs = student["accuracy_vs_teacher"]["test"]
    assert vs["teacher"] == pytest.approx(teacher_acc)
    assert vs["delta_points"] == pytest.approx(100 * (result.metrics["test"]["accuracy"] - teacher_acc), abs=1e-3)
    card = (bundle / "README.md").read_text()
    assert "distilled student: 2 of the teacher's 4 layers" in card and f"{vs['delta_points']:+.2f} points" in card
    pred = Predictor.load(bundle, variant="fp32").predict(["the service was great and good today"])
    assert pred[0].label == "pos"


def test_distilling_a_run_that_is_not_classification_is_refused(tmp_path, tiny_encoder_dir):
    from _bundle_helpers import make_run

    run = make_run(tmp_path, tiny_encoder_dir, "pair")
    (run / "config.json").write_text(json.dumps({"task": "pair-scoring", "mode": "full"}))
    with pytest.raises(UsageError, match="supports classification runs"):
        distill(DistillConfig(teacher=str(run), layers=1), progress=False)


def test_cli_distill_and_its_one_line_errors(teacher_run, tmp_path):
    from tuneforge.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["distill", str(teacher_run.run_dir), "--layers", "1", "--epochs", "1",
                              "--output-dir", str(tmp_path / "runs"), "--run-name", "one", "--no-progress",
                              "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["run_dir"].endswith("one") and "accuracy" in result["metrics"]["test"]
    bad = runner.invoke(cli, ["distill", str(teacher_run.run_dir), "--layers", "2", "--layer-map", "0,x"])
    assert bad.exit_code == 2 and "expected comma-separated layer numbers" in bad.output
    bad = runner.invoke(cli, ["distill", str(teacher_run.run_dir), "--layers", "2", "--layer-map", "0,9"])
    assert bad.exit_code != 0 and bad.output.count("\n") == 1
    assert "names a layer the 4-layer teacher lacks" in bad.output


def test_distilling_on_data_with_labels_the_teacher_lacks_is_one_clear_line(teacher_run, tmp_path):
    """The task's data changed since the teacher was trained (a new label): refused before any
    training, naming the labels and the fix -- not a KeyError traceback."""
    import shutil

    from tuneforge.cli import cli

    run = tmp_path / "teacher"
    shutil.copytree(teacher_run.run_dir, run)
    config = json.loads((run / "config.json").read_text())
    data = tmp_path / "more.csv"
    data.write_text(open(config["data"]).read() + "".join(f"brand new thing {i},surprise\n" for i in range(30)))
    (run / "config.json").write_text(json.dumps({**config, "data": str(data)}))
    out = CliRunner().invoke(cli, ["distill", str(run), "--layers", "1", "--epochs", "1",
                                   "--output-dir", str(tmp_path / "runs"), "--no-progress"])
    assert out.exit_code != 0 and out.output.count("\n") == 1, out.output
    assert "label(s) the teacher teacher was not trained on: surprise" in out.output
    assert "retrain the teacher" in out.output and not (tmp_path / "runs").exists()
