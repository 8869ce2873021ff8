"""Models: the backbone registry, the AReLU head layer, weight loading, DeepSpectrumLite import."""
