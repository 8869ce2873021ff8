/* The model's settings under generic names.
 *
 * Each model's exported NAME_model_settings.h prefixes its macros with NAME_ (so two models can share a
 * firmware). dt_model.h, generated next to the exported files, includes that header and defines
 * DT_MODEL_PREFIX; this header maps the prefixed macros to the DT_ names the firmware core uses.
 */
#ifndef DT_CONFIG_H_
#define DT_CONFIG_H_

#include "dt_model.h"

#define DT_PASTE_(prefix, key) prefix##_##key
#define DT_PASTE(prefix, key) DT_PASTE_(prefix, key)
#define DT_SETTING(key) DT_PASTE(DT_MODEL_PREFIX, key)
#define DT_STR_(x) #x
#define DT_STR(x) DT_STR_(x)

#define DT_MODEL_VARIANT DT_SETTING(MODEL_VARIANT)
#define DT_MODEL_SHA256 DT_SETTING(MODEL_SHA256)
#define DT_INPUT_ELEMENTS DT_SETTING(INPUT_ELEMENTS)
#define DT_INPUT_SCALE DT_SETTING(INPUT_SCALE)
#define DT_INPUT_ZERO_POINT DT_SETTING(INPUT_ZERO_POINT)
#define DT_OUTPUT_SCALE DT_SETTING(OUTPUT_SCALE)
#define DT_OUTPUT_ZERO_POINT DT_SETTING(OUTPUT_ZERO_POINT)
#define DT_NUM_CLASSES DT_SETTING(NUM_CLASSES)
#define DT_LABELS DT_SETTING(LABELS)
#define DT_HAS_FRONTEND DT_SETTING(HAS_FRONTEND)

#if !DT_SETTING(INPUT_IS_INT8) || !DT_SETTING(OUTPUT_IS_INT8)
#error "the firmware core runs int8 models: export a full-integer variant (int8, qat-int8, ...)"
#endif

#if DT_HAS_FRONTEND
#define DT_CHUNK_SAMPLES DT_SETTING(CHUNK_SAMPLES)
#define DT_NORMALIZE_AUDIO DT_SETTING(NORMALIZE_AUDIO)
#define DT_WINDOW_SAMPLES DT_SETTING(WINDOW_SAMPLES)
#define DT_HOP_SAMPLES DT_SETTING(HOP_SAMPLES)
#define DT_FFT_SIZE DT_SETTING(FFT_SIZE)
#define DT_FRAMES DT_SETTING(FRAMES)
#define DT_MEL_BINS DT_SETTING(MEL_BINS)
#define DT_SAMPLE_RATE DT_SETTING(SAMPLE_RATE)
#define DT_MEL_EDGES_MEL DT_SETTING(MEL_EDGES_MEL)
#define DT_HAS_TOP_DB DT_SETTING(HAS_TOP_DB)
#define DT_TOP_DB DT_SETTING(TOP_DB)
#define DT_IMAGE_HEIGHT DT_SETTING(IMAGE_HEIGHT)
#define DT_IMAGE_WIDTH DT_SETTING(IMAGE_WIDTH)
#define DT_IMAGE_CHANNELS DT_SETTING(IMAGE_CHANNELS)
#define DT_RESIZE_ANTIALIAS DT_SETTING(RESIZE_ANTIALIAS)
/* Option flags exist only for the chosen option; in #if an undefined one evaluates to 0. */
#define DT_COLOR_MAP_GRAY DT_SETTING(COLOR_MAP_GRAY)
#define DT_COLOR_MAP_LUT DT_SETTING(COLOR_MAP_LUT)
#define DT_RESIZE_NEAREST DT_SETTING(RESIZE_NEAREST)
#define DT_NORMALIZATION_TF DT_SETTING(NORMALIZATION_TF)
#define DT_NORMALIZATION_TORCH DT_SETTING(NORMALIZATION_TORCH)
#define DT_NORMALIZATION_CAFFE DT_SETTING(NORMALIZATION_CAFFE)
#endif

#define DT_FFT_BINS (DT_FFT_SIZE / 2 + 1)

#endif /* DT_CONFIG_H_ */
