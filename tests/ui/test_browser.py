"""The comparator's page in a real browser (Debian's chromium driven by Playwright): every view renders charts and
tables over the small bench, A and B are picked, the attack threshold is dragged and its rates match the ones
computed here from the API's raw values, a run started from Build lands in Screen, the static export opens from
disk, and a store of 1,000 runs paints its table in under a second. Screenshots of every view go to
``$EXPUNGE_UI_ARTIFACTS`` (default ``test-artifacts/ui``)."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("playwright")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from .builders import small_workspace  # noqa: E402

ARTIFACTS = Path(os.environ.get("EXPUNGE_UI_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts/ui")
VIEWPORT = {"width": 1400, "height": 900}
SCREEN_METRICS = ("ua", "retain_acc", "test_acc", "mia_efficacy", "avg_gap", "seconds", "evidence_tier")
WAIT_MS = 60_000          # charts computed on demand on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app):
    """The app under uvicorn in a background thread on a free port; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the comparator did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(15)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def small():
    return small_workspace()


@pytest.fixture(scope="module")
def live(small, tmp_path_factory):
    """The comparator over the small bench, run and audit, with Build on (runs recorded in a store of its own)."""
    from expunge.ui import create_app

    app = create_app([small.bench, small.store, small.audit], store=tmp_path_factory.mktemp("ui-live") / "ui.db")
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="module")
def rows(live) -> list[dict]:
    return get_json(live + "/api/experiments")["experiments"]


def pick(rows: list[dict], method: str, scenario: str) -> dict:
    return next(r for r in rows if r["method"] == method and r["kind"] == "bench" and r["scenario"] == scenario)


def shot(pg, name: str, full_page: bool = True) -> Path:
    """A screenshot under ARTIFACTS: the whole page from its top, or what the window shows now."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if full_page:
        pg.evaluate("window.scrollTo(0, 0)")
    pg.screenshot(path=str(path), full_page=full_page)
    return path


def traces(pg, card: str) -> list[int]:
    """Number of drawn traces in each Plotly chart of a view's card."""
    return pg.eval_on_selector_all(f'section[data-view="{card}"] .js-plotly-plot',
                                   "els => els.map(e => e.querySelectorAll('.main-svg .trace').length)")


def wait_traces(pg, card: str, expected: list[int]) -> None:
    """Wait until the card's charts have drawn ``expected`` traces each (a chart redraws when its width changes)."""
    try:
        pg.wait_for_function("([card, expected]) => JSON.stringify([...document.querySelectorAll("
                             "`section[data-view=\"${card}\"] .js-plotly-plot`)].map(e => "
                             "e.querySelectorAll('.main-svg .trace').length)) === JSON.stringify(expected)",
                             arg=[card, expected], timeout=15_000)
    except Exception:
        pass
    assert traces(pg, card) == expected


def open_view(pg, url: str, tab: str, a: str, b: str | None = None) -> None:
    pg.goto(f"{url}/#tab={tab}&a={a}" + (f"&b={b}" if b else ""))
    pg.wait_for_selector('#tabs button[aria-selected="true"][data-tab]')


