#!/usr/bin/env sh
# Prints the CPU a benchmark ran on: model, cores, and the vector ISA the
# kernels can use (AVX2/FMA, AVX-512 F/BW/VL/VNNI/BF16, AMX, NEON), so that
# every figure in BENCHMARKS.md names its machine.
model=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs)
[ -n "$model" ] || model=$(uname -m)
flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null | cut -d: -f2)
isa=""
for f in avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512vnni avx512_bf16 avx512bf16 amx_tile asimd sve; do
  case " $flags " in *" $f "*) isa="$isa $f" ;; esac
done
echo "$model, $(nproc) cores, ISA:${isa:- baseline}"
