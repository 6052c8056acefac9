//! What the element-wise and row kernels of `encoder.wgsl` compute, by
//! the ONNX operator that asks for it: the op codes the kernels switch on.

/// Element-wise arithmetic [`Program::binary`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Pow = 4,
    Max = 5,
    Min = 6,
    /// `a < 0 ? a · b : a` (`b` the slope).
    PRelu = 7,
    /// The rest give 1 where true and 0 where not (a bool as the device
    /// holds one); comparisons are false where either side is NaN.
    Equal = 8,
    Less = 9,
    LessOrEqual = 10,
    Greater = 11,
    GreaterOrEqual = 12,
    /// Of bools: a value is true where it is not 0.
    And = 13,
    Or = 14,
    Xor = 15,
}

impl BinaryOp {
    /// The ONNX operator of that name.
    pub(crate) fn of(op: &str) -> Option<Self> {
        Some(match op {
            "Add" => Self::Add,
            "Sub" => Self::Sub,
            "Mul" => Self::Mul,
            "Div" => Self::Div,
            "Pow" => Self::Pow,
            "Max" => Self::Max,
            "Min" => Self::Min,
            "PRelu" => Self::PRelu,
            "Equal" => Self::Equal,
            "Less" => Self::Less,
            "LessOrEqual" => Self::LessOrEqual,
            "Greater" => Self::Greater,
            "GreaterOrEqual" => Self::GreaterOrEqual,
            "And" => Self::And,
            "Or" => Self::Or,
            "Xor" => Self::Xor,
            _ => return None,
        })
    }

    /// Whether `a op b == b op a`.
    pub(crate) fn commutes(self) -> bool {
        matches!(
            self,
            Self::Add
                | Self::Mul
                | Self::Max
                | Self::Min
                | Self::Equal
                | Self::And
                | Self::Or
                | Self::Xor
        )
    }

    /// Whether the op gives a bool (1 or 0).
    pub(crate) fn gives_bool(self) -> bool {
        self as u32 >= Self::Equal as u32
    }

    /// Whether the op reads bools (`And`, `Or`, `Xor`).
    pub(crate) fn reads_bools(self) -> bool {
        self as u32 >= Self::And as u32
    }
}

/// Activations [`Program::unary`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    Relu = 0,
    Sigmoid = 1,
    Tanh = 2,
    Erf = 3,
    Gelu = 4,
    GeluTanh = 5,
    Exp = 6,
    Sqrt = 7,
    Neg = 8,
    Reciprocal = 9,
    Abs = 10,
    Log = 11,
    Cos = 13,
    Sin = 14,
    /// The rest take ONNX's attributes as two parameters (see
    /// [`UnaryOp::params`]).
    LeakyRelu = 15,
    Elu = 16,
    Selu = 17,
    HardSigmoid = 18,
    HardSwish = 19,
    Softplus = 20,
    Softsign = 21,
    Mish = 22,
    Celu = 23,
    ThresholdedRelu = 24,
    Floor = 25,
    Ceil = 26,
    Round = 27,
    Sign = 28,
    Swish = 29,
    /// The rest give bools (1 or 0): `Not` of a bool, …
    Not = 30,
    IsNaN = 31,
    /// … `IsInf` (its parameters `detect_negative` and
    /// `detect_positive`, 0 or 1) …
    IsInf = 32,
    /// … and a `Cast` to bool (true where not 0, NaN included).
    NonZero = 33,
}

impl UnaryOp {
    /// The ONNX operator of that name (`Gelu` by its `approximate`).
    pub(crate) fn of(op: &str, approximate: impl FnOnce() -> String) -> Option<Self> {
        Some(match op {
            "Relu" => Self::Relu,
            "Sigmoid" => Self::Sigmoid,
            "Tanh" => Self::Tanh,
            "Erf" => Self::Erf,
            "Gelu" => match approximate().as_str() {
                "none" => Self::Gelu,
                "tanh" => Self::GeluTanh,
                _ => return None,
            },
            "Exp" => Self::Exp,
            "Sqrt" => Self::Sqrt,
            "Neg" => Self::Neg,
            "Reciprocal" => Self::Reciprocal,
            "Abs" => Self::Abs,
            "Log" => Self::Log,
            "Cos" => Self::Cos,
            "Sin" => Self::Sin,
            "LeakyRelu" => Self::LeakyRelu,
            "Elu" => Self::Elu,
            "Selu" => Self::Selu,
            "HardSigmoid" => Self::HardSigmoid,
            "HardSwish" => Self::HardSwish,
            "Softplus" => Self::Softplus,
            "Softsign" => Self::Softsign,
            "Mish" => Self::Mish,
            "Celu" => Self::Celu,
            "ThresholdedRelu" => Self::ThresholdedRelu,
            "Floor" => Self::Floor,
            "Ceil" => Self::Ceil,
            "Round" => Self::Round,
            "Sign" => Self::Sign,
            "Swish" => Self::Swish,
            "Not" => Self::Not,
            "IsNaN" => Self::IsNaN,
            "IsInf" => Self::IsInf,
            _ => return None,
        })
    }

    /// Whether the op gives a bool (1 or 0).
    pub(crate) fn gives_bool(self) -> bool {
        self as u32 >= Self::Not as u32
    }

    /// The op's two parameters from the node's float attribute `attr`
    /// (with ONNX's defaults): alpha and beta, alpha and gamma for
    /// `Selu`, or, from its int attributes `int`, what `IsInf` detects.
    pub(crate) fn params(
        self,
        attr: impl Fn(&str, f32) -> f32,
        int: impl Fn(&str, i64) -> i64,
    ) -> [f32; 2] {
        match self {
            Self::IsInf => ["detect_negative", "detect_positive"].map(|a| (int(a, 1) != 0).into()),
            Self::LeakyRelu => [attr("alpha", 0.01), 0.0],
            Self::Elu | Self::Celu | Self::ThresholdedRelu | Self::Swish => {
                [attr("alpha", 1.0), 0.0]
            }
            Self::Selu => [attr("alpha", 1.673_263_2), attr("gamma", 1.050_701)],
            Self::HardSigmoid => [attr("alpha", 0.2), attr("beta", 0.5)],
            _ => [0.0; 2],
        }
    }
}

/// What [`Program::reduce_rows`] computes of each row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReduceOp {
    Sum = 0,
    Mean = 1,
    /// NaN where the row has one (`ReduceMax`).
    Max = 2,
    /// The largest value that is not NaN, -inf if none (`GlobalMaxPool`).
    MaxSkippingNan = 3,
    /// NaN where the row has one (`ReduceMin`).
    Min = 4,
    SumSquare = 5,
    L1 = 6,
    L2 = 7,
    LogSum = 8,
    LogSumExp = 9,
    Prod = 10,
}

impl ReduceOp {
    /// The ONNX operator of that name.
    pub(crate) fn of(op: &str) -> Option<Self> {
        Some(match op {
            "ReduceSum" => Self::Sum,
            "ReduceMean" => Self::Mean,
            "ReduceMax" => Self::Max,
            "ReduceMin" => Self::Min,
            "ReduceSumSquare" => Self::SumSquare,
            "ReduceL1" => Self::L1,
            "ReduceL2" => Self::L2,
            "ReduceLogSum" => Self::LogSum,
            "ReduceLogSumExp" => Self::LogSumExp,
            "ReduceProd" => Self::Prod,
            _ => return None,
        })
    }
}
