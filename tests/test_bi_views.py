"""The BI views as assets: one per view of sql/views, upstream of nothing but the assets whose tables it reads,
with its columns, column lineage and rows recorded on each materialization."""

import dagster as dg

from assets.bi_views import VIEWS, klaviyo_bi_views

K = lambda *path: dg.AssetKey(["klaviyo", *path])  # noqa: E731


def test_every_view_of_sql_views_is_an_asset_of_the_analytics_group():
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {v.name for v in VIEWS} == {
        "klaviyo_segments_report",
        "klaviyo_flows_report",
        "klaviyo_forms_report",
        "klaviyo_campaigns_report",
        "klaviyo_daily_kpis",
        "klaviyo_segment_growth",
        "klaviyo_flow_step_daily",
        "klaviyo_flow_step_performance",
        "klaviyo_segment_membership_daily",
        "klaviyo_campaign_audience_members",
        "klaviyo_campaign_audience_size",
    }
    kpis = graph.get(K("bi", "daily_kpis"))
    assert kpis.group_name == "klaviyo_analytics"
    assert set(kpis.parent_keys) == {
        K("flow_stats_daily"),
        K("campaign_stats"),
        K("campaigns"),
        K("form_stats_daily"),
        K("segment_stats_daily"),
    }
    assert set(graph.get(K("bi", "segment_growth")).parent_keys) == {K("segment_stats_daily"), K("segments")}


def test_a_materialization_records_columns_lineage_and_rows(warehouse):
    result = dg.materialize([klaviyo_bi_views], resources={"warehouse": warehouse})
    assert result.success
    meta = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(meta) == {v.key for v in VIEWS}
    kpis = meta[K("bi", "daily_kpis")]
    columns = {c.name: c for c in kpis["dagster/column_schema"].value.columns}
    assert columns["form_submits"].description == "Form submissions."
    deps = {
        column: {(d.asset_key, d.column_name) for d in found}
        for column, found in kpis["dagster/column_lineage"].value.deps_by_column.items()
    }
    assert set(deps) == set(columns)
    assert deps["form_views"] == {(K("form_stats_daily"), "viewed_form")}
    assert deps["campaign_revenue"] == {(K("campaign_stats"), "conversion_value")}
    assert deps["revenue"] == {
        (K("campaign_stats"), "conversion_value"),
        (K("flow_stats_daily"), "conversion_value"),
    }
    assert deps["segment_net_members"] == {
        (K("segment_stats_daily"), "members_added"),
        (K("segment_stats_daily"), "members_removed"),
    }
    growth = meta[K("bi", "segment_growth")]["dagster/column_lineage"].value.deps_by_column
    assert {(d.asset_key, d.column_name) for d in growth["segment_name"]} == {(K("segments"), "name")}
    assert kpis["dagster/row_count"].value == 0  # an empty warehouse
    assert kpis["dagster/table_name"].value.endswith("klaviyo_daily_kpis")
