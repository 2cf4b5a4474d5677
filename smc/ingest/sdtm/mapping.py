"""The mapping file: what SDTM does not say (design, agent, DLT window, dose
ladder, which arm is which level, where the DLT flag is, the stages of a staged
regimen), as TOML.

Keys are checked strictly: a misspelt key is an error, not a silently ignored
setting, because a dropped ``dlt_qnam`` would import every DLT as "no".
"""
from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field

from smc import settings
from smc.ingest.load import ERROR, Problem
from smc.store import contract

STUDY_KEYS = ("study_id", "title", "design", "agent", "dlt_window_days", "target_dlt_rate",
              "planned_enrollment", "enrollment_target_date", "min_sd_days", "indication", "data_cut_date")
REQUIRED_STUDY_KEYS = ("design", "agent", "dlt_window_days")
LEVEL_KEYS = ("level", "label", "dose", "unit", "arms", "expansion_arms")
STAGE_KEYS = ("stage", "agent", "dlt_window_days", "start_level", "ceiling_stage", "epochs", "elements")
DEFAULT_NOT_RELATED = ("NONE", "NOT RELATED", "UNLIKELY RELATED", "UNLIKELY", "REMOTE", "N")
SECTIONS = {
    "study": STUDY_KEYS,
    "levels": LEVEL_KEYS,
    "stages": STAGE_KEYS,
    "subjects": ("exclude_arms",),
    "ae": ("dlt_qnam", "not_related"),
    "lab_categories": None,  # any test code or name
    "findings": ("domains",),
    "tumor": ("evaluator", "rs_categories"),
}
LAB_CATEGORIES = contract.CODED[("lab_results", "category")].words


@dataclass(frozen=True)
class Level:
    level: int
    label: str
    dose: float | None
    unit: str | None
    arms: tuple[str, ...]
    expansion_arms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """One [[stages]] table; its place in the file is its stage_order. ``epochs`` (upper-case, as matched) and
    ``elements`` (SE.ETCD) say which SDTM records are in the stage."""
    stage: str
    agent: str
    dlt_window_days: int
    start_level: int | None = None
    ceiling_stage: str | None = None
    epochs: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mapping:
    study: dict[str, str]  # studies-table column -> contract text
    levels: tuple[Level, ...]
    exclude_arms: tuple[str, ...] = ()
    dlt_qnam: str | None = None
    not_related: tuple[str, ...] = DEFAULT_NOT_RELATED
    lab_categories: dict[str, str] = field(default_factory=dict)
    findings_domains: tuple[str, ...] = ("LB",)
    evaluator: str = "INVESTIGATOR"
    rs_categories: tuple[str, ...] = ("RECIST 1.1",)
    stages: tuple[Stage, ...] = ()  # none: one stage, the study's own

    def arm_levels(self) -> dict[str, tuple[int, str]]:
        """ARMCD -> (dose level, phase)."""
        out = {}
        for lv in self.levels:
            out.update({arm: (lv.level, "escalation") for arm in lv.arms})
            out.update({arm: (lv.level, "expansion") for arm in lv.expansion_arms})
        return out


def _problem(key: str, message: str, value=None) -> Problem:
    return Problem(ERROR, "mapping file", None, key, None if value is None else str(value), message, record="")


