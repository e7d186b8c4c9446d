/* Instruction-mix throughput on one core: the f32 FMA peak against the AVX2 int8/int16
 * multiply-add chains an int8 GEMM can use (issue 7, "int8 on this CPU" in RESULTS.md).
 *
 *   gcc -O2 benchmarks/probes/madd_throughput.c -o /tmp/madd && /tmp/madd
 *
 * Each loop runs independent accumulators (no dependency chains), so it measures issue
 * throughput; GMAC/s counts multiply-adds (8 per f32 FMA, 16 per vpmaddwd, 32 per vpmaddubsw).
 * Only same-run ratios mean anything on a shared host.
 */
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
#define LOOP(name, body, per) { long it=100000000; double t0=now(); \
  __asm__ volatile("mov %0, %%rcx\n vpxor %%ymm14,%%ymm14,%%ymm14\n vpxor %%ymm15,%%ymm15,%%ymm15\n 1:\n" body "dec %%rcx\n jnz 1b\n" :: "r"(it) : "rcx","xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15","memory"); \
  double s=now()-t0; printf("%-28s %.2f G iter/s  -> %.1f GMAC/s\n", name, it/s/1e9, it/s/1e9*(per)); }
#define R12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)
#define FMA(i) "vfmadd231ps %%ymm15,%%ymm14,%%ymm" #i "\n"
#define MADDWD(i) "vpmaddwd %%ymm15,%%ymm14,%%ymm" #i "\n"
#define MADDUBSW(i) "vpmaddubsw %%ymm15,%%ymm14,%%ymm" #i "\n"
int main(){
 for(int r=0;r<2;r++){
  LOOP("fma x12", R12(FMA), 12*8)
  LOOP("vpmaddwd x12", R12(MADDWD), 12*16)
  LOOP("vpmaddubsw x12", R12(MADDUBSW), 12*32)
  /* exact i16 pairs (cpu/int8.rs before 18779cf): vpmaddwd + vpaddd per 16 MACs */
  LOOP("maddwd+paddd x6", 
    "vpmaddwd %%ymm15,%%ymm14,%%ymm12\n vpaddd %%ymm12,%%ymm0,%%ymm0\n"
    "vpmaddwd %%ymm15,%%ymm14,%%ymm13\n vpaddd %%ymm13,%%ymm1,%%ymm1\n"
    "vpmaddwd %%ymm15,%%ymm14,%%ymm12\n vpaddd %%ymm12,%%ymm2,%%ymm2\n"
    "vpmaddwd %%ymm15,%%ymm14,%%ymm13\n vpaddd %%ymm13,%%ymm3,%%ymm3\n"
    "vpmaddwd %%ymm15,%%ymm14,%%ymm12\n vpaddd %%ymm12,%%ymm4,%%ymm4\n"
    "vpmaddwd %%ymm15,%%ymm14,%%ymm13\n vpaddd %%ymm13,%%ymm5,%%ymm5\n", 6*16)
  /* u8 x s8: vpmaddubsw + vpmaddwd(ones) + vpaddd per 32 MACs (ONNX Runtime MLAS on AVX2, which
     lets i16 saturate; cpu/int8.rs since 18779cf, exact through its pair-bounded weights) */
  LOOP("ubsw+wd(ones)+paddd x4",
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm12\n vpmaddwd %%ymm12,%%ymm11,%%ymm12\n vpaddd %%ymm12,%%ymm0,%%ymm0\n"
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm13\n vpmaddwd %%ymm13,%%ymm11,%%ymm13\n vpaddd %%ymm13,%%ymm1,%%ymm1\n"
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm10\n vpmaddwd %%ymm10,%%ymm11,%%ymm10\n vpaddd %%ymm10,%%ymm2,%%ymm2\n"
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm9\n vpmaddwd %%ymm9,%%ymm11,%%ymm9\n vpaddd %%ymm9,%%ymm3,%%ymm3\n", 4*32)
  /* vpmaddubsw widened by shifts instead of vpmaddwd */
  LOOP("ubsw+sll+srad+srad+2add x3",
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm12\n vpslld $16,%%ymm12,%%ymm13\n vpsrad $16,%%ymm12,%%ymm12\n vpsrad $16,%%ymm13,%%ymm13\n vpaddd %%ymm12,%%ymm0,%%ymm0\n vpaddd %%ymm13,%%ymm1,%%ymm1\n"
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm10\n vpslld $16,%%ymm10,%%ymm11\n vpsrad $16,%%ymm10,%%ymm10\n vpsrad $16,%%ymm11,%%ymm11\n vpaddd %%ymm10,%%ymm2,%%ymm2\n vpaddd %%ymm11,%%ymm3,%%ymm3\n"
    "vpmaddubsw %%ymm15,%%ymm14,%%ymm8\n vpslld $16,%%ymm8,%%ymm9\n vpsrad $16,%%ymm8,%%ymm8\n vpsrad $16,%%ymm9,%%ymm9\n vpaddd %%ymm8,%%ymm4,%%ymm4\n vpaddd %%ymm9,%%ymm5,%%ymm5\n", 3*32)
  /* integer add alone */
  LOOP("vpaddd x12", "vpaddd %%ymm15,%%ymm14,%%ymm0\n vpaddd %%ymm15,%%ymm14,%%ymm1\n vpaddd %%ymm15,%%ymm14,%%ymm2\n vpaddd %%ymm15,%%ymm14,%%ymm3\n vpaddd %%ymm15,%%ymm14,%%ymm4\n vpaddd %%ymm15,%%ymm14,%%ymm5\n vpaddd %%ymm15,%%ymm14,%%ymm6\n vpaddd %%ymm15,%%ymm14,%%ymm7\n vpaddd %%ymm15,%%ymm14,%%ymm8\n vpaddd %%ymm15,%%ymm14,%%ymm9\n vpaddd %%ymm15,%%ymm14,%%ymm10\n vpaddd %%ymm15,%%ymm14,%%ymm11\n", 12*8)
 }
}
