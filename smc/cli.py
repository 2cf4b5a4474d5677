"""Command line: ``python -m smc import | build-demo | report | decisions | bench | bench-import | serve-demo |
settings``."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

from smc import settings
from smc.ingest import load
from smc.settings import DEMO_DB

EXIT_OK, EXIT_USAGE, EXIT_INVALID, EXIT_BROKEN = 0, 1, 2, 3


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{text}" is not a date (YYYY-MM-DD)') from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'"{text}" is not a whole number of at least 1')
    return int(text)


def _print_problems(problems: list[load.Problem]) -> None:
    for p in problems:
        print(f"{p.severity}: {p}", file=sys.stderr)


def cmd_import(args) -> int:
    source = args.csv or args.sdtm

    def write(db_path):
        if args.sdtm:
            from smc.ingest.sdtm import import_sdtm

            return import_sdtm(args.sdtm, db_path, args.mapping)
        return load.import_csv_dir(args.csv, db_path), None

    try:
        if args.db:
            warnings, counts = write(args.db)
            into = args.db
        else:
            from smc.analysis.changes import keep_comparisons
            from smc.ingest.register import add_cut

            cut, (warnings, counts) = add_cut(args.cuts, write, args.label)
            into = f"{cut.path} (a new cut of {args.cuts}: {cut.title}, sha256 {cut.sha256})"
            keep_comparisons(args.cuts, cut)
    except load.ImportFailed as failed:
        _print_problems(failed.problems)
        n = sum(p.severity == load.ERROR for p in failed.problems)
        kept = f"{args.db} was not changed" if args.db else f"no cut was added to {args.cuts}"
        print(f"import refused: {n} error(s); {kept}", file=sys.stderr)
        return EXIT_INVALID
    _print_problems(warnings)
    if counts:
        print(", ".join(f"{table} {n}" for table, n in counts.items()), file=sys.stderr)
    print(f"imported {source} into {into} ({len(warnings)} warning(s))", file=sys.stderr)
    return EXIT_OK


def cmd_build_demo(args) -> int:
    from smc.demo.build import build_demo, build_demo_cuts
    from smc.store.cuts import list_cuts

    scale = f", scale {args.scale}" if args.scale > 1 else ""
    if not args.db and list_cuts(args.cuts):
        print(f"error: {args.cuts} holds data cuts already; the demo's cuts go into an empty registry "
              "(a registry is never rewritten)", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.db:
            warnings = build_demo(args.db, args.seed, args.scale)
            print(f"demo data (seed {args.seed}{scale}) written to {args.db}", file=sys.stderr)
        else:
            added, warnings = build_demo_cuts(args.cuts, args.seed, args.scale)
            for cut in added:
                print(f"{cut.title}: {cut.path}", file=sys.stderr)
            print(f"demo data (seed {args.seed}{scale}): {len(added)} cuts added to {args.cuts}", file=sys.stderr)
    except load.ImportFailed as failed:  # a bug in the simulation, not user input
        _print_problems(failed.problems)
        return EXIT_INVALID
    _print_problems(warnings)
    return EXIT_OK


def cmd_cuts_list(args) -> int:
    from smc.store.cuts import list_cuts

    found = list_cuts(args.cuts)
    if args.json:
        json.dump([c.as_json() for c in found], sys.stdout, indent=2, ensure_ascii=False)
        print()
        return EXIT_OK
    for c in found:
        print(f"{c.cut_date}  {c.label}  {c.source}  sha256 {c.sha256}  loaded {c.loaded_at_utc}  {c.path}")
    print(f"{len(found)} data cut(s) in {args.cuts}", file=sys.stderr)
    return EXIT_OK


def cmd_diff(args) -> int:
    """What changed in one study from one cut to another: added, removed and changed records, field by field."""
    import duckdb

    from smc.analysis.changes import load_changes, record_changes, summarise
    from smc.store.db import Database

    for path in (args.db_from, args.db_to):
        if not Path(path).is_file():
            print(f"error: no database at {path}", file=sys.stderr)
            return EXIT_USAGE
    db_from, db_to = Database(args.db_from), Database(args.db_to)
    try:
        if not any(r["study_id"] == args.study for r in db_to.rows("studies") + db_from.rows("studies")):
            print(f"error: no study {args.study} in {args.db_from} or {args.db_to}", file=sys.stderr)
            return EXIT_USAGE
        changes = load_changes(db_from, db_to, args.study)
    except duckdb.Error as exc:
        print(f"error: {args.db_from} and {args.db_to} must both be data cuts (DuckDB files of the contract): "
              f"{str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump(changes.as_json(), sys.stdout, indent=2, default=str, ensure_ascii=False)
        print()
        return EXIT_OK
    for table, tc in changes.tables.items():
        print(f"{table}: {len(tc.added)} added, {len(tc.removed)} removed, {len(tc.changed)} changed"
              + (f"; {len(tc.duplicate_keys)} duplicate key(s)" if tc.duplicate_keys else ""))
    counts = summarise(record_changes(changes))
    print("summary: " + (", ".join(c.text for c in counts) if counts else "no change"))
    return EXIT_OK


def _last_review(args, db):
    """With --cuts: the compared cut of the study's last review (else the previous cut), opened; else None."""
    from smc.decision_log.reviews import comparison_cut
    from smc.store.cuts import Registry, is_registered
    from smc.store.db import Database

    if not is_registered(db.path):
        return None
    registry = Registry.of_folder(Path(db.path).parent)
    shown = registry.find(Path(db.path).name)
    since = comparison_cut(registry, shown, args.study) if shown else None
    return Database(since.path) if since else None


