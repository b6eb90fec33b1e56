"""The MLPerf submission tree built from run directories, and a check of what MLPerf's checker checks."""
