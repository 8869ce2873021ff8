/* The QEMU device: the firmware core (protocol and frontend) and the generated engine on the emulated
 * Cortex-M4F, talking the protocol over UART0 (QEMU's -serial, a TCP socket for the host).
 *
 * Its microsecond clock is QEMU's virtual time under -icount shift=0, one instruction per nanosecond: a
 * latency the device reports in µs is the instructions it took, divided by 1000. */
#include <stddef.h>
#include <stdint.h>

#include "dt_engine_backend.h"
#include "dt_protocol.h"
#include "mps2_an386.h"

static uint32_t micros(void) { return (uint32_t)(dt_board_instructions() / 1000u); }

static void write_uart(const char *text, size_t length) { dt_board_uart_write(text, (uint32_t)length); }

int main(void) {
  static dt_platform platform;
  dt_board_uart_init();
  platform.write = write_uart;
  platform.micros = micros;
  platform.clock = "qemu-icount";
  dt_engine_setup(&platform);
  dt_protocol_init(&platform);
  for (;;) {
    uint8_t bytes[64];
    size_t count = 0;
    int byte;
    while (count < sizeof(bytes) && (byte = dt_board_uart_read()) >= 0) bytes[count++] = (uint8_t)byte;
    if (count > 0) {
      dt_protocol_feed(bytes, count);
    } else {
      dt_protocol_poll();
    }
  }
}
