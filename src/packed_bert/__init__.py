"""packed-bert: an MLPerf Inference harness for BERT-Large on SQuAD v1.1 with sequence packing."""

__version__ = "0.1.0"
