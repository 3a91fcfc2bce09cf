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
