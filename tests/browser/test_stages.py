"""A staged regimen in Chromium: BioTTT001's Escalation page draws a tab per stage (its rule, its level table, its
history chart), the swimlanes draw both stages' DLT windows, and the Overview names the stages."""
from __future__ import annotations

from pathlib import Path

import pytest

from smc.tools.server import ERRORS

pytestmark = pytest.mark.browser

SHOTS = Path("/tmp/shots")  # what a person looks at after a run
CHART = '[data-testid="stPlotlyChart"] .main-svg'
VISIBLE_CHARTS = f"[...document.querySelectorAll('{CHART}')].filter(c => c.getBoundingClientRect().width > 0).length"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_each_stage_has_its_tab_rule_and_history(server, page):
    page.goto(f"{server}/escalation?study=BIOTTT001")
    page.wait_for_function(f"{VISIBLE_CHARTS} >= 2", timeout=60_000)  # the swimlanes and the first stage's history
    page.wait_for_load_state("networkidle")
    assert page.locator(ERRORS).count() == 0
    legend = page.locator(f"{CHART} .legendtext")
    assert legend.filter(has_text="DLT window, monotherapy (28 d)").count() == 1
    assert legend.filter(has_text="DLT window, combination (28 d)").count() == 1
    shot(page, "stages_escalation_monotherapy.png")
    page.locator('[data-testid="stPlotlyChart"]').first.screenshot(path=str(SHOTS / "stages_swimlanes.png"))

    rules, histories = (page.get_by_role("tab", name="Stage 2 · combination").nth(i) for i in (0, 1))
    rules.click()
    panel = page.get_by_role("tabpanel").filter(has_text="capped by monotherapy").first
    assert panel.get_by_text("Protocol rule", exact=True).is_visible()
    assert panel.get_by_text("the first dose of toripalimab in the stage").is_visible()
    histories.click()
    page.wait_for_function(f"{VISIBLE_CHARTS} >= 2", timeout=30_000)  # the swimlanes and the combination's history
    assert page.locator(ERRORS).count() == 0
    shot(page, "stages_escalation_combination.png")
    panel.screenshot(path=str(SHOTS / "stages_combination_rule.png"))
    page.get_by_role("tabpanel", name="Stage 2 · combination").nth(1).screenshot(
        path=str(SHOTS / "stages_combination_history.png"))


def test_the_overview_lists_the_stages(server, page):
    page.goto(f"{server}/?study=BIOTTT001")
    page.wait_for_selector(CHART, timeout=60_000)
    assert page.get_by_text("Stage 2 · combination").first.is_visible()
    assert page.get_by_text("Protocol rule (combination)").first.is_visible()
    assert page.locator(ERRORS).count() == 0
