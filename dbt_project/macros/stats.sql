{#- Continuous (linearly interpolated) percentile; `fraction` in 0..1. Same definition in both targets. -#}
{% macro percentile_cont(column, fraction) -%}
    {{ return(adapter.dispatch('percentile_cont', 'agentprovision')(column, fraction)) }}
{%- endmacro %}

{% macro default__percentile_cont(column, fraction) -%}
    quantile_cont({{ column }}, {{ fraction }})
{%- endmacro %}

{% macro postgres__percentile_cont(column, fraction) -%}
    percentile_cont({{ fraction }}) within group (order by {{ column }})
{%- endmacro %}


{#-
    A ratio as numeric(12, 6), NULL when the denominator is 0. DuckDB divides decimals in floating point
    and PostgreSQL exactly; rounding to six places makes both targets agree.
-#}
{% macro safe_ratio(numerator, denominator, scale=6) -%}
    cast(round(cast({{ numerator }} as numeric(38, 10)) / nullif(cast({{ denominator }} as numeric(38, 10)), 0), {{ scale }}) as numeric(18, {{ scale }}))
{%- endmacro %}
