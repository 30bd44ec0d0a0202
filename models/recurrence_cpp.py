"""The uRNN step loop compiled to C++ (`torch.utils.cpp_extension.load_inline`).

The Python loop in `models.urnn` spends most of its time on per-step operator overhead: a
dozen small elementwise ops around one matmul. Here the whole loop over time runs in C++:

- dense (any W): z_t = u_t + s_{t-1} @ M^T with `at::addmm_out`, modReLU fused in a plain
  loop; the backward loop fuses the modReLU derivative and carries dL/ds with `at::mm_out`.
- structured (the paper's W = D3 R2 F^-1 D2 Pi R1 F D1, n a power of two): the step is applied
  factor by factor, with an own radix-2 FFT, in O(n log n) instead of the dense O(n^2), and
  the input projection V x_t is done inside the loop (no (T, B, 2n) array of projected inputs).
  The state is held with the batch innermost (rows of one vector register: 16 floats with
  AVX-512), so every factor is a loop of whole-row vector operations; the backward loop
  applies the adjoint W^H = D1* F^-1 R1 Pi^T D2* F R2 D3*.

Both loops split the batch over the intra-op threads (each sample's recurrence is independent),
so there is one fork/join per call instead of one per step. Only z_t (the pre-activations)
is kept for backward, and only when a backward pass can follow. dL/dW (and dL/dV) is one
matmul after the loop, in Python. States are time-major, (T, B, 2n), s = [Re h, Im h].

The extension is built on first use (never at import; ~10 s on 2 cores), cached in the torch
extensions directory (`TORCH_EXTENSIONS_DIR` if set). If it cannot be built or loaded,
`compiled_ops()` logs why once and returns None; `models.urnn` then runs its Python loop.
CPU only: on other devices `models.urnn` uses the Python loop.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from urnn_forecast.file_lock import exclusive_file_lock

logger = logging.getLogger(__name__)

OPS_NAMESPACE = "urnn_recurrence"
# Tried in order. -march=native is worth ~3x to the structured step (AVX-512/AVX2 instead of
# SSE2; docs/performance.md); the build name carries a fingerprint of the CPU and torch version,
# so a shared cache never hands a build to a machine it was not made for. The portable flags
# are the retry for compilers that reject -march=native, the last one for compilers without
# OpenMP (the loops then run on one thread). -fno-math-errno lets sqrt vectorise.
# URNN_NATIVE_BUILD=0 skips the first (portable code only: for a build cache shared by
# different CPUs, or for valgrind, which does not know AVX-512; bench/loop_cost.py).
BUILD_FLAGS: tuple[tuple[str, ...], ...] = (
    ("-O3", "-march=native", "-fno-math-errno", "-fopenmp"),
    ("-O3", "-fno-math-errno", "-fopenmp"),
    ("-O3", "-fno-math-errno"),
)
_LOAD_LOCK = threading.Lock()  # one build attempt at a time per process

CPP_SOURCE = r"""
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <c10/core/InferenceMode.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using at::Tensor;

// The structured loop holds L = kLanes<T> samples per row: one vector register of the widest
// kind the build targets (so the row type below maps onto single instructions).
#if defined(__AVX512F__)
constexpr int64_t kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int64_t kVectorBytes = 32;
#else
constexpr int64_t kVectorBytes = 16;
#endif
template <typename T>
constexpr int64_t kLanes = kVectorBytes / sizeof(T);

// One block row (L lanes) as a GCC/Clang vector: left to itself, GCC sometimes vectorises the
// loop over units instead of the lanes (it made the fused input projection cost more than the
// rest of the step).
template <typename T>
struct RowType {
  typedef T type __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
using Row = typename RowType<T>::type;

template <typename T>
inline Row<T> load_row(const T* p) {
  Row<T> r;
  __builtin_memcpy(&r, p, sizeof(r));
  return r;
}

template <typename T>
inline void store_row(T* p, const Row<T>& r) {
  __builtin_memcpy(p, &r, sizeof(r));
}

void check_floating(const Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// Tasks for splitting `batch` rows over threads: at least `min_rows` rows per task.
int64_t task_count(int64_t batch, int64_t min_rows) {
  const int64_t by_size = std::max<int64_t>(1, batch / min_rows);
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), by_size));
}

// ---------------------------------------------------------------------------
// modReLU and its derivative on rows laid out [Re (n) | Im (n)]

template <typename T>
void modrelu_rows(const T* z, T* s, const T* bias, int64_t rows, int64_t n, T eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* zr = z + r * 2 * n;
    const T* zi = zr + n;
    T* sr = s + r * 2 * n;
    T* si = sr + n;
    for (int64_t k = 0; k < n; ++k) {
      const T a = zr[k], b = zi[k];
      const T modulus = std::sqrt(a * a + b * b + eps);
      const T pre = modulus + bias[k];
      const T g = std::max(pre, T(0)) / modulus;
      sr[k] = a * g;
      si[k] = b * g;
    }
  }
}

// dz = ds/dz^T (grad + carry), ds/dz = g I + (1[r + b > 0] - g) / r^2 z z^T per unit;
// grad_bias[k] += (grad + carry) . z 1[r + b > 0] / r.
template <typename T>
void modrelu_backward_rows(const T* grad, int64_t grad_row_stride, const T* carry, const T* z,
                           T* dz, double* grad_bias, const T* bias, int64_t rows, int64_t n,
                           T eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = grad + r * grad_row_stride;
    const T* gi = gr + n;
    const T* cr = carry + r * 2 * n;
    const T* ci = cr + n;
    const T* zr = z + r * 2 * n;
    const T* zi = zr + n;
    T* dr = dz + r * 2 * n;
    T* di = dr + n;
    for (int64_t k = 0; k < n; ++k) {
      const T a = zr[k], b = zi[k];
      const T xr = gr[k] + cr[k], xi = gi[k] + ci[k];
      const T modulus = std::sqrt(a * a + b * b + eps);
      const T pre = modulus + bias[k];
      const bool active = pre > T(0);
      const T g = active ? pre / modulus : T(0);
      const T dot = xr * a + xi * b;
      const T radial = dot * ((active ? T(1) : T(0)) - g) / (modulus * modulus);
      dr[k] = g * xr + radial * a;
      di[k] = g * xi + radial * b;
      grad_bias[k] += active ? static_cast<double>(dot / modulus) : 0.0;
    }
  }
}

// ---------------------------------------------------------------------------
// Dense step: s_t = modReLU(u_t + s_{t-1} @ w_t)

