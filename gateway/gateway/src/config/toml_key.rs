//! Where in the TOML text a parse error lies, as the dotted key an operator would look for.

/// The dotted key whose value (or table header) covers byte offset `at` of the TOML text.
pub(super) fn key_at(text: &str, at: usize) -> String {
    let mut table = String::new();
    let mut array_index: std::collections::HashMap<String, usize> = Default::default();
    let mut key = String::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        let line_end = offset + line.len();
        if let Some(name) = trimmed
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
        {
            let name = name.trim().to_string();
            let n = array_index
                .entry(name.clone())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
            key.clear();
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
            key.clear();
        } else if let Some((k, _)) = trimmed.split_once('=')
            && !trimmed.starts_with('#')
        {
            key = k.trim().to_string();
        }
        if at < line_end {
            break;
        }
        offset = line_end;
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
