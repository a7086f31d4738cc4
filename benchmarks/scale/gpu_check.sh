#!/usr/bin/env bash
# Issue 15's GPU check: `workbench distill --device cuda` and `--nproc-per-node 1` (torchrun, nccl) against
# `--device cpu`, on a transformer student (sentence embeddings, drop:0,2,4 of a 6-layer BERT teacher built
# here, random init: no hub) and on the image path (the committed digits-resnet teacher). Prints, per run,
# its exit code and wall time, and then what it compared: the students' weights (cpu vs cuda: float
# tolerance, cuda vs torchrun-1: equal up to float order), the teacher-output cache filled in bf16 autocast
# vs fp32 (separate cache entries), and the students' quality on each device.
#
# For a session with a lent GPU, through the `device` tool, from the repository root:
#   echo /.whl/ >> .git/info/exclude
#   for w in transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.2 tomli_w==1.2.0; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$w"; done
#   run(command="bash benchmarks/scale/gpu_check.sh 2>&1 | tee $OUT/gpu_check.txt", carry=[".whl"], timeout_s=420)
# (the machine's image has torch, onnx, onnxruntime, onnxscript, safetensors, click, rich, scipy, psutil and
# scikit-learn; the wheels bring the transformers the project pins and tomli_w). Results land in $OUT (the
# device tool's folder) or $GPU_CHECK_DIR. On a machine without CUDA, CPU_ONLY=1 runs the cpu half (a
# dry run of this script: STEPS=20 HIDDEN=64 CPU_ONLY=1 bash benchmarks/scale/gpu_check.sh).
# Reading the weight comparisons: the image path is bit-deterministic across processes on the CPU (cpu vs
# torchrun-1: max |dw| 0 in the dry run), the transformer path is not, even as two plain CPU processes
# (max |dw| ~6e-4 after 20 Adam steps at lr 1e-4 in the dry run), so its cross-run differences bound what
# any device comparison of it can show.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
W=${GPU_CHECK_DIR:-/tmp/gpu_check}
STEPS=${STEPS:-200}        # optimiser steps of each transformer run (batch 32)
HIDDEN=${HIDDEN:-384}      # the teacher: 6 layers of this width (MiniLM-L6's shape), 12 heads (HIDDEN/32)
IMG_STEPS=${IMG_STEPS:-200}
rm -rf "$W" && mkdir -p "$W"
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
export WORKBENCH_CACHE="$W/cache"

echo "== machine"
$PY - <<'EOF'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()})" if torch.cuda.is_available() else "")
EOF

echo "== teacher: a 6-layer BERT (hidden $HIDDEN, random init) with a WordPiece vocabulary of the pydoc corpus"
$PY - "$W/teacher" "$HIDDEN" <<'EOF'
import collections, re, sys
from pathlib import Path
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast
from workbench.tasks import load_task

d, hidden = Path(sys.argv[1]), int(sys.argv[2])
d.mkdir(parents=True)
corpus = load_task("corpus:pydoc")
words = collections.Counter(w for t in corpus.train for w in re.findall(r"[a-z]+", t.lower()))
chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?\"'()-_*[]{}=<>/\\`#@%&+")
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w for w, _ in words.most_common(4000)} - set(chars)) \
    + chars + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
(d / "vocab.txt").write_text("\n".join(vocab) + "\n")
BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True).save_pretrained(str(d))
torch.manual_seed(0)
cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=6, num_attention_heads=max(1, hidden // 32),
                 intermediate_size=4 * hidden, max_position_embeddings=256)
BertModel(cfg).eval().save_pretrained(str(d))
print(f"{sum(p.numel() for p in BertModel(cfg).parameters()):,} params, vocab {len(vocab)}, "
      f"{len(corpus.train)} training sentences")
EOF

TEXT=(distill --teacher "hf:$W/teacher" --student drop:0,2,4 --task corpus:pydoc --steps "$STEPS" --batch-size 32
      --lr 1e-4 --max-len 64 --patience 0 --cache "$W/cache")
IMAGE=(distill --teacher zoo:digits-resnet --student "zoo:cnn?width=8&depth=1" --task digits --steps "$IMG_STEPS"
       --batch-size 64 --shift 0 --patience 0 --cache "$W/cache")
