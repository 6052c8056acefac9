//! Writes small ONNX models: what the trainer exports and what the fixtures
//! build. Field numbers are those of `onnx.proto3`; only the fields these
//! models need are written.

/// Writes a protobuf field key.
pub(crate) fn key(n: u64, wire: u64, out: &mut Vec<u8>) {
    var(n << 3 | wire, out);
}

/// Writes a protobuf varint.
pub(crate) fn var(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Writes a length-delimited protobuf field.
pub(crate) fn bytes(n: u64, b: &[u8], out: &mut Vec<u8>) {
    key(n, 2, out);
    var(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// A graph under construction: nodes, float initializers, and typed float
/// inputs and outputs whose dimensions are numbers or symbolic names.
#[derive(Debug, Default)]
pub(crate) struct GraphWriter {
    graph: Vec<u8>,
}

/// Integer attributes, `(name, value)`.
type IntAttrs<'a> = &'a [(&'a str, i64)];
/// Integer-list attributes, `(name, values)`.
type ListAttrs<'a> = &'a [(&'a str, &'a [i64])];

impl GraphWriter {
    /// An empty graph called `name`.
    pub(crate) fn new(name: &str) -> Self {
        let mut graph = Vec::new();
        bytes(2, name.as_bytes(), &mut graph);
        Self { graph }
    }

    /// Adds node `name` running `op` on `inputs`, with integer attributes.
    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        name: &str,
        attrs: &[(&str, i64)],
    ) {
        self.node_ints(op, inputs, outputs, name, attrs, &[]);
    }

    /// [`GraphWriter::node`] with integer-list attributes too (`perm`).
    pub(crate) fn node_ints(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        name: &str,
        attrs: &[(&str, i64)],
        lists: &[(&str, &[i64])],
    ) {
        self.node_strings(op, inputs, outputs, name, (attrs, lists), &[]);
    }

    /// [`GraphWriter::node_ints`] with string attributes too (`mode`).
    pub(crate) fn node_strings(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        name: &str,
        (attrs, lists): (IntAttrs<'_>, ListAttrs<'_>),
        strings: &[(&str, &str)],
    ) {
        self.node_with(op, inputs, outputs, name, (attrs, lists), strings, &[]);
    }

    /// [`GraphWriter::node_strings`] with `raw`, attribute fields written
    /// already, appended to the node.
    #[allow(clippy::too_many_arguments)]
    fn node_with(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        name: &str,
        (attrs, lists): (IntAttrs<'_>, ListAttrs<'_>),
        strings: &[(&str, &str)],
        raw: &[u8],
    ) {
        let mut node = Vec::new();
        for i in inputs {
            bytes(1, i.as_bytes(), &mut node);
        }
        for o in outputs {
            bytes(2, o.as_bytes(), &mut node);
        }
        bytes(3, name.as_bytes(), &mut node);
        bytes(4, op.as_bytes(), &mut node);
        for (attr, value) in attrs {
            let mut a = Vec::new();
            bytes(1, attr.as_bytes(), &mut a);
            key(3, 0, &mut a);
            var(*value as u64, &mut a);
            key(20, 0, &mut a);
            var(2, &mut a); // AttributeType INT
            bytes(5, &a, &mut node);
        }
        for (attr, values) in lists {
            let mut a = Vec::new();
            bytes(1, attr.as_bytes(), &mut a);
            for &v in *values {
                key(8, 0, &mut a);
                var(v as u64, &mut a);
            }
            key(20, 0, &mut a);
            var(7, &mut a); // AttributeType INTS
            bytes(5, &a, &mut node);
        }
        for (attr, value) in strings {
            let mut a = Vec::new();
            bytes(1, attr.as_bytes(), &mut a);
            bytes(4, value.as_bytes(), &mut a);
            key(20, 0, &mut a);
            var(3, &mut a); // AttributeType STRING
            bytes(5, &a, &mut node);
        }
        node.extend_from_slice(raw);
        bytes(1, &node, &mut self.graph);
    }

    /// Adds node `name` running `op` with `raw`, its other fields (a
    /// domain, attributes) written already.
    #[cfg(test)]
    pub(crate) fn node_raw(
        &mut self,
        (op, inputs, outputs, name): (&str, &[&str], &[&str], &str),
        raw: &[u8],
    ) {
        self.node_with(op, inputs, outputs, name, (&[], &[]), &[], raw);
    }

    /// Adds node `name` running `op` with graph attributes (`If`'s
    /// branches, `Loop`'s and `Scan`'s bodies), each a graph built the
    /// same way, and integer and integer-list attributes.
    #[cfg(test)]
    pub(crate) fn node_graphs(
        &mut self,
        (op, inputs, outputs, name): (&str, &[&str], &[&str], &str),
        (attrs, lists): (IntAttrs<'_>, ListAttrs<'_>),
        graphs: Vec<(&str, GraphWriter)>,
    ) {
        let mut g = Vec::new();
        for (attr, sub) in graphs {
            let mut a = Vec::new();
            bytes(1, attr.as_bytes(), &mut a);
            bytes(6, &sub.graph, &mut a);
            key(20, 0, &mut a);
            var(5, &mut a); // AttributeType GRAPH
            bytes(5, &a, &mut g);
        }
        self.node_with(op, inputs, outputs, name, (attrs, lists), &[], &g);
    }

    /// Adds a float initializer (a weight).
    pub(crate) fn initializer(&mut self, name: &str, dims: &[u64], data: &[f32]) {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_initializer(name, dims, 1, &raw); // FLOAT
    }

    /// Adds an int64 initializer (a shape, slice bounds).
    #[cfg(test)]
    pub(crate) fn initializer_i64(&mut self, name: &str, dims: &[u64], data: &[i64]) {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_initializer(name, dims, 7, &raw); // INT64
    }

    /// Adds an initializer of ONNX element type `data_type` from its raw
    /// little-endian bytes (int8 weights: 3, uint8: 2).
    pub(crate) fn raw_initializer(&mut self, name: &str, dims: &[u64], data_type: u64, raw: &[u8]) {
        let mut t = Vec::new();
        for &d in dims {
            key(1, 0, &mut t);
            var(d, &mut t);
        }
        key(2, 0, &mut t);
        var(data_type, &mut t);
        bytes(8, name.as_bytes(), &mut t);
        bytes(9, raw, &mut t);
        bytes(5, &t, &mut self.graph);
    }

    /// Declares a float graph input.
    pub(crate) fn input(&mut self, name: &str, dims: &[&str]) {
        self.value_info(11, name, dims, 1);
    }

    /// Declares an int64 graph input (token ids).
    #[cfg(test)]
    pub(crate) fn input_i64(&mut self, name: &str, dims: &[&str]) {
        self.value_info(11, name, dims, 7);
    }

    /// Declares a graph input of ONNX element type `elem`.
    #[cfg(test)]
    pub(crate) fn input_of(&mut self, name: &str, dims: &[&str], elem: u64) {
        self.value_info(11, name, dims, elem);
    }

    /// Declares a graph output of ONNX element type `elem`.
    #[cfg(test)]
    pub(crate) fn output_of(&mut self, name: &str, dims: &[&str], elem: u64) {
        self.value_info(12, name, dims, elem);
    }

    /// Declares a float graph output.
    pub(crate) fn output(&mut self, name: &str, dims: &[&str]) {
        self.value_info(12, name, dims, 1);
    }

    /// Declares a graph input (`field` 11) or output (12) that is a
    /// sequence of float tensors.
    #[cfg(test)]
    pub(crate) fn sequence(&mut self, field: u64, name: &str) {
        let mut tensor_type = Vec::new();
        key(1, 0, &mut tensor_type);
        var(1, &mut tensor_type);
        let mut elem = Vec::new();
        bytes(1, &tensor_type, &mut elem);
        let mut seq = Vec::new();
        bytes(1, &elem, &mut seq);
        let mut ty = Vec::new();
        bytes(4, &seq, &mut ty);
        let mut vi = Vec::new();
        bytes(1, name.as_bytes(), &mut vi);
        bytes(2, &ty, &mut vi);
        bytes(field, &vi, &mut self.graph);
    }

    /// A `ValueInfoProto` of element type `elem` (ONNX's codes: 1 float,
    /// 7 int64) as graph field `field`.
    fn value_info(&mut self, field: u64, name: &str, dims: &[&str], elem: u64) {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            match d.parse::<u64>() {
                Ok(v) => {
                    key(1, 0, &mut dim);
                    var(v, &mut dim);
                }
                Err(_) => bytes(2, d.as_bytes(), &mut dim),
            }
            bytes(1, &dim, &mut shape);
        }
        let mut tensor_type = Vec::new();
        key(1, 0, &mut tensor_type);
        var(elem, &mut tensor_type);
        bytes(2, &shape, &mut tensor_type);
        let mut ty = Vec::new();
        bytes(1, &tensor_type, &mut ty);
        let mut vi = Vec::new();
        bytes(1, name.as_bytes(), &mut vi);
        bytes(2, &ty, &mut vi);
        bytes(field, &vi, &mut self.graph);
    }

    /// The model bytes: IR version 8, default-domain opset `opset`.
    pub(crate) fn finish(self, producer: &str, opset: u64) -> Vec<u8> {
        let mut m = Vec::new();
        key(1, 0, &mut m);
        var(8, &mut m);
        bytes(2, producer.as_bytes(), &mut m);
        let mut set = Vec::new();
        key(2, 0, &mut set);
        var(opset, &mut set);
        bytes(8, &set, &mut m);
        bytes(7, &self.graph, &mut m);
        m
    }
}
