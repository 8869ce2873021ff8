/* See dt_frontend.h. Comments name the Python function each step mirrors. */
#include "dt_frontend.h"

#include <math.h>

#include "dt_config.h"

#if DT_HAS_FRONTEND

#define DT_TWO_PI 6.283185307179586476925286766559
#define DT_DB_AMIN 1e-16f
#define DT_PEAK_LEVEL 0.7079f

/* Room for the non-zero taps per output pixel of the resize (resize_taps): bilinear touches 2 inputs,
 * nearest 1 (2 slots keep the loops' bounds provable), the anti-aliased triangle 2 * shrink factor + 1. */
#if DT_RESIZE_ANTIALIAS && !DT_RESIZE_NEAREST
#define DT_TIME_TAPS (DT_FRAMES > DT_IMAGE_WIDTH ? 2 * DT_FRAMES / DT_IMAGE_WIDTH + 3 : 2)
#define DT_MEL_TAPS (DT_MEL_BINS > DT_IMAGE_HEIGHT ? 2 * DT_MEL_BINS / DT_IMAGE_HEIGHT + 3 : 2)
#else
#define DT_TIME_TAPS 2
#define DT_MEL_TAPS 2
#endif

#if DT_COLOR_MAP_GRAY
#define DT_PLANES 1
#else
#define DT_PLANES 3
static const float kLut[256 * 3] = DT_COLOR_MAP_LUT;
#endif

typedef struct {
  uint16_t index[DT_TIME_TAPS > DT_MEL_TAPS ? DT_TIME_TAPS : DT_MEL_TAPS];
  float weight[DT_TIME_TAPS > DT_MEL_TAPS ? DT_TIME_TAPS : DT_MEL_TAPS];
  uint8_t count;
} dt_taps;

static const float kMelEdges[DT_MEL_BINS + 2] = DT_MEL_EDGES_MEL;
static float g_window[DT_WINDOW_SAMPLES];
static float g_twiddle[2 * DT_FFT_SIZE]; /* exp(-2 pi i k / N), interleaved re, im */
static float g_fft[2 * DT_FFT_SIZE];
static float g_bin_mel[DT_FFT_BINS];
static float g_mel[DT_FRAMES * DT_MEL_BINS]; /* (frames, mels): power, then dB, then [0, 1] */
static dt_taps g_time_taps[DT_IMAGE_WIDTH];
static dt_taps g_mel_taps[DT_IMAGE_HEIGHT]; /* already flipped: row 0 is the highest frequency */
static float g_rows[DT_MEL_TAPS][DT_IMAGE_WIDTH];
#if (DT_FFT_SIZE & (DT_FFT_SIZE - 1)) != 0
#define DT_DIRECT_DFT 1 /* not a power of two: the direct sum, which needs an output buffer */
static float g_dft[2 * DT_FFT_SIZE];
#endif

size_t dt_frontend_static_bytes(void) {
  return sizeof(g_window) + sizeof(g_twiddle) + sizeof(g_fft) + sizeof(g_bin_mel) + sizeof(g_mel) +
         sizeof(g_time_taps) + sizeof(g_mel_taps) + sizeof(g_rows)
#if DT_DIRECT_DFT
         + sizeof(g_dft)
#endif
      ;
}

/* resize_matrix + resize_taps for one output position: tf.image.resize with half-pixel centres. */
static void resize_taps(int in_size, int out_size, int out, dt_taps *taps) {
  const float scale = (float)in_size / (float)out_size;
  const float centre = ((float)out + 0.5f) * scale;
  int i;
  taps->count = 0;
#if DT_RESIZE_NEAREST
  i = (int)floorf(centre);
  taps->index[0] = (uint16_t)(i < 0 ? 0 : (i > in_size - 1 ? in_size - 1 : i));
  taps->weight[0] = 1.0f;
  taps->count = 1;
#else
  if (DT_RESIZE_ANTIALIAS && in_size > out_size) {
    /* _triangle_weights: a triangle widened by the shrink factor, renormalised (in double, as numpy). */
    double w[DT_FRAMES > DT_MEL_BINS ? DT_FRAMES : DT_MEL_BINS];
    double sum = 0.0;
    for (i = 0; i < in_size; ++i) {
      const double d = 1.0 - fabs(((double)i + 0.5 - (double)centre) / (double)scale);
      w[i] = d > 0.0 ? d : 0.0;
      sum += w[i];
    }
    for (i = 0; i < in_size; ++i) {
      if (w[i] > 0.0) {
        taps->index[taps->count] = (uint16_t)i;
        taps->weight[taps->count++] = (float)(w[i] / sum);
      }
    }
    return;
  }
  {
    const float position = centre - 0.5f;
    const float lower = floorf(position);
    const float lerp = position - lower;
    const int low = (int)lower < 0 ? 0 : (int)lower;
    const int high = (int)ceilf(position) > in_size - 1 ? in_size - 1 : (int)ceilf(position);
    taps->index[0] = (uint16_t)low;
    if (low == high) {
      taps->weight[0] = (0.0f + (1.0f - lerp)) + lerp;
      taps->count = 1;
    } else {
      taps->weight[0] = 1.0f - lerp;
      taps->index[1] = (uint16_t)high;
      taps->weight[1] = lerp;
      taps->count = 2;
    }
  }
#endif
}

