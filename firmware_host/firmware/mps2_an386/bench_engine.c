/* Runs a generated engine (dslite-tiny export --target engine) on the inputs of bench_input.h (generated)
 * on the emulated Cortex-M4 and prints, per input, the instructions one invoke took and the int8 output
 * (hex), for the host to compare with the tflite-micro wheel. */
#include <stdint.h>
#include <stdio.h>

#include "bench_input.h" /* DT_BENCH_INPUTS, DT_BENCH_IN, DT_BENCH_OUT, DT_BENCH_INVOKE, g_bench_input */
#include "mps2_an386.h"

int main(void) {
  static int8_t output[DT_BENCH_OUT];
  static char line[80];
  int n, k;
  for (n = 0; n < DT_BENCH_INPUTS; ++n) {
    const uint64_t start = dt_board_instructions();
    DT_BENCH_INVOKE(&g_bench_input[(uint32_t)n * DT_BENCH_IN], output);
    snprintf(line, sizeof(line), "instructions %lu\n", (unsigned long)(dt_board_instructions() - start));
    dt_board_write(line);
    for (k = 0; k < DT_BENCH_OUT; k += 32) {
      int j, at = 0;
      for (j = k; j < k + 32 && j < DT_BENCH_OUT; ++j) at += snprintf(line + at, 4, "%02x", (uint8_t)output[j]);
      line[at++] = '\n';
      line[at] = '\0';
      dt_board_write(line);
    }
  }
  return 0;
}