def cmd_report(args) -> int:
    from smc.outputs.report import build_report
    from smc.store.db import Database

    if not Path(args.db).is_file():
        print(f"error: no database at {args.db}", file=sys.stderr)
        return EXIT_USAGE
    db = Database(args.db)
    try:
        report = build_report(db, args.study, args.as_of)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.html:
        from smc.outputs.packet import build_packet

        text = build_packet(db, args.study, args.as_of, since=_last_review(args, db))
        try:
            Path(args.html).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write the meeting packet to {args.html}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"meeting packet written to {args.html} ({len(text.encode()) / 1e6:.1f} MB)", file=sys.stderr)
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str, ensure_ascii=False)
        print()
    else:
        rec = report["escalation"]["recommendation"]
        ov = report["overview"]
        print(f"{report['study_id']} as of {report['as_of']}: {ov['enrolled']} enrolled of "
              f"{ov['planned'] or '?'} planned, {ov['screened']} screened")
        print(f"Recommendation: {rec['action']} — {rec['reason']}")
        safety = report["safety"]
        n_dosed = sum(lv["n_dosed"] for lv in safety["n_dosed"])
        dlt_subjects = sum(row["n_subjects"] for row in safety["dlt"])
        print(f"Safety: {n_dosed} dosed; {len(safety['dlt'])} DLT term-level cells, {dlt_subjects} subject-terms "
              f"with a DLT; {safety['n_baseline_events']} baseline (pre-dose) events")
    return EXIT_OK


def _open_study(db_path: str, study_id: str):
    """The database and study, or a message saying which is missing."""
    from smc.store.db import Database
    from smc.store.study import load_study

    if not Path(db_path).is_file():
        raise LookupError(f"no database at {db_path}")
    db = Database(db_path)
    try:
        return db, load_study(db, study_id)
    except KeyError as exc:
        raise LookupError(exc.args[0]) from None


def _command_line_signer(name: str, role: str):
    """Who signs a record made here: the operating-system account running the command, on this host (the issuer
    says so), in the SMC role given. Whoever runs it can already write the log file; the record says how it came."""
    import getpass
    import socket

    from smc.access.identity import Identity
    return Identity(issuer=f"urn:smc:command-line:{socket.gethostname()}", subject=getpass.getuser(),
                    name=name or getpass.getuser(), email="", role=role, sites=frozenset(),
                    auth_time=dt.datetime.now(dt.UTC))


