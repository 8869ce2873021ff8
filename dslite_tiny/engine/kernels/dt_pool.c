/* MAX_POOL_2D and AVERAGE_POOL_2D. */
#include "dt_engine.h"
#include "dt_arith.h"

/* The pooling window of output (oy, ox) clipped to the input, as TFLite's reference pooling clips it. */
static void pool_window(const dt_pool_params *p, int32_t oy, int32_t ox, int32_t *y0, int32_t *y1, int32_t *x0,
                        int32_t *x1) {
  const int32_t top = oy * p->stride_h - p->pad_h, left = ox * p->stride_w - p->pad_w;
  *y0 = top < 0 ? 0 : top;
  *y1 = top + p->k_h < p->in_h ? top + p->k_h : p->in_h;
  *x0 = left < 0 ? 0 : left;
  *x1 = left + p->k_w < p->in_w ? left + p->k_w : p->in_w;
}

void dt_max_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out) {
  int32_t oy, ox, ch, y, x, y0, y1, x0, x1;
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      pool_window(p, oy, ox, &y0, &y1, &x0, &x1);
      for (ch = 0; ch < p->c; ++ch) {
        int32_t max = INT8_MIN;
        for (y = y0; y < y1; ++y) {
          for (x = x0; x < x1; ++x) max = in[(y * p->in_w + x) * p->c + ch] > max ? in[(y * p->in_w + x) * p->c + ch] : max;
        }
        out[(oy * p->out_w + ox) * p->c + ch] = (int8_t)clamp(max, p->act_min, p->act_max);
      }
    }
  }
}

void dt_average_pool_s8(const dt_pool_params *p, const int8_t *in, int8_t *out) {
  int32_t oy, ox, ch, y, x, y0, y1, x0, x1;
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      pool_window(p, oy, ox, &y0, &y1, &x0, &x1);
      {
        const int32_t count = (y1 - y0) * (x1 - x0);
        for (ch = 0; ch < p->c; ++ch) {
          int32_t sum = 0;
          for (y = y0; y < y1; ++y) {
            for (x = x0; x < x1; ++x) sum += in[(y * p->in_w + x) * p->c + ch];
          }
          /* round half away from zero, as the reference kernel */
          sum = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
          out[(oy * p->out_w + ox) * p->c + ch] = (int8_t)clamp(sum, p->act_min, p->act_max);
        }
      }
    }
  }
}
