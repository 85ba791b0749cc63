//! Weir's pipeline model, shared by every other crate.
//!
//! Data flows one way: a controller row ([`ControllerRow`]) is parsed into a
//! [`PipelineDef`]; a [`Source`] turns it into a stream of Arrow batches, each
//! carrying the [`Position`] reached after it; a [`Sink`] loads the stream and
//! commits once, atomically, with the final position. This crate does no I/O:
//! connectors and the engine build on these types.

pub mod changes;
pub mod connection;
pub mod date;
pub mod error;
pub mod ident;
pub mod json;
pub mod lag;
pub mod narrow;
pub mod options;
pub mod pipeline;
pub mod report;
pub mod traits;
pub mod watermark;

pub use connection::{ConnectionUrl, Redactor, Secret};
pub use date::RunDate;
pub use error::{Domain, Error, Result};
pub use ident::{Ident, quote_ident, quote_literal};
pub use pipeline::{ControllerRow, LoadType, PipelineDef};
pub use report::{PipelineReport, RunReport, Status};
pub use traits::{
    BatchStream, CaptureStatus, DefaultConnection, LoadOutcome, LoadRequest, Position, ReadGroup, ReadRequest, Sink,
    SinkContext, SinkFactory, SinkRegistration, Source, SourceBatch, SourceContext, SourceFactory, SourceRegistration,
    SourceStream, SteppedOut, TableEntry, Transform, TransformContext, TransformFactory, TransformOutcome,
    TransformRegistration, TransformRequest, WatermarkFilter, WriteMode,
};