def cmd_decisions_add(args) -> int:
    from smc.analysis.dose_decision import load_dose_decision
    from smc.decision_log import ledger
    from smc.store.study import default_as_of

    try:
        db, study = _open_study(args.db, args.study)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log = ledger.log_path(args.db)
    as_of = args.as_of or default_as_of(study)
    if args.supersedes and not args.as_of:  # a correction restates a decision on the same data
        as_of = next((dt.date.fromisoformat(r.data_cut_date) for r in ledger.read_log(log, study.study_id)
                      if r.id == args.supersedes), as_of)
    dose = load_dose_decision(db, study, as_of)
    draft = ledger.Draft(
        study_id=study.study_id, meeting_date=args.meeting_date or dt.datetime.now(dt.UTC).date(),
        data_cut_date=as_of, level=args.level, decision=args.decision, rationale=args.rationale,
        attendees=args.attendees, signer=_command_line_signer(args.by, args.role),
        follows_recommendation=False if args.deviation else None, supersedes=args.supersedes)
    try:
        record = ledger.append(log, draft, dose, ledger.data_source(db))
    except ledger.Refused as refused:
        for error in refused.errors:
            print(f"error: {error}", file=sys.stderr)
        print("decision not recorded", file=sys.stderr)
        return EXIT_INVALID
    except (ledger.LogUnreadable, sqlite3.Error) as exc:
        print(f"error: {exc}; decision not recorded", file=sys.stderr)
        return EXIT_USAGE
    kind = "follows the protocol recommendation" if record.follows_recommendation else "a deviation"
    print(f"recorded {study.study_id} record #{record.id}: {record.decision} at level {record.level} ({kind}; "
          f"the rule said {record.recommended_action}) in {log}")
    return EXIT_OK


