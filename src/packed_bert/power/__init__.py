"""Power: the official MLPerf power client (mlcommons power-dev) driven around a performance run,
the analysis of its logs, and an unofficial software meter (NVML, RAPL)."""
