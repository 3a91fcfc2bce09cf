{#-
    The given columns together identify at most one row (NULLs compare equal, as a grain key should).
    Usage:  data_tests: [{unique_combination: {arguments: {columns: [a, b]}}}]  at model level.
-#}
{% test unique_combination(model, columns) %}

select {{ columns | join(', ') }}, count(*) as rows_with_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
