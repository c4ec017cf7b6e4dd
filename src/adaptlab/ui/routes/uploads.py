"""A new study from the browser: upload the data, check it (columns, problems), configure the rungs (or load a
study file), see the planner's estimate, start the job."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from adaptlab.errors import AdaptlabError, ConfigError, DataError
from adaptlab.ui.context import Ui, UIContext, not_found, see_other
from adaptlab.ui.uploads import (ENCODINGS, UploadError, UploadTooLarge, display_name, preview_rows, problems_view,
                                 read_columns)

router = APIRouter()
COLUMN_ROLES = ("text", "label", "group", "time", "id")
SPLITS = ("auto", "stratified", "group", "near-dup", "time")


# ------------------------------------------------------------------------------------ helpers
def rung_choices() -> list[dict[str, Any]]:
    """Every rung the configure page offers (with its main parameters), then the planned ones, greyed."""
    from adaptlab.rungs import RUNGS, available_rungs, trains_encoder
    from adaptlab.rungs.ladder import LADDER_FACTS
    from adaptlab.ui.studyform import form_parameters

    out = [{"name": n, "summary": RUNGS[n].summary, "available": True, "uses_encoder": RUNGS[n].uses_encoder,
            "trains_network": trains_encoder(n), "params": form_parameters(n)}
           for n in available_rungs()]
    for f in LADDER_FACTS:
        if f.name not in RUNGS:
            out.append({"name": f.name, "summary": f.label, "available": False, "uses_encoder": f.uses_encoder,
                        "trains_network": False, "params": {"main": [], "more": []}})
    return out


async def rung_param_fields(request: Request) -> dict[str, dict[str, str]]:
    """The posted form's ``p.<rung>.<parameter>`` fields (names not known in advance, so read from the form)."""
    from adaptlab.ui.studyform import param_fields

    return param_fields(dict((await request.form()).items()))


def upload_meta(ui: UIContext, uid: str) -> dict[str, Any]:
    try:
        meta = ui.uploads.meta(uid)
    except (KeyError, OSError, ValueError):
        raise not_found("upload") from None
    if meta.get("kind") != "study":
        raise not_found("upload")
    return meta


def _columns(ui: UIContext, uid: str, role: str) -> tuple[list[str], Optional[str]]:
    try:
        return read_columns(ui.uploads.path(uid, role)), None
    except KeyError:
        return [], None
    except DataError as exc:
        return [], str(exc)


def _paths(ui: UIContext, uid: str) -> tuple[Path, Optional[Path], dict[str, str]]:
    meta = upload_meta(ui, uid)
    data = ui.uploads.path(uid, "labeled")
    unl = ui.uploads.path(uid, "unlabeled") if "unlabeled" in meta["files"] else None
    names = {str(data): meta["files"]["labeled"]["name"]}
    if unl is not None:
        names[str(unl)] = meta["files"]["unlabeled"]["name"]
    return data, unl, names


def _preview(ui: UIContext, uid: str, encoding: str = "") -> Optional[dict[str, Any]]:
    """The first rows of the labeled file as read (None when it cannot be read: the column error says why)."""
    try:
        return preview_rows(ui.uploads.path(uid, "labeled"), encoding or None)
    except (KeyError, DataError):
        return None


def _guess(candidates: tuple[str, ...], columns: list[str]) -> str:
    low = {c.strip().lower(): c for c in columns}
    return next((low[c] for c in candidates if c in low), "")


def _data_page(ui: UIContext, uid: str, status: int = 200, check_error: Optional[dict[str, Any]] = None,
               chosen: Optional[dict[str, str]] = None) -> HTMLResponse:
    from adaptlab.data.load import LABEL_COLUMN_CANDIDATES, TEXT_COLUMN_CANDIDATES

    meta = upload_meta(ui, uid)
    cols, col_error = _columns(ui, uid, "labeled")
    ucols, ucol_error = _columns(ui, uid, "unlabeled")
    chosen = chosen or meta.get("columns") or {
        "text": _guess(TEXT_COLUMN_CANDIDATES, cols), "label": _guess(LABEL_COLUMN_CANDIDATES, cols),
        "group": "", "time": "", "id": "id" if "id" in cols else "",
        "unlabeled_text": _guess(TEXT_COLUMN_CANDIDATES, ucols), "encoding": "", "on_invalid": "error"}
    return ui.render("data.html.j2", status=status, uid=uid, meta=meta, cols=cols, col_error=col_error,
                     ucols=ucols, ucol_error=ucol_error, chosen=chosen, check_error=check_error,
                     encodings=ENCODINGS, roles=COLUMN_ROLES, preview=_preview(ui, uid, chosen.get("encoding", "")))


