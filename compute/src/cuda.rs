//! The GPU engine (feature `cuda`): the decode and reduce kernels are CUDA C in [`KERNELS`],
//! compiled at run time by NVRTC and loaded through the CUDA driver, both found by dynamic
//! loading (no CUDA toolkit is needed to build). The CPU engine is the oracle: the kernels
//! decode exactly as [`crate::image::Layout`] does and produce the same mergeable partial
//! results ([`Moments`] per chunk, histogram counts), merged on the host the same way.
//!
//! `CudaContext::new` panics when libcuda is missing, so availability is checked first
//! ([`engine`]), and `auto` falls back to the CPU with the reason.
#![allow(unsafe_code)] // cudarc's library probes and kernel launches are unsafe by nature.

use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchArgs, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use crate::ComputeError;
use crate::image::Layout;
use crate::reduce::{Histogram, Moments};

/// The kernels. Every one decodes element `i` of big-endian FITS image data with BITPIX,
/// BSCALE/BZERO and BLANK (NaN when missing), as the CPU engine does.
pub const KERNELS: &str = r#"
__device__ __forceinline__ double fits_value(const unsigned char* d, long long i, int bitpix,
        double bscale, double bzero, int has_blank, long long blank) {
    const double nan = __longlong_as_double(0x7ff8000000000000LL);
    bool identity = (bscale == 1.0 && bzero == 0.0);
    switch (bitpix) {
    case 8: {
        long long v = d[i];
        if (has_blank && v == blank) return nan;
        return identity ? (double)v : bzero + bscale * (double)v;
    }
    case 16: {
        const unsigned char* p = d + 2 * i;
        long long v = (short)((p[0] << 8) | p[1]);
        if (has_blank && v == blank) return nan;
        return identity ? (double)v : bzero + bscale * (double)v;
    }
    case 32: {
        const unsigned char* p = d + 4 * i;
        unsigned int u = ((unsigned int)p[0] << 24) | ((unsigned int)p[1] << 16)
                       | ((unsigned int)p[2] << 8) | (unsigned int)p[3];
        long long v = (int)u;
        if (has_blank && v == blank) return nan;
        return identity ? (double)v : bzero + bscale * (double)v;
    }
    case 64: {
        const unsigned char* p = d + 8 * i;
        unsigned long long u = 0;
        for (int k = 0; k < 8; k++) u = (u << 8) | p[k];
        long long v = (long long)u;
        if (has_blank && v == blank) return nan;
        return identity ? (double)v : bzero + bscale * (double)v;
    }
    case -32: {
        const unsigned char* p = d + 4 * i;
        unsigned int u = ((unsigned int)p[0] << 24) | ((unsigned int)p[1] << 16)
                       | ((unsigned int)p[2] << 8) | (unsigned int)p[3];
        double v = (double)__int_as_float((int)u);
        return identity ? v : bzero + bscale * v;
    }
    default: {
        const unsigned char* p = d + 8 * i;
        unsigned long long u = 0;
        for (int k = 0; k < 8; k++) u = (u << 8) | p[k];
        double v = __longlong_as_double((long long)u);
        return identity ? v : bzero + bscale * v;
    }
    }
}

#define THREADS 256

// Pass 1: per block, the count, sum, minimum and maximum of the non-missing values.
extern "C" __global__ void moments_pass1(const unsigned char* data, long long n, int bitpix,
        double bscale, double bzero, int has_blank, long long blank,
        unsigned long long* counts, double* sums, double* mins, double* maxs) {
    __shared__ unsigned long long c[THREADS];
    __shared__ double s[THREADS], lo[THREADS], hi[THREADS];
    unsigned long long count = 0;
    double sum = 0.0, mn = 1.0 / 0.0, mx = -1.0 / 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double x = fits_value(data, i, bitpix, bscale, bzero, has_blank, blank);
        if (x == x) {
            count += 1;
            sum += x;
            mn = fmin(mn, x);
            mx = fmax(mx, x);
        }
    }
    int t = threadIdx.x;
    c[t] = count; s[t] = sum; lo[t] = mn; hi[t] = mx;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step /= 2) {
        if (t < step) {
            c[t] += c[t + step];
            s[t] += s[t + step];
            lo[t] = fmin(lo[t], lo[t + step]);
            hi[t] = fmax(hi[t], hi[t + step]);
        }
        __syncthreads();
    }
    if (t == 0) {
        counts[blockIdx.x] = c[0];
        sums[blockIdx.x] = s[0];
        mins[blockIdx.x] = lo[0];
        maxs[blockIdx.x] = hi[0];
    }
}

