//! Tests of `cnn.rs`: convolutions, pools, batch norm and `Clip` on the
//! device against the CPU.

use std::sync::Arc;

use super::{fails_on_both, matches_the_cpu, ran_on_the_device, wave};
use crate::onnx::exec::OnnxModel;
use crate::onnx::write::GraphWriter;
use crate::{Model, Tensor};

#[test]
fn a_small_cnn_runs_on_the_device_as_on_the_cpu() {
    // Conv (padded, biased) -> BatchNormalization -> Relu -> MaxPool
    // (ceil mode) -> grouped Conv (strided, dilated, uneven pads) ->
    // Clip -> AveragePool counting its padding -> AveragePool not
    // counting it -> global average and max pools.
    let mut g = GraphWriter::new("cnn");
    let pads = |p: &'static [i64]| ("pads", p);
    g.node_ints(
        "Conv",
        &["x", "w1", "b1"],
        &["c1"],
        "conv1",
        &[],
        &[pads(&[1, 1, 1, 1])],
    );
    g.node(
        "BatchNormalization",
        &["c1", "scale", "shift", "mean", "var"],
        &["bn"],
        "bn",
        &[],
    );
    g.node("Relu", &["bn"], &["r"], "relu", &[]);
    g.node_ints(
        "MaxPool",
        &["r"],
        &["mp"],
        "maxpool",
        &[("ceil_mode", 1)],
        &[("kernel_shape", &[2, 2]), ("strides", &[2, 2])],
    );
    g.node_ints(
        "Conv",
        &["mp", "w2"],
        &["c2"],
        "conv2",
        &[("group", 2)],
        &[
            ("strides", &[2, 1]),
            ("dilations", &[1, 2]),
            pads(&[1, 0, 2, 1]),
        ],
    );
    g.node("Clip", &["c2", "lo", "hi"], &["cl"], "clip", &[]);
    g.node_ints(
        "AveragePool",
        &["cl"],
        &["ap"],
        "avg_with_pads",
        &[("count_include_pad", 1)],
        &[("kernel_shape", &[3, 3]), pads(&[1, 1, 1, 1])],
    );
    g.node_ints(
        "AveragePool",
        &["ap"],
        &["ap2"],
        "avg",
        &[],
        &[("kernel_shape", &[2, 2]), pads(&[0, 1, 1, 0])],
    );
    g.node("GlobalAveragePool", &["ap2"], &["gap"], "gap", &[]);
    g.node("GlobalMaxPool", &["ap2"], &["gmp"], "gmp", &[]);
    g.initializer("w1", &[4, 3, 3, 3], &wave(108, 0.0));
    g.initializer("b1", &[4], &[0.1, -0.2, 0.3, 0.0]);
    g.initializer("scale", &[4], &[1.0, 0.5, 2.0, -1.0]);
    g.initializer("shift", &[4], &[0.0, 0.1, -0.1, 0.2]);
    g.initializer("mean", &[4], &[0.2, -0.1, 0.0, 0.3]);
    g.initializer("var", &[4], &[1.0, 2.0, 0.5, 0.25]);
    g.initializer("w2", &[6, 2, 3, 2], &wave(72, 1.0));
    g.initializer("lo", &[], &[-0.5]);
    g.initializer("hi", &[], &[0.75]);
    g.input("x", &["n", "3", "h", "w"]);
    for o in ["c2", "ap2", "gap", "gmp"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![2, 3, 9, 8], &wave(432, 2.0)),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    // Everything ran there, from the input on: one round trip, for the
    // outputs.
    assert_eq!(gpu.round_trips(), 1);
}

#[test]
fn one_dimensional_convolution_and_pooling_run_on_the_device() {
    let mut g = GraphWriter::new("conv1d");
    g.node_ints(
        "Conv",
        &["x", "w"],
        &["c"],
        "conv",
        &[],
        &[("strides", &[2]), ("pads", &[2, 1]), ("dilations", &[2])],
    );
    g.node_ints(
        "MaxPool",
        &["c"],
        &["m"],
        "pool",
        &[],
        &[("kernel_shape", &[3]), ("strides", &[1])],
    );
    g.initializer("w", &[5, 2, 3], &wave(30, 0.5));
    g.input("x", &["n", "2", "l"]);
    g.output("m", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![3, 2, 17], &wave(102, 0.25)),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(gpu.round_trips(), 1);
}

