"""The documentation site (issue #19): its Python examples run, it builds with `mkdocs build --strict`, the
generated reference matches the code, and the built site opens in headless Chromium."""
import doctest
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(p for p in DOCS.rglob("*.md") if FENCE.search(p.read_text(encoding="utf-8")))


def test_pages_with_examples_exist():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"getting-started.md", "concepts/noise.md", "reference/artifacts.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_python_examples_of_the_page_run(page, tmp_path, monkeypatch):
    """Every ```python block of a page runs, in order, in one namespace (as a reader would paste them)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(FENCE.findall(page.read_text(encoding="utf-8"))):
        try:
            exec(compile(block, f"{page.relative_to(DOCS)}[block {i + 1}]", "exec"), namespace)
        except Exception as exc:  # name the page and the block, then fail with the original error
            raise AssertionError(f"{page.relative_to(DOCS)}, python block {i + 1} failed: {exc!r}") from exc


def _api_examples():
    """docs/_hooks/api_examples.py: the API reference's public names and their examples (the build's own check)."""
    sys.path.insert(0, str(DOCS / "_hooks"))
    try:
        import api_examples
    finally:
        sys.path.remove(str(DOCS / "_hooks"))
    return api_examples


API = _api_examples()
API_DOCTESTS = API.doctests()


def test_every_public_name_has_an_example():
    """The rule the strict build enforces (the api_examples hook): every class and function the API reference
    renders has a docstring with a >>> example."""
    names = [n for n, _ in API.public_names()]
    assert len(names) >= 150 and "adaptlab.evaluate.Study" in names and "adaptlab.errors.ConfigError" in names
    assert API.without_example() == []


def test_only_the_listed_names_skip_example_lines():
    """Examples run in full on tiny inputs; the few that need a trained network, a refit or a cluster are
    listed (MAY_SKIP, at most 10) and the build warns about any other."""
    skipped = API.with_skipped_lines()
    assert set(skipped) <= set(API.MAY_SKIP), sorted(set(skipped) - set(API.MAY_SKIP))
    assert len(API.MAY_SKIP) <= 10 and "adaptlab.rungs.FittedLora" in skipped


def test_every_public_method_and_property_has_a_docstring():
    """The methods and properties the API reference renders under each class say what they do (the build warns)."""
    assert API.methods_without_docstring() == []


def test_the_check_names_a_public_name_without_an_example(tmp_path):
    page = tmp_path / "api.md"
    page.write_text("# API\n\n::: adaptlab.evaluate.tracking\n    options:\n      heading_level: 3\n")
    names = [n for n, _ in API.public_names(page)]
    assert "adaptlab.evaluate.tracking.MlflowTracker" in names and "adaptlab.evaluate.Study" not in names

    def bare():
        """A function with a docstring but no example."""

    bare.__module__ = "adaptlab.evaluate.tracking"
    import adaptlab.evaluate.tracking as tracking

    tracking.bare = bare
    try:
        assert API.without_example(page) == ["adaptlab.evaluate.tracking.bare"]
    finally:
        del tracking.bare


@pytest.mark.parametrize("example", [True, False], ids=["with-example", "without-example"])
def test_strict_build_fails_on_a_public_name_without_an_example(tmp_path, example):
    """The hook end to end: a one-page site whose API page renders a module; mkdocs build --strict fails
    (and names the function) when a public function has no example."""
    pytest.importorskip("mkdocs")
    doc = '"""Add one.\n\n    Example:\n        >>> add_one(1)\n        2\n    """' if example else '"""Add one."""'
    (tmp_path / "demo_api.py").write_text(f"def add_one(x):\n    {doc}\n    return x + 1\n")
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# demo\n")
    (tmp_path / "docs" / "reference" / "api.md").write_text("# API\n\n::: demo_api\n")
    (tmp_path / "mkdocs.yml").write_text(f"site_name: demo\nhooks:\n  - {DOCS / '_hooks' / 'api_examples.py'}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")]), "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    if example:
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        assert r.returncode != 0 and "demo_api.add_one has no example" in r.stdout + r.stderr


def test_the_public_api_examples_are_collected():
    names = {t.name for t in API_DOCTESTS}
    assert len(API_DOCTESTS) >= 150
    assert {"adaptlab.evaluate.tracking.tracking_uri", "adaptlab.data.text_hash"} <= names


@pytest.mark.parametrize("test", API_DOCTESTS, ids=lambda t: t.name)
def test_public_api_example_runs(test, tmp_path, monkeypatch):
    """Every >>> example of the public API runs and prints what its docstring says (doctest)."""
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    for name in ("ADAPTLAB_HOME", "ADAPTLAB_TRACKING_URI"):  # the examples show the defaults
        monkeypatch.delenv(name, raising=False)
    test.globs = dict(test.globs)  # each example starts from its module's namespace, unchanged by others
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out: list[str] = []
    environ = dict(os.environ)
    try:
        result = runner.run(test, out=out.append)
    finally:  # an example that sets a variable (ADAPTLAB_HOME, MLflow's opt-in) leaves no trace in other tests
        os.environ.clear()
        os.environ.update(environ)
    assert result.failed == 0, "".join(out)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The built site: $ADAPTLAB_DOCS_SITE when CI has just built it from this tree (.ci/run), else built here."""
    prebuilt = os.environ.get("ADAPTLAB_DOCS_SITE")
    if prebuilt and (Path(prebuilt) / "index.html").is_file():
        return Path(prebuilt)
    pytest.importorskip("mkdocs")  # the [docs] extra; scripts/dev.sh installs it with [test]
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # Not -q: a quiet build drops warnings before --strict counts them, so it would pass a warning.
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return out


