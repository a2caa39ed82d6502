//! Examples and tests live in examples/ and tests/.
