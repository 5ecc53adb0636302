"""Few-shot (supervised contrastive stage, class-balanced and hard batches, label anchors) and
zero-shot (label vectors from names, templates and descriptions; self-training on unlabelled texts)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import test_train
import torch
from test_train import WORDS, sentence, tiny_config

from tuneforge.errors import ConfigError, DataError
from tuneforge.train import train
from tuneforge.train.fewshot import anchor_texts, class_batches, label_prompt, supcon_loss
from tuneforge.train.zeroshot import load_label_descriptions, pseudo_label

data_dir = test_train.data_dir   # the engine tests' keyword data, as a fixture here too

DESCRIPTIONS = {"pos": "great good excellent love nice", "neg": "bad awful terrible hate poor",
                "mid": "okay average fine normal plain"}


def test_label_prompts_and_anchor_texts():
    assert label_prompt("card_not_working") == "card not working"
    assert label_prompt("reverted_card_payment?") == "reverted card payment"
    texts = anchor_texts("top_up_failed", "my top up did not work")
    assert texts[0] == "top up failed" and "a question about top up failed" in texts
    assert texts[-1] == "my top up did not work"
    assert len(anchor_texts("x")) == len(texts) - 1


def test_supcon_loss_rewards_tight_classes_and_ignores_rows_without_a_positive():
    y = torch.tensor([0, 0, 1, 1, 2])
    tight = torch.nn.functional.normalize(torch.tensor(
        [[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0.1, 0.99, 0], [0, 0, 1.0]]), dim=-1)
    mixed = torch.nn.functional.normalize(torch.tensor(
        [[1, 0, 0], [0, 1, 0], [0.99, 0.1, 0], [0.1, 0.99, 0], [0, 0, 1.0]]), dim=-1)
    assert supcon_loss(tight, y, 0.1) < supcon_loss(mixed, y, 0.1)
    # the lone class-2 row has no positive, so no term of its own, but it is a negative for the others:
    # moving it next to class 0 costs
    near = tight.clone()
    near[4] = torch.nn.functional.normalize(torch.tensor([0.95, 0.05, 0.3]), dim=0)
    assert supcon_loss(near, y, 0.1) > supcon_loss(tight, y, 0.1)
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    assert supcon_loss(z, torch.tensor([0, 1, 2, 3]), 0.1).item() == 0.0


def test_class_batches_cover_each_row_once_with_balanced_and_hard_batches():
    targets = [c for c in range(10) for _ in range(8)]
    rng = random.Random(0)
    batches = class_batches(targets, 4, 4, rng)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(targets)))
    for b in batches:
        classes = [targets[i] for i in b]
        assert len(set(classes)) <= 4 and max(classes.count(c) for c in set(classes)) <= 4
    near = {c: [(c + 1) % 10, (c + 2) % 10, (c + 3) % 10] for c in range(10)}
    hard = class_batches(targets, 4, 4, random.Random(1), near, hard_share=1.0)
    assert sorted(i for b in hard for i in b) == list(range(len(targets)))
    # a hard batch is a class and its nearest classes (while they still have rows left)
    first = sorted({targets[i] for i in hard[0]})
    seed = next(c for c in first if all((c + d) % 10 in first for d in (1, 2, 3)))
    assert {seed, (seed + 1) % 10, (seed + 2) % 10, (seed + 3) % 10} == set(first)


def test_pseudo_labels_take_the_most_confident_texts_per_label():
    labels = np.eye(3, dtype=np.float32)
    texts = np.array([[0.9, 0.1, 0], [0.6, 0.5, 0], [0.2, 0.9, 0], [0.1, 0.1, 0.9], [0.95, 0, 0]],
                     dtype=np.float32)
    assert pseudo_label(texts, labels, 1) == [(2, 1), (3, 2), (4, 0)]
    assert pseudo_label(texts, labels, 2) == [(0, 0), (2, 1), (3, 2), (4, 0)]


def test_label_descriptions_file_errors_name_the_file_and_the_problem(tmp_path):
    labels = ["pos", "neg", "mid"]
    good = tmp_path / "d.yaml"
    good.write_text("pos: nice things\nneg: bad things\n")
    assert load_label_descriptions(good, labels) == {"pos": "nice things", "neg": "bad things"}
    typo = tmp_path / "typo.yaml"
    typo.write_text("pos: nice\nnegg: bad\n")
    with pytest.raises(DataError, match="typo.yaml: 1 label.*negg") as e:
        load_label_descriptions(typo, labels)
    assert "neg" in e.value.hint
    broken = tmp_path / "broken.yaml"
    broken.write_text("pos: nice\nneg: [unclosed\n")
    with pytest.raises(DataError, match="broken.yaml, line"):
        load_label_descriptions(broken, labels)
    (tmp_path / "d.json").write_text(json.dumps({"mid": ""}))
    with pytest.raises(DataError, match="non-empty description"):
        load_label_descriptions(tmp_path / "d.json", labels)


@pytest.fixture(scope="module")
def descriptions_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("desc") / "labels.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in DESCRIPTIONS.items()))
    return path


def test_few_shot_contrastive_run_learns_without_any_validation_choice(tmp_path, tiny_encoder_dir, data_dir,
                                                                        descriptions_file):
    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", mode="few-shot",
                      few_shot_per_class=8, few_shot_epochs=4, few_shot_classes_per_batch=3, few_shot_head_epochs=20,
                      label_descriptions=str(descriptions_file))
    run = train(cfg, progress=False)
    report = json.loads((run.run_dir / "report.json").read_text())
    facts = report
    assert facts["contrastive"]["loss"] == "supcon" and facts["contrastive"]["steps"] > 0
    assert facts["anchors"] == 3 * 4 and facts["label_descriptions"] == 3
    assert facts["contrastive"]["rows"] == 3 * 8 + 12   # k examples per class + the anchors
    assert run.fit["history"] == []                      # no validation evaluation, no epoch picked on it
    assert run.metrics["test"]["accuracy"] >= 0.6        # chance is 1/3 on the keyword data


def test_few_shot_end_to_end_pass_and_augmented_views(tmp_path, tiny_encoder_dir, data_dir, descriptions_file):
    """The optional last stage trains the encoder too (its weights move), still with no validation
    choice; augmentation gives the contrastive stage new views of the rows."""
    import torch

    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", mode="few-shot",
                      few_shot_per_class=8, few_shot_epochs=2, few_shot_classes_per_batch=3, few_shot_head_epochs=10,
                      few_shot_finetune_epochs=3, few_shot_finetune_lr=1e-3, augment=0.2,
                      label_descriptions=str(descriptions_file), run_name="fs-e2e")
    run = train(cfg, progress=False)
    report = json.loads((run.run_dir / "report.json").read_text())
    assert report["end_to_end"]["epochs"] == 3 and report["end_to_end"]["lr"] == 1e-3
    assert run.fit["history"] == [] and run.metrics["test"]["accuracy"] >= 0.6
    base = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", mode="few-shot",
                       few_shot_per_class=8, few_shot_epochs=2, few_shot_classes_per_batch=3,
                       few_shot_head_epochs=10, augment=0.2, label_descriptions=str(descriptions_file),
                       run_name="fs-no-e2e")
    plain = train(base, progress=False)
    assert "end_to_end" not in json.loads((plain.run_dir / "report.json").read_text())

    from safetensors.torch import load_file

    def word_embeddings(r):
        f = next((r.run_dir / "model" / "encoder").glob("*.safetensors"))
        return next(v for k, v in load_file(str(f)).items() if "word_embeddings" in k)

    # same seed and stages up to the head: only the end-to-end pass can have moved the encoder further
    assert not torch.allclose(word_embeddings(run), word_embeddings(plain))
    with pytest.raises(ConfigError, match="few_shot_finetune_epochs"):
        tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", few_shot_finetune_epochs=-1)


def test_zero_shot_from_descriptions_and_self_training(tmp_path, tiny_encoder_dir, data_dir, descriptions_file):
    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", mode="zero-shot",
                      label_descriptions=str(descriptions_file), run_name="zs")
    run = train(cfg, progress=False)
    assert run.fit["losses"] == [] and run.fit["steps"] == 0   # nothing trained: the head is the label vectors
    zero = run.metrics["test"]["accuracy"]
    assert zero > 0.45                                          # names + descriptions beat chance (1/3)
    rng = random.Random(5)
    unlabelled = tmp_path / "texts.txt"
    unlabelled.write_text("\n".join(sentence(rng, lab) for lab in WORDS for _ in range(30)) + "\n")
    cfg = tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", mode="zero-shot",
                      label_descriptions=str(descriptions_file), unlabelled=str(unlabelled),
                      self_train_per_class=10, few_shot_epochs=4, few_shot_classes_per_batch=3, few_shot_head_epochs=20,
                      run_name="zs-self")
    self_trained = train(cfg, progress=False)
    facts = json.loads((self_trained.run_dir / "report.json").read_text())
    assert facts["unlabelled"] == 90 and facts["pseudo_labelled"] <= 30
    assert self_trained.fit["steps"] > 0
    assert self_trained.metrics["test"]["accuracy"] >= zero - 0.05


def test_mode_settings_are_checked(tmp_path, tiny_encoder_dir, data_dir):
    with pytest.raises(ConfigError, match="few_shot_loss"):
        tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv", few_shot_loss="x")
    with pytest.raises(ConfigError, match="unlabelled texts are used by mode zero-shot"):
        train(tiny_config(tmp_path, tiny_encoder_dir, "text-classification", data_dir / "cls.csv",
                          unlabelled=str(data_dir / "cls.csv")), progress=False)
