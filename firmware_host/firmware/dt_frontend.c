/* See dt_frontend.h. Comments name the Python function each step mirrors. */
#include "dt_frontend.h"

#include <math.h>

#include "dt_config.h"

#if DT_HAS_FRONTEND

#define DT_DB_AMIN 1e-16f
#define DT_PEAK_LEVEL 0.7079f

#if DT_COLOR_MAP_GRAY
#define DT_PLANES 1
#else
#define DT_PLANES 3
static const float kLut[256 * 3] = DT_COLOR_MAP_LUT;
#endif

/* The tables come computed from the settings header (NAME_frontend tables of export/settings.py): no
 * set-up arithmetic on the device, and every weight is the float32 the Python frontend uses. */
static const float kWindow[DT_WINDOW_SAMPLES] = DT_WINDOW;
static const float kTwiddle[] = DT_TWIDDLES;
static const uint16_t kMelBand[DT_MEL_BIN_COUNT] = DT_MEL_BAND;
static const float kMelWeightLow[DT_MEL_BIN_COUNT] = DT_MEL_WEIGHT_LOW;
static const float kMelWeightHigh[DT_MEL_BIN_COUNT] = DT_MEL_WEIGHT_HIGH;
static const uint16_t kTimeTapIndex[DT_IMAGE_WIDTH * DT_TIME_TAPS] = DT_TIME_TAP_INDEX;
static const float kTimeTapWeight[DT_IMAGE_WIDTH * DT_TIME_TAPS] = DT_TIME_TAP_WEIGHT;
static const uint16_t kMelTapIndex[DT_IMAGE_HEIGHT * DT_MEL_TAPS] = DT_MEL_TAP_INDEX;
static const float kMelTapWeight[DT_IMAGE_HEIGHT * DT_MEL_TAPS] = DT_MEL_TAP_WEIGHT;

#if DT_HAS_MFCC
static const float kDct[DT_FEATURE_BINS * DT_MEL_BINS] = DT_DCT;
#endif

static float g_frame[DT_FFT_SIZE]; /* one windowed frame; a power-of-two size transforms it in place */
static float g_mel[DT_FRAMES * DT_MEL_BINS]; /* (frames, mels): power, then dB, then [0, 1] */
static float g_rows[DT_MEL_TAPS][DT_IMAGE_WIDTH];

size_t dt_frontend_static_bytes(void) { return sizeof(g_frame) + sizeof(g_mel) + sizeof(g_rows); }

size_t dt_frontend_table_bytes(void) {
  return sizeof(kWindow) + sizeof(kTwiddle) + sizeof(kMelBand) + sizeof(kMelWeightLow) + sizeof(kMelWeightHigh) +
         sizeof(kTimeTapIndex) + sizeof(kTimeTapWeight) + sizeof(kMelTapIndex) + sizeof(kMelTapWeight)
#if !DT_COLOR_MAP_GRAY
         + sizeof(kLut)
#endif
#if DT_HAS_MFCC
         + sizeof(kDct)
#endif
      ;
}

/* Adds bin ``bin``'s power to the (at most two, adjacent) mel bands it feeds; ``mel`` has one spare band
 * above the last, which the last bins feed with weight 0. Bins in ascending order, as before. */
static void add_to_mel(float *mel, int bin, float power) {
  const int k = bin - DT_MEL_FIRST_BIN;
  mel[kMelBand[k]] += power * kMelWeightLow[k];
  mel[kMelBand[k] + 1] += power * kMelWeightHigh[k];
}

#if (DT_FFT_SIZE & (DT_FFT_SIZE - 1)) == 0
/* |X[k]|^2 of the real frame, k = 1 .. N / 2, into the mel bands: the frame read as N / 2 complex values
 * (even samples real, odd imaginary) is transformed with a radix-2 FFT, and the two interleaved half
 * spectra are split with the twiddles W^k = exp(-2 pi i k / N): half the work of a complex N-point FFT. The
 * first two stages are one pass without products; each later stage loads a twiddle once for all the
 * butterflies that use it. */
