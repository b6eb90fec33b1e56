"""packed-bert: an MLPerf Inference harness for BERT-Large on SQuAD v1.1 with sequence packing."""

import os

# PyTorch's OpenMP threads sleep between parallel regions instead of spinning, unless the user
# sets OMP_WAIT_POLICY: on a machine whose cores another process also uses, spinning threads made
# every small operation wait for a time slice (a 64x384x384 matmul: 6.2 ms against 0.11 ms
# passive; a probe read a 3.7 ms model as 5.8 samples/s). OpenMP reads it once, when torch loads,
# so it is set here, before anything imports torch. docs/performance.md has the A/B.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