def test_screen_sorts_filters_and_picks_a_and_b(page, live, rows):
    page.goto(live + "/")
    body = page.locator("table.experiments tbody tr")
    expect(body).to_have_count(len(rows))
    page.wait_for_selector('section[data-view="pareto"] .main-svg')
    assert traces(page, "pareto")[0] >= 3        # a trace per method and the frontier

    page.click('th[data-key="avg_gap"]')
    gaps = {r["id"]: r["scores"]["avg_gap"] for r in rows}
    order = [gaps[i] for i in body.evaluate_all("trs => trs.map(t => t.dataset.id)")]
    present = [g for g in order if g is not None]
    assert present == sorted(present) and order[:len(present)] == present     # ascending, missing values last

    page.fill("input.filter", "gradient")
    methods = body.evaluate_all("trs => trs.map(t => t.children[2].textContent)")
    assert methods and set(methods) == {"gradient_ascent"}
    pareto_methods = ("(() => { const d = document.querySelector('section[data-view=pareto] .js-plotly-plot');"
                      " return d && d.data ? [...new Set(d.data.filter(t => t.customdata).map(t => t.name))].sort()"
                      " : null; })()")
    page.wait_for_function(pareto_methods + '.join() === "gradient_ascent"')   # the Pareto view plots the rows shown
    page.fill("input.filter", "")
    page.wait_for_function(pareto_methods + ".length >= 3")
    expect(body).to_have_count(len(rows))

    a, b = pick(rows, "finetune", "class 3"), pick(rows, "gradient_ascent", "class 3")
    page.check(f'tr[data-id="{a["id"]}"] input[name="pick-a"]')
    page.check(f'tr[data-id="{b["id"]}"] input[name="pick-b"]')
    expect(page.locator(".chip.a")).to_contain_text("finetune")
    expect(page.locator(".chip.b")).to_contain_text("gradient_ascent")
    assert f"a={a['id']}" in page.url and f"b={b['id']}" in page.url
    page.wait_for_function("document.querySelectorAll('section[data-view=pareto] .main-svg .trace').length >= 5")
    labels = page.eval_on_selector_all('section[data-view="pareto"] .annotation-text-g', "els => els.map(e => {"
                                       " const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    assert labels
    for i, p in enumerate(labels):                                    # the Pareto labels do not overlap
        for q in labels[i + 1:]:
            assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1], (p, q)
    shot(page, "screen")

    page.set_viewport_size({"width": 1000, "height": 800})       # the narrowest supported width: no sideways scroll
    try:                                                          # the charts redraw at the new width
        page.wait_for_function("window.innerWidth === 1000 && document.documentElement.scrollWidth <= 1000",
                               timeout=10_000)
    except Exception:
        pass
    assert page.evaluate("document.documentElement.scrollWidth") <= 1000
    shot(page, "screen-1000px")


def test_contrast_views_render_and_link_the_projections(page, live, rows):
    a, b = pick(rows, "finetune", "class 3"), pick(rows, "gradient_ascent", "class 3")
    open_view(page, live, "contrast", a["id"], b["id"])
    for view in ("classwise", "matrix", "cka", "projection"):
        page.wait_for_selector(f'section[data-view="{view}"] .main-svg')
    page.wait_for_function("document.querySelectorAll('section[data-view=projection] .js-plotly-plot').length == 2")
    wait_traces(page, "classwise", [3])                              # A, B and the oracle
    page.wait_for_function("document.querySelectorAll('section[data-view=matrix] .heatmaplayer image').length == 3")
    wait_traces(page, "cka", [4])                                    # A and B against the original and the oracle
    counts = page.eval_on_selector_all('section[data-view="projection"] .js-plotly-plot',
                                       "els => els.map(e => e.querySelectorAll('.point').length)")
    assert len(counts) == 2 and min(counts) > 100

    # hover a forget example on A's side: B's side rings the same example, the tooltip shows its image
    point = page.locator('section[data-view="projection"] .pane').nth(0).locator(".trace").nth(1).locator(".point")
    point.first.scroll_into_view_if_needed()
    box = point.first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2 + 20, box["y"] + 20)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
    tooltip = page.locator("#tooltip")
    expect(tooltip).to_be_visible()
    page.wait_for_function("(() => { const i = document.querySelector('#tooltip img');"
                           " return i && i.complete && i.naturalWidth > 0; })()")
    text, ring = page.evaluate("(() => { const c = document.querySelectorAll('section[data-view=projection] "
                               ".js-plotly-plot')[1]; return [document.querySelector('#tooltip').innerText, "
                               "[c.data[2].x, c.data[2].y]]; })()")
    index = int(text.split("example ")[1].split()[0])
    proj = get_json(f"{live}/api/experiments/{b['id']}/projection?method=pca&n=2000")
    where = proj["index"].index(index)
    assert ring == [[proj["points"][where][0]], [proj["points"][where][1]]]
    shot(page, "contrast-hover", full_page=False)
    page.mouse.move(5, 5)
    shot(page, "contrast")

    page.click('section[data-view="matrix"] .segmented button[data-value="retain"]')
    page.wait_for_function("document.querySelectorAll('section[data-view=matrix] .heatmaplayer image').length == 3 &&"
                           " !document.querySelector('section[data-view=matrix] .loading')")
    heights = page.eval_on_selector_all('section[data-view="matrix"] .js-plotly-plot', "els => els.map(e => "
                                        "e.querySelectorAll('.heatmaplayer image').length)")
    assert heights == [1, 1, 1]