static void frame_to_mel(float *mel) {
  enum { N = DT_FFT_SIZE, M = DT_FFT_SIZE / 2 };
  float *z = g_frame;
  int i, j, len;
  for (i = 1, j = 0; i < M; ++i) { /* bit-reversal permutation */
    int bit = M >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      float t = z[2 * i]; z[2 * i] = z[2 * j]; z[2 * j] = t;
      t = z[2 * i + 1]; z[2 * i + 1] = z[2 * j + 1]; z[2 * j + 1] = t;
    }
  }
  len = 2;
#if DT_FFT_SIZE >= 8
  for (i = 0; i < M; i += 4) { /* the first two stages at once: their twiddles are 1 and -i, no products */
    float *p = &z[2 * i];
    const float r0 = p[0] + p[2], i0 = p[1] + p[3], r1 = p[0] - p[2], i1 = p[1] - p[3];
    const float r2 = p[4] + p[6], i2 = p[5] + p[7], r3 = p[4] - p[6], i3 = p[5] - p[7];
    p[0] = r0 + r2; p[1] = i0 + i2; p[4] = r0 - r2; p[5] = i0 - i2;
    p[2] = r1 + i3; p[3] = i1 - r3; p[6] = r1 - i3; p[7] = i1 + r3; /* b × -i = (b_im, -b_re) */
  }
  len = 8;
#endif
  for (; len <= M; len <<= 1) { /* exp(-2 pi i j / len) = W^(j N / len) */
    const int half = len / 2, stride = N / len;
    for (j = 0; j < half; ++j) { /* one twiddle for every butterfly that uses it */
      const float wr = kTwiddle[2 * j * stride], wi = kTwiddle[2 * j * stride + 1];
      float *a = &z[2 * j], *b = &z[2 * (j + half)];
      for (i = 0; i < M; i += len, a += 2 * len, b += 2 * len) {
        const float tr = b[0] * wr - b[1] * wi, ti = b[0] * wi + b[1] * wr;
        b[0] = a[0] - tr; b[1] = a[1] - ti;
        a[0] += tr; a[1] += ti;
      }
    }
  }
  for (i = DT_MEL_FIRST_BIN; i < DT_MEL_FIRST_BIN + DT_MEL_BIN_COUNT; ++i) {
    const float *a = &z[2 * (i % M)], *b = &z[2 * ((M - i) % M)]; /* Z[k] and Z[M - k] (conjugated) */
    const float even_re = 0.5f * (a[0] + b[0]), even_im = 0.5f * (a[1] - b[1]);
    const float odd_re = 0.5f * (a[1] + b[1]), odd_im = -0.5f * (a[0] - b[0]);
    const float wr = kTwiddle[2 * i], wi = kTwiddle[2 * i + 1];
    const float re = even_re + (odd_re * wr - odd_im * wi), im = even_im + (odd_re * wi + odd_im * wr);
    add_to_mel(mel, i, re * re + im * im);
  }
}
#else
/* Not a power of two: the direct sum over the real frame, for the bins that feed a band only. */
static void frame_to_mel(float *mel) {
  int i, j;
  for (i = DT_MEL_FIRST_BIN; i < DT_MEL_FIRST_BIN + DT_MEL_BIN_COUNT; ++i) {
    float re = 0.0f, im = 0.0f;
    int k = 0; /* i * j mod N */
    for (j = 0; j < DT_FFT_SIZE; ++j) {
      re += g_frame[j] * kTwiddle[2 * k];
      im += g_frame[j] * kTwiddle[2 * k + 1];
      k += i;
      if (k >= DT_FFT_SIZE) k -= DT_FFT_SIZE;
    }
    add_to_mel(mel, i, re * re + im * im);
  }
}
#endif