def _text(value) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _strings(value, key: str, problems: list[Problem]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(_problem(key, 'is not a list of text values (e.g. ["A", "B"])', value))
        return ()
    return tuple(value)


def decode_mapping(data: bytes, name: str) -> tuple[str | None, list[Problem]]:
    """A mapping file's bytes as text, or None and the problem: too long (``mapping_max_chars``) or not UTF-8."""
    if len(data) > 4 * settings.MAPPING_MAX_CHARS:  # UTF-8 takes at most 4 bytes a character
        return None, [too_long(name)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [_problem(None, f"{name} is not UTF-8 text (byte {exc.start})")]
    return (None, [too_long(name)]) if len(text) > settings.MAPPING_MAX_CHARS else (text, [])


def too_long(name: str | None = None) -> Problem:
    what = f"{name} is" if name else "is"
    return _problem(None, f"{what} longer than {settings.MAPPING_MAX_CHARS:,} characters (setting "
                          "mapping_max_chars); a mapping is a page of keys")


def _depth(value) -> int:
    """How deep tables and arrays nest (the file itself is 1), walked without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > settings.MAPPING_MAX_LEVELS:
            break
        todo.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep() -> Problem:
    return _problem(None, f"nests tables or arrays more than {settings.MAPPING_MAX_LEVELS} levels deep (setting "
                          "mapping_max_levels); a mapping needs four at most ([[levels]] tables with their arms lists)")


def parse_mapping(text: str) -> tuple[Mapping | None, list[Problem]]:
    """Read mapping TOML; return the mapping, or None and every problem found."""
    if len(text) > settings.MAPPING_MAX_CHARS:
        return None, [too_long()]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_problem(None, f"is not valid TOML: {exc}")]
    except RecursionError:  # tomllib parses nested arrays and inline tables by recursion
        return None, [_too_deep()]
    except MemoryError:
        return None, [_problem(None, "is too large to read in the memory there is")]
    if _depth(raw) > settings.MAPPING_MAX_LEVELS:  # dotted keys nest without recursion in the parser
        return None, [_too_deep()]
    problems: list[Problem] = []
    for section, value in raw.items():
        if section not in SECTIONS:
            problems.append(_problem(f"[{section}]", f"is not a known section ({', '.join(SECTIONS)})"))
            continue
        known = SECTIONS[section]
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            if not isinstance(entry, dict):
                problems.append(_problem(f"[{section}]", "is not a table of keys"))
                continue
            for key in entry:
                if known is not None and key not in known:
                    problems.append(_problem(f"{section}.{key}", f"is not a known key of [{section}] "
                                                                 f"({', '.join(known)})"))

    study_raw = raw.get("study", {}) if isinstance(raw.get("study"), dict) else {}
    for key in REQUIRED_STUDY_KEYS:
        if key not in study_raw:
            problems.append(_problem(f"study.{key}", "is missing (SDTM does not say it; the mapping must)"))
    study = {k: _text(v) for k, v in study_raw.items() if k in STUDY_KEYS}

    levels = _levels(raw.get("levels"), problems)
    subjects = raw.get("subjects", {}) if isinstance(raw.get("subjects"), dict) else {}
    exclude = _strings(subjects.get("exclude_arms", []), "subjects.exclude_arms", problems)
    ae = raw.get("ae", {}) if isinstance(raw.get("ae"), dict) else {}
    not_related = _strings(ae.get("not_related", list(DEFAULT_NOT_RELATED)), "ae.not_related", problems)
    dlt_qnam = ae.get("dlt_qnam")
    if dlt_qnam is not None and not (isinstance(dlt_qnam, str) and dlt_qnam.strip()):
        problems.append(_problem("ae.dlt_qnam", "is not a SUPPAE QNAM (text)", dlt_qnam))
        dlt_qnam = None

    categories = raw.get("lab_categories", {}) if isinstance(raw.get("lab_categories"), dict) else {}
    for test, category in categories.items():
        if category not in LAB_CATEGORIES:
            problems.append(_problem(f"lab_categories.{test}",
                                     f"is not a lab category ({', '.join(LAB_CATEGORIES)})", category))
    findings = raw.get("findings", {}) if isinstance(raw.get("findings"), dict) else {}
    domains = _strings(findings.get("domains", ["LB"]), "findings.domains", problems)
    tumor = raw.get("tumor", {}) if isinstance(raw.get("tumor"), dict) else {}
    evaluator = tumor.get("evaluator", "INVESTIGATOR")
    if not isinstance(evaluator, str):
        problems.append(_problem("tumor.evaluator", "is not text (an RSEVAL/TREVAL value)", evaluator))
    rs_categories = _strings(tumor.get("rs_categories", ["RECIST 1.1"]), "tumor.rs_categories", problems)

    arms_seen: dict[str, int] = {}
    for lv in levels:
        for arm in lv.arms + lv.expansion_arms:
            if arm in arms_seen:
                problems.append(_problem("levels.arms", f"is given twice (levels {arms_seen[arm]} and {lv.level}); "
                                         "an arm means one level and one phase", arm))
            arms_seen[arm] = lv.level
    for arm in exclude:
        if arm in arms_seen:
            problems.append(_problem("subjects.exclude_arms", f"is also an arm of level {arms_seen[arm]}", arm))
    stages = _stages(raw.get("stages"), levels, problems)
    if problems:
        return None, problems
    return Mapping(
        study=study, levels=levels, exclude_arms=exclude, dlt_qnam=dlt_qnam,
        not_related=tuple(v.upper() for v in not_related),
        lab_categories={str(k): v for k, v in categories.items()},
        findings_domains=tuple(d.upper() for d in domains), evaluator=evaluator.upper(),
        rs_categories=tuple(c.upper() for c in rs_categories), stages=stages,
    ), []


def _levels(raw_levels, problems: list[Problem]) -> tuple[Level, ...]:
    if not isinstance(raw_levels, list) or not raw_levels:
        problems.append(_problem("[[levels]]", "is missing: give one [[levels]] table per dose level"))
        return ()
    levels = []
    for i, entry in enumerate(raw_levels, start=1):
        if not isinstance(entry, dict):
            continue
        where = f"levels[{i}]"
        level = entry.get("level")
        if not isinstance(level, int) or isinstance(level, bool):
            problems.append(_problem(f"{where}.level", "is missing or not a whole number", level))
            continue
        label = entry.get("label")
        if not isinstance(label, str) or not label.strip():
            problems.append(_problem(f"{where}.label", "is missing (a label such as \"54 mg\")", label))
        dose = entry.get("dose")
        if dose is not None and (isinstance(dose, bool) or not isinstance(dose, (int, float))):
            problems.append(_problem(f"{where}.dose", "is not a number", dose))
            dose = None
        before = len(problems)
        arms = _strings(entry.get("arms", []), f"{where}.arms", problems)
        expansion = _strings(entry.get("expansion_arms", []), f"{where}.expansion_arms", problems)
        if not arms and not expansion and len(problems) == before:  # not again when a list was of the wrong type
            problems.append(_problem(f"{where}.arms", "is empty: name the ACTARMCD/ARMCD values of this level"))
        levels.append(Level(level, str(label or ""), dose, entry.get("unit"), arms, expansion))
    seen = [lv.level for lv in levels]
    for level in {x for x in seen if seen.count(x) > 1}:
        problems.append(_problem("levels.level", "is given twice", level))
    return tuple(sorted(levels, key=lambda lv: lv.level))


def _stages(raw_stages, levels: tuple[Level, ...], problems: list[Problem]) -> tuple[Stage, ...]:
    """[[stages]] in file order. A later stage must say which EPOCH or ETCD values are its records, or no
    subject could be placed in it; the first holds every subject, so it needs neither."""
    if raw_stages is None:
        return ()
    if not isinstance(raw_stages, list):
        problems.append(_problem("[stages]", "is not an array of tables: write one [[stages]] table per stage"))
        return ()
    stages, ladder = [], {lv.level for lv in levels}
    for i, entry in enumerate(raw_stages, start=1):
        if not isinstance(entry, dict):
            continue
        where = f"stages[{i}]"
        name, agent, window = entry.get("stage"), entry.get("agent"), entry.get("dlt_window_days")
        for key, value, what in (("stage", name, "a name such as \"combination\""),
                                 ("agent", agent, "the EXTRT value whose first dose in the stage starts its DLT window")):
            if not isinstance(value, str) or not value.strip():
                problems.append(_problem(f"{where}.{key}", f"is missing or not text ({what})", value))
        if not isinstance(window, int) or isinstance(window, bool):
            problems.append(_problem(f"{where}.dlt_window_days", "is missing or not a whole number of days", window))
        start_level = entry.get("start_level")
        if start_level is not None and (isinstance(start_level, bool) or not isinstance(start_level, int)
                                        or start_level not in ladder):
            problems.append(_problem(f"{where}.start_level", "is not a level of [[levels]] "
                                     f"({', '.join(map(str, sorted(ladder)))})", start_level))
            start_level = None
        ceiling = entry.get("ceiling_stage")
        if ceiling is not None and not isinstance(ceiling, str):
            problems.append(_problem(f"{where}.ceiling_stage", "is not text (the name of an earlier stage)", ceiling))
            ceiling = None
        before = len(problems)
        epochs = _strings(entry.get("epochs", []), f"{where}.epochs", problems)
        elements = _strings(entry.get("elements", []), f"{where}.elements", problems)
        if i > 1 and not epochs and not elements and len(problems) == before:  # not again for a list's type
            problems.append(_problem(f"{where}.epochs", "is missing, and so is elements: name the EPOCH values "
                                     "(SE, EX) or SE ETCD element codes of the stage's records"))
        stages.append(Stage(str(name or ""), str(agent or ""), window if isinstance(window, int) else 0,
                            start_level, ceiling, tuple(e.upper() for e in epochs), elements))
    names = [s.stage for s in stages]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(_problem("stages.stage", "is given twice", name))
    for i, s in enumerate(stages, start=1):
        if s.ceiling_stage is not None and s.ceiling_stage not in names:
            problems.append(_problem(f"stages[{i}].ceiling_stage",
                                     f"is not a stage of the mapping ({', '.join(names)})", s.ceiling_stage))
    # A record in two stages would place its subject twice.
    for what in ("epochs", "elements"):
        owner: dict[str, str] = {}
        for s in stages:
            for code in getattr(s, what):
                if code in owner and owner[code] != s.stage:
                    problems.append(_problem(f"stages.{what}", f"is given to two stages ({owner[code]} and "
                                             f"{s.stage}); a record is in one stage", code))
                owner.setdefault(code, s.stage)
    return tuple(stages)


TEMPLATE = '''\
# SDTM -> SMC Dashboard mapping. Keys are checked: a misspelt key is an error.
[study]                      # fields of the studies table; study_id defaults to STUDYID
design = "3+3"               # "3+3" or "ATD+3+3"
agent = "XANOMELINE"         # EXTRT value of the escalated agent
dlt_window_days = 28
planned_enrollment = 60
# title, indication, target_dlt_rate, min_sd_days, enrollment_target_date and
# data_cut_date are optional; TS (TITLE, INDIC, PLANSUB, DCUTDTC) fills them when present.

[[levels]]                   # one per dose level
level = 1
label = "54 mg"
dose = 54
unit = "mg"
arms = ["Xan_Lo"]            # ACTARMCD (else ARMCD) values that mean this level
# expansion_arms = ["Xan_Lo_EXP"]   # arms of this level's expansion cohort

[[levels]]
level = 2
label = "81 mg"
dose = 81
unit = "mg"
arms = ["Xan_Hi"]

[subjects]
exclude_arms = ["Pbo"]       # arms left out of the import (e.g. a placebo arm)

[ae]
dlt_qnam = "AEDLT"           # SUPPAE QNAM holding the DLT flag (Y/N); optional, but if named it must be there
not_related = ["NONE", "NOT RELATED", "UNLIKELY RELATED", "UNLIKELY", "REMOTE", "N"]  # any other AEREL: related

[lab_categories]             # LBTESTCD or LBTEST -> category
CA199 = "tumor_marker"
PSA = "tumor_marker"

[findings]
domains = ["LB"]             # findings domains read into lab_results

[tumor]
evaluator = "INVESTIGATOR"   # RSEVAL/TREVAL/TUEVAL whose assessments count
rs_categories = ["RECIST 1.1"]  # RSCAT values read as RECIST overall responses
'''