/* hz_to_mel: 1127 ln(1 + f / 700), the HTK scale of tf.signal.linear_to_mel_weight_matrix. */
static float hz_to_mel(float hz) { return 1127.0f * logf(1.0f + hz / 700.0f); }

void dt_frontend_init(void) {
  int i;
  const float bin_hz = ((float)DT_SAMPLE_RATE / 2.0f) / (float)(DT_FFT_BINS - 1);
  for (i = 0; i < DT_WINDOW_SAMPLES; ++i) { /* hann_window: periodic */
    g_window[i] = (float)(0.5 - 0.5 * cos(DT_TWO_PI * (double)i / (double)DT_WINDOW_SAMPLES));
  }
  for (i = 0; i < DT_FFT_SIZE; ++i) {
    g_twiddle[2 * i] = (float)cos(DT_TWO_PI * (double)i / (double)DT_FFT_SIZE);
    g_twiddle[2 * i + 1] = (float)-sin(DT_TWO_PI * (double)i / (double)DT_FFT_SIZE);
  }
  for (i = 0; i < DT_FFT_BINS; ++i) { /* _tf_linspace32(0, sr / 2): the end point exact */
    g_bin_mel[i] = hz_to_mel(i == DT_FFT_BINS - 1 ? (float)DT_SAMPLE_RATE / 2.0f : bin_hz * (float)i);
  }
  for (i = 0; i < DT_IMAGE_WIDTH; ++i) resize_taps(DT_FRAMES, DT_IMAGE_WIDTH, i, &g_time_taps[i]);
  for (i = 0; i < DT_IMAGE_HEIGHT; ++i) {
    resize_taps(DT_MEL_BINS, DT_IMAGE_HEIGHT, DT_IMAGE_HEIGHT - 1 - i, &g_mel_taps[i]);
  }
}

/* In-place complex DFT of g_fft: radix-2 when the size is a power of two, else the direct sum. */
static void fft(void) {
  const int n = DT_FFT_SIZE;
  int i, j;
#if DT_DIRECT_DFT
  {
    float *out = g_dft;
    for (i = 0; i < n; ++i) {
      float re = 0.0f, im = 0.0f;
      for (j = 0; j < n; ++j) {
        const int k = (int)(((long)i * j) % n);
        re += g_fft[2 * j] * g_twiddle[2 * k] - g_fft[2 * j + 1] * g_twiddle[2 * k + 1];
        im += g_fft[2 * j] * g_twiddle[2 * k + 1] + g_fft[2 * j + 1] * g_twiddle[2 * k];
      }
      out[2 * i] = re;
      out[2 * i + 1] = im;
    }
    for (i = 0; i < 2 * n; ++i) g_fft[i] = out[i];
  }
#else
  int len;
  for (i = 1, j = 0; i < n; ++i) { /* bit-reversal permutation */
    int bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      float t = g_fft[2 * i]; g_fft[2 * i] = g_fft[2 * j]; g_fft[2 * j] = t;
      t = g_fft[2 * i + 1]; g_fft[2 * i + 1] = g_fft[2 * j + 1]; g_fft[2 * j + 1] = t;
    }
  }
  for (len = 2; len <= n; len <<= 1) {
    const int stride = n / len;
    for (i = 0; i < n; i += len) {
      for (j = 0; j < len / 2; ++j) {
        const float wr = g_twiddle[2 * j * stride], wi = g_twiddle[2 * j * stride + 1];
        float *a = &g_fft[2 * (i + j)], *b = &g_fft[2 * (i + j + len / 2)];
        const float tr = b[0] * wr - b[1] * wi, ti = b[0] * wi + b[1] * wr;
        b[0] = a[0] - tr; b[1] = a[1] - ti;
        a[0] += tr; a[1] += ti;
      }
    }
  }