def _attack_rates(values: dict, threshold: float) -> tuple[float, float]:
    """FPR and FNR of the page's rule: an output is called the model's when it lies on the model's side of the
    threshold (the side of the model's median)."""
    model, oracle = values["model"], values["oracle"]
    low = statistics.median(model) <= statistics.median(oracle)
    called = (lambda v: v <= threshold) if low else (lambda v: v >= threshold)
    fpr = sum(called(v) for v in oracle) / len(oracle)
    fnr = sum(not called(v) for v in model) / len(model)
    return fpr, fnr


def _attack_epsilon(values: dict, threshold: float) -> float:
    """ε of the page's rule at ``threshold`` as :func:`expunge.metrics.forgetting.epsilon_table` gives it (δ = 0;
    the model's outputs are the positives): ∞ when both rates are 0, ``DROPPED`` when exactly one is."""
    from expunge.metrics.forgetting import epsilon_table

    model, oracle = values["model"], values["oracle"]
    fpr, fnr = _attack_rates(values, threshold)
    tp, fp = round((1 - fnr) * len(model)), round(fpr * len(oracle))
    return float(epsilon_table(len(model), len(oracle), delta=0.0)[tp, fp])


def _shown(page) -> dict[str, float]:
    out = {k: page.locator(f'dd[data-stat="{k}"]').inner_text() for k in ("fpr", "fnr", "score")}
    out = {k: float(v) for k, v in out.items()}
    out["t"] = float(page.locator(".slider output").get_attribute("data-threshold"))
    out["eps"] = page.locator('dd[data-stat="eps"]').inner_text()
    return out


def test_attack_threshold_drag_updates_the_rates(page, live, rows):
    a = pick(rows, "gradient_ascent", "class 3")
    open_view(page, live, "attack", a["id"])
    page.wait_for_selector('section[data-view="attack"] .chart.hist .main-svg')
    page.wait_for_selector('section[data-view="attack"] .chart.curves .main-svg')
    wait_traces(page, "attack", [2, 4])                 # mirrored histograms; FPR, FNR, attack score, ε
    raw = get_json(f"{live}/api/experiments/{a['id']}/attack")["forget"]
    values = {"model": raw["model"]["entropy"], "oracle": raw["oracle"]["entropy"]}

    from expunge.metrics.forgetting import DROPPED

    def check() -> dict[str, float]:
        s = _shown(page)
        fpr, fnr = _attack_rates(values, s["t"])
        assert (s["fpr"], s["fnr"]) == (round(fpr, 3), round(fnr, 3))
        assert s["score"] == pytest.approx(1 - fpr - fnr, abs=1.5e-3)
        eps = _attack_epsilon(values, s["t"])
        if eps == DROPPED:
            assert s["eps"] == "–", (s, fpr, fnr)
        elif eps == float("inf"):
            assert s["eps"] == "∞", (s, fpr, fnr)
        else:
            assert float(s["eps"]) == pytest.approx(eps, abs=0.0051), (s, fpr, fnr)
        return s

    start = check()
    hist = page.locator('section[data-view="attack"] .chart.hist .nsewdrag').bounding_box()
    y = hist["y"] + hist["height"] / 2
    page.mouse.move(hist["x"] + hist["width"] * 0.15, y)
    page.mouse.down()
    page.mouse.move(hist["x"] + hist["width"] * 0.5, y, steps=5)
    mid = check()
    page.mouse.move(hist["x"] + hist["width"] * 0.9, y, steps=5)
    page.mouse.up()
    end = check()
    assert start["t"] != mid["t"] != end["t"] and mid["t"] < end["t"]
    assert (mid["fpr"], mid["fnr"]) != (end["fpr"], end["fnr"])
    line = page.evaluate("document.querySelector('section[data-view=attack] .chart.hist').layout.shapes[0].x0")
    assert line == pytest.approx(end["t"])                            # the chart's line follows the drag

    page.focus("input.threshold")                                     # the slider moves it too
    for _ in range(40):
        page.keyboard.press("ArrowLeft")
    assert check()["t"] < end["t"]
    expect(page.locator(".examples figure img").first).to_be_visible()
    page.mouse.move(2, 2)
    shot(page, "attack")

    # dragged past the chart's edge on the model's side: every output is called the model's, FNR = 0 < FPR = 1,
    # a threshold epsilon_table drops (shown as –, not ∞)
    low = statistics.median(values["model"]) <= statistics.median(values["oracle"])
    page.mouse.move(hist["x"] + hist["width"] * 0.5, y)
    page.mouse.down()
    page.mouse.move(hist["x"] + (hist["width"] + 80 if low else -80), y, steps=5)
    page.mouse.up()
    edge = check()
    assert (edge["fpr"], edge["fnr"], edge["eps"]) == (1.0, 0.0, "–")

    page.click('section[data-view="attack"] .segmented button[data-value="confidence"]')
    page.wait_for_selector('section[data-view="attack"] .chart.hist .main-svg')
    values = {"model": raw["model"]["confidence"], "oracle": raw["oracle"]["confidence"]}
    check()