/// Convolutions (plain and transposed) and every pooling over three
/// spatial axes run on the device, with strides, pads and dilations that
/// differ axis by axis (a max pool's last windows past the input, by
/// `ceil_mode`), and give the CPU's values.
#[test]
fn three_dimensional_convolution_and_pooling_run_on_the_device() {
    let mut g = GraphWriter::new("conv3d");
    g.node_ints(
        "Conv",
        &["x", "w"],
        &["c"],
        "conv",
        &[],
        &[
            ("strides", &[1, 2, 1]),
            ("pads", &[1, 0, 1, 0, 1, 1]),
            ("dilations", &[2, 1, 1]),
        ],
    );
    g.node_ints(
        "ConvTranspose",
        &["c", "wt", "bias"],
        &["t"],
        "up",
        &[],
        &[("strides", &[2, 1, 1])],
    );
    g.node_ints(
        "AveragePool",
        &["t"],
        &["a"],
        "average",
        &[("count_include_pad", 1)],
        &[("kernel_shape", &[2, 1, 2]), ("pads", &[1, 0, 0, 0, 0, 1])],
    );
    g.node_ints(
        "MaxPool",
        &["a"],
        &["m"],
        "max",
        &[("ceil_mode", 1)],
        &[
            ("kernel_shape", &[2, 2, 2]),
            ("strides", &[2, 2, 2]),
            ("pads", &[0, 1, 0, 1, 0, 0]),
        ],
    );
    g.node_ints(
        "LpPool",
        &["m"],
        &["y"],
        "lp",
        &[],
        &[("kernel_shape", &[1, 2, 2])],
    );
    g.initializer("w", &[3, 2, 2, 3, 2], &wave(72, 0.5));
    g.initializer("wt", &[3, 2, 2, 2, 2], &wave(48, 0.75));
    g.initializer("bias", &[2], &[0.25, -0.5]);
    g.input("x", &["n", "2", "d", "h", "w"]);
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", 18);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![2, 2, 5, 6, 7], &wave(840, 0.25)),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(gpu.round_trips(), 1, "one round trip: all on the device");
    assert_eq!(gpu.pass_times().dispatches, 5, "one dispatch a node");
}

#[test]
fn cnn_ops_the_device_does_not_cover_run_on_the_cpu() {
    // MaxPool's indices and a training-mode batch norm: each on the
    // CPU, after a round trip; a 1 x 1 Conv by the identity puts what
    // follows back on the device (an LpPool, there since).
    let mut g = GraphWriter::new("cnn_cpu");
    g.node("Conv", &["x", "eye"], &["r"], "on_the_device", &[]);
    g.node_ints(
        "MaxPool",
        &["r"],
        &["m", "idx"],
        "with_indices",
        &[],
        &[("kernel_shape", &[2, 2])],
    );
    g.node("Conv", &["m", "eye"], &["m2"], "back_on_the_device", &[]);
    g.node(
        "BatchNormalization",
        &["m2", "s", "b", "mean", "var"],
        &["bn", "rm", "rv"],
        "training",
        &[("training_mode", 1)],
    );
    g.node("Conv", &["bn", "eye"], &["r2"], "again", &[]);
    g.node_ints(
        "LpPool",
        &["r2"],
        &["y"],
        "lp",
        &[],
        &[("kernel_shape", &[2, 2])],
    );
    g.initializer("eye", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]);
    for (name, v) in [("s", 1.0), ("b", 0.0), ("mean", 0.0), ("var", 1.0)] {
        g.initializer(name, &[2], &[v, v]);
    }
    g.input("x", &["1", "2", "5", "5"]);
    for o in ["idx", "y", "rm"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![1, 2, 5, 5], &wave(50, 0.0)),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    // `r` back for the pool, `m2` for the batch norm, `y` at the end.
    assert_eq!(gpu.round_trips(), 3);
    let times = gpu.pass_times();
    assert_eq!(times.dispatches, 4, "three convolutions and the LpPool");
}

