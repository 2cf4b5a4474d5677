"""Explore: a read-only SQL console with a quick chart, a no-code pivot, and the schema with its descriptions."""
import streamlit as st

from smc import settings, ui
from smc.analysis import console, explore
from smc.charts.explore import CHART_KINDS, quick_chart
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
COUNT_ROWS = "(count rows)"
NONE = "(none)"
# A query stopped, cut short or kept waiting is a warning; a refused or failed one an error.
WARNING_ICONS = {"timeout": ":material/timer:", "truncated": ":material/cut:", "busy": ":material/hourglass_top:"}


def fill_box(sql: str) -> None:
    st.session_state["sql"] = sql


def run_box() -> None:
    st.session_state["console_result"] = console.run_console(ctx.db, st.session_state.get("sql"))


st.title("Explore")
st.caption("The raw tables of this data cut, every study and every date (the sidebar's as-of date does not apply "
           "here). Read-only: nothing you run can change the data.")

st.subheader("SQL console")
st.caption(f"One SELECT statement (WITH, FROM x, DESCRIBE and SUMMARIZE count). It stops after "
           f"{settings.CONSOLE_TIME_LIMIT_S:g} s or {settings.CONSOLE_MEMORY_LIMIT_MB:,} MB and shows at most "
           f"{settings.CONSOLE_ROW_CAP_ROWS:,} rows or {settings.CONSOLE_RESULT_MAX_MB:,} MB. Examples:")
examples = explore.examples()
for column, example in zip(st.columns(len(examples) or 1), examples):
    column.button(example.label, key=f"example_{example.name}", on_click=fill_box, args=(example.sql,),
                  help=example.title, use_container_width=True)
st.text_area("SQL", key="sql", height=180, placeholder="SELECT dose_level, count(*) FROM subjects GROUP BY ALL")
st.button("Run", key="run_sql", type="primary", icon=":material/play_arrow:", on_click=run_box)

result: console.ConsoleResult | None = st.session_state.get("console_result")
if result is not None:
    # A message can quote the statement or a value of the data (a failed cast): shown as text.
    if result.status == "ok":
        st.caption(md(result.message))
    elif result.status in WARNING_ICONS:
        st.warning(md(result.message), icon=WARNING_ICONS[result.status])
    else:
        st.error(md(result.message), icon=":material/block:")
    if result.rows is not None:
        st.dataframe(result.rows, hide_index=True, key="sql_result")
        ui.download_csv(result.rows, "query_result.csv", key="sql_csv")
        if len(result.rows) and len(result.rows.columns):
            names = list(result.rows.columns)
            numeric = [c for c in names if result.rows[c].dtype.kind in "iuf"]
            x_col, y_col, colour_col, kind_col = st.columns(4)
            x = x_col.selectbox("x", names, key="chart_x")
            y = y_col.selectbox("y", [COUNT_ROWS, *numeric], key="chart_y")
            colour = colour_col.selectbox("Colour", [NONE, *names], key="chart_colour")
            kind = kind_col.segmented_control("Chart", list(CHART_KINDS), format_func=CHART_KINDS.get,
                                              default="bar", key="chart_kind") or "bar"
            st.plotly_chart(ui.figure(quick_chart, result.rows, kind, x, None if y == COUNT_ROWS else y,
                                      None if colour == NONE else colour,
                                      f"{'Rows' if y == COUNT_ROWS else y} by {x}"), key="sql_chart")

st.subheader(f"Pivot ({md(study.study_id)})")
st.caption("Pick a table, what goes down and across, and the aggregate; no SQL needed.")
table_col, rows_col, columns_col = st.columns(3)
table = table_col.selectbox("Table", explore.pivot_tables(), index=explore.pivot_tables().index("subjects"),
                            key="pivot_table")
types = explore.load_table_columns(ctx.db, table)
columns = list(types)
numeric = [c for c, kind in types.items() if kind.startswith(explore.NUMERIC_TYPES)]
rows = rows_col.selectbox("Rows", columns, key=f"pivot_rows_{table}",
                          index=columns.index("dose_level") if "dose_level" in columns else 0)
across = columns_col.selectbox("Columns", [NONE, *columns], key=f"pivot_columns_{table}",
                               index=1 + columns.index("phase") if "phase" in columns else 0)
aggregate_col, value_col, filter_col, values_col = st.columns([2, 2, 2, 3])
aggregate = aggregate_col.selectbox("Aggregate", list(explore.AGGREGATES), format_func=explore.AGGREGATES.get,
                                    key="pivot_aggregate")
value = value_col.selectbox("Value (mean, maximum)", numeric, key=f"pivot_value_{table}",
                            disabled=aggregate not in ("mean", "max"))
filter_column = filter_col.selectbox("Filter on", [NONE, *columns], key=f"pivot_filter_{table}")
allowed = ()
if filter_column != NONE:
    allowed = tuple(values_col.multiselect(
        "Keep", explore.load_filter_values(ctx.db, study.study_id, table, filter_column),
        key=f"pivot_keep_{table}_{filter_column}"))
spec = explore.PivotSpec(table, rows, None if across == NONE else across, aggregate,
                         value if aggregate in ("mean", "max") else None,
                         ((filter_column, allowed),) if allowed else ())
try:
    long = explore.load_pivot(ctx.db, study.study_id, spec)
except ValueError as exc:
    st.error(md(exc), icon=":material/block:")
else:
    if long.empty:
        st.info("No rows match.")
    else:
        st.dataframe(explore.pivot_wide(long, spec), hide_index=True, key="pivot_result")
        label = explore.AGGREGATES[aggregate] + (f" of {spec.value}" if spec.value else "")
        st.plotly_chart(ui.figure(quick_chart, long, "bar", rows, "value", spec.columns,
                                  f"{label} by {rows}" + (f" and {spec.columns}" if spec.columns else "")),
                        key="pivot_chart")

st.subheader("Schema")
schema = explore.load_schema(ctx.db)
with st.expander(f"{schema['table_name'].nunique()} tables, {len(schema)} columns, with the contract's "
                 "descriptions", expanded=False):
    for name, described in schema.drop_duplicates("table_name")[["table_name", "table_comment"]].itertuples(
            index=False):
        st.markdown(f"**{md(name)}**: {md(described or '')}")
    st.dataframe(schema[["table_name", "column_name", "data_type", "column_comment"]], hide_index=True,
                 key="schema", column_config={"table_name": "Table", "column_name": "Column",
                                              "data_type": "Type", "column_comment": "Description"})
