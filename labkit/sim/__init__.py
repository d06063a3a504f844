"""Everything simulated, each with one source of truth every process reads: the GPUs (NVML, exporter, attribution)."""