#[test]
fn batch_norm_subtracts_a_large_mean_before_scaling() {
    // x ≈ mean = 1000 with a small variance: folding the mean into a
    // shift (x·k − mean·k) cancels away the result's digits in f32.
    let mut g = GraphWriter::new("bn_cancel");
    g.node_ints(
        "Conv",
        &["x", "ones"],
        &["c"],
        "depthwise",
        &[("group", 2)],
        &[],
    );
    g.node(
        "BatchNormalization",
        &["c", "s", "b", "mean", "var"],
        &["y"],
        "bn",
        &[],
    );
    g.initializer("ones", &[2, 1, 1, 1], &[1.0, 1.0]);
    g.initializer("s", &[2], &[1.0, 2.0]);
    g.initializer("b", &[2], &[0.0, 0.5]);
    g.initializer("mean", &[2], &[1000.0, -1000.0]);
    g.initializer("var", &[2], &[1e-4, 1e-4]);
    g.input("x", &["1", "2", "2", "2"]);
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x: Vec<f32> = [1000.001, 999.999, 1000.0, 1000.002]
        .iter()
        .chain(&[-1000.001, -999.998, -1000.0, -1000.003])
        .copied()
        .collect();
    let x = [("x".into(), Tensor::from_f32(vec![1, 2, 2, 2], &x))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(gpu.round_trips(), 1);
    // The statistics went up at load with the weight, as constants.
    let model = OnnxModel::load_for(&bytes, Some(Ok(gpu))).unwrap();
    assert_eq!(model.device_bytes(), (2 + 4 * 2) * 4);
}

#[test]
fn max_pools_skip_nan_and_reduce_max_keeps_it_as_on_the_cpu() {
    // A depthwise identity puts x on the device; channel 0 has a NaN,
    // channel 1 is all NaN, channel 2 has none.
    let mut g = GraphWriter::new("nan_max");
    g.node_ints(
        "Conv",
        &["x", "ones"],
        &["c"],
        "depthwise",
        &[("group", 3)],
        &[],
    );
    g.node("GlobalMaxPool", &["c"], &["pooled"], "pool", &[]);
    g.node_ints(
        "ReduceMax",
        &["c"],
        &["rows"],
        "rows",
        &[],
        &[("axes", &[-1])],
    );
    g.initializer("ones", &[3, 1, 1, 1], &[1.0; 3]);
    g.input("x", &["1", "3", "2", "3"]);
    for o in ["pooled", "rows"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let nan = f32::NAN;
    let x = [
        1.0, nan, -2.0, 0.5, 3.0, -1.0, //
        nan, nan, nan, nan, nan, nan, //
        -4.0, -5.0, -6.0, -3.0, -7.0, -8.0,
    ];
    let x = [("x".into(), Tensor::from_f32(vec![1, 3, 2, 3], &x))];
    matches_the_cpu(&bytes, &gpu, &x);
    assert_eq!(gpu.round_trips(), 1);
}

#[test]
fn bad_window_geometry_fails_with_a_message_on_both_targets() {
    for (attrs, says) in [
        (vec![("strides", &[0_i64, 1][..])], "strides [0, 1] has a 0"),
        (
            vec![("kernel_shape", &[2_i64, 2][..])],
            "kernel_shape [2, 2] is not the weights' spatial shape [1, 1]",
        ),
    ] {
        let mut g = GraphWriter::new("bad_conv");
        g.node_ints("Conv", &["x", "w"], &["y"], "conv", &[], &attrs);
        g.initializer("w", &[1, 1, 1, 1], &[1.0]);
        g.input("x", &["1", "1", "3", "3"]);
        g.output("y", &[]);
        let bytes = g.finish("weft-nn tests", 17);
        let x = [("x".into(), Tensor::from_f32(vec![1, 1, 3, 3], &[1.0; 9]))];
        fails_on_both(&bytes, &x, says);
    }
}

#[test]
fn transposed_convolutions_run_on_the_device_as_on_the_cpu() {
    // A decoder's upsampling: grouped, strided, padded unevenly, with an
    // output padding and a bias; dilated with uneven strides; sized by
    // `output_shape` (its pads derived); and one over one spatial axis.
    let mut g = GraphWriter::new("deconv");
    g.node_ints(
        "ConvTranspose",
        &["x", "w1", "b1"],
        &["t1"],
        "grouped",
        &[("group", 2)],
        &[
            ("strides", &[2, 2]),
            ("pads", &[1, 0, 0, 1]),
            ("output_padding", &[1, 0]),
        ],
    );
    g.node_ints(
        "ConvTranspose",
        &["t1", "w2"],
        &["t2"],
        "dilated",
        &[],
        &[("strides", &[1, 3]), ("dilations", &[2, 1])],
    );
    g.node_ints(
        "ConvTranspose",
        &["t2", "w3"],
        &["t3"],
        "sized",
        &[],
        &[("strides", &[2, 2]), ("output_shape", &[30, 50])],
    );
    g.node_ints(
        "ConvTranspose",
        &["line", "w4"],
        &["t4"],
        "one_d",
        &[],
        &[("strides", &[3]), ("pads", &[2, 1])],
    );
    g.initializer("w1", &[4, 2, 3, 3], &wave(72, 0.1));
    g.initializer("b1", &[4], &[0.5, -0.25, 0.0, 1.0]);
    g.initializer("w2", &[4, 3, 2, 3], &wave(72, 0.7));
    g.initializer("w3", &[3, 2, 3, 3], &wave(54, 1.3));
    g.initializer("w4", &[2, 3, 4], &wave(24, 1.9));
    g.input("x", &["n", "4", "h", "w"]);
    g.input("line", &["1", "2", "l"]);
    for o in ["t3", "t4"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let inputs = [
        (
            "x".into(),
            Tensor::from_f32(vec![2, 4, 5, 6], &wave(240, 0.4)),
        ),
        (
            "line".into(),
            Tensor::from_f32(vec![1, 2, 7], &wave(14, 2.2)),
        ),
    ];
    matches_the_cpu(&bytes, &gpu, &inputs);
    // One dispatch each, in one submission.
    ran_on_the_device(&gpu, 1, 4);
}

/// A depthwise identity (x onto the device) then `norm` as `node` builds
/// it; checks it runs there as on the CPU, at `opset`.
fn norm_matches_the_cpu(opset: u64, x: &[usize], node: impl FnOnce(&mut GraphWriter)) {
    let mut g = GraphWriter::new("norms");
    let c = x[1];
    g.node(
        "Conv",
        &["x", "ones"],
        &["h"],
        "depthwise",
        &[("group", c as i64)],
    );
    node(&mut g);
    let mut dims = vec![c as u64];
    dims.resize(x.len(), 1);
    g.initializer("ones", &dims, &vec![1.0; c]);
    let names: Vec<String> = x.iter().map(usize::to_string).collect();
    g.input("x", &names.iter().map(String::as_str).collect::<Vec<_>>());
    g.output("y", &[]);
    let bytes = g.finish("weft-nn tests", opset);
    let gpu = crate::gpu::tests::own(None);
    let n: usize = x.iter().product();
    // Offset per channel and spread: the mean and variance matter.
    let data: Vec<f32> = wave(n, 0.3)
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + (i % 7) as f32) + 100.0 * ((i / 16) % 3) as f32)
        .collect();
    let inputs = [("x".into(), Tensor::from_f32(x.to_vec(), &data))];
    matches_the_cpu(&bytes, &gpu, &inputs);
    // The depthwise convolution and the norm, in one submission.
    ran_on_the_device(&gpu, 1, 2);
}

#[test]
fn instance_and_group_norms_run_on_the_device_as_on_the_cpu() {
    // InstanceNormalization over 2-D maps.
    norm_matches_the_cpu(17, &[2, 3, 4, 4], |g| {
        g.node("InstanceNormalization", &["h", "s", "b"], &["y"], "in", &[]);
        g.initializer("s", &[3], &[1.0, -0.5, 2.0]);
        g.initializer("b", &[3], &[0.0, 0.25, -1.0]);
    });
    // GroupNormalization at opset 21: a weight per channel (6 in 3
    // groups), over 1-D maps.
    norm_matches_the_cpu(21, &[2, 6, 8], |g| {
        g.node(
            "GroupNormalization",
            &["h", "s", "b"],
            &["y"],
            "gn",
            &[("num_groups", 3)],
        );
        g.initializer("s", &[6], &[1.0, -0.5, 2.0, 0.5, 1.5, -1.0]);
        g.initializer("b", &[6], &[0.0, 0.25, -1.0, 0.5, 0.0, 2.0]);
    });
    // At opset 18: a weight per group.
    norm_matches_the_cpu(18, &[1, 4, 3, 3], |g| {
        g.node(
            "GroupNormalization",
            &["h", "s", "b"],
            &["y"],
            "gn",
            &[("num_groups", 2)],
        );
        g.initializer("s", &[2], &[1.5, -0.5]);
        g.initializer("b", &[2], &[0.25, 1.0]);
    });
}

#[test]
fn resizes_run_on_the_device_as_on_the_cpu() {
    // A decoder's upsampling by scales (nearest, as VAEs do), by sizes
    // (linear, align_corners), a cubic downsampling with antialias, and
    // a crop (`tf_crop_and_resize`, its extrapolation value); then a
    // resize that changes nothing (the same buffer).
    let mut g = GraphWriter::new("resize");
    g.node("Conv", &["x", "ones"], &["h"], "depthwise", &[("group", 2)]);
    g.node("Resize", &["h", "", "twice"], &["up"], "nearest", &[]);
    let linear = [
        ("mode", "linear"),
        ("coordinate_transformation_mode", "align_corners"),
    ];
    g.node_strings(
        "Resize",
        &["up", "", "", "sizes"],
        &["lin"],
        "linear",
        (&[], &[]),
        &linear,
    );
    let cubic = [("mode", "cubic")];
    g.node_strings(
        "Resize",
        &["lin", "", "half"],
        &["down"],
        "cubic",
        (&[("antialias", 1)], &[]),
        &cubic,
    );
    let crop = [
        ("mode", "linear"),
        ("coordinate_transformation_mode", "tf_crop_and_resize"),
    ];
    g.node_strings(
        "Resize",
        &["h", "roi", "", "crop"],
        &["cropped"],
        "crop",
        (&[("extrapolation_value", 3)], &[]),
        &crop,
    );
    g.node("Resize", &["down", "", "same"], &["kept"], "noop", &[]);
    g.initializer("ones", &[2, 1, 1, 1], &[1.0, 1.0]);
    g.initializer("twice", &[4], &[1.0, 1.0, 2.0, 2.0]);
    g.initializer_i64("sizes", &[4], &[1, 2, 11, 7]);
    g.initializer("half", &[4], &[1.0, 1.0, 0.5, 0.6]);
    g.initializer("roi", &[8], &[0.0, 0.0, -0.2, 0.1, 1.0, 1.0, 0.9, 1.3]);
    g.initializer_i64("crop", &[4], &[1, 2, 5, 6]);
    g.initializer("same", &[4], &[1.0; 4]);
    g.input("x", &["1", "2", "4", "5"]);
    for o in ["kept", "cropped"] {
        g.output(o, &[]);
    }
    let bytes = g.finish("weft-nn tests", 19);
    let gpu = crate::gpu::tests::own(None);
    // -inf first (masked logits have them): a position with fewer taps
    // than others must not read it with weight 0 (NaN).
    let mut with_minus_inf = wave(40, 0.6);
    with_minus_inf[0] = f32::NEG_INFINITY;
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![1, 2, 4, 5], &with_minus_inf),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    // The convolution, then two resamplings per resize (its two spatial
    // axes), four for the crop (it crops every axis, if only to the same
    // extent), none for the one that changes nothing.
    ran_on_the_device(&gpu, 1, 11);
}

