/* See dt_engine_backend.h. dt_model.h names the engine's header and invoke function. */
#include "dt_engine_backend.h"

#include "dt_config.h"
#include DT_ENGINE_HEADER

static int8_t g_input[DT_INPUT_ELEMENTS];
static int8_t g_output[DT_NUM_CLASSES];

static int invoke(void) {
  DT_ENGINE_INVOKE(g_input, g_output);
  return 0;
}

void dt_engine_setup(dt_platform *platform) {
  platform->invoke = invoke;
  platform->input = g_input;
  platform->output = g_output;
}
