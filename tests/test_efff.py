"""The eFFF comparison command (SPEC §3) on tiny settings."""
import json
import re

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


def test_help_states_every_default():
    """--epochs (100, as docs/efff.md's table) was the one option whose help left its default out."""
    import argparse
    parser = argparse.ArgumentParser(prog="fffcpu")
    efff.add_parser(parser.add_subparsers())
    command = parser._subparsers._group_actions[0].choices["efff"]
    options = [a for a in command._actions if a.option_strings and a.nargs != 0 and a.default is not None]
    assert {a.dest for a in options} >= {"seeds", "epochs", "batch_size", "lr"}
    for action in options:
        assert "default" in action.help, action.dest
    assert "(default 100)" in command.format_help()


def test_efff_master_variants_have_a_master_leaf_and_are_seeded():
    split = tuple(a[:200] if i < 2 else a[:200] for i, a in enumerate(efff.data.digits_split(seed=0)))
    a = efff.run_one("+master", 0, epochs=2, split=split)
    b = efff.run_one("+master", 0, epochs=2, split=split)
    assert a["accuracy"] == b["accuracy"] and a["leaf_cv"] == b["leaf_cv"]


def test_variants_that_would_train_as_plain_are_refused(capsys):
    # master width 0 or no balancing epoch made "+master" / "+balance" train exactly as "plain"
    with pytest.raises(ValueError, match="master_width must be >= 1 for variant '\\+master', got 0"):
        efff.run_one("+master", 0, epochs=2, master_width=0)
    with pytest.raises(ValueError, match="variant '\\+balance' needs a balancing phase of >= 1 epoch .*, got 0 "
                                         "with epochs 1: give epochs >= 2 \\(fffcpu efff --epochs 2\\)"):
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


@pytest.mark.parametrize("variant", list(efff.VARIANTS))
def test_run_one_follows_the_published_recipe(monkeypatch, variant):
    """Each variant's layer and schedule: master leaf of width m only for "+master" variants; h 1
    then 3 and alpha 1 then 0 (alpha 0 throughout without balancing), switching after the
    balancing phase; AdamW at the given lr."""
    seen = {}
    monkeypatch.setattr(efff, "fit", lambda layer, X, y, **kw: seen.update(layer=layer, **kw))
    split = tuple(a[:40] for a in efff.data.digits_split(seed=0))
    efff.run_one(variant, 0, depth=2, master_width=3, epochs=6, balance_epochs=2, lr=0.02, split=split)
    opts = efff.VARIANTS[variant]
    assert seen["layer"].master_leaf == (3 if opts["master"] else 0) and seen["layer"].depth == 2
    assert seen["optimizer"] == "adamw" and seen["lr"] == 0.02 and seen["epochs"] == 6
    assert [seen["hardening"](e) for e in range(6)] == [1.0, 1.0, 3.0, 3.0, 3.0, 3.0]
    alpha = 1.0 if opts["balance"] else 0.0
    assert [seen["balance"](e) for e in range(6)] == [alpha, alpha, 0.0, 0.0, 0.0, 0.0]


def test_leaf_spread_counts_a_leaf_of_one_sample_as_used():
    layer = FFF(2, 1, 1, 2, seed=0, backend="numpy")
    layer.params["node_weights"][:] = 0
    layer.params["node_weights"][0] = [1.0, 0.0]
    layer.params["node_biases"][:] = 1.0
    x = np.zeros((8, 2))
    x[0, 0] = -5.0  # a_0 = -4: left, then right at node 1: leaf 1; the others reach leaf 3
    cv, unused = efff.leaf_spread(layer, x)
    assert unused == 2 and cv == pytest.approx(np.std([0, 1, 0, 7]) / 2, rel=1e-12)


def test_compare_refuses_no_seeds_or_an_unknown_variant_before_training():
    """compare(seeds=()) ended in NumPy's "zero-size array to reduction operation minimum"."""
    for kw, message in ((dict(seeds=()), "seeds and variants must each name at least one, got seeds=[]"),
                        (dict(variants=()), "variants=[]"),
                        (dict(variants=("plain", "both!")), "variants must be among")):
        with pytest.raises(ValueError, match=re.escape(message)):
            efff.compare(epochs=1, **kw)
    for kw, message in ((dict(variants="plain"), "variants must be a sequence such as ('plain', '+balance'), got "
                                                 "'plain' (str)"),
                        (dict(seeds=0), "seeds must be a sequence such as range(3), got 0 (int)")):
        with pytest.raises(TypeError, match=re.escape(message)):
            efff.compare(epochs=1, **kw)


def test_the_published_recipe_defaults_reach_the_runs(monkeypatch):
    """SPEC §3: AdamW lr 1e-3 and a master leaf of width 8 by default. Changing either default, in
    the command line or in run_one, passed every test, whose runs give both explicitly (a SPEC
    audit); each option's help also states its default, which must be the value that runs."""
    import argparse
    import inspect
    defaults = inspect.signature(efff.run_one).parameters
    assert defaults["lr"].default == 1e-3 and defaults["master_width"].default == 8
    assert defaults["balance_epochs"].default is None and defaults["epochs"].default == 100
    parser = argparse.ArgumentParser(prog="fffcpu")
    efff.add_parser(parser.add_subparsers())
    command = parser._subparsers._group_actions[0].choices["efff"]
    for action in command._actions:  # the help's "(default X)" is the value that runs
        if action.option_strings and action.nargs != 0 and action.default is not None:
            stated = re.search(r"default ([0-9][0-9.e+-]*)", action.help)
            assert stated and float(stated.group(1).rstrip(".")) == action.default, (action.dest, action.help)
    seen = []
    monkeypatch.setattr(efff, "compare", lambda **kw: (seen.append(kw), ([], []))[1])
    cli.main(["efff"])
    assert seen[0]["lr"] == 1e-3 and seen[0]["master_width"] == 8 and seen[0]["epochs"] == 100
