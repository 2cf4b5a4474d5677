"""CDISC SDTM (XPT or CSV) -> contract tables -> one new data cut.

The mapping rules live in one module per group of domains (subjects: DM, DS,
SV, TS; events: EX, AE, SUPPAE; tumor: RS, TR, TU; findings: LB and friends;
stages: the mapping's [[stages]] with SE and EX).
Their output passes the same validator as contract CSVs; every problem, from
either step, names the SDTM domain, the record (USUBJID and sequence) and the
variable. Nothing is written unless there is no error.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from smc import settings
from smc.ingest import load
from smc.ingest.load import ERROR, Problem
from smc.ingest.sdtm import events, findings, stages, subjects, tumor
from smc.ingest.sdtm.common import ORIGIN, SdtmImport, label_records
from smc.ingest.sdtm.mapping import Mapping, decode_mapping, parse_mapping, too_long
from smc.ingest.sdtm.read import SUFFIXES, WHOLE_SET, Dataset, read_sdtm_dir
from smc.ingest.target import Target

REQUIRED_DOMAINS = ("DM", "EX", "AE")
# Variables a present domain must have; a tuple inside means "one of these".
REQUIRED_VARIABLES: dict[str, tuple] = {
    "DM": ("STUDYID", "USUBJID", "ARMCD"),
    "EX": ("USUBJID", "EXTRT", "EXSTDTC"),
    "AE": ("USUBJID", "AESEQ", "AESTDTC", ("AEDECOD", "AETERM"), ("AETOXGR", "AESEV")),
    "SUPPAE": ("USUBJID", "IDVAR", "IDVARVAL", "QNAM", "QVAL"),
    "DS": ("USUBJID", "DSDECOD", "DSSTDTC"),
    "SV": ("USUBJID", "SVSTDTC"),
    "TS": ("TSPARMCD", "TSVAL"),
    "RS": ("USUBJID", "RSTESTCD", "RSDTC", ("RSSTRESC", "RSORRES")),
    "TR": ("USUBJID", "TRTESTCD", "TRSTRESN", "TRDTC"),
    "TU": ("USUBJID",),
    "SE": ("USUBJID", "SESTDTC"),  # read only for a mapping with [[stages]]
}


def _findings_variables(domain: str) -> tuple:
    return ("USUBJID", f"{domain}DTC", (f"{domain}TESTCD", f"{domain}TEST"), (f"{domain}STRESN", f"{domain}STRESC"))


# Contract columns named as the SDTM variable they came from, for messages after validation.
SOURCE_VARIABLES = {
    ("subjects", "screening_date"): "RFICDTC", ("subjects", "enrollment_date"): "RFSTDTC",
    ("subjects", "death_date"): "DTHDTC", ("subjects", "off_study_date"): "DSSTDTC",
    ("subjects", "off_treatment_date"): "RFXENDTC", ("subjects", "last_contact_date"): "SVSTDTC",
    ("subjects", "age"): "AGE", ("subjects", "site_id"): "SITEID", ("subjects", "subject_id"): "USUBJID",
    ("administrations", "admin_date"): "EXSTDTC", ("administrations", "end_date"): "EXENDTC",
    ("administrations", "dose"): "EXDOSE", ("administrations", "subject_id"): "USUBJID",
    ("adverse_events", "onset_date"): "AESTDTC", ("adverse_events", "end_date"): "AEENDTC",
    ("adverse_events", "grade"): "AETOXGR", ("adverse_events", "ae_seq"): "AESEQ",
    ("tumor_assessments", "assessment_date"): "RSDTC", ("tumor_assessments", "target_sum_mm"): "TRSTRESN",
    ("lab_results", "collected_at"): "LBDTC", ("lab_results", "value"): "LBSTRESN",
    # "--": the domain of the row's record, SE or EX (SDTM's own placeholder for a domain prefix)
    ("subject_stages", "start_date"): "--STDTC", ("subject_stages", "subject_id"): "USUBJID",
}


def _check_structure(datasets: dict[str, Dataset], mapping: Mapping,
                     unread: frozenset[str] = frozenset()) -> tuple[list[Problem], set[str]]:
    """Missing domains and variables, and the domains that cannot be read for want of a variable. ``unread``:
    domains whose file is there but was refused (its problem says why), not reported missing."""
    problems, broken = [], set()
    for domain in REQUIRED_DOMAINS:
        if domain not in datasets and domain not in unread:
            problems.append(Problem(ERROR, domain, None, None, None,
                                    "is missing (a required domain: DM, EX and AE)", record=""))
    for domain, dataset in datasets.items():
        if domain == "SE" and not mapping.stages:
            continue  # without [[stages]] SE is not read, so it needs nothing
        wanted = REQUIRED_VARIABLES.get(domain)
        if wanted is None and domain in mapping.findings_domains:
            wanted = _findings_variables(domain)
        for variable in wanted or ():
            options = variable if isinstance(variable, tuple) else (variable,)
            if not any(v in dataset.frame.columns for v in options):
                broken.add(domain)
                problems.append(Problem(ERROR, domain, None, " or ".join(options), None,
                                        f"is a required variable and is missing from {', '.join(dataset.files)}",
                                        record=""))
    for domain in mapping.findings_domains:
        if domain != "LB" and domain not in datasets:
            problems.append(Problem(load.WARNING, domain, None, None, None,
                                    "is named in [findings] domains but no file holds it", record=""))
    return problems, broken


def convert(datasets: dict[str, Dataset], mapping: Mapping,
            unread: frozenset[str] = frozenset()) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Contract tables (as text, each row with its SDTM origin) and every problem found.
    A domain that lacks a required variable is skipped, so the others' problems are still found;
    without a usable DM nothing can be checked."""
    problems, broken = _check_structure(datasets, mapping, unread)
    if "DM" not in datasets or "DM" in broken:
        return {}, problems
    usable = {name: Dataset(name, label_records(name, ds.frame), ds.files)
              for name, ds in datasets.items() if name not in broken}
    ctx = SdtmImport(mapping, usable, problems)
    tables = subjects.convert(ctx)
    study_id = tables["studies"]["study_id"].iloc[0]
    if "EX" in usable:
        tables["administrations"] = events.administrations(ctx, study_id)
    if "AE" in usable:
        tables["adverse_events"] = events.adverse_events(ctx, study_id)
    if mapping.stages:
        tables["stages"] = stages.table(ctx, study_id)
        tables["subject_stages"] = stages.subject_stages(ctx, study_id, tables["subjects"],
                                                         tables.get("administrations"))
    tables["tumor_assessments"] = tumor.tumor_assessments(ctx, study_id)
    labs = [findings.lab_results(ctx, study_id, d) for d in mapping.findings_domains if d in usable]
    if labs:
        tables["lab_results"] = pd.concat(labs, ignore_index=True)
    tables["subjects"]["last_contact_date"] = subjects.last_contact(ctx, tables["subjects"], tables)
    _default_data_cut(ctx, tables)
    return tables, ctx.problems


