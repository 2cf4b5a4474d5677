"""Treatment-emergent adverse events as of a date: what toxicity, at which
dose, how bad. The Safety page, the subject profile, ``report`` and the tests
count with these functions.

Rules: docs/rules.md#safety-treatment-emergent-adverse-events.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from smc.store.db import Database
from smc.store.study import Study

PHASES = ("all", "escalation", "expansion")
ANY_TEAE = "Any TEAE"
TOTAL = "Total"
GRADES = (1, 2, 3, 4, 5)

# What the heatmap counts; the first is its default view.
HEATMAP_VIEWS = {
    "DLTs": lambda e: e["dlt"] == "Y",
    "All TEAEs": lambda e: pd.Series(True, index=e.index),
    "Grade ≥3": lambda e: e["grade"] >= 3,
    "Serious": lambda e: e["serious"] == "Y",
    "Related": lambda e: e["related"] == "Y",
}

HEATMAP_TITLES = {"DLTs": "Subjects with a DLT", "All TEAEs": "Subjects with a TEAE",
                  "Grade ≥3": "Subjects with a grade ≥3 TEAE", "Serious": "Subjects with a serious TEAE",
                  "Related": "Subjects with a related TEAE"}

# Listings: which events each shows.
LISTINGS = {
    "DLTs": lambda e: e["dlt"] == "Y",
    "Serious AEs": lambda e: e["serious"] == "Y",
    "Grade 5 (fatal)": lambda e: e["grade"] == 5,
}
LISTING_COLUMNS = ["subject_id", "level", "label", "phase", "day", "onset_date", "end_date", "term", "soc", "grade",
                   "serious", "related", "dlt", "outcome", "action_taken", "ae_seq", "ae_spid"]


@dataclass(frozen=True)
class AeFilters:
    phase: str = "all"
    dlt_only: bool = False
    related_only: bool = False
    serious_only: bool = False
    grade3_plus: bool = False
    term_search: str = ""

    def __post_init__(self):
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {self.phase!r}")

    def event_mask(self, events: pd.DataFrame) -> pd.Series:
        keep = pd.Series(True, index=events.index)
        if self.dlt_only:
            keep &= events["dlt"] == "Y"
        if self.related_only:
            keep &= events["related"] == "Y"
        if self.serious_only:
            keep &= events["serious"] == "Y"
        if self.grade3_plus:
            keep &= events["grade"] >= 3
        if self.term_search.strip():
            keep &= events["term"].str.contains(self.term_search.strip(), case=False, regex=False)
        return keep


@dataclass(frozen=True)
class SafetyData:
    """The AEs and the dosed subjects of one study as of a date (optionally filtered)."""

    study: Study
    as_of: dt.date
    dosed: pd.DataFrame  # subject_id, level, phase, first_dose_date: the denominators
    teae: pd.DataFrame  # treatment-emergent AEs of dosed subjects, one row per event
    baseline: pd.DataFrame  # AEs with onset before the first dose (or with no dose yet)

    def n_dosed(self) -> dict[int, int]:
        """Dosed subjects per level, every level of the ladder (0 where none)."""
        counts = self.dosed.groupby("level")["subject_id"].nunique()
        return {level: int(counts.get(level, 0)) for level in self.study.level_order}

    def columns(self) -> list[tuple[int, str, int]]:
        """(level, label, N) of the levels with dosed subjects, in dose order: the table and heatmap columns."""
        return [(level, self.study.label(level), n) for level, n in self.n_dosed().items() if n]

    @cached_property
    def table_worst_grades(self) -> pd.DataFrame:
        """Each subject's worst grade in every table row (Any TEAE, SOC, term) and column (level, Total), once
        for both the AE summary and the worst-grade table."""
        # Worst per subject and term first: the SOC, Any TEAE and Total rows are maxima of these, over far fewer rows.
        per_term = worst_grades(self.teae, ["soc", "term", "level"])
        return worst_grades(_row_keys(_with_total(per_term)), ["row_soc", "row_term", "column"])


def load_safety(db: Database, study: Study, as_of: dt.date) -> SafetyData:
    params = dict(study_id=study.study_id, as_of=as_of)
    subjects = db.query("enrolled_treatment_starts", **params)
    events = load_subject_adverse_events(db, study, as_of, None)
    emergent = events["treatment_emergent"].astype(bool)
    subjects["label"] = study.labels(subjects["level"])
    return SafetyData(
        study, as_of,
        dosed=subjects[subjects["first_dose_date"].notna()].reset_index(drop=True),
        teae=events[emergent].reset_index(drop=True),
        baseline=events[~emergent].reset_index(drop=True))


def load_subject_adverse_events(db: Database, study: Study, as_of: dt.date, subject_id: str | None) -> pd.DataFrame:
    """AEs by ``as_of`` with their treatment-emergent flag and day, of one subject (None: all)."""
    events = db.query("enrolled_adverse_events", study_id=study.study_id, as_of=as_of, subject_id=subject_id)
    events["label"] = study.labels(events["level"])
    return events


def apply_filters(data: SafetyData, filters: AeFilters) -> SafetyData:
    """The phase filter narrows subjects (and so denominators); the others narrow events."""
    def in_phase(frame):
        return frame if filters.phase == "all" else frame[frame["phase"] == filters.phase]

    def events(frame):
        frame = in_phase(frame)
        return frame[filters.event_mask(frame)].reset_index(drop=True)

    return SafetyData(data.study, data.as_of, in_phase(data.dosed).reset_index(drop=True),
                      events(data.teae), events(data.baseline))


def tally(data: SafetyData) -> dict[str, int]:
    """Subjects and events, for "the filters leave X of Y"."""
    return {"dosed": len(data.dosed), "subjects_with_teae": data.teae["subject_id"].nunique(),
            "teae": len(data.teae), "baseline": len(data.baseline)}


def worst_grades(events: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per subject and ``by`` group: the subject's worst grade there."""
    return events.groupby([*by, "subject_id"], as_index=False, sort=False)["grade"].max()