std::vector<Tensor> dense_forward(const Tensor& u, const Tensor& w_t, const Tensor& bias,
                                  const Tensor& s0, double eps, bool keep_z) {
  TORCH_CHECK(u.dim() == 3 && u.size(2) % 2 == 0, "u must be (T, B, 2n)");
  const int64_t steps = u.size(0), batch = u.size(1), two_n = u.size(2), n = two_n / 2;
  const auto dtype = u.scalar_type();
  check_floating(u, "u", dtype);
  check_floating(w_t, "w_t", dtype);
  check_floating(bias, "bias", dtype);
  check_floating(s0, "s0", dtype);
  TORCH_CHECK(w_t.size(0) == two_n && w_t.size(1) == two_n, "w_t must be (2n, 2n)");
  TORCH_CHECK(bias.numel() == n && s0.size(0) == batch && s0.size(1) == two_n, "bad shapes");
  Tensor states = at::empty({steps, batch, two_n}, u.options());
  Tensor z_all = at::empty({keep_z ? steps : 0, batch, two_n}, u.options());
  const int64_t tasks = task_count(batch, 8);
  const int64_t rows_per_task = (batch + tasks - 1) / tasks;
  AT_DISPATCH_FLOATING_TYPES(dtype, "urnn_dense_forward", [&] {
    using T = scalar_t;
    const T* U = u.const_data_ptr<T>();
    const T* S0 = s0.const_data_ptr<T>();
    const T* B = bias.const_data_ptr<T>();
    T* W = const_cast<T*>(w_t.const_data_ptr<T>());
    T* S = states.mutable_data_ptr<T>();
    T* Z = keep_z ? z_all.mutable_data_ptr<T>() : nullptr;
    const T e = static_cast<T>(eps);
    at::parallel_for(0, tasks, 1, [&](int64_t task_begin, int64_t task_end) {
      c10::InferenceMode guard;  // plain views below: no autograd bookkeeping per step
      const auto options = at::TensorOptions().dtype(dtype);
      const Tensor w = at::from_blob(W, {two_n, two_n}, options);
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t b0 = task * rows_per_task;
        const int64_t rows = std::min(batch, b0 + rows_per_task) - b0;
        if (rows <= 0) continue;
        for (int64_t t = 0; t < steps; ++t) {
          const int64_t offset = (t * batch + b0) * two_n;
          const T* s_prev = t == 0 ? S0 + b0 * two_n : S + offset - batch * two_n;
          T* s_next = S + offset;
          T* z = keep_z ? Z + offset : s_next;
          Tensor z_view = at::from_blob(z, {rows, two_n}, options);
          at::addmm_out(z_view, at::from_blob(const_cast<T*>(U + offset), {rows, two_n}, options),
                        at::from_blob(const_cast<T*>(s_prev), {rows, two_n}, options), w);
          modrelu_rows(z, s_next, B, rows, n, e);
        }
      }
    });
  });
  return {states, z_all};
}

std::vector<Tensor> dense_backward(const Tensor& grad, const Tensor& w_t, const Tensor& bias,
                                   const Tensor& z_all, double eps) {
  const int64_t steps = z_all.size(0), batch = z_all.size(1), two_n = z_all.size(2);
  const int64_t n = two_n / 2;
  const auto dtype = z_all.scalar_type();
  check_floating(z_all, "z_all", dtype);
  check_floating(w_t, "w_t", dtype);
  check_floating(bias, "bias", dtype);
  TORCH_CHECK(grad.scalar_type() == dtype && grad.dim() == 3 && grad.stride(2) == 1 &&
                  grad.size(0) == steps && grad.size(1) == batch && grad.size(2) == two_n,
              "grad must be (T, B, 2n) with unit stride in the last dimension");
  Tensor dz_all = at::empty({steps, batch, two_n}, z_all.options());
  Tensor grad_s0 = at::empty({batch, two_n}, z_all.options());
  Tensor grad_bias = at::empty({n}, z_all.options());
  const int64_t tasks = task_count(batch, 8);
  const int64_t rows_per_task = (batch + tasks - 1) / tasks;
  std::vector<double> bias_parts(tasks * n, 0.0);
  const int64_t g_step = grad.stride(0), g_row = grad.stride(1);
  AT_DISPATCH_FLOATING_TYPES(dtype, "urnn_dense_backward", [&] {
    using T = scalar_t;
    const T* G = grad.const_data_ptr<T>();
    const T* Z = z_all.const_data_ptr<T>();
    const T* B = bias.const_data_ptr<T>();
    T* W = const_cast<T*>(w_t.const_data_ptr<T>());
    T* DZ = dz_all.mutable_data_ptr<T>();
    T* GS0 = grad_s0.mutable_data_ptr<T>();
    const T e = static_cast<T>(eps);
    at::parallel_for(0, tasks, 1, [&](int64_t task_begin, int64_t task_end) {
      c10::InferenceMode guard;
      const auto options = at::TensorOptions().dtype(dtype);
      const Tensor w = at::from_blob(W, {two_n, two_n}, options).t();  // M, as (M^T)^T
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t b0 = task * rows_per_task;
        const int64_t rows = std::min(batch, b0 + rows_per_task) - b0;
        if (rows <= 0) continue;
        T* carry = GS0 + b0 * two_n;  // dL/ds_t from step t + 1; ends as dL/ds_0
        std::fill(carry, carry + rows * two_n, T(0));
        Tensor carry_view = at::from_blob(carry, {rows, two_n}, options);
        double* part = bias_parts.data() + task * n;
        for (int64_t t = steps - 1; t >= 0; --t) {
          const int64_t offset = (t * batch + b0) * two_n;
          modrelu_backward_rows(G + t * g_step + b0 * g_row, g_row, carry, Z + offset,
                                DZ + offset, part, B, rows, n, e);
          at::mm_out(carry_view, at::from_blob(DZ + offset, {rows, two_n}, options), w);
        }
      }
    });
    T* GB = grad_bias.mutable_data_ptr<T>();
    for (int64_t k = 0; k < n; ++k) {
      double sum = 0.0;
      for (int64_t task = 0; task < tasks; ++task) sum += bias_parts[task * n + k];
      GB[k] = static_cast<T>(sum);
    }
  });
  return {dz_all, grad_bias, grad_s0};
}

// ---------------------------------------------------------------------------
// Structured step, W = D3 R2 F^-1 D2 Pi R1 F D1 (n a power of two).
//
// A state block holds LANES samples as 2n rows of LANES values: rows 0..n-1 the real parts,
// rows n..2n-1 the imaginary parts. F is a decimation-in-frequency FFT (natural order in,
// bit-reversed out), F^-1 a decimation-in-time one (bit-reversed in, natural out), so no
// bit-reversal pass is ever made: the permutation Pi, the bit reversals and D2 collapse into
// one gather, and R1 is applied in bit-reversed order. The two 1/sqrt(n) go into the gather.
//
// Forward: D1, F, R1, [Pi, D2], F^-1, R2, D3.     Adjoint W^H = D1* F^-1 R1 Pi^T D2* F R2 D3*:
// D3*, R2, F, [D2*, Pi^T], R1, F^-1, D1*. Both use the same two FFTs.

