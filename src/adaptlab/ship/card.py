"""`MODEL_CARD.md`: provenance, lineage, evaluation and limits of a shipped model.

The layout follows Hugging Face model cards (YAML front matter with license, base model, library and
metrics; then Model details, Uses, Training data, Training procedure, Evaluation, Limitations, How to
use). Everything in it comes from the manifest the pipeline was saved with, so the card cannot drift
from the weights it describes.
"""
from __future__ import annotations

from typing import Any, Optional

from adaptlab.rungs.ladder import facts as rung_facts

_NO_WEIGHTS_LICENSE = "n/a (no pretrained weights)"


def _fmt(x: Any, nd: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return "—" if x is None else str(x)


def _encoder_lines(ref: Optional[dict[str, Any]], title: str) -> list[str]:
    if not ref:
        return []
    lines = [f"- **{title}**: {ref.get('name')} ({ref.get('source') or 'in-memory'})",
             f"  - license: {ref.get('license') or 'unknown'}",
             f"  - fingerprint: `{ref.get('fingerprint')}`",
             f"  - embedding dimension {ref.get('dim')}, max sequence length {ref.get('max_seq_length')}, "
             f"pooling {ref.get('pooling')}{', normalised' if ref.get('normalize') else ''}, "
             f"{_fmt(ref.get('n_parameters'))} parameters",
             # The numeric path the head was fitted on and predicts with (bf16 / int8 change the vectors a little).
             f"  - encoding precision: {ref.get('precision') or 'fp32'}"
             + (f" ({ref['method']}, checked against fp32 before use)" if ref.get("method") else "")]
    if ref.get("package"):
        lines.append(f"  - installed package: `{ref['package']}=={ref.get('package_version')}`")
    elif ref.get("stored"):
        lines.append("  - weights stored with this model (blobs/encoders/<fingerprint>)")
    return lines


def model_card(manifest: dict[str, Any]) -> str:
    """Markdown model card of a saved pipeline's manifest (see :meth:`Pipeline.save`)."""
    state = manifest.get("state", {})
    extra = manifest.get("extra", {}) or {}
    lineage = extra.get("lineage", {}) or {}
    evaluation = extra.get("evaluation") or {}
    fit = manifest.get("fit", {}) or {}
    enc = state.get("encoder")
    base = state.get("base_encoder") or enc
    rung = manifest.get("rung")
    facts = rung_facts(str(rung))
    license_ = (base or {}).get("license") or (_NO_WEIGHTS_LICENSE if not facts.uses_encoder else "unknown")
    name = extra.get("name") or f"adaptlab-{rung}"
    metric = evaluation.get("metric", "f1")
    front = ["---", f"license: {license_}", "library_name: adaptlab", "pipeline_tag: text-classification",
             "tags:", "- adaptlab", "- text-classification", f"- rung-{rung}"]
    if base:
        front.append(f"base_model: {base.get('name')}")
    if evaluation.get("f1") is not None:
        front += ["metrics:", f"- {metric}"]
    front.append("---")

    classes = manifest.get("classes", [])
    lines = front + ["", f"# {name}", "",
                     f"A text classifier over {len(classes)} classes built by adaptlab's **{rung}** rung "
                     f"({facts.words}).", "",
                     "## Model details", "",
                     f"- **Version**: {extra.get('version', '—')}  (created {manifest.get('created')}, "
                     f"adaptlab {manifest.get('adaptlab_version')})",
                     f"- **Rung**: `{rung}`; classes: {', '.join(map(str, classes))}"]
    lines += _encoder_lines(base, "Base encoder")
    if enc and base and enc.get("fingerprint") != base.get("fingerprint"):
        lines += _encoder_lines(enc, "Adapted encoder")
    if state.get("adapter"):
        lines.append(f"- **LoRA adapters**: blobs/adapters/{state['adapter'][:16]}...")
    lines += ["", "## Uses", "",
              extra.get("intended_use") or "Intended use: classify texts like the training data "
              "(same sources, language and label definitions). Not for texts from other domains without "
              "re-evaluation; check `adaptlab drift` before trusting it on new sources.", ""]

    lines += ["## Training data (lineage)", ""]
    counts = fit.get("label_counts") or {}
    lines += [f"- training texts: {fit.get('n_texts')} (hash `{fit.get('data_hash')}`), of which "
              f"{fit.get('n_validation')} held out for model selection",
              f"- label distribution: {', '.join(f'{k}: {v}' for k, v in counts.items()) or '—'}"]
    for key, label in (("refit_corpus", "refit corpus"), ("source", "source file"), ("parent", "retrained from"),
                       ("new_labels", "new labels")):
        if lineage.get(key):
            lines.append(f"- {label}: {_plain(lineage[key])}")
    if fit.get("n_unlabeled"):
        lines.append(f"- unlabeled in-domain texts used by the refit: {fit['n_unlabeled']}")
    lines += ["", "## Training procedure", "",
              f"- rung `{rung}` with settings: `{_compact(manifest.get('rung_config'))}`",
              f"- seed {manifest.get('params', {}).get('seed')}, validation share "
              f"{manifest.get('params', {}).get('validation_size')}, budget "
              f"{manifest.get('params', {}).get('budget') or 'none'}",
              f"- selected on validation: `{_compact(fit.get('selected'))}`; validation scores: "
              f"`{_compact(fit.get('val_scores'))}`"]
    cost = fit.get("cost") or {}
    if cost:
        lines.append(f"- cost: {_fmt(cost.get('total_seconds'), 1)} s "
                     f"({_fmt(cost.get('encode_seconds'), 1)} s encoding), {cost.get('samples_seen')} samples seen")
    if lineage.get("code_version"):
        lines.append(f"- code: adaptlab {lineage['code_version']}")

    lines += ["", "## Evaluation", ""]
    if evaluation.get("f1") is not None:
        ci = evaluation.get("ci") or [None, None]
        lines.append(f"- sealed evaluation set: {evaluation.get('n')} texts (hash `{evaluation.get('hash')}`)")
        lines.append(f"- **{metric}: {_fmt(evaluation['f1'])}** (95% bootstrap CI {_fmt(ci[0])} – {_fmt(ci[1])}); "
                     f"accuracy {_fmt(evaluation.get('accuracy'))}")
        slices = evaluation.get("per_class") or {}
        if slices:
            lines += ["", "| class | n | F1 |", "|---|---:|---:|"]
            lines += [f"| {_cell(c)} | {v.get('n')} | {_fmt(v.get('f1'), 3)} |" for c, v in slices.items()]
        if evaluation.get("study"):
            lines += ["", f"Study evidence: {evaluation['study']}"]
    else:
        lines.append("No sealed evaluation was recorded for this version (saved from the Python API). Use "
                     "`adaptlab ship` to build a model with a sealed evaluation set.")

    lines += _calibration_lines(manifest, evaluation.get("calibration"))
    lines += _decision_lines(extra.get("decision"), extra.get("forced"))
    g = extra.get("gate")
    if isinstance(g, dict) and g.get("explanation"):
        lines += ["", "## Retrain gate", "",
                  f"- verdict: **{'promoted' if g.get('promoted') else 'kept the previous version'}** ({g.get('verdict')})",
                  f"- {g['explanation']}"]
    lines += _label_check_lines(extra.get("label_check"))
    lines += _label_review_lines(extra.get("label_review"))
    lines += ["", "## Limitations and known issues", ""]
    limits = list(extra.get("limitations") or [])
    limits += _flag_lines(fit.get("diagnostics"))
    if facts.label_trained_encoder:
        limits.append("Retraining this rung runs a deep-learning loop; a scheduled retrain is "
                      "slower and noisier than a frozen-encoder head (seed-to-seed std is in the study).")
    limits.append("Predictions are only as good as the label definitions of the training data; the gate "
                  "protects against regressions on the sealed evaluation set, not against label drift.")
    lines += [f"- {x}" for x in limits]
    if extra.get("transfer_note"):
        lines += ["", "## Transfer note", "", str(extra["transfer_note"]).strip()]
    lines += ["", "## How to use", "", "```bash",
              "adaptlab predict MODEL input.csv -o predictions.csv   # label + probabilities per row",
              "adaptlab retrain MODEL new_labels.csv                 # gated: keeps the old model if the new one regresses",
              "adaptlab drift MODEL new_texts.csv                    # are new texts like the training texts?",
              "```", "", "```python", "from adaptlab.ship import load_pipeline",
              "pipe = load_pipeline('MODEL/versions/<version>')", "pipe.predict(['some text'])", "```", ""]
    return "\n".join(_without_html(lines))


def _calibration_lines(manifest: dict[str, Any], sealed: Any) -> list[str]:
    """How the probabilities are calibrated, and the expected calibration error before/after on the sealed
    texts with the reliability diagram (as a table) and the coverage a ``--min-confidence`` leaves."""
    cal = manifest.get("calibration")
    how = ((manifest.get("fit") or {}).get("calibration")
           or ("uncalibrated: saved before shipped models carried a calibration" if "calibration" not in manifest
               else "uncalibrated"))
    lines = ["", "## Calibration", "", f"- {how}"]
    if isinstance(cal, dict):
        lines.append("- fitted on the validation holdout only (never on the sealed texts); the predicted class "
                     "never changes, only the probabilities `predict` reports")
    if not isinstance(sealed, dict) or sealed.get("ece_before") is None:
        return lines
    lines.append(f"- **expected calibration error on the {sealed.get('n')} sealed texts: "
                 f"{_fmt(sealed['ece_before'], 3)} before, {_fmt(sealed.get('ece_after'), 3)} after** "
                 "(0 = a confidence of 0.9 is right 9 times in 10)")
    before = {(b["low"], b["high"]): b for b in sealed.get("reliability_before") or []}
    after = {(b["low"], b["high"]): b for b in sealed.get("reliability_after") or []}
    if before or after:
        lines += ["", "Reliability diagram (sealed texts by confidence; calibrated when the accuracy matches the "
                  "confidence):", "",
                  "| confidence | texts before | accuracy before | texts after | mean confidence after | accuracy after |",
                  "|---|---:|---:|---:|---:|---:|"]
        for lo, hi in sorted(set(before) | set(after)):
            b, a = before.get((lo, hi), {}), after.get((lo, hi), {})
            lines.append(f"| {lo:.1f}–{hi:.1f} | {b.get('n', 0)} | {_fmt(b.get('accuracy'), 3)} | {a.get('n', 0)} | "
                         f"{_fmt(a.get('confidence'), 3)} | {_fmt(a.get('accuracy'), 3)} |")
    cov = sealed.get("coverage") or []
    if cov:
        lines += ["", "Coverage vs accuracy (`adaptlab predict --min-confidence P` sends the rest to review):", "",
                  "| P | answered | accuracy on them | to review |", "|---:|---:|---:|---:|"]
        lines += [f"| {r['min_confidence']:.2f} | {_pct(r.get('coverage'))} | {_fmt(r.get('accuracy'), 3)} | "
                  f"{r.get('to_review')} |" for r in cov]
    return lines


def _pct(x: Any) -> str:
    return "—" if not isinstance(x, float) else f"{x:.0%}"


def _cell(value: Any) -> str:
    """A value as one Markdown table cell: ``|`` escaped (a label ``a|b`` cannot split the row, as in the report)
    and a line break as a space (it would end the row)."""
    return " ".join(str(value).splitlines()).replace("|", "\\|")


def _without_html(lines: list[str]) -> list[str]:
    """The card's lines with ``&`` and ``<`` outside code fences as entities: labels, texts and file names it
    quotes show as typed in a Markdown viewer and never open an HTML tag there (a label ``<script>``)."""
    out, fenced = [], False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        out.append(line if fenced or line.startswith("```") else line.replace("&", "&amp;").replace("<", "&lt;"))
    return out


def _decision_lines(rec: Any, forced: Any) -> list[str]:
    """What the study's decision said about shipping, with the ship threshold; an override (--force) first."""
    if not isinstance(rec, dict) and not isinstance(forced, dict):
        return []
    rec = rec if isinstance(rec, dict) else {}
    lines = ["", "## Study decision", ""]
    if isinstance(forced, dict):
        lines.append(f"- **forced: shipped with --force against the study's decision** ({forced.get('status')}, "
                     f"{str(forced.get('when') or '').replace('T', ' ')[:16]}): the ship threshold is "
                     f"{_fmt(forced.get('ship_threshold'), 2)} and the decision said do not ship yet because "
                     f"{forced.get('reason')}.")
    sid = str(rec.get("study_id") or (forced or {}).get("study_id") or "")[:12]
    if rec:
        verdict = "ship" if rec.get("ship") else "do not ship yet"
        lines.append(f"- study `{sid}` decided: **{verdict}** ({rec.get('status')}); ship threshold "
                     f"{_fmt(rec.get('ship_threshold'), 2)} on the mean {rec.get('metric') or 'F1'} over at least "
                     f"{rec.get('min_seeds')} seeds: {rec.get('reason')}.")
        if rec.get("headline"):
            lines.append(f"- headline: {rec['headline']}")
    return lines


def _label_check_lines(chk: Any) -> list[str]:
    """The retrain's label check; an override (--accept-labels) is said first, with the rows it let in."""
    if not isinstance(chk, dict) or not chk.get("explanation"):
        return []
    lines = ["", "## Label check (new labels)", ""]
    if chk.get("verdict") == "accepted":
        lines.append(f"- **override: the new labels were accepted with --accept-labels** although the check "
                     f"would have held them ({chk.get('n_flagged_new')} of {chk.get('n_new')} flagged, "
                     f"{chk.get('new_rate', 0):.0%} vs {chk.get('old_rate', 0):.1%} of the old labels)")
        rows = chk.get("rows") or []
        if rows:
            src = chk.get("source") or "the new labels file"
            lines.append(f"- most suspicious rows of {src}: " + "; ".join(
                f"row {r.get('row')} {r.get('given')!r} (looks like {r.get('suggested')!r})" for r in rows))
    lines.append(f"- {chk['explanation']}")
    return lines


def _label_review_lines(rev: Any) -> list[str]:
    """Who reviewed the flagged new labels before this retrain (the web app's review page), and what they did."""
    if not isinstance(rev, dict):
        return []

    def rows(key: str) -> str:
        items = rev.get(key) or []
        return ", ".join(str(r.get("row")) for r in items) or "none"

    lines = ["", "## Label review (before training)", "",
             f"- reviewed by {rev.get('who', '?')} on {rev.get('when', '?')} ({rev.get('source') or 'the new labels'})",
             f"- fixed {len(rev.get('fixed') or [])} row(s): {rows('fixed')}; dropped {len(rev.get('dropped') or [])} "
             f"(not trained on): {rows('dropped')}; kept as labeled {len(rev.get('kept') or [])}: {rows('kept')}"]
    if rev.get("decisions_file"):
        lines.append(f"- every decision, with its old and new label: {rev['decisions_file']}")
    return lines


def _compact(d: Any) -> str:
    if not isinstance(d, dict):
        return _fmt(d)
    # Settings keep their magnitude (a learning rate of 2e-05 is not 0.0000); scores elsewhere use _fmt.
    return ", ".join(f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in d.items() if v is not None)


def _plain(v: Any) -> str:
    return _compact(v) if isinstance(v, dict) else str(v)


def _flag_lines(diag: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(diag, dict):
        return out
    over = diag.get("overfitting")
    if isinstance(over, dict) and over.get("flag"):
        out.append(f"Overfitting signature during training: {over.get('message') or over}")
    mv = diag.get("movement")
    if isinstance(mv, dict) and mv.get("sentence"):
        out.append(f"Backbone movement: {mv['sentence']}")
    return out
