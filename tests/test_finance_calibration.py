"""Temperature scaling of the sentiment score (issue 16): the fit recovers a known temperature, the
monitor's bundle scorer applies ``[model] temperature``, ``tuneforge finance calibrate`` prints it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_finance_monitor import tiny_sentiment_bundle  # noqa: F401  (module-scoped fixture)

from tuneforge.errors import ConfigError
from tuneforge.temperature import apply_temperature, ece, fit_temperature, nll
from tuneforge.plugins.finance.config import ModelConfig
from tuneforge.plugins.finance.scoring import BundleScorer


def test_fit_recovers_the_temperature_of_overconfident_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, size=(4000, 3))
    true = apply_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1.0)
    y = np.array([rng.choice(3, p=p / p.sum()) for p in true.astype(np.float64)])
    sharp = apply_temperature(true, 0.5)                     # twice as confident as it should be
    t = fit_temperature(sharp, y)
    assert 1.8 <= t <= 2.2
    fixed = apply_temperature(sharp, t)
    assert nll(fixed, y) < nll(sharp, y) and ece(fixed, y) < ece(sharp, y)
    assert np.allclose(fixed.sum(1), 1.0, atol=1e-5) and (fixed.argmax(1) == sharp.argmax(1)).all()


def test_bundle_scorer_applies_the_configured_temperature(tiny_sentiment_bundle):  # noqa: F811
    texts = ["$ACME beats estimates", "$GLBX misses", "$INIT files its report"]
    plain = BundleScorer.load(tiny_sentiment_bundle).score(texts)
    warm = BundleScorer.load(tiny_sentiment_bundle, temperature=3.0).score(texts)
    assert np.allclose(warm, apply_temperature(plain, 3.0), atol=1e-5)
    assert (warm.max(1) <= plain.max(1) + 1e-6).all()
    with pytest.raises(ConfigError, match="temperature must be a number"):
        ModelConfig(scorer="keywords", temperature=0)


def test_calibrate_command_prints_the_temperature(tiny_sentiment_bundle, tmp_path):  # noqa: F811
    from tuneforge.cli import cli

    data = tmp_path / "labelled.csv"
    data.write_text("text,label\n" + "".join(f"$ACME beats {i},1\n$ACME misses {i},0\nreport {i},2\n"
                                             for i in range(10)))
    res = CliRunner().invoke(cli, ["finance", "calibrate", "--bundle", str(tiny_sentiment_bundle),
                                   "--data", str(data), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n"] == 30 and 0.25 <= out["temperature"] <= 8 and out["nll"][1] <= out["nll"][0] + 1e-9