template <typename T>
struct Plan {
  int64_t n = 0;
  std::vector<T> dif_re, dif_im, dit_re, dit_im;  // twiddles, stage after stage
  std::vector<T> d1c, d1s, d3c, d3s;              // D1, D3 (natural order)
  std::vector<T> v1r, v1i, v2r, v2i;              // v1 bit-reversed, v2 natural
  T c1 = 0, c2 = 0;                               // 2 / |v|^2
  std::vector<int64_t> fwd_src, adj_src;          // gathers into F^-1's input order
  std::vector<T> fwd_c, fwd_s, adj_c, adj_s;      // their diagonal factors, 1/n included
};

int64_t bit_reverse(int64_t i, int64_t bits) {
  int64_t r = 0;
  for (int64_t b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
  return r;
}

template <typename T>
Plan<T> make_plan(const Tensor& phases, const Tensor& reflections, const Tensor& permutation) {
  const int64_t n = phases.size(1);
  TORCH_CHECK(n >= 2 && (n & (n - 1)) == 0, "structured step needs n a power of two, got ", n);
  TORCH_CHECK(phases.dim() == 2 && phases.size(0) == 3, "phases must be (3, n)");
  TORCH_CHECK(reflections.dim() == 3 && reflections.size(0) == 2 && reflections.size(1) == 2 &&
                  reflections.size(2) == n, "reflections must be (2, 2, n)");
  TORCH_CHECK(permutation.scalar_type() == at::kLong && permutation.numel() == n &&
                  permutation.is_contiguous(), "permutation must be int64 (n,)");
  int64_t bits = 0;
  while ((int64_t(1) << bits) < n) ++bits;
  const T* ph = phases.const_data_ptr<T>();
  const T* rf = reflections.const_data_ptr<T>();
  const int64_t* perm = permutation.const_data_ptr<int64_t>();
  Plan<T> p;
  p.n = n;
  const double pi = 3.14159265358979323846;
  for (int64_t s = n / 2; s >= 1; s /= 2)
    for (int64_t j = 0; j < s; ++j) {
      p.dif_re.push_back(static_cast<T>(std::cos(pi * j / s)));
      p.dif_im.push_back(static_cast<T>(-std::sin(pi * j / s)));
    }
  for (int64_t s = 1; s < n; s *= 2)
    for (int64_t j = 0; j < s; ++j) {
      p.dit_re.push_back(static_cast<T>(std::cos(pi * j / s)));
      p.dit_im.push_back(static_cast<T>(std::sin(pi * j / s)));
    }
  auto phase = [&](int64_t d, int64_t k) { return static_cast<double>(ph[d * n + k]); };
  double norm1 = 0, norm2 = 0;
  std::vector<int64_t> inverse(n);
  for (int64_t k = 0; k < n; ++k) {
    TORCH_CHECK(perm[k] >= 0 && perm[k] < n, "permutation entry out of range");
    inverse[perm[k]] = k;
    p.d1c.push_back(static_cast<T>(std::cos(phase(0, k))));
    p.d1s.push_back(static_cast<T>(std::sin(phase(0, k))));
    p.d3c.push_back(static_cast<T>(std::cos(phase(2, k))));
    p.d3s.push_back(static_cast<T>(std::sin(phase(2, k))));
    const int64_t rk = bit_reverse(k, bits);
    p.v1r.push_back(rf[0 * n + rk]);
    p.v1i.push_back(rf[1 * n + rk]);
    p.v2r.push_back(rf[2 * n + k]);
    p.v2i.push_back(rf[3 * n + k]);
    norm1 += double(rf[0 * n + k]) * rf[0 * n + k] + double(rf[1 * n + k]) * rf[1 * n + k];
    norm2 += double(rf[2 * n + k]) * rf[2 * n + k] + double(rf[3 * n + k]) * rf[3 * n + k];
  }
  p.c1 = static_cast<T>(2.0 / norm1);
  p.c2 = static_cast<T>(2.0 / norm2);
  for (int64_t q = 0; q < n; ++q) {
    // F^-1 reads position q as element bitrev(q); F wrote element m at position bitrev(m).
    const int64_t k = bit_reverse(q, bits);
    p.fwd_src.push_back(bit_reverse(perm[k], bits));  // (D2 Pi y)[k] = D2[k] y[perm[k]]
    p.fwd_c.push_back(static_cast<T>(std::cos(phase(1, k)) / n));
    p.fwd_s.push_back(static_cast<T>(std::sin(phase(1, k)) / n));
    const int64_t j = inverse[k];  // (Pi^T D2* y)[k] = conj(D2[j]) y[j], j = perm^-1[k]
    p.adj_src.push_back(bit_reverse(j, bits));
    p.adj_c.push_back(static_cast<T>(std::cos(phase(1, j)) / n));
    p.adj_s.push_back(static_cast<T>(-std::sin(phase(1, j)) / n));
  }
  return p;
}

// The kernels below act on blocks: x[k * L + b] is Re of unit k in lane b, x[(n + k) * L + b]
// its Im. L = kLanes<T> is a compile-time constant, so every `for b` loop is one vector op.

// dst = diag(c + i s) src
template <typename T>
inline void diag_mul(T* __restrict__ dst, const T* __restrict__ src, const T* c, const T* s,
                     bool conjugate, int64_t n) {
  constexpr int64_t L = kLanes<T>;
  const T sign = conjugate ? T(-1) : T(1);
  for (int64_t k = 0; k < n; ++k) {
    const T ck = c[k], sk = sign * s[k];
    const Row<T> re = load_row(src + k * L), im = load_row(src + (n + k) * L);
    store_row(dst + k * L, ck * re - sk * im);
    store_row(dst + (n + k) * L, sk * re + ck * im);
  }
}

// p = c * sum_k conj(v_k) x_k, per lane
template <typename T>
inline void reflect_dot(const T* __restrict__ x, const T* vr, const T* vi, T c, T* __restrict__ pr,
                        T* __restrict__ pi, int64_t n) {
  constexpr int64_t L = kLanes<T>;
  Row<T> sr = {}, si = {};
  for (int64_t k = 0; k < n; ++k) {
    const T a = vr[k], d = vi[k];
    const Row<T> xr = load_row(x + k * L), xi = load_row(x + (n + k) * L);
    sr += a * xr + d * xi;
    si += a * xi - d * xr;
  }
  store_row(pr, c * sr);
  store_row(pi, c * si);
}

// x_k -= p v_k (the second half of a reflection, p from reflect_dot)
template <typename T>
inline void reflect_axpy(T* __restrict__ x, const T* vr, const T* vi, const T* __restrict__ pr,
                         const T* __restrict__ pi, int64_t n) {
  constexpr int64_t L = kLanes<T>;
  const Row<T> p_re = load_row(pr), p_im = load_row(pi);
  for (int64_t k = 0; k < n; ++k) {
    const T a = vr[k], d = vi[k];
    store_row(x + k * L, load_row(x + k * L) - (p_re * a - p_im * d));
    store_row(x + (n + k) * L, load_row(x + (n + k) * L) - (p_re * d + p_im * a));
  }
}

// dst[q] = (c_q + i s_q) (src[idx_q] - p v[idx_q]); pass pr == nullptr for no reflection
template <typename T>
inline void gather(T* __restrict__ dst, const T* __restrict__ src, const int64_t* idx,
                   const T* c, const T* s, const T* vr, const T* vi, const T* pr, const T* pi,
                   int64_t n) {
  constexpr int64_t L = kLanes<T>;
  const Row<T> zero = {};
  const Row<T> p_re = pr != nullptr ? load_row(pr) : zero;
  const Row<T> p_im = pi != nullptr ? load_row(pi) : zero;
  for (int64_t q = 0; q < n; ++q) {
    const int64_t m = idx[q];
    const T cq = c[q], sq = s[q], a = vr[m], d = vi[m];
    const Row<T> re = load_row(src + m * L) - (p_re * a - p_im * d);
    const Row<T> im = load_row(src + (n + m) * L) - (p_re * d + p_im * a);
    store_row(dst + q * L, cq * re - sq * im);
    store_row(dst + (n + q) * L, sq * re + cq * im);
  }
}

// One radix-2 butterfly on four rows: DIF a, b <- a + b, (a - b) w; DIT a, b <- a + b w, a - b w.
template <typename T>
inline void butterfly_dif(T* ar, T* ai, T* br, T* bi, T wr, T wi) {
  const Row<T> a_re = load_row(ar), a_im = load_row(ai), b_re = load_row(br), b_im = load_row(bi);
  const Row<T> t_re = a_re - b_re, t_im = a_im - b_im;
  store_row(ar, a_re + b_re);
  store_row(ai, a_im + b_im);
  store_row(br, t_re * wr - t_im * wi);
  store_row(bi, t_re * wi + t_im * wr);
}

template <typename T>
inline void butterfly_dit(T* ar, T* ai, T* br, T* bi, T wr, T wi) {
  const Row<T> a_re = load_row(ar), a_im = load_row(ai), b_re = load_row(br), b_im = load_row(bi);
  const Row<T> t_re = b_re * wr - b_im * wi, t_im = b_re * wi + b_im * wr;
  store_row(ar, a_re + t_re);
  store_row(ai, a_im + t_im);
  store_row(br, a_re - t_re);
  store_row(bi, a_im - t_im);
}

// Unnormalised DFT (sign -1): natural order in, bit-reversed order out.
template <typename T>
void fft_dif(T* x, const Plan<T>& p) {
  constexpr int64_t L = kLanes<T>;
  const int64_t n = p.n;
  int64_t offset = 0;
  for (int64_t s = n / 2; s >= 1; s /= 2) {
    for (int64_t i0 = 0; i0 < n; i0 += 2 * s)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t a = i0 + j, b = a + s;
        butterfly_dif(x + a * L, x + (n + a) * L, x + b * L, x + (n + b) * L,
                      p.dif_re[offset + j], p.dif_im[offset + j]);
      }
    offset += s;
  }
}

