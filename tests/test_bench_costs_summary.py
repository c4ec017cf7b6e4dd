"""bench/costs_summary.py joins cost runs into the #30 matrix: later runs win, the 1 s floor, missing cells."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _summary():
    spec = importlib.util.spec_from_file_location("costs_summary", ROOT / "bench" / "costs_summary.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(path, tag, rows):
    path.write_text(json.dumps({"tag": tag, "date": "2026-12-08T00:00:00", "commit": "abc1234", "rows": rows}))
    return path


def _row(rung, fid, est, meas, corpus="tweets", enc="minilm"):
    return {"corpus": corpus, "encoder": enc, "rung": rung, "fidelity": fid, "est_cell": est, "measured": meas,
            "ratio": est / meas}


def test_a_later_run_overrides_and_a_sub_second_error_passes(tmp_path, capsys):
    mod = _summary()
    old = _run(tmp_path / "a.json", "loaded", [_row("lora", 0.25, 80, 123), _row("tfidf", 1.0, 0.3, 0.2)])
    new = _run(tmp_path / "b.json", "quiet", [_row("lora", 0.25, 80, 84)])
    cells = mod.join([old, new])
    assert cells[("tweets", "minilm", "lora", "screen")]["tag"] == "quiet"
    assert mod.cell_ok(cells[("tweets", "minilm", "tfidf", "full")], floor=1.0)  # 1.5x, but 0.1 s
    assert not mod.cell_ok(_row("lora", 0.25, 80, 123), floor=1.0)  # 0.65 and 43 s off
    rc = mod.main([str(old), str(new)])
    out = capsys.readouterr().out
    assert rc == 1  # most of the matrix is not run
    assert "2/2 cells within" in out and "tweets x minilm lora full" in out and "bbc x e5 lpft screen" in out
