{#-
    The filter an incremental fact applies to its staging rows on an incremental run: events that occurred
    within `late_event_lookback_hours` of the newest event already built, plus any event loaded since the
    last build whatever its event time (a late event). Re-selected rows replace themselves through the
    model's unique_key, so reruns never duplicate.
-#}
{% macro late_event_filter(
    time_column='occurred_at', loaded_column='loaded_at', built_time_column=none, built_loaded_column=none
) -%}
    {#- built_* name the same instants in the built model ({{ this }}) when its columns are named differently. -#}
    {#- coalesce: a fact built while there were no events yet is empty, and max() of nothing is NULL. -#}
    (
        {{ time_column }} >= coalesce(
            (
                select max({{ built_time_column or time_column }})
                    - interval '{{ var("late_event_lookback_hours") }} hours'
                from {{ this }}
            ),
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        )
        or {{ loaded_column }} > coalesce(
            (select max({{ built_loaded_column or loaded_column }}) from {{ this }}),
            cast('1900-01-01 00:00:00+00' as timestamp with time zone)
        )
    )
{%- endmacro %}