// Unnormalised inverse DFT (sign +1): bit-reversed order in, natural order out.
template <typename T>
void fft_dit(T* x, const Plan<T>& p) {
  constexpr int64_t L = kLanes<T>;
  const int64_t n = p.n;
  int64_t offset = 0;
  for (int64_t s = 1; s < n; s *= 2) {
    for (int64_t i0 = 0; i0 < n; i0 += 2 * s)
      for (int64_t j = 0; j < s; ++j) {
        const int64_t a = i0 + j, b = a + s;
        butterfly_dit(x + a * L, x + (n + a) * L, x + b * L, x + (n + b) * L,
                      p.dit_re[offset + j], p.dit_im[offset + j]);
      }
    offset += s;
  }
}

// u = V x_t for one block: xb holds x_t as m rows of L lanes, v is V, (2n, m) row-major.
// The input projection is done here so that no (T, B, 2n) array of projected inputs is ever
// written and read back.
template <typename T>
void project_inputs(T* __restrict__ u, const T* __restrict__ xb, const T* __restrict__ v,
                    int64_t m, int64_t two_n) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t k = 0; k < two_n; ++k) {
    Row<T> acc = {};
    for (int64_t j = 0; j < m; ++j) {
      Row<T> xj;
      __builtin_memcpy(&xj, xb + j * L, sizeof(xj));
      acc += v[k * m + j] * xj;
    }
    __builtin_memcpy(u + k * L, &acc, sizeof(acc));
  }
}

// Last part of a forward step, per unit k: z = D3 (y - p v2) + u (u arrives in `uz`, z leaves
// in it), h = modReLU(z).
template <typename T>
void finish_step(T* __restrict__ h, T* __restrict__ uz, const T* __restrict__ y, const Plan<T>& p,
                 const T* bias, const T* __restrict__ pr, const T* __restrict__ pi, T eps) {
  constexpr int64_t L = kLanes<T>;
  const int64_t n = p.n;
  for (int64_t k = 0; k < n; ++k) {
    const T a = p.v2r[k], d = p.v2i[k], ck = p.d3c[k], sk = p.d3s[k], bk = bias[k];
    const T* yr = y + k * L;
    const T* yi = y + (n + k) * L;
    T* zr = uz + k * L;
    T* zi = uz + (n + k) * L;
    T* hr = h + k * L;
    T* hi = h + (n + k) * L;
    for (int64_t b = 0; b < L; ++b) {
      const T re = yr[b] - (pr[b] * a - pi[b] * d);
      const T im = yi[b] - (pr[b] * d + pi[b] * a);
      const T vr = ck * re - sk * im + zr[b];
      const T vi = sk * re + ck * im + zi[b];
      const T modulus = std::sqrt(vr * vr + vi * vi + eps);
      const T g = std::max(modulus + bk, T(0)) / modulus;
      zr[b] = vr;
      zi[b] = vi;
      hr[b] = vr * g;
      hi[b] = vi * g;
    }
  }
}

