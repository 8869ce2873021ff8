/* The emulated Cortex-M4F board (QEMU mps2-an386): see mps2_an386.c. */
#ifndef MPS2_AN386_H_
#define MPS2_AN386_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SysTick on the 25 MHz system clock, 1 instruction per ns of virtual time (-icount shift=0). */
#define DT_BOARD_INSTRUCTIONS_PER_TICK 40u

/* Instructions executed since reset (multiple of 40). */
uint64_t dt_board_instructions(void);
/* A NUL-terminated string to the host's stdout (semihosting). */
void dt_board_write(const char *text);
/* Ends the emulation with exit code ``code``. */
void dt_board_exit(int code) __attribute__((noreturn));

/* UART0 (CMSDK APB UART, QEMU's -serial): the serial port of the QEMU device. */
void dt_board_uart_init(void);
/* The next received byte, or -1 if none is waiting. */
int dt_board_uart_read(void);
/* Sends ``length`` bytes, waiting while the transmitter is busy. */
void dt_board_uart_write(const char *bytes, uint32_t length);

#ifdef __cplusplus
}
#endif

#endif /* MPS2_AN386_H_ */
