{#-
    JSON helpers for the raw tables' JSON columns, which arrive as text in every target.
    DuckDB and PostgreSQL spell JSON access differently, so each helper dispatches per adapter.

    `path` is a dotted path of object keys, e.g. 'requirements.tier' or 'limits.max_steps'.
    The default__ implementations are DuckDB's spelling; postgres__ ones use jsonb operators.
-#}

{% macro json_extract_text(column, path) -%}
    {{ return(adapter.dispatch('json_extract_text', 'agentprovision')(column, path)) }}
{%- endmacro %}

{% macro default__json_extract_text(column, path) -%}
    json_extract_string({{ column }}, '$.{{ path }}')
{%- endmacro %}

{% macro postgres__json_extract_text(column, path) -%}
    ({{ column }}::jsonb #>> '{ {{- path.split('.') | join(',') -}} }')
{%- endmacro %}


{#- Number of elements in the JSON array at `path` (the whole value when path is none); 0 when absent or null. -#}
{% macro json_array_length(column, path=none) -%}
    {{ return(adapter.dispatch('json_array_length', 'agentprovision')(column, path)) }}
{%- endmacro %}

{% macro default__json_array_length(column, path=none) -%}
    cast(coalesce(json_array_length({{ column }}{% if path %}, '$.{{ path }}'{% endif %}), 0) as integer)
{%- endmacro %}

{% macro postgres__json_array_length(column, path=none) -%}
    {%- set value -%}
        ({{ column }}::jsonb{% if path %} #> '{ {{- path.split('.') | join(',') -}} }'{% endif %})
    {%- endset -%}
    coalesce(case when jsonb_typeof({{ value }}) = 'array' then jsonb_array_length({{ value }}) end, 0)
{%- endmacro %}


{#-
    Join every key/value pair of the JSON object in `column` as rows `<alias>.entry_key`, `<alias>.entry_value`
    (the value as text). Used to unpack maps such as a run's `outcomes` or a guardrail's `found` counts.
    Emits a whole `cross join` clause; rows whose value is not an object produce no entries.
-#}
{% macro json_object_entries(column, alias) -%}
    {{ return(adapter.dispatch('json_object_entries', 'agentprovision')(column, alias)) }}
{%- endmacro %}

{% macro default__json_object_entries(column, alias) -%}
    cross join lateral (
        select entries.key as entry_key, json_extract_string(entries.value, '$') as entry_value
        from json_each(case when json_type({{ column }}) = 'OBJECT' then {{ column }} end) as entries
    ) as {{ alias }}
{%- endmacro %}

{% macro postgres__json_object_entries(column, alias) -%}
    cross join lateral jsonb_each_text(
        case when jsonb_typeof({{ column }}::jsonb) = 'object' then {{ column }}::jsonb else '{}'::jsonb end
    ) as {{ alias }}(entry_key, entry_value)
{%- endmacro %}


{#- The JSON object at `path` as canonical text of its sorted keys joined by ',' ('email,phone'); NULL when empty. -#}
{% macro json_object_keys_csv(column, path) -%}
    {{ return(adapter.dispatch('json_object_keys_csv', 'agentprovision')(column, path)) }}
{%- endmacro %}

{% macro default__json_object_keys_csv(column, path) -%}
    nullif(array_to_string(list_sort(json_keys({{ column }}, '$.{{ path }}')), ','), '')
{%- endmacro %}

{% macro postgres__json_object_keys_csv(column, path) -%}
    (
        select string_agg(k, ',' order by k collate "C")
        from jsonb_object_keys(
            case when jsonb_typeof({{ column }}::jsonb #> '{ {{- path.split('.') | join(',') -}} }') = 'object'
                then {{ column }}::jsonb #> '{ {{- path.split('.') | join(',') -}} }' else '{}'::jsonb end
        ) as k
    )
{%- endmacro %}