#[test]
fn pads_run_on_the_device_as_on_the_cpu() {
    // Zeros around a map, one side cropped (a negative pad); a value of
    // -2.5 on two of the axes (`axes`, opset 18); and -0.0, which a new
    // buffer's zeros are not; crops on both sides of an axis and pads
    // wider than the input. Then `edge`, `reflect` and `wrap` pads, the
    // last two wider than the axes they pad (reflecting and wrapping
    // more than once), one of them cropping too.
    let mut g = GraphWriter::new("pads");
    g.node("Conv", &["x", "ones"], &["h"], "depthwise", &[("group", 2)]);
    g.node("Pad", &["h", "pads"], &["zeros"], "zeros", &[]);
    g.node(
        "Pad",
        &["h", "some", "value", "axes"],
        &["valued"],
        "valued",
        &[],
    );
    g.node(
        "Pad",
        &["h", "pads", "minus_zero"],
        &["signed"],
        "signed",
        &[],
    );
    let edge = [("mode", "edge")];
    g.node_strings("Pad", &["h", "pads"], &["edge"], "edge", (&[], &[]), &edge);
    g.node("Pad", &["h", "wide_pads"], &["wide"], "wide", &[]);
    for (mode, pads) in [
        ("reflect", "far_pads"),
        ("wrap", "far_pads"),
        ("edge", "wide_pads"),
        ("reflect", "crop_pads"),
        ("wrap", "crop_pads"),
    ] {
        let out = format!("{mode}_{pads}");
        let attrs = [("mode", mode)];
        g.node_strings("Pad", &["h", pads], &[&out], &out, (&[], &[]), &attrs);
    }
    let outputs = ["zeros", "valued", "signed", "edge", "wide"];
    let far = [
        "reflect_far_pads",
        "wrap_far_pads",
        "edge_wide_pads",
        "reflect_crop_pads",
        "wrap_crop_pads",
    ];
    for o in outputs.iter().chain(&far) {
        g.output(o, &[]);
    }
    g.initializer("ones", &[2, 1, 1, 1], &[1.0, 1.0]);
    g.initializer_i64("pads", &[8], &[0, 0, 1, -1, 1, 0, 2, 2]);
    // Cropped on both sides of one axis, padded past the input's extent
    // on the other.
    g.initializer_i64("wide_pads", &[8], &[0, 0, -1, 6, 0, 0, -1, 7]);
    // Past each axis's extent: 5 and 9 more rows of 3, 6 and 4 more
    // columns of 4.
    g.initializer_i64("far_pads", &[8], &[0, 0, 5, 6, 0, 0, 9, 4]);
    // A batch of one padded (a reflection of one element is itself),
    // rows cropped before, columns padded before and cropped after.
    g.initializer_i64("crop_pads", &[8], &[1, 0, -1, 2, 0, 0, 0, -1]);
    g.initializer_i64("some", &[4], &[2, 0, 1, 3]);
    g.initializer_i64("axes", &[2], &[1, 3]);
    g.initializer("value", &[], &[-2.5]);
    g.initializer("minus_zero", &[], &[-0.0]);
    g.input("x", &["1", "2", "3", "4"]);
    let bytes = g.finish("weft-nn tests", 18);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![1, 2, 3, 4], &wave(24, 0.8)),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    let want = OnnxModel::load(&bytes)
        .unwrap()
        .session()
        .compute(&x)
        .unwrap();
    let signed = want[2].1.to_f32().unwrap();
    assert!(signed.iter().any(|v| v.to_bits() == (-0.0f32).to_bits()));
    let on_gpu = OnnxModel::load_for(&bytes, Some(Ok(Arc::clone(&gpu)))).unwrap();
    let got = on_gpu.session().compute(&x).unwrap();
    let bits =
        |t: &Tensor| -> Vec<u32> { t.to_f32().unwrap().iter().map(|v| v.to_bits()).collect() };
    assert_eq!(bits(&got[2].1), bits(&want[2].1), "-0.0 kept");
    // Per call, one program: the convolution and ten pads.
    ran_on_the_device(&gpu, 2, 22);
}

