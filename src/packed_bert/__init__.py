"""packed-bert: an MLPerf Inference harness for BERT-Large on SQuAD v1.1 with sequence packing."""

import os

# PyTorch's OpenMP threads spin at most 10,000 times before they sleep (libgomp's default is
# 300,000), unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT. On a machine whose cores
# another process also uses, long spins made every small operation wait for a time slice (a
# 64x384x384 matmul: 6.2 ms instead of 0.1 ms; a probe read a 3.7 ms model as 5.8 samples/s), and
# never spinning cost 7-12% on a quiet machine (docs/performance.md). OpenMP reads these once,
# when torch loads, so they are set here, before anything imports torch.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
