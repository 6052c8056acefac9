//! Prints the hardware GPUs wgpu finds, and how long the probe took.

fn main() {
    let t = std::time::Instant::now();
    let gpus = weft_nn::gpu::hardware_gpus();
    println!("{} hardware GPU(s) in {:?}", gpus.len(), t.elapsed());
    for g in gpus {
        println!("  {g}");
    }
}