// Pass 2: per block, the sums of (x - mean)^2 and of (x - mean), for the corrected two-pass
// variance.
extern "C" __global__ void moments_pass2(const unsigned char* data, long long n, int bitpix,
        double bscale, double bzero, int has_blank, long long blank, double mean,
        double* m2s, double* c2s) {
    __shared__ double a[THREADS], b[THREADS];
    double m2 = 0.0, c2 = 0.0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double x = fits_value(data, i, bitpix, bscale, bzero, has_blank, blank);
        if (x == x) {
            double d = x - mean;
            m2 += d * d;
            c2 += d;
        }
    }
    int t = threadIdx.x;
    a[t] = m2; b[t] = c2;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step /= 2) {
        if (t < step) { a[t] += a[t + step]; b[t] += b[t + step]; }
        __syncthreads();
    }
    if (t == 0) { m2s[blockIdx.x] = a[0]; c2s[blockIdx.x] = b[0]; }
}

// Equal bins over [lo, hi], the last closed, with numpy's correction at the edges.
extern "C" __global__ void histogram(const unsigned char* data, long long n, int bitpix,
        double bscale, double bzero, int has_blank, long long blank,
        double lo, double hi, int bins, unsigned long long* counts) {
    double step = (hi - lo) / bins;
    double norm = bins / (hi - lo);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        double x = fits_value(data, i, bitpix, bscale, bzero, has_blank, blank);
        if (!(x >= lo && x <= hi)) continue;
        long long k = (long long)((x - lo) * norm);
        if (k > bins - 1) k = bins - 1;
        double below = lo + step * k;
        double above = (k + 1 == bins) ? hi : lo + step * (k + 1);
        if (k > 0 && x < below) k -= 1;
        else if (k + 1 < bins && x >= above) k += 1;
        atomicAdd(&counts[k], 1ULL);
    }
}
"#;

const THREADS: u32 = 256;
const BLOCKS: u32 = 1024;

/// Compiles [`KERNELS`] with NVRTC (no device needed).
pub fn compile() -> Result<Ptx, ComputeError> {
    let opts = CompileOptions {
        name: Some("archway_kernels.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(KERNELS, opts).map_err(|e| ComputeError::EngineUnavailable {
        engine: "cuda",
        reason: format!("NVRTC could not compile the kernels: {e}"),
    })
}

/// Whether the NVRTC library can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// A chunk on the device with what every kernel needs to decode it (`fits_value`'s arguments).
struct Decode {
    data: CudaSlice<u8>,
    n: i64,
    bitpix: i32,
    bscale: f64,
    bzero: f64,
    has_blank: i32,
    blank: i64,
}

impl Decode {
    fn upload(stream: &Arc<CudaStream>, raw: &[u8], layout: &Layout) -> Result<Self, ComputeError> {
        Ok(Self {
            data: stream.clone_htod(raw).map_err(driver_error)?,
            n: (raw.len() / layout.width()) as i64,
            bitpix: layout.bitpix as i32,
            bscale: layout.bscale,
            bzero: layout.bzero,
            has_blank: i32::from(layout.blank.is_some()),
            blank: layout.blank.unwrap_or(0),
        })
    }

    /// A launch of `f` with the decoding arguments pushed first, as every kernel takes them.
    fn launch<'a>(&'a self, stream: &'a CudaStream, f: &'a CudaFunction) -> LaunchArgs<'a> {
        let mut l = stream.launch_builder(f);
        l.arg(&self.data)
            .arg(&self.n)
            .arg(&self.bitpix)
            .arg(&self.bscale)
            .arg(&self.bzero)
            .arg(&self.has_blank)
            .arg(&self.blank);
        l
    }
}

/// A GPU ready to reduce: its stream and the loaded kernels. One reduction chunk at a time.
pub struct GpuEngine {
    stream: Arc<CudaStream>,
    pass1: CudaFunction,
    pass2: CudaFunction,
    histogram: CudaFunction,
    busy: Mutex<()>,
    pub name: String,
}

impl std::fmt::Debug for GpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuEngine")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The GPU engine, set up on first use; Err says why there is none.
pub fn engine() -> Result<&'static GpuEngine, &'static str> {
    static ENGINE: OnceLock<Result<GpuEngine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let r = GpuEngine::new();
            if let Err(reason) = &r {
                tracing::info!(reason, "no GPU engine");
            }
            r
        })
        .as_ref()
        .map_err(String::as_str)
}

fn driver_error(e: impl std::fmt::Display) -> ComputeError {
    ComputeError::Task(format!("CUDA: {e}"))
}

