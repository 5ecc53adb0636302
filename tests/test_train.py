"""The training engine on a tiny model built from a config: every kind, every mode, hygiene."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tuneforge.config import TrainConfig
from tuneforge.errors import ConfigError
from tuneforge.modeling import ModelSpec, TaskModel
from tuneforge.train import config_for_task, evaluate_run, train
from tuneforge.train.loop import Trainer
from tuneforge.train.modes import apply_mode, merge_lora

WORDS = {"pos": ["great", "good", "excellent", "love", "nice"],
         "neg": ["bad", "awful", "terrible", "hate", "poor"],
         "mid": ["okay", "average", "fine", "normal", "plain"]}
FILLER = ["the", "service", "was", "today", "and", "it", "my", "order", "felt", "really"]


def sentence(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Small synthetic files for each task kind (keyword-driven, learnable by a tiny model)."""
    rng = random.Random(0)
    d = tmp_path_factory.mktemp("data")
    labels = list(WORDS)
    with open(d / "cls.csv", "w") as f:
        f.write("text,label\n")
        for i in range(150):
            lab = labels[i % 3]
            f.write(f"{sentence(rng, lab)},{lab}\n")
    with open(d / "multi.csv", "w") as f:
        f.write("text,label\n")
        for i in range(120):
            a, b = labels[i % 3], labels[(i + 1) % 3]
            text = sentence(rng, a) + " " + " ".join(rng.sample(WORDS[b], 2))
            f.write(f"{text},{a}|{b}\n")
    with open(d / "pair.csv", "w") as f:
        f.write("text,text_pair,label\n")
        for i in range(120):
            a = labels[i % 3]
            b = a if i % 2 else labels[(i + 1) % 3]
            f.write(f"{sentence(rng, a)},{sentence(rng, b)},{1.0 if a == b else 0.0}\n")
    with open(d / "emb.csv", "w") as f:
        f.write("text,text_pair\n")
        for i in range(120):
            key = f"item{i % 40}"
            f.write(f"{key} {sentence(rng, labels[i % 3])},{key} {sentence(rng, labels[i % 3])}\n")
    with open(d / "tok.jsonl", "w") as f:
        for i in range(120):
            toks = rng.sample(FILLER, 4) + ["paris" if i % 2 else "london"]
            rng.shuffle(toks)
            tags = ["B-LOC" if t in ("paris", "london") else "O" for t in toks]
            f.write(json.dumps({"tokens": toks, "tags": tags}) + "\n")
    return d


def tiny_config(tmp_path, tiny_encoder_dir, task, data, **over) -> TrainConfig:
    base = dict(data=str(data), base_model=tiny_encoder_dir, epochs=3, batch_size=16, learning_rate=3e-3,
                output_dir=str(tmp_path / "runs"), early_stopping_patience=0, max_length=32)
    base.update(over)
    return config_for_task(task, **base)


KIND_CASES = [
    ("text-classification", "cls.csv", {}),
    ("multilabel-classification", "multi.csv", {}),
    ("pair-scoring", "pair.csv", {"columns": {"text_pair": "text_pair"}}),
    ("embedding", "emb.csv", {"columns": {"text_pair": "text_pair", "label": None}}),
    ("token-classification", "tok.jsonl", {"columns": {"text": "tokens", "label": "tags"}}),
]


@pytest.mark.parametrize("task,file,extra", KIND_CASES, ids=[c[0] for c in KIND_CASES])
def test_every_task_kind_trains_and_its_loss_falls(tmp_path, tiny_encoder_dir, data_dir, task, file, extra):
    cfg = tiny_config(tmp_path, tiny_encoder_dir, task, data_dir / file, **extra)
    run = train(cfg, progress=False)
    losses = run.fit["losses"]
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    for name in ("model/task_model.json", "config.json", "metrics.json", "report.json", "report.md",
                 "run.json", "splits/validation.jsonl", "splits/test.jsonl"):
        assert (run.run_dir / name).is_file(), name
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["data"]["train"]["sha256"]
    assert "torch" in info["versions"] and info["wall_time_s"] > 0
    assert json.loads((run.run_dir / "config.json").read_text())["task"] == task