declare -A WALL RC
go() {  # go NAME ARGS...: one workbench command, its log in $W/NAME.log, its wall time and exit code kept
  local name=$1; shift
  local t0=$EPOCHREALTIME
  $PY -m workbench.cli "$@" --out "$W/$name" >"$W/$name.log" 2>&1
  RC[$name]=$?
  WALL[$name]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  printf '%-16s rc=%s wall %6.1f s   %s\n' "$name" "${RC[$name]}" "${WALL[$name]}" "$(tail -n 2 "$W/$name.log" | head -n 1 | cut -c1-150)"
}

echo "== runs (each: exit code, wall time incl. start-up, the card's summary line)"
go text-cpu "${TEXT[@]}" --device cpu
go image-cpu "${IMAGE[@]}" --device cpu
if [ "${CPU_ONLY:-0}" != 1 ]; then
  go text-cuda "${TEXT[@]}" --device cuda            # fills the bf16-autocast teacher cache (a separate entry)
  go text-cuda-hit "${TEXT[@]}" --device cuda        # the same, the cache now made: training alone
  go text-torchrun1 "${TEXT[@]}" --device cuda --nproc-per-node 1   # torchrun, nccl, one rank
  go image-cuda "${IMAGE[@]}" --device cuda
  go image-torchrun1 "${IMAGE[@]}" --device cuda --nproc-per-node 1
else
  go text-torchrun1 "${TEXT[@]}" --device cpu --nproc-per-node 1    # torchrun, gloo, one rank
  go image-torchrun1 "${IMAGE[@]}" --device cpu --nproc-per-node 1
fi

echo "== comparisons"
$PY - "$W" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import load_file

W = Path(sys.argv[1])

def card(name):
    p = W / name / "card.json"
    return json.loads(p.read_text()) if p.is_file() else None

def weights(name):
    d = W / name
    f = d / "student" / "model.safetensors" if (d / "student").is_dir() else d / "student.safetensors"
    return load_file(str(f)) if f.is_file() else None

def diff(a, b):
    wa, wb = weights(a), weights(b)
    if wa is None or wb is None:
        return f"{a} vs {b}: missing weights"
    worst = max(float(np.abs(wa[k].astype(np.float64) - wb[k]).max()) for k in wa)
    scale = max(float(np.abs(wa[k]).max()) for k in wa)
    rel = max(float(np.linalg.norm(wa[k].astype(np.float64) - wb[k]) / (np.linalg.norm(wa[k]) + 1e-12)) for k in wa)
    return f"{a} vs {b}: max |dw| {worst:.3g} (max |w| {scale:.3g}), worst per-tensor relative L2 {rel:.3g}"

for name in sorted(p.name for p in W.iterdir() if (p / "card.json").is_file()):
    c = card(name)
    if "fidelity" in c:
        q = f"student.onnx mean cosine to the teacher {c['fidelity']['mean_cosine']:.4f}, val cosine (PyTorch) {c['val_cosine_pytorch']:.4f}"
    else:
        q = f"student.onnx test accuracy {c['metrics']['test_accuracy_onnx']['value']:.4f}"
    f = c.get("fit", {})
    print(f"{name:16s} train {f.get('seconds', float('nan')):7.1f} s ({f.get('steps_run')} steps); {q}")
pairs = [("text-cpu", "text-cuda"), ("text-cuda", "text-cuda-hit"), ("text-cuda-hit", "text-torchrun1"),
         ("image-cpu", "image-cuda"), ("image-cuda", "image-torchrun1"), ("text-cpu", "text-torchrun1"),
         ("image-cpu", "image-torchrun1")]
for a, b in pairs:
    if card(a) and card(b):
        print(diff(a, b))
entries = sorted(p.name for p in (W / "cache").iterdir() if p.is_dir())
print(f"teacher-output cache entries: {len(entries)} (fp32 and bf16-autocast passes are separate entries)")
arrays = [np.load(e / "train_out.npy") for e in (W / "cache").iterdir() if (e / "train_out.npy").is_file()]
if len(arrays) == 2:
    a, b = arrays
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"teacher embeddings, bf16 autocast vs fp32: mean cosine {cos.mean():.6f}, min {cos.min():.6f}, "
          f"max |diff| {np.abs(a - b).max():.3g}")
EOF
if [ -n "${OUT:-}" ]; then
  cp "$W"/*.log "$OUT"/ 2>/dev/null || true
fi
