/* The host build of the firmware core (the virtual device): a POSIX microsecond clock, and the platform
 * assembled from callbacks that firmware_host/virtual.py provides through ctypes. */
#define _POSIX_C_SOURCE 199309L
#include <time.h>

#include "dt_config.h"
#include "dt_protocol.h"

static dt_platform g_platform;

static uint32_t host_micros(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint32_t)((uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u);
}

/* Boots the core with the host's callbacks; input/output are buffers the host's interpreter reads/writes.
 * ``micros`` NULL is the monotonic clock; tests give a simulated one (a slow link without waiting). */
void dt_host_boot(void (*write)(const char *, size_t), int (*invoke)(void), int8_t *input, const int8_t *output,
                  uint32_t (*micros)(void)) {
  g_platform.write = write;
  g_platform.micros = micros ? micros : host_micros;
  g_platform.clock = "host-us";
  g_platform.invoke = invoke;
  g_platform.input = input;
  g_platform.output = output;
  dt_protocol_init(&g_platform);
}

size_t dt_host_input_elements(void) { return DT_INPUT_ELEMENTS; }
size_t dt_host_num_classes(void) { return DT_NUM_CLASSES; }
