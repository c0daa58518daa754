#!/usr/bin/env bash
# Benchmarks per CPU tier (issue 24): the issue's rows on the real machine, then again with AVX2 emulated by .NET's and
# LibTorch's knobs (labelled emulated). Writes one report per tier and run into $OUT (default docs/tiers/):
#   tier-<label>.md          suite, 1B shape, --dtype auto (the engine's default): TTFT of KVLink5 and of full prefill at
#                            1k and 5k, llama.cpp Q8_0 (its best type here, see the llama probe) full prefill at both,
#                            precompute tok/s, decode tok/s of the chosen dtype and of int8 weights, the CPU tier and chosen dtype in the header
#   tier-<label>-decode.txt  --decode-probe: decode tok/s bf16 / float32 exact / float32 with bf16 decoding copies / int8,
#                            and llama.cpp Q8_0, interleaved per round
#   tier-<label>-llama.txt   --llama-probe: llama.cpp prefill of 512 tokens per GGUF type (F16, F32, BF16, Q8_0)
# llama.cpp takes no ISA knob: LLamaSharp picks its build by CPUID, so each tier names the build an AVX2-only (or the
# real) machine would load (--llama-build; the report quotes llama.cpp's own system-info line).
#
# Usage: benchmarks/tiers.sh                 the full run (about 45-70 minutes on 2 cores; see benchmarks/README.md)
#        TIERS_TINY=1 benchmarks/tiers.sh    the small model at 1k tokens, no probes, no int8 (its check needs the 1B vocabulary): checks that every step runs (minutes)
#        TIERS_BASELINE=1 ...                also the suite with --dtype bf16 (the old default) in each tier: +1-2 h on AVX2
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-docs/tiers}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
# A fresh calibration for ComputeDType.Auto, measured on this (quiet) machine and kept beside the reports, never one
# cached earlier under load (one file per tier: the key includes the LibTorch overrides).
export KVLINK_CACHE_DIR="$OUT/calibration"
rm -rf "$KVLINK_CACHE_DIR"
dotnet build -c Release benchmarks/KVLink.Benchmarks -v q -nologo

# .NET 10 reads DOTNET_EnableAVX512 (it ignores DOTNET_EnableAVX512F, checked: Avx512F.IsSupported stayed true); both are set.
EMULATED_AVX2=(DOTNET_EnableAVX512=0 DOTNET_EnableAVX512F=0 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)

bench() { # bench <env assignments...> -- <benchmark arguments...>
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" dotnet run -c Release --no-build --project benchmarks/KVLink.Benchmarks -- --threads "$THREADS" "$@"
}

tier() { # tier <label> <llama.cpp build: auto|avx2|...> <env assignments...>
  local label=$1 build=$2; shift 2
  echo "== tier $label ($(date -u +%H:%M:%S) UTC; load $(cut -d' ' -f1-3 /proc/loadavg))"
  if [[ ${TIERS_TINY:-0} == 1 ]]; then
    bench "$@" -- --models small --contexts 1000 --k 5 --runs 1 --full-runs 1 --warmup 0 --skip-micro --stores memory \
      --llama-contexts 1000 --decode-tokens 4 --no-int8-decode --dtype auto --out "$OUT/tier-$label-tiny.md"
    return
  fi
  bench "$@" -- --models 1b --contexts 1000,5000 --k 5 --runs 3 --full-runs 1 --warmup 1 --no-full-warmup \
    --llama-contexts 1000,5000 --gguf-type q8_0 --llama-build "$build" --stores memory --skip-micro --dtype auto --out "$OUT/tier-$label.md"
  if [[ ${TIERS_BASELINE:-0} == 1 ]]; then
    bench "$@" -- --models 1b --contexts 1000,5000 --k 5 --runs 3 --full-runs 1 --warmup 1 --no-full-warmup \
      --skip-llamacpp --stores memory --skip-micro --no-int8-decode --dtype bf16 --out "$OUT/tier-$label-bf16.md"
  fi
  bench "$@" -- --decode-probe --llama-build "$build" | tee "$OUT/tier-$label-decode.txt"
  bench "$@" -- --llama-probe --llama-build "$build" | tee "$OUT/tier-$label-llama.txt"
}

tier real auto NOTHING_EMULATED=1
tier avx2-emulated avx2 "${EMULATED_AVX2[@]}"
echo "== done $(date -u +%H:%M:%S) UTC: reports in $OUT"
