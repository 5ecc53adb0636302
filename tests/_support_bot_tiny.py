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


def build_tiny_bot(root: Path, encoder_dir: str) -> Path:
    """Train + export the intent model and the encoder with core, then build the bot folder."""
    from tuneforge.export import export_run
    from tuneforge.plugins.support_bot.build import build_bot
    from tuneforge.train import config_for_task, train

    root.mkdir(parents=True, exist_ok=True)
    rows = [(t, y) for y, texts in INTENTS.items() for t in texts]
    data = root / "train.csv"
    data.write_text("text,category\n" + "".join(f"{t},{y}\n" for t, y in rows * 3))
    test = root / "test.csv"
    test.write_text("text,category\n" + "".join(f"{t},{y}\n" for t, y in rows))
    cfg = config_for_task("support-intents", data=str(data), test=str(test), base_model=encoder_dir, epochs=12,
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
    build_bot(bot, intent, base_model=encoder_dir, kb_dir=kb, exports=root / "exports", encoder_variants=["fp32"],
              measure=False, target=0.9,
              calibration={"questions_file": test, "oos_file": root / "oos.txt",
                           "kb_questions_file": root / "kbq.csv", "half": None})
    return bot


if __name__ == "__main__":  # explore: python tests/_support_bot_tiny.py OUT ENCODER_DIR
    import sys

    bot = build_tiny_bot(Path(sys.argv[1]), sys.argv[2])
    print(json.dumps(json.loads((bot / "thresholds.json").read_text()), indent=1))
