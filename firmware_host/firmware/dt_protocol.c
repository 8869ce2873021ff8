/* See dt_protocol.h and firmware_host/PROTOCOL.md. */
#include "dt_protocol.h"

#include <string.h>

#include "dt_config.h"
#include "dt_frontend.h"

#define DT_FIRMWARE "dslite-tiny firmware 2"
#define DT_MAX_TOKENS 4
#define DT_DB_BYTES_PER_LINE 38

#if DT_HAS_FRONTEND && 2 * DT_CHUNK_SAMPLES > DT_INPUT_ELEMENTS
#define DT_BUFFER_BYTES (2 * DT_CHUNK_SAMPLES)
#else
#define DT_BUFFER_BYTES DT_INPUT_ELEMENTS
#endif

enum { LOAD_NONE, LOAD_TENSOR, LOAD_AUDIO };

static const char *const kLabels[DT_NUM_CLASSES] = DT_LABELS;

static struct {
  const dt_platform *platform;
  char command[DT_MAX_COMMAND];
  size_t length;
  int overflow;
  uint32_t commands;
  int load_kind;
  size_t expected, received;
  int bulk;                /* receiving raw bytes */
  size_t bulk_length, bulk_got;
  uint32_t bulk_want, bulk_crc, bulk_last_us;
  size_t drain;            /* bytes of a timed-out bulk still to discard: never parsed as commands */
  uint32_t results_crc;    /* CRC-32 of the results line's text so far */
  int have_output;
} s;

static uint8_t g_buffer[DT_BUFFER_BYTES];

/* --- replies ------------------------------------------------------------------------------------- */

static void put(const char *text) { s.platform->write(text, strlen(text)); }

