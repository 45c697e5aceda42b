"""The eFFF comparison command (SPEC §3) on tiny settings."""
import json

import numpy as np
import pytest

from fffcpu import cli, efff
from fffcpu.fff import FFF


def test_leaf_spread_counts_unused_leaves():
    layer = FFF(2, 1, 1, 2, seed=0, backend="numpy")
    layer.params["node_weights"][:] = 0
    layer.params["node_biases"][:] = 1.0  # everything goes right: leaf 3
    cv, unused = efff.leaf_spread(layer, np.zeros((8, 2)))
    assert unused == 3 and cv == np.std([0, 0, 0, 8]) / 2


def test_efff_command_prints_every_variant(capsys):
    assert cli.main(["efff", "--seeds", "2", "--epochs", "2", "--depth", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    runs = [r for r in lines if "seed" in r]
    summary = {r["variant"]: r for r in lines if "runs" in r}
    assert len(runs) == 8 and set(summary) == set(efff.VARIANTS)
    for v, s in summary.items():
        accs = [r["accuracy"] for r in runs if r["variant"] == v]
        assert s["accuracy_mean"] == np.mean(accs) and 0 <= s["accuracy_min"] <= s["accuracy_max"] <= 1


def test_efff_master_variants_have_a_master_leaf_and_are_seeded():
    split = tuple(a[:200] if i < 2 else a[:200] for i, a in enumerate(efff.data.digits_split(seed=0)))
    a = efff.run_one("+master", 0, epochs=2, split=split)
    b = efff.run_one("+master", 0, epochs=2, split=split)
    assert a["accuracy"] == b["accuracy"] and a["leaf_cv"] == b["leaf_cv"]


def test_variants_that_would_train_as_plain_are_refused(capsys):
    # master width 0 or no balancing epoch made "+master" / "+balance" train exactly as "plain"
    with pytest.raises(ValueError, match="master_width must be >= 1 for variant '\\+master', got 0"):
        efff.run_one("+master", 0, epochs=2, master_width=0)
    with pytest.raises(ValueError, match="variant '\\+balance' needs a balancing phase of >= 1 epoch, got 0"):
        efff.run_one("+balance", 0, epochs=1)
    with pytest.raises(SystemExit):
        cli.main(["efff", "--master-width", "0"])
    assert "--master-width: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_run_one_standardises_the_default_split(monkeypatch):
    seen = []
    real_fit = efff.fit
    monkeypatch.setattr(efff, "fit", lambda layer, X, y, **kw: seen.append(X) or real_fit(layer, X, y, **kw))
    efff.run_one("plain", 0, depth=1, epochs=1)
    X = seen[0]
    # the raw digits are pixel counts 0..16; standardised training inputs have mean ~0 per feature
    assert X.min() < 0 and np.abs(X.mean(axis=0)).max() < 1e-5
