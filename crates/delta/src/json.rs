//! SQL functions over JSON held as text (a PostgreSQL `jsonb` column arrives
//! in the lake as a string): `json_text(properties, 'plan')` is the value of a
//! top-level key as text (`->>` in PostgreSQL), `json_number(properties,
//! 'amount')` the value as a double if it is a number, else NULL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Builder, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use deltalake::datafusion;
use serde_json::Value;

/// `json_text` and `json_number`, for a session to register.
pub(crate) fn functions() -> [ScalarUDF; 2] {
    [ScalarUDF::from(JsonGet::new(Output::Text)), ScalarUDF::from(JsonGet::new(Output::Number))]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Output {
    Text,
    Number,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonGet {
    output: Output,
    signature: Signature,
}

impl JsonGet {
    fn new(output: Output) -> Self {
        Self { output, signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for JsonGet {
    fn name(&self) -> &str {
        match self.output {
            Output::Text => "json_text",
            Output::Number => "json_number",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self.output {
            Output::Text => DataType::Utf8,
            Output::Number => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [documents, keys] = arrays.as_slice() else {
            return Err(DataFusionError::Plan(format!("{} takes a JSON text and a key", self.name())));
        };
        let (documents, keys) = (utf8(documents)?, utf8(keys)?);
        let (documents, keys) = (as_strings(&documents)?, as_strings(&keys)?);
        let value = |i: usize| -> Option<Value> {
            if documents.is_null(i) || keys.is_null(i) {
                return None;
            }
            match serde_json::from_str::<Value>(documents.value(i)) {
                Ok(Value::Object(mut map)) => map.remove(keys.value(i)),
                _ => None,
            }
        };
        let out: ArrayRef = match self.output {
            Output::Text => {
                let mut b = StringBuilder::with_capacity(documents.len(), documents.len() * 8);
                for i in 0..documents.len() {
                    match value(i) {
                        None | Some(Value::Null) => b.append_null(),
                        Some(Value::String(s)) => b.append_value(s),
                        Some(other) => b.append_value(other.to_string()),
                    }
                }
                Arc::new(b.finish())
            }
            Output::Number => {
                let mut b = Float64Builder::with_capacity(documents.len());
                for i in 0..documents.len() {
                    b.append_option(value(i).and_then(|v| v.as_f64()));
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn utf8(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Utf8 => Ok(array.clone()),
        _ => Ok(cast(array, &DataType::Utf8)?),
    }
}

fn as_strings(array: &ArrayRef) -> Result<&StringArray> {
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Internal("json_text: a string argument that is not Utf8".into()))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn reads_keys_as_text_and_numbers() {
        let ctx = SessionContext::new();
        for f in functions() {
            ctx.register_udf(f);
        }
        let df = ctx
            .sql(
                r#"SELECT json_text(p, 'plan') AS plan, json_number(p, 'amount') AS amount, json_text(p, 'amount') AS t
                   FROM (VALUES ('{"plan":"pro","amount":12.5}'), ('{"amount":"x"}'), (NULL), ('not json')) AS v(p)"#,
            )
            .await
            .expect("plan");
        let batches = df.collect().await.expect("run");
        let text = arrow::util::pretty::pretty_format_batches(&batches).expect("format").to_string();
        assert!(text.contains("| pro  | 12.5   | 12.5 |"), "{text}");
        assert!(text.contains("|      |        | x    |"), "{text}");
    }
}