@pytest.mark.parametrize("mode,extra", [("full", {}), ("lora", {"lora_r": 4}), ("top-k", {"top_k": 1}),
                                        ("head", {"learning_rate": 1e-3}),
                                        ("few-shot", {"few_shot_per_class": 8, "few_shot_pairs": 6,
                                                      "epochs": 10})])
def test_every_mode_trains_and_learns(tmp_path, tiny_encoder_dir, data_dir, mode, extra):
    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", mode=mode,
                      **{"epochs": 4, **extra})
    run = train(cfg, progress=False)
    losses = run.fit["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    model = TaskModel.load(run.run_dir / "model")  # saved model is plain (LoRA merged)
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_classification_report_has_per_class_confusion_and_calibration(tmp_path, tiny_encoder_dir, data_dir):
    run = train(tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", epochs=6),
                progress=False)
    test = run.metrics["test"]
    assert test["accuracy"] >= 0.8  # keyword data: a tiny model learns it
    assert set(test["per_class"]) == {"mid", "neg", "pos"}
    assert sum(map(sum, test["confusion_matrix"])) == test["n"]
    assert 0 <= test["ece"] <= 1
    assert (run.run_dir / "confusion.png").stat().st_size > 1000
    assert "## Per class (test)" in (run.run_dir / "report.md").read_text()
    again = evaluate_run(run.run_dir, data_dir / "cls.csv")
    assert again["metrics"]["n"] == 150 and again["metrics"]["accuracy"] >= 0.8


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_cpu_training_precision_is_chosen_and_recorded(tmp_path, tiny_encoder_dir, data_dir, precision):
    from tuneforge.train.loop import cpu_has_native_bf16

    run = train(tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                            precision=precision, epochs=2), progress=False)
    bf16 = precision == "bf16" or (precision == "auto" and cpu_has_native_bf16())
    assert run.fit["autocast"] == ("bfloat16" if bf16 else "fp32")
    assert run.fit["losses"][-1] < run.fit["losses"][0]


def test_seeded_runs_repeat_exactly(tmp_path, tiny_encoder_dir, data_dir):
    runs = [train(tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                              run_name=f"r{i}", augment=0.1), progress=False) for i in range(2)]
    assert runs[0].fit["losses"] == runs[1].fit["losses"]
    assert runs[0].metrics["test"]["accuracy"] == runs[1].metrics["test"]["accuracy"]
    other = train(tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                              run_name="r2", seed=7), progress=False)
    assert other.fit["losses"] != runs[0].fit["losses"]


def test_early_stopping_keeps_the_best_evaluation(tiny_encoder_dir, monkeypatch):
    import numpy as np
    from transformers import AutoModel

    from tuneforge.train.features import Features

    model = TaskModel(AutoModel.from_pretrained(tiny_encoder_dir), ModelSpec("classification", ["a", "b"]))
    summary = apply_mode(model, "full")
    cfg = TrainConfig(epochs=10, batch_size=4, early_stopping_patience=2, learning_rate=1e-3)
    trainer = Trainer(model, cfg, summary=summary, pad_id=0, progress=False)
    feats = Features([[101, 2000 + i, 102] for i in range(8)], None, np.array([0, 1] * 4))
    scripted = iter([0.5, 0.9, 0.7, 0.6, 0.95])
    snapshots = []

    def fake_evaluate(_feats, use_cache=True):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"accuracy": next(scripted)}

    monkeypatch.setattr(trainer, "evaluate", fake_evaluate)
    result = trainer.fit(feats, feats)
    assert result.stopped_early and len(result.history) == 4  # 0.9 then two worse -> stop
    assert result.best_metric == 0.9 and result.best_epoch == 2.0
    best = snapshots[1]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("train_words", [False, True])
