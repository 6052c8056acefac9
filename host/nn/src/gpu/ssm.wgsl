// The selective scans of Mamba-2's and Mamba-1's layers (after ops.wgsl,
// whose THREADS they share).

// ---- ssm_scan: Mamba-2's selective scan of one session's `tokens` rows,
// rows `row0 ..`. `scan_zxdt` holds the ssm_in product's rows (`stride`
// floats: z (`inner`), xBC, then dt, a float per head), `scan_xbc` the
// convolution's (x (`inner`), then B and C, `groups * n` each), `scan_hw`
// per head dt's bias, then A, then D (`heads` each), and `scan_state` each
// channel's `n` floats (`[n][inner]`). Per row, channel i of head h (of
// group g, `heads / groups` heads a group, in order): dt' = softplus(dt[h]
// + bias), each state float s_j = s_j * exp(dt' A) + B_j * x_i * dt', and
// out[i] = (sum of s_j C_j + D x_i) * silu(z_i), as ggml's ssm_scan (and
// the gate of llama.cpp's Mamba-2 layer). A thread per channel walks the
// rows in order.

struct ScanParams {
    inner: u32,
    n: u32,
    heads: u32,
    groups: u32,
    tokens: u32,
    row0: u32,
    stride: u32,
    _p7: u32,
}

@group(0) @binding(0) var<storage, read> scan_zxdt: array<f32>;
@group(0) @binding(1) var<storage, read> scan_xbc: array<f32>;
@group(0) @binding(2) var<storage, read> scan_hw: array<f32>;
@group(0) @binding(3) var<storage, read_write> scan_state: array<f32>;
@group(0) @binding(4) var<storage, read_write> scan_out: array<f32>;
@group(0) @binding(5) var<uniform> scan_p: ScanParams;

@compute @workgroup_size(64, 1, 1)
fn ssm_scan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) wgs: vec3<u32>) {
    let inner = scan_p.inner;
    let n = scan_p.n;
    let heads = scan_p.heads;
    let cd = inner + 2u * scan_p.groups * n;
    for (var i = gid.x; i < inner; i = i + wgs.x * THREADS) {
        let h = i / (inner / heads);
        let g = h / (heads / scan_p.groups);
        for (var t = 0u; t < scan_p.tokens; t = t + 1u) {
            let row = scan_p.row0 + t;
            var dt = scan_zxdt[row * scan_p.stride + inner + cd + h] + scan_hw[h];
            // (ggml's softplus, linear past 20.)
            if (dt <= 20.0) {
                dt = log(1.0 + exp(dt));
            }
            let decay = exp(dt * scan_hw[heads + h]);
            let x = scan_xbc[row * cd + i];
            let x_dt = x * dt;
            let b = row * cd + inner + g * n;
            let c = b + scan_p.groups * n;
            var sum = 0.0;
            for (var j = 0u; j < n; j = j + 1u) {
                let s = scan_state[j * inner + i] * decay + scan_xbc[b + j] * x_dt;
                scan_state[j * inner + i] = s;
                sum = sum + s * scan_xbc[c + j];
            }
            let z = scan_zxdt[row * scan_p.stride + i];
            scan_out[row * inner + i] = (sum + x * scan_hw[2u * heads + h]) * z / (1.0 + exp(-z));
        }
    }
}

// ---- selective_scan: Mamba-1's selective scan of one session's `tokens`
// rows, rows `row0 ..`: `sel_x` the convolution's rows (`inner`), `sel_dt`
// each channel's dt (`inner`, bias not yet added), `sel_bc` ssm_x's rows
// (`bc_stride` floats: B from float `bc_col`, then C, `n` each), `sel_z`
// ssm_in's rows (`z_stride`, z from float `inner`), `sel_w` per channel dt's
// bias, then A (`n` a channel), then D, and `sel_state` each channel's `n`
// floats (`[n][inner]`). Per row, channel i: dt' = softplus(dt_i + bias_i),
// s_j = s_j exp(dt' A_ij) + B_j x_i dt', out_i = (sum of s_j C_j + D_i x_i)
// * silu(z_i), as ggml's ssm_scan and llama.cpp's Mamba-1 gate. A thread
// per channel walks the rows in order.

struct SelParams {
    inner: u32,
    n: u32,
    tokens: u32,
    row0: u32,
    bc_stride: u32,
    bc_col: u32,
    z_stride: u32,
    _p7: u32,
}

@group(0) @binding(0) var<storage, read> sel_x: array<f32>;
@group(0) @binding(1) var<storage, read> sel_dt: array<f32>;
@group(0) @binding(2) var<storage, read> sel_bc: array<f32>;
@group(0) @binding(3) var<storage, read> sel_z: array<f32>;
@group(0) @binding(4) var<storage, read> sel_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> sel_state: array<f32>;
@group(0) @binding(6) var<storage, read_write> sel_out: array<f32>;
@group(0) @binding(7) var<uniform> sel_p: SelParams;

@compute @workgroup_size(64, 1, 1)
fn selective_scan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) wgs: vec3<u32>) {
    let inner = sel_p.inner;
    let n = sel_p.n;
    for (var i = gid.x; i < inner; i = i + wgs.x * THREADS) {
        for (var t = 0u; t < sel_p.tokens; t = t + 1u) {
            let row = sel_p.row0 + t;
            var dt = sel_dt[row * inner + i] + sel_w[i];
            // (ggml's softplus, linear past 20.)
            if (dt <= 20.0) {
                dt = log(1.0 + exp(dt));
            }
            let x = sel_x[row * inner + i];
            let x_dt = x * dt;
            let b = row * sel_p.bc_stride + sel_p.bc_col;
            var sum = 0.0;
            for (var j = 0u; j < n; j = j + 1u) {
                let decay = exp(dt * sel_w[inner + i * n + j]);
                let s = sel_state[j * inner + i] * decay + sel_bc[b + j] * x_dt;
                sel_state[j * inner + i] = s;
                sum = sum + s * sel_bc[b + n + j];
            }
            let z = sel_z[row * sel_p.z_stride + inner + i];
            let d = sel_w[inner + inner * n + i];
            sel_out[row * inner + i] = (sum + x * d) * z / (1.0 + exp(-z));
        }
    }
}
