"""SQuAD v1.1: features identical to the MLPerf reference, and the official accuracy scoring.

- :mod:`.dataset` finds, downloads and checks ``dev-v1.1.json`` and the vocab, and reads them.
- :mod:`.tokenization` is the reference's BERT tokenizer (exact Python replica and a fast one).
- :mod:`.features` makes (and caches) the 10,833 features.
- :mod:`.accuracy_log` reads an MLPerf ``mlperf_log_accuracy.json``.
- :mod:`.postprocess` picks answer spans and maps them back to the original text.
- :mod:`.evaluate` is the official v1.1 EM/F1.
- :mod:`.scoring` ties these together.
- :mod:`.reference` is a slow, line-by-line replica of the reference, for tests and benchmarks.
"""
