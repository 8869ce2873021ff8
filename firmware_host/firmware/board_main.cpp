// A board's firmware: the serial port and clock of the Arduino core, the inference backend (TFLM, or the
// generated engine when dt_model.h defines DT_MODEL_ENGINE), and the firmware core's protocol loop. The same
// file is the Arduino sketch's .ino and PlatformIO's src/main.cpp.
#include <Arduino.h>

#include "dt_model.h"
#include "dt_protocol.h"
#if defined(DT_MODEL_ENGINE)
#include "dt_engine_backend.h"
#else
#include "dt_tflm.h"
#endif

static dt_platform g_platform;

static void SerialWrite(const char *text, size_t length) {
  Serial.write(reinterpret_cast<const uint8_t *>(text), length);
}

static uint32_t Micros(void) { return micros(); }

// nullptr, or why the model cannot run (TFLM's arena or op checks; the engine has none to fail).
static const char *SetupInference(dt_platform *platform) {
#if defined(DT_MODEL_ENGINE)
  dt_engine_setup(platform);
  return nullptr;
#else
  return dt_tflm_setup(platform);
#endif
}

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  g_platform.write = SerialWrite;
  g_platform.micros = Micros;
  g_platform.clock = "board-us";
  const char *failure = SetupInference(&g_platform);
  if (failure != nullptr) {
    for (;;) {  // the host sees why on every attempt to talk to the board
      Serial.print("e-[tflm: ");
      Serial.print(failure);
      Serial.print("]\r\n");
      delay(1000);
    }
  }
  dt_protocol_init(&g_platform);
}

void loop() {
  uint8_t bytes[64];
  size_t count = 0;
  while (Serial.available() > 0 && count < sizeof(bytes)) bytes[count++] = static_cast<uint8_t>(Serial.read());
  if (count > 0) {
    dt_protocol_feed(bytes, count);
  } else {
    dt_protocol_poll();
  }
}