#[test]
fn lp_pools_run_on_the_device_as_on_the_cpu() {
    // p = 2 (squares), p = 1 with strides and pads (which add nothing),
    // and over one spatial axis; p = 3 runs on the CPU (its powers leave
    // f32's range long before f64's).
    let mut g = GraphWriter::new("lp");
    g.node("Conv", &["x", "ones"], &["h"], "depthwise", &[("group", 2)]);
    let kernel: (&str, &[i64]) = ("kernel_shape", &[2, 3]);
    g.node_ints("LpPool", &["h"], &["l2"], "l2", &[], &[kernel]);
    let geometry: [(&str, &[i64]); 3] = [kernel, ("strides", &[2, 1]), ("pads", &[1, 1, 0, 1])];
    g.node_ints("LpPool", &["h"], &["l3"], "l3", &[("p", 1)], &geometry);
    g.node_ints(
        "LpPool",
        &["h"],
        &["cubes"],
        "cubes",
        &[("p", 3)],
        &[kernel],
    );
    g.node("Reshape", &["h", "line"], &["flat"], "flat", &[]);
    g.node_ints(
        "LpPool",
        &["flat"],
        &["l1"],
        "l1",
        &[("p", 1)],
        &[("kernel_shape", &[4])],
    );
    for o in ["l2", "l3", "l1", "cubes"] {
        g.output(o, &[]);
    }
    g.initializer("ones", &[2, 1, 1, 1], &[1.0, 1.0]);
    g.initializer_i64("line", &[3], &[1, 2, 20]);
    g.input("x", &["1", "2", "4", "5"]);
    let bytes = g.finish("weft-nn tests", 17);
    let gpu = crate::gpu::tests::own(None);
    let x = [(
        "x".into(),
        Tensor::from_f32(vec![1, 2, 4, 5], &wave(40, 0.3)),
    )];
    matches_the_cpu(&bytes, &gpu, &x);
    // `h` read back for the cubes (after the convolution and two pools),
    // then the last pool and the outputs.
    ran_on_the_device(&gpu, 2, 4);
}
