"""Training: two-phase transfer learning with SapAugment-driven CutMix and SpecAugment, UAR selection."""