def cmd_decisions_list(args) -> int:
    from smc.decision_log import ledger

    try:
        _, study = _open_study(args.db, args.study)
        records = ledger.read_log(ledger.log_path(args.db), study.study_id)
    except (LookupError, ledger.LogUnreadable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump([asdict(r) for r in records], sys.stdout, indent=2, ensure_ascii=False)
        print()
        return EXIT_OK
    corrected = ledger.superseded_by(records)
    for r in records:
        note = f"; superseded by #{corrected[r.id]}" if r.id in corrected else ""
        note += f"; supersedes #{r.supersedes}" if r.supersedes else ""
        print(f"#{r.id} {r.meeting_date} (data cut {r.data_cut_date}) level {r.level}: {r.decision} "
              f"[{'follows' if r.follows_recommendation else 'deviates from'} the rule's {r.recommended_action}] "
              f"{_signed_by(r)} at {r.recorded_at_utc}{note}" + (f"\n    {r.rationale}" if r.rationale else ""))
    print(f"{len(records)} record(s) for {study.study_id}", file=sys.stderr)
    return EXIT_OK


def _signed_by(r) -> str:
    if not r.signed:
        return f"by {r.recorded_by} (typed, not signed)"
    kind = f"approves #{r.approves}; " if r.approves else ""
    return f"{kind}{r.signature_meaning} by {r.recorded_by} ({r.signer_subject} at {r.signer_issuer})"


def cmd_decisions_verify(args) -> int:
    return _print_chain_heads(args.db, None)


def cmd_decisions_head(args) -> int:
    """The chain heads to quote in the minutes: only from an intact chain (a forged head is worth nothing)."""
    study_id = None
    if args.study:
        try:
            study_id = _open_study(args.db, args.study)[1].study_id
        except LookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return _print_chain_heads(args.db, study_id)


def _print_chain_heads(db_path: str, study_id: str | None) -> int:
    """Check the chains (every study's, or one study's and the file's); print each study's count and head."""
    from smc import settings
    from smc.decision_log import ledger

    path = ledger.log_path(db_path)
    if not path.is_file():
        print(f"no decision log at {path}: nothing recorded yet", file=sys.stderr)
        return EXIT_OK
    try:
        records, broken = ledger.study_log(path, study_id) if study_id else ledger.check(path)
    except ledger.LogUnreadable as exc:  # also a missing or wrong key
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    if broken:
        for problem in broken:
            print(f"broken: {problem}", file=sys.stderr)
        print(f"{path}: the chain is broken in {len(broken)} place(s)", file=sys.stderr)
        return EXIT_BROKEN
    for study, (n, head) in ledger.chain_heads(records).items():
        print(f"{study}: {n} record(s), chain head {head}")
    if study_id and not records:
        print(f"{study_id}: 0 record(s), no chain head yet")
    keyed = sum(r.hash_kind in (ledger.KEYED, ledger.SIGNED) for r in records)
    keying = (f"{keyed} keyed with {settings.decision_log_key_file(path)}" if keyed else "none keyed yet") + (
        f", {len(records) - keyed} from before keying (SHA-256 only)" if keyed < len(records) else "")
    print(f"{path}: intact ({len(records)} record(s)); {keying}", file=sys.stderr)
    return EXIT_OK


def cmd_bench_import(args) -> int:
    """Time an SDTM import of a synthetic set (the target: 10,000 subjects in under a minute)."""
    import tempfile
    import time

    from smc.ingest.sdtm import import_sdtm, synthetic

    with tempfile.TemporaryDirectory(prefix="smc-bench-") as folder:
        started = time.perf_counter()
        domains = synthetic.write(Path(folder) / "sdtm", args.subjects, fmt=args.format)
        written = time.perf_counter() - started
        started = time.perf_counter()
        warnings, counts = import_sdtm(Path(folder) / "sdtm", Path(folder) / "bench.duckdb")
        imported = time.perf_counter() - started
    records = sum(len(frame) for frame in domains.values())
    print(f"SDTM import of {args.subjects:,} subjects ({records:,} records as {args.format}): "
          f"{imported:.1f} s ({written:.1f} s to write the files)")
    print(", ".join(f"{table} {n:,}" for table, n in counts.items()) + f"; {len(warnings)} warning(s)")
    return EXIT_OK


def cmd_bench_changes(args) -> int:
    """Time comparing the registry's latest cut with its compared one, the Changes page and the banner."""
    from smc.tools.changes_bench import run_changes_bench

    try:
        result = run_changes_bench(args.cuts or settings.cuts_dir(), args.runs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(result.markdown())
    return EXIT_INVALID if result.errors else EXIT_OK


def cmd_bench_console(args) -> int:
    """Peak server memory and stop time of hostile SQL console queries (docs/performance.md)."""
    from smc.tools.console_bench import run_console_bench

    if not Path(args.db).is_file():
        print(f"error: no database at {args.db}", file=sys.stderr)
        return EXIT_USAGE
    print(run_console_bench(args.db))
    return EXIT_OK


def cmd_bench(args) -> int:
    """Time every page for the biggest and a typical study; exit 2 when a page showed an error."""
    from smc.tools.bench import PAGES, run_bench, write_json

    if not Path(args.db).is_file():
        print(f"error: no database at {args.db} (build one with python -m smc build-demo --scale 100 --db {args.db})",
              file=sys.stderr)
        return EXIT_USAGE
    pages = args.pages.split(",") if args.pages else None
    unknown = sorted(set(pages or []) - {p.name for p in PAGES})
    if unknown:
        print(f"error: no page named {', '.join(unknown)} (pages: {', '.join(p.name for p in PAGES)})",
              file=sys.stderr)
        return EXIT_USAGE

    def progress(m):
        print(f"  {m.page:<11} {m.study_id:<16} cold {m.cold_ms:8,.0f} ms  warm {m.warm_ms:7,.0f} ms  "
              f"SQL {m.sql_ms:7,.0f} ms", file=sys.stderr)

    result = run_bench(args.db, args.runs, args.browser, pages, progress)
    if args.out:
        Path(args.out).write_text(result.markdown())
    print(write_json(result) if args.json else result.markdown())
    return EXIT_INVALID if any(m.errors for m in result.measurements) else EXIT_OK


def cmd_serve_demo(args) -> int:
    """The app on the demo data with the demo sign-in provider beside it (``make run``)."""
    from smc import settings
    from smc.tools import demo_sign_in

    try:
        return demo_sign_in.serve_demo(args.address, args.port, settings.setting("demo_idp_port").value(),
                                       settings.setting("demo_secrets_file").value())
    except demo_sign_in.ProviderFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_settings(args) -> int:
    """Every setting with its current value, unit (in its name), environment variable and help."""
    from smc import settings

    values = settings.current()
    if args.json:
        json.dump({name: str(v) if isinstance(v, Path) else v for name, v in values.items()}, sys.stdout, indent=2)
        print()
        return EXIT_OK
    width = max(len(s.name) for s in settings.SETTINGS)
    for s in settings.SETTINGS:
        override = f"  [{s.env}]" if s.env else ""
        print(f"{s.name:<{width}}  {values[s.name]}{override}\n{'':<{width}}  {s.help}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smc", description="SMC Dashboard data tools")
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="validate contract CSVs or SDTM datasets and write them as a new data cut")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="directory of <table>.csv files")
    source.add_argument("--sdtm", help="directory of SDTM datasets (.xpt or .csv: DM, EX, AE, ...)")
    imp.add_argument("--mapping", help="SDTM mapping file (TOML; default DIR/mapping.toml)")
    _cuts_or_db(imp, "add the import as a new data cut of this registry", "write this one database file instead "
                "(created or replaced)")
    imp.add_argument("--label", help="the new cut's label (default: its source and cut date)")
    imp.set_defaults(func=cmd_import)
    demo = sub.add_parser("build-demo", help="simulate the three seed trials: three successive data cuts")
    _cuts_or_db(demo, "an empty registry to add the demo's three cuts to",
                f"write only the final cut, as one database file (e.g. {DEMO_DB})")
    demo.add_argument("--seed", type=int, default=2024)
    demo.add_argument("--scale", type=_positive, default=1,
                      help="add portfolio studies: about 0.37×N studies and 100×N subjects (1: the three seed trials)")
    demo.set_defaults(func=cmd_build_demo)
    bench = sub.add_parser("bench-import", help="time an SDTM import of a synthetic study")
    bench.add_argument("--subjects", type=int, default=10_000)
    bench.add_argument("--format", choices=("xpt", "csv"), default="xpt")
    bench.set_defaults(func=cmd_bench_import)
    perf = sub.add_parser("bench", help="time every page for the biggest and a typical study")
    _cuts_or_db(perf)
    perf.add_argument("--runs", type=_positive, default=5, help="runs per measurement; the median is shown")
    perf.add_argument("--browser", action="store_true",
                      help="also time Chromium from navigation to every chart drawn, and server memory")
    perf.add_argument("--out", metavar="FILE.md", help="write the table as markdown")
    perf.add_argument("--json", action="store_true", help="print one JSON object per page and study")
    perf.add_argument("--pages", help="comma-separated page names (default: all)")
    perf.set_defaults(func=cmd_bench)
    chg = sub.add_parser("bench-changes", help="time comparing two data cuts: the diff, the Changes page, the banner")
    chg.add_argument("--cuts", default=None, metavar="DIR", help="a registry of two or more cuts (build one with "
                     "build-demo --scale 100 --cuts DIR)")
    chg.add_argument("--runs", type=_positive, default=5, help="runs per measurement; the median is shown")
    chg.set_defaults(func=cmd_bench_changes)
    cons = sub.add_parser("bench-console", help="peak memory and stop time of hostile SQL console queries")
    _cuts_or_db(cons)
    cons.set_defaults(func=cmd_bench_console)
    rep = sub.add_parser("report", help="print a study's numbers as of a date")
    _cuts_or_db(rep)
    rep.add_argument("--study", required=True)
    rep.add_argument("--as-of", type=_date, default=None, help="YYYY-MM-DD (default: the study's data cut)")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument("--html", metavar="OUT.html", help="also write the meeting packet: one self-contained HTML file")
    rep.set_defaults(func=cmd_report)
    run = sub.add_parser("serve-demo", help="serve the app with the demo sign-in provider beside it (make run)")
    run.add_argument("--address", default="127.0.0.1", help="the interface to serve on")
    run.add_argument("--port", type=int, default=8501)
    run.set_defaults(func=cmd_serve_demo)
    sets = sub.add_parser("settings", help="print every path and limit with its current value")
    sets.add_argument("--json", action="store_true", help="print one JSON object {name: value}")
    sets.set_defaults(func=cmd_settings)
    dec = sub.add_parser("decisions", help="record, list and verify the SMC's dose decisions; print the chain heads")
    dec_sub = dec.add_subparsers(dest="action", required=True)
    add = dec_sub.add_parser("add", help="record one decision (validated as on the Escalation page)")
    _cuts_or_db(add, db_help="the trial database the decision was taken on")
    add.add_argument("--study", required=True)
    add.add_argument("--level", type=int, required=True, help="dose level number")
    add.add_argument("--decision", required=True, help="enroll, wait, escalate, de-escalate, declare_mtd, "
                     "max_dose_cleared, stop, stay or other")
    add.add_argument("--rationale", default="", help="required for a deviation from the recommendation and for other")
    add.add_argument("--by", required=True, help="the name of who records the decision; the record is signed by the "
                     "operating-system account running the command, on this host")
    add.add_argument("--role", choices=["smc_member", "smc_chair"], default="smc_member",
                     help="the SMC role the record is signed in (only the chair supersedes)")
    add.add_argument("--attendees", default="")
    add.add_argument("--meeting-date", type=_date, default=None, help="YYYY-MM-DD (default: today, UTC)")
    add.add_argument("--as-of", type=_date, default=None,
                     help="the data cut reviewed, YYYY-MM-DD (default: the study's data cut)")
    add.add_argument("--deviation", action="store_true",
                     help="record as a deviation even if it matches the recommendation")
    add.add_argument("--supersedes", type=int, default=None, help="id of the record this one corrects")
    add.set_defaults(func=cmd_decisions_add)
    lst = dec_sub.add_parser("list", help="a study's decisions, oldest first")
    _cuts_or_db(lst)
    lst.add_argument("--study", required=True)
    lst.add_argument("--json", action="store_true", help="print the records as a JSON list")
    lst.set_defaults(func=cmd_decisions_list)
    ver = dec_sub.add_parser("verify", help="check every study's hash chain (exit 3 when broken)")
    _cuts_or_db(ver)
    ver.set_defaults(func=cmd_decisions_verify)
    head = dec_sub.add_parser("head", help="each study's record count and chain head, for the minutes "
                              "(checked first: exit 3 when broken)")
    _cuts_or_db(head)
    head.add_argument("--study", default=None, help="one study (default: every study in the log)")
    head.set_defaults(func=cmd_decisions_head)
    cuts = sub.add_parser("cuts", help="the registry of data cuts")
    cuts_sub = cuts.add_subparsers(dest="action", required=True)
    cl = cuts_sub.add_parser("list", help="the registry's data cuts, oldest first")
    cl.add_argument("--cuts", default=str(settings.cuts_dir()), help="the registry's folder (default: SMC_CUTS)")
    cl.add_argument("--json", action="store_true", help="print a JSON list of objects, oldest first")
    cl.set_defaults(func=cmd_cuts_list)
    diff = sub.add_parser("diff", help="what changed in a study between two data cuts, record by record")
    diff.add_argument("--db-from", required=True, help="the earlier data cut (a DuckDB file)")
    diff.add_argument("--db-to", required=True, help="the later data cut")
    diff.add_argument("--study", required=True)
    diff.add_argument("--json", action="store_true",
                      help='print {"tables": {table: {"added": [...], "removed": [...], "changed": [...]}}}')
    diff.set_defaults(func=cmd_diff)
    return p


