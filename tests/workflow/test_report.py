"""The Snakemake HTML report of a real run, opened in a real headless Chromium."""

import copy
import os
import shutil

import pytest
import yaml

from clpipe import plan
from clpipe.config import validate_config
from conftest import ROOT, SCHEMA, snakemake


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def report(tiny_run):
    work, cfg = tiny_run
    path = work / "report.html"
    snakemake(work, "--configfile", str(cfg), "--report", str(path))
    return path, cfg


@pytest.mark.slow
def test_every_figure_and_table_of_the_report_loads_in_a_browser(report, tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason='playwright is not installed (pip install -e ".[test]")'
    )
    exe = chromium()
    if exe is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    path, cfg = report
    exp = validate_config(yaml.safe_load(cfg.read_text()), str(SCHEMA))["tiny"]
    n_figures = len(plan.figure_files(plan.Layout("r"), exp))
    errors, requests, seen = [], [], {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))

        page.goto(path.as_uri())  # it opens on the results: the summary table and figures
        page.locator("h1", has_text="clpipe results").wait_for()
        front = page.locator("table").first.inner_text()
        landing = {
            "no rule graph": page.locator("div#rulegraph").count() == 0,
            "title in view": page.locator("h1", has_text="clpipe results").bounding_box()["y"] >= 0,
            "title": page.locator("h2", has_text="tiny").count() == 1,
            "table rows": all(arm in front for arm in exp.arms),
            "figures": page.locator('img[src^="data:image/png"]').evaluate_all(
                "imgs => imgs.map(e => e.complete && e.naturalWidth > 100)"
            ),
        }
        page.screenshot(path=str(tmp_path / "landing.png"))

        def open_subcategory(name):
            page.goto(path.as_uri())  # from the start page: Results > tiny > name
            page.get_by_text("Results", exact=True).first.click()
            page.get_by_text("tiny", exact=True).first.click()
            page.get_by_text(name, exact=True).first.click()
            return page.locator('a[iconname="eye"]')

        for sub in ("figures", "accuracy matrices"):
            eyes = open_subcategory(sub)
            for i in range(eyes.count()):
                eyes.nth(i).click()
                img = page.locator('img[src^="data:image/png"]').last
                img.wait_for()
                name = img.get_attribute("src").split("filename=")[1].split(";")[0]
                ok = img.evaluate("e => e.decode().then(() => e.complete && e.naturalWidth > 100)")
                seen[f"{sub}/{name}"] = ok
                if name == "freeze.png":
                    page.screenshot(path=str(tmp_path / "report.png"))
        eyes = open_subcategory("tables")
        tables = {}
        for i in range(eyes.count()):
            href = eyes.nth(i).get_attribute("href") or ""
            if href.startswith("data:text/csv"):
                tables[eyes.nth(i).get_attribute("download")] = len(href) > 100
            else:
                eyes.nth(i).click()
                rows = page.frame_locator("iframe").locator("tr")
                rows.first.wait_for()
                tables[f"html {i}"] = rows.count() > 1
        browser.close()
    assert landing == {
        "no rule graph": True,
        "title in view": True,
        "title": True,
        "table rows": True,
        "figures": [True, True],
    }, landing
    assert len(seen) == n_figures, sorted(seen)
    assert all(seen.values()), {k: v for k, v in seen.items() if not v}
    assert tables and all(tables.values()) and len(tables) == 4, tables
    assert not errors, errors
    external = [u for u in requests if not u.startswith(("file:", "data:", "about:", "blob:"))]
    assert not external, f"the report is not self-contained: {external[:5]}"
    assert (tmp_path / "report.png").stat().st_size > 10_000
    if os.environ.get("CLPIPE_ARTIFACTS"):
        shutil.copy(tmp_path / "report.png", os.environ["CLPIPE_ARTIFACTS"])


def test_a_report_of_experiments_without_results_is_refused_saying_what_to_run(tmp_path):
    """The report shows what the config runs; an experiment not run yet is named, with
    the command that builds the report for those that have results."""
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["experiments"]["other"] = copy.deepcopy(cfg["experiments"]["tiny"])
    cfg["allow_foreign_files"] = True  # the folder below holds a made-up table
    (tmp_path / "results" / "tiny").mkdir(parents=True)
    (tmp_path / "results" / "tiny" / "summary.html").write_text("<html><body><table></table></body></html>")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = snakemake(tmp_path, "--configfile", str(config), "--report", str(tmp_path / "r.html"), check=False)
    assert out.returncode == 1 and not (tmp_path / "r.html").exists()
    text = out.stdout + out.stderr
    assert "cannot build the report: no results yet for other:" in text, text[-2000:]
    assert "--config 'run=[tiny]'" in text and "Traceback" not in text
