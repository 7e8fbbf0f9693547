//! Reading the JSON of request bodies; what a vendor says about a wrong value is its own.

use serde_json::Value;

/// The items of a JSON array as strings, in order; `None` when one of them is not a string.
pub fn strings(items: &[Value]) -> Option<Vec<String>> {
    items
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_only_when_every_item_is_one() {
        assert_eq!(
            strings(&[json!("a"), json!("b")]),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(strings(&[]), Some(Vec::new()));
        assert_eq!(strings(&[json!("a"), json!(1)]), None);
    }
}