def _default_data_cut(ctx: SdtmImport, tables: dict[str, pd.DataFrame]) -> None:
    """Without a DCUTDTC in TS or data_cut_date in the mapping, the cut is the latest date in the data."""
    studies = tables["studies"]
    if studies.get("data_cut_date", pd.Series([""])).iloc[0]:
        return
    sources = (("subjects", "last_contact_date"), ("administrations", "admin_date"), ("adverse_events", "onset_date"))
    dated = [tables[t][c].fillna("").astype(str).str[:10] for t, c in sources if t in tables]
    latest = max((d for column in dated for d in column if d), default="")
    studies["data_cut_date"] = latest
    ctx.warn("mapping file", "", "study.data_cut_date", None,
             f"is not given (nor TS DCUTDTC); the latest date in the data, {latest or '—'}, is the data cut")


def _origins(tables: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, list]]:
    raw, where = {}, {}
    for table, frame in tables.items():
        frame = frame.reset_index(drop=True)
        if ORIGIN in frame.columns:
            where[table] = frame[ORIGIN].tolist()
            frame = frame.drop(columns=ORIGIN)
        raw[table] = frame.fillna("")
    return raw, where


_TS_PARAMETERS = {field: parm for parm, field in subjects.TS_FIELDS.items()}


def _in_sdtm_terms(problem: Problem, where: dict[str, list], mapping: Mapping) -> Problem:
    """A validator problem about a contract row, restated for the SDTM record (or mapping key) it came from."""
    if problem.table == "dose_levels" and problem.row is not None:
        return Problem(problem.severity, "mapping file", None, f"levels.{problem.column}", problem.value,
                       problem.message, record="")
    if problem.table == "stages" and problem.row is not None:  # row n+1 is the file's n-th [[stages]]
        return Problem(problem.severity, "mapping file", None, f"stages[{problem.row - 1}].{problem.column}",
                       problem.value, problem.message, record="")
    if problem.table == "studies" and problem.row is not None:
        if problem.column in mapping.study:
            domain, variable = "mapping file", f"study.{problem.column}"
        elif problem.column in _TS_PARAMETERS:
            domain, variable = "TS", _TS_PARAMETERS[problem.column]
        else:
            domain, variable = "DM", "STUDYID" if problem.column == "study_id" else problem.column
        return Problem(problem.severity, domain, None, variable, problem.value, problem.message, record="")
    if problem.table not in where or problem.row is None:
        return problem
    domain, record = where[problem.table][problem.row - 2]
    variable = SOURCE_VARIABLES.get((problem.table, problem.column), problem.column)
    variable = variable.replace("--", domain) if variable else variable
    message = problem.message.replace("subjects.csv", "DM")  # the validator speaks of contract files
    return Problem(problem.severity, domain, None, variable, problem.value, message, record=record)