/* Frontend.spectrogram: (peak normalisation) → STFT power → mel → dB (→ top_db floor) into g_mel. */
static void mel_spectrogram(const uint8_t *pcm_le) {
  float gain = 1.0f;
  int t, i, m;
#if DT_NORMALIZE_AUDIO
  int peak = 0; /* max |sample| in int16 units: exact, as the float32 maximum of sample / 32768 */
  for (i = 0; i < DT_CHUNK_SAMPLES; ++i) {
    const int s = (int16_t)(uint16_t)(pcm_le[2 * i] | (pcm_le[2 * i + 1] << 8));
    if ((s < 0 ? -s : s) > peak) peak = s < 0 ? -s : s;
  }
  gain = peak > 0 ? DT_PEAK_LEVEL / ((float)peak / 32768.0f) : 0.0f;
#endif
  for (t = 0; t < DT_FRAMES; ++t) {
    const uint8_t *at = pcm_le + 2 * t * DT_HOP_SAMPLES;
    float mel[DT_MEL_BINS + 1] = {0.0f};
    for (i = 0; i < DT_WINDOW_SAMPLES; ++i) {
      g_frame[i] = (float)(int16_t)(uint16_t)(at[2 * i] | (at[2 * i + 1] << 8)) * gain * kWindow[i];
    }
    for (; i < DT_FFT_SIZE; ++i) g_frame[i] = 0.0f;
    frame_to_mel(mel);
    for (m = 0; m < DT_MEL_BINS; ++m) g_mel[t * DT_MEL_BINS + m] = mel[m];
  }
  {
    float top = -1e30f;
    for (i = 0; i < DT_FRAMES * DT_MEL_BINS; ++i) { /* power_to_db */
      g_mel[i] = 10.0f * log10f(g_mel[i] > DT_DB_AMIN ? g_mel[i] : DT_DB_AMIN);
      if (g_mel[i] > top) top = g_mel[i];
    }
#if DT_HAS_TOP_DB
    for (i = 0; i < DT_FRAMES * DT_MEL_BINS; ++i) {
      if (g_mel[i] < top - DT_TOP_DB) g_mel[i] = top - DT_TOP_DB;
    }
#endif
    (void)top;
  }
}

#if DT_HAS_MFCC
/* Frontend.plot's mel_db @ dct: each frame's first FEATURE_BINS DCT-II coefficients, stored (frames,
 * FEATURE_BINS) from the start of g_mel; a frame is copied whole before its row is overwritten, and later
 * frames lie above every row written. */
static void cepstra(void) {
  float frame[DT_MEL_BINS];
  int t, k, m;
  for (t = 0; t < DT_FRAMES; ++t) {
    for (m = 0; m < DT_MEL_BINS; ++m) frame[m] = g_mel[t * DT_MEL_BINS + m];
    for (k = 0; k < DT_FEATURE_BINS; ++k) {
      float sum = 0.0f;
      for (m = 0; m < DT_MEL_BINS; ++m) sum += frame[m] * kDct[k * DT_MEL_BINS + m];
      g_mel[t * DT_FEATURE_BINS + k] = sum;
    }
  }
}
#endif

/* minmax_scale over the whole chunk's (frames, FEATURE_BINS) values; a constant chunk becomes zeros. */
static void minmax_scale(void) {
  float low = g_mel[0], high = g_mel[0];
  int i;
  for (i = 1; i < DT_FRAMES * DT_FEATURE_BINS; ++i) {
    if (g_mel[i] < low) low = g_mel[i];
    if (g_mel[i] > high) high = g_mel[i];
  }
  for (i = 0; i < DT_FRAMES * DT_FEATURE_BINS; ++i) {
    g_mel[i] = high - low > 0.0f ? (g_mel[i] - low) / (high - low) : 0.0f;
  }
}

/* apply_colormap for one value and plane: linear interpolation between the LUT's nodes. numpy computes
 * node + frac · step in double (float32 position − int32 index promotes) and stores float32: the product
 * of two float32 is exact in double, so a fused multiply-add (one rounding; VFMA on a Cortex-M4F, no
 * soft double) gives the same float32 except where the double sum's rounding makes a float32 tie. */