def test_full_mode_freezes_only_the_word_embedding_table_unless_asked(tiny_encoder_dir, train_words):
    from transformers import AutoModel

    model = TaskModel(AutoModel.from_pretrained(tiny_encoder_dir), ModelSpec("classification", ["a", "b"]))
    summary = apply_mode(model, "full", train_word_embeddings=train_words)
    words = model.encoder.get_input_embeddings().weight
    assert words.requires_grad is train_words
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ([] if train_words else ["encoder.embeddings.word_embeddings.weight"])
    assert summary["trainable_params"] == summary["total_params"] - (0 if train_words else words.numel())
    assert TrainConfig().train_word_embeddings is True  # full means every parameter by default


def test_lora_merge_gives_the_same_outputs(tiny_encoder_dir):
    from transformers import AutoModel

    torch.manual_seed(0)
    model = TaskModel(AutoModel.from_pretrained(tiny_encoder_dir), ModelSpec("classification", ["a", "b"]))
    apply_mode(model, "lora", lora={"r": 4, "targets": ["query", "value", "dense"]})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # B starts at zero: make the adapters matter
    model.eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    mask = torch.ones_like(ids)
    before = model(ids, mask)
    merged = merge_lora(model)
    after = merged(ids, mask)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("settings,message", [
    ({"mode": "sideways"}, "unknown training mode 'sideways'"),
    ({"epochs": 0}, "epochs must be > 0"),
    ({"split": [0.5, 0.6, 0.1]}, "split must be three fractions"),
    ({"learning_rat": 1e-4}, "unknown setting 'learning_rat'"),
    ({"label_smoothing": 1.0}, "label_smoothing must be in"),
    ({"layer_lr_decay": 0}, "layer_lr_decay must be in"),
    ({"wise_alpha": 0}, "wise_alpha must be in"),
    ({"wise_alpha": 0.8, "mode": "lora"}, "wise_alpha is for modes full and top-k"),
])
def test_bad_configs_fail_with_one_clear_message(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(settings)


def test_unknown_setting_suggests_the_right_one():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"learning_rat": 1e-4})
    assert "did you mean 'learning_rate'" in info.value.one_line()


def test_top_k_larger_than_the_encoder_fails_before_writing(tmp_path, tiny_encoder_dir, data_dir):
    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                      mode="top-k", top_k=5)
    with pytest.raises(ConfigError, match="top_k=5 is larger than the encoder's 2 layers"):
        train(cfg, progress=False)
    assert not (tmp_path / "runs").exists()


def test_empty_label_set_is_refused():
    with pytest.raises(ConfigError, match="needs at least one label"):
        ModelSpec(kind="classification", labels=[])


def test_frozen_prefix_cache_matches_the_plain_forward(tiny_encoder_dir):
    from transformers import AutoModel

    from tuneforge.train.modes import forward_from_prefix, frozen_prefix

    model = TaskModel(AutoModel.from_pretrained(tiny_encoder_dir), ModelSpec("classification", ["a", "b"])).eval()
    ids = torch.tensor([[101, 2023, 2003, 102, 0], [101, 2023, 2003, 1037, 102]])
    mask = (ids != 0).long()
    for depth in (0, 1, 2):
        hidden = frozen_prefix(model, ids, mask, depth)
        assert torch.allclose(forward_from_prefix(model, hidden, mask, depth), model(ids, mask), atol=1e-5)


