"""Trains one network rung (and optionally a refit) in every process of a launched run; used by
tests/test_runtime.py under ``python -m torch.distributed.run --nproc_per_node 2`` (CPU, gloo) and
once in a plain process, to compare the two.

Usage: ddp_worker.py ENCODER_DIR OUT_DIR [finetune|refit [STEPS [STOP_AT_STEP]]]
The main process writes OUT_DIR/weights.safetensors and OUT_DIR/result.json. The refit runs STEPS
steps (default 3); with STOP_AT_STEP it is interrupted in every process after that step (exit status
3), as a killed job would be.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

torch.set_num_threads(1)


def main() -> None:
    from safetensors.torch import save_file

    from adaptlab.encoders import Encoder
    from adaptlab.rungs import RungContext, get_rung
    from adaptlab.rungs.runtime import is_main_process
    from synthetic import topic_corpus

    enc_dir, out, what = Path(sys.argv[1]), Path(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "finetune")
    out.mkdir(parents=True, exist_ok=True)
    encoder = Encoder.from_pretrained(enc_dir, device="cpu")
    for m in encoder.model.modules():  # no dropout: one process and two must take the same steps
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    if what == "refit":
        from adaptlab.rungs.refit import RefitConfig, refit_encoder

        texts = list(topic_corpus(40, seed=3).texts)
        budget = f"{sys.argv[4] if len(sys.argv) > 4 else 3}steps"
        stop_at = int(sys.argv[5]) if len(sys.argv) > 5 else None

        def interrupt(step, _loss, _model):
            if step == stop_at:
                raise SystemExit(3)

        res = refit_encoder(encoder, texts, RefitConfig(budget=budget, batch_size=5, max_seq_length=32,
                                                        estimate_steps=1, checkpoint_every=2),
                            seed=0, home=out / "home", callback=interrupt if stop_at else None)
        if is_main_process():
            (out / "result.json").write_text(json.dumps({"key": res.key, "manifest": res.manifest}))
        return
    ds = topic_corpus(60, seed=0)
    # 33 training texts in batches of 8: the last batch holds one text, so one process gets none.
    train, val = ds.subset(range(33)), ds.subset(range(40, 60))
    rung = get_rung("finetune", {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 2,
                                 "head_dropout": 0.0, "patience": 5})
    fitted = rung.fit(train, val, seed=0, context=RungContext(classes=["money", "sport", "tech"], encoder=encoder))
    if is_main_process():
        state = {k: v.detach().contiguous() for k, v in fitted.model.state_dict().items()}
        save_file(state, str(out / "weights.safetensors"))
        d = fitted.diagnostics_
        (out / "result.json").write_text(json.dumps({"history": d["history"], "runtime": d["runtime"]}))


if __name__ == "__main__":
    main()