def test_generated_reference_matches_the_code(site):
    import typer.main

    from adaptlab.cli import app
    from adaptlab.decide import Policy

    cli = (site / "reference" / "cli.html").read_text(encoding="utf-8")
    root = typer.main.get_command(app)  # typer's own (vendored) click objects
    ctx = root.context_class(root)
    names = []
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):
            names += [f"{name} {sub}" for sub in cmd.list_commands(cmd.context_class(cmd))]
        else:
            names.append(name)
    missing = [n for n in names if f"<code>adaptlab {n}</code>" not in cli]
    assert not missing and len(names) >= 20
    assert "--track" in cli and "--tracking-uri" in cli
    rules = (site / "concepts" / "policy.html").read_text(encoding="utf-8")
    assert all(f"<code>{r.id}</code>" in rules for r in Policy().rules())
    keys = (site / "reference" / "policy-keys.html").read_text(encoding="utf-8")
    assert "<code>lora_switch_labels</code>" in keys and "<code>margin</code>" in keys
    api = (site / "reference" / "api.html").read_text(encoding="utf-8")
    for name in ("Study", "MlflowTracker", "Policy", "Pipeline", "TextDataset", "track_decision"):
        assert f'id="adaptlab.' in api and name in api


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_site_home_and_a_tutorial_open_in_chromium(served, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: run scripts/dev.sh test (it installs it) or apt-get install chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{served}/index.html")
        assert page.locator("h1").first.inner_text().rstrip("¶").strip() == "adaptlab"
        assert page.title().startswith("adaptlab")
        # Follow the home page's link to the clinic tutorial, as a reader would.
        page.locator("article a[href='tutorials/clinic.html']").first.click()
        page.wait_for_url(re.compile(r".*/tutorials/clinic\.html$"))
        assert "clinic" in page.locator("h1").first.inner_text().lower()
        code = page.locator("article pre").all_inner_texts()
        assert any("adaptlab study run" in c for c in code) and any("probe" in c and "±" in c for c in code)
        shot = tmp_path / "tutorial.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
        browser.close()
    assert not errors, errors


def test_every_public_name_has_a_docstring():
    """The API reference is built from docstrings: every name a stage exports says what it is."""
    import importlib
    import inspect

    missing = []
    for stage in ("data", "encoders", "rungs", "evaluate", "diagnostics", "decide", "ship", "monitor", "report", "ui"):
        module = importlib.import_module(f"adaptlab.{stage}")
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (inspect.getdoc(obj) or "").strip():
                missing.append(f"adaptlab.{stage}.{name}")
    assert not missing, missing