def subject_counts(events: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Subjects (counted once at their worst grade) and the worst grade, per ``by`` group."""
    worst = worst_grades(events, by)
    return (worst.groupby(by, as_index=False)
            .agg(n_subjects=("subject_id", "size"), worst_grade=("grade", "max")))


def term_order(events: pd.DataFrame) -> list[tuple[str, str]]:
    """(soc, term) in table order: SOCs by subjects affected, then terms within, most frequent first."""
    soc_n = events.groupby("soc")["subject_id"].nunique()
    term_n = events.groupby(["soc", "term"])["subject_id"].nunique()
    return sorted(term_n.index, key=lambda k: (-soc_n[k[0]], k[0], -term_n[k], k[1]))


def heatmap_cells(data: SafetyData, view: str = "DLTs") -> pd.DataFrame:
    """One row per (soc, term, level) with at least one subject: n, N, % and worst grade."""
    events = data.teae[HEATMAP_VIEWS[view](data.teae)]
    cells = subject_counts(events, ["soc", "term", "level"])
    n_dosed = data.n_dosed()
    cells["n_dosed"] = cells["level"].map(n_dosed)
    cells["percent"] = 100 * cells["n_subjects"] / cells["n_dosed"]
    cells["label"] = cells["level"].map(data.study.label)
    return cells


def heatmap_rows(order: list[tuple[str, str]], cells: pd.DataFrame) -> list[tuple[str, str]]:
    """(soc, term) rows of the heatmap in table order (``order``: :func:`term_order`): the terms with a cell."""
    shown = set(zip(cells["soc"], cells["term"]))
    return [key for key in order if key in shown]


def _with_total(events: pd.DataFrame) -> pd.DataFrame:
    """The events twice: once at their level, once under "Total" (level None)."""
    return pd.concat([events.assign(column=events["level"]), events.assign(column=TOTAL)], ignore_index=True)


def _row_keys(events: pd.DataFrame) -> pd.DataFrame:
    """Each event under its term row, its SOC row and the "Any TEAE" row."""
    term = events.assign(row_soc=events["soc"], row_term=events["term"])
    soc = events.assign(row_soc=events["soc"], row_term="")
    anything = events.assign(row_soc=ANY_TEAE, row_term="")
    return pd.concat([anything, soc, term], ignore_index=True)


def row_order(data: SafetyData) -> list[tuple[str, str]]:
    """Table rows: "Any TEAE", then each SOC followed by its terms, most frequent first."""
    rows = [(ANY_TEAE, "")]
    for soc, term in term_order(data.teae):
        if rows[-1][0] != soc:
            rows.append((soc, ""))
        rows.append((soc, term))
    return rows


def ae_summary(data: SafetyData) -> pd.DataFrame:
    """Long form of the AE summary table: per row and column (level or Total),
    subjects with the event at any grade and at grade >= 3, and N."""
    worst = data.table_worst_grades
    counts = (worst.assign(grade3=worst["grade"] >= 3)
              .groupby(["row_soc", "row_term", "column"], as_index=False)
              .agg(n_any=("subject_id", "size"), n_grade3=("grade3", "sum")))
    return _complete(data, counts, ["n_any", "n_grade3"])


def grade_summary(data: SafetyData) -> pd.DataFrame:
    """Long form of the worst-grade table: per row and column, subjects whose worst grade is 1..5."""
    worst = data.table_worst_grades
    counts = pd.crosstab([worst["row_soc"], worst["row_term"], worst["column"]], worst["grade"])
    counts = counts.reindex(columns=list(GRADES), fill_value=0)
    counts.columns = [f"grade_{g}" for g in GRADES]
    return _complete(data, counts.reset_index(), [f"grade_{g}" for g in GRADES])


def _complete(data: SafetyData, counts: pd.DataFrame, value_columns: list[str]) -> pd.DataFrame:
    """Every table row × every column, zeros where nobody had the event, with N and in row order."""
    columns = [level for level, _, _ in data.columns()] + [TOTAL]
    rows = row_order(data)
    grid = pd.MultiIndex.from_tuples([(s, t, c) for s, t in rows for c in columns],
                                     names=["row_soc", "row_term", "column"])
    counts = counts.astype({"column": object}).set_index(["row_soc", "row_term", "column"])
    full = counts.reindex(grid, fill_value=0)[value_columns].astype(int).reset_index()
    n_dosed = {**data.n_dosed(), TOTAL: len(data.dosed)}
    full["n_dosed"] = full["column"].map(n_dosed)
    return full.rename(columns={"row_soc": "soc", "row_term": "term", "column": "level"})


def percent_text(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f}%)" if total else str(n)


def column_title(data: SafetyData, level) -> str:
    if level == TOTAL:
        return f"Total (N={len(data.dosed)})"
    return f"{data.study.label(level)} (N={data.n_dosed()[level]})"


def _wide(data: SafetyData, long: pd.DataFrame, parts: dict[str, str]) -> pd.DataFrame:
    """Display form: SOC / term rows, "n (%)" per level and Total for each part."""
    table = long[["soc", "term"]].drop_duplicates().reset_index(drop=True)
    for level in dict.fromkeys(long["level"]):
        block = long[long["level"] == level].reset_index(drop=True)
        for value_column, suffix in parts.items():
            table[f"{column_title(data, level)} {suffix}"] = [
                percent_text(n, total) for n, total in zip(block[value_column], block["n_dosed"])]
    table.insert(0, "System organ class / term",
                 [soc if not term else f"    {term}" for soc, term in zip(table["soc"], table["term"])])
    return table


def ae_summary_table(data: SafetyData) -> pd.DataFrame:
    return _wide(data, ae_summary(data), {"n_any": "any grade", "n_grade3": "grade ≥3"})


def grade_summary_table(data: SafetyData) -> pd.DataFrame:
    return _wide(data, grade_summary(data), {f"grade_{g}": f"G{g}" for g in GRADES})


def listing(events: pd.DataFrame, name: str | None = None) -> pd.DataFrame:
    """Events for a listing (``name`` from LISTINGS; None = all given events), by level, subject, onset."""
    if name is not None:
        events = events[LISTINGS[name](events)]
    return events[LISTING_COLUMNS].sort_values(["level", "subject_id", "onset_date"]).reset_index(drop=True)


@dataclass(frozen=True)
class SafetyView:
    """What the Safety page shows for one filter choice, computed once per data cut, study, date and filters
    and small enough to cache: reruns and other sessions never regroup the events of a large study."""
    shown: dict[str, int]  # tally() with the filters
    total: dict[str, int]  # tally() without
    columns: list[tuple[int, str, int]]
    heatmaps: dict[str, tuple[pd.DataFrame, list[tuple[str, str]]]]  # per HEATMAP_VIEWS: cells and rows
    ae_summary: pd.DataFrame
    grade_summary: pd.DataFrame
    listings: dict[str, pd.DataFrame]  # LISTINGS of the TEAEs, then "Baseline events"


def load_safety_view(db: Database, study: Study, as_of: dt.date, filters: AeFilters) -> SafetyView:
    everything = load_safety(db, study, as_of)
    data = apply_filters(everything, filters)
    order, heatmaps = term_order(data.teae), {}
    for view in HEATMAP_VIEWS:
        cells = heatmap_cells(data, view)
        heatmaps[view] = cells, heatmap_rows(order, cells)
    return SafetyView(
        shown=tally(data), total=tally(everything), columns=data.columns(), heatmaps=heatmaps,
        ae_summary=ae_summary_table(data), grade_summary=grade_summary_table(data),
        listings={**{name: listing(data.teae, name) for name in LISTINGS}, "Baseline events": listing(data.baseline)})


def safety_json(data: SafetyData) -> dict:
    """The ``safety`` section of ``report --json`` (all phases, no filter)."""
    def rows(events):
        counts = subject_counts(events, ["term", "soc", "level"])
        return [{"term": r.term, "soc": r.soc, "level": int(r.level), "n_subjects": int(r.n_subjects),
                 "worst_grade": int(r.worst_grade)} for r in counts.itertuples()]

    return {
        "n_dosed": [{"level": level, "label": data.study.label(level), "n_dosed": n}
                    for level, n in data.n_dosed().items()],
        "teae": rows(data.teae),
        "dlt": rows(data.teae[data.teae["dlt"] == "Y"]),
        "n_baseline_events": len(data.baseline),
    }
