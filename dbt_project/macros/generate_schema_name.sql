{#-
    Use a folder's `+schema` as the schema name itself (`staging`, `marts`) rather than dbt's default
    `<target schema>_<custom schema>`: the warehouse has one environment per target, and dashboards and
    reports read `marts.<model>` in DuckDB and PostgreSQL alike. Models without a custom schema go to
    the target's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