def _default_form(meta: dict[str, Any]) -> dict[str, Any]:
    # Nothing ticked: the default rungs, which depend on the time field (a time budget tries the ladder).
    # Pre-ticking tfidf and probe would turn a user's "40min" into a two-rung study without a word.
    has_unl = bool(meta["check"].get("n_unlabeled"))
    return {"rungs": [], "seeds": 3, "compute_budget": "30 min",
            "time_budget": "", "train_budget": "", "refit_budget": "200steps" if has_unl else "", "split": "auto"}


def _configure_page(ui: UIContext, uid: str, status: int = 200, form: Optional[dict[str, Any]] = None,
                    error: Optional[str] = None) -> Response:
    meta = upload_meta(ui, uid)
    if "check" not in meta:
        return see_other(f"/data/{uid}")
    form = {"params": {}, "extra": {}, "file_notes": [], **(form or meta.get("form") or _default_form(meta))}
    defaults = {"untimed": _default_rungs(meta, timed=False), "timed": _default_rungs(meta, timed=True)}
    return ui.render("configure.html.j2", status=status, uid=uid, meta=meta, rungs=rung_choices(), form=form,
                     plan=meta.get("plan"), error=error, splits=SPLITS, default_rungs=defaults,
                     plan_seconds=meta.get("plan_seconds"))


def _form_rungs(rungs: list[str]) -> list[str]:
    from adaptlab.rungs import RUNGS

    return [r for r in dict.fromkeys(rungs) if r in RUNGS]


def _default_rungs(meta: dict[str, Any], *, timed: bool) -> list[str]:
    """The rungs a study of this upload runs when none is ticked: ``study run`` without ``--rungs``
    (:func:`adaptlab.rungs.ladder.default_rungs`; refit only where an unlabeled file was uploaded)."""
    from adaptlab.rungs.ladder import default_rungs

    return _form_rungs(default_rungs(timed=timed, unlabeled=bool(meta.get("check", {}).get("n_unlabeled"))))


def _posted_form(ui: UIContext, uid: str, rungs: list[str], seeds: str, compute_budget: str, time_budget: str,
                 train_budget: str, refit_budget: str, split: str, params: dict) -> dict[str, Any]:
    """The configure form as posted (kept to show it again), with what a study file put there."""
    return {"rungs": rungs, "seeds": seeds, "compute_budget": compute_budget, "time_budget": time_budget,
            "train_budget": train_budget, "refit_budget": refit_budget, "split": split, "params": params,
            **_kept(ui, uid)}


def _kept(ui: UIContext, uid: str) -> dict[str, Any]:
    """What an uploaded study file put in the form that the form has no field for."""
    saved = upload_meta(ui, uid).get("form") or {}
    return {k: saved[k] for k in ("extra", "file_notes", "study_file") if k in saved}


# ------------------------------------------------------------------------------------ upload and check
@router.get("/study/new", response_class=HTMLResponse)
def new_study(ui: Ui) -> HTMLResponse:
    return ui.render("upload.html.j2", error=None)


@router.post("/upload")
def upload(ui: Ui, labeled: UploadFile = File(...), unlabeled: Optional[UploadFile] = File(None)) -> Response:
    files = {"labeled": (labeled.filename, labeled.file)}
    if unlabeled is not None and unlabeled.filename:
        files["unlabeled"] = (unlabeled.filename, unlabeled.file)
    if not labeled.filename:
        return ui.render("upload.html.j2", status=400, error="Choose a labeled data file first.")
    try:
        uid = ui.uploads.create(files, kind="study")
    except UploadTooLarge as exc:
        return ui.render("upload.html.j2", status=413, error=str(exc))
    except UploadError as exc:
        return ui.render("upload.html.j2", status=400, error=str(exc))
    return see_other(f"/data/{uid}")


@router.get("/data/{uid}", response_class=HTMLResponse)
def data_page(ui: Ui, uid: str) -> HTMLResponse:
    return _data_page(ui, uid)


@router.post("/data/{uid}/check")
def data_check(ui: Ui, uid: str, text_col: str = Form(""), label_col: str = Form(""), group_col: str = Form(""),
               time_col: str = Form(""), id_col: str = Form(""), unlabeled_text_col: str = Form(""),
               encoding: str = Form(""), on_invalid: str = Form("error")) -> Response:
    from adaptlab.ui.jobs import load_labeled

    meta = upload_meta(ui, uid)
    data, unl, names = _paths(ui, uid)
    chosen = {"text": text_col, "label": label_col, "group": group_col, "time": time_col, "id": id_col,
              "unlabeled_text": unlabeled_text_col, "encoding": encoding, "on_invalid": on_invalid}
    if encoding not in ENCODINGS:
        return _data_page(ui, uid, 400, {"message": f"encoding {encoding!r} is not offered; pick one of the list.",
                                         "problems": [], "rows": []}, chosen)
    if on_invalid not in ("error", "drop"):
        return _data_page(ui, uid, 400, {"message": "on_invalid must be 'error' or 'drop'.", "problems": [],
                                         "rows": []}, chosen)
    spec_cols = {k: (v or None) for k, v in chosen.items()}
    spec_cols["on_invalid"] = on_invalid
    spec = {"data_path": str(data), "unlabeled_path": str(unl) if unl else None, "columns": spec_cols}
    try:
        ds, unl_ds, report = load_labeled(spec)
    except AdaptlabError as exc:
        return _data_page(ui, uid, 422, problems_view(exc, names), chosen)
    meta["columns"] = chosen
    meta["check"] = _check_view(ds, unl_ds, report)
    meta.pop("plan", None)
    ui.uploads.save_meta(uid, meta)
    return see_other(f"/data/{uid}/configure")


