"""The policy as data: every regime row and switch rule, thresholds in one place, user overrides."""
import dataclasses
import json
import re
from pathlib import Path

import pytest

from adaptlab.decide import Facts, Policy, evaluate_rules, load_policy
from adaptlab.decide.policy import RULE_SPECS, rare_failing_slices
from adaptlab.decide.references import REFERENCES, references_table
from adaptlab.errors import ConfigError


def fired(policy, **facts):
    return {r.id for r, _ in evaluate_rules(policy, Facts(**facts))}


def test_defaults_are_the_clinic_numbers():
    p = Policy()
    assert (p.margin, p.ship_threshold, p.min_seeds) == (0.02, 0.80, 3)
    assert (p.few_labels, p.adapter_labels, p.full_ft_labels) == (1_000, 10_000, 100_000)
    assert (p.lora_switch_labels, p.mmd_p_value, p.refit_max_hours) == (15_000, 0.05, 48.0)


@pytest.mark.parametrize("n_labels,n_unlabeled,compute,expected", [
    (500, 80_000, None, "probe"),          # < 1k: freeze + head, whatever the unlabeled volume
    (999, None, None, "probe"),
    (1_000, 80_000, None, "refit"),        # 1k-10k with plenty of unlabeled text: MLM refit then freeze
    (5_200, 80_000, True, "refit"),        # the clinic's case
    (5_200, 2_000, None, "probe"),         # 1k-10k without enough unlabeled text: no refit
    (5_200, None, None, "probe"),
    (10_000, 80_000, None, "lora"),        # 10k-100k: adapters
    (60_000, None, None, "lora"),
    (100_000, None, True, "lora"),
    (250_000, None, True, "finetune"),     # > 100k + compute: full fine-tune
    (250_000, None, None, "finetune"),     # compute unknown: the table's row, the engine flags nothing extra
    (250_000, None, False, "lora"),        # no compute: adapters
])
def test_regime_table(n_labels, n_unlabeled, compute, expected):
    rule = Policy().regime(n_labels, n_unlabeled, compute)
    assert rule.recommends == expected and rule.kind == "regime"
    # exactly one regime row matches any label count
    assert len([r for r in Policy().rules() if r.kind == "regime"
                and r.applies(Facts(n_labels=n_labels, n_unlabeled=n_unlabeled, has_compute=compute))]) == 1


def test_regime_unknown_labels_is_none():
    assert Policy().regime(None) is None


def test_switch_labels_lora():
    p = Policy()
    assert "switch.labels-lora" in fired(p, n_labels=15_000)
    assert "switch.labels-lora" not in fired(p, n_labels=14_999)
    assert "switch.labels-lora" in fired(Policy(lora_switch_labels=5_000), n_labels=5_200)


def test_switch_mmd_skip_refit():
    p = Policy()
    assert "switch.mmd-skip-refit" in fired(p, mmd_p_value=0.05)
    assert "switch.mmd-skip-refit" in fired(p, mmd_p_value=0.6)
    assert "switch.mmd-skip-refit" not in fired(p, mmd_p_value=0.049)
    assert "switch.mmd-skip-refit" not in fired(p)


def test_switch_refit_slow():
    p = Policy()
    assert "switch.refit-slow" in fired(p, refit_hours=48.5)
    assert "switch.refit-slow" not in fired(p, refit_hours=36)
    assert "switch.refit-slow" in fired(Policy(refit_max_hours=24), refit_hours=36)


def _slice(name, n, share, f1, error_share):
    return {"slice": name, "n": n, "share": share, "f1": f1, "error_share": error_share}


def test_switch_rare_slice():
    p = Policy()
    rare_bad = _slice("pediatric", 30, 0.05, 0.55, 0.25)
    assert "switch.rare-slice" in fired(p, slices=[rare_bad], overall_f1=0.84)
    # common slice (not rare), failing slice that is fine, too few items, errors not concentrated
    for s in (_slice("adult", 300, 0.5, 0.55, 0.8), _slice("x", 30, 0.05, 0.80, 0.25),
              _slice("tiny", 3, 0.005, 0.0, 0.2), _slice("y", 30, 0.05, 0.70, 0.06)):
        assert "switch.rare-slice" not in fired(p, slices=[s], overall_f1=0.84), s
    assert rare_failing_slices([rare_bad, _slice("z", 20, 0.04, 0.40, 0.2)], 0.84, p)[0]["slice"] == "z"


def test_every_rule_names_its_thresholds_and_cites_evidence():
    p = Policy(margin=0.03, lora_switch_labels=20_000)
    fields = {f.name for f in dataclasses.fields(Policy)}
    rules = p.rules()
    assert len({r.id for r in rules}) == len(rules) == len(RULE_SPECS)
    for r in rules:
        assert r.thresholds and set(r.thresholds) <= fields
        assert all(r.thresholds[k] == getattr(p, k) for k in r.thresholds)
        # Named by what it says; the why in plain words; the sources only as keys of the references table.
        assert r.title and not r.title[0].islower() and r.evidence
        assert r.sources and all(k in REFERENCES for k in r.sources) and r.to_dict()["cite"].startswith("[")
        assert not re.search(r"clinic|seed 00", r.title + r.evidence + r.action + r.condition, re.I)
        assert r.condition and r.action
        json.dumps(r.to_dict())
    assert "20,000" in p.rule("switch.labels-lora").condition
    assert p.rule("switch.labels-lora").title == "Labels grew to 20,000 or more: try adapters (LoRA)"
    assert "0.03" in p.rule("decision.margin").condition


def test_override_from_kwargs_json_and_toml(tmp_path):
    assert load_policy(margin=0.05).margin == 0.05
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"ship_threshold": 0.9, "min_seeds": 5}))
    p = load_policy(j, margin=0.01)
    assert (p.ship_threshold, p.min_seeds, p.margin) == (0.9, 5, 0.01)
    t = tmp_path / "p.toml"
    t.write_text("[policy]\nrefit_max_hours = 24.0\nfew_labels = 500\n")
    p = Policy.from_file(t)
    assert (p.refit_max_hours, p.few_labels) == (24.0, 500)
    assert Policy().replace(margin=0.04).margin == 0.04


@pytest.mark.parametrize("kwargs,match", [
    ({"margin": -0.1}, "policy.margin=-0.1 is not valid"),
    ({"ship_threshold": 1.5}, "policy.ship_threshold"),
    ({"min_seeds": 0}, "policy.min_seeds=0"),
    ({"mmd_p_value": 1.0}, "policy.mmd_p_value"),
    ({"few_labels": 20_000}, "increasing label counts"),
    ({"margni": 0.1}, r"unknown policy field\(s\) \['margni'\]"),
])
def test_bad_policy_values_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Policy.from_dict(kwargs)


def test_bad_policy_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Policy.from_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot parse"):
        Policy.from_file(bad)


def test_policy_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Policy().margin = 0.5  # type: ignore[misc]


def test_sources_are_cited_only_in_the_references_table():
    """`grep -ri "clinic\\|seed 00" src/adaptlab` finds the sources in one module, the table the report
    renders; product text names a rule by what it says."""
    import adaptlab

    root = Path(adaptlab.__file__).parent
    hits = sorted({str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".j2", ".html", ".md", ".json", ".toml")
                   and re.search(r"clinic|seed 00", p.read_text(encoding="utf-8", errors="replace"), re.I)})
    assert hits == ["decide/references.py"], hits
    table = references_table()
    assert [r["n"] for r in table] == list(range(1, len(REFERENCES) + 1))
    assert any("Clinic 21" in r["title"] for r in table)
