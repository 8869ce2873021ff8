/* Runs a generated engine (dslite-tiny export --target engine) on the inputs of bench_input.h (generated)
 * on the emulated Cortex-M4 and prints, per input, the instructions one invoke took and the int8 output
 * (hex), for the host to compare with the tflite-micro wheel. Built with DT_PROFILE, it prints each op's
 * instructions too ("op <index> <instructions>" lines; the generated model marks every op's end). */
#include <stdint.h>
#include <stdio.h>

#include "bench_input.h" /* DT_BENCH_INPUTS, DT_BENCH_IN, DT_BENCH_OUT, DT_BENCH_OPS, DT_BENCH_INVOKE, g_bench_input */
#include "mps2_an386.h"

#if defined(DT_PROFILE)
static uint64_t g_mark;
static uint32_t g_op_instructions[DT_BENCH_OPS];

void dt_profile_op_done(int32_t op);
void dt_profile_op_done(int32_t op) {
  const uint64_t now = dt_board_instructions();
  g_op_instructions[op] = (uint32_t)(now - g_mark);
  g_mark = now;
}

static void print_ops(char *line, int size) {
  int op;
  for (op = 0; op < DT_BENCH_OPS; ++op) {
    snprintf(line, (size_t)size, "op %d %lu\n", op, (unsigned long)g_op_instructions[op]);
    dt_board_write(line);
  }
}
#endif

int main(void) {
  static int8_t output[DT_BENCH_OUT];
  static char line[80];
  int n, k;
  for (n = 0; n < DT_BENCH_INPUTS; ++n) {
    const uint64_t start = dt_board_instructions();
#if defined(DT_PROFILE)
    g_mark = start;
#endif
    DT_BENCH_INVOKE(&g_bench_input[(uint32_t)n * DT_BENCH_IN], output);
    snprintf(line, sizeof(line), "instructions %lu\n", (unsigned long)(dt_board_instructions() - start));
    dt_board_write(line);
#if defined(DT_PROFILE)
    print_ops(line, (int)sizeof(line));
#endif
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
