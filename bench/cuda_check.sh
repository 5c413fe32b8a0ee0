#!/usr/bin/env bash
# The CUDA checks of the trainers and the embedded engine, for a machine with a GPU:
# each trainer's objective test on CUDA (bf16 where supported), then bench/trainers.py and
# bench/engine.py there. Logs and JSON results go to ${OUT:-./cuda-results}.
# Usage: bash bench/cuda_check.sh   (python3 with torch, transformers, trl and the project's deps)
set -uo pipefail
out=${OUT:-./cuda-results}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/unit/trainers/test_objectives.py 2>&1 | tee "$out/objectives.log"
timeout 150 python3 bench/trainers.py --repeats 3 2>&1 | tee "$out/trainers.log"
timeout 90 python3 bench/engine.py --requests 128 --concurrency 16 --max-tokens 48 2>&1 | tee "$out/engine.log"
