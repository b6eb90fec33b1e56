#!/usr/bin/env bash
# Build the folder a GPU call carries (device tool: carry [".gpu_data"]) for benchmarks/gpu_runs.sh:
# the LoadGen wheel for the device's Python 3.12, the MiniLM SQuAD checkpoint in fp16 (the fp32
# file is over the 64 MiB a call carries), SQuAD dev, the vocab, the features cache (compressed)
# and a cuda system file with compile = true. About 50 MB.
# Usage (repository root, ../shared/data beside it): bash benchmarks/gpu_carry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${SHARED_DATA:-../shared/data}"
D=.gpu_data
PY=.venv/bin/python
mkdir -p "$D/whl" "$D/minilm" "$D/cache" .git/info
grep -qx "/$D/" .git/info/exclude 2>/dev/null || echo "/$D/" >> .git/info/exclude
loadgen=$(grep -m1 '^mlcommons-loadgen==' requirements-ci.txt)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$D/whl" "$loadgen"
cp "$DATA/models/minilm-l6-squad/config.json" "$DATA/models/minilm-l6-squad/vocab.txt" "$D/minilm/"
cp "$DATA/squad/dev-v1.1.json" "$DATA/vocab/bert-uncased-vocab.txt" "$D/"
chmod -R u+w "$D"
"$PY" - "$DATA/models/minilm-l6-squad/model.safetensors" "$D/minilm/model.safetensors" <<'PY'
import sys
from safetensors.torch import load_file, save_file
state = load_file(sys.argv[1])
save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, sys.argv[2])
PY
PACKED_BERT_CACHE="$D/cache" PACKED_BERT_SQUAD="$D/dev-v1.1.json" PACKED_BERT_VOCAB="$D/bert-uncased-vocab.txt" \
    PYTHONPATH=src "$PY" - <<'PY'
import numpy as np
from packed_bert.cache import cache_dir
from packed_bert.squad.features import load_features
load_features()
for path in (cache_dir() / "features").glob("*.npz"):  # mostly zeros: 25 MB -> 1 MB
    arrays = dict(np.load(path))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
PY
sed 's/^name = "cuda"/name = "cuda_compiled"/' src/packed_bert/systems/cuda.toml > "$D/cuda_compiled.toml"
printf '\n[backend_options]\ncompile = true\n' >> "$D/cuda_compiled.toml"
du -sh "$D"