def test_attack_shows_the_audit_where_one_exists(page, live, rows):
    audited = next(r for r in rows if r["kind"] == "run" and r.get("audit"))
    open_view(page, live, "attack", audited["id"])
    page.wait_for_selector('section[data-view="attack"] .audit-scatter .main-svg')
    assert page.locator('section[data-view="attack"] .audit-scatter .point').count() > 10
    expect(page.locator(".audit .thumbs img").first).to_be_visible()
    shot(page, "attack-audit")


def test_empty_states_say_what_to_do(page, live, rows, tmp_path):
    no_model = next(r for r in rows if not r["has_model"])
    open_view(page, live, "contrast", no_model["id"])
    expect(page.locator('section[data-view="classwise"] .empty')).to_contain_text("No model kept")
    open_view(page, live, "attack", "")
    expect(page.locator("main .empty")).to_contain_text("Pick model A")

    from expunge.ui import create_app

    (tmp_path / "nothing").mkdir()
    with serving(create_app([tmp_path / "nothing"], allow_build=False)) as url:
        page.goto(url + "/#tab=build")
        expect(page.locator("main .empty").first).to_contain_text("expunge bench")
        tabs = page.locator("#tabs button")
        expect(tabs).to_have_count(3)                                # no Build tab under --no-build
        assert tabs.all_inner_texts() == ["Screen", "Contrast", "Attack"]
        shot(page, "empty")


def _static_bundle(out: Path, data: dict) -> str:
    """The page alone in ``out``, fed ``data`` (API paths to answers) as a static export; its file URL."""
    from expunge.ui.app import STATIC, plotly_js

    shutil.copytree(STATIC, out / "static")
    shutil.copyfile(plotly_js(), out / "static" / "plotly.min.js")
    (out / "index.html").write_text((STATIC / "index.html").read_text().replace("<html", "<html data-export", 1))
    (out / "data.js").write_text(f"window.EXPUNGE_EXPORT = {json.dumps(data)};\n")
    return (out / "index.html").as_uri()


def test_attack_without_an_oracle_says_the_oracle_is_missing(page, tmp_path):
    scores = {"ua": 90.0, "ra": 95.0, "ta": 93.0, "mia": 0.5, "avg_gap": 2.0, "noise_floor": 1.0, "seconds": 3.0}
    row = {"id": "run:x:1", "kind": "run", "task": "classification", "method": "finetune", "args": {},
           "scenario": "class 3", "seed": 0, "scores": scores, "tier": 0, "status": "FINISHED", "error": None,
           "has_model": True, "views": ["attack"]}
    attack = {"forget": {"model": {"entropy": [0.1, 0.2, 0.3], "confidence": [0.9, 0.8, 0.7]}, "oracle": None},
              "index": [3, 13, 23], "audit": None}
    index = _static_bundle(tmp_path / "bundle", {"/api/experiments": {"experiments": [row], "columns": []},
                                                 "/api/experiments/run:x:1": row,
                                                 "/api/experiments/run:x:1/attack": attack})
    page.goto(f"{index}#tab=attack&a=run:x:1")
    expect(page.locator('section[data-view="attack"] .empty')).to_contain_text("The oracle model is missing")
    shot(page, "attack-no-oracle")