def test_encoder_run_exports_a_pretrained_encoder_for_retrieval(tmp_path, tiny_encoder_dir):
    import numpy as np

    from tuneforge.export import export_run
    from tuneforge.runtime import Predictor
    from tuneforge.train import encoder_run

    texts = ["where is my card", "card not arrived", "how to top up", "exchange rate for euros"]
    run_dir = encoder_run(tiny_encoder_dir, texts, output_dir=str(tmp_path / "runs"))
    bundle = export_run(run_dir, out_dir=tmp_path / "exports", name="enc", variants=["fp32"], measure=False)
    vectors = np.asarray(Predictor.load(bundle).predict_raw(texts))
    assert vectors.shape == (4, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # unit vectors: dot = cosine


def test_resume_continues_an_interrupted_run_exactly(tmp_path, tiny_encoder_dir, data_dir, monkeypatch):
    from tuneforge.train import resume

    def config(name):
        return tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                           run_name=name, epochs=3, evals_per_epoch=1)

    whole = train(config("whole"), progress=False)
    real_checkpoint = Trainer._checkpoint
    calls = []

    def crash_after_first(self, *args, **kwargs):
        real_checkpoint(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(Trainer, "_checkpoint", crash_after_first)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config("broken"), progress=False)
    run_dir = tmp_path / "runs" / "broken"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    monkeypatch.setattr(Trainer, "_checkpoint", real_checkpoint)
    resumed = resume(run_dir, progress=False)
    assert resumed.run_dir == run_dir
    assert resumed.fit["losses"] == whole.fit["losses"]  # same steps, same data order, same weights
    assert resumed.metrics["test"]["accuracy"] == whole.metrics["test"]["accuracy"]
    assert not (run_dir / "checkpoint.pt").exists()


def test_batches_group_similar_lengths_and_pad_only_to_their_own_longest():
    from tuneforge.train.features import Features, collate, length_grouped_batches

    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(2000)]
    batches = length_grouped_batches(lengths, 32, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(2000))  # every row once
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 5  # random batches of 32 would spread ~50 tokens
    feats = Features([[1] * n for n in lengths], None, __import__("numpy").zeros(2000, dtype="int64"))
    padded = collate(feats, batches[0], pad_id=0)
    assert padded["input_ids"].shape[1] == max(lengths[i] for i in batches[0])


def test_class_weights_are_inverse_frequency():
    import numpy as np

    from tuneforge.train.loop import class_weight_tensor

    w = class_weight_tensor(np.array([0] * 90 + [1] * 10), 2)
    assert torch.allclose(w, torch.tensor([100 / 180, 100 / 20]))


def test_layer_lr_decay_gives_each_encoder_layer_its_own_rate(tiny_encoder_dir):
    from transformers import AutoModel

    from tuneforge.train.loop import _param_groups

    model = TaskModel(AutoModel.from_pretrained(tiny_encoder_dir), ModelSpec("classification", ["a", "b"]))
    apply_mode(model, "full")
    n_layers = model.encoder.config.num_hidden_layers
    cfg = TrainConfig(learning_rate=1e-3, layer_lr_decay=0.5)
    lr_of = {id(p): g["lr"] for g in _param_groups(model, cfg) for p in g["params"]}
    named = dict(model.named_parameters())
    top, bottom = f"encoder.encoder.layer.{n_layers - 1}.", "encoder.encoder.layer.0."
    rate = {n: lr_of[id(p)] for n, p in named.items()}
    assert {r for n, r in rate.items() if n.startswith(top)} == {1e-3}
    assert [r for n, r in rate.items() if n.startswith(bottom)] == pytest.approx(
        [1e-3 * 0.5 ** (n_layers - 1)] * sum(n.startswith(bottom) for n in rate))
    embeddings = [r for n, r in rate.items() if "embeddings" in n]
    assert embeddings and embeddings == pytest.approx([1e-3 * 0.5 ** n_layers] * len(embeddings))
    assert {r for n, r in rate.items() if n.startswith("head.")} == {cfg.head_lr}
    assert len(lr_of) == len(named)  # every trainable parameter in exactly one group
    plain = {g["lr"] for g in _param_groups(model, TrainConfig(learning_rate=1e-3)) if g["lr"] != cfg.head_lr}
    assert plain == {1e-3}  # decay 1 (the default): one encoder rate


