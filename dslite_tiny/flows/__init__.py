"""What drives more than one stage or more than one run: cross-validation, sweeps and the demo's pipeline.

Stages (``train``, ``compress``, ``report``, …) only read and write records; a flow plans units of work, runs
them through a runner (``flows.runner``: in this process, or on a Ray cluster) and calls the report.
"""