static float plane_value(float scaled, int plane) {
#if DT_COLOR_MAP_GRAY
  (void)plane;
  return scaled;
#else
  const float position = (scaled < 0.0f ? 0.0f : (scaled > 1.0f ? 1.0f : scaled)) * 255.0f;
  int lower = (int)position;
  const float node = kLut[3 * (lower > 254 ? 254 : lower) + plane];
  float step;
  if (lower > 254) lower = 254;
  step = kLut[3 * (lower + 1) + plane] - node;
  return fmaf(position - (float)lower, step, node);
#endif
}

/* normalize_image for one [0, 255] value of output channel ``channel``, then int8 quantization
 * (quantize_input: round half to even, + zero point, clip). */
static int8_t model_value(float pixel, int channel) {
  float x, q;
#if DT_NORMALIZATION_TF
  (void)channel;
  x = pixel / 127.5f - 1.0f;
#elif DT_NORMALIZATION_TORCH
  static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  x = (pixel / 255.0f - mean[channel]) / std[channel];
#elif DT_NORMALIZATION_CAFFE
  static const float mean_bgr[3] = {103.939f, 116.779f, 123.68f};
  x = pixel - mean_bgr[channel];
#else
  (void)channel;
  x = pixel;
#endif
  q = nearbyintf(x / DT_INPUT_SCALE) + (float)DT_INPUT_ZERO_POINT;
  return (int8_t)(q < -128.0f ? -128 : (q > 127.0f ? 127 : (int)q));
}

/* Output channel of image plane ``plane``: gray feeds every channel; caffe reverses RGB to BGR. */
static void write_pixel(int8_t *input, int h, int w, int plane, float pixel) {
  int8_t *at = &input[(h * DT_IMAGE_WIDTH + w) * DT_IMAGE_CHANNELS];
#if DT_PLANES == 1
  int c;
  (void)plane;
  for (c = 0; c < DT_IMAGE_CHANNELS; ++c) at[c] = model_value(pixel, c);
#elif DT_NORMALIZATION_CAFFE
  at[2 - plane] = model_value(pixel, 2 - plane);
#else
  at[plane] = model_value(pixel, plane);
#endif
}

/* Frontend._plot_batch without the image buffer: per output row, the time resize of the mel rows it
 * needs (same float order as resizing the whole plane first), then the mel resize, straight to int8. */
static void render(int8_t *input) {
  int h, w, p, j, k;
  for (h = 0; h < DT_IMAGE_HEIGHT; ++h) {
    const uint16_t *mel_index = &kMelTapIndex[h * DT_MEL_TAPS];
    const float *mel_weight = &kMelTapWeight[h * DT_MEL_TAPS];
    for (p = 0; p < DT_PLANES; ++p) {
      for (j = 0; j < DT_MEL_TAPS; ++j) {
        for (w = 0; w < DT_IMAGE_WIDTH; ++w) {
          const uint16_t *time_index = &kTimeTapIndex[w * DT_TIME_TAPS];
          const float *time_weight = &kTimeTapWeight[w * DT_TIME_TAPS];
          float v = plane_value(g_mel[time_index[0] * DT_FEATURE_BINS + mel_index[j]], p) * time_weight[0];
          for (k = 1; k < DT_TIME_TAPS; ++k) {
            v += plane_value(g_mel[time_index[k] * DT_FEATURE_BINS + mel_index[j]], p) * time_weight[k];
          }
          g_rows[j][w] = v;
        }
      }
      for (w = 0; w < DT_IMAGE_WIDTH; ++w) {
        float v = g_rows[0][w] * mel_weight[0];
        for (j = 1; j < DT_MEL_TAPS; ++j) v += g_rows[j][w] * mel_weight[j];
        v *= 255.0f;
        write_pixel(input, h, w, p, v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
      }
    }
  }
}

void dt_frontend_run(const uint8_t *pcm_le, int8_t *input) {
  mel_spectrogram(pcm_le);
#if DT_HAS_MFCC
  cepstra();
#endif
  minmax_scale();
  render(input);
}

#else /* no frontend: the model takes precomputed input only */

void dt_frontend_run(const uint8_t *pcm_le, int8_t *input) { (void)pcm_le; (void)input; }
size_t dt_frontend_static_bytes(void) { return 0; }
size_t dt_frontend_table_bytes(void) { return 0; }

#endif
