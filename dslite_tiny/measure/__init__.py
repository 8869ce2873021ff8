"""Measuring a .tflite model the one way both compression and the device harness use: LiteRT accuracy and
latency, TFLite Micro verdict and arena, flatbuffer sizes, sparsity and MACs."""
