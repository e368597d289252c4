//! The GPU engine (feature `cuda`). Every kernel is compiled with NVRTC on every machine (the
//! test set-up installs the `nvidia-cuda-nvrtc-cu12` wheel for the library), so a kernel that
//! does not compile cannot land. Where a CUDA device exists, the GPU's answers are compared
//! with the CPU engine's, the oracle, on every fixture image.
#![cfg(feature = "cuda")]
#![allow(clippy::unwrap_used)]
#![allow(clippy::disallowed_methods)] // tests and benches may block: they own their runtimes

use archway_compute::{Engine, Op, cuda, run};

mod common;

use common::{fixtures, request};

#[test]
fn every_kernel_compiles_with_nvrtc() {
    assert!(
        cuda::nvrtc_present(),
        "libnvrtc not found: scripts/test-services installs the nvidia-cuda-nvrtc-cu12 wheel \
         and puts its lib directory on LD_LIBRARY_PATH for this test"
    );
    let ptx = cuda::compile().unwrap();
    let text = ptx.to_src();
    for kernel in ["moments_pass1", "moments_pass2", "histogram"] {
        assert!(text.contains(kernel), "{kernel} missing from the PTX");
    }
}

/// Without a usable device, `auto` runs on the CPU and says why, and `cuda` refuses by name.
/// (On a machine with a device there is nothing to fall back from: the comparison below runs.)
#[tokio::test]
async fn without_a_device_auto_runs_on_the_cpu_and_cuda_refuses() {
    let Err(reason) = cuda::engine() else {
        common::skipped(
            "compute/tests/cuda.rs without_a_device_auto_runs_on_the_cpu_and_cuda_refuses",
            "this machine has a CUDA device, so there is no fallback to check",
        );
        return;
    };
    let store = fixtures().await;
    let mut req = request("f32_nan.fits", Op::Mean);
    req.engine = Engine::Auto;
    let r = run(store.clone(), &req).await.unwrap();
    assert_eq!(r.engine, Engine::Cpu);
    assert!(r.engine_note.unwrap().contains(reason));
    req.engine = Engine::Cuda;
    let err = run(store, &req).await.unwrap_err().to_string();
    assert!(err.contains("cuda"), "{err}");
}

#[tokio::test]
async fn the_gpu_agrees_with_the_cpu() {
    let gpu = match cuda::engine() {
        Ok(g) => g,
        Err(reason) => {
            common::skipped(
                "compute/tests/cuda.rs the_gpu_agrees_with_the_cpu",
                &format!("no CUDA device ({reason})"),
            );
            return;
        }
    };
    eprintln!("comparing the GPU ({}) with the CPU", gpu.name);
    let store = fixtures().await;
    for file in [
        "u8.fits",
        "i16.fits",
        "i32.fits",
        "i64.fits",
        "f32_nan.fits",
        "f64.fits",
        "u16.fits",
        "u32.fits",
        "scaled_blank.fits",
    ] {
        for op in [Op::Stats, Op::Histogram] {
            let mut req = request(file, op);
            let cpu = run(store.clone(), &req).await.unwrap();
            req.engine = Engine::Cuda;
            let gpu = run(store.clone(), &req).await.unwrap();
            assert_eq!(gpu.engine, Engine::Cuda);
            assert_eq!((gpu.count, gpu.missing), (cpu.count, cpu.missing), "{file}");
            if op == Op::Histogram {
                assert_eq!(gpu.value["counts"], cpu.value["counts"], "{file}");
                continue;
            }
            for k in ["min", "max"] {
                assert_eq!(gpu.value[k], cpu.value[k], "{file} {k}");
            }
            for k in ["sum", "mean", "var", "std"] {
                let (g, c) = (
                    gpu.value[k].as_f64().unwrap(),
                    cpu.value[k].as_f64().unwrap(),
                );
                assert!(
                    (g - c).abs() <= c.abs() * 1e-9,
                    "{file} {k}: gpu {g} cpu {c}"
                );
            }
        }
    }
}
