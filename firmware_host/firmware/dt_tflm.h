/* The TensorFlow Lite Micro backend of the inference interface, for boards built with their own toolchain
 * (the generated Arduino and PlatformIO projects). */
#ifndef DT_TFLM_H_
#define DT_TFLM_H_

#include "dt_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the interpreter on the exported model, op resolver and arena, and fills platform->invoke,
 * ->input and ->output. Returns NULL, or why the model cannot run (reported to the host as e-[...]). */
const char *dt_tflm_setup(dt_platform *platform);

#ifdef __cplusplus
}
#endif

#endif /* DT_TFLM_H_ */
