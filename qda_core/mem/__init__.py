"""Device memory: memfd-backed buffers, GEM objects, context banks and the SMMU view."""
