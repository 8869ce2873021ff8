"""Artifacts people deploy: TFLite Micro C sources, phone bundles, and the board fit check.

``export_model`` (targets) is the entry point; ``load_board``/``check_fit`` (boards) are shared with the report.
"""
