"""The trade-off report of a compress run: tables, plots, Markdown and self-contained HTML.

``build_report`` (build) is the entry point; ``load_results`` (results) is the data model that device
measurements join.
"""
