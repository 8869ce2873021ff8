// Runs the model through the firmware's TFLM backend (dt_tflm.cc) on the inputs of bench_input.h
// (generated) on the emulated Cortex-M4 and prints, per input, the instructions one Invoke took and the
// int8 output (hex), for the host to compare with the tflite-micro wheel. Needs a TFLM source tree. Built
// with DT_PROFILE, it prints each op's instructions too ("op <index> <instructions>" lines, in the model's
// operator order), measured by a profiler TFLM calls around each op's Invoke.
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench_input.h"  // DT_BENCH_INPUTS, g_bench_input: int8 model inputs, one after another
#include "dt_config.h"
#include "dt_tflm.h"
#include "mps2_an386.h"

#if DT_TFLM_LOG_IS_TEXT
// A tree whose DebugLog takes a finished string (TFLM before 2024, its own target glue left out of the
// build) logs through semihosting; a newer tree formats with its own debug_log.cc (to newlib's stderr).
extern "C" void DebugLog(const char *text) { dt_board_write(text); }
#endif

#if defined(DT_PROFILE)
#include "tensorflow/lite/micro/micro_profiler_interface.h"

namespace {

class OpInstructions : public tflite::MicroProfilerInterface {
 public:
  static constexpr int kMaxOps = 512;
  uint32_t BeginEvent(const char *) override {
    start_ = dt_board_instructions();
    return 0;
  }
  void EndEvent(uint32_t) override {
    if (count_ < kMaxOps) ops_[count_++] = static_cast<uint32_t>(dt_board_instructions() - start_);
  }
  void Print(char *line, int size) {
    for (int op = 0; op < count_; ++op) {
      snprintf(line, static_cast<size_t>(size), "op %d %lu\n", op, static_cast<unsigned long>(ops_[op]));
      dt_board_write(line);
    }
    count_ = 0;
  }

 private:
  uint64_t start_ = 0;
  uint32_t ops_[kMaxOps] = {};
  int count_ = 0;
};

OpInstructions g_profiler;

}  // namespace

tflite::MicroProfilerInterface *dt_tflm_profiler(void) { return &g_profiler; }
#endif

int main(void) {
  static char line[96];
  static dt_platform platform;
  const char *failure = dt_tflm_setup(&platform);
  if (failure != nullptr) {
    snprintf(line, sizeof(line), "setup %s\n", failure);
    dt_board_write(line);
    return 1;
  }
  for (int n = 0; n < DT_BENCH_INPUTS; ++n) {
    memcpy(platform.input, &g_bench_input[static_cast<uint32_t>(n) * DT_INPUT_ELEMENTS], DT_INPUT_ELEMENTS);
    const uint64_t start = dt_board_instructions();
    const int status = platform.invoke();
    snprintf(line, sizeof(line), "instructions %lu status %d\n",
             static_cast<unsigned long>(dt_board_instructions() - start), status);
    dt_board_write(line);
#if defined(DT_PROFILE)
    g_profiler.Print(line, static_cast<int>(sizeof(line)));
#endif
    static char hex[2 * DT_NUM_CLASSES + 2];
    int at = 0;
    for (int k = 0; k < DT_NUM_CLASSES; ++k) at += snprintf(hex + at, 3, "%02x", static_cast<uint8_t>(platform.output[k]));
    hex[at++] = '\n';
    hex[at] = '\0';
    dt_board_write(hex);
  }
  return 0;
}