def test_label_smoothing_spreads_the_target_over_every_label():
    """The trainer's classification loss with ``label_smoothing`` = cross-entropy against
    (1 - s) * one-hot + s / n_labels: a confident right answer is no longer free, a uniform one
    costs the same as without smoothing."""
    from types import SimpleNamespace

    logits = torch.tensor([[8.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([0, 2])

    def loss(smoothing):
        stub = SimpleNamespace(kind="classification", class_weights=None, distill=None,
                               config=TrainConfig(label_smoothing=smoothing), _forward=lambda b: logits)
        return float(Trainer._loss(stub, {"targets": targets}))

    logp = torch.log_softmax(logits, -1)
    soft = torch.full((2, 3), 0.1 / 3) + 0.9 * torch.nn.functional.one_hot(targets, 3)
    assert loss(0.1) == pytest.approx(float(-(soft * logp).sum(-1).mean()), rel=1e-5)
    assert loss(0.0) == pytest.approx(float(-logp[[0, 1], [0, 2]].mean()), rel=1e-5)
    assert loss(0.1) > loss(0.0)  # the confident row pays for its certainty


def test_augmentation_deletes_or_swaps_words_but_keeps_special_tokens():
    from tuneforge.train.features import augment_ids

    rng = random.Random(0)
    ids = [101, 5, 6, 7, 8, 9, 10, 102]
    outs = [augment_ids(ids, 0.3, rng, {101, 102}) for _ in range(50)]
    assert all(o[0] == 101 and o[-1] == 102 for o in outs)
    assert any(o != ids for o in outs) and all(set(o) <= set(ids) for o in outs)


@pytest.mark.parametrize("args,message", [
    (["--mode", "sideways"], "Invalid value for '--mode'"),
    (["--top-k", "9", "--mode", "top-k"], "error: top_k=9 is larger than the encoder's 2 layers"),
])
def test_bad_training_settings_from_the_cli_fail_with_one_line(tmp_path, tiny_encoder_dir, data_dir, args, message):
    from click.testing import CliRunner

    from tuneforge.cli import cli

    result = CliRunner().invoke(cli, ["train", "--data", str(data_dir / "cls.csv"), "--base-model",
                                      tiny_encoder_dir, "--output-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "runs").exists()


def test_wise_alpha_moves_the_saved_encoder_part_of_the_way_back_to_the_base(tmp_path, tiny_encoder_dir, data_dir):
    """Same seed, same data: the run with ``wise_alpha = 0.25`` saves the encoder at a quarter of
    the plain run's distance from the base weights, every tensor on the line between the two; the
    head is the plain run's, and the metrics describe the interpolated model."""
    from transformers import AutoModel

    base = AutoModel.from_pretrained(tiny_encoder_dir).state_dict()
    runs = {}
    for alpha in (1.0, 0.25):
        cfg = tiny_config(tmp_path / str(alpha), tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                          wise_alpha=alpha)
        runs[alpha] = train(cfg, progress=False)
    plain = TaskModel.load(runs[1.0].run_dir / "model")
    wise = TaskModel.load(runs[0.25].run_dir / "model")
    ws, ps = wise.encoder.state_dict(), plain.encoder.state_dict()
    moved = 0
    for name, b in base.items():
        if not b.is_floating_point():
            continue
        assert torch.allclose(ws[name], 0.25 * ps[name] + 0.75 * b, atol=1e-5), name
        moved += not torch.equal(ps[name], b)
    assert moved > 10   # the plain run really moved the encoder
    assert torch.equal(wise.head.weight, plain.head.weight)
    report = json.loads((runs[0.25].run_dir / "report.json").read_text())
    assert report["wise_alpha"] == 0.25
    assert runs[0.25].metrics["test"] != runs[1.0].metrics["test"]


def test_wise_interpolation_refuses_an_encoder_of_another_shape(tiny_encoder_dir):
    from transformers import AutoModel, BertConfig, BertModel

    from tuneforge.train.wise import interpolate

    model = TaskModel(AutoModel.from_pretrained(tiny_encoder_dir), ModelSpec("classification", ["a", "b"]))
    cfg = model.encoder.config
    other = BertModel(BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size * 2,
                                 num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                                 intermediate_size=cfg.intermediate_size))
    with pytest.raises(ConfigError, match="has another shape there"):
        interpolate(model, 0.5, other)


def test_a_soup_is_the_mean_of_runs_that_differ_only_in_data_seed(tmp_path, tiny_encoder_dir, data_dir):
    """``data_seed`` changes batch order and dropout but not the head's initial weights; the soup of
    two such runs holds the element-wise mean of their weights and is an ordinary run folder."""
    from tuneforge.train.soup import soup_runs

    runs = [train(tiny_config(tmp_path / str(ds), tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                              epochs=1, data_seed=ds), progress=False) for ds in (1, 2)]
    a, b = (TaskModel.load(r.run_dir / "model") for r in runs)
    assert not torch.equal(a.head.weight, b.head.weight)       # trained differently ...
    from click.testing import CliRunner

    from tuneforge.cli import cli

    res = CliRunner().invoke(cli, ["soup", *[str(r.run_dir) for r in runs], "--out", str(tmp_path / "soup"), "--json"])
    assert res.exit_code == 0, res.output
    out = Path(json.loads(res.output)["run_dir"])
    soup = TaskModel.load(out / "model")
    for (name, w), wa, wb in zip(soup.state_dict().items(), a.state_dict().values(), b.state_dict().values()):
        if w.is_floating_point():
            assert torch.allclose(w, (wa + wb) / 2, atol=1e-6), name
    assert json.loads((out / "soup.json").read_text())["members"] == [str(r.run_dir) for r in runs]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["validation"]["n"] > 0
    assert (out / "splits" / "validation.jsonl").is_file() and (out / "labels.json").is_file()
    with pytest.raises(Exception, match="already exists"):
        soup_runs([r.run_dir for r in runs], out)


def test_data_seed_keeps_the_heads_initial_weights(tiny_encoder_dir, tmp_path, data_dir):
    """Same seed, other data_seed: one epoch of 0 learning rate leaves both heads at their init,
    which must be identical (the soup's premise)."""
    heads = []
    for ds in (1, 2):
        cfg = tiny_config(tmp_path / str(ds), tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                          epochs=1, data_seed=ds, learning_rate=1e-12, head_learning_rate=1e-12)
        heads.append(TaskModel.load(train(cfg, progress=False).run_dir / "model").head.weight)
    assert torch.allclose(heads[0], heads[1], atol=1e-6)


def test_train_with_soup_trains_the_members_and_saves_their_mean(tmp_path, tiny_encoder_dir, data_dir):
    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", epochs=1, soup=2,
                      run_name="souped")
    run = train(cfg, progress=False)
    members = sorted((tmp_path / "runs" / "souped-members").iterdir())
    assert [m.name for m in members] == ["data-seed-42", "data-seed-43"] and run.run_dir.name == "souped"
    a, b = (TaskModel.load(m / "model").head.weight for m in members)
    assert torch.allclose(TaskModel.load(run.run_dir / "model").head.weight, (a + b) / 2, atol=1e-6)
    assert run.metrics["test"]["n"] > 0 and json.loads((run.run_dir / "config.json").read_text())["soup"] == 2
    with pytest.raises(ConfigError, match="soup is for modes full and top-k"):
        TrainConfig(mode="lora", soup=3)


def test_a_task_can_mix_sources_each_read_by_the_plugins_loader(tmp_path):
    """``data_files`` values may be lists: each file goes through the task's loader (finance maps the
    Twitter file's 0 / 1 / 2 to names, the other file already has names), then one set in order,
    whose provenance names both files and changes when either does."""
    from dataclasses import replace

    from tuneforge.plugin_manager import get_plugin_manager
    from tuneforge.tasks import TaskSpec, get_task
    from tuneforge.train.driver import load_task_splits

    (tmp_path / "tw.csv").write_text("text,label\n" + "".join(f"headline {i},{i % 3}\n" for i in range(30)))
    posts = tmp_path / "posts.csv"
    posts.write_text("text,label\n" + "".join(f"post {i},{('negative', 'neutral', 'positive')[i % 3]}\n"
                                              for i in range(12)))
    (tmp_path / "v.csv").write_text("text,label\nv one,0\nv two,1\nv three,2\n")
    task = replace(get_task("finance-sentiment"),
                   data_files={"train": [str(tmp_path / "tw.csv"), str(posts)],
                               "validation": [str(tmp_path / "v.csv"), str(posts)]})
    pm = get_plugin_manager()
    train, val, test = load_task_splits(task, TrainConfig(task="finance-sentiment"), pm)
    assert len(train) + len(test) == 42 and len(val) == 15
    assert {e.label for e in list(train) + list(test)} == {"negative", "neutral", "positive"}
    assert [e.label for e in val][:3] == ["negative", "positive", "neutral"]        # 0 / 1 / 2 mapped
    assert val.path == f"{tmp_path / 'v.csv'} + {posts}"
    before = val.sha256
    posts.write_text(posts.read_text() + "post 99,positive\n")
    assert load_task_splits(task, TrainConfig(task="finance-sentiment"), pm)[1].sha256 != before
    with pytest.raises(ConfigError, match="non-empty list of files"):
        TaskSpec(name="t", kind="classification", data_files={"train": []})


def test_text_augment_adds_a_rewritten_copy_of_that_share_of_training_rows_per_data_seed():
    from tuneforge.data import Dataset, Example
    from tuneforge.tasks import TaskSpec
    from tuneforge.train.driver import rewrite_training_texts

    def shout(text, rng):
        return text.upper() + "!"

    task = TaskSpec(name="toy", kind="classification", labels=["a", "b"], text_augmenter=shout)
    ds = Dataset([Example(f"row {i}", "ab"[i % 2]) for i in range(400)])
    assert rewrite_training_texts(ds, task, TrainConfig(text_augment=0.0)) is ds
    every = rewrite_training_texts(ds, task, TrainConfig(text_augment=1.0))
    assert [e.text for e in every.examples] == [t for i in range(400) for t in (f"row {i}", f"ROW {i}!")]
    assert [e.label for e in every.examples] == [lab for lab in ds.labels() for _ in range(2)]
    assert len(ds) == 400 and ds.examples[0].text == "row 0"   # the original set is untouched
    half = rewrite_training_texts(ds, task, TrainConfig(text_augment=0.5, data_seed=1))
    copies = [e for e in half.examples if e.text.endswith("!")]
    assert 150 < len(copies) < 250 and len(half) == 400 + len(copies)
    assert [e.text for e in half.examples if not e.text.endswith("!")] == ds.texts()   # every original kept
    same_seed = rewrite_training_texts(ds, task, TrainConfig(text_augment=0.5, data_seed=1))
    other_seed = rewrite_training_texts(ds, task, TrainConfig(text_augment=0.5, data_seed=2))
    assert same_seed.texts() == half.texts() and other_seed.texts() != half.texts()
    assert task.to_dict()["text_augmenter"].endswith(".<locals>.shout")
    with pytest.raises(ConfigError, match="has no text_augmenter"):
        rewrite_training_texts(ds, TaskSpec(name="plain", kind="classification"), TrainConfig(text_augment=0.1))
    with pytest.raises(ConfigError, match="text_augment must be in"):
        TrainConfig(text_augment=1.5)


def test_text_augment_on_a_task_without_an_augmenter_fails_before_a_run_folder_is_written(tmp_path, tiny_encoder_dir,
                                                                                        data_dir):
    from click.testing import CliRunner

    from tuneforge.cli import cli

    result = CliRunner().invoke(cli, ["train", "--data", str(data_dir / "cls.csv"), "--base-model", tiny_encoder_dir,
                                      "--output-dir", str(tmp_path / "runs"), "--set", "text_augment=0.3"])
    assert result.exit_code != 0 and "has no text_augmenter" in result.output
    assert not (tmp_path / "runs").exists()