#endif
}

static float sample(const uint8_t *pcm_le, int i) {
  return (float)(int16_t)(uint16_t)(pcm_le[2 * i] | (pcm_le[2 * i + 1] << 8)) / 32768.0f;
}

/* Frontend.spectrogram: (peak normalisation) → STFT power → mel → dB (→ top_db floor) into g_mel. */
static void mel_spectrogram(const uint8_t *pcm_le) {
  float gain = 1.0f;
  int t, i, m;
#if DT_NORMALIZE_AUDIO
  float peak = 0.0f;
  for (i = 0; i < DT_CHUNK_SAMPLES; ++i) {
    const float a = fabsf(sample(pcm_le, i));
    if (a > peak) peak = a;
  }
  gain = peak > 0.0f ? DT_PEAK_LEVEL / peak : 0.0f;
#endif
  for (t = 0; t < DT_FRAMES; ++t) {
    float *mel = &g_mel[t * DT_MEL_BINS];
    for (i = 0; i < DT_FFT_SIZE; ++i) {
      g_fft[2 * i] = i < DT_WINDOW_SAMPLES ? sample(pcm_le, t * DT_HOP_SAMPLES + i) * gain * g_window[i] : 0.0f;
      g_fft[2 * i + 1] = 0.0f;
    }
    fft();
    for (m = 0; m < DT_MEL_BINS; ++m) mel[m] = 0.0f;
    for (i = 1; i < DT_FFT_BINS; ++i) { /* mel_matrix: HTK triangles, no weight on DC */
      const float power = g_fft[2 * i] * g_fft[2 * i] + g_fft[2 * i + 1] * g_fft[2 * i + 1];
      for (m = 0; m < DT_MEL_BINS; ++m) {
        const float lower = kMelEdges[m], centre = kMelEdges[m + 1], upper = kMelEdges[m + 2];
        const float up = (g_bin_mel[i] - lower) / (centre - lower);
        const float down = (upper - g_bin_mel[i]) / (upper - centre);
        const float w = up < down ? up : down;
        if (w > 0.0f) mel[m] += power * w;
      }
    }
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

/* minmax_scale over the whole chunk; a constant chunk becomes zeros. */
static void minmax_scale(void) {
  float low = g_mel[0], high = g_mel[0];
  int i;
  for (i = 1; i < DT_FRAMES * DT_MEL_BINS; ++i) {
    if (g_mel[i] < low) low = g_mel[i];
    if (g_mel[i] > high) high = g_mel[i];
  }
  for (i = 0; i < DT_FRAMES * DT_MEL_BINS; ++i) {
    g_mel[i] = high - low > 0.0f ? (g_mel[i] - low) / (high - low) : 0.0f;
  }
}

/* apply_colormap for one value and plane: linear interpolation between the LUT's nodes, in double as
 * numpy promotes (float32 position − int32 index). */
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
  return (float)((double)node + ((double)position - (double)lower) * (double)step);
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
    const dt_taps *mt = &g_mel_taps[h];
    for (p = 0; p < DT_PLANES; ++p) {
      for (j = 0; j < mt->count; ++j) {
        for (w = 0; w < DT_IMAGE_WIDTH; ++w) {
          const dt_taps *tt = &g_time_taps[w];
          float v = plane_value(g_mel[tt->index[0] * DT_MEL_BINS + mt->index[j]], p) * tt->weight[0];
          for (k = 1; k < tt->count; ++k) {
            v += plane_value(g_mel[tt->index[k] * DT_MEL_BINS + mt->index[j]], p) * tt->weight[k];
          }
          g_rows[j][w] = v;
        }
      }
      for (w = 0; w < DT_IMAGE_WIDTH; ++w) {
        float v = g_rows[0][w] * mt->weight[0];
        for (j = 1; j < mt->count; ++j) v += g_rows[j][w] * mt->weight[j];
        v *= 255.0f;
        write_pixel(input, h, w, p, v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
      }
    }
  }
}

void dt_frontend_run(const uint8_t *pcm_le, int8_t *input) {
  mel_spectrogram(pcm_le);
  minmax_scale();
  render(input);
}

#else /* no frontend: the model takes precomputed input only */

void dt_frontend_init(void) {}
void dt_frontend_run(const uint8_t *pcm_le, int8_t *input) { (void)pcm_le; (void)input; }
size_t dt_frontend_static_bytes(void) { return 0; }

#endif
