"""Device side of dslite-tiny: serial harness, protocol, firmware sources and the virtual device.

It measures exported artifacts on boards and never imports training or compression code.
"""
