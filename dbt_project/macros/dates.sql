{#-
    Date helpers. Event times are timestamptz; every date the marts expose is the UTC calendar date,
    whatever the session's time zone, so DuckDB and PostgreSQL bucket an event into the same day.
-#}

{% macro utc_date(column) -%}
    {{ return(adapter.dispatch('utc_date', 'agentprovision')(column)) }}
{%- endmacro %}

{% macro default__utc_date(column) -%}
    cast(timezone('UTC', {{ column }}) as date)
{%- endmacro %}

{% macro postgres__utc_date(column) -%}
    cast(({{ column }} at time zone 'UTC') as date)
{%- endmacro %}


{#- First day of the month of a date, as a date. -#}
{% macro month_start(date_column) -%}
    cast(date_trunc('month', {{ date_column }}) as date)
{%- endmacro %}


{#- Number of days in the month containing a date. -#}
{% macro days_in_month(date_column) -%}
    {{ return(adapter.dispatch('days_in_month', 'agentprovision')(date_column)) }}
{%- endmacro %}

{% macro default__days_in_month(date_column) -%}
    cast(day(last_day({{ date_column }})) as integer)
{%- endmacro %}

{% macro postgres__days_in_month(date_column) -%}
    cast(extract(day from (date_trunc('month', {{ date_column }}) + interval '1 month - 1 day')) as integer)
{%- endmacro %}


{#- A date plus a whole number of days, as a date. -#}
{% macro add_days(date_column, days) -%}
    {{ return(adapter.dispatch('add_days', 'agentprovision')(date_column, days)) }}
{%- endmacro %}

{% macro default__add_days(date_column, days) -%}
    cast({{ date_column }} + cast({{ days }} as integer) as date)
{%- endmacro %}

{% macro postgres__add_days(date_column, days) -%}
    cast({{ date_column }} + cast({{ days }} as integer) as date)
{%- endmacro %}


{#- A UTC date as the timestamptz of its midnight UTC (FOCUS periods are timestamps). -#}
{% macro utc_midnight(date_column) -%}
    {{ return(adapter.dispatch('utc_midnight', 'agentprovision')(date_column)) }}
{%- endmacro %}

{% macro default__utc_midnight(date_column) -%}
    timezone('UTC', cast({{ date_column }} as timestamp))
{%- endmacro %}

{% macro postgres__utc_midnight(date_column) -%}
    (cast({{ date_column }} as timestamp) at time zone 'UTC')
{%- endmacro %}


{#- The date the marts treat as "today": the `as_of_date` var when set (tests, backfills), else the UTC date. -#}
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        {{ utc_date('current_timestamp') }}
    {%- endif -%}
{%- endmacro %}