def _cut(text: str, width: int = 300) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _check_view(ds: Any, unl_ds: Any, report: Any, preview: int = 10) -> dict[str, Any]:
    """What the check page shows: sizes, every warning `adaptlab data check` gives for the file (the same
    function makes them), the rows dropped, and the first rows as read."""
    from adaptlab.evaluate.datacheck import data_check as run_check

    checked, _ = run_check(ds, load_warnings=report.warnings)
    lq = checked["label_quality"] or {}
    return {
        "n": len(ds), "label_counts": ds.label_counts(), "classes": sorted(set(ds.labels or [])),
        "columns_used": report.columns, "warnings": checked["warnings"],
        "recommended_split": checked["recommended_split"],
        "label_noise": {"rate": lq.get("noise_rate"), "n_flagged": lq.get("n_flagged")} if lq else None,
        "dropped": [{"row": d.row, "codes": d.codes, "text": d.text} for d in report.dropped][:500],
        "n_dropped": len(report.dropped),
        "n_unlabeled": len(unl_ds) if unl_ds is not None else 0,
        "preview": [{"row": int(ds.rows[i]) if ds.rows else i + 1, "text": _cut(ds.texts[i]), "label": ds.labels[i]}
                    for i in range(min(preview, len(ds)))],
    }


# ------------------------------------------------------------------------------------ configure, plan, start
@router.get("/data/{uid}/configure")
def configure(ui: Ui, uid: str) -> Response:
    return _configure_page(ui, uid)


@router.post("/data/{uid}/studyfile")
def study_file(ui: Ui, uid: str, study_file: UploadFile = File(...)) -> Response:
    from adaptlab.ui.studyform import form_from_study_file

    meta = upload_meta(ui, uid)
    if "check" not in meta:
        return see_other(f"/data/{uid}")
    name = display_name(study_file.filename or "study.toml")
    try:
        form, _ = form_from_study_file(study_file.file.read(), name, meta.get("form") or {})
    except AdaptlabError as exc:
        return _configure_page(ui, uid, 400, None, str(exc))
    meta["form"] = {**_default_form(meta), **form}
    ui.uploads.save_meta(uid, meta)
    return see_other(f"/data/{uid}/configure")


@router.post("/data/{uid}/plan")
def plan(ui: Ui, uid: str, rungs: list[str] = Form([]), compute_budget: str = Form(""), seeds: str = Form("3"),
         train_budget: str = Form(""), refit_budget: str = Form(""), split: str = Form("auto"),
         time_budget: str = Form(""), params: dict = Depends(rung_param_fields)) -> Response:
    from adaptlab.decide.plan import plan_study
    from adaptlab.encoders import load_encoder
    from adaptlab.ui.jobs import load_labeled

    meta = upload_meta(ui, uid)
    if "check" not in meta:
        return see_other(f"/data/{uid}")
    form = _posted_form(ui, uid, _form_rungs(rungs), seeds, compute_budget, time_budget, train_budget,
                        refit_budget, split, params)
    data, unl, _ = _paths(ui, uid)
    cols = {k: (v or None) for k, v in meta["columns"].items()}
    try:
        if not compute_budget.strip():
            raise ConfigError.invalid("compute budget", compute_budget, "a duration, e.g. '30 min' or '2 CPU hours'")
        n_seeds = _form_seeds(seeds)
        t0 = time.monotonic()
        ds, unl_ds, _ = load_labeled({"data_path": str(data), "unlabeled_path": str(unl) if unl else None,
                                      "columns": cols})
        # The user's seeds are the most the plan gives a rung; the form keeps them as typed.
        p = plan_study(ds.texts, ds.labels, compute_budget, encoder=load_encoder(ui.settings.encoder),
                       n_unlabeled=len(unl_ds) if unl_ds is not None else 0, rungs=form["rungs"] or None,
                       seeds=n_seeds)
    except AdaptlabError as exc:
        return _configure_page(ui, uid, 400, form, str(exc))
    # The next estimate on this data says how long it will take (the page's "calibrating ..." line).
    meta["plan_seconds"] = round(time.monotonic() - t0, 1)
    meta["plan"] = {**p.to_dict(), "budget_text": compute_budget}
    planned = [i for i in p.items if i.included]
    if planned and not form["rungs"]:  # nothing ticked: the plan fills the rungs in; ticked rungs stay ticked
        form["rungs"] = [i.rung for i in planned]
    meta["form"] = form
    ui.uploads.save_meta(uid, meta)
    return see_other(f"/data/{uid}/configure#plan")


