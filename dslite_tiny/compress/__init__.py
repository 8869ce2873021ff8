"""Compression of a trained model into TFLite variants: pruning, clustering, quantization-aware training,
post-training quantization, conversion, and the variant pipeline with resume."""
