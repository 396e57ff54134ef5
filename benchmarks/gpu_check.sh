#!/usr/bin/env bash
# The checks this project runs when a session is lent a GPU machine, in one call of the device tool
# (its image has torch and accelerate but not diffusers, clean-fid or datasets). Prepare here first:
#   echo '/.whl/' >> .git/info/exclude; echo '/.gpu/' >> .git/info/exclude; echo '/.bench_old/' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 clean-fid==0.1.35 \
#     datasets==5.2.0 mlxtend "dill<0.4.2" "multiprocess<0.70.20" importlib_metadata
#   mkdir -p .gpu && tar czf .gpu/mnist70k.tgz -C ~/.cache/autophagy/data mnist-70k   # after `autophagy fetch-data mnist-70k`
#   mkdir -p .bench_old && git archive 1a7dbc0 autophagy loops | tar x -C .bench_old   # the trainer before the GPU path (host draws, foreach AdamW)
# then run `bash benchmarks/gpu_check.sh` there with carry [.whl, .gpu, .bench_old]. It prints, and writes to $OUT:
#   1. cifar10 training images/s at batch 128 with the baseline's trainer and with this one (same machine);
#   2. this trainer at batch 256 and 512, and compiled at batch 128 (torch.compile, inductor: its default mode,
#      then reduce-overhead, i.e. CUDA graphs of the forward and backward);
#   3. with the time left of its 560 s, the mnist-full preset's generation 0 (seed 0, the preset's 6,000 steps;
#      scored on 10,000 samples against its 8,000 reference digits): FID, cost, and the sample grid.
# Where the machine's SciPy is 1.18 or later (clean-fid 0.1.35 calls sqrtm(disp=False), which 1.18 removed), a
# sitecustomize in /tmp/site gives sqrtm its old keyword for this call alone.
set -u
t0=$(date +%s); left() { echo $(( 560 - ($(date +%s) - t0) )); }
OUT=${OUT:-/tmp/gpu_check_out}; mkdir -p "$OUT"; export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
cat > /tmp/site/sitecustomize.py <<'PY'
import inspect
from scipy import linalg
if "disp" not in inspect.signature(linalg.sqrtm).parameters:  # SciPy >= 1.18; clean-fid 0.1.35 passes disp=False
    _sqrtm = linalg.sqrtm
    linalg.sqrtm = lambda a, disp=True, **kw: _sqrtm(a, **kw) if disp else (_sqrtm(a, **kw), 0.0)
PY
export PYTHONPATH=$PWD:/tmp/site AUTOPHAGY_CACHE=/tmp/autophagy-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers, accelerate, scipy; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'accelerate', accelerate.__version__, 'scipy', scipy.__version__)"
bench() { timeout "$1" python3 benchmarks/bench_cifar10.py --train-only --steps 40 "${@:2}" 2>>"$OUT/stderr.log" | grep -v "^one generation"; }

echo "== cifar10 training, baseline trainer (.bench_old)"
PYTHONPATH=$PWD/.bench_old:$PWD:/tmp/site bench 90 --batch-sizes 128 | tee "$OUT/cifar_baseline.txt"
echo "== cifar10 training, this trainer"
bench 120 --batch-sizes 128,256,512 | tee "$OUT/cifar_now.txt"
echo "== cifar10 training, compiled (default mode, then reduce-overhead)"
bench 150 --batch-sizes 128 --compile | tee "$OUT/cifar_compiled.txt"
bench "$(( $(left) > 150 ? 150 : $(left) - 100 ))" --batch-sizes 128 --compile --compile-mode reduce-overhead \
  | tee -a "$OUT/cifar_compiled.txt"

echo "== mnist-full generation 0 ($(left) s left)"
mkdir -p "$AUTOPHAGY_CACHE/data" && tar xzf .gpu/mnist70k.tgz -C "$AUTOPHAGY_CACHE/data"
start=$(date +%s)
timeout "$(left)" python3 -m autophagy run --preset mnist-full --regime fully-synthetic --generations 1 --n-synthetic 10000 \
  --out /tmp/mnist-full >"$OUT/mnist_full.log" 2>&1
echo "rc $? in $(( $(date +%s) - start )) s"
cp /tmp/mnist-full/metrics.jsonl "$OUT/mnist_full_metrics.jsonl" 2>/dev/null && cat "$OUT/mnist_full_metrics.jsonl"
cp /tmp/mnist-full/gen_000/grid.png "$OUT/mnist_full_grid.png" 2>/dev/null
tail -c 1500 "$OUT/mnist_full.log" | tr '\r' '\n' | tail -8
tail -c 1500 "$OUT/stderr.log"
