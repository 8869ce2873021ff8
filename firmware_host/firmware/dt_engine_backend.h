/* The generated engine (dslite-tiny export --target engine) behind the inference interface: a board that
 * runs it needs no TensorFlow Lite Micro. */
#ifndef DT_ENGINE_BACKEND_H_
#define DT_ENGINE_BACKEND_H_

#include "dt_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills platform->invoke, ->input and ->output with the engine's static buffers. */
void dt_engine_setup(dt_platform *platform);

#ifdef __cplusplus
}
#endif

#endif /* DT_ENGINE_BACKEND_H_ */