// First part of a backward step: gz holds dL/ds_t from the output; with the carry from step
// t + 1 it becomes dL/dz_t (modReLU derivative, as in modrelu_backward_rows), x = D3* dz.
template <typename T>
void modrelu_backward_block(T* __restrict__ gz, T* __restrict__ x, const T* __restrict__ carry,
                            const T* __restrict__ z, const Plan<T>& p, const T* bias,
                            double* __restrict__ bias_lanes, T eps) {
  constexpr int64_t L = kLanes<T>;
  const int64_t n = p.n;
  for (int64_t k = 0; k < n; ++k) {
    const T ck = p.d3c[k], sk = p.d3s[k], bk = bias[k];
    T* gr = gz + k * L;
    T* gi = gz + (n + k) * L;
    const T* cr = carry + k * L;
    const T* ci = carry + (n + k) * L;
    const T* zr = z + k * L;
    const T* zi = z + (n + k) * L;
    T* xr = x + k * L;
    T* xi = x + (n + k) * L;
    double* acc = bias_lanes + k * L;
    for (int64_t b = 0; b < L; ++b) {
      const T a = zr[b], c = zi[b];
      const T sr = gr[b] + cr[b], si = gi[b] + ci[b];
      const T modulus = std::sqrt(a * a + c * c + eps);
      const T pre = modulus + bk;
      const T active = pre > T(0) ? T(1) : T(0);
      const T g = std::max(pre, T(0)) / modulus;
      const T dot = sr * a + si * c;
      const T radial = dot * (active - g) / (modulus * modulus);
      const T dr = g * sr + radial * a, di = g * si + radial * c;
      gr[b] = dr;
      gi[b] = di;
      xr[b] = ck * dr + sk * di;
      xi[b] = ck * di - sk * dr;
      acc[b] += static_cast<double>(active * dot / modulus);
    }
  }
}

// rows (`lanes` of them, `row_stride` apart, 2n values each) -> block; unused lanes of a
// partial block are zeroed. Full blocks go through L x L tiles, whose transposes the compiler
// turns into shuffles.
template <typename T>
inline void load_block(T* __restrict__ block, const T* __restrict__ rows, int64_t row_stride,
                       int64_t lanes, int64_t two_n) {
  constexpr int64_t L = kLanes<T>;
  if (lanes == L && two_n % L == 0) {
    alignas(64) T tile[L * L];
    for (int64_t k0 = 0; k0 < two_n; k0 += L) {
      for (int64_t b = 0; b < L; ++b)
        for (int64_t kk = 0; kk < L; ++kk) tile[b * L + kk] = rows[b * row_stride + k0 + kk];
      for (int64_t kk = 0; kk < L; ++kk)
        for (int64_t b = 0; b < L; ++b) block[(k0 + kk) * L + b] = tile[b * L + kk];
    }
    return;
  }
  for (int64_t k = 0; k < two_n; ++k)
    for (int64_t b = 0; b < L; ++b) block[k * L + b] = b < lanes ? rows[b * row_stride + k] : T(0);
}

template <typename T>
inline void store_block(T* __restrict__ rows, const T* __restrict__ block, int64_t row_stride,
                        int64_t lanes, int64_t two_n) {
  constexpr int64_t L = kLanes<T>;
  if (lanes == L && two_n % L == 0) {
    alignas(64) T tile[L * L];
    for (int64_t k0 = 0; k0 < two_n; k0 += L) {
      for (int64_t b = 0; b < L; ++b)
        for (int64_t kk = 0; kk < L; ++kk) tile[b * L + kk] = block[(k0 + kk) * L + b];
      for (int64_t b = 0; b < L; ++b)
        for (int64_t kk = 0; kk < L; ++kk) rows[b * row_stride + k0 + kk] = tile[b * L + kk];
    }
    return;
  }
  for (int64_t b = 0; b < lanes; ++b) {
    T* row = rows + b * row_stride;
    for (int64_t k = 0; k < two_n; ++k) row[k] = block[k * L + b];
  }
}

// One aligned scratch allocation per thread, carved into blocks of 2n x LANES.
template <typename T>
struct Scratch {
  std::vector<T> storage;
  int64_t block;
  Scratch(int64_t two_n, int64_t blocks) : storage(two_n * kLanes<T> * blocks + 64, T(0)),
                                           block(two_n * kLanes<T>) {}
  T* get(int64_t i) {
    auto addr = reinterpret_cast<std::uintptr_t>(storage.data());
    auto aligned = (addr + 63) & ~std::uintptr_t(63);
    return reinterpret_cast<T*>(aligned) + i * block;
  }
};

std::vector<Tensor> structured_forward(const Tensor& x, const Tensor& v, const Tensor& phases,
                                       const Tensor& reflections, const Tensor& permutation,
                                       const Tensor& bias, const Tensor& s0, double eps,
                                       bool keep_z) {
  TORCH_CHECK(x.dim() == 3 && v.dim() == 2 && v.size(1) == x.size(2) && v.size(0) % 2 == 0,
              "x must be (T, B, m) and v (2n, m)");
  const int64_t steps = x.size(0), batch = x.size(1), m = x.size(2);
  const int64_t two_n = v.size(0), n = two_n / 2;
  const auto dtype = x.scalar_type();
  check_floating(x, "x", dtype);
  check_floating(v, "v", dtype);
  check_floating(phases, "phases", dtype);
  check_floating(reflections, "reflections", dtype);
  check_floating(bias, "bias", dtype);
  check_floating(s0, "s0", dtype);
  TORCH_CHECK(phases.size(1) == n && bias.numel() == n && s0.size(0) == batch &&
                  s0.size(1) == two_n, "bad shapes");
  Tensor states = at::empty({steps, batch, two_n}, x.options());
  Tensor z_all = at::empty({keep_z ? steps : 0, batch, two_n}, x.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "urnn_structured_forward", [&] {
    using T = scalar_t;
    constexpr int64_t L = kLanes<T>;
    const Plan<T> p = make_plan<T>(phases, reflections, permutation);
    const T* X = x.const_data_ptr<T>();
    const T* V = v.const_data_ptr<T>();
    const T* S0 = s0.const_data_ptr<T>();
    const T* bias_p = bias.const_data_ptr<T>();
    T* S = states.mutable_data_ptr<T>();
    T* Z = keep_z ? z_all.mutable_data_ptr<T>() : nullptr;
    const T e = static_cast<T>(eps);
    const int64_t blocks = (batch + L - 1) / L;
    at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
      Scratch<T> scratch(two_n, 4);
      T* h = scratch.get(0);  // the state, natural order
      T* w = scratch.get(1);
      T* y = scratch.get(2);
      T* z = scratch.get(3);
      std::vector<T> xb(m * L, T(0));  // x_t, m rows of L lanes
      alignas(64) T pr[L], pi[L];
      for (int64_t blk = block_begin; blk < block_end; ++blk) {
        const int64_t b0 = blk * L, lanes = std::min(L, batch - b0);
        std::fill(scratch.storage.begin(), scratch.storage.end(), T(0));
        load_block(h, S0 + b0 * two_n, two_n, lanes, two_n);
        for (int64_t t = 0; t < steps; ++t) {
          const int64_t offset = (t * batch + b0) * two_n;
          const T* x_rows = X + (t * batch + b0) * m;
          for (int64_t b = 0; b < lanes; ++b)
            for (int64_t j = 0; j < m; ++j) xb[j * L + b] = x_rows[b * m + j];
          diag_mul(w, h, p.d1c.data(), p.d1s.data(), false, n);  // D1
          fft_dif(w, p);                                           // F (bit-reversed out)
          reflect_dot(w, p.v1r.data(), p.v1i.data(), p.c1, pr, pi, n);
          gather(y, w, p.fwd_src.data(), p.fwd_c.data(), p.fwd_s.data(), p.v1r.data(),
                 p.v1i.data(), pr, pi, n);                         // R1, Pi, D2
          fft_dit(y, p);                                           // F^-1
          reflect_dot(y, p.v2r.data(), p.v2i.data(), p.c2, pr, pi, n);
          project_inputs(z, xb.data(), V, m, two_n);             // u = V x_t
          finish_step(h, z, y, p, bias_p, pr, pi, e);              // R2, D3, + u, modReLU
          store_block(S + offset, h, two_n, lanes, two_n);
          if (keep_z) store_block(Z + offset, z, two_n, lanes, two_n);
        }
      }
    });
  });
  return {states, z_all};
}

