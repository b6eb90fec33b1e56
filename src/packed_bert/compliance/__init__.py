"""MLPerf audit tests (TEST01, TEST05): audit.config per round, the audit runs, their verification.

Works from run directories and LoadGen logs only; the runs themselves go through the harness.
"""
