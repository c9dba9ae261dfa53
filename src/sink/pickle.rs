//! pickle sink
