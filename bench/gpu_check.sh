#!/usr/bin/env bash
# The GPU check of distillkit: the GPU tests, then the published-scale measurements that fit (bench/gpu_check.py),
# all in under 10 minutes on one H200. Writes one JSON file.
#
#   bash bench/gpu_check.sh                       # on a CUDA machine -> bench/results/gpu_check.json
#   bash bench/gpu_check.sh --out /tmp/check.json
#   bash bench/gpu_check.sh --smoke               # everything tiny, on the CPU (about a minute)
#
# Python: $PYTHON, else .venv/bin/python when present, else python. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

out="bench/results/gpu_check.json"
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --out) out="${2:?--out needs a path}"; shift ;;
    --out=*) out="${1#--out=}" ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (use --smoke, --out PATH)" >&2; exit 2 ;;
  esac
  shift
done

py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DISTILLKIT_PROGRESS=0
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
junit="$tmp/gpu_tests.xml"
if [ "$smoke" = 1 ]; then
  # the GPU test bodies, one of them, on the CPU: the file collects and its fixtures work
  tests=(env DISTILLKIT_TEST_DEVICE=cpu "$py" -m pytest -q -m gpu tests/test_gpu.py -k one_dm_step)
  size=(--smoke)
else
  if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: no CUDA device here; run \`bash bench/gpu_check.sh --smoke\` for the CPU-sized check" >&2
    exit 2
  fi
  tests=("$py" -m pytest -q -m gpu tests/test_gpu.py)
  size=()
fi

start=$(date +%s)
tests_status=0
"${tests[@]}" -p no:cacheprovider --junitxml="$junit" || tests_status=$?
tests_seconds=$(( $(date +%s) - start ))

"$py" bench/gpu_check.py "${size[@]}" --out "$out" --tests-junit "$junit" --tests-seconds "$tests_seconds"
if [ "$tests_status" != 0 ]; then
  echo "error: GPU tests failed (exit $tests_status); see the test output above and \"tests\" in $out" >&2
  exit 1
fi
