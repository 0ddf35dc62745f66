"""Benchmarks of the body model and the fit engine (`apu bench`).

- `fit_bench.bench_fit`: pairs/s of the two-stage fit vs batch size, compile time, bytes per pair, against a
  per-pair PyTorch reference fit measured in the same run, plus FLOPs and the fraction of the machine's GEMM
  rate reached.
- `torch_baseline`: the reference PyTorch fit (smplx forward, torch Adam, one pair at a time, as BUDDI);
  imports torch, so it is only imported by benchmarks and tests.
- `gemm`: the machine's float32 GEMM rate. `flops`: FLOPs per pair-iteration (XLA cost analysis + hand count).
"""
