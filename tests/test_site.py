"""The leaderboard site: content, escaping, downloads, and behaviour in a real browser."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import publish

from harness.results.store import ResultStore
from harness.run.runner import bench
from harness.site.render import COMMIT as COMMIT_PATTERN
from harness.site.render import slug

HOSTILE = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def site(tiny_board, tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    db = folder / "results.duckdb"
    bench("patchcore", tiny_board, params={"coreset_ratio": "0.1"}, db=db, device="cpu")
    bench("intensity", tiny_board, db=db, device="cpu")
    bench("random", tiny_board, db=db, device="cpu")
    out = folder / "build"
    publish(db, out)
    return db, out


def _board_page(out: Path) -> Path:
    return next((out / "boards").glob("tiny-ad-*.html"))


def test_pages_and_downloads_exist(site):
    _, out = site
    assert (out / "index.html").exists()
    html = _board_page(out).read_text()
    assert "patchcore" in html and "intensity" in html and "random" in html
    for method in ("patchcore", "intensity", "random"):
        assert (out / "methods" / f"{slug(method)}.html").exists()
    assert len(list((out / "runs").glob("*.html"))) == 3
    board_csv = pd.read_csv(next((out / "data").glob("tiny-ad-*-leaderboard.csv")))
    board_json = json.loads(next((out / "data").glob("tiny-ad-*-leaderboard.json")).read_text())
    assert len(board_csv) == len(board_json) == 3
    assert list(board_csv["rank"]) == [1, 2, 3] and board_csv["auroc"].is_monotonic_decreasing
    assert list((out / "plots").glob("*corruptions.svg")) and list((out / "plots").glob("*scatter.svg"))


def test_the_site_needs_no_network(site):
    """Pages load nothing from elsewhere (links to papers may leave the site; nothing is fetched)."""
    _, out = site
    for page in out.rglob("*.html"):
        text = page.read_text()
        loads = re.findall(r'(?:src|srcset)="([^"]*)"|<link[^>]*href="([^"]*)"|url\(([^)]*)\)', text)
        assert not [u for group in loads for u in group if "//" in u], page
    assert "http" not in (out / "static" / "style.css").read_text() + (out / "static" / "table.js").read_text()


def test_hostile_names_are_escaped(site, tmp_path):
    db, _ = site
    copy = tmp_path / "hostile.duckdb"
    shutil.copy(db, copy)
    with ResultStore(copy) as store:
        store.con.execute("UPDATE runs SET method = ? WHERE method = 'random'", [HOSTILE])
        store.con.execute("UPDATE metrics SET method = ? WHERE method = 'random'", [HOSTILE])
    out = tmp_path / "build"
    publish(copy, out)
    for page in out.rglob("*.html"):
        assert "<script>alert" not in page.read_text(), page
    assert "&lt;script&gt;alert" in _board_page(out).read_text()


def test_empty_database_gives_instructions(tmp_path):
    db = tmp_path / "empty.duckdb"
    ResultStore(db).close()
    publish(db, tmp_path / "build")
    assert "make bench METHOD=patchcore" in (tmp_path / "build" / "index.html").read_text()


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver are required in CI (make setup installs them)")
        pytest.skip("Debian's chromium and chromium-driver are not installed (make browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1600",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_sorting_and_filters_in_a_real_browser(site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    _, out = site
    browser = _browser()
    try:
        browser.get((out / "index.html").as_uri())
        assert "tiny-ad" in browser.find_element(By.ID, "boards").text
        browser.get(_board_page(out).as_uri())

        def column(name: str) -> list[str]:
            table = browser.find_element(By.ID, "leaderboard")
            headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
            index = headers.index(name)
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr:not([hidden])")
            return [r.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-value") for r in rows]

        initial = [float(v) for v in column("AUROC")]
        assert initial == sorted(initial, reverse=True)
        header = browser.find_element(By.XPATH, "//table[@id='leaderboard']//th[text()='AUROC']")
        header.click()  # higher is better: first click sorts descending
        header.click()  # second click: ascending
        ascending = [float(v) for v in column("AUROC")]
        assert ascending == sorted(initial)
        browser.find_element(By.XPATH, "//table[@id='leaderboard']//th[text()='Method']").click()
        assert column("Method") == sorted(column("Method"), key=str.lower)
        rank = browser.find_element(By.XPATH, "//table[@id='leaderboard']//th[text()='Rank']")
        rank.click()  # rank 1 first on the first click
        assert [int(v) for v in column("Rank")] == [1, 2, 3] and rank.get_attribute("aria-sort") == "ascending"
        rank.send_keys(Keys.ENTER)  # headers sort from the keyboard too
        assert [int(v) for v in column("Rank")] == [3, 2, 1] and rank.get_attribute("aria-sort") == "descending"
        rank.send_keys(Keys.SPACE)
        assert [int(v) for v in column("Rank")] == [1, 2, 3]
        search = browser.find_element(By.CSS_SELECTOR, "input[data-filter=method]")
        search.send_keys("PATCH")
        assert column("Method") == ["patchcore"] and "1 of 3 methods shown" in browser.page_source
        search.clear()
        search.send_keys(" ")  # an input event after clearing
        assert len(column("Method")) == 3
        family = browser.find_element(By.CSS_SELECTOR, "select[data-filter=family]")
        patchcore_family = browser.find_element(By.CSS_SELECTOR, "tr[data-method=patchcore]").get_attribute(
            "data-family"
        )
        from selenium.webdriver.support.ui import Select

        Select(family).select_by_value(patchcore_family)
        assert column("Method") == ["patchcore"]
        Select(family).select_by_value("")
        assert len(column("Method")) == 3
        browser.find_element(By.CSS_SELECTOR, "input[data-toggle=all-runs]").click()
        rows = browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr:not([hidden])")
        shown_runs = [row.get_attribute("data-run") for row in rows]
        assert len(shown_runs) == len(set(shown_runs)), "show all runs repeats no run"
        browser.save_screenshot(str(tmp_path / "board.png"))
        assert (tmp_path / "board.png").stat().st_size > 10_000

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        requested = set()
        for entry in browser.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                requested.add(message["params"]["request"]["url"])
        outside = [u for u in requested if not u.startswith(out.as_uri())]
        assert requested and not outside, outside
    finally:
        browser.quit()


def test_no_page_is_wider_than_a_phone(site):
    """At 390 px every page fits the screen: wide tables scroll inside their own box, long
    commands and hashes wrap or scroll, nothing widens the page itself."""
    _, out = site
    browser = _browser()
    try:
        browser.set_window_size(390, 900)
        pages = [out / "index.html", _board_page(out), *(out / "runs").glob("*.html")]
        pages += list((out / "methods").glob("*.html"))
        for page in pages:
            browser.get(page.as_uri())
            width, screen = browser.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert width <= screen, f"{page.name} is {width} px wide at {screen} px"
    finally:
        browser.quit()


def test_runs_on_another_dataset_version_are_not_ranked(site, tmp_path):
    db, _ = site
    copy = tmp_path / "mixed.duckdb"
    shutil.copy(db, copy)
    with ResultStore(copy) as store:
        store.con.execute(
            "UPDATE runs SET dataset_sha256 = 'an-older-dataset', finished_at = finished_at - INTERVAL 1 DAY "
            "WHERE method = 'random'"
        )
    out = tmp_path / "build"
    publish(copy, out)
    board = pd.read_csv(next((out / "data").glob("tiny-ad-*-leaderboard.csv")))
    assert "random" not in set(board["method"]) and len(board) == 2
    assert "1 older runs" in _board_page(out).read_text()


def test_localization_columns_show_map_methods_and_n_a_for_the_others(site):
    db, out = site
    board = pd.read_csv(next((out / "data").glob("tiny-ad-*-leaderboard.csv"))).set_index("method")
    with ResultStore(db) as store:
        stored = store.query(
            "SELECT r.method, m.metric, m.value, m.ci_low, m.ci_high FROM metrics m JOIN runs r USING (run_id) "
            "WHERE m.condition = 'clean' AND m.slice = 'all' AND m.metric IN ('pixel_auroc', 'pointing_game')"
        )
    assert set(stored["method"]) == {"patchcore"}
    for row in stored.itertuples():
        assert board.loc["patchcore", row.metric] == pytest.approx(row.value)
    assert board.loc[["intensity", "random"], ["pixel_auroc", "pointing_game"]].isna().all().all()
    html = _board_page(out).read_text()
    assert "Pixel AUROC" in html and "Pointing game" in html and "n/a" in html
    for row in stored.itertuples():  # each with its interval in the leaderboard
        assert f'<span class="ci">[{row.ci_low:.3f}, {row.ci_high:.3f}]</span>' in html
    located = pd.read_csv(next((out / "data").glob("tiny-ad-*-localization.csv")))
    assert set(located["method"]) == {"patchcore"} and {"all", "finding=Nodule"} <= set(located["slice"])


def test_galleries_are_small_pngs_of_each_runs_errors_with_its_map(site):
    import re

    from PIL import Image

    db, out = site
    shown = {}
    for method in ("patchcore", "intensity"):
        page = (out / "methods" / f"{slug(method)}.html").read_text()
        assert "Errors on tiny-ad" in page and "Case study" in page
        shown[method] = re.findall(r'<img src="\.\./(plots/[^"]+-g\d+\.png)" alt="([^"]+)"', page)
        with ResultStore(db) as store:
            rows = store.query("SELECT count(*) FROM gallery g JOIN runs r USING (run_id) WHERE r.method = ?", [method])
        assert len(shown[method]) == rows.iloc[0, 0] > 4
        sizes = [(out / path).stat().st_size for path, _ in shown[method]]
        assert sum(sizes) < 250_000  # the README's budget per method and board
        assert all(max(Image.open(out / path).size) <= 256 for path, _ in shown[method])
    # The same case study, clean (the first gallery row): patchcore's thumbnail carries its map,
    # intensity's only the image and the ground truth.
    case = {m: next(p for p, alt in shown[m] if p.endswith("-g0.png")) for m in shown}
    assert shown["patchcore"][-1][1].split(" · ")[0] == shown["intensity"][-1][1].split(" · ")[0]
    pixels = {m: np.asarray(Image.open(out / p).convert("RGB")).astype(int) for m, p in case.items()}
    spread = {m: np.abs(a - a.mean(axis=2, keepdims=True)).mean() for m, a in pixels.items()}
    assert spread["patchcore"] > 3 * spread["intensity"]  # colour (the heat map) against grey


def test_numbers_read_as_a_person_reads_them(site):
    """Latencies keep the digits they need, counts get thousands separators, and a run page
    shows 'not recorded' instead of None, nan or NaT, seconds to one decimal."""
    from harness.site.render import ms, num, provenance

    assert (ms(0.031), ms(0.00042), ms(3.456), ms(123.45), ms(float("nan"))) == ("0.031", "0.00042", "3.46", "123.5",
                                                                                 "n/a")  # fmt: skip
    assert (num(12345.6, 0), num(1234, 0), num(0.5, 3)) == ("12,346", "1,234", "0.500")
    assert provenance(33.148812970997824, "fit_seconds") == "33.1 s"
    unrecorded = ((None, "threads"), (float("nan"), "temperature"), (pd.NaT, "started_at"))
    assert {provenance(v, k) for v, k in unrecorded} == {"not recorded"}
    assert provenance("none", "weights_id") == "none (random initialisation, seeded)"
    _, out = site
    for page in (out / "runs").glob("*.html"):
        table = page.read_text().split('<table class="provenance">')[1].split("</table>")[0]
        cells = re.findall(r"<td>(.*?)</td>", table)
        assert not {"None", "nan", "NaT"} & set(cells), page.name
        assert any(c.endswith(" s") and c.count(".") == 1 and len(c.split(".")[1]) == 3 for c in cells)  # "12.3 s"


def test_every_link_and_image_resolves(site, tmp_path):
    from harness.site.links import broken_links, main

    _, out = site
    broken, _ = broken_links(out)
    assert broken == []
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    page = next((copy / "runs").glob("*.html"))
    page.write_text(page.read_text().replace("</body>", '<a href="../nowhere.html">x</a><a href="#no-id">y</a></body>'))
    broken, _ = broken_links(copy)
    assert broken == [f"runs/{page.name}: ../nowhere.html", f"runs/{page.name}: #no-id (no such anchor)"]
    assert main([str(copy)]) == 1 and main([str(out)]) == 0


def test_slices_come_in_natural_order_with_intervals_and_each_methods_worst_marked(site):
    from harness.site.render import slice_order

    names = ["sex=M", "age_bin=60+", "finding=Mass", "age_bin=<40", "sex=F", "age_bin=40-59", "age_bin=unknown"]
    assert sorted(names, key=slice_order) == [
        "age_bin=<40", "age_bin=40-59", "age_bin=60+", "age_bin=unknown", "sex=F", "sex=M", "finding=Mass",
    ]  # fmt: skip
    db, out = site
    table = _board_page(out).read_text().split('id="slices"')[1].split("</table>")[0]
    header = re.findall(r"<th[^>]*>(.*?)</th>", table.split("</thead>")[0])[1:]
    ranked = pd.read_csv(next((out / "data").glob("tiny-ad-*-leaderboard.csv")))["run_id"].tolist()
    with ResultStore(db) as store:
        stored = store.query(
            "SELECT r.method, m.slice, m.value, m.ci_low, m.n FROM metrics m JOIN runs r USING (run_id) "
            "WHERE m.condition = 'clean' AND m.metric = 'auroc' AND m.slice <> 'all' AND m.slice NOT LIKE 'finding=%' "
            "AND isfinite(m.value) "
            "AND m.run_id IN (SELECT unnest(?))",
            [ranked],
        )
    for method, own in stored.groupby("method"):
        column = header.index(method) + 1
        cells = [re.findall(r"<td[^>]*>.*?</td>", row, re.S)[column] for row in table.split("<tr>")[2:]]
        worst = [c for c in cells if 'class="worst"' in c]
        lowest = own[own["value"] == own["value"].min()]  # every slice at the minimum is marked
        assert len(worst) == len(lowest) and all(f"{own['value'].min():.3f} " in c for c in worst), method
        assert {(f"[{r.ci_low:.2f},", f"n={int(r.n)},") for r in lowest.itertuples()} == {
            (re.search(r"\[\d\.\d\d,", c).group(), re.search(r"n=\d+,", c).group()) for c in worst
        }


def test_code_references_link_to_the_repository_at_the_runs_commit(site, tmp_path):
    from harness.site.builder import build_site
    from harness.site.render import code_files

    code = {"files": {"methods/knn.py": "ab" * 32, "harness/api/protocol.py": "cd" * 32}, "commit": "0123abc"}
    linked = code_files(code, None, "https://example.org/team/xrbench/")
    assert linked["own"] == [
        {
            "path": "methods/knn.py",
            "digest": "abababab",
            "url": "https://example.org/team/xrbench/blob/0123abc/methods/knn.py",
        }
    ]
    assert linked["harness"][0]["url"].endswith("/blob/0123abc/harness/api/protocol.py")
    assert code_files({**code, "commit": "unknown"}, None, "https://example.org/x")["own"][0]["url"] is None
    assert code_files(code, None, "")["tree"] is None  # no repository: no links
    db, _ = site
    with ResultStore(db) as store:
        commit = store.query("SELECT git_commit FROM runs WHERE method = 'patchcore'")["git_commit"][0]
    build_site(db, tmp_path / "linked", "https://example.org/team/xrbench")
    pages = [p.read_text() for p in (tmp_path / "linked" / "runs").glob("*.html")]
    page = next(p for p in pages if "methods/patchcore.py" in p)
    if COMMIT_PATTERN.fullmatch(commit or ""):
        assert f'href="https://example.org/team/xrbench/blob/{commit}/methods/patchcore.py"' in page
        assert f'href="https://example.org/team/xrbench/tree/{commit}"' in page
    else:  # a checkout without git: the files are listed, unlinked
        assert "https://example.org" not in page and "--repository URL" in page


def test_comparison_pages_give_the_paired_difference_slices_and_shared_images(site):
    from sklearn.metrics import roc_auc_score

    db, out = site
    board_csv = pd.read_csv(next((out / "data").glob("tiny-ad-*-leaderboard.csv")))
    first, second = board_csv["method"][:2]
    index = (out / "compare" / "index.html").read_text()
    assert index.count("<li>") == 3 and f"{first} vs {second}" in index  # the top three, pairwise
    page = out / "compare" / f"{slug(first)}-vs-{slug(second)}.html"
    assert f'href="../{page.relative_to(out)}"' in _board_page(out).read_text()  # linked from the Δ column
    summary = pd.read_csv(next((out / "data").glob(f"compare-{slug(first)}-vs-{slug(second)}.csv")))
    with ResultStore(db) as store:
        aurocs = []
        for run_id in summary.loc[0, ["run_a", "run_b"]]:
            test = store.predictions(run_id).query("split == 'test' and condition == 'clean'")
            aurocs.append(roc_auc_score(test["label"], test["score"]))
    assert summary.loc[0, "difference"] == pytest.approx(aurocs[0] - aurocs[1], abs=1e-9)
    assert summary.loc[0, "ci_low"] <= summary.loc[0, "difference"] <= summary.loc[0, "ci_high"]
    assert 0 <= summary.loc[0, "p"] <= 1
    html = page.read_text()
    assert f"{summary.loc[0, 'difference']:+.3f}" in html and "sex=F" in html
    images = re.findall(r'<img src="\.\./(plots/[^"]+\.png)"', html)
    assert images and len(images) % 2 == 0 and all((out / i).exists() for i in images)
