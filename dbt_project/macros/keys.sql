{#-
    A readable key for entities whose identity is (tenant_id, local id), such as departments and
    integrations: 'acme/engineering'. It matches how config diffs and audit records name them, and
    is NULL when any part is NULL (|| propagates NULL in DuckDB and PostgreSQL alike), so an
    optional reference such as a user's department stays NULL rather than becoming 'acme/'.
-#}
{% macro tenant_scoped_key(tenant_column, id_column) -%}
    ({{ tenant_column }} || '/' || {{ id_column }})
{%- endmacro %}