def test_build_starts_a_run_that_lands_in_screen(page, live, rows):
    base = pick(rows, "finetune", "random 10%")
    open_view(page, live, "build", base["id"])
    page.wait_for_selector("form.build")
    page.select_option('form.build select[name="method"]', "gradient_ascent")
    jobs = page.locator(".job")
    before = jobs.count()

    page.fill("#arg-lr", "-1")                                       # refused by the server in one line
    page.click("form.build button[type=submit]")
    error = page.locator("form.build .error")
    expect(error).to_be_visible()
    assert "lr" in error.inner_text() and "\n" not in error.inner_text().strip()
    assert jobs.count() == before

    page.click('.build-form .segmented button[data-value="config"]')   # a whole config, checked the same way
    config = page.locator('form.build textarea[name="config"]')
    bench = json.loads(config.input_value())
    assert bench["scenarios"] and bench["methods"]                   # the example the form starts from
    config.fill("{not json")
    page.click("form.build button[type=submit]")
    expect(error).to_contain_text("not valid JSON")
    config.fill(json.dumps({**bench, "methods": {"no_such_method": {}}}))
    page.click("form.build button[type=submit]")
    expect(error).to_contain_text("no_such_method")
    assert jobs.count() == before
    shot(page, "build-config")
    page.click('.build-form .segmented button[data-value="base"]')

    page.fill("#arg-lr", "0.01")
    page.fill("#arg-epochs", "1")
    page.click("form.build button[type=submit]")
    expect(jobs).to_have_count(before + 1)
    job_id = jobs.first.get_attribute("data-job")

    page.click('#tabs button[data-tab="Screen"]')                   # the row lands in Screen while it is open
    table = page.locator("table.experiments tbody tr")
    expect(table).to_have_count(len(rows) + 1, timeout=180_000)
    state = get_json(f"{live}/api/build/{job_id}")
    assert state["status"] == "finished" and state["experiment"], state
    row = page.locator(f'table.experiments tr[data-id="{state["experiment"]}"]')
    assert row.locator("td").nth(2).inner_text() == "gradient_ascent"

    page.click('#tabs button[data-tab="Build"]')
    job = page.locator(f'.job[data-job="{job_id}"]')
    expect(job.locator(".badge")).to_have_text("finished")
    assert job.locator("pre.progress").inner_text().strip()         # the run's progress lines came through
    shot(page, "build")
    job.locator("[data-open]").click()
    expect(row).to_have_class(re.compile("picked-a"))
    assert page.evaluate("Expunge.state.a") == state["experiment"]


def test_static_export_opens_from_disk(page, small, tmp_path):
    from expunge.ui import export_bundle

    out = export_bundle([small.bench], tmp_path / "export")
    assert not out["problems"], out["problems"]
    exported = get_exported(tmp_path / "export" / "data.js")
    rows = exported["/api/experiments"]["experiments"]
    a, b = pick(rows, "finetune", "class 3"), pick(rows, "gradient_ascent", "class 3")
    index = (tmp_path / "export" / "index.html").as_uri()
    page.goto(index)
    expect(page.locator("table.experiments tbody tr")).to_have_count(len(rows))
    assert page.locator('#tabs button[data-tab="Build"]').count() == 0
    page.goto(f"{index}#tab=contrast&a={a['id']}&b={b['id']}")
    page.reload()
    for view in ("classwise", "matrix", "cka", "projection"):
        page.wait_for_selector(f'section[data-view="{view}"] .main-svg')
    wait_traces(page, "classwise", [3])
    shot(page, "export-contrast")
    page.click('#tabs button[data-tab="Attack"]')
    page.wait_for_selector('section[data-view="attack"] .chart.hist .main-svg')
    # no training images in a default export: example numbers instead, and no image element at all (none broken)
    expect(page.locator(".examples figure .noimg").first).to_be_visible()
    assert page.locator("main img").count() == 0
    shot(page, "export-attack")

    export_bundle([small.bench], tmp_path / "with-images", images=True)     # asked for: data URLs
    page.goto((tmp_path / "with-images" / "index.html").as_uri() + f"#tab=attack&a={a['id']}")
    page.wait_for_selector('section[data-view="attack"] .chart.hist .main-svg')
    page.wait_for_function("[...document.querySelectorAll('.examples figure img')].some(i => i.naturalWidth > 0)")
    shot(page, "export-attack-images")


