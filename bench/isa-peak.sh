#!/usr/bin/env bash
# Peak multiply-add throughput of one core, per instruction kind: f32 FMA
# (AVX2 and AVX-512) against AVX-512 BF16's `vdpbf16ps` and AMX's
# `tdpbf16ps` (16 x 16 x 32 multiply-adds on tiles), what a BF16 training
# path would use for its products. Decides whether BF16 products can pay
# on this CPU: they must beat the f32 FMA's FLOP rate.
# Needs gcc; kinds the CPU lacks are skipped.
#
# usage: bench/isa-peak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/peak.c" <<'C'
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define N 400000000L
/* Twelve independent chains hide each instruction's latency. */
#define RUN(name, T, U, zero, x, y, op, flops)                                   \
  do {                                                                      \
    T a[12]; for (int i = 0; i < 12; i++) a[i] = zero;                      \
    U xx = x, yy = y; double t = now();                                     \
    for (long n = 0; n < N / 12; n++) {                                     \
      _Pragma("GCC unroll 12") for (int i = 0; i < 12; i++) a[i] = op;      \
      __asm__ volatile("" : "+v"(xx));                                      \
    }                                                                       \
    t = now() - t; volatile T sink = a[0]; (void)sink;                      \
    for (int i = 1; i < 12; i++) { sink = a[i]; }                           \
    printf("| %s | %.2f | %.1f |\n", name, N / t / 1e9, N * (double)(flops) / t / 1e9); \
  } while (0)
__attribute__((target("avx2,fma"))) static void f32_256(void) {
  RUN("f32 FMA, 256-bit (vfmadd231ps ymm)", __m256, __m256, _mm256_setzero_ps(), _mm256_set1_ps(1.0001f),
      _mm256_set1_ps(0.9999f), _mm256_fmadd_ps(xx, yy, a[i]), 16);
}
__attribute__((target("avx512f"))) static void f32_512(void) {
  RUN("f32 FMA, 512-bit (vfmadd231ps zmm)", __m512, __m512, _mm512_setzero_ps(), _mm512_set1_ps(1.0001f),
      _mm512_set1_ps(0.9999f), _mm512_fmadd_ps(xx, yy, a[i]), 32);
}
__attribute__((target("avx512f,avx512bf16"))) static void bf16_512(void) {
  RUN("BF16 dot, 512-bit (vdpbf16ps zmm)", __m512, __m512bh, _mm512_setzero_ps(),
      (__m512bh)_mm512_set1_epi16(0x3f80), (__m512bh)_mm512_set1_epi16(0x3f80),
      _mm512_dpbf16_ps(a[i], xx, yy), 64);
}
/* Four independent accumulator tiles; Linux must first grant the tile
   state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA). */
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
__attribute__((target("amx-tile,amx-bf16"))) static void amx_bf16(void) {
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) { printf("| AMX: the kernel refused the tile state | | |\n"); return; }
  struct { uint8_t palette, start, r[14]; uint16_t colsb[16]; uint8_t rows[16]; } __attribute__((aligned(64))) c;
  memset(&c, 0, sizeof c); c.palette = 1;
  for (int i = 0; i < 8; i++) { c.colsb[i] = 64; c.rows[i] = 16; }
  static uint16_t a[16 * 32] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 32; i++) a[i] = 0x3f80;
  _tile_loadconfig(&c);
  _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  _tile_loadd(4, a, 64); _tile_loadd(5, a, 64); _tile_loadd(6, a, 64); _tile_loadd(7, a, 64);
  long n = N / 32; double t = now();
  for (long i = 0; i < n; i++) {
    _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
  }
  t = now() - t;
  _tile_release();
  printf("| BF16 tiles, AMX (tdpbf16ps) | %.2f | %.1f |\n", 4.0 * n / t / 1e9, 4.0 * n * 16 * 16 * 32 * 2 / t / 1e9);
}
int main(void) {
  __builtin_cpu_init();
  printf("| instruction | G instructions/s | GFLOP/s |\n| --- | ---: | ---: |\n");
  if (__builtin_cpu_supports("fma")) f32_256();
  if (__builtin_cpu_supports("avx512f")) f32_512();
  if (__builtin_cpu_supports("avx512bf16")) bf16_512();
  if (__builtin_cpu_supports("amx-bf16")) amx_bf16();
  return 0;
}
C
gcc -O2 -o "$dir/peak" "$dir/peak.c"
echo "cpu: $(bench/cpu.sh)  (one thread)" >&2
"$dir/peak"
