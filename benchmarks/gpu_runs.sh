#!/usr/bin/env bash
# The cuda system through LoadGen on one GPU (run by the device tool after benchmarks/gpu_check.sh,
# with carry [".gpu_data"] built by benchmarks/gpu_carry.sh): accuracy on the MiniLM checkpoint
# and short Offline / SingleStream performance runs with random BERT-Large weights, fp16 and
# fp8 compiled. Each run is time-boxed; logs and run directories (without the big accuracy
# logs) come back in $OUT. At most about 7 minutes; RUNS="1 2 4" picks some.
set -u
cd "$(dirname "$0")/.."
export OUT="${OUT:-/tmp/gpu_runs}" PYTHONUNBUFFERED=1 D="$PWD/.gpu_data"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$D"/whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site" PACKED_BERT_CACHE="$D/cache" PACKED_BERT_SQUAD="$D/dev-v1.1.json" \
    PACKED_BERT_VOCAB="$D/bert-uncased-vocab.txt"
PB=(python3 -c 'import sys; from packed_bert.cli import main; sys.argv[0] = "packed-bert"; sys.exit(main())' run
    --results-dir "$OUT/r")
PERF=(--mode performance --execution test --setting min_duration=10000)
run() {  # number, seconds, what, packed-bert run arguments...
    local n=$1 limit=$2 what=$3
    shift 3
    [[ " ${RUNS:-1 2 3 4 5} " == *" $n "* ]] || return 0
    timeout -k 5 "$limit" "${PB[@]}" "$@" > "$OUT/run$n.log" 2>&1
    echo "run $n ($what): exit $?; $(grep -E '^(performance|accuracy):' "$OUT/run$n.log" | tail -1)"
}
run 1 45 "bert-99.9 fp16 accuracy, MiniLM" --sut cuda --model bert-99.9 --scenario offline --mode accuracy --weights "$D/minilm"
run 2 60 "bert-99.9 fp16 Offline" --sut cuda --model bert-99.9 --scenario offline "${PERF[@]}" --target_qps 4500
run 3 100 "bert-99 fp8 compiled accuracy, MiniLM" --sut "$D/cuda_compiled.toml" --model bert-99 --precision fp8 \
    --scenario offline --mode accuracy --weights "$D/minilm"
run 4 130 "bert-99 fp8 compiled Offline" --sut "$D/cuda_compiled.toml" --model bert-99 --precision fp8 \
    --scenario offline "${PERF[@]}" --target_qps 5500
run 5 60 "bert-99.9 fp16 SingleStream" --sut cuda --model bert-99.9 --scenario singlestream "${PERF[@]}"
find "$OUT/r" -name mlperf_log_accuracy.json -size +1M -delete 2>/dev/null
tar czf "$OUT/runs.tgz" -C "$OUT" r 2>/dev/null && rm -rf "$OUT/r"