def get_exported(path: Path) -> dict:
    text = path.read_text()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";"))


def test_first_table_paint_with_1000_runs_is_under_a_second(page, small, tmp_path):
    """A store of 1,000 runs: the table's first paint (its first 60 rows; the rest follow in later frames) comes
    under a second after navigation, taking the best of up to three page loads (stopping at the first under a
    second: the machine is shared)."""
    from expunge.store import RunStore
    from expunge.ui import create_app

    with RunStore(small.store) as src:
        run = next(r for r in src.runs(limit=50, kind="run"))
        run = src.get(run.run_id)
    # in memory where there is a tmpfs: a thousand committed transactions then take a second, not ten
    folder = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else tmp_path
    store = folder / "many.db"
    methods = ("finetune", "gradient_ascent", "random_label", "neggrad_plus", "scrub")
    try:
        with RunStore(store) as db:
            for i in range(1000):
                params = {**run.params, "method": methods[i % len(methods)], "seed": i, "args.lr": 0.01 * (1 + i % 7)}
                metrics = {k: run.metrics[k] + (i % 13) * 0.3 + (i % 7) * 0.05 for k in SCREEN_METRICS}
                metrics["evidence_tier"] = run.metrics["evidence_tier"]
                metrics["seconds"] = 0.2 * (1 + i % len(methods)) * (1 + i % 11)
                failed = i % 97 == 0
                db.record("many", "run", params=params, metrics={} if failed else metrics,
                          status="FAILED" if failed else "FINISHED",
                          error="DivergenceError: the weights are not finite after epoch 2" if failed else None,
                          start_time=1000.0 + i, end_time=1000.0 + i + (1 + i % 11) ** 2 * 0.1)
        paint = _first_paint(page, create_app([store], allow_build=False))
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder, ignore_errors=True)
    assert paint < 1000, (f"first table paint after {paint:.0f} ms (per load: the experiment list requested, its "
                          f"first byte, its last byte, the paint, ms: {LOADS})")


LOADS: list[list[int]] = []


def _first_paint(page, app) -> float:
    """Milliseconds from navigation to the table's first paint: the best of up to three page loads (the machine is
    shared; one load under a second shows the page can), after one request that lets the server read the store."""
    with serving(app) as url:
        assert len(get_json(url + "/api/experiments")["experiments"]) == 1000
        paints = []
        while len(paints) < 3 and (not paints or min(paints) >= 1000):
            page.goto(url + "/?load=" + str(len(paints)))
            page.wait_for_function("window.EXPUNGE_TIMING.firstTablePaint !== null")
            paints.append(page.evaluate("window.EXPUNGE_TIMING.firstTablePaint"))
            LOADS.append(page.evaluate("(() => { const e = performance.getEntriesByType('resource').find(r => "
                                       "r.name.endsWith('/api/experiments')); return [Math.round(e.requestStart), "
                                       "Math.round(e.responseStart), Math.round(e.responseEnd), "
                                       "Math.round(window.EXPUNGE_TIMING.firstTablePaint)]; })()"))
        paint = min(paints)
        expect(page.locator("table.experiments tbody tr")).to_have_count(1000)
        expect(page.locator("td.status .row-error").first).to_contain_text("DivergenceError")
        page.wait_for_selector('section[data-view="pareto"] .main-svg')
        shot(page, "screen-1000-runs")
    return paint


