"""`refit_encoder`: refit an encoder on a text corpus once, store it content-addressed, reuse it after.

Layout under ``home/refits/<key>/``: ``encoder/`` (a sentence-transformers folder written by
`Encoder.save_pretrained`), ``checksums.json`` (SHA-256 of every file of ``encoder/`` and of the manifest,
verified before every reuse), ``manifest.json`` (written last: its presence means the refit is complete)
and, while training, ``checkpoint/``. The key hashes the base encoder's fingerprint, the corpus, the
training config, the budget and the refit seed, so every seed, rung and later study that asks for the
same refit reads it instead of training again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from adaptlab.data.dataset import text_hash
from adaptlab.errors import AdaptlabError
from adaptlab.rungs.refit.config import RefitBudget, RefitConfig
from adaptlab.rungs.refit.objectives import build_objective
from adaptlab.rungs.refit.train import StepCallback, TokenizedCorpus, train
from adaptlab.rungs.runtime import is_main_process
from adaptlab.store import content_key
from adaptlab.store.files import sha256_file
from adaptlab.store.integrity import folder_checksums, quarantine, verify_folder, write_checksums

REFIT_SCHEMA = 1


@dataclass
class RefitOutcome:
    """A refit encoder (loaded from its stored folder) and what it cost."""

    encoder: Any
    key: str
    path: Path
    manifest: dict[str, Any]
    reused: bool


def canonical_corpus(texts: Sequence[str]) -> tuple[list[str], str]:
    """Distinct non-empty texts in a canonical order (by content hash) and the corpus hash.

    The order does not depend on how the texts were gathered (e.g. which labeled texts were train or
    validation for a seed), so the same set of texts always gives the same refit.
    """
    by_hash = {text_hash(t): t for t in texts if isinstance(t, str) and t.strip()}
    keys = sorted(by_hash)
    h = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20]
    return [by_hash[k] for k in keys], h


def resolve_budget(cfg: RefitConfig, study_budget: Any, n_texts: int) -> RefitBudget:
    """The rung's own budget, else the study's, else one epoch capped at ``default_max_steps``."""
    if cfg.budget is not None:
        b = RefitBudget.parse(cfg.budget)
    elif study_budget is not None:
        b = RefitBudget.parse(study_budget)
    else:
        spe = max(1, math.ceil(n_texts / cfg.batch_size))
        b = RefitBudget(steps=min(spe, cfg.default_max_steps))
    assert b is not None
    return b


def refit_key(base_fingerprint: str, corpus_hash: str, cfg: RefitConfig, budget: RefitBudget, seed: int) -> str:
    return content_key("refit", REFIT_SCHEMA, base_fingerprint, corpus_hash, cfg.training_identity(),
                       budget.to_dict(), int(seed))


def load_stored_refit(folder: Path, device: str = "auto") -> Optional[tuple[Any, dict[str, Any]]]:
    """The encoder and manifest of a finished refit folder, or None if it is absent or unfinished.

    A finished folder whose files do not match its ``checksums.json`` (flipped bytes, truncation, a folder
    written before checksums existed) or that cannot be read is moved aside with a warning
    (``<key>.corrupt-<time>``, kept for inspection) and None is returned, so the refit is trained again.
    """
    from adaptlab.encoders import Encoder

    manifest_file = Path(folder) / "manifest.json"
    if not manifest_file.is_file() or not (Path(folder) / "encoder").is_dir():
        return None
    problems = verify_folder(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        quarantine(folder, problems[0] + more, then="the refit is trained again")
        return None
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        enc = Encoder.from_pretrained(Path(folder) / "encoder", device=device)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any damage (bad JSON, truncated weights): a refit is recomputable
        quarantine(folder, f"{type(exc).__name__}: {exc}"[:300], then="the refit is trained again")
        return None
    enc.name = manifest.get("refit_encoder", {}).get("name", enc.name)  # not "encoder" (the folder name)
    return enc, manifest


def refit_encoder(
    encoder: Any,
    texts: Sequence[str],
    config: Optional[RefitConfig] = None,
    *,
    seed: int = 0,
    home: str | Path,
    study_budget: Any = None,
    show_progress: bool = False,
    callback: Optional[StepCallback] = None,
    log: Optional[Callable[[str], None]] = None,
    corpus_info: Optional[dict[str, Any]] = None,
) -> RefitOutcome:
    """Refit ``encoder`` on ``texts`` (or read the stored refit with the same key) and return it.

    The base encoder is not modified. An interrupted refit resumes from its last checkpoint when
    called again with the same arguments.

    Example:
        >>> from adaptlab.encoders import Encoder
        >>> base = Encoder.from_pretrained()                                  # doctest: +SKIP
        >>> out = refit_encoder(base, unlabeled_texts, RefitConfig(budget="300steps"),
        ...                     home="adaptlab-runs")                          # doctest: +SKIP
        >>> out.manifest["steps"], out.encoder.fingerprint != base.fingerprint  # doctest: +SKIP
        (300, True)
    """
    cfg = config or RefitConfig()
    say = log or (lambda _m: None)
    corpus_texts, corpus_hash = canonical_corpus(texts)
    if not corpus_texts:
        raise AdaptlabError(
            "the refit corpus is empty: pass unlabeled in-domain texts (--unlabeled FILE / Study.run(unlabeled=...)) "
            "or keep labeled_texts='train+val'."
        )
    budget = resolve_budget(cfg, study_budget, len(corpus_texts))
    base_fp = encoder.fingerprint
    key = refit_key(base_fp, corpus_hash, cfg, budget, seed)
    folder = Path(home) / "refits" / key
    stored = load_stored_refit(folder, device=encoder.device)
    if stored is not None:
        say(f"refit {key[:12]}: reusing the stored refit encoder ({folder})")
        return RefitOutcome(encoder=stored[0], key=key, path=folder, manifest=stored[1], reused=True)

    from adaptlab.encoders import Encoder

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corpus = TokenizedCorpus.build(encoder.tokenizer, corpus_texts, cfg.max_seq_length)
    # Under `accelerate launch` all processes train together; only the main one holds the lock and writes.
    main = is_main_process()
    with (_TrainingLock(folder / "training.lock") if main else contextlib.nullcontext()), \
            torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        # Seeds the MLM head's initialisation and dropout; a resume overwrites the RNG from the checkpoint.
        torch.manual_seed(int(seed))
        model = build_objective(cfg.objective, encoder, cfg)
        outcome = train(model, corpus, cfg, budget=budget, seed=seed, checkpoint_dir=folder / "checkpoint",
                        show_progress=show_progress, callback=callback, log=say)
    state, rt = outcome.state, outcome.runtime
    body = model.release_body()
    body.eval()
    refit = Encoder.from_model(body, encoder.tokenizer, name=f"{encoder.name}-refit-{cfg.objective}",
                               pooling=encoder.pooling, normalize=encoder.normalize,
                               max_seq_length=encoder.max_seq_length, do_lower_case=encoder.do_lower_case)
    if main:
        tmp = folder / "encoder.tmp"
        refit.save_pretrained(tmp)
        if (folder / "encoder").exists():
            import shutil

            shutil.rmtree(folder / "encoder")
        os.replace(tmp, folder / "encoder")
    rt.wait()
    # Always hand back the stored copy: a reused refit and a fresh one are then the same object.
    loaded = Encoder.from_pretrained(folder / "encoder", device=encoder.device)
    loaded.name = refit.name
    manifest = _manifest(key=key, cfg=cfg, seed=seed, encoder=encoder, base_fp=base_fp, refit=loaded,
                         corpus=corpus, corpus_hash=corpus_hash, n_texts=len(corpus_texts), corpus_info=corpus_info,
                         budget=budget, outcome=outcome, device=str(next(body.parameters()).device), t0=t0)
    if main:
        tmp_manifest = folder / "manifest.json.tmp"
        tmp_manifest.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        # Checksums before the manifest: a folder with a manifest always has them (else it is retrained).
        sums = folder_checksums(folder, ["encoder"])
        sums["manifest.json"] = {"sha256": sha256_file(tmp_manifest), "bytes": tmp_manifest.stat().st_size}
        write_checksums(folder, sums)
        os.replace(tmp_manifest, folder / "manifest.json")
        if not cfg.keep_checkpoint:
            from adaptlab.rungs.refit.train import Checkpointer

            Checkpointer(folder / "checkpoint").remove()
    rt.wait()
    say(f"refit {key[:12]}: {state.step} steps, {state.tokens:,} tokens in {state.elapsed:.1f}s "
        f"(loss {manifest['loss_first']:.3f} -> {manifest['loss_last']:.3f})")
    return RefitOutcome(encoder=loaded, key=key, path=folder, manifest=manifest, reused=False)


def _manifest(*, key: str, cfg: RefitConfig, seed: int, encoder: Any, base_fp: str, refit: Any, corpus: Any,
              corpus_hash: str, n_texts: int, corpus_info: Optional[dict[str, Any]], budget: Any, outcome: Any,
              device: str, t0: float) -> dict[str, Any]:
    """What a stored refit says about itself: inputs, plan, throughput, loss curve, runtime and versions."""
    state, plan, rt = outcome.state, outcome.plan, outcome.runtime
    elapsed = max(state.elapsed, 1e-9)
    estimate = dict(state.estimate)
    return {
        "key": key,
        "schema": REFIT_SCHEMA,
        "objective": cfg.objective,
        "seed": int(seed),
        "base_encoder": {"fingerprint": base_fp, **encoder.info},
        "refit_encoder": {"fingerprint": refit.fingerprint, "name": refit.name},
        "corpus": {"hash": corpus_hash, "n_texts": n_texts,
                   "mean_tokens": float(corpus.lengths.mean()), **(corpus_info or {})},
        "config": cfg.training_identity(),
        "budget": str(budget),
        "plan": plan.to_dict(),
        "steps": state.step,
        "epochs": state.samples / n_texts,
        "tokens": state.tokens,
        "samples": state.samples,
        "wall_seconds": state.elapsed,
        "total_seconds": time.perf_counter() - t0,
        "samples_per_second": state.samples / elapsed,
        "tokens_per_second": state.tokens / elapsed,
        "loss_curve": state.losses,
        "loss_first": state.losses[0] if state.losses else None,
        "loss_last": state.losses[-1] if state.losses else None,
        "estimate": estimate,
        "estimate_vs_actual": (estimate.get("estimated_seconds", 0.0) / elapsed) if estimate else None,
        "resumed_at": state.resumed_at,
        "device": device,
        "runtime": {**rt.describe(), "skipped_steps": state.skipped_steps},
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "created_at": time.time(),
    }


class RefitBusyError(AdaptlabError):
    """Another live process is training the same refit."""


class _TrainingLock:
    """One trainer per refit folder: two studies asking for the same refit at once must not both train it.

    The lock holds the owner's pid; a lock left by a process that no longer runs (killed) is taken over,
    so a killed refit resumes on the next call.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> "_TrainingLock":
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise RefitBusyError(
                        f"process {pid} is training this refit right now ({self.path.parent}); wait for it to finish "
                        "(the next run then reuses its result) or stop it. Its checkpoint lets it resume later."
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RefitBusyError(f"cannot take the training lock {self.path}; delete it if no refit is running.")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
