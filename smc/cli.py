"""Command line: ``python -m smc import | build-demo | report``."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from smc import load
from smc.db import DEFAULT_DB

EXIT_OK, EXIT_USAGE, EXIT_INVALID = 0, 1, 2


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{text}" is not a date (YYYY-MM-DD)') from None


def _print_problems(problems: list[load.Problem]) -> None:
    for p in problems:
        print(f"{p.severity}: {p}", file=sys.stderr)


def cmd_import(args) -> int:
    source = args.csv or args.sdtm
    try:
        if args.sdtm:
            from smc.sdtm import import_sdtm

            warnings, counts = import_sdtm(args.sdtm, args.db, args.mapping)
        else:
            warnings = load.import_csv_dir(args.csv, args.db)
            counts = None
    except load.ImportFailed as failed:
        _print_problems(failed.problems)
        n = sum(p.severity == load.ERROR for p in failed.problems)
        print(f"import refused: {n} error(s); {args.db} was not changed", file=sys.stderr)
        return EXIT_INVALID
    _print_problems(warnings)
    if counts:
        print(", ".join(f"{table} {n}" for table, n in counts.items()), file=sys.stderr)
    print(f"imported {source} into {args.db} ({len(warnings)} warning(s))", file=sys.stderr)
    return EXIT_OK


def cmd_build_demo(args) -> int:
    from smc.demo import build_demo

    try:
        warnings = build_demo(args.db, args.seed)
    except load.ImportFailed as failed:  # a bug in the simulation, not user input
        _print_problems(failed.problems)
        return EXIT_INVALID
    _print_problems(warnings)
    print(f"demo data (seed {args.seed}) written to {args.db}", file=sys.stderr)
    return EXIT_OK


def cmd_report(args) -> int:
    from smc.db import Database
    from smc.report import build_report

    if not Path(args.db).is_file():
        print(f"error: no database at {args.db}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = build_report(Database(args.db), args.study, args.as_of)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
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


def cmd_bench_import(args) -> int:
    """Time an SDTM import of a synthetic set (the target: 10,000 subjects in under a minute)."""
    import tempfile
    import time

    from smc.sdtm import import_sdtm, synthetic

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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m smc", description="SMC Dashboard data tools")
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="validate contract CSVs or SDTM datasets and write them as a new data cut")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="directory of <table>.csv files")
    source.add_argument("--sdtm", help="directory of SDTM datasets (.xpt or .csv: DM, EX, AE, ...)")
    imp.add_argument("--mapping", help="SDTM mapping file (TOML; default DIR/mapping.toml)")
    imp.add_argument("--db", default=str(DEFAULT_DB), help="database file to create or replace")
    imp.set_defaults(func=cmd_import)
    demo = sub.add_parser("build-demo", help="simulate the three seed trials into a database")
    demo.add_argument("--db", default=str(DEFAULT_DB))
    demo.add_argument("--seed", type=int, default=2024)
    demo.set_defaults(func=cmd_build_demo)
    bench = sub.add_parser("bench-import", help="time an SDTM import of a synthetic study")
    bench.add_argument("--subjects", type=int, default=10_000)
    bench.add_argument("--format", choices=("xpt", "csv"), default="xpt")
    bench.set_defaults(func=cmd_bench_import)
    rep = sub.add_parser("report", help="print a study's numbers as of a date")
    rep.add_argument("--db", default=str(DEFAULT_DB))
    rep.add_argument("--study", required=True)
    rep.add_argument("--as-of", type=_date, default=None, help="YYYY-MM-DD (default: the study's data cut)")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if getattr(args, "mapping", None) and not getattr(args, "sdtm", None):
        p.error("--mapping goes with --sdtm (a contract CSV import needs no mapping)")
    return args.func(args)