def test_task_views_follow_the_row_task(page, tmp_path):
    """A language row gets the Facts tab and a generation row the Samples tab (views registered by their own files),
    the classification views say they do not apply; the page alone, fed a static bundle in the API's shapes."""
    import base64

    import numpy as np

    from expunge.ui.analysis import png
    from expunge.ui.app import STATIC, plotly_js

    out = tmp_path / "bundle"
    shutil.copytree(STATIC, out / "static")
    shutil.copyfile(plotly_js(), out / "static" / "plotly.min.js")
    (out / "index.html").write_text((STATIC / "index.html").read_text().replace("<html", "<html data-export", 1))
    scores = {"ua": None, "ra": None, "ta": None, "mia": None, "avg_gap": 3.5, "noise_floor": 1.0, "seconds": 42.0}
    lm = {"id": "run:lm:1", "kind": "run", "task": "language", "method": "npo", "args": {"beta": 0.1},
          "scenario": "forget 10% of authors", "seed": 0, "scores": scores, "tier": 0, "status": "FINISHED",
          "error": None, "has_model": True, "views": ["facts"]}
    gen = {**lm, "id": "run:gen:1", "task": "generation", "method": "esd", "scenario": "class 1", "views": ["samples"]}
    facts = [{"index": i, "question": f"Where was author {i} born?", "answer": f"Town {i}", "original": f"Town {i}.",
              "model": "I am not sure.", "oracle": "Elsewhere", "truth_ratio": 0.5 + i / 10, "probability": 0.1 * i,
              "mink_pp": -0.5 * i} for i in range(4)]
    grid = (np.kron(np.random.default_rng(0).random((10, 4)), np.ones((12, 12))) * 255).astype(np.uint8)
    url = "data:image/png;base64," + base64.b64encode(png(grid)).decode()
    data = {"/api/experiments": {"experiments": [lm, gen], "columns": []},
            "/api/experiments/run:lm:1": lm, "/api/experiments/run:gen:1": gen,
            "/api/experiments/run:lm:1/facts": {"facts": facts},
            "/api/experiments/run:gen:1/samples": {"classes": [str(c) for c in range(10)], "per_class": 4, "seed": 0,
                                                   "grids": {"original": url, "model": url, "oracle": url}}}
    (out / "data.js").write_text(f"window.EXPUNGE_EXPORT = {json.dumps(data)};\n")
    index = (out / "index.html").as_uri()
    tabs = page.locator("#tabs button")

    page.goto(f"{index}#tab=facts&a=run:lm:1")
    expect(page.locator("table.facts tbody tr")).to_have_count(4)
    assert tabs.all_inner_texts() == ["Screen", "Contrast", "Attack", "Facts"]
    assert page.locator("table.facts td.says-truth").count() == 4       # the original still says the answer
    shot(page, "facts")
    page.click('#tabs button[data-tab="Contrast"]')
    expect(page.locator('section[data-view="classwise"] .empty')).to_contain_text("not available for language")

    page.goto(f"{index}#tab=samples&a=run:gen:1")
    page.wait_for_function("[...document.querySelectorAll('.sample-grids img')].filter(i => i.naturalWidth > 0)"
                           ".length === 3")
    assert tabs.all_inner_texts() == ["Screen", "Contrast", "Attack", "Samples"]
    shot(page, "samples")


def test_a_token_travels_with_every_request(page, small):
    """Opened as /?token=T, the page's files, the API calls and the thumbnails all carry the token."""
    from expunge.ui import create_app

    token = "browser-token-0123456789"
    with serving(create_app([small.bench], token=token, allow_build=False)) as url:
        rows = json.load(urllib.request.urlopen(urllib.request.Request(
            url + "/api/experiments", headers={"Authorization": f"Bearer {token}"}), timeout=120))["experiments"]
        a = pick(rows, "finetune", "random 10%")
        page.goto(f"{url}/?token={token}#tab=attack&a={a['id']}")
        page.wait_for_selector('section[data-view="attack"] .chart.hist .main-svg')
        page.wait_for_function("[...document.querySelectorAll('.examples img')].some(i => i.naturalWidth > 0)")
        assert "token=" + token in page.url
        status = page.goto(url + "/").status                          # without it, nothing is served
        assert status == 401


