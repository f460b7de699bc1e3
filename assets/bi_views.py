"""The BI views (sql/views/*.sql) as assets of the analytics group, so that lineage reaches the BI layer.

Each `CREATE OR REPLACE VIEW` in those files is one asset, `klaviyo/bi/<view>` (e.g. `klaviyo/bi/daily_kpis`): its upstream assets are those
whose tables the view reads (found by parsing the view's SQL with sqlglot), and each materialization records
the view's columns (`dagster/column_schema`, with the comments the SQL writes), its column lineage to the
source tables' columns (`dagster/column_lineage`, from sqlglot's lineage over the warehouse's own schema), and
its rows. The views are created by the migrations (resources/warehouse/migrations.py), never here: a view
is always current, and materializing it says what it is and where each column comes from.
"""

import re
from dataclasses import dataclass
from functools import cache

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage

from assets.stats import STATS_KEYS
from assets.table_metadata import code_version, table_metadata
from assets.transform import DERIVED_TABLES, INCLUDED_SHAPES
from resources import settings
from resources.catalogue import CATALOGUE
from resources.reports import FAMILIES
from resources.warehouse import Warehouse
from resources.warehouse import queries as q
from resources.warehouse.migrations import VIEWS_DIR

_VIEW = re.compile(r"CREATE\s+OR\s+REPLACE\s+VIEW\s+(\w+)\s+AS\s+(.*?);", re.S | re.I)
_COMMENT = re.compile(r"COMMENT\s+ON\s+VIEW\s+(\w+)\s+IS\s+'((?:[^']|'')*)'", re.I)


@dataclass(frozen=True)
class View:
    name: str
    query: str  # the SELECT
    description: str
    file: str

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(["klaviyo", "bi", self.name.removeprefix("klaviyo_")])

    @property
    def sources(self) -> tuple[str, ...]:
        """The tables (and views) the view reads, by name; its own CTEs left out."""
        tree = sqlglot.parse_one(self.query, dialect="postgres")
        ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
        return tuple(sorted({t.name for t in tree.find_all(exp.Table)} - ctes))


def views() -> list[View]:
    """Every view of sql/views, in file order."""
    found = []
    for path in sorted(VIEWS_DIR.glob("*.sql")):
        sql = path.read_text()
        comments = {name: text.replace("''", "'") for name, text in _COMMENT.findall(sql)}
        for name, query in _VIEW.findall(sql):
            found.append(View(name, query.strip(), comments.get(name, f"The BI view {name}."), path.name))
    return found


@cache
def producers() -> dict[str, dg.AssetKey]:
    """The asset that writes each warehouse table (and each view): the catalogue's, the statistics', the
    views' own."""
    keys = {entry.table: dg.AssetKey(["klaviyo", entry.name]) for entry in CATALOGUE.values()}
    for entry in CATALOGUE.values():
        for resource_type in entry.included_tables:
            keys[INCLUDED_SHAPES[resource_type].table] = dg.AssetKey(["klaviyo", entry.name])
        for name in entry.derived_tables:
            keys[DERIVED_TABLES[name].table] = dg.AssetKey(["klaviyo", entry.name])
    keys.update({family.table: STATS_KEYS[name] for name, family in FAMILIES.items()})
    keys.update({view.name: view.key for view in views()})
    return keys


def column_lineage(view: View, schema: dict[str, dict[str, str]]) -> dg.TableColumnLineage:
    """Each output column's source columns (table.column), from sqlglot's lineage over the real schema."""
    deps: dict[str, list[dg.TableColumnDep]] = {}
    # Every output column at once: the query is qualified and scoped once, not once per column.
    for column, root in lineage(None, view.query, schema=schema, dialect="postgres").items():
        sources = set()
        for node in root.walk():
            if node.downstream or not isinstance(node.source, exp.Table):
                continue
            table = node.source.name
            if table in producers():
                sources.add((producers()[table], node.name.split(".")[-1]))
        deps[column] = [
            dg.TableColumnDep(asset_key=key, column_name=name) for key, name in sorted(sources, key=str)
        ]
    return dg.TableColumnLineage(deps_by_column=deps)


VIEWS = views()


@dg.multi_asset(
    name="klaviyo_bi_views",
    specs=[
        dg.AssetSpec(
            key=view.key,
            deps=[producers()[t] for t in view.sources if t in producers()],
            description=view.description,
            group_name="klaviyo_analytics",
            kinds={"postgres", "sql"},
            owners=settings.asset_owners(),
            code_version=code_version(view.query),
            metadata={"dagster/table_name": view.name, "sql_file": f"sql/views/{view.file}"},
            skippable=True,
        )
        for view in VIEWS
    ],
    can_subset=True,
)
def klaviyo_bi_views(context: dg.AssetExecutionContext, warehouse: Warehouse):
    """Record each selected view's columns, column lineage and rows."""
    warehouse.require_migrated()
    for view in VIEWS:
        if view.key not in context.selected_asset_keys:
            continue
        with warehouse.engine.connect() as conn:
            schema = {t: {c.name: c.type for c in q.table_columns(conn, t)} for t in view.sources}
            rows = q.row_count(conn, view.name)
        yield dg.MaterializeResult(
            asset_key=view.key,
            metadata={
                **table_metadata(warehouse, view.name),
                "dagster/column_lineage": column_lineage(view, schema),
                "dagster/row_count": rows,
            },
        )
