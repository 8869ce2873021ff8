/* The emulated Cortex-M4F board (QEMU mps2-an386): start-up, SysTick cycle counting, semihosting and UART0.
 *
 * Under ``qemu-system-arm -icount shift=0`` every instruction takes 1 ns of virtual time and SysTick runs
 * on the 25 MHz system clock, so one SysTick tick is 40 instructions: counts are deterministic and
 * machine-independent. Semihosting (``-semihosting``) gives the host's stdout and an exit code.
 */
#include "mps2_an386.h"

#include <stdint.h>
#include <string.h>

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define UART0_DATA (*(volatile uint32_t *)0x40004000u)
#define UART0_STATE (*(volatile uint32_t *)0x40004004u) /* bit 0: transmitter full, bit 1: a byte received */
#define UART0_CTRL (*(volatile uint32_t *)0x40004008u)  /* bit 0: transmit enable, bit 1: receive enable */
#define UART0_BAUDDIV (*(volatile uint32_t *)0x40004010u)
#define SYSTICK_RELOAD 0xFFFFFFu

extern uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top;
typedef void (*dt_constructor)(void);
extern const dt_constructor __init_array_start[], __init_array_end[];
int main(void);
void *__dso_handle = 0; /* C++ objects register their (never run) destructors against it */

static volatile uint32_t g_wraps;

static uint32_t semihost(uint32_t operation, const void *argument) {
  register uint32_t r0 __asm__("r0") = operation;
  register const void *r1 __asm__("r1") = argument;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void dt_board_write(const char *text) { semihost(0x04u, text); /* SYS_WRITE0 */ }

void dt_board_exit(int code) {
  const uint32_t block[2] = {0x20026u, (uint32_t)code}; /* ADP_Stopped_ApplicationExit, exit code */
  semihost(0x20u, block);                               /* SYS_EXIT_EXTENDED */
  for (;;) {
  }
}

uint64_t dt_board_instructions(void) {
  uint32_t wraps, value;
  do { /* a wrap between the two reads would pair the new count with the old wraps */
    wraps = g_wraps;
    value = SYST_CVR;
  } while (wraps != g_wraps);
  return ((uint64_t)wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value)) * DT_BOARD_INSTRUCTIONS_PER_TICK;
}

void dt_board_uart_init(void) {
  UART0_BAUDDIV = 16; /* the smallest divider QEMU's model accepts; the emulated link has no baud rate */
  UART0_CTRL = 3u;
}

int dt_board_uart_read(void) { return (UART0_STATE & 2u) ? (int)(UART0_DATA & 0xFFu) : -1; }

void dt_board_uart_write(const char *bytes, uint32_t length) {
  uint32_t i;
  for (i = 0; i < length; ++i) {
    while (UART0_STATE & 1u) {
    }
    UART0_DATA = (uint8_t)bytes[i];
  }
}

static void systick(void) { ++g_wraps; }

static void fault(void) { dt_board_exit(99); }

void dt_reset(void) {
  memcpy(&_data_start, &_data_load, (size_t)((char *)&_data_end - (char *)&_data_start));
  memset(&_bss_start, 0, (size_t)((char *)&_bss_end - (char *)&_bss_start));
  CPACR |= 0xFu << 20; /* CP10 and CP11: the FPU */
  __asm__ volatile("dsb\n isb");
  for (const dt_constructor *c = __init_array_start; c < __init_array_end; ++c) (*c)(); /* C++ statics */
  SYST_RVR = SYSTICK_RELOAD;
  SYST_CVR = 0;
  SYST_CSR = 7; /* processor clock, interrupt on wrap, enabled */
  while (SYST_CVR == 0) { /* until the first reload: a count read at 0 would look like a full period */
  }
  dt_board_exit(main());
}

typedef void (*dt_vector)(void);
__attribute__((section(".vectors"), used)) static const dt_vector g_vectors[16] = {
    (dt_vector)(uintptr_t)&_stack_top, dt_reset, fault, fault, fault, fault, fault, 0, 0, 0, 0, fault, fault, 0,
    fault, systick};
