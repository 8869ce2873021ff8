/* Runs the C frontend on the chunks of bench_input.h (generated) on the emulated Cortex-M4 and prints,
 * per chunk, the instructions it took and the int8 model input it wrote (hex), for the host to compare
 * with the Python frontend. */
#include <stdint.h>
#include <stdio.h>

#include "bench_input.h" /* DT_BENCH_CHUNKS, g_bench_pcm: little-endian int16 chunks */
#include "dt_config.h"
#include "dt_frontend.h"
#include "mps2_an386.h"

/* The frontend's image, which may be another size than the model's input when a frontend is measured alone. */
#define DT_BENCH_ELEMENTS (DT_IMAGE_HEIGHT * DT_IMAGE_WIDTH * DT_IMAGE_CHANNELS)
static int8_t g_input[DT_BENCH_ELEMENTS];

int main(void) {
  static char line[80];
  int chunk, i;
  for (chunk = 0; chunk < DT_BENCH_CHUNKS; ++chunk) {
    const uint64_t start = dt_board_instructions();
    dt_frontend_run(&g_bench_pcm[(uint32_t)chunk * DT_CHUNK_SAMPLES * 2u], g_input);
    snprintf(line, sizeof(line), "instructions %lu\n", (unsigned long)(dt_board_instructions() - start));
    dt_board_write(line);
    for (i = 0; i < DT_BENCH_ELEMENTS; i += 32) {
      int j, n = 0;
      for (j = i; j < i + 32 && j < DT_BENCH_ELEMENTS; ++j) n += snprintf(line + n, 4, "%02x", (uint8_t)g_input[j]);
      line[n++] = '\n';
      line[n] = '\0';
      dt_board_write(line);
    }
  }
  snprintf(line, sizeof(line), "ram %lu flash %lu\n", (unsigned long)dt_frontend_static_bytes(),
           (unsigned long)dt_frontend_table_bytes());
  dt_board_write(line);
  return 0;
}