static void put_uint(uint32_t value) {
  char digits[11];
  int n = 0;
  do {
    digits[sizeof(digits) - 1 - n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value);
  s.platform->write(&digits[sizeof(digits) - n], (size_t)n);
}

static void put_hex32(uint32_t value) {
  static const char kHex[] = "0123456789abcdef";
  char text[8];
  int i;
  for (i = 7; i >= 0; --i, value >>= 4) text[i] = kHex[value & 15];
  s.platform->write(text, 8);
}

static void line_uint(const char *prefix, uint32_t value) {
  put(prefix);
  put_uint(value);
  put("\r\n");
}

static void error(const char *what, const char *reason) {
  put("e-[");
  put(what);
  if (reason) {
    put(": ");
    put(reason);
  }
  put("]\r\n");
}

/* --- CRC-32 -------------------------------------------------------------------------------------- */

uint32_t dt_crc32(uint32_t crc, const uint8_t *bytes, size_t length) {
  static const uint32_t kNibble[16] = {
      0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u, 0x4db26158u, 0x5005713cu,
      0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu, 0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};
  size_t i;
  crc = ~crc;
  for (i = 0; i < length; ++i) {
    crc = (crc >> 4) ^ kNibble[(crc ^ bytes[i]) & 15];
    crc = (crc >> 4) ^ kNibble[(crc ^ (uint32_t)(bytes[i] >> 4)) & 15];
  }
  return ~crc;
}

/* --- arguments ----------------------------------------------------------------------------------- */

static int parse_uint(const char *text, uint32_t *value) {
  uint32_t v = 0;
  int n = 0;
  for (; *text; ++text, ++n) {
    if (*text < '0' || *text > '9' || n >= 9) return 0;
    v = v * 10 + (uint32_t)(*text - '0');
  }
  *value = v;
  return n > 0;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* --- loading ------------------------------------------------------------------------------------- */

static void open_load(int kind, size_t bytes) {
  s.load_kind = kind;
  s.expected = bytes;
  s.received = 0;
  put("m-[Expecting ");
  put_uint((uint32_t)bytes);
  put(" bytes]\r\n");
}

static void load_done_if_full(void) {
  if (s.received == s.expected) put("m-load-done\r\n");
}

static void cmd_db(char **argv, int argc) {
  uint32_t n;
  if (argc == 3 && strcmp(argv[1], "load") == 0) {
    if (!parse_uint(argv[2], &n) || n != DT_INPUT_ELEMENTS) {
      error("db load", "the model input takes " DT_STR(DT_INPUT_ELEMENTS) " bytes");
      return;
    }
    open_load(LOAD_TENSOR, n);
  } else if (argc == 2 && strcmp(argv[1], "print") == 0) {
    size_t i;
    static const char kHex[] = "0123456789abcdef";
    for (i = 0; i < s.received; ++i) {
      const char byte[3] = {kHex[g_buffer[i] >> 4], kHex[g_buffer[i] & 15], 0};
      put(i % 8 == 0 ? "m-buffer-" : "-");
      put(byte);
      if (i % 8 == 7 || i + 1 == s.received) put("\r\n");
    }
  } else if (argc == 2) {
    const char *hex = argv[1];
    const size_t digits = strlen(hex);
    size_t i;
    if (s.load_kind == LOAD_NONE) {
      error("db", "no load open");
      return;
    }
    if (digits % 2 || digits / 2 > DT_DB_BYTES_PER_LINE || digits / 2 > s.expected - s.received) {
      error("db", "bad length");
      return;
    }
    for (i = 0; i < digits; ++i) {
      if (hex_digit(hex[i]) < 0) {
        error("db", "not hex");
        return;
      }
    }
    for (i = 0; i < digits / 2; ++i) {
      g_buffer[s.received++] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    }
    load_done_if_full();
  } else {
    error("db", "usage: db load N | db HEX | db print");
  }
}

static void cmd_audio(char **argv, int argc) {
  uint32_t n;
  if (!DT_HAS_FRONTEND) {
    error("audio load", "this model has no frontend");
  } else if (argc != 3 || strcmp(argv[1], "load") != 0 || !parse_uint(argv[2], &n)) {
    error("audio", "usage: audio load N");
#if DT_HAS_FRONTEND
  } else if (n != DT_CHUNK_SAMPLES) {
    error("audio load", "a chunk is " DT_STR(DT_CHUNK_SAMPLES) " samples");
#endif
  } else {
    open_load(LOAD_AUDIO, 2 * (size_t)n);
  }
}

static void cmd_bulk(char **argv, int argc) {
  uint32_t n;
  int i;
  if (argc != 3 || !parse_uint(argv[1], &n) || strlen(argv[2]) != 8) {
    error("bulk", "usage: bulk N CRC32");
    return;
  }
  if (s.load_kind == LOAD_NONE || n == 0 || n > s.expected - s.received) {
    error("bulk", "no room: open a load first");
    return;
  }
  s.bulk_want = 0;
  for (i = 0; i < 8; ++i) {
    if (hex_digit(argv[2][i]) < 0) {
      error("bulk", "CRC is not hex");
      return;
    }
    s.bulk_want = s.bulk_want << 4 | (uint32_t)hex_digit(argv[2][i]);
  }
  s.bulk = 1;
  s.bulk_length = n;
  s.bulk_got = 0;
  s.bulk_crc = 0;
  s.bulk_last_us = s.platform->micros();
}

/* Called with the bulk's last byte: keep the bytes if the CRC matches, else leave the load as it was. */
static void finish_bulk(void) {
  s.bulk = 0;
  if (s.bulk_crc != s.bulk_want) {
    put("e-[bulk crc ");
    put_hex32(s.bulk_crc);
    put(" != ");
    put_hex32(s.bulk_want);
    put("]\r\n");
  } else {
    s.received += s.bulk_length;
    line_uint("m-bulk-ok-", (uint32_t)s.bulk_length);
    load_done_if_full();
  }
  put("m-ready\r\n");
}

/* --- inference ----------------------------------------------------------------------------------- */

/* Part of the results line: sent at once and added to its CRC (no line buffer: any class count fits). */
static void put_result_text(const char *text, size_t length) {
  s.platform->write(text, length);
  s.results_crc = dt_crc32(s.results_crc, (const uint8_t *)text, length);
}

/* A dequantized score with 6 decimals, for any output scale: a magnitude too large for uint32 is printed
 * as its leading digits and zeros (a float that large has no fraction, and only ~7 significant digits). */
static void put_score(int8_t q) {
  const float value = DT_OUTPUT_SCALE * (float)((int)q - DT_OUTPUT_ZERO_POINT);
  float magnitude = value < 0.0f ? -value : value;
  char text[48]; /* sign, up to 39 integer digits (FLT_MAX), '.', 6 decimals */
  char digits[40]; /* least significant first */
  int n = 0, length = 0, zeros = 0, i;
  uint32_t whole, micro;
  if (!(magnitude <= 3.4e38f)) magnitude = 0.0f; /* NaN or infinity: cannot come from an int8 and a scale */
  for (; magnitude >= 4.0e9f; magnitude /= 10.0f) ++zeros;
  whole = (uint32_t)magnitude;
  micro = zeros ? 0u : (uint32_t)((magnitude - (float)whole) * 1000000.0f + 0.5f);
  if (micro >= 1000000u) { /* the fraction rounded up to the next whole */
    micro -= 1000000u;
    ++whole;
  }
  for (; zeros > 0; --zeros) digits[n++] = '0';
  do {
    digits[n++] = (char)('0' + whole % 10u);
    whole /= 10u;
  } while (whole);
  if (value < 0.0f && (n > 1 || digits[0] != '0' || micro)) text[length++] = '-';
  while (n) text[length++] = digits[--n];
  text[length++] = '.';
  for (i = 5; i >= 0; --i, micro /= 10u) text[length + i] = (char)('0' + micro % 10u);
  put_result_text(text, (size_t)length + 6);
}

/* m-results-[...] with the dequantized scores, its CRC-32 line (so the host can trust every digit),
 * and returns the arg-max class (the first of equal scores, as numpy). */
static int report_results(void) {
  int k, best = 0;
  put("m-results-[");
  s.results_crc = 0;
  for (k = 0; k < DT_NUM_CLASSES; ++k) {
    if (k) put_result_text(",", 1);
    put_score(s.platform->output[k]);
    if (s.platform->output[k] > s.platform->output[best]) best = k;
  }
  put("]\r\nm-results-crc-");
  put_hex32(s.results_crc);
  put("\r\n");
  return best;
}

static int invoke(const char *what) {
  if (s.platform->invoke() != 0) {
    error(what, "inference failed");
    return 0;
  }
  s.have_output = 1;
  return 1;
}

static int warm_up(const char *what, uint32_t runs) {
  uint32_t i;
  for (i = 0; i < runs; ++i) {
    if (!invoke(what)) return 0;
  }
  return 1;
}

static int loaded(int kind, const char *what) {
  if (s.load_kind != kind || s.received != s.expected) {
    error(what, kind == LOAD_AUDIO ? "load a chunk with audio load first" : "load the input with db load first");
    return 0;
  }
  return 1;
}

static void cmd_infer(char **argv, int argc) {
  uint32_t runs = 1, warmup = 10, i, t0, t1;
  if (argc > 3 || (argc > 1 && !parse_uint(argv[1], &runs)) || (argc > 2 && !parse_uint(argv[2], &warmup)) ||
      runs == 0) {
    error("infer", "usage: infer N W");
    return;
  }
  if (runs > DT_MAX_RUNS || warmup > DT_MAX_RUNS) { /* a garbled digit must not stall the device for hours */
    error("infer", "N and W are at most " DT_STR(DT_MAX_RUNS));
    return;
  }
  if (!loaded(LOAD_TENSOR, "infer")) return;
  memcpy(s.platform->input, g_buffer, DT_INPUT_ELEMENTS);
  line_uint("m-warmup-start-", warmup);
  if (!warm_up("infer", warmup)) return;
  put("m-warmup-done\r\n");
  line_uint("m-infer-start-", runs);
  t0 = s.platform->micros();
  for (i = 0; i < runs; ++i) {
    if (!invoke("infer")) return;
  }
  t1 = s.platform->micros();
  line_uint("m-lap-us-", t0);
  line_uint("m-lap-us-", t1);
  put("m-infer-done\r\n");
  report_results();
}

static void cmd_classify(char **argv, int argc) {
  uint32_t warmup = 0, t0, t1, t2;
  if (argc > 2 || (argc == 2 && !parse_uint(argv[1], &warmup))) {
    error("classify", "usage: classify W");
    return;
  }
  if (warmup > DT_MAX_RUNS) {
    error("classify", "W is at most " DT_STR(DT_MAX_RUNS));
    return;
  }
  if (!loaded(LOAD_AUDIO, "classify")) return;
  t0 = s.platform->micros();
  dt_frontend_run(g_buffer, s.platform->input);
  t1 = s.platform->micros();
  if (!warm_up("classify", warmup)) return;
  t2 = s.platform->micros();
  if (!invoke("classify")) return;
  line_uint("m-frontend-us-", t1 - t0);
  line_uint("m-infer-us-", s.platform->micros() - t2);
  line_uint("m-class-", (uint32_t)report_results());
}

/* --- identity ------------------------------------------------------------------------------------ */

static void cmd_model(void) {
  int k;
  put("m-model-[sha256=" DT_MODEL_SHA256 ",variant=" DT_MODEL_VARIANT ",classes=");
  put_uint(DT_NUM_CLASSES);
  put(",labels=");
  for (k = 0; k < DT_NUM_CLASSES; ++k) {
    if (k) put("|");
    put(kLabels[k]);
  }
  put("]\r\n");
}

/* --- dispatch ------------------------------------------------------------------------------------ */

static void dispatch(void) {
  char *argv[DT_MAX_TOKENS];
  int argc = 0;
  char *at = s.command;
  ++s.commands;
  s.command[s.length] = 0;
  while (*at && argc < DT_MAX_TOKENS) {
    while (*at == ' ') *at++ = 0;
    if (*at) argv[argc++] = at;
    while (*at && *at != ' ') ++at;
  }
  while (*at == ' ') *at++ = 0;
  if (*at) {
    error("command", "too many arguments");
  } else if (argc == 0) {
    /* a lone '%': resynchronisation, answered by m-ready alone */
  } else if (strcmp(argv[0], "name") == 0) {
    put("m-name-dut-[" DT_DEVICE_NAME "]\r\n");
  } else if (strcmp(argv[0], "profile") == 0) {
    put("m-profile-[" DT_FIRMWARE "]\r\nm-model-[" DT_MODEL_VARIANT "]\r\n");
  } else if (strcmp(argv[0], "model") == 0) {
    cmd_model();
  } else if (strcmp(argv[0], "clock") == 0) {
    put("m-clock-[");
    put(s.platform->clock ? s.platform->clock : "board-us");
    put("]\r\n");
  } else if (strcmp(argv[0], "timestamp") == 0) {
    line_uint("m-lap-us-", s.platform->micros());
  } else if (strcmp(argv[0], "db") == 0) {
    cmd_db(argv, argc);
  } else if (strcmp(argv[0], "audio") == 0) {
    cmd_audio(argv, argc);
  } else if (strcmp(argv[0], "bulk") == 0) {
    cmd_bulk(argv, argc);
    if (s.bulk) return; /* m-ready follows the payload */
  } else if (strcmp(argv[0], "crc") == 0) {
    put("m-crc-");
    put_hex32(dt_crc32(0, g_buffer, s.received));
    put("\r\n");
  } else if (strcmp(argv[0], "infer") == 0) {
    cmd_infer(argv, argc);
  } else if (strcmp(argv[0], "results") == 0) {
    if (s.have_output) {
      report_results();
    } else {
      error("results", "no inference yet");
    }
  } else if (strcmp(argv[0], "classify") == 0) {
    cmd_classify(argv, argc);
  } else {
    put("e-[unknown command ");
    put(argv[0]);
    put("]\r\n");
  }
  put("m-ready\r\n");
}

static void feed_byte(uint8_t byte) {
  if (s.drain) { /* the rest of a timed-out bulk's payload */
    --s.drain;
    s.bulk_last_us = s.platform->micros();
    return;
  }
  if (s.bulk) {
    g_buffer[s.received + s.bulk_got++] = byte;
    s.bulk_crc = dt_crc32(s.bulk_crc, &byte, 1);
    s.bulk_last_us = s.platform->micros();
    if (s.bulk_got == s.bulk_length) finish_bulk();
    return;
  }
  if (byte == '%') {
    if (s.overflow) {
      error("command too long", 0);
      put("m-ready\r\n");
    } else {
      dispatch();
    }
    s.length = 0;
    s.overflow = 0;
  } else if (byte == '\r' || byte == '\n') {
    /* terminals send line ends; commands never contain them */
  } else if (s.length < DT_MAX_COMMAND - 1) {
    s.command[s.length++] = (char)byte;
  } else {
    s.overflow = 1;
  }
}

void dt_protocol_feed(const uint8_t *bytes, size_t length) {
  size_t i;
  for (i = 0; i < length; ++i) feed_byte(bytes[i]);
}

/* A bulk whose bytes stop for DT_BULK_TIMEOUT_US fails, and the bytes it still announced are discarded
 * if they come after all (a stalled host), so no payload byte is taken for a command; a second silence
 * as long ends the discarding (the bytes were lost). Gaps, not the payload's total time, so a slow link
 * (1 byte per ms) never trips it. */
void dt_protocol_poll(void) {
  const uint32_t silence = s.platform->micros() - s.bulk_last_us;
  if (s.bulk && silence > DT_BULK_TIMEOUT_US) {
    s.bulk = 0;
    s.drain = s.bulk_length - s.bulk_got;
    s.bulk_last_us = s.platform->micros();
    put("e-[bulk timeout: ");
    put_uint((uint32_t)s.bulk_got);
    put(" of ");
    put_uint((uint32_t)s.bulk_length);
    put(" bytes]\r\nm-ready\r\n");
  } else if (s.drain && silence > DT_BULK_TIMEOUT_US) {
    s.drain = 0;
  }
}

uint32_t dt_protocol_commands(void) { return s.commands; }

void dt_protocol_init(const dt_platform *platform) {
  memset(&s, 0, sizeof(s));
  s.platform = platform;
  put("m-init-done\r\nm-ready\r\n");
}