std::vector<Tensor> structured_backward(const Tensor& grad, const Tensor& phases,
                                        const Tensor& reflections, const Tensor& permutation,
                                        const Tensor& bias, const Tensor& z_all, double eps) {
  const int64_t steps = z_all.size(0), batch = z_all.size(1), two_n = z_all.size(2);
  const int64_t n = two_n / 2;
  const auto dtype = z_all.scalar_type();
  check_floating(z_all, "z_all", dtype);
  check_floating(phases, "phases", dtype);
  check_floating(reflections, "reflections", dtype);
  check_floating(bias, "bias", dtype);
  TORCH_CHECK(grad.scalar_type() == dtype && grad.dim() == 3 && grad.stride(2) == 1 &&
                  grad.size(0) == steps && grad.size(1) == batch && grad.size(2) == two_n,
              "grad must be (T, B, 2n) with unit stride in the last dimension");
  Tensor dz_all = at::empty({steps, batch, two_n}, z_all.options());
  Tensor grad_s0 = at::empty({batch, two_n}, z_all.options());
  Tensor grad_bias = at::empty({n}, z_all.options());
  const int64_t g_step = grad.stride(0), g_row = grad.stride(1);
  AT_DISPATCH_FLOATING_TYPES(dtype, "urnn_structured_backward", [&] {
    using T = scalar_t;
    constexpr int64_t L = kLanes<T>;
    const Plan<T> p = make_plan<T>(phases, reflections, permutation);
    const int64_t blocks = (batch + L - 1) / L;
    std::vector<double> bias_parts(blocks * n, 0.0);
    const T* G = grad.const_data_ptr<T>();
    const T* Z = z_all.const_data_ptr<T>();
    const T* bias_p = bias.const_data_ptr<T>();
    T* DZ = dz_all.mutable_data_ptr<T>();
    T* GS0 = grad_s0.mutable_data_ptr<T>();
    const T e = static_cast<T>(eps);
    at::parallel_for(0, blocks, 1, [&](int64_t block_begin, int64_t block_end) {
      Scratch<T> scratch(two_n, 5);
      T* carry = scratch.get(0);  // dL/ds_t arriving from step t + 1
      T* x = scratch.get(1);
      T* y = scratch.get(2);
      T* gz = scratch.get(3);  // dL/ds_t from the output, then dL/dz_t
      T* zb = scratch.get(4);  // z_t
      alignas(64) T pr[L], pi[L];
      std::vector<double> bias_lanes(n * L);
      for (int64_t blk = block_begin; blk < block_end; ++blk) {
        const int64_t b0 = blk * L, lanes = std::min(L, batch - b0);
        std::fill(scratch.storage.begin(), scratch.storage.end(), T(0));
        std::fill(bias_lanes.begin(), bias_lanes.end(), 0.0);
        for (int64_t t = steps - 1; t >= 0; --t) {
          const int64_t offset = (t * batch + b0) * two_n;
          load_block(gz, G + t * g_step + b0 * g_row, g_row, lanes, two_n);
          load_block(zb, Z + offset, two_n, lanes, two_n);
          modrelu_backward_block(gz, x, carry, zb, p, bias_p, bias_lanes.data(), e);
          store_block(DZ + offset, gz, two_n, lanes, two_n);
          reflect_dot(x, p.v2r.data(), p.v2i.data(), p.c2, pr, pi, n);  // R2
          reflect_axpy(x, p.v2r.data(), p.v2i.data(), pr, pi, n);
          fft_dif(x, p);                                                 // F
          gather(y, x, p.adj_src.data(), p.adj_c.data(), p.adj_s.data(), p.v1r.data(),
                 p.v1i.data(), static_cast<const T*>(nullptr), static_cast<const T*>(nullptr),
                 n);                                                     // D2*, Pi^T
          reflect_dot(y, p.v1r.data(), p.v1i.data(), p.c1, pr, pi, n);  // R1
          reflect_axpy(y, p.v1r.data(), p.v1i.data(), pr, pi, n);
          fft_dit(y, p);                                                 // F^-1
          diag_mul(carry, y, p.d1c.data(), p.d1s.data(), true, n);       // D1*
        }
        store_block(GS0 + b0 * two_n, carry, two_n, lanes, two_n);
        double* part = bias_parts.data() + blk * n;
        for (int64_t k = 0; k < n; ++k)
          for (int64_t b = 0; b < lanes; ++b) part[k] += bias_lanes[k * L + b];
      }
    });
    T* GB = grad_bias.mutable_data_ptr<T>();
    for (int64_t k = 0; k < n; ++k) {
      double sum = 0.0;
      for (int64_t blk = 0; blk < blocks; ++blk) sum += bias_parts[blk * n + k];
      GB[k] = static_cast<T>(sum);
    }
  });
  return {dz_all, grad_bias, grad_s0};
}

}  // namespace

