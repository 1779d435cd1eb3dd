//! `steward scripts [NAME]`: the stock scripts inside steward, or one script's header (what it does, its --args).

use crate::error::UsageError;
use crate::output::{self, OutputSettings};
use crate::script::stock;
use serde_json::{json, Value};

pub fn run(name: Option<&str>, settings: OutputSettings) -> anyhow::Result<()> {
    match name {
        None => {
            let rows: Vec<Value> =
                stock::STOCK.iter().map(|(n, source)| json!({"name": n, "what": stock::summary(source)})).collect();
            output::print_value(&Value::Array(rows), settings);
            Ok(())
        }
        Some(name) => match stock::find(name) {
            Some((n, source)) => {
                output::line(&stock::header(source));
                output::line(&format!("\nRun it from anywhere: steward run {n} --arg …"));
                Ok(())
            }
            None => {
                let meant = crate::suggest::closest(name, stock::STOCK.iter().map(|(n, _)| *n))
                    .map(|n| format!("; did you mean {n}?"))
                    .unwrap_or_default();
                Err(UsageError::new(format!("no stock script {name}{meant} (`steward scripts` lists them)")).into())
            }
        },
    }
}
