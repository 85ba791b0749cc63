{#- Models go to the schema they name (silver, gold), not <target schema>_<name>:
    the layers are shared tables other tools query by those names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