def _form_seeds(seeds: str) -> int:
    """The form's seeds as an integer (the study and the planner check its range), else a ConfigError."""
    try:
        n = int(str(seeds).strip())
    except ValueError:
        raise ConfigError.invalid("seeds", seeds, "an integer >= 1") from None
    if n < 1:
        raise ConfigError.invalid("seeds", n, "an integer >= 1 (3 is the minimum to ship on)")
    return n


def _study_config(ui: UIContext, meta: dict[str, Any], form: dict[str, Any], chosen: list[str], seeds: str,
                  split: str, whole: str, train_budget: str, refit_budget: str) -> tuple[Any, int, str]:
    """The study the form describes, checked as the API checks it: (StudyConfig, seeds, job title)."""
    from adaptlab.config import StudyConfig, parse_duration
    from adaptlab.evaluate import Study
    from adaptlab.ui.studyform import rung_params_from_form

    if not chosen:
        raise ConfigError.invalid("rungs", ",".join(form["rungs"]), "at least one available rung; tick one")
    n_seeds = _form_seeds(seeds)
    if split not in SPLITS:
        raise ConfigError.invalid("split", split, f"one of {', '.join(SPLITS)}")
    if whole:
        parse_duration(whole, "time budget")  # names the form's field, not the config's
    params = rung_params_from_form(form["params"], chosen)
    if refit_budget.strip() and "refit" in chosen:
        params.setdefault("refit", {})["budget"] = refit_budget.strip()
    name = f"{meta['files']['labeled']['name']}: {','.join(chosen)} x {n_seeds} seeds"
    if whole:
        name += f" within {whole}"
    extra = dict(form.get("extra") or {})
    extra.setdefault("n_boot", ui.settings.n_boot)
    extra.setdefault("name", name)
    name = extra["name"] or name
    cfg = StudyConfig(rungs=chosen, seeds=n_seeds, split=split, encoder=ui.settings.encoder,
                      budget=train_budget.strip() or None, rung_params=params, time_budget=whole or None, **extra)
    study = Study(cfg, home=ui.settings.home)  # validates every rung's parameters before anything is queued
    if study.time_budget is not None and n_seeds < study.adaptive.min_seeds:
        # The allocator needs the decision rule's full-budget seeds of the rung it picks.
        raise ConfigError.invalid("seeds", n_seeds, f"at least {study.adaptive.min_seeds} with a time budget "
                                  "(the rung the study picks needs that many full-budget seeds)")
    return cfg, n_seeds, name


@router.post("/data/{uid}/start")
def start(ui: Ui, uid: str, rungs: list[str] = Form([]), seeds: str = Form("3"), compute_budget: str = Form(""),
          train_budget: str = Form(""), refit_budget: str = Form(""), split: str = Form("auto"),
          time_budget: str = Form(""), param_texts: dict = Depends(rung_param_fields)) -> Response:
    meta = upload_meta(ui, uid)
    if "check" not in meta:
        return see_other(f"/data/{uid}")
    whole = time_budget.strip()
    # None ticked: the default, as `study run` without --rungs (with a time budget, the ladder).
    chosen = _form_rungs(rungs) if rungs else _default_rungs(meta, timed=bool(whole))
    form = _posted_form(ui, uid, chosen, seeds, compute_budget, time_budget, train_budget, refit_budget, split,
                        param_texts)
    try:
        cfg, n_seeds, name = _study_config(ui, meta, {**form, "rungs": rungs}, chosen, seeds, split, whole,
                                           train_budget, refit_budget)
    except AdaptlabError as exc:
        return _configure_page(ui, uid, 400, form, str(exc))
    data, unl, names = _paths(ui, uid)
    meta["form"] = form
    ui.uploads.save_meta(uid, meta)
    spec = {"config": cfg.to_dict(), "rungs": chosen, "seeds": n_seeds, "upload_id": uid,
            "time_budget": whole or None,
            "data_name": meta["files"]["labeled"]["name"], "data_path": str(data),
            "unlabeled_name": meta["files"].get("unlabeled", {}).get("name"),
            "unlabeled_path": str(unl) if unl else None,
            "columns": {k: (v or None) for k, v in meta["columns"].items()}, "display_paths": names}
    job = ui.jobs.submit("study", spec, title=name)
    return see_other(f"/jobs/{job.id}")