def import_datasets(datasets: dict[str, Dataset], mapping_text: str | None, db_path: str | Path, source: str,
                    read_problems: list[Problem] | None = None,
                    target: Target | None = None) -> tuple[list[Problem], dict[str, int]]:
    """Map, validate and write; return the warnings and each table's row count, or raise ImportFailed.
    ``target``: the target's lock when the caller holds it (else writing takes it)."""
    problems = list(read_problems or [])
    if any(p.severity == ERROR and p.table == WHOLE_SET for p in problems):
        raise load.ImportFailed(problems)  # the set as a whole was refused: nothing was read
    if mapping_text is None:
        problems.append(Problem(ERROR, "mapping file", None, None, None,
                                "is missing: SDTM does not say the design, agent, DLT window or dose "
                                "ladder; give them in a mapping file (see 'The mapping file' in docs/cli.md)", record=""))
        raise load.ImportFailed(problems)
    mapping, mapping_problems = parse_mapping(mapping_text)
    problems += mapping_problems
    if mapping is None:
        raise load.ImportFailed(problems)
    # A refused file's domain, as read_sdtm_dir would name it from the file (dm.xpt, lb_central.csv)
    unread = frozenset(Path(p.table).stem.split("_")[0].upper() for p in problems
                       if p.severity == ERROR and p.table and Path(p.table).suffix.lower() in SUFFIXES)
    tables, found = convert(datasets, mapping, unread)
    problems += found
    if not tables:
        raise load.ImportFailed(problems)
    raw, where = _origins(tables)
    result = load.validate(raw, clean=True)
    # The contract's checks, restated for SDTM records; a record already in error is not reported twice.
    in_error = {(p.table, p.record) for p in problems if p.severity == ERROR}
    # Two contract rows from one record (an EX dose that also starts a stage) may restate the same problem: once.
    restated = list(dict.fromkeys(_in_sdtm_terms(p, where, mapping) for p in result.problems))
    problems += [p for p in restated if (p.table, p.record) not in in_error]
    if any(p.severity == ERROR for p in problems):
        raise load.ImportFailed(problems)
    warnings = [p for p in problems if p.severity != ERROR]
    load.write_database(result.tables, db_path, source, len(warnings), target)
    return warnings, {table: len(frame) for table, frame in result.tables.items()}


def read_mapping_file(path: Path) -> tuple[str | None, list[Problem]]:
    """A mapping file's text, its size checked (``mapping_max_chars``) before it is read."""
    try:
        if path.stat().st_size > 4 * settings.MAPPING_MAX_CHARS:  # UTF-8 takes at most 4 bytes a character
            return None, [too_long(str(path))]
        return decode_mapping(path.read_bytes(), str(path))
    except OSError as exc:
        return None, [Problem(ERROR, "mapping file", None, None, None, f"{path} could not be read: "
                              f"{exc.strerror or exc}", record="")]


def import_sdtm(directory: str | Path, db_path: str | Path,
                mapping_path: str | Path | None = None) -> tuple[list[Problem], dict[str, int]]:
    """``python -m smc import --sdtm DIR``: the mapping defaults to ``DIR/mapping.toml``. The target is locked
    before anything is read, so a second import of it is refused at once."""
    directory = Path(directory)
    mapping_path = Path(mapping_path) if mapping_path else directory / "mapping.toml"
    with Target(db_path) as target:
        datasets, problems = read_sdtm_dir(directory)
        mapping_text = None
        if mapping_path.is_file():
            mapping_text, trouble = read_mapping_file(mapping_path)
            if trouble:
                raise load.ImportFailed(problems + trouble)
        elif mapping_path != directory / "mapping.toml":
            problems.append(Problem(ERROR, "mapping file", None, None, None, f"{mapping_path} does not exist",
                                    record=""))
            raise load.ImportFailed(problems)
        return import_datasets(datasets, mapping_text, db_path, f"sdtm:{directory.resolve()}", problems, target)