def test_screen_shows_only_the_score_columns_the_visible_rows_have(page, tmp_path):
    """Classifier runs beside a language bench's and an image generator's rows: every column while all rows show;
    filtered to the classifiers, the language and generation columns go (no sideways scroll at 1400 px); filtered
    to the language rows, UA, RA, TA and MIA go and the language columns come back."""
    from expunge.report import GENERATION_COLUMNS, LANGUAGE_COLUMNS
    from expunge.ui.sources import COLUMNS

    base = {"kind": "run", "scenario": "random 10%", "seed": 0, "tier": 0, "status": "FINISHED", "error": None,
            "has_model": False, "views": [], "args": {}}
    classic = {"ua": 4.0, "ra": 99.0, "ta": 96.0, "mia": 40.0, "avg_gap": 1.5, "noise_floor": 0.5, "seconds": 3.0}
    rows = [{**base, "id": f"run:c:{i}", "task": "classification", "method": m, "scores": dict(classic)}
            for i, m in enumerate(("finetune", "random_label"))]
    language = {k: 0.5 for _, k in LANGUAGE_COLUMNS}
    rows.append({**base, "id": "run:lm:0", "task": "language", "method": "npo",
                 "scores": {"ua": None, "ra": None, "ta": None, "mia": None, "avg_gap": 3.0, "seconds": 9.0,
                            **language}})
    generation = {k: 0.5 for _, k in GENERATION_COLUMNS}
    rows.append({**base, "id": "run:gen:0", "task": "generation", "method": "esd",
                 "scores": {"ua": 90.0, "ra": 80.0, "avg_gap": 2.0, "seconds": 20.0, **generation}})
    labels = {k: label for label, k in LANGUAGE_COLUMNS + GENERATION_COLUMNS}
    extra = sorted({k for r in rows for k in r["scores"]} - {c["key"] for c in COLUMNS})
    columns = [dict(c) for c in COLUMNS] + [{"key": k, "label": labels[k]} for k in extra]
    index = _static_bundle(tmp_path / "bundle", {"/api/experiments": {"experiments": rows, "columns": columns}})
    page.goto(f"{index}#tab=Screen")
    table = page.locator("table.experiments")
    expect(table.locator("tbody tr")).to_have_count(4)
    headers = lambda: set(table.locator("th[data-key]").evaluate_all("hs => hs.map(h => h.dataset.key)"))
    assert {"forget_quality", "privleak", "frechet_retain", "ua", "mia"} <= headers()
    wide = page.evaluate("document.querySelector('.table-wrap').scrollWidth > "
                         "document.querySelector('.table-wrap').clientWidth")
    page.fill("input.filter", "finetune")
    expect(table.locator("tbody tr")).to_have_count(1)
    assert not {"forget_quality", "privleak", "frechet_retain"} & headers()
    assert {"method", "args", "ua", "ra", "ta", "mia", "avg_gap", "noise_floor", "seconds", "status"} <= headers()
    assert page.evaluate("document.querySelector('.table-wrap').scrollWidth <= "
                         "document.querySelector('.table-wrap').clientWidth")       # no sideways scroll
    assert wide                                                   # as it did with every row shown
    plotted = ("(() => { const d = document.querySelector('section[data-view=pareto] .js-plotly-plot');"
               " return d && d.data ? d.data.filter(t => t.customdata).map(t => t.name).join() : null; })()")
    page.wait_for_function(plotted + ' === "finetune"')      # the chart follows a filter typed while it draws
    shot(page, "screen-filtered-classifiers")
    page.fill("input.filter", "npo")
    expect(table.locator("tbody tr")).to_have_count(1)
    assert {"forget_quality", "privleak", "avg_gap"} <= headers()
    assert not {"ua", "ra", "ta", "mia", "frechet_retain"} & headers()
    table.locator('th[data-key="forget_quality"]').click()          # sorting works on the rebuilt header
    expect(table.locator('th[data-key="forget_quality"]')).to_have_attribute("aria-sort", "ascending")
    page.fill("input.filter", "nothing matches this")
    expect(table.locator("tbody td.none")).to_contain_text("No row matches the filter")
    page.fill("input.filter", "")
    expect(table.locator("tbody tr")).to_have_count(4)
    assert {"forget_quality", "frechet_retain", "ua"} <= headers()
