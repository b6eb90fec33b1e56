"""Workflows: what one command does with one or more benchmark runs.

``demo`` (a short run sized to the machine, with checks), ``find_peak`` (the Server QPS
search), ``compliance`` (audit runs and their verification) and ``power`` (the performance run
under the power client or a meter). They sit between the CLI and the harness: they build
``RunConfig``s, run them with ``harness.run_benchmark`` (in this process or a fresh one) and
read what the runs leave; the harness knows none of them.
"""