def _cuts_or_db(command: argparse.ArgumentParser, cuts_help: str | None = None,
                db_help: str = "one database file instead of a registry") -> None:
    """--cuts DIR (default: the settings' registry, SMC_CUTS) or --db FILE; a command reading one cut (no
    ``cuts_help`` of its own) also takes --cut."""
    where = command.add_mutually_exclusive_group()
    where.add_argument("--cuts", default=None, metavar="DIR", help=f"{cuts_help or 'the registry folder to read'} "
                       f"(default: {settings.cuts_dir()})")
    where.add_argument("--db", default=None, metavar="FILE", help=db_help)
    if cuts_help is None:
        command.add_argument("--cut", default=None, help="with --cuts: the cut's label, file name or SHA-256 "
                             "(its first 12 hex digits do); default: the latest")


def _resolve_cut(args) -> str | None:
    """For a command reading one cut: set ``args.db`` from ``--cuts``/``--cut``; an error message, or None."""
    from smc.store.cuts import Registry

    args.cuts = args.cuts or str(settings.cuts_dir())
    if args.db or not hasattr(args, "cut"):
        return None
    registry = Registry.of_folder(args.cuts)
    if not registry.cuts:
        return f"no data cut in {args.cuts} (add one with python -m smc import ... --cuts {args.cuts})"
    cut = registry.find(args.cut) if args.cut else registry.latest
    if cut is None:
        return f"no data cut {args.cut!r} in {args.cuts} (python -m smc cuts list --cuts {args.cuts})"
    args.db = cut.path
    return None


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if getattr(args, "mapping", None) and not getattr(args, "sdtm", None):
        p.error("--mapping goes with --sdtm (a contract CSV import needs no mapping)")
    if hasattr(args, "db") and args.func is not cmd_diff and (problem := _resolve_cut(args)):
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return args.func(args)
