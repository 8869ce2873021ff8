/* The serial protocol of firmware_host/PROTOCOL.md on the device: an 80-character command parser (as
 * EEMBC's), the hex (db) and binary (bulk, CRC-32) loaders, and the command handlers. Feed it every byte
 * that arrives; it answers through dt_platform.write. No dynamic allocation, no printf.
 */
#ifndef DT_PROTOCOL_H_
#define DT_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#include "dt_platform.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DT_MAX_COMMAND 80 /* characters including the terminating '%' (EE_CMD_SIZE) */
#define DT_BULK_TIMEOUT_US 1000000u /* silence that ends a bulk (and, after it, the discarding of its rest) */
#define DT_MAX_RUNS 100000             /* the largest N and W of infer / classify */

/* Resets all state, then announces m-init-done and m-ready (a boot, as the host sees it). */
void dt_protocol_init(const dt_platform *platform);

/* Bytes from the host, in arrival order. */
void dt_protocol_feed(const uint8_t *bytes, size_t length);

/* Call when idle: fails a bulk transfer silent for DT_BULK_TIMEOUT_US (see dt_protocol.c). */
void dt_protocol_poll(void);

/* Commands handled since the last dt_protocol_init. */
uint32_t dt_protocol_commands(void);

/* CRC-32 (IEEE 802.3, as zlib) of ``length`` bytes, continuing from ``crc`` (0 to start). */
uint32_t dt_crc32(uint32_t crc, const uint8_t *bytes, size_t length);

#ifdef __cplusplus
}
#endif

#endif /* DT_PROTOCOL_H_ */