TORCH_LIBRARY(urnn_recurrence, m) {
  m.def("dense_forward(Tensor u, Tensor w_t, Tensor bias, Tensor s0, float eps, bool keep_z)"
        " -> Tensor[]");
  m.def("dense_backward(Tensor grad, Tensor w_t, Tensor bias, Tensor z_all, float eps)"
        " -> Tensor[]");
  m.def("structured_forward(Tensor x, Tensor v, Tensor phases, Tensor reflections,"
        " Tensor permutation,"
        " Tensor bias, Tensor s0, float eps, bool keep_z) -> Tensor[]");
  m.def("structured_backward(Tensor grad, Tensor phases, Tensor reflections,"
        " Tensor permutation, Tensor bias, Tensor z_all, float eps) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(urnn_recurrence, CPU, m) {
  m.impl("dense_forward", &dense_forward);
  m.impl("dense_backward", &dense_backward);
  m.impl("structured_forward", &structured_forward);
  m.impl("structured_backward", &structured_backward);
}
"""


class CompiledOps:
    """Typed handles on the four ops of the compiled extension (see CPP_SOURCE)."""

    def __init__(self, namespace: Any) -> None:
        self._ops = namespace

    def dense_forward(
        self, u: Tensor, w_t: Tensor, bias: Tensor, s0: Tensor, eps: float, keep_z: bool
    ) -> tuple[Tensor, Tensor]:
        states, z_all = self._ops.dense_forward(u, w_t, bias, s0, eps, keep_z)
        return states, z_all

    def dense_backward(
        self, grad: Tensor, w_t: Tensor, bias: Tensor, z_all: Tensor, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        dz_all, grad_bias, grad_s0 = self._ops.dense_backward(grad, w_t, bias, z_all, eps)
        return dz_all, grad_bias, grad_s0

    def structured_forward(
        self,
        x: Tensor,
        v: Tensor,
        factors: StructuredFactors,
        bias: Tensor,
        s0: Tensor,
        eps: float,
        keep_z: bool,
    ) -> tuple[Tensor, Tensor]:
        states, z_all = self._ops.structured_forward(
            x, v, factors.phases, factors.reflections, factors.permutation, bias, s0, eps, keep_z
        )
        return states, z_all

    def structured_backward(
        self, grad: Tensor, factors: StructuredFactors, bias: Tensor, z_all: Tensor, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        dz_all, grad_bias, grad_s0 = self._ops.structured_backward(
            grad, factors.phases, factors.reflections, factors.permutation, bias, z_all, eps
        )
        return dz_all, grad_bias, grad_s0


@dataclass(frozen=True)
class StructuredFactors:
    """The paper's factors of W, as the compiled structured step reads them (no autograd).

    phases (3, n): D1, D2, D3; reflections (2, 2, n): v1 = r[0,0] + i r[0,1], v2 likewise;
    permutation (n,) int64: (Pi h)[k] = h[permutation[k]].
    """

    phases: Tensor
    reflections: Tensor
    permutation: Tensor


def machine_fingerprint() -> str:
    """Short hash of what a build depends on: CPU features (-march=native), torch's version
    and its install folder (each environment compiles against its own torch headers: sharing
    one build folder between environments made each rebuild the other's), the source."""
    features = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features", "model name")):
                    features += line
    except OSError:
        pass  # no /proc: the machine name above is all there is
    text = f"{features}|{torch.__version__}|{os.path.dirname(torch.__file__)}|{CPP_SOURCE}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ExtensionBuildError(RuntimeError):
    """A C++ extension could not be built or loaded with any of BUILD_FLAGS."""


STALE_LOCK = "lock"  # torch's FileBaton in the build folder (torch.utils.cpp_extension)


@contextlib.contextmanager
def exclusive_build(name: str) -> Iterator[None]:
    """Hold an OS lock on the build folder while torch builds or loads `name`.

    torch marks a build in progress with a `lock` file and makes every other process wait
    until it disappears, with no timeout: a process killed while compiling (a worker's
    `kill -9`, an OOM) leaves the file, and from then on every process that loads the
    extension hangs. An flock dies with its process, so whoever holds this one knows no live
    process of ours is building the same name, and a `lock` file found then is stale: it is
    removed (and logged) instead of waited on."""
    try:
        from torch.utils import cpp_extension

        directory = cpp_extension._get_build_directory(name, False)  # creates it
    except (AttributeError, OSError):  # torch moved it: build as before
        yield
        return
    with exclusive_file_lock(os.path.join(directory, ".urnn-build.flock")):
        stale = os.path.join(directory, STALE_LOCK)
        if os.path.exists(stale):
            logger.warning(
                "removing %s: a build lock left by a process that died while compiling "
                "(every later load would wait for it forever)",
                stale,
            )
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        yield


@contextlib.contextmanager
def environment_tools_first() -> Iterator[None]:
    """PATH with this interpreter's scripts folder first, during a build: torch finds `ninja`
    on PATH, and the one pip installed beside the project sits in `.venv/bin`, which is not on
    PATH when `.venv/bin/urnn` is started by its full path (`make demo`, a systemd unit). The
    build then failed ("Ninja is required") and the recurrence ran as the Python loop, ~3x
    slower; and a system ninja of another version, found when the venv was not active,
    rebuilt the extension each time the two alternated."""
    scripts = sysconfig.get_path("scripts")
    before = os.environ.get("PATH", "")
    if not scripts or before.split(os.pathsep)[0] == scripts:
        yield
        return
    os.environ["PATH"] = os.pathsep.join([scripts, before]) if before else scripts
    try:
        yield
    finally:
        os.environ["PATH"] = before


def build_inline(
    name: Callable[[int], str], source: str, *, what: str, python_module: bool, openmp: bool
) -> Any:
    """`load_inline` of `source` with each of BUILD_FLAGS in turn (without -fopenmp unless
    `openmp`); what the first build that loads returns (the module when `python_module`).
    `name(variant)` names each attempt's build. ExtensionBuildError with every attempt's error.
    """
    try:
        from torch.utils import cpp_extension  # imports setuptools: only when first needed
    except Exception as error:  # setuptools missing, or one this torch cannot import
        # raised as the build error it is: the Python loop takes over (a model loaded where
        # setuptools was absent failed its first forward with ModuleNotFoundError instead)
        raise ExtensionBuildError(
            f"torch.utils.cpp_extension cannot be imported: {type(error).__name__}: {error}"
        ) from None

    started = time.perf_counter()
    errors = []
    native = os.environ.get("URNN_NATIVE_BUILD", "1").strip() != "0"
    for variant, all_flags in enumerate(BUILD_FLAGS):
        if not native and "-march=native" in all_flags:
            continue  # the variant number stays in the name: a portable build is another build
        flags = [f for f in all_flags if openmp or f != "-fopenmp"]
        try:
            with exclusive_build(name(variant)), environment_tools_first():
                loaded = cpp_extension.load_inline(  # type: ignore[no-untyped-call]  # untyped
                    name=name(variant),
                    cpp_sources=[source],
                    extra_cflags=flags,
                    # libgomp.so.1: torch's own copy is already loaded and is the one reused
                    extra_ldflags=["-fopenmp"] if "-fopenmp" in flags else [],
                    is_python_module=python_module,
                    no_implicit_headers=True,
                )
        except Exception as error:  # compiler missing, build error, load error: next flags
            errors.append(f"[{' '.join(flags)}] {type(error).__name__}: {error}")
            continue
        logger.info(
            "compiled %s (%s) ready in %.1f s", what, " ".join(flags), time.perf_counter() - started
        )
        return loaded
    raise ExtensionBuildError("\n".join(errors))


@functools.cache
def load_extension() -> CompiledOps:
    """Build the extension (or find it in the on-disk cache) and load it into this process.

    Cached once it succeeds: loading a second build of the same op namespace into one
    process would abort it. Raises ExtensionBuildError with the error of every attempt.
    """
    build_inline(
        lambda variant: f"urnn_recurrence_{machine_fingerprint()}_{variant}",
        CPP_SOURCE,
        what="uRNN recurrence",
        python_module=False,
        openmp=True,
    )
    return CompiledOps(getattr(torch.ops, OPS_NAMESPACE))


@functools.cache
def compiled_ops() -> CompiledOps | None:
    """The compiled ops, or None (with one logged warning) where they cannot be built."""
    try:
        with _LOAD_LOCK:
            return load_extension()
    except ExtensionBuildError as error:
        logger.warning(
            "compiled uRNN recurrence unavailable, using the Python loop instead:\n%s", error
        )
        return None


# -----------------------------------------------------------------------------
# Autograd: one node per sequence; dL/dW is one matmul after the backward loop


def grad_w_t_from_states(s0: Tensor, states: Tensor, dz_all: Tensor) -> Tensor:
    """dL/dM^T = sum_t s_{t-1}^T dz_t, with s_{t-1} from s0 and the saved states."""
    two_n = dz_all.shape[-1]
    grad = s0.T @ dz_all[0]  # (2n, 2n)
    if dz_all.shape[0] > 1:
        previous = states[:-1].reshape(-1, two_n)  # (T-1) B rows, contiguous
        grad = torch.addmm(grad, previous.T, dz_all[1:].reshape(-1, two_n))
    return grad


def keeps_history(*inputs: Tensor) -> bool:
    """Whether a backward pass can follow, so the loop must keep z_t for every t.

    Decided before `Function.apply`: inside forward, `ctx.needs_input_grad` reports
    requires_grad even under no_grad / inference_mode, where no backward can come.
    """
    return torch.is_grad_enabled() and any(t.requires_grad for t in inputs)


def _unit_stride(grad: Tensor) -> Tensor:
    return grad if grad.stride(-1) == 1 else grad.contiguous()


class DenseRecurrence(torch.autograd.Function):
    """Compiled s_t = modReLU(s_{t-1} @ M^T + u_t); u (T, B, 2n), w_t = M^T (2n, 2n)."""

    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        w_t: Tensor,
        bias: Tensor,
        s0: Tensor,
        eps: float,
        ops: CompiledOps,
        keep: bool,
    ) -> Tensor:
        states, z_all = ops.dense_forward(u, w_t, bias, s0, eps, keep)
        if keep:
            ctx.save_for_backward(w_t, bias, s0, states, z_all)
            ctx.eps, ctx.ops = eps, ops
        return states

    @staticmethod
    @once_differentiable  # the C++ backward loop has no derivative of its own
    def backward(ctx: Any, grad_states: Tensor) -> tuple[Tensor | None, ...]:
        w_t, bias, s0, states, z_all = ctx.saved_tensors
        ops: CompiledOps = ctx.ops
        dz_all, grad_bias, grad_s0 = ops.dense_backward(
            _unit_stride(grad_states), w_t, bias, z_all, ctx.eps
        )
        grad_w_t = grad_w_t_from_states(s0, states, dz_all) if ctx.needs_input_grad[1] else None
        return dz_all, grad_w_t, grad_bias, grad_s0, None, None, None


class StructuredRecurrence(torch.autograd.Function):
    """Compiled structured step, input projection u_t = V x_t fused in: x (T, B, m), v (2n, m).

    `w_t` (M^T of the same W) only routes dL/dW to autograd: its values are never read, so it
    can be an empty tensor when no gradient reaches W.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        v: Tensor,
        w_t: Tensor,
        bias: Tensor,
        s0: Tensor,
        factors: StructuredFactors,
        eps: float,
        ops: CompiledOps,
        keep: bool,
    ) -> Tensor:
        states, z_all = ops.structured_forward(x, v, factors, bias, s0, eps, keep)
        if keep:  # the factors too, so that an in-place update before backward is caught
            ctx.save_for_backward(
                x,
                v,
                bias,
                s0,
                states,
                z_all,
                factors.phases,
                factors.reflections,
                factors.permutation,
            )
            ctx.eps, ctx.ops = eps, ops
        return states

    @staticmethod
    @once_differentiable  # the C++ backward loop has no derivative of its own
    def backward(ctx: Any, grad_states: Tensor) -> tuple[Tensor | None, ...]:
        x, v, bias, s0, states, z_all, *factors = ctx.saved_tensors
        ops: CompiledOps = ctx.ops
        dz_all, grad_bias, grad_s0 = ops.structured_backward(
            _unit_stride(grad_states), StructuredFactors(*factors), bias, z_all, ctx.eps
        )
        needs = ctx.needs_input_grad
        grad_x = dz_all @ v if needs[0] else None  # (T, B, m)
        flat_dz = dz_all.reshape(-1, dz_all.shape[-1])
        grad_v = flat_dz.T @ x.reshape(-1, x.shape[-1]) if needs[1] else None  # (2n, m)
        grad_w_t = grad_w_t_from_states(s0, states, dz_all) if needs[2] else None
        return grad_x, grad_v, grad_w_t, grad_bias, grad_s0, None, None, None, None


def dense_recurrence(
    ops: CompiledOps, u: Tensor, w_t: Tensor, bias: Tensor, s0: Tensor, eps: float
) -> Tensor:
    """All states (T, B, 2n) of the dense compiled loop; u (T, B, 2n), w_t (2n, 2n), s0 (B, 2n)."""
    states: Tensor = DenseRecurrence.apply(  # type: ignore[no-untyped-call]  # torch leaves Function.apply untyped
        u.contiguous(),
        w_t.contiguous(),
        bias.contiguous(),
        s0.contiguous(),
        eps,
        ops,
        keeps_history(u, w_t, bias, s0),
    )
    return states


def structured_recurrence(
    ops: CompiledOps,
    x: Tensor,
    v: Tensor,
    w_t: Tensor,
    bias: Tensor,
    s0: Tensor,
    factors: StructuredFactors,
    eps: float,
) -> Tensor:
    """All states (T, B, 2n) of the structured loop; x (T, B, m), v = V (2n, m), s0 (B, 2n)."""
    keep = keeps_history(x, v, w_t, bias, s0)
    if not keep:  # no backward can follow: the op itself, without an autograd node (and so
        # traceable by torch.jit.trace, which cannot record a Function; service.served)
        return ops.structured_forward(
            x.contiguous(), v.contiguous(), factors, bias.contiguous(), s0.contiguous(), eps, False
        )[0]
    states: Tensor = StructuredRecurrence.apply(  # type: ignore[no-untyped-call]  # torch leaves Function.apply untyped
        x.contiguous(),
        v.contiguous(),
        w_t,
        bias.contiguous(),
        s0.contiguous(),
        factors,
        eps,
        ops,
        keep,
    )
    return states
