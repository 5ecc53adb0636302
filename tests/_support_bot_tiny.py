"""A tiny support bot (2-layer random BERT, three hand-made intents, two KB documents) for fast tests."""

from __future__ import annotations

import json
from pathlib import Path

INTENTS = {
    "card_arrival": ["where is my new card", "my card has not arrived yet", "when will my card arrive",
                     "still waiting for my card to arrive", "the card you sent never arrived",
                     "has my card been posted", "card not delivered yet", "how long until my card arrives"],
    "lost_or_stolen_card": ["I lost my card", "my card was stolen", "someone stole my card",
                            "I can't find my card anywhere", "lost card what do I do",
                            "my wallet with my card was stolen",
                            "I think I lost my bank card", "stolen card please block it"],
    "top_up_failed": ["my top up failed", "top up did not work", "why did my top-up fail",
                      "the top up was declined", "I tried to top up but it failed", "top up keeps failing",
                      "can't top up my account it fails", "failed top up again"],
}
KB = {
    "fees.md": "# Fees\n\n## ATM withdrawal fees\nATM withdrawals above the monthly allowance cost two percent "
               "of the amount withdrawn.\n\n## Exchange fees\nWeekend exchanges carry a one percent markup.\n",
    "closing.md": "# Closing your account\n\n## How to close\nClose your account in settings after moving "
                  "your balance out.\n",
}
KB_QUESTIONS = [("ATM withdrawals above the monthly allowance cost", "fees.md"),
                ("how much do ATM withdrawals above the allowance cost", "fees.md"),
                ("ATM withdrawal fees above the monthly allowance", "fees.md"),
                ("withdrawals above the monthly allowance percent", "fees.md"),
                ("weekend exchanges carry a markup", "fees.md"),
                ("exchange fees at the weekend markup", "fees.md"),
                ("close your account in settings", "closing.md"),
                ("how to close my account after moving my balance", "closing.md"),
                ("closing your account settings balance", "closing.md"),
                ("close account move balance out", "closing.md")]
NONSENSE = ["purple elephants dance on the moon", "zxqv blorp fnord", "how tall is mount everest",
            "recipe for banana bread with walnuts", "who won the chess olympiad", "sing me a lullaby please",
            "the quick brown fox jumps", "volcano lava temperature celsius", "best hiking boots for winter",
            "knitting pattern for a scarf"]


def bag_of_words_encoder(out: Path) -> str:
    """A 1-layer BERT whose mean-pooled output is a bag of random word vectors.

    Position/type embeddings and the attention and feed-forward outputs are zeroed, so each
    token's output is LayerNorm(its word vector): sentences sharing words get similar
    embeddings -- a tiny stand-in for a sentence encoder (a random BERT's embeddings all
    look alike).  A normal BERT graph: it trains and exports like any other.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tuneforge.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=128, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    model = BertModel(config)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.normal_(0, 1.0)
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
        for layer in model.encoder.layer:
            for dense in (layer.attention.output.dense, layer.output.dense):
                dense.weight.zero_()
                dense.bias.zero_()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def build_tiny_bot(root: Path, intent_base: str) -> Path:
    """Train + export the intent model (on ``intent_base``) and a bag-of-words retrieval encoder
    with core, then build the bot folder (index + calibration on the tiny question sets)."""
    from tuneforge.export import export_run
    from tuneforge.plugins.support_bot.build import build_bot
    from tuneforge.train import config_for_task, train

    root.mkdir(parents=True, exist_ok=True)
    rows = [(t, y) for y, texts in INTENTS.items() for t in texts]
    data = root / "train.csv"
    data.write_text("text,category\n" + "".join(f"{t},{y}\n" for t, y in rows * 3))
    test = root / "test.csv"
    test.write_text("text,category\n" + "".join(f"{t},{y}\n" for t, y in rows))
    cfg = config_for_task("support-intents", data=str(data), test=str(test), base_model=intent_base, epochs=12,
                          batch_size=8, learning_rate=2e-3, max_length=32, output_dir=str(root / "runs"),
                          early_stopping_patience=0)
    run = train(cfg, progress=False)
    intent = export_run(run.run_dir, out_dir=root / "exports", variants=["fp32"], measure=False)
    kb = root / "kb"
    kb.mkdir()
    for name, text in KB.items():
        (kb / name).write_text(text)
    (root / "kbq.csv").write_text("question,source\n" + "".join(f"{q},{s}\n" for q, s in KB_QUESTIONS))
    (root / "oos.txt").write_text("\n".join(NONSENSE) + "\n")
    bot = root / "bot"
    build_bot(bot, intent, base_model=bag_of_words_encoder(root / "bow-encoder"), kb_dir=kb,
              exports=root / "exports", encoder_variants=["fp32"],
              measure=False, target=0.9,
              calibration={"questions_file": test, "oos_file": root / "oos.txt",
                           "kb_questions_file": root / "kbq.csv", "half": None, "oos_share": 0.5,
                           "router": False})   # the cascade alone: the conversation layer has its own tests
    return bot


def add_router(bot_dir: Path) -> Path:
    """Give a tiny bot its conversation layer: a router over the bot's own encoder, bank references
    from the tiny bot's questions, calibrated on them and the bundled calibration halves."""
    from tuneforge.plugins.support_bot.bot import Bot, artefacts
    from tuneforge.plugins.support_bot.router import Router, calibrate_router, eval_rows

    bot = Bot.load(bot_dir)
    bank = [q for qs in INTENTS.values() for q in qs] + [q for q, _ in KB_QUESTIONS]
    router = Router.build(bot.embed, bank)
    router.thresholds = calibrate_router(
        router, bot.embed, in_domain=bank, small_talk=[t for t, _ in eval_rows("small_talk", "act", "calibration")],
        off_domain=[t for t, _ in eval_rows("off_domain", "domain", "calibration")], unanswerable=[], max_diverted=0.0)
    router.save(artefacts(bot_dir) / "router")
    bot.close()
    return bot_dir


if __name__ == "__main__":  # explore: python tests/_support_bot_tiny.py OUT TINY_BERT_DIR
    import sys

    bot = build_tiny_bot(Path(sys.argv[1]), sys.argv[2])
    from tuneforge.plugins.support_bot.bot import artefacts

    print(json.dumps(json.loads((artefacts(bot) / "thresholds.json").read_text()), indent=1))
