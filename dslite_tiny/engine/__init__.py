"""A generated int8 C engine: one model as C99 with no interpreter and no flatbuffer, bit for bit equal
to TFLite Micro's reference kernels (``graph`` reads the flatbuffer, ``quant`` does TFLite's integer
arithmetic once, ``plan`` lays out the arena, ``codegen`` writes the C; the kernels are in ``kernels/``)."""
