/* The DeepSpectrumLite frontend on the device: one chunk of int16 PCM → the model's int8 input tensor.
 *
 * Same pipeline and float32 operation order as dslite_tiny/audio/frontend.py, so the int8 tensor equals
 * the host's (tests/test_firmware.py holds it to >= 99.9 % identical elements, none off by more than 1).
 * All parameters come from the exported NAME_model_settings.h; all buffers are static.
 */
#ifndef DT_FRONTEND_H_
#define DT_FRONTEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DT_CHUNK_SAMPLES little-endian int16 samples → DT_INPUT_ELEMENTS int8 values (H × W × C), written
 * straight into ``input`` (the model's input tensor, so no image buffer is needed). */
void dt_frontend_run(const uint8_t *pcm_le, int8_t *input);

/* Bytes of static RAM the frontend uses, and of its constant tables in flash (what the board fit check
 * budgets; the tables come computed in the settings header, so there is nothing to initialise). */
size_t dt_frontend_static_bytes(void);
size_t dt_frontend_table_bytes(void);

#ifdef __cplusplus
}
#endif

#endif /* DT_FRONTEND_H_ */