impl GpuEngine {
    fn new() -> Result<Self, String> {
        // SAFETY: only tries to dlopen libcuda; CudaContext::new panics without it.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda) on this machine".into());
        }
        if !nvrtc_present() {
            return Err("no NVRTC library (libnvrtc) to compile the kernels".into());
        }
        let ctx = CudaContext::new(0).map_err(|e| format!("no usable CUDA device: {e}"))?;
        let name = ctx.name().unwrap_or_else(|_| "CUDA device 0".into());
        let ptx = compile().map_err(|e| e.to_string())?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| format!("loading the kernels: {e}"))?;
        let load = |f: &str| {
            module
                .load_function(f)
                .map_err(|e| format!("kernel {f}: {e}"))
        };
        Ok(Self {
            stream: ctx.default_stream(),
            pass1: load("moments_pass1")?,
            pass2: load("moments_pass2")?,
            histogram: load("histogram")?,
            busy: Mutex::new(()),
            name,
        })
    }

    fn config() -> LaunchConfig {
        LaunchConfig {
            grid_dim: (BLOCKS, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// The moments of one chunk of image bytes, decoded and reduced on the GPU.
    pub fn moments(&self, raw: &[u8], layout: &Layout) -> Result<Moments, ComputeError> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if raw.len() < layout.width() {
            return Ok(Moments::default());
        }
        let s = &self.stream;
        let chunk = Decode::upload(s, raw, layout)?;
        let mut counts = s
            .alloc_zeros::<u64>(BLOCKS as usize)
            .map_err(driver_error)?;
        let mut sums = s
            .alloc_zeros::<f64>(BLOCKS as usize)
            .map_err(driver_error)?;
        let mut mins = s
            .alloc_zeros::<f64>(BLOCKS as usize)
            .map_err(driver_error)?;
        let mut maxs = s
            .alloc_zeros::<f64>(BLOCKS as usize)
            .map_err(driver_error)?;
        let mut launch = chunk.launch(s, &self.pass1);
        launch
            .arg(&mut counts)
            .arg(&mut sums)
            .arg(&mut mins)
            .arg(&mut maxs);
        // SAFETY: the arguments match the kernel's signature, and every buffer holds BLOCKS
        // values (one per block) or the chunk's bytes.
        unsafe { launch.launch(Self::config()) }.map_err(driver_error)?;
        let counts = s.clone_dtoh(&counts).map_err(driver_error)?;
        let sums = s.clone_dtoh(&sums).map_err(driver_error)?;
        let mins = s.clone_dtoh(&mins).map_err(driver_error)?;
        let maxs = s.clone_dtoh(&maxs).map_err(driver_error)?;
        let mut m = Moments::from_blocks(chunk.n as u64, &counts, &sums, &mins, &maxs);
        if m.count == 0 {
            return Ok(m);
        }
        let mut m2s = s
            .alloc_zeros::<f64>(BLOCKS as usize)
            .map_err(driver_error)?;
        let mut c2s = s
            .alloc_zeros::<f64>(BLOCKS as usize)
            .map_err(driver_error)?;
        let mean = m.mean;
        let mut launch = chunk.launch(s, &self.pass2);
        launch.arg(&mean).arg(&mut m2s).arg(&mut c2s);
        // SAFETY: as above.
        unsafe { launch.launch(Self::config()) }.map_err(driver_error)?;
        let m2 = s.clone_dtoh(&m2s).map_err(driver_error)?;
        let c2 = s.clone_dtoh(&c2s).map_err(driver_error)?;
        m.set_deviations(m2.iter().sum(), c2.iter().sum());
        Ok(m)
    }

    /// Histogram counts of one chunk, on the GPU.
    pub fn histogram(
        &self,
        raw: &[u8],
        layout: &Layout,
        h: &mut Histogram,
    ) -> Result<(), ComputeError> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if raw.len() < layout.width() {
            return Ok(());
        }
        let s = &self.stream;
        let chunk = Decode::upload(s, raw, layout)?;
        let bins = h.counts.len() as i32;
        let mut counts = s.alloc_zeros::<u64>(h.counts.len()).map_err(driver_error)?;
        let mut launch = chunk.launch(s, &self.histogram);
        launch.arg(&h.lo).arg(&h.hi).arg(&bins).arg(&mut counts);
        // SAFETY: as above; `counts` holds one value per bin.
        unsafe { launch.launch(Self::config()) }.map_err(driver_error)?;
        for (a, b) in h
            .counts
            .iter_mut()
            .zip(s.clone_dtoh(&counts).map_err(driver_error)?)
        {
            *a += b;
        }
        Ok(())
    }
}
