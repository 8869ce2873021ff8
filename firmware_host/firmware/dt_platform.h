/* What the firmware core needs from a board (or the virtual device): a byte sink towards the host, a
 * microsecond clock, and the model behind an inference interface. The TFLM backend (dt_tflm.cc) fills it
 * on boards; firmware_host/virtual.py fills it with the tflite-micro wheel's interpreter.
 */
#ifndef DT_PLATFORM_H_
#define DT_PLATFORM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  void (*write)(const char *text, size_t length); /* bytes to the host (serial port) */
  uint32_t (*micros)(void);                        /* free-running microsecond clock (wraps) */
  const char *clock; /* what micros() counts, answered to clock%: "board-us" (wall-clock µs on a board),
                        "qemu-icount" (µs of QEMU's -icount time: thousands of instructions), "host-us" */
  int (*invoke)(void);                             /* one inference on *input; 0 when it succeeded */
  int8_t *input;                                   /* the model's input tensor: DT_INPUT_ELEMENTS int8 */
  const int8_t *output;                            /* the model's output tensor: DT_NUM_CLASSES int8 */
} dt_platform;

#ifdef __cplusplus
}
#endif

#endif /* DT_PLATFORM_H_ */
