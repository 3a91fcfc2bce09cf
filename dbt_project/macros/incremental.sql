{#-
    The filter an incremental fact applies to its staging rows on an incremental run: events that occurred
    within `late_event_lookback_hours` of the newest event already built, plus any event loaded since the
    last build whatever its event time (a late event). Re-selected rows replace themselves through the
    model's unique_key, so reruns never duplicate.

    The two thresholds are read from the built model first (run_query) and written into the SQL as constants.
    Compared with scalar subqueries joined by OR, constants let the database push the filter through the
    staging view down to the raw events scan, so only the selected events' JSON payloads are unpacked.
    In a unit test `this` is a fixture CTE (a string, not a relation) that only exists inside the test's
    SQL, so there the thresholds stay subqueries; both forms select the same rows.
-#}
{% macro late_event_filter(
    time_column='occurred_at', loaded_column='loaded_at', built_time_column=none, built_loaded_column=none
) -%}
    {#- built_* name the same instants in the built model ({{ this }}) when its columns are named differently. -#}
    {#- coalesce: a fact built while there were no events yet is empty, and max() of nothing is NULL. -#}
    {%- set since_time -%}
        coalesce(
            max({{ built_time_column or time_column }}) - interval '{{ var("late_event_lookback_hours") }} hours',
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        )
    {%- endset -%}
    {%- set since_loaded -%}
        coalesce(
            max({{ built_loaded_column or loaded_column }}),
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        )
    {%- endset -%}
    {%- if this is string or not execute -%}
        (
            {{ time_column }} >= (select {{ since_time }} from {{ this }})
            or {{ loaded_column }} > (select {{ since_loaded }} from {{ this }})
        )
    {%- else -%}
        {#- As text with its UTC offset, which both DuckDB and PostgreSQL print and read back unambiguously. -#}
        {%- set thresholds = run_query(
            'select cast(' ~ since_time ~ ' as varchar), cast(' ~ since_loaded ~ ' as varchar) from ' ~ this
        ).rows[0] -%}
        (
            {{ time_column }} >= cast('{{ thresholds[0] }}' as timestamp with time zone)
            or {{ loaded_column }} > cast('{{ thresholds[1] }}' as timestamp with time zone)
        )
    {%- endif -%}
{%- endmacro %}
