{#-
    Incremental helpers. Thresholds read from the built model ({{ this }}) are computed first (run_query) and
    written into the SQL as constants: compared with scalar subqueries, a constant lets the database push the
    filter through the staging views down to the raw events scan, so only the selected events' JSON payloads
    are unpacked. In a unit test `this` is a fixture CTE (a string, not a relation) that only exists inside
    the test's SQL, so there the thresholds stay subqueries; both forms select the same rows.
-#}

{#- A timestamp computed over the built model, e.g. 'max(loaded_at)'; 1900-01-01 when the model is empty. -#}
{% macro built_timestamp(expression) -%}
    {%- set value -%}
        coalesce({{ expression }}, cast('1900-01-01 00:00:00+00' as timestamp with time zone))
    {%- endset -%}
    {%- if this is string or not execute -%}
        (select {{ value }} from {{ this }})
    {%- else -%}
        {#- As text with its UTC offset, which both DuckDB and PostgreSQL print and read back unambiguously. -#}
        {%- set text = run_query('select cast(' ~ value ~ ' as varchar) from ' ~ this).columns[0].values()[0] -%}
        cast('{{ text }}' as timestamp with time zone)
    {%- endif -%}
{%- endmacro %}


{#-
    The filter an incremental fact applies to its staging rows on an incremental run: events that occurred
    within `late_event_lookback_hours` of the newest event already built, plus any event loaded since the
    last build whatever its event time (a late event). Re-selected rows replace themselves through the
    model's unique_key, so reruns never duplicate. The window matters where a row is built from several
    events (a run's events arrive over time); a fact with one row per event can use loaded_since_last_build.
-#}
{% macro late_event_filter(
    time_column='occurred_at', loaded_column='loaded_at', built_time_column=none, built_loaded_column=none
) -%}
    {#- built_* name the same instants in the built model ({{ this }}) when its columns are named differently. -#}
    {%- set lookback = "interval '" ~ var("late_event_lookback_hours") ~ " hours'" -%}
    (
        {{ time_column }} >= {{ built_timestamp('max(' ~ (built_time_column or time_column) ~ ') - ' ~ lookback) }}
        or {{ loaded_column }} > {{ built_timestamp('max(' ~ (built_loaded_column or loaded_column) ~ ')') }}
    )
{%- endmacro %}


{#-
    Rows loaded since the model's last build: for a fact whose rows are single events (fct_llm_calls), and for
    a mart built incrementally from such a fact (its days that received new rows). No event can be missed,
    late ones included, because raw loads commit in `_loaded_at` order (one writer on DuckDB; on PostgreSQL
    the loader takes its time only once it holds the watermark lock), so nothing loaded later can carry a
    `loaded_at` at or below the newest one already built. Unlike late_event_filter, this is one comparison
    with a constant on the column the raw tables are appended by, so the scan skips everything older.
    A model built before it had the column (a mart that was a plain table) is recomputed whole once, and the
    column is added (append_new_columns).
-#}
{% macro loaded_since_last_build(loaded_column='loaded_at') -%}
    {%- if this is not string and execute
        and loaded_column not in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) -%}
        true
    {%- else -%}
        {{ loaded_column }} > {{ built_timestamp('max(' ~ loaded_column ~ ')') }}
    {%- endif -%}
{%- endmacro %}
