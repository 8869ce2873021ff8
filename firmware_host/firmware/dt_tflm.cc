// See dt_tflm.h. The model, its op resolver and its arena size come from the exported files that
// dt_model.h names; the interpreter and the arena are static, allocated once.
#include "dt_tflm.h"

#include <stdint.h>
#include <stdio.h>

#include "dt_config.h"
#include DT_MODEL_DATA_HEADER
#include DT_OP_RESOLVER_HEADER
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if defined(DT_PROFILE)
// The Cortex-M4 bench's per-op profiler (mps2_an386/bench_tflm.cc), which TFLM calls around each op's
// Invoke; a board's firmware builds without it.
#include "tensorflow/lite/micro/micro_profiler_interface.h"
tflite::MicroProfilerInterface *dt_tflm_profiler(void);
#define DT_TFLM_INTERPRETER_ARGUMENTS DT_SETTING(TENSOR_ARENA_SIZE), nullptr, dt_tflm_profiler()
#else
#define DT_TFLM_INTERPRETER_ARGUMENTS DT_SETTING(TENSOR_ARENA_SIZE)
#endif

#ifdef DT_ARENA_ALLOCATE
// Boards whose arena may exceed on-chip RAM (ESP32-S3) take it from external RAM once at start-up,
// e.g. -DDT_ARENA_ALLOCATE=ps_malloc.
#include <Arduino.h>
#else
alignas(16) static uint8_t g_arena[DT_SETTING(TENSOR_ARENA_SIZE)];
#endif

namespace {

tflite::MicroInterpreter *g_interpreter = nullptr;

int Invoke(void) { return g_interpreter->Invoke() == kTfLiteOk ? 0 : 1; }

uint8_t *Arena(void) {
#ifdef DT_ARENA_ALLOCATE
  // 16 bytes over for alignment; never freed (the interpreter lives as long as the firmware).
  uint8_t *raw = static_cast<uint8_t *>(DT_ARENA_ALLOCATE(DT_SETTING(TENSOR_ARENA_SIZE) + 16));
  return raw ? reinterpret_cast<uint8_t *>((reinterpret_cast<uintptr_t>(raw) + 15) & ~uintptr_t{15}) : nullptr;
#else
  return g_arena;
#endif
}

// The first op of the model that the generated op resolver does not register, else nullptr: named, so a
// setup failure says which (AllocateTensors fails on it with a message only TFLM's log shows).
const char *MissingOp(const tflite::Model *model, const tflite::MicroOpResolver &resolver) {
  const auto *codes = model->operator_codes();
  for (flatbuffers::uoffset_t i = 0; codes != nullptr && i < codes->size(); ++i) {
    const tflite::OperatorCode *code = codes->Get(i);
    // As TFLite's GetBuiltinCode: codes above 127 live in builtin_code, older ones in the deprecated field.
    const auto deprecated = static_cast<tflite::BuiltinOperator>(code->deprecated_builtin_code());
    const auto builtin = code->builtin_code() > deprecated ? code->builtin_code() : deprecated;
    if (builtin == tflite::BuiltinOperator_CUSTOM) {
      if (code->custom_code() == nullptr || resolver.FindOp(code->custom_code()->c_str()) == nullptr) {
        return "CUSTOM";
      }
    } else if (resolver.FindOp(builtin) == nullptr) {
      return tflite::EnumNameBuiltinOperator(builtin);
    }
  }
  return nullptr;
}

}  // namespace

extern "C" const char *dt_tflm_setup(dt_platform *platform) {
  static char failure[112];
  const tflite::Model *model = tflite::GetModel(DT_MODEL_DATA);
  if (model->version() != TFLITE_SCHEMA_VERSION) return "model schema version differs from the runtime's";
  uint8_t *arena = Arena();
  if (arena == nullptr) return "no memory for the tensor arena";
  static auto resolver = DT_CREATE_OP_RESOLVER();
  const char *missing = MissingOp(model, resolver);
  if (missing != nullptr) {
    snprintf(failure, sizeof(failure), "op %s is not in the op resolver (export the model again)", missing);
    return failure;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, arena, DT_TFLM_INTERPRETER_ARGUMENTS);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return "AllocateTensors failed: the " DT_STR(DT_SETTING(TENSOR_ARENA_SIZE)) "-byte arena is too small, or a "
           "kernel refused the model (TFLM's log says which)";
  }
  TfLiteTensor *input = interpreter.input(0);
  TfLiteTensor *output = interpreter.output(0);
  if (input->type != kTfLiteInt8 || input->bytes != DT_INPUT_ELEMENTS) return "input tensor is not as exported";
  if (output->type != kTfLiteInt8 || output->bytes != DT_NUM_CLASSES) return "output tensor is not as exported";
  g_interpreter = &interpreter;
  platform->invoke = Invoke;
  platform->input = input->data.int8;
  platform->output = output->data.int8;
  return nullptr;
}
